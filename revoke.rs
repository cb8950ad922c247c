// SPDX-License-Identifier: GPL-2.0

//! Revocation of exported buffers.
//!
//! Revoking a buffer marks it revoked (new attaches and maps fail with
//! `ENODEV`), tells every importer to drop its mappings
//! (`dma_buf_invalidate_mappings()`), waits for the importers' fences, then
//! waits until every DMA mapping is unmapped.  Only then may the BAR become
//! unreachable.  An event invalidates every buffer it revokes before it
//! waits for any unmap, so late importers are waited for together.
//! Un-revoking clears the mark and invalidates again, which tells importers
//! they may map anew.
//!
//! A buffer is accessible while its device is open, decodes memory (as the
//! user set it, and not in D3), is not in low power, and no event that
//! resets or powers down the device is in progress.  vfio-pci-core takes
//! `memory_lock` itself around the hardware change and does not let a
//! variant run code inside, so every hook revokes *before* calling into the
//! core and settles the state *after* it returns.
//!
//! | event | hook | action |
//! |---|---|---|
//! | last close of the device | `close_device`, before the core disables the device | revoke for good, drop the buffers' device registrations |
//! | `VFIO_DEVICE_RESET` | `ioctl` | revoke across the call, then settle |
//! | `VFIO_DEVICE_PCI_HOT_RESET` on this device's fd | `ioctl` | revoke across the call, then settle |
//! | config write covering the `PCI_COMMAND` low byte (memory enable) | `write` (by the offsets it covers, never by the bytes) | revoke across the call, then settle: revoked while memory is off; memory left on also ends a lost state (below: vfio restores lost BARs on this write) |
//! | config write covering PMCSR's low byte (power state) | `write` | revoke across the call, then settle: revoked while in D1–D3hot |
//! | config write covering the PCIe `DEVCTL` high byte (initiate FLR) | `write` | revoke across the call, then settle |
//! | config write covering the AF control register (initiate FLR) | `write` | revoke across the call, then settle |
//! | `LOW_POWER_ENTRY` (with or without wakeup) | `device_feature` | revoke, stay revoked while the core keeps low power (with a wakeup eventfd a resume of the device ends it; the next settle sees that) |
//! | `LOW_POWER_EXIT` | `device_feature` | settle after the call (un-revoke) |
//! | any function reset by the PCI core: sysfs `reset`, AER/DPC recovery, and inside the resets above | `err_handler.reset_prepare` / `reset_done` | revoke without `memory_lock`; settle if `memory_lock` is free, else from the module's workqueue once it is |
//! | `VFIO_DEVICE_PCI_HOT_RESET` on a sibling's fd (same bus or slot) | `reset_prepare` / `reset_done` (vfio holds our `memory_lock`) | revoke; settle from the workqueue after vfio releases the lock |
//! | uncorrectable error freezing the link (AER fatal, DPC) or failing it | `err_handler.error_detected` (state not normal) | revoke; the recovery resets the device without restoring it, so buffers stay revoked until the user resets it through its fd or enables memory decode again |
//!
//! After every event but a command write, and before the buffers are
//! settled, the device's memory and I/O decode is put back to what the
//! user last wrote to the command register where a return from D3hot lost
//! it ([`MemoryLockWrite::restore_user_decode`]): vfio-pci-core decides on
//! the user's bits, the device decodes by its own, and vfio-pci-core's way
//! back from D3hot restores a config space older than a command write made
//! in D3hot.  Buffers of a device whose BARs are gone stay revoked.
//!
//! Lock order: the core's `memory_lock` → the device's export list → a
//! buffer's link to its dma-buf ([`Exported::with_dmabuf`], which keeps the
//! dma-buf allocated even when its file is gone) → the dma-buf's
//! reservation lock → the buffer's state.  A dma-buf's release takes the
//! link alone, then the state, then the export list.

