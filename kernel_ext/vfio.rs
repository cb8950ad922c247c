// SPDX-License-Identifier: GPL-2.0

//! Rust abstractions for vfio-pci variant drivers.
//!
//! C header: [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)
//!
//! This is the one place of the module that calls raw vfio and vfio-pci-core
//! functions; the driver logic above it is safe Rust.  A variant driver
//! implements [`VariantDriver`] for its per-device data; [`Registration`]
//! registers the PCI driver whose probe allocates a [`Device`] (the core
//! device with the driver's data behind it) and registers it with vfio.
//! Callbacks a driver does not override go straight to vfio-pci-core, exactly
//! as in-tree `vfio-pci` wires them.
//!
//! Upstream has no vfio abstraction in `rust/kernel/`; this file would add
//! `rust/kernel/vfio.rs` (or `vfio/pci_core.rs`): [`CoreDevice`],
//! [`Device`], [`VariantDriver`], [`Registration`], the `memory_lock` guards
//! and vfio registration references.

use crate::kernel_ext::{
    bindings,
    mm::virt::{Fault, FaultOutcome},
    pci::{PciFunction, PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY},
};
use core::{
    marker::PhantomData,
    mem::size_of,
    ptr::{addr_of_mut, NonNull},
};
use kernel::{
    error::{from_err_ptr, from_result, to_result},
    ffi::{c_int, c_long, c_uint, c_ulong, c_void},
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Mutex, Srcu,
    },
    types::Opaque,
    uaccess::UserPtr,
};
use pin_init::PinInit;

/// Converts the return value of a C function that returns a count or a
/// negative errno.
fn to_count(ret: isize) -> Result<isize> {
    if ret < 0 {
        // A negative return of these functions is always an errno, which fits `c_int`.
        Err(Error::from_errno(ret as c_int))
    } else {
        Ok(ret)
    }
}

/// A vfio-pci core device (`struct vfio_pci_core_device`).
///
/// # Invariants
///
/// The wrapped device was initialized by `vfio_pci_core_init_dev()` and has
/// not been released yet.
#[repr(transparent)]
pub(crate) struct CoreDevice(Opaque<bindings::vfio_pci_core_device>);

impl CoreDevice {
    fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.0.get()
    }

    fn vfio_device(&self) -> *mut bindings::vfio_device {
        // SAFETY: By the type invariant `self` is a valid core device, so the
        // projection stays in bounds.
        unsafe { addr_of_mut!((*self.as_raw()).vdev) }
    }

    /// The PCI function.
    pub(crate) fn pci(&self) -> &PciFunction {
        // SAFETY: `pdev` is set by `vfio_pci_core_init_dev()` (type invariant) and
        // the PCI device outlives the core device, which references it.
        unsafe { PciFunction::from_raw((*self.as_raw()).pdev) }
    }

    /// Whether the core mapped BAR `bar` when the device was opened (it did
    /// not for absent BARs, the upper half of 64-bit BARs, I/O port BARs it
    /// could not map, or BARs it could not request).
    pub(crate) fn bar_mapped(&self, bar: u32) -> bool {
        let Some(bar) = usize::try_from(bar).ok().filter(|&b| b < 6) else {
            return false;
        };
        // SAFETY: The core device is valid (type invariant); callers are device-fd
        // callbacks, so the device is open and `barmap` set up by the core.
        let map = unsafe { (*self.as_raw()).barmap[bar] };
        // SAFETY: `IS_ERR` only inspects the pointer value.
        !map.is_null() && !unsafe { kernel::bindings::IS_ERR(map.cast_const()) }
    }

    /// Takes the device's `memory_lock` for writing: BAR access is blocked
    /// and the memory-enable state cannot change.
    pub(crate) fn memory_lock_write(&self) -> MemoryLockWrite<'_> {
        // SAFETY: By the type invariant the core device and its
        // `memory_lock` are valid.
        unsafe { kernel::bindings::down_write(addr_of_mut!((*self.as_raw()).memory_lock)) };
        MemoryLockWrite(self)
    }

    /// Takes the device's `memory_lock` for reading, as page faults of BAR
    /// mappings do: the device's memory state cannot change meanwhile.
    pub(crate) fn memory_lock_read(&self) -> MemoryLockRead<'_> {
        // SAFETY: By the type invariant the core device and its
        // `memory_lock` are valid.
        unsafe { kernel::bindings::down_read(addr_of_mut!((*self.as_raw()).memory_lock)) };
        MemoryLockRead(self)
    }

    /// Whether the device has a reset method (`VFIO_DEVICE_RESET` is refused
    /// with `EINVAL` otherwise).
    pub(crate) fn reset_works(&self) -> bool {
        // SAFETY: By the type invariant the core device is valid; the flag is
        // set once in `vfio_pci_core_enable()`, before any device-fd callback.
        unsafe { bindings::vfio_pci_core_device::reset_works_raw(self.as_raw()) }
    }

    /// Takes `memory_lock` for writing unless someone holds it.
    pub(crate) fn try_memory_lock_write(&self) -> Option<MemoryLockWrite<'_>> {
        // SAFETY: By the type invariant the core device and its
        // `memory_lock` are valid.
        let locked = unsafe {
            kernel::bindings::down_write_trylock(addr_of_mut!((*self.as_raw()).memory_lock))
        };
        // The guard releases the lock on drop: build it only when locked.
        (locked != 0).then(|| MemoryLockWrite(self))
    }

    /// Enables the device for a user: `vfio_pci_core_enable()`.
    pub(crate) fn enable(&self) -> Result {
        // SAFETY: By the type invariant the core device is valid; vfio calls
        // `open_device` with the device set's lock held, as the function needs.
        to_result(unsafe { bindings::vfio_pci_core_enable(self.as_raw()) })
    }

    /// Completes [`CoreDevice::enable`] once the driver's own setup is done.
    pub(crate) fn finish_enable(&self) {
        // SAFETY: As for `enable`; called only after it succeeded.
        unsafe { bindings::vfio_pci_core_finish_enable(self.as_raw()) }
    }

    /// Tears down what `open_device` set up: `vfio_pci_core_close_device()`
    /// (through [`Device::close_core`], which first takes back the BAR
    /// mappings the driver made).
    fn close_device(&self) {
        // SAFETY: By the type invariant the core device is valid; vfio calls
        // `close_device` once per successful `open_device`.
        unsafe { bindings::vfio_pci_core_close_device(self.vfio_device()) }
    }

    /// The core's handling of a device-fd ioctl.
    pub(crate) fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        // SAFETY: By the type invariant the core device is valid; `arg` is
        // the user's argument, which the core validates itself.
        let ret = unsafe { bindings::vfio_pci_core_ioctl(self.vfio_device(), cmd, arg) };
        to_count(ret as isize)
    }

    /// The core's handling of `VFIO_DEVICE_FEATURE`.
    pub(crate) fn device_feature(&self, flags: u32, arg: UserPtr, argsz: usize) -> Result<i32> {
        // SAFETY: By the type invariant the core device is valid; `arg` and
        // `argsz` come from the user and the core validates them itself.
        let ret = unsafe {
            bindings::vfio_pci_core_ioctl_feature(
                self.vfio_device(),
                flags,
                arg.as_mut_ptr(),
                argsz,
            )
        };
        to_count(ret as isize).map(|n| n as i32)
    }

    /// The core's handling of a `write()` on the device fd.
    pub(crate) fn write(&self, buf: UserPtr, count: usize, pos: &mut i64) -> Result<isize> {
        // SAFETY: By the type invariant the core device is valid; `buf` and
        // `count` come from the user and the core copies with uaccess.
        let ret = unsafe {
            bindings::vfio_pci_core_write(
                self.vfio_device(),
                buf.as_mut_ptr().cast::<c_char>(),
                count,
                pos,
            )
        };
        to_count(ret)
    }
}

