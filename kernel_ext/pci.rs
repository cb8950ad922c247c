// SPDX-License-Identifier: GPL-2.0

//! PCI functions as the exporter sees them: BAR resources, their P2PDMA
//! providers, and the bridges above them that decide peer-to-peer routing.
//!
//! C header: [`include/linux/pci.h`](srctree/include/linux/pci.h)
//!
//! Raw `struct pci_dev` accesses of the module live here.
//!
//! Upstream `rust/kernel/pci.rs` has `pci::Device` for a bound driver: its
//! IDs, `resource_start()`/`resource_len()`, `TryFrom<&device::Device>`,
//! config space I/O and BAR mappings.  This file adds what the exporter needs
//! of any PCI function (bound to it or not): [`PciFunction`] with its BARs'
//! prefetchable flag and [`P2pProvider`]s, capability offsets, ACS
//! redirection, bus identity, upstream bridge and host bridge; the CPU check
//! of `cpu_supports_p2pdma()`.  It describes the PCI topology only: what a
//! route means for peer-to-peer DMA is the driver's `p2pdma.rs`.

use crate::kernel_ext::bindings;
use core::ptr;
use kernel::{device, types::Opaque};

/// PCI command register (memory space enable is bit 1 of its low byte).
pub(crate) const PCI_COMMAND: u16 = 0x04;
/// I/O space enable in the command register.
pub(crate) const PCI_COMMAND_IO: u16 = 0x1;
/// Memory space enable in the command register.
pub(crate) const PCI_COMMAND_MEMORY: u16 = 0x2;
/// The first base address register.
pub(crate) const PCI_BASE_ADDRESS_0: u16 = 0x10;
/// Advanced Features capability.
pub(crate) const PCI_CAP_ID_AF: u8 = 0x13;

/// PCI config offset of the ACS control register within the ACS capability.
const PCI_ACS_CTRL: u16 = 0x06;
/// ACS request redirect, completion redirect and egress control.
const PCI_ACS_REDIRECTS: u16 = 0x0004 | 0x0008 | 0x0020;

/// A PCI function (`struct pci_dev`).
///
/// # Invariants
///
/// The wrapped device is a valid, registered PCI device for the lifetime of
/// the reference.
#[repr(transparent)]
pub(crate) struct PciFunction(Opaque<kernel::bindings::pci_dev>);

impl PciFunction {
    /// # Safety
    ///
    /// `ptr` must point to a valid PCI device that stays valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut kernel::bindings::pci_dev) -> &'a Self {
        // SAFETY: `PciFunction` is a transparent wrapper of `pci_dev`; the
        // caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// The PCI function behind `dev`, if it is one.
    pub(crate) fn from_device(dev: &device::Device) -> Option<&Self> {
        // SAFETY: `dev` is a valid device.
        let pdev = unsafe { bindings::dmabuf_vfio_to_pci_dev(raw_device(dev)) };
        if pdev.is_null() {
            None
        } else {
            // SAFETY: `dev` is this PCI device's embedded `struct device`, valid
            // for the lifetime of the reference.
            Some(unsafe { Self::from_raw(pdev) })
        }
    }

    /// The function's generic device.
    pub(crate) fn device(&self) -> &device::Device {
        // SAFETY: The function is valid (type invariant), and so is its
        // embedded `struct device`, for as long as it.
        unsafe { device::Device::from_raw(core::ptr::addr_of_mut!((*self.as_raw()).dev)) }
    }

    pub(crate) fn as_raw(&self) -> *mut kernel::bindings::pci_dev {
        self.0.get()
    }

    /// Physical start and length of BAR `bar`.
    pub(crate) fn bar_resource(&self, bar: u32) -> (u64, u64) {
        // SAFETY: By the type invariant the device is valid; `bar` is below
        // the number of resources (callers pass standard BARs only).
        unsafe {
            (
                kernel::bindings::pci_resource_start(self.as_raw(), bar as i32),
                kernel::bindings::pci_resource_len(self.as_raw(), bar as i32),
            )
        }
    }