use crate::kernel_ext::{
    dma_buf::{DmaBufRef, Exported},
    pci::{PCI_CAP_ID_AF, PCI_COMMAND},
    tracepoint as trace,
    vfio::{CoreDevice, Device, DeviceRegistration, MemoryLockWrite},
    workqueue as wq,
};
use crate::{DmabufVfioPci, ExportedBar, Exports};
use kernel::{
    impl_has_work, new_work,
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    workqueue::{Work, WorkItem},
};

/// `VFIO_DEVICE_RESET`: `_IO(VFIO_TYPE, VFIO_BASE + 11)`.
pub(crate) const VFIO_DEVICE_RESET: u32 = (b';' as u32) << 8 | (100 + 11);
/// `VFIO_DEVICE_PCI_HOT_RESET`: `_IO(VFIO_TYPE, VFIO_BASE + 13)`.
pub(crate) const VFIO_DEVICE_PCI_HOT_RESET: u32 = (b';' as u32) << 8 | (100 + 13);

/// Region index of the config space in a vfio-pci device fd offset.
const VFIO_PCI_CONFIG_REGION_INDEX: i64 = 7;
/// Bits of a device fd offset below the region index.
const VFIO_PCI_OFFSET_SHIFT: u32 = 40;
/// PM control/status register within the PM capability (its low byte
/// holds the power state).
const PCI_PM_CTRL: u16 = 4;
/// High byte of the PCIe device control register (initiate FLR is bit 15).
const PCI_EXP_DEVCTL_HIGH: u16 = 8 + 1;
/// AF control register within the AF capability (initiate FLR is bit 0).
const PCI_AF_CTRL: u16 = 4;

/// Why buffers are revoked or given back: the events of the table above
/// (tracepoints and debugfs name them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The device was closed (or unbound).
    Close,
    /// `VFIO_DEVICE_RESET`.
    DeviceReset,
    /// `VFIO_DEVICE_PCI_HOT_RESET` on the device's fd.
    HotReset,
    /// `PCI_COMMAND` memory enable cleared or set.
    Memory,
    /// PMCSR moved to D1-D3hot or back to D0.
    PowerState,
    /// A PCIe or AF function level reset.
    Flr,
    /// `LOW_POWER_ENTRY` (with or without wakeup) or `LOW_POWER_EXIT`.
    LowPower,
    /// A reset run by the PCI core (sysfs, a sibling's hot reset, ...).
    PciReset,
    /// An uncorrectable error froze the link (AER, DPC).
    IoFrozen,
    /// `DMABUF_VFIO_PCI_FEATURE_REVOKE`.
    Request,
}