/// The device's `memory_lock`, held for writing.
pub(crate) struct MemoryLockWrite<'a>(&'a CoreDevice);

impl MemoryLockWrite<'_> {
    /// Whether the device decodes memory: memory enable set (as the user
    /// sees it) and not in D3.
    ///
    /// `false` while the device is not open: the core allocates the virtual
    /// config space (`vconfig`) late in open and frees it early in close,
    /// and resets run in both windows.
    pub(crate) fn memory_enabled(&self) -> bool {
        // `vconfig` is set by `vfio_pci_core_enable()` (open) and freed and
        // cleared by `vfio_pci_core_disable()` (close), both without
        // `memory_lock`.  The driver calls this only from an ioctl of the open
        // device fd (export), which close cannot overlap, or with buffers
        // listed, which begins after open returned and ends, under
        // `memory_lock`, before the core closes (revoke.rs `sync`): a caller
        // contract the guard does not enforce yet (hardening issue).
        // SAFETY: The core device is valid (type invariant); neither open nor
        // close runs meanwhile (above).
        if unsafe { (*self.0.as_raw()).vconfig }.is_null() {
            return false;
        }
        // SAFETY: The core device is valid, its `memory_lock` is held, as the
        // function requires, and its virtual config space exists.
        unsafe { bindings::__vfio_pci_memory_enabled(self.0.as_raw()) }
    }

    /// Brings the device's memory and I/O decode back to what the user last
    /// wrote to the command register where the hardware lost it; whether the
    /// device decodes as the user set it afterwards.
    ///
    /// The core decides on the user's bits (its virtual config space), the
    /// device decodes by its own register, and a return from D3hot can part
    /// them: the core takes a device without No_Soft_Reset back to D0 (a
    /// PMCSR write, its resets, runtime suspend) with the config space it
    /// saved on entering D3hot, older than a command write made in D3hot,
    /// and the PCI core's own way back (inside a function reset) leaves the
    /// soft reset's cleared register.  Decode is turned on again only over
    /// BARs that still hold what the core assigned at open, as the core's own
    /// command write checks; without them (an error recovery lost them) it
    /// stays off, `false`, until the user enables memory and the core
    /// restores them.
    ///
    /// `true` when there is nothing to compare: the device is not open, has
    /// no memory enable of its own (a VF), or does not answer (D3cold).
    /// Callers as for [`Self::memory_enabled`].
    pub(crate) fn restore_user_decode(&self) -> bool {
        const DECODE: u16 = PCI_COMMAND_MEMORY | PCI_COMMAND_IO;
        let raw = self.0.as_raw();
        // SAFETY: The core device is valid (type invariant); neither open nor
        // close runs meanwhile (the callers' contract of `memory_enabled`).
        let vconfig = unsafe { (*raw).vconfig };
        let pci = self.0.pci();
        if vconfig.is_null() || pci.no_command_memory() {
            return true;
        }
        // The core writes its command register only under `memory_lock`,
        // which is held.
        // SAFETY: The virtual config space covers the standard header.
        let user_cmd = unsafe {
            vconfig
                .add(usize::from(PCI_COMMAND))
                .cast::<u16>()
                .read_unaligned()
        };
        let user = u16::from_le(user_cmd) & DECODE;
        let Some(hw) = pci.read_config_word(PCI_COMMAND) else {
            return true;
        };
        if hw & DECODE == user {
            return true;
        }
        if user & !hw != 0 && !self.bars_as_assigned() {
            return false;
        }
        pci.write_config_word(PCI_COMMAND, (hw & !DECODE) | user)
    }

    /// Whether every BAR holds the value the core read at open
    /// (`vfio_need_bar_restore()` negated).
    fn bars_as_assigned(&self) -> bool {
        // SAFETY: The core device is valid (type invariant); `rbar` is set at
        // open, before any caller can hold the device, and not changed after.
        let rbar = unsafe { (*self.0.as_raw()).rbar };
        let pci = self.0.pci();
        (PCI_BASE_ADDRESS_0..)
            .step_by(4)
            .zip(&rbar[..6])
            .filter(|&(_, &assigned)| assigned != 0)
            .all(|(reg, &assigned)| pci.read_config_dword(reg) == Some(assigned))
    }

    /// Unmaps every page of BAR `bar` that the device fd's mappings map: they
    /// fault in again, with the memory type the pages have then.
    pub(crate) fn zap_device_mappings(&self, bar: u32) {
        if bar >= NUM_BARS {
            return;
        }
        // SAFETY: The core device is valid (type invariant) and so is the
        // inode of its vfio device; `bar` is a standard BAR.
        unsafe { bindings::dmabuf_vfio_zap_bar(self.0.as_raw(), bar as c_int) };
    }

    /// Whether the user's `LOW_POWER_ENTRY` holds: the core sets this when
    /// an entry succeeds and clears it when the device leaves low power
    /// (`LOW_POWER_EXIT`, a wakeup, close), whatever a failed call did.
    pub(crate) fn low_power_engaged(&self) -> bool {
        // The core reads and writes `pm_runtime_engaged` only under `memory_lock`.
        // SAFETY: The core device is valid (type invariant); the lock is held.
        unsafe { (*self.0.as_raw()).pm_runtime_engaged }
    }
}