    /// Whether BAR `bar` is prefetchable memory: reads have no side effects
    /// and writes may be merged, so it may be mapped write-combining.
    pub(crate) fn bar_prefetchable(&self, bar: u32) -> bool {
        let Some(bar) = usize::try_from(bar).ok().filter(|&b| b < 6) else {
            return false;
        };
        // SAFETY: By the type invariant the device is valid; its standard
        // resources are set at enumeration.
        let flags = unsafe { (*self.as_raw()).resource[bar].flags };
        flags as u64 & u64::from(kernel::bindings::IORESOURCE_PREFETCH) != 0
    }

    /// The P2PDMA provider of a memory BAR, which vfio-pci-core sets up when
    /// it initializes the device.
    pub(crate) fn p2pdma_provider(&self, bar: u32) -> Option<P2pProvider> {
        // SAFETY: By the type invariant the device is valid.
        let provider = unsafe { kernel::bindings::pcim_p2pdma_provider(self.as_raw(), bar as i32) };
        if provider.is_null() {
            None
        } else {
            // INVARIANT: A non-null provider lives in device-managed memory of
            // the bound device.
            Some(P2pProvider(provider))
        }
    }

    /// Config offset of the PCI power management capability.
    pub(crate) fn pm_cap(&self) -> Option<u16> {
        // SAFETY: By the type invariant the device is valid.
        let cap = unsafe { (*self.as_raw()).pm_cap };
        (cap != 0).then_some(cap.into())
    }

    /// Config offset of the PCI Express capability.
    pub(crate) fn pcie_cap(&self) -> Option<u16> {
        // SAFETY: By the type invariant the device is valid.
        let cap = unsafe { (*self.as_raw()).pcie_cap };
        (cap != 0).then_some(cap.into())
    }

    /// Config offset of standard capability `id`.
    pub(crate) fn find_capability(&self, id: u8) -> Option<u16> {
        // SAFETY: By the type invariant the device is valid.
        let cap = unsafe { kernel::bindings::pci_find_capability(self.as_raw(), id.into()) };
        (cap != 0).then_some(cap.into())
    }

    /// Reads the config word at `offset`; `None` when the read fails or the
    /// function does not answer (all ones).
    ///
    /// The kernel's accessor, not the user's: a reset in progress does not
    /// hold it off (the caller may run inside one, from `reset_done`).
    pub(crate) fn read_config_word(&self, offset: u16) -> Option<u16> {
        let mut val = 0u16;
        // SAFETY: By the type invariant the device is valid; `val` is a valid
        // destination.
        let ret = unsafe {
            kernel::bindings::pci_read_config_word(self.as_raw(), offset.into(), &mut val)
        };
        (ret == 0 && val != u16::MAX).then_some(val)
    }

    /// Reads the config dword at `offset`, as [`Self::read_config_word`].
    pub(crate) fn read_config_dword(&self, offset: u16) -> Option<u32> {
        let mut val = 0u32;
        // SAFETY: By the type invariant the device is valid; `val` is a valid
        // destination.
        let ret = unsafe {
            kernel::bindings::pci_read_config_dword(self.as_raw(), offset.into(), &mut val)
        };
        (ret == 0 && val != u32::MAX).then_some(val)
    }

    /// Writes `val` to the config word at `offset` (the kernel's accessor);
    /// whether the write went out.
    pub(crate) fn write_config_word(&self, offset: u16, val: u16) -> bool {
        // SAFETY: By the type invariant the device is valid.
        unsafe { kernel::bindings::pci_write_config_word(self.as_raw(), offset.into(), val) == 0 }
    }

    /// Whether the command register's memory enable does nothing for this
    /// function (SR-IOV virtual functions).
    pub(crate) fn no_command_memory(&self) -> bool {
        // SAFETY: By the type invariant the device is valid; the bit is set
        // at enumeration and not changed after.
        unsafe { (*self.as_raw()).no_command_memory() != 0 }
    }

