// SPDX-License-Identifier: GPL-2.0

//! PCI peer-to-peer reachability of an exported BAR.
//!
//! An importer reaches the exporting BAR either by PCI bus address, when both
//! devices sit below a common upstream bridge and nothing on the way
//! redirects requests upstream (ACS), or through the host bridge with a
//! DMA-API mapping of the MMIO, where the platform is known to route such
//! traffic; otherwise not at all.
//!
//! The kernel makes this decision in `pci_p2pdma_map_type()`, which modules
//! cannot call.  [`map_type`] is the same decision as a pure function over a
//! description of both devices' paths to their root bus ([`Endpoint`]), so it
//! is unit tested on synthetic topologies (KUnit, below) and compared with the
//! kernel's answer on real ones by the guest selftests.  It mirrors
//! `calc_map_type_and_dist()` of Linux 7.3 (`drivers/pci/p2pdma.c`):
//!
//! - the ACS redirect bits that count are RR, CR and EC, on the provider,
//!   every bridge up to and including the common one, and on the client and
//!   its bridges below the common one;
//! - without a common bridge, or with redirection, the path goes through the
//!   host bridge, which only AMD Zen (family 0x17 and newer) CPUs and the
//!   host bridges of [`HOST_BRIDGE_ALLOW_LIST`] are trusted to route.

use crate::kernel_ext::pci::{self, PciFunction};
use kernel::{device, prelude::*, sync::Mutex};

/// How an importing device reaches an exported BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum MapType {
    /// Through a common upstream switch: the importer uses the BAR's PCI bus
    /// address, without the IOMMU.
    BusAddr = 1,
    /// Up to the host bridge and back down: the importer needs a DMA-API
    /// mapping of the MMIO (an IOVA when it sits behind an IOMMU).
    ThruHostBridge = 2,
    /// The platform cannot route the traffic; mapping fails.
    NotSupported = 3,
}

impl MapType {
    /// The name tracepoints and debugfs show.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            Self::BusAddr => c"bus-address",
            Self::ThruHostBridge => c"host-bridge",
            Self::NotSupported => c"not-supported",
        }
    }

    /// The map type stored as a word (never zero).
    pub(crate) fn to_word(self) -> usize {
        self as usize
    }

    /// The map type [`MapType::to_word`] stored, if `word` is one.
    pub(crate) fn from_word(word: usize) -> Option<Self> {
        [Self::BusAddr, Self::ThruHostBridge, Self::NotSupported]
            .into_iter()
            .find(|t| t.to_word() == word)
    }
}

/// One PCI function on a device's path to its root bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PathNode {
    /// Identity of the function: `domain << 16 | bus << 8 | devfn`.
    pub(crate) id: u32,
    /// Whether its ACS control has request, completion or egress redirection on.
    pub(crate) acs_redirect: bool,
}

/// The host bridge above a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostBridge {
    /// Identity of the host bridge (its root bus).
    pub(crate) id: u32,
    /// Vendor and device ID of the device the kernel takes as the host
    /// bridge (function 00.0 of the root bus, or a root port there).
    pub(crate) root_device: Option<(u16, u16)>,
}

/// A device and everything above it that matters for peer-to-peer routing.
pub(crate) struct Endpoint<'a> {
    /// The device itself, then each upstream bridge, ending on the root bus.
    pub(crate) path: &'a [PathNode],
    /// The host bridge the path ends at.
    pub(crate) host: HostBridge,
}

/// Whether the CPU is known to route peer-to-peer traffic between root ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cpu {
    /// AMD family 0x17 (Zen) or newer.
    AmdZen,
    /// Anything else.
    Other,
}

/// A PCI hierarchy is at most 256 buses deep.
const MAX_PATH_LEN: usize = 256;

/// Any device ID of the vendor.
const ANY_DEVICE: u16 = 0xffff;