/// The device's `memory_lock`, held for reading.
pub(crate) struct MemoryLockRead<'a>(&'a CoreDevice);

impl MemoryLockRead<'_> {
    /// Maps `pfn` (and the `1 << order` pages after it) at the faulting
    /// address, if the device decodes memory and is not in low power
    /// (`vfio_pci_vmf_insert_pfn()`); otherwise the access gets `SIGBUS`.
    /// Orders the architecture cannot map fall back.
    pub(crate) fn insert_pfn(&self, fault: &Fault, pfn: usize, order: u32) -> FaultOutcome {
        // `vconfig` is set and freed by the core's open and close without
        // `memory_lock` (see `memory_enabled`).  Faults reach this only for a
        // buffer found not revoked under its state lock, and buffers are
        // revoked for good before their device closes: a caller contract the
        // guard does not enforce yet (hardening issue).
        // SAFETY: The core device is valid (type invariant); neither open nor
        // close runs meanwhile (above).
        if unsafe { (*self.0.as_raw()).vconfig }.is_null() {
            return FaultOutcome::SIGBUS;
        }
        // SAFETY: `memory_lock` is held for reading, the device's config
        // space exists, and the fault is being handled.
        FaultOutcome::from_raw(unsafe {
            bindings::vfio_pci_vmf_insert_pfn(self.0.as_raw(), fault.as_raw(), pfn, order)
        })
    }
}

impl Drop for MemoryLockRead<'_> {
    fn drop(&mut self) {
        // SAFETY: `memory_lock_read` took the lock.
        unsafe { kernel::bindings::up_read(addr_of_mut!((*self.0.as_raw()).memory_lock)) };
    }
}

impl Drop for MemoryLockWrite<'_> {
    fn drop(&mut self) {
        // SAFETY: `memory_lock_write` took the lock.
        unsafe { kernel::bindings::up_write(addr_of_mut!((*self.0.as_raw()).memory_lock)) };
    }
}

/// A pointer from a device's driver data back to the device.
///
/// # Invariants
///
/// Points to the [`Device<T>`] whose driver data holds this value, so the
/// device is valid as long as the value exists.
pub(crate) struct BackRef<T: VariantDriver>(NonNull<Device<T>>);

// SAFETY: Only shared references to the device are handed out; `Device<T>`
// is `Sync` (`T: Sync`, the core device synchronizes itself).
unsafe impl<T: VariantDriver> Send for BackRef<T> {}
// SAFETY: As above.
unsafe impl<T: VariantDriver> Sync for BackRef<T> {}

impl<T: VariantDriver> BackRef<T> {
    /// # Safety
    ///
    /// The value must be stored in `dev`'s driver data (and not moved out).
    pub(crate) unsafe fn new(dev: &Device<T>) -> Self {
        // INVARIANT: The caller keeps the value inside the device's data.
        Self(NonNull::from(dev))
    }
}

impl<T: VariantDriver> core::ops::Deref for BackRef<T> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // SAFETY: By the type invariant the device outlives the value.
        unsafe { self.0.as_ref() }
    }
}