    /// Whether the function's ACS control has request, completion or egress
    /// redirection on.
    pub(crate) fn acs_redirect(&self) -> bool {
        // SAFETY: By the type invariant the device is valid.
        let cap = unsafe { (*self.as_raw()).acs_cap };
        if cap == 0 {
            return false;
        }
        let mut ctrl = 0u16;
        // SAFETY: By the type invariant the device is valid; `ctrl` is a
        // valid destination.
        let ret = unsafe {
            kernel::bindings::pci_read_config_word(
                self.as_raw(),
                (cap + PCI_ACS_CTRL).into(),
                &mut ctrl,
            )
        };
        ret == 0 && ctrl & PCI_ACS_REDIRECTS != 0
    }

    /// Domain, bus, device and function, as one number:
    /// `domain << 16 | bus << 8 | devfn`.
    pub(crate) fn id(&self) -> u32 {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::dmabuf_vfio_pci_id(self.as_raw()) }
    }

    /// The bridge directly above the function (`pci_upstream_bridge()`);
    /// `None` on the root bus.
    pub(crate) fn upstream_bridge(&self) -> Option<&Self> {
        // SAFETY: By the type invariant the device is valid.
        let bridge = unsafe { bindings::dmabuf_vfio_upstream_bridge(self.as_raw()) };
        if bridge.is_null() {
            None
        } else {
            // SAFETY: `bridge` is an upstream bridge of this function, which a
            // child device keeps registered.
            Some(unsafe { Self::from_raw(bridge) })
        }
    }

    /// Identity of the host bridge above the function (its root bus).
    pub(crate) fn host_bridge_id(&self) -> u32 {
        // SAFETY: By the type invariant the device is valid.
        unsafe { bindings::dmabuf_vfio_host_bridge_id(self.as_raw()) }
    }

    /// Vendor and device ID of the device the kernel takes as the host bridge
    /// above the function (function 00.0 of the root bus, or a root port
    /// there), if there is one.
    pub(crate) fn host_bridge_root_device(&self) -> Option<(u16, u16)> {
        let (mut vendor, mut device) = (0u16, 0u16);
        // SAFETY: By the type invariant the device is valid; the out pointers
        // are valid.
        let has_root = unsafe {
            bindings::dmabuf_vfio_host_bridge_root(self.as_raw(), &mut vendor, &mut device)
        };
        has_root.then_some((vendor, device))
    }
}

/// Whether the CPU is AMD family 0x17 (Zen) or newer, which
/// `cpu_supports_p2pdma()` trusts to route peer-to-peer traffic between root
/// ports.
pub(crate) fn cpu_is_amd_zen() -> bool {
    // SAFETY: Reads boot CPU data only.
    unsafe { bindings::dmabuf_vfio_cpu_is_amd_zen() }
}

/// The P2PDMA provider of one BAR (`struct p2pdma_provider`).
///
/// # Invariants
///
/// Points to the provider in device-managed memory of a PCI device; valid
/// while the device stays bound to its driver.
#[derive(Clone, Copy)]
pub(crate) struct P2pProvider(*mut kernel::bindings::p2pdma_provider);

// SAFETY: The provider is immutable after setup; it is only read.
unsafe impl Send for P2pProvider {}
// SAFETY: As above.
unsafe impl Sync for P2pProvider {}

impl P2pProvider {
    /// PCI bus address of CPU physical address `paddr` in this BAR.
    pub(crate) fn bus_addr(&self, paddr: u64) -> u64 {
        // The one caller maps a buffer found not revoked under the
        // reservation lock, which it holds throughout; buffers are revoked
        // for good under that lock before their device is closed, and a
        // device is unbound only after its last close: a caller contract the
        // type does not enforce yet (hardening issue).
        // SAFETY: By the type invariant the provider is valid while its
        // device is bound, which it is (above).
        paddr.wrapping_add(unsafe { (*self.0).bus_offset })
    }
}

/// The raw `struct device` behind a device reference.
pub(crate) fn raw_device(dev: &device::Device) -> *mut kernel::bindings::device {
    // `device::Device` is a transparent wrapper of `struct device`.
    ptr::from_ref(dev).cast_mut().cast()
}