impl Cause {
    /// Number of causes.
    pub(crate) const COUNT: usize = 10;
    /// Every cause, in index order.
    pub(crate) const ALL: [Cause; Self::COUNT] = [
        Cause::Close,
        Cause::DeviceReset,
        Cause::HotReset,
        Cause::Memory,
        Cause::PowerState,
        Cause::Flr,
        Cause::LowPower,
        Cause::PciReset,
        Cause::IoFrozen,
        Cause::Request,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static CStr {
        match self {
            Cause::Close => c"close",
            Cause::DeviceReset => c"device-reset",
            Cause::HotReset => c"hot-reset",
            Cause::Memory => c"memory-enable",
            Cause::PowerState => c"power-state",
            Cause::Flr => c"flr",
            Cause::LowPower => c"low-power",
            Cause::PciReset => c"pci-reset",
            Cause::IoFrozen => c"io-frozen",
            Cause::Request => c"revoke-request",
        }
    }
}

/// Whether the device's buffers may be accessible now.
pub(crate) fn accessible(exports: &Exports, memory: &MemoryLockWrite<'_>) -> bool {
    // The core leaves low power by itself too (a resume of a device that
    // entered it with a wakeup eventfd): its own flag, read under the lock
    // it changes it under, decides, unless an entry has not reached it yet.
    let low_power = exports.entering_low_power > 0 || memory.low_power_engaged();
    exports.in_progress == 0 && !low_power && !exports.lost_state && memory.memory_enabled()
}

/// Revokes `bar`: afterwards no importer holds a mapping of it, and no
/// process a CPU mapping.
fn revoke(dev: &Device<DmabufVfioPci>, bar: &Exported<ExportedBar>, cause: Cause) {
    start_revoke(dev, bar, cause);
    bar.mappings.wait_zero();
}

/// Revokes every buffer of `bars`.  All of them are marked and their
/// importers invalidated before the first wait, so an event waits for its
/// slowest importer, not for the sum of every importer's delay (an importer
/// may unmap after its invalidation callback, once its own hardware is
/// done).  Afterwards no importer holds a mapping of any of them.
fn revoke_each(dev: &Device<DmabufVfioPci>, bars: &[Arc<Exported<ExportedBar>>], cause: Cause) {
    for bar in bars {
        start_revoke(dev, bar, cause);
    }
    // Importers that unmapped from their invalidation callback are done;
    // the last unmap of the others wakes us.  A buffer revoked before has
    // no mappings, nor has one whose release began.
    for bar in bars {
        bar.mappings.wait_zero();
    }
}

/// Marks `bar` revoked, removes its CPU mappings and tells its importers
/// to unmap; they may do so later.
fn start_revoke(dev: &Device<DmabufVfioPci>, bar: &Exported<ExportedBar>, cause: Cause) {
    // A buffer whose release began has no importers and no mappings left.
    bar.with_dmabuf(|buf| {
        let resv = buf.lock_resv();
        let state = bar.state.lock();
        if bar.revoked() {
            return;
        }
        bar.revoked.store(true, Relaxed);
        // A VMA made after this point has no pages yet, and its faults see
        // the mark: without live VMAs there is nothing to zap.
        let mapped_by_cpu = state.cpu_mappings > 0;
        drop(state);
        dev.stats.revoked(cause);
        trace::revoke(&bar.exporter, bar.ino(), cause.name());
        // Faults check the mark under the state lock: every page mapped
        // before it was set is removed here, none is mapped after.
        if mapped_by_cpu {
            buf.zap_cpu_mappings();
        }
        resv.invalidate_mappings();
        resv.wait_idle();
    });
}

/// Lets importers map `bar` again, unless it was revoked for good.
fn unrevoke(dev: &Device<DmabufVfioPci>, bar: &Exported<ExportedBar>, cause: Cause) {
    bar.with_dmabuf(|buf| {
        let resv = buf.lock_resv();
        let state = bar.state.lock();
        if !bar.revoked() || state.permanent || state.device.is_none() {
            return;
        }
        bar.revoked.store(false, Relaxed);
        drop(state);
        dev.stats.unrevoked();
        trace::unrevoke(&bar.exporter, bar.ino(), cause.name());
        resv.invalidate_mappings();
    });
}

/// Brings every buffer of the device in line with whether it is accessible.
fn sync(
    dev: &Device<DmabufVfioPci>,
    exports: &mut Exports,
    memory: &MemoryLockWrite<'_>,
    cause: Cause,
) {
    // No buffers: the device may be closing, and vfio-pci-core frees the
    // config space that `accessible` reads without taking `memory_lock`.
    // With buffers listed it is open: closing drains the list under
    // `memory_lock` before the core frees anything.
    if exports.list.is_empty() {
        return;
    }
    let accessible = accessible(exports, memory);
    // The second half of an event (still off after it) and writes that
    // change nothing find every buffer as they must be already.
    if exports.synced == Some(accessible) {
        return;
    }
    if accessible {
        for bar in exports.list.iter() {
            unrevoke(dev, bar, cause);
        }
    } else {
        revoke_each(dev, &exports.list, cause);
    }
    exports.synced = Some(accessible);
}

/// Revokes every listed buffer without `memory_lock` (reset and error
/// callbacks, where it may or may not be held).
fn revoke_all(dev: &Device<DmabufVfioPci>, exports: &mut Exports, cause: Cause) {
    revoke_each(dev, &exports.list, cause);
    exports.synced = Some(false);
}

/// After an event that may have taken the device back from D3hot: the
/// device decodes as the user set it again, or it lost its BARs and its
/// buffers stay revoked until the user restores them (see
/// [`MemoryLockWrite::restore_user_decode`]).  A command write needs none of
/// it: the core writes the user's bits to the device itself.
///
/// Not while another event is in progress: a reset the PCI core runs
/// without `memory_lock` (sysfs `reset`) has disabled the device and may
/// have cleared its BARs, and restores them itself before its own end,
/// which comes here again.
fn restore_decode(exports: &mut Exports, memory: &MemoryLockWrite<'_>, cause: Cause) {
    if cause != Cause::Memory && exports.in_progress == 0 && !memory.restore_user_decode() {
        exports.lost_state = true;
    }
}

/// Re-evaluates the device's buffers after an event completed.
pub(crate) fn settle(dev: &Device<DmabufVfioPci>, cause: Cause) {
    settle_locked(dev, &dev.core().memory_lock_write(), cause);
}

fn settle_locked(dev: &Device<DmabufVfioPci>, memory: &MemoryLockWrite<'_>, cause: Cause) {
    let mut exports = dev.exports.lock();
    // With no buffers listed the device may not be open (see `sync`).
    if !exports.list.is_empty() {
        restore_decode(&mut exports, memory, cause);
    }
    sync(dev, &mut exports, memory, cause);
}

/// Runs `event` (which resets or powers down the device) with every buffer
/// revoked, then settles them; `restored` tells from the event's result,
/// under `memory_lock`, whether the device's state is known again (see
/// [`Exports::lost_state`]).
fn across_event<R>(
    dev: &Device<DmabufVfioPci>,
    cause: Cause,
    event: impl FnOnce() -> R,
    restored: impl FnOnce(&R, &MemoryLockWrite<'_>) -> bool,
) -> R {
    {
        // With an event in progress no buffer is accessible, whatever the
        // memory state: revoking needs only the export list, as in
        // `reset_prepare`.
        let mut exports = dev.exports.lock();
        exports.in_progress += 1;
        if exports.synced != Some(false) {
            revoke_all(dev, &mut exports, cause);
        }
    }
    let ret = event();
    let memory = dev.core().memory_lock_write();
    let mut exports = dev.exports.lock();
    exports.in_progress -= 1;
    if restored(&ret, &memory) {
        exports.lost_state = false;
    }
    // A call of the open device fd: its config space is there, with or
    // without buffers, and the device fd's own mappings fault on it.
    restore_decode(&mut exports, &memory, cause);
    sync(dev, &mut exports, &memory, cause);
    ret
}

/// A reset the user asked for through the device fd (`VFIO_DEVICE_RESET`,
/// `VFIO_DEVICE_PCI_HOT_RESET`): as [`across_event`]; a successful one also
/// brings a device whose state an error recovery lost back to a known state.
pub(crate) fn across_user_reset(
    dev: &Device<DmabufVfioPci>,
    cause: Cause,
    reset: impl FnOnce() -> Result<isize>,
) -> Result<isize> {
    across_event(dev, cause, reset, |ret, _| ret.is_ok())
}

/// The link froze (or failed): revokes everything, without `memory_lock`
/// (the device lock is held; vfio's resets take `memory_lock` first and
/// then only try the device lock).  Recovery resets the device and restores
/// nothing, so the buffers stay revoked past its end.
pub(crate) fn io_frozen(dev: &Device<DmabufVfioPci>) {
    let mut exports = dev.exports.lock();
    exports.lost_state = true;
    revoke_all(dev, &mut exports, Cause::IoFrozen);
}

/// A function reset begins.  `memory_lock` may already be held by the
/// caller (resets vfio starts hold it): revoking needs only the export
/// list, the reservation locks and the buffers' state.
pub(crate) fn reset_prepare(dev: &Device<DmabufVfioPci>) {
    let mut exports = dev.exports.lock();
    exports.in_progress += 1;
    revoke_all(dev, &mut exports, Cause::PciReset);
}

/// The function reset is done.  A reset inside one of the driver's own
/// events (its reset ioctls, an FLR through the config space) is left to
/// that event, which settles when it returns.  Other resets settle now when
/// `memory_lock` is free (a reset nobody else drives, such as sysfs
/// `reset`); otherwise a vfio path holds it, a hot reset issued through a
/// sibling device's fd, which never calls us again, so a work item settles
/// once that path lets go of the lock.  (A work item left behind by the
/// driver's own reset would hold `memory_lock` at random times after it,
/// and vfio's hot reset fails with `EBUSY` on a busy lock.)
pub(crate) fn reset_done(dev: &Device<DmabufVfioPci>) {
    let mut exports = dev.exports.lock();
    exports.in_progress = exports.in_progress.saturating_sub(1);
    // Resets also run while the device is opened and closed, with no buffers.
    if exports.list.is_empty() || exports.in_progress > 0 {
        return;
    }
    drop(exports);
    match dev.core().try_memory_lock_write() {
        Some(memory) => settle_locked(dev, &memory, Cause::PciReset),
        None => settle_later(dev),
    }
}

/// Settles a device's buffers from the module's workqueue.
#[pin_data]
struct DeferredSettle {
    /// Keeps the device registered until the work ran.
    dev: DeviceRegistration<DmabufVfioPci>,
    #[pin]
    work: Work<DeferredSettle>,
}

impl_has_work! {
    impl HasWork<Self> for DeferredSettle { self.work }
}

impl WorkItem for DeferredSettle {
    type Pointer = Pin<KBox<Self>>;

    fn run(this: Pin<KBox<Self>>) {
        // Blocks until the path holding `memory_lock` is done.
        settle(&this.dev, Cause::PciReset);
    }
}

fn settle_later(dev: &Device<DmabufVfioPci>) {
    // A device being unregistered was closed: its buffers are revoked for good.
    let Some(registration) = dev.try_get_registration() else {
        return;
    };
    let Some(queue) = wq::module_queue() else {
        return;
    };
    let work = KBox::pin_init(
        pin_init!(DeferredSettle {
            dev: registration,
            work <- new_work!("DeferredSettle::work"),
        }),
        GFP_KERNEL,
    );
    match work {
        // A fresh work item cannot be queued already.
        Ok(work) => queue.enqueue(work),
        // Not something user space can repeat at will; still, say it once.
        Err(_) => kernel::pr_warn_once!(
            "{}: no memory to settle buffers after a reset; they stay revoked until the next event\n",
            dev.core().pci().device().name().to_str().unwrap_or("?")
        ),
    }
}

/// `LOW_POWER_ENTRY`: buffers stay revoked while the core keeps the device
/// in low power: until `LOW_POWER_EXIT`, close, or (with a wakeup eventfd)
/// the next resume of the device.
///
/// They are revoked before the core's call, which may let the device
/// suspend; after it, the core's own state decides, not the call's result:
/// an entry that fails while the device is already in low power (a second
/// entry, a bad eventfd, a short argsz) must leave them revoked.
pub(crate) fn low_power_entry(
    dev: &Device<DmabufVfioPci>,
    entry: impl FnOnce() -> Result<i32>,
) -> Result<i32> {
    {
        let memory = dev.core().memory_lock_write();
        let mut exports = dev.exports.lock();
        exports.entering_low_power += 1;
        sync(dev, &mut exports, &memory, Cause::LowPower);
    }
    let ret = entry();
    let memory = dev.core().memory_lock_write();
    let mut exports = dev.exports.lock();
    exports.entering_low_power -= 1;
    sync(dev, &mut exports, &memory, Cause::LowPower);
    ret
}

/// `LOW_POWER_EXIT`: buffers become accessible again if nothing else blocks.
/// The core's state is read under the lock it changes it under, so an
/// ENTRY and an EXIT racing in two threads end in the state the device is
/// in.
///
/// The device resumed for this call with the config space the PCI core
/// saved when it suspended, which the core's runtime suspend took back from
/// a user's D3hot first (see [`MemoryLockWrite::restore_user_decode`]): the
/// user's decode is put back while the core still keeps low power, before
/// its own mappings may fault again.
pub(crate) fn low_power_exit(
    dev: &Device<DmabufVfioPci>,
    exit: impl FnOnce() -> Result<i32>,
) -> Result<i32> {
    {
        let memory = dev.core().memory_lock_write();
        restore_decode(&mut dev.exports.lock(), &memory, Cause::LowPower);
    }
    let ret = exit();
    settle(dev, Cause::LowPower);
    ret
}

/// The device is being closed: revokes every buffer for good and lets go of
/// the device, so a buffer that outlives the close only fails and frees.
pub(crate) fn release_all(dev: &Device<DmabufVfioPci>) {
    let _memory = dev.core().memory_lock_write();
    let mut exports = dev.exports.lock();
    // The next open resets the function and restores its state.
    exports.lost_state = false;
    exports.synced = None;
    revoke_each(dev, &exports.list, Cause::Close);
    for bar in exports.list.drain_all() {
        let device = {
            let mut state = bar.state.lock();
            // No mapping of it can fault again: its ranges are free to map
            // with other types.
            state.wc.clear();
            state.device.take()
        };
        drop(device);
    }
}

/// `DMABUF_VFIO_PCI_FEATURE_REVOKE`: revokes one of the device's buffers
/// for good.  A buffer already revoked for a while (memory off, a reset) has
/// no importer mappings left, so upgrading it waits for nothing.
pub(crate) fn revoke_for_good(dev: &Device<DmabufVfioPci>, fd: i32) -> Result {
    let buf = DmaBufRef::<ExportedBar>::from_fd(fd)?;
    let bar = buf.data();
    if !bar.exported_by(dev) {
        return Err(ENODEV);
    }
    let memory = dev.core().memory_lock_write();
    let _exports = dev.exports.lock();
    {
        let mut state = bar.state.lock();
        if state.permanent || state.device.is_none() {
            return Err(EBADFD);
        }
        // Never un-revoked from here on; it stays listed (debugfs shows it)
        // until it is released or the device closes.
        state.permanent = true;
    }
    revoke(dev, &bar, Cause::Request);
    // Its ranges are free to map with other types; the device fd's
    // mappings of them took this one.
    if !core::mem::take(&mut bar.state.lock().wc).is_empty() {
        memory.zap_device_mappings(bar.region);
    }
    Ok(())
}

/// The event a device-fd write may be: the first config register it covers
/// of those that disable memory decode, power the device down or reset it.
///
/// Judged by the offsets alone: vfio-pci-core copies the bytes from user
/// memory itself, after anything this driver could read there, so a value
/// seen here says nothing about what the core will write.
pub(crate) fn config_write_event(core: &CoreDevice, count: usize, pos: i64) -> Option<Cause> {
    if pos >> VFIO_PCI_OFFSET_SHIFT != VFIO_PCI_CONFIG_REGION_INDEX {
        return None;
    }
    let start = (pos & ((1 << VFIO_PCI_OFFSET_SHIFT) - 1)) as u64;
    let end = start.saturating_add(count as u64);
    let covers = |reg: u16| (start..end).contains(&u64::from(reg));

    let pci = core.pci();
    if covers(PCI_COMMAND) {
        return Some(Cause::Memory);
    }
    if pci.pm_cap().is_some_and(|pm| covers(pm + PCI_PM_CTRL)) {
        return Some(Cause::PowerState);
    }
    if pci
        .pcie_cap()
        .is_some_and(|pcie| covers(pcie + PCI_EXP_DEVCTL_HIGH))
    {
        return Some(Cause::Flr);
    }
    if pci
        .find_capability(PCI_CAP_ID_AF)
        .is_some_and(|af| covers(af + PCI_AF_CTRL))
    {
        return Some(Cause::Flr);
    }
    None
}

/// A config write that may be `cause`: runs it with every buffer revoked,
/// then settles them on the state the core left.  A successful write of the
/// command register that left memory enabled also ends a lost state:
/// vfio-pci-core restores the BARs a device lost on such a write.
pub(crate) fn across_config_write(
    dev: &Device<DmabufVfioPci>,
    cause: Cause,
    write: impl FnOnce() -> Result<isize>,
) -> Result<isize> {
    across_event(dev, cause, write, |ret, memory| {
        ret.is_ok() && cause == Cause::Memory && memory.memory_enabled()
    })
}