/// A reference on a device's vfio registration.
///
/// # Invariants
///
/// Owns one registration reference of a valid [`Device<T>`]; the device
/// cannot be unregistered, so it stays valid, while the reference exists.
pub(crate) struct DeviceRegistration<T: VariantDriver>(NonNull<Device<T>>, PhantomData<fn() -> T>);

// SAFETY: The reference may be dropped from any thread; `Device<T>` is `Sync`
// because `T: Sync` and the core device synchronizes itself.
unsafe impl<T: VariantDriver> Send for DeviceRegistration<T> {}
// SAFETY: Only shared references to the device are handed out.
unsafe impl<T: VariantDriver> Sync for DeviceRegistration<T> {}

impl<T: VariantDriver> core::ops::Deref for DeviceRegistration<T> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // SAFETY: By the type invariant the device is valid.
        unsafe { self.0.as_ref() }
    }
}

impl<T: VariantDriver> Drop for DeviceRegistration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one registration reference.
        unsafe { bindings::vfio_device_put_registration(self.core().vfio_device()) };
    }
}

/// Number of standard BARs (`PCI_STD_NUM_BARS`).
const NUM_BARS: u32 = 6;

/// Bits of a device fd offset below the region index.
const VFIO_PCI_OFFSET_SHIFT: u32 = 40;

/// Whether a `read()` or `write()` of the device fd at `pos` may go through
/// a BAR's kernel mapping: the regions of the six BARs do; the ROM, config
/// space and VGA regions have mappings of their own or none.
fn reaches_bar_map(pos: i64) -> bool {
    (0..i64::from(NUM_BARS)).contains(&(pos >> VFIO_PCI_OFFSET_SHIFT))
}

/// `VFIO_DEVICE_IOEVENTFD`: `_IO(VFIO_TYPE, VFIO_BASE + 16)`.
const VFIO_DEVICE_IOEVENTFD: u32 = (b';' as u32) << 8 | (100 + 16);

/// A kernel mapping of a BAR's pages, uncached-minus, that reserves no
/// memory type (`vmap_pfn()`), made in place of vfio-pci-core's `ioremap()`.
///
/// # Invariants
///
/// `0` is a mapping returned by `dmabuf_vfio_bar_map_untyped()`, owned.
struct UntypedBarMap(NonNull<c_void>);

// SAFETY: The mapping is plain kernel virtual memory; any thread may unmap it.
unsafe impl Send for UntypedBarMap {}

impl Drop for UntypedBarMap {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the mapping is ours and mapped.
        unsafe { bindings::dmabuf_vfio_bar_unmap_untyped(self.0.as_ptr()) };
    }
}

/// The BAR mappings of an open device that the driver took over.
struct OwnedBarMaps {
    /// The device is open (between a successful `open_device` and
    /// [`Device::close_core`]): the core's BAR mappings exist.
    open: bool,
    maps: [Option<UntypedBarMap>; NUM_BARS as usize],
}

/// What lets a driver change the memory type of BAR ranges (x86 PAT):
/// vfio-pci-core's kernel mapping of a BAR reserves the whole BAR
/// uncached-minus, and its users read `barmap[]` without a lock.
///
/// Every user of a BAR's kernel mapping runs in a section of `users`, or
/// under `owned`: the device fd's `read()` and `write()` in `users`,
/// `VFIO_DEVICE_IOEVENTFD` (whose ioeventfds keep an address in the
/// mapping) under `owned`.  The device fd's huge faults run in `users` too.
#[pin_data]
struct BarMaps {
    #[pin]
    users: Srcu,
    #[pin]
    owned: Mutex<OwnedBarMaps>,
    /// BARs whose kernel mapping is the driver's: the device fd maps them in
    /// pages.  Set before `users` is synchronized, cleared once closed.
    untyped: [Atomic<bool>; NUM_BARS as usize],
}

impl BarMaps {
    fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            users <- kernel::new_srcu!(),
            owned <- kernel::new_mutex!(OwnedBarMaps {
                open: false,
                maps: [const { None }; NUM_BARS as usize],
            }),
            untyped: [const { Atomic::new(false) }; NUM_BARS as usize],
        })
    }
}

/// A device bound to a variant driver: the vfio-pci core device followed by
/// the driver's data.
///
/// # Invariants
///
/// `core` is the first field (vfio's allocator requires the `vfio_device` at
/// offset zero) and is a valid [`CoreDevice`]; `bars` and `data` are
/// initialized from the `init` callback to the `release` callback.
#[repr(C)]
pub(crate) struct Device<T> {
    core: CoreDevice,
    bars: BarMaps,
    data: T,
}

impl<T> Device<T> {
    /// The vfio-pci core part of the device.
    pub(crate) fn core(&self) -> &CoreDevice {
        &self.core
    }

