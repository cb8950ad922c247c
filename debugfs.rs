// SPDX-License-Identifier: GPL-2.0

//! The driver's state in debugfs, readable by root only:
//! `/sys/kernel/debug/dmabuf_vfio_pci/<PCI device>/status` lists the
//! device's counters and every live buffer with its ranges, state, memory
//! attribute, importers (with the route their maps take) and CPU mappings.

use crate::kernel_ext::{
    mm::virt::MemAttr,
    module::{ModuleGlobal, Published},
    vfio::BackRef,
};
use crate::{revoke::Cause, DmabufVfioPci};
use kernel::{
    debugfs::{Dir, Scope},
    fmt,
    prelude::*,
    sync::atomic::Relaxed,
};

/// `dmabuf_vfio_pci/` in debugfs.
static ROOT: ModuleGlobal<Dir> = ModuleGlobal::new();

/// Creates the module's directory; it goes away with the returned guard.
pub(crate) fn create_root() -> Result<Published<Dir>> {
    ROOT.publish(KBox::new(Dir::new(c"dmabuf_vfio_pci"), GFP_KERNEL)?)
}

/// A device's directory, removed when dropped.
pub(crate) type DeviceDir = Pin<KBox<Scope<BackRef<DmabufVfioPci>>>>;

/// Creates the directory `name` of the device `dev` refers to.
pub(crate) fn create_device_dir(name: &CStr, dev: BackRef<DmabufVfioPci>) -> Option<DeviceDir> {
    let root = ROOT.get()?;
    let scope = root.scope(dev, name, |dev, dir| {
        dir.read_callback_file(c"status", dev, &show_status);
    });
    KBox::pin_init(scope, GFP_KERNEL).ok()
}

fn show_status(dev: &BackRef<DmabufVfioPci>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let stats = &dev.stats;
    writeln!(f, "exports: {}", stats.exports.load(Relaxed))?;
    write!(f, "revokes:")?;
    for cause in Cause::ALL {
        write!(
            f,
            " {}={}",
            cause.name().to_str().unwrap_or("?"),
            stats.revokes[cause.index()].load(Relaxed)
        )?;
    }
    writeln!(f)?;
    writeln!(f, "unrevokes: {}", stats.unrevokes.load(Relaxed))?;
    writeln!(
        f,
        "faults: page={} pmd={} pud={} fallback={} sigbus={}",
        stats.faults[0].load(Relaxed),
        stats.faults[1].load(Relaxed),
        stats.faults[2].load(Relaxed),
        stats.fallbacks.load(Relaxed),
        stats.sigbus.load(Relaxed),
    )?;

    let exports = dev.exports.lock();
    writeln!(
        f,
        "events in progress: {}, low-power entries in progress: {}, lost state: {}",
        exports.in_progress, exports.entering_low_power, exports.lost_state
    )?;
    for bar in exports.list.iter() {
        let state = bar.state.lock();
        let status = match (bar.revoked(), state.permanent) {
            (_, true) => "revoked-for-good",
            (true, false) => "revoked",
            (false, false) => "accessible",
        };
        let memattr = match state.memattr {
            MemAttr::Uncached => "uncached",
            MemAttr::WriteCombining => "write-combining",
        };
        writeln!(
            f,
            "buffer {}: size={:#x} {} memattr={} dma_mappings={} cpu_mappings={}",
            bar.ino(),
            bar.size,
            status,
            memattr,
            bar.dma_mappings(),
            state.cpu_mappings
        )?;
        for range in bar.ranges.iter() {
            writeln!(f, "  range {:#x}+{:#x}", range.paddr, range.len)?;
        }
        for importer in state.attachments.iter() {
            writeln!(
                f,
                "  importer {} {}",
                importer.importer.name().to_str().unwrap_or("?"),
                importer.map_type.name().to_str().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}