/// Host bridges the kernel allows to route peer-to-peer traffic
/// (`pci_p2pdma_whitelist[]` of Linux 7.3): vendor, device, and whether both
/// devices must sit below the same host bridge.
pub(crate) const HOST_BRIDGE_ALLOW_LIST: &[(u16, u16, bool)] = &[
    // Intel Xeon E5/Core i7
    (0x8086, 0x3c00, true),
    (0x8086, 0x3c01, true),
    // Intel Xeon E7 v3/Xeon E5 v3/Core i7
    (0x8086, 0x2f00, true),
    (0x8086, 0x2f01, true),
    // Intel Skylake-E
    (0x8086, 0x2030, false),
    (0x8086, 0x2031, false),
    (0x8086, 0x2032, false),
    (0x8086, 0x2033, false),
    (0x8086, 0x2020, false),
    (0x8086, 0x09a2, false),
    // Intel SPR/GNR/DMR accelerators
    (0x8086, 0x0b25, false),
    (0x8086, 0x0cfe, false),
    (0x8086, 0x11fb, false),
    (0x8086, 0x1212, false),
    (0x8086, 0x1216, false),
    // Intel QAT
    (0x8086, 0x4940, false),
    (0x8086, 0x4942, false),
    (0x8086, 0x4944, false),
    (0x8086, 0x4946, false),
    (0x8086, 0x4948, false),
    // Google SoCs
    (0x1ae0, ANY_DEVICE, false),
    // Nvidia CPUs
    (0x10de, 0x2f95, false),
    (0x10de, 0x2f96, false),
    (0x10de, 0x2f97, false),
    (0x10de, 0x2f98, false),
];

/// Whether the allow list lets `root` route traffic, `same` telling whether
/// both devices are below it.
fn host_bridge_allowed(root: Option<(u16, u16)>, same: bool) -> bool {
    let Some((vendor, device)) = root else {
        return false;
    };
    HOST_BRIDGE_ALLOW_LIST
        .iter()
        .find(|&&(v, d, _)| v == vendor && (d == ANY_DEVICE || d == device))
        .is_some_and(|&(_, _, require_same)| same || !require_same)
}

fn through_host_bridge(provider: &Endpoint<'_>, client: &Endpoint<'_>, cpu: Cpu) -> MapType {
    if cpu == Cpu::AmdZen {
        return MapType::ThruHostBridge;
    }
    let allowed = if provider.host.id == client.host.id {
        host_bridge_allowed(provider.host.root_device, true)
    } else {
        host_bridge_allowed(provider.host.root_device, false)
            && host_bridge_allowed(client.host.root_device, false)
    };
    if allowed {
        MapType::ThruHostBridge
    } else {
        MapType::NotSupported
    }
}

/// How `client` reaches a BAR of `provider`, and the distance the kernel
/// reports for the pair (`pci_p2pdma_distance()`).
pub(crate) fn map_type(
    provider: &Endpoint<'_>,
    client: &Endpoint<'_>,
    cpu: Cpu,
) -> (MapType, usize) {
    for (i, up) in provider.path.iter().enumerate() {
        let Some(j) = client.path.iter().position(|c| c.id == up.id) else {
            continue;
        };
        let redirect = provider.path[..=i].iter().any(|n| n.acs_redirect)
            || client.path[..j].iter().any(|n| n.acs_redirect);
        let kind = if redirect {
            through_host_bridge(provider, client, cpu)
        } else {
            MapType::BusAddr
        };
        return (kind, i + j);
    }
    (
        through_host_bridge(provider, client, cpu),
        provider.path.len() + client.path.len(),
    )
}

/// How `importer` reaches the BARs of `provider`; importers that are not
/// PCI devices cannot reach them.
/// The routes a provider's importers were found to take, by importer.
///
/// Like the kernel's own per-provider cache (`p2pdma->map_types`), entries
/// are never invalidated: the topology and ACS settings of a bound device's
/// path do not change while it stays bound.
pub(crate) struct RouteCache(KVec<(u32, MapType)>);

impl RouteCache {
    pub(crate) const fn new() -> Self {
        Self(KVec::new())
    }
}