    /// Lets ranges of BAR `bar` be reserved with another memory type than
    /// uncached-minus, the type vfio-pci-core's kernel mapping holds the
    /// whole BAR with on x86 with PAT: replaces that mapping, until the
    /// device is closed, by one of the same pages that reserves no type.
    /// The device fd then maps the BAR in pages, since a huge entry maps
    /// all of its pages with the type of its first.  Nothing to do where
    /// memory types are not tracked.
    ///
    /// `EBUSY` while the device has ioeventfds (each holds an address in
    /// the core's mapping) or where the kernel cannot map PFNs (no
    /// `CONFIG_VMAP_PFN`); `ENODEV` when the device is not open or the core
    /// did not map the BAR.
    pub(crate) fn free_bar_memtype(&self, bar: u32) -> Result {
        // SAFETY: Reads a global, constant after boot.
        if !unsafe { bindings::dmabuf_vfio_memtypes_tracked() } {
            return Ok(());
        }
        let index = usize::try_from(bar)
            .ok()
            .filter(|&b| b < NUM_BARS as usize)
            .ok_or(EINVAL)?;
        let mut owned = self.bars.owned.lock();
        if !owned.open || !self.core.bar_mapped(bar) {
            return Err(ENODEV);
        }
        if owned.maps[index].is_some() {
            return Ok(());
        }
        let raw = self.core.as_raw();
        // SAFETY: The core device is valid (type invariant) and `owned` is
        // held: no ioeventfd can be added meanwhile.
        if unsafe { bindings::dmabuf_vfio_ioeventfds_in_use(raw) } {
            return Err(EBUSY);
        }
        let pdev = self.core.pci().as_raw();
        // SAFETY: The PCI device is valid; `bar` is a standard BAR.
        let map =
            from_err_ptr(unsafe { bindings::dmabuf_vfio_bar_map_untyped(pdev, bar as c_int) })?;
        // INVARIANT: Just mapped, and owned from here on.
        let map = UntypedBarMap(NonNull::new(map).ok_or(ENOMEM)?);
        // Ordered before the huge faults that follow by the synchronization.
        self.bars.untyped[index].store(true, Relaxed);
        let new_map = map.0.as_ptr();
        // The device is open (`owned.open`, under the lock that close
        // takes), so the core's mapping exists; its users are in `users`
        // sections or under `owned`.
        // SAFETY: As just said.
        let core_map = unsafe { bindings::dmabuf_vfio_bar_swap_map(raw, bar as c_int, new_map) };
        self.bars.users.synchronize();
        // SAFETY: Every user that read the core's mapping is done: the
        // mapping (and the BAR's memory type reservation) can go.
        unsafe { bindings::dmabuf_vfio_bar_unmap_core(pdev, core_map) };
        owned.maps[index] = Some(map);
        Ok(())
    }

    /// Whether [`Device::free_bar_memtype`] took over BAR `bar` while the
    /// device is open: ranges of it may then hold other memory types.
    pub(crate) fn bar_memtype_freed(&self, bar: u32) -> bool {
        usize::try_from(bar)
            .ok()
            .and_then(|b| self.bars.untyped.get(b))
            .is_some_and(|u| u.load(Relaxed))
    }

    /// Closes the core device: `vfio_pci_core_close_device()`, after taking
    /// back the BAR mappings [`Device::free_bar_memtype`] replaced (the core
    /// would `iounmap()` them) and before unmapping them (the core frees the
    /// ioeventfds that use them).
    pub(crate) fn close_core(&self) {
        let maps = {
            let mut owned = self.bars.owned.lock();
            owned.open = false;
            core::mem::replace(&mut owned.maps, [const { None }; NUM_BARS as usize])
        };
        let raw = self.core.as_raw();
        for (bar, _) in maps.iter().enumerate().filter(|(_, m)| m.is_some()) {
            // SAFETY: The device is being closed: no device-fd callback runs.
            // A NULL entry is one the core neither unmaps nor releases.
            unsafe { bindings::dmabuf_vfio_bar_swap_map(raw, bar as c_int, core::ptr::null_mut()) };
        }
        self.core.close_device();
        let pdev = self.core.pci().as_raw();
        for (bar, map) in maps.into_iter().enumerate() {
            if let Some(map) = map {
                drop(map);
                // SAFETY: The core requested the BAR's region when it mapped
                // it and left its release to us (NULL entry above).
                unsafe { bindings::dmabuf_vfio_bar_release_region(pdev, bar as c_int) };
            }
            self.bars.untyped[bar].store(false, Relaxed);
        }
    }
}

impl<T: VariantDriver> Device<T> {
    /// Takes a reference on the device's vfio registration, which makes
    /// unbinding wait until it is dropped.  Fails once unregistering began.
    pub(crate) fn try_get_registration(&self) -> Option<DeviceRegistration<T>> {
        // SAFETY: By the type invariant the core device is valid.
        if unsafe { bindings::vfio_device_try_get_registration(self.core.vfio_device()) } {
            // INVARIANT: The reference was just taken, on this `Device<T>`.
            Some(DeviceRegistration(NonNull::from(self), PhantomData))
        } else {
            None
        }
    }
}

impl<T> core::ops::Deref for Device<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