/// How `importer` reaches `provider`'s BARs, from `cache` when known.
pub(crate) fn cached_importer_map_type(
    cache: &Mutex<RouteCache>,
    provider: &PciFunction,
    importer: &device::Device,
) -> Result<MapType> {
    let Some(function) = PciFunction::from_device(importer) else {
        return Ok(MapType::NotSupported);
    };
    let id = function.id();
    if let Some(&(_, kind)) = cache.lock().0.iter().find(|(known, _)| *known == id) {
        return Ok(kind);
    }
    let kind = importer_map_type(provider, importer)?;
    // A full cache only costs the walk next time.
    let _ = cache.lock().0.push((id, kind), GFP_KERNEL);
    Ok(kind)
}

/// `function` and its upstream bridges up to the root bus, and the host
/// bridge they end at.
fn path_to_root(function: &PciFunction) -> Result<(KVec<PathNode>, HostBridge)> {
    let mut path = KVec::new();
    let mut node = Some(function);
    while let Some(function) = node.filter(|_| path.len() < MAX_PATH_LEN) {
        path.push(
            PathNode {
                id: function.id(),
                acs_redirect: function.acs_redirect(),
            },
            GFP_KERNEL,
        )?;
        node = function.upstream_bridge();
    }
    let host = HostBridge {
        id: function.host_bridge_id(),
        root_device: function.host_bridge_root_device(),
    };
    Ok((path, host))
}

/// The CPU's peer-to-peer routing capability, as `cpu_supports_p2pdma()` sees it.
fn cpu() -> Cpu {
    if pci::cpu_is_amd_zen() {
        Cpu::AmdZen
    } else {
        Cpu::Other
    }
}

pub(crate) fn importer_map_type(
    provider: &PciFunction,
    importer: &device::Device,
) -> Result<MapType> {
    let Some(importer) = PciFunction::from_device(importer) else {
        return Ok(MapType::NotSupported);
    };
    let (provider_path, provider_host) = path_to_root(provider)?;
    let (importer_path, importer_host) = path_to_root(importer)?;
    let (kind, _distance) = map_type(
        &Endpoint {
            path: &provider_path,
            host: provider_host,
        },
        &Endpoint {
            path: &importer_path,
            host: importer_host,
        },
        cpu(),
    );
    Ok(kind)
}

#[cfg(CONFIG_KUNIT)]
#[kernel::macros::kunit_tests(dmabuf_vfio_pci_p2pdma)]
mod tests {
    use super::*;

    const Q35: HostBridge = HostBridge {
        id: 0,
        root_device: Some((0x8086, 0x29c0)),
    };
    const SKYLAKE: HostBridge = HostBridge {
        id: 0,
        root_device: Some((0x8086, 0x2030)),
    };
    const XEON_E5: HostBridge = HostBridge {
        id: 0,
        root_device: Some((0x8086, 0x3c00)),
    };

    const fn node(id: u32) -> PathNode {
        PathNode {
            id,
            acs_redirect: false,
        }
    }

    const fn acs(id: u32) -> PathNode {
        PathNode {
            id,
            acs_redirect: true,
        }
    }