/// A vfio-pci variant driver: the per-device data and the callbacks it
/// overrides.  Every default delegates to vfio-pci-core.
pub(crate) trait VariantDriver: Send + Sync + Sized + 'static {
    /// The name vfio reports for the device (`vfio_device_ops.name`).
    const NAME: &'static CStr;

    /// Initializes the driver's data once the core device is initialized.
    fn init(core: &CoreDevice) -> impl PinInit<Self, Error>;

    /// A user opened the device (first open of the device set member).
    fn open_device(dev: &Device<Self>) -> Result {
        dev.core().enable()?;
        dev.core().finish_enable();
        Ok(())
    }

    /// The last user closed the device.
    fn close_device(dev: &Device<Self>) {
        dev.close_core()
    }

    /// An ioctl on the device fd.
    fn ioctl(dev: &Device<Self>, cmd: u32, arg: usize) -> Result<isize> {
        dev.core().ioctl(cmd, arg)
    }

    /// `VFIO_DEVICE_FEATURE` on the device fd.
    fn device_feature(dev: &Device<Self>, flags: u32, arg: UserPtr, argsz: usize) -> Result<i32> {
        dev.core().device_feature(flags, arg, argsz)
    }

    /// A `write()` on the device fd (config space, BARs, ...).
    fn write(dev: &Device<Self>, buf: UserPtr, count: usize, pos: &mut i64) -> Result<isize> {
        dev.core().write(buf, count, pos)
    }

    /// The PCI core is about to reset the function (`reset_prepare`).  The
    /// core device's `memory_lock` is held by the caller on resets vfio
    /// started and not held on others (sysfs `reset`): never take it here.
    fn reset_prepare(_dev: &Device<Self>) {}

    /// The reset announced by [`VariantDriver::reset_prepare`] is done.
    fn reset_done(_dev: &Device<Self>) {}

    /// The device is registered with vfio: the driver's data is complete.
    fn probed(_dev: &Device<Self>) {}

    /// An uncorrectable error froze the device's link, or it failed for
    /// good (AER, DPC): error recovery resets the device without
    /// [`VariantDriver::reset_prepare`].  Called before vfio-pci-core
    /// signals the user; `memory_lock` is not held.
    fn io_frozen(_dev: &Device<Self>) {}
}

/// The `vfio_device_ops` of a [`VariantDriver`].
struct VfioOps<T: VariantDriver>(PhantomData<T>);

impl<T: VariantDriver> VfioOps<T> {
    #[cfg_attr(CONFIG_IOMMUFD, allow(clippy::needless_update))]
    const OPS: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: kernel::str::as_char_ptr_in_const_context(T::NAME)
            .cast_mut()
            .cast(),
        init: Some(Self::init),
        release: Some(Self::release),
        #[cfg(CONFIG_IOMMUFD)]
        bind_iommufd: Some(bindings::vfio_iommufd_physical_bind),
        #[cfg(CONFIG_IOMMUFD)]
        unbind_iommufd: Some(bindings::vfio_iommufd_physical_unbind),
        #[cfg(CONFIG_IOMMUFD)]
        attach_ioas: Some(bindings::vfio_iommufd_physical_attach_ioas),
        #[cfg(CONFIG_IOMMUFD)]
        detach_ioas: Some(bindings::vfio_iommufd_physical_detach_ioas),
        #[cfg(CONFIG_IOMMUFD)]
        pasid_attach_ioas: Some(bindings::vfio_iommufd_physical_pasid_attach_ioas),
        #[cfg(CONFIG_IOMMUFD)]
        pasid_detach_ioas: Some(bindings::vfio_iommufd_physical_pasid_detach_ioas),
        open_device: Some(Self::open_device),
        close_device: Some(Self::close_device),
        read: Some(Self::read),
        write: Some(Self::write),
        ioctl: Some(Self::ioctl),
        get_region_info_caps: Some(bindings::vfio_pci_ioctl_get_region_info),
        mmap: Some(Self::mmap),
        request: Some(bindings::vfio_pci_core_request),
        match_: Some(bindings::vfio_pci_core_match),
        match_token_uuid: Some(bindings::vfio_pci_core_match_token_uuid),
        dma_unmap: None,
        device_feature: Some(Self::device_feature),
        // Without CONFIG_IOMMUFD the iommufd callbacks are compiled out and
        // stay NULL, as vfio-pci leaves them.
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::vfio_device_ops {
        &Self::OPS
    }

    /// # Safety
    ///
    /// `vdev` must be the `vfio_device` of a [`Device<T>`] whose core device
    /// is initialized and whose data is initialized.
    unsafe fn device<'a>(vdev: *mut bindings::vfio_device) -> &'a Device<T> {
        // SAFETY: `vdev` is at offset zero of `Device<T>` (type invariant),
        // and the caller guarantees both parts are initialized.
        unsafe { &*vdev.cast::<Device<T>>() }
    }