    fn ep(path: &[PathNode], host: HostBridge) -> Endpoint<'_> {
        Endpoint { path, host }
    }

    // Switch: root port 0x08, upstream port 0x100, downstream ports 0x200/0x208.
    const A_BEHIND_SWITCH: [PathNode; 4] = [node(0x300), node(0x200), node(0x100), node(0x08)];
    const B_BEHIND_SWITCH: [PathNode; 4] = [node(0x400), node(0x208), node(0x100), node(0x08)];

    #[test]
    fn switch_without_acs_is_bus_address() {
        let (kind, dist) = map_type(
            &ep(&A_BEHIND_SWITCH, Q35),
            &ep(&B_BEHIND_SWITCH, Q35),
            Cpu::Other,
        );
        assert_eq!(kind, MapType::BusAddr);
        assert_eq!(dist, 4);
    }

    #[test]
    fn acs_redirect_on_a_downstream_port_goes_to_host_bridge() {
        let b = [node(0x400), acs(0x208), node(0x100), node(0x08)];
        let p = ep(&A_BEHIND_SWITCH, Q35);
        assert_eq!(
            map_type(&p, &ep(&b, Q35), Cpu::Other).0,
            MapType::NotSupported
        );
        assert_eq!(
            map_type(&p, &ep(&b, Q35), Cpu::AmdZen).0,
            MapType::ThruHostBridge
        );
        // With redirection, an allowed host bridge above both routes it.
        let (a_skl, b_skl) = (ep(&A_BEHIND_SWITCH, SKYLAKE), ep(&b, SKYLAKE));
        assert_eq!(
            map_type(&a_skl, &b_skl, Cpu::Other).0,
            MapType::ThruHostBridge
        );
    }

    #[test]
    fn acs_on_the_common_bridge_counts() {
        let a = [node(0x300), node(0x200), acs(0x100), node(0x08)];
        let (kind, _) = map_type(&ep(&a, Q35), &ep(&B_BEHIND_SWITCH, Q35), Cpu::AmdZen);
        assert_eq!(kind, MapType::ThruHostBridge);
    }

    #[test]
    fn acs_above_the_common_bridge_does_not_count() {
        let a = [node(0x300), node(0x200), node(0x100), acs(0x08)];
        let b = [node(0x400), node(0x208), node(0x100), acs(0x08)];
        assert_eq!(
            map_type(&ep(&a, Q35), &ep(&b, Q35), Cpu::Other).0,
            MapType::BusAddr
        );
    }

    #[test]
    fn different_root_ports_need_an_allowed_host_bridge() {
        let a = [node(0x100), node(0x08)];
        let b = [node(0x200), node(0x10)];
        let (kind, dist) = map_type(&ep(&a, Q35), &ep(&b, Q35), Cpu::Other);
        assert_eq!(kind, MapType::NotSupported);
        assert_eq!(dist, 4);
        assert_eq!(
            map_type(&ep(&a, Q35), &ep(&b, Q35), Cpu::AmdZen).0,
            MapType::ThruHostBridge
        );
        assert_eq!(
            map_type(&ep(&a, SKYLAKE), &ep(&b, SKYLAKE), Cpu::Other).0,
            MapType::ThruHostBridge
        );
    }

    #[test]
    fn root_bus_devices_have_no_common_bridge() {
        let (kind, dist) = map_type(&ep(&[node(0x50)], Q35), &ep(&[node(0x58)], Q35), Cpu::Other);
        assert_eq!(kind, MapType::NotSupported);
        assert_eq!(dist, 2);
    }

    #[test]
    fn same_host_bridge_entries_need_the_same_host_bridge() {
        let a = [node(0x100), node(0x08)];
        let b = [node(0x200), node(0x10)];
        let other = HostBridge { id: 1, ..XEON_E5 };
        assert_eq!(
            map_type(&ep(&a, XEON_E5), &ep(&b, XEON_E5), Cpu::Other).0,
            MapType::ThruHostBridge
        );
        assert_eq!(
            map_type(&ep(&a, XEON_E5), &ep(&b, other), Cpu::Other).0,
            MapType::NotSupported
        );
    }

    #[test]
    fn unknown_host_bridge_device_is_refused() {
        let none = HostBridge {
            id: 0,
            root_device: None,
        };
        let google = HostBridge {
            id: 0,
            root_device: Some((0x1ae0, 0x1234)),
        };
        let a = [node(0x100), node(0x08)];
        let b = [node(0x200), node(0x10)];
        assert_eq!(
            map_type(&ep(&a, none), &ep(&b, none), Cpu::Other).0,
            MapType::NotSupported
        );
        assert_eq!(
            map_type(&ep(&a, google), &ep(&b, google), Cpu::Other).0,
            MapType::ThruHostBridge
        );
    }

    #[test]
    fn same_device_is_bus_address() {
        let (kind, dist) = map_type(
            &ep(&A_BEHIND_SWITCH, Q35),
            &ep(&A_BEHIND_SWITCH, Q35),
            Cpu::Other,
        );
        assert_eq!(kind, MapType::BusAddr);
        assert_eq!(dist, 0);
    }

    #[test]
    fn endpoint_acs_counts_even_for_the_same_device() {
        let a = [acs(0x300), node(0x200), node(0x100), node(0x08)];
        let (kind, _) = map_type(&ep(&a, Q35), &ep(&a, Q35), Cpu::Other);
        assert_eq!(kind, MapType::NotSupported);
    }
}