    /// # Safety
    ///
    /// Called once by vfio as `vfio_device_ops.init` on the zeroed allocation
    /// made by [`Registration::probe`], sized for a [`Device<T>`].
    unsafe extern "C" fn init(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: vfio calls `init` once on the zeroed allocation made by
        // `_vfio_alloc_device()` in `probe`, which is sized for `Device<T>`.
        let ret = unsafe { bindings::vfio_pci_core_init_dev(vdev) };
        if ret != 0 {
            return ret;
        }
        let dev = vdev.cast::<Device<T>>();
        // SAFETY: The core part was just initialized, so it is a valid `CoreDevice`.
        let core = unsafe { &(*dev).core };
        // `bars` and `data` are uninitialized memory inside the allocation,
        // which vfio never moves; on error an initializer leaves nothing to
        // drop.
        // SAFETY: As just said.
        let ret = unsafe { BarMaps::new().__init(addr_of_mut!((*dev).bars)) }.and_then(|()| {
            // SAFETY: As said above.
            let ret = unsafe { T::init(core).__init(addr_of_mut!((*dev).data)) };
            if ret.is_err() {
                // SAFETY: `bars` was initialized above and is not used again.
                unsafe { core::ptr::drop_in_place(addr_of_mut!((*dev).bars)) };
            }
            ret
        });
        match ret {
            Ok(()) => 0,
            Err(e) => {
                // vfio does not call `release` when `init` fails.
                // SAFETY: The core device was initialized above.
                unsafe { bindings::vfio_pci_core_release_dev(vdev) };
                e.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// Called once by vfio as `vfio_device_ops.release` when the last
    /// reference to a device whose `init` succeeded is dropped.
    unsafe extern "C" fn release(vdev: *mut bindings::vfio_device) {
        let dev = vdev.cast::<Device<T>>();
        // SAFETY: `release` is the last callback; `init` succeeded, so `data`
        // and `bars` are initialized, and nothing uses them after this.
        unsafe {
            core::ptr::drop_in_place(addr_of_mut!((*dev).data));
            core::ptr::drop_in_place(addr_of_mut!((*dev).bars));
        }
        // SAFETY: The core device was initialized by `init`.
        unsafe { bindings::vfio_pci_core_release_dev(vdev) };
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.open_device`: `vdev` is the `vfio_device`
    /// of a [`Device<T>`] allocated by [`Registration::probe`], between the
    /// `init` and `release` callbacks.
    unsafe extern "C" fn open_device(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        let dev = unsafe { Self::device(vdev) };
        from_result(|| {
            T::open_device(dev)?;
            dev.bars.owned.lock().open = true;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.close_device`: `vdev` is the `vfio_device`
    /// of a [`Device<T>`] allocated by [`Registration::probe`], between the
    /// `init` and `release` callbacks.
    unsafe extern "C" fn close_device(vdev: *mut bindings::vfio_device) {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        T::close_device(unsafe { Self::device(vdev) })
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.ioctl`: `vdev` is the `vfio_device`
    /// of a [`Device<T>`] allocated by [`Registration::probe`], between the
    /// `init` and `release` callbacks.
    unsafe extern "C" fn ioctl(
        vdev: *mut bindings::vfio_device,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        let dev = unsafe { Self::device(vdev) };
        // An ioeventfd keeps an address in a BAR's kernel mapping.
        let _owned = (cmd == VFIO_DEVICE_IOEVENTFD).then(|| dev.bars.owned.lock());
        match T::ioctl(dev, cmd, arg) {
            Ok(n) => n as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.device_feature`: `vdev` is the `vfio_device`
    /// of a [`Device<T>`] allocated by [`Registration::probe`], between the
    /// `init` and `release` callbacks.
    unsafe extern "C" fn device_feature(
        vdev: *mut bindings::vfio_device,
        flags: u32,
        arg: *mut c_void,
        argsz: usize,
    ) -> c_int {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        let dev = unsafe { Self::device(vdev) };
        from_result(|| T::device_feature(dev, flags, UserPtr::from_ptr(arg), argsz))
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.write`: `vdev` is the `vfio_device`
    /// of a [`Device<T>`] allocated by [`Registration::probe`], between the
    /// `init` and `release` callbacks.
    unsafe extern "C" fn write(
        vdev: *mut bindings::vfio_device,
        buf: *const c_char,
        count: usize,
        ppos: *mut i64,
    ) -> isize {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        let dev = unsafe { Self::device(vdev) };
        // SAFETY: vfio passes the file position of the ongoing write, which
        // nothing else accesses during the call.
        let pos = unsafe { &mut *ppos };
        let _users = reaches_bar_map(*pos).then(|| dev.bars.users.read_lock());
        match T::write(dev, UserPtr::from_ptr(buf.cast_mut().cast()), count, pos) {
            Ok(n) => n,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.read`, as `write` above.
    unsafe extern "C" fn read(
        vdev: *mut bindings::vfio_device,
        buf: *mut c_char,
        count: usize,
        ppos: *mut i64,
    ) -> isize {
        // SAFETY: vfio calls device callbacks only between `init` and `release`.
        let dev = unsafe { Self::device(vdev) };
        // The core reads BARs through their kernel mappings.
        // SAFETY: vfio passes the file position of the ongoing read.
        let _users = reaches_bar_map(unsafe { *ppos }).then(|| dev.bars.users.read_lock());
        // SAFETY: The core device is valid; the arguments are vfio's own.
        unsafe { bindings::vfio_pci_core_read(vdev, buf, count, ppos) }
    }

    /// # Safety
    ///
    /// Called by vfio as `vfio_device_ops.mmap`, as `write` above.
    unsafe extern "C" fn mmap(
        vdev: *mut bindings::vfio_device,
        vma: *mut kernel::bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The core device is valid; the VMA is being set up by mmap().
        unsafe { bindings::dmabuf_vfio_device_mmap(vdev, vma, Some(Self::bar_huge_fault)) }
    }

    /// A huge fault of the device fd's mapping of BAR `bar`: the core's,
    /// unless the BAR's pages may have several memory types.
    ///
    /// # Safety
    ///
    /// Called by the glue's `huge_fault` of a VMA that `mmap` set up, for the
    /// core device `vdev` of a [`Device<T>`].
    unsafe extern "C" fn bar_huge_fault(
        vdev: *mut bindings::vfio_pci_core_device,
        bar: c_uint,
        vmf: *mut kernel::bindings::vm_fault,
        order: c_uint,
    ) -> kernel::bindings::vm_fault_t {
        // SAFETY: The VMA holds the device fd, so the device is open, hence
        // between `init` and `release`; the core device is at offset zero.
        let dev = unsafe { Self::device(vdev.cast()) };
        let _users = dev.bars.users.read_lock();
        if order > 0 && dev.bar_memtype_freed(bar) {
            return FaultOutcome::FALLBACK.into_raw();
        }
        // SAFETY: The fault is being handled on a VMA of the core's.
        unsafe { bindings::dmabuf_vfio_core_huge_fault(vmf, order) }
    }
}

/// The module's PCI driver, registered while this value lives.
///
/// It binds devices only through `driver_override` and probes each one as a
/// [`Device<T>`] registered with vfio.
pub(crate) struct Registration<T: VariantDriver>(PhantomData<T>);

impl<T: VariantDriver> Registration<T> {
    /// Registers the PCI driver.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Registration happens once, from module init; `Drop`
        // unregisters before the module (and these functions) go away.
        to_result(unsafe {
            bindings::dmabuf_vfio_register_driver(
                Some(Self::probe),
                Some(Self::remove),
                Some(Self::reset_prepare),
                Some(Self::reset_done),
                Some(Self::io_frozen),
            )
        })?;
        Ok(Self(PhantomData))
    }

    /// # Safety
    ///
    /// Called by the PCI core as `pci_driver.probe` with a valid device.
    unsafe extern "C" fn probe(
        pdev: *mut kernel::bindings::pci_dev,
        _id: *const kernel::bindings::pci_device_id,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The PCI core passes a valid device for the duration of probe.
            let dev = unsafe { addr_of_mut!((*pdev).dev) };
            // SAFETY: `dev` is valid, the ops are `'static`, and the size
            // covers `Device<T>`, whose `vfio_device` is at offset zero.
            let vdev = from_err_ptr(unsafe {
                bindings::_vfio_alloc_device(size_of::<Device<T>>(), dev, VfioOps::<T>::build())
            })?;
            let core = vdev.cast::<bindings::vfio_pci_core_device>();
            // vfio-pci-core finds its device through the drvdata.
            // SAFETY: `dev` is valid and being probed by this driver.
            unsafe { kernel::bindings::dev_set_drvdata(dev, core.cast()) };
            // SAFETY: `core` was allocated and initialized above.
            let ret = unsafe { bindings::vfio_pci_core_register_device(core) };
            if ret != 0 {
                // SAFETY: Drops the allocation's reference; `release` runs.
                unsafe { bindings::dmabuf_vfio_put_device(vdev) };
                return Err(Error::from_errno(ret));
            }
            // SAFETY: Probe succeeded: the device is bound.
            T::probed(unsafe { Self::bound_device(pdev) });
            Ok(0)
        })
    }

    /// The device [`Registration::probe`] bound to `pdev`.
    ///
    /// # Safety
    ///
    /// `pdev` must be bound to this driver (probe succeeded, remove not done).
    unsafe fn bound_device<'a>(pdev: *mut kernel::bindings::pci_dev) -> &'a Device<T> {
        // SAFETY: `probe` stored the `Device<T>` (its core device first) as
        // drvdata, and it lives until `remove`.
        unsafe {
            &*kernel::bindings::dev_get_drvdata(addr_of_mut!((*pdev).dev)).cast::<Device<T>>()
        }
    }

    /// # Safety
    ///
    /// Called by the PCI core as `err_handler.reset_prepare` for a device
    /// bound to this driver, with the device lock held.
    unsafe extern "C" fn reset_prepare(pdev: *mut kernel::bindings::pci_dev) {
        // SAFETY: The device is bound while the PCI core holds its lock.
        T::reset_prepare(unsafe { Self::bound_device(pdev) })
    }

    /// # Safety
    ///
    /// Called by the PCI core as `err_handler.reset_done`, as above.
    unsafe extern "C" fn reset_done(pdev: *mut kernel::bindings::pci_dev) {
        // SAFETY: The device is bound while the PCI core holds its lock.
        T::reset_done(unsafe { Self::bound_device(pdev) })
    }

    /// # Safety
    ///
    /// Called by the glue's `err_handler.error_detected` for a device bound
    /// to this driver whose link froze or failed, with the device lock held.
    unsafe extern "C" fn io_frozen(pdev: *mut kernel::bindings::pci_dev) {
        // SAFETY: The device is bound while the PCI core holds its lock.
        T::io_frozen(unsafe { Self::bound_device(pdev) })
    }

    /// # Safety
    ///
    /// Called by the PCI core as `pci_driver.remove` for a device that
    /// [`Registration::probe`] bound.
    unsafe extern "C" fn remove(pdev: *mut kernel::bindings::pci_dev) {
        // SAFETY: The PCI core passes a device this driver probed successfully.
        let dev = unsafe { addr_of_mut!((*pdev).dev) };
        // SAFETY: `probe` stored the core device as drvdata.
        let core = unsafe { kernel::bindings::dev_get_drvdata(dev) }
            .cast::<bindings::vfio_pci_core_device>();
        // SAFETY: Unregistering waits for every user of the device to go away.
        unsafe { bindings::vfio_pci_core_unregister_device(core) };
        // SAFETY: Drops probe's reference; the `vfio_device` is the first field.
        unsafe { bindings::dmabuf_vfio_put_device(core.cast()) };
    }
}

impl<T: VariantDriver> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: `new` registered the driver.
        unsafe { bindings::dmabuf_vfio_unregister_driver() };
    }
}
