// SPDX-License-Identifier: GPL-2.0

//! dmabuf-vfio-pci: a vfio-pci variant driver that exports PCI BAR ranges as
//! dma-bufs.
//!
//! The driver binds any PCI device through `driver_override`, like vfio-pci,
//! and runs it on vfio-pci-core.  It answers `VFIO_DEVICE_FEATURE_DMA_BUF`
//! itself, with the uAPI, errnos and lifetimes of Linux 7.3's in-tree
//! exporter: the per-device list of exported buffers lives here, [`p2pdma`]
//! decides how an importer reaches the BAR, [`revoke`] cuts importers off
//! whenever the BAR becomes unsafe, and [`mmap`] maps buffers into processes.

use core::ptr;
use kernel::{
    alloc::flags,
    device,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex, SetOnce,
    },
    uaccess::{UserPtr, UserSlice},
};

// The driver logic: safe Rust, no FFI.
mod debugfs;
mod mmap;
mod p2pdma;
mod revoke;

// The abstraction layer: every raw C call of the crate.
mod kernel_ext {
    //! Safe abstractions over the C APIs the driver uses, shaped as the
    //! kernel crate's own: each file is named after the `rust/kernel/` file
    //! it would extend or add upstream, and says what upstream has already.
    //! The layer imports nothing from the driver logic; it builds on
    //! `kernel` and on the module's own [`bindings`].

    pub(crate) mod alloc;
    pub(crate) mod bindings;
    pub(crate) mod dma_buf;
    pub(crate) mod mm {
        //! Memory management (`rust/kernel/mm/`).
        pub(crate) mod virt;
    }
    pub(crate) mod module;
    pub(crate) mod pci;
    pub(crate) mod sync {
        //! Synchronization primitives (`rust/kernel/sync/`).
        pub(crate) mod wait;
    }
    pub(crate) mod tracepoint;
    pub(crate) mod uapi;
    pub(crate) mod vfio;
    pub(crate) mod workqueue;
}

use kernel_ext::{
    alloc::{KfreeBox, KfreeVec},
    dma_buf::{self, Attachment, DmaDirection, DmaTable, Exported, Exporter, PhysRange},
    mm::virt::{Fault, FaultOutcome, MemAttr, NewVma, WcReservation},
    module,
    pci::P2pProvider,
    sync::wait::ZeroWaitCount,
    tracepoint as trace, uapi,
    vfio::{self, CoreDevice, Device, DeviceRegistration, Registration, VariantDriver},
    workqueue as wq,
};
use p2pdma::MapType;

module! {
    type: DmabufVfioPciModule,
    name: "dmabuf_vfio_pci",
    authors: ["dmabuf-vfio-pci developers"],
    description: "VFIO PCI variant driver exporting BAR ranges as dma-bufs",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

/// Per-device data of the driver, behind the vfio-pci core device.
///
/// Lock order: the core's `memory_lock` → [`DmabufVfioPci::exports`] → a
/// dma-buf's reservation lock → [`ExportedBar::state`].
#[pin_data]
struct DmabufVfioPci {
    /// Tells this binding of the device from every other, past or future:
    /// a buffer outlives its device, and a device bound later may get the
    /// same address.
    serial: u64,
    /// The device's debugfs directory; declared first, so it is removed
    /// (and its readers are done) before the data it shows is dropped.
    #[pin]
    debugfs: Mutex<Option<debugfs::DeviceDir>>,
    #[pin]
    exports: Mutex<Exports>,
    /// Routes importers took to this device's BARs.
    #[pin]
    routes: Mutex<p2pdma::RouteCache>,
    /// What happened to the device's buffers (debugfs).
    stats: Stats,
}

/// Counters of a device's buffers, shown in debugfs.
struct Stats {
    exports: Atomic<u64>,
    revokes: [Atomic<u64>; revoke::Cause::COUNT],
    unrevokes: Atomic<u64>,
    /// CPU faults that mapped, by size: page, PMD, PUD.
    faults: [Atomic<u64>; 3],
    /// Huge faults that fell back to a smaller size.
    fallbacks: Atomic<u64>,
    /// CPU faults answered with `SIGBUS`.
    sigbus: Atomic<u64>,
}

impl Stats {
    const fn new() -> Self {
        Self {
            exports: Atomic::new(0),
            revokes: [const { Atomic::new(0) }; revoke::Cause::COUNT],
            unrevokes: Atomic::new(0),
            faults: [const { Atomic::new(0) }; 3],
            fallbacks: Atomic::new(0),
            sigbus: Atomic::new(0),
        }
    }

    fn revoked(&self, cause: revoke::Cause) {
        self.revokes[cause.index()].add(1, Relaxed);
    }

    fn unrevoked(&self) {
        self.unrevokes.add(1, Relaxed);
    }

    fn faulted(&self, order: u32, outcome: FaultOutcome) {
        if outcome == FaultOutcome::SIGBUS {
            self.sigbus.add(1, Relaxed);
        } else if outcome == FaultOutcome::FALLBACK {
            self.fallbacks.add(1, Relaxed);
        } else {
            let size = match order {
                0 => 0,
                o if o < 18 => 1,
                _ => 2,
            };
            self.faults[size].add(1, Relaxed);
        }
    }
}

/// The device's exported buffers and what keeps them revoked.
struct Exports {
    /// Live exported buffers.
    list: KVec<Arc<Exported<ExportedBar>>>,
    /// Events in progress that make the BARs unsafe (resets, FLR, D3).
    in_progress: u32,
    /// `LOW_POWER_ENTRY` calls between revoking for them and reading the
    /// core's state after them: the core may not be in low power yet.
    entering_low_power: u32,
    /// The device lost the BARs vfio-pci-core assigned (an uncorrectable
    /// error froze the link and the recovery reset it, or a reset found them
    /// gone) and nobody restored them yet: it must not decode memory.
    lost_state: bool,
    /// Every listed buffer is known accessible (`Some(true)`, buffers
    /// revoked for good aside) or revoked (`Some(false)`); `None`: unknown.
    synced: Option<bool>,
}

impl VariantDriver for DmabufVfioPci {
    const NAME: &'static CStr = c"dmabuf-vfio-pci";

    fn init(_core: &CoreDevice) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // 2^64 bindings cannot happen: the serial is never reused.
            serial: NEXT_SERIAL.fetch_add(1, Relaxed),
            debugfs <- kernel::new_mutex!(None),
            exports <- kernel::new_mutex!(Exports {
                list: KVec::new(),
                in_progress: 0,
                entering_low_power: 0,
                lost_state: false,
                synced: None,
            }),
            routes <- kernel::new_mutex!(p2pdma::RouteCache::new()),
            stats: Stats::new(),
        })
    }

    fn probed(dev: &Device<Self>) {
        // SAFETY: The reference is stored in `dev`'s own data.
        let back = unsafe { vfio::BackRef::new(dev) };
        *dev.debugfs.lock() = debugfs::create_device_dir(dev.core().pci().device().name(), back);
    }

    fn close_device(dev: &Device<Self>) {
        // Importers must be gone before the core disables the device.
        revoke::release_all(dev);
        dev.close_core();
    }

    fn device_feature(dev: &Device<Self>, flags: u32, arg: UserPtr, argsz: usize) -> Result<i32> {
        let feature = flags & uapi::VFIO_DEVICE_FEATURE_MASK;
        if feature == uapi::VFIO_DEVICE_FEATURE_DMA_BUF {
            if !check_feature(
                flags,
                argsz,
                uapi::VFIO_DEVICE_FEATURE_GET,
                DMA_BUF_HEADER_SIZE,
            )? {
                return Ok(0);
            }
            return export(dev, arg);
        }
        let set = flags & uapi::VFIO_DEVICE_FEATURE_SET != 0
            && flags & uapi::VFIO_DEVICE_FEATURE_PROBE == 0;
        match feature {
            uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
            | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
                if set =>
            {
                revoke::low_power_entry(dev, || dev.core().device_feature(flags, arg, argsz))
            }
            uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT if set => {
                revoke::low_power_exit(dev, || dev.core().device_feature(flags, arg, argsz))
            }
            uapi::DMABUF_VFIO_PCI_FEATURE_REVOKE => {
                if !check_feature(flags, argsz, uapi::VFIO_DEVICE_FEATURE_SET, 4)? {
                    return Ok(0);
                }
                let fd = UserSlice::new(arg, 4).reader().read::<i32>()?;
                revoke::revoke_for_good(dev, fd).map(|()| 0)
            }
            uapi::DMABUF_VFIO_PCI_FEATURE_MEMATTR => {
                let ops = uapi::VFIO_DEVICE_FEATURE_SET | uapi::VFIO_DEVICE_FEATURE_GET;
                if !check_feature(flags, argsz, ops, 8)? {
                    return Ok(0);
                }
                mmap::memattr_feature(dev, flags & uapi::VFIO_DEVICE_FEATURE_SET != 0, arg)
                    .map(|()| 0)
            }
            _ => dev.core().device_feature(flags, arg, argsz),
        }
    }

    fn reset_prepare(dev: &Device<Self>) {
        revoke::reset_prepare(dev);
    }

    fn reset_done(dev: &Device<Self>) {
        revoke::reset_done(dev);
    }

    fn io_frozen(dev: &Device<Self>) {
        revoke::io_frozen(dev);
    }

    fn ioctl(dev: &Device<Self>, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            // Without a reset method the core refuses the reset and touches nothing.
            revoke::VFIO_DEVICE_RESET if !dev.core().reset_works() => dev.core().ioctl(cmd, arg),
            revoke::VFIO_DEVICE_RESET => {
                revoke::across_user_reset(dev, revoke::Cause::DeviceReset, || {
                    dev.core().ioctl(cmd, arg)
                })
            }
            revoke::VFIO_DEVICE_PCI_HOT_RESET => {
                revoke::across_user_reset(dev, revoke::Cause::HotReset, || {
                    dev.core().ioctl(cmd, arg)
                })
            }
            _ => dev.core().ioctl(cmd, arg),
        }
    }

    fn write(dev: &Device<Self>, buf: UserPtr, count: usize, pos: &mut i64) -> Result<isize> {
        match revoke::config_write_event(dev.core(), count, *pos) {
            Some(cause) => {
                revoke::across_config_write(dev, cause, || dev.core().write(buf, count, pos))
            }
            None => dev.core().write(buf, count, pos),
        }
    }
}

/// Size of `struct vfio_device_feature_dma_buf` without its ranges.
/// The serial of the next device bound to the driver.
static NEXT_SERIAL: Atomic<u64> = Atomic::new(1);

const DMA_BUF_HEADER_SIZE: usize = 16;
/// Size of one `struct vfio_region_dma_range`.
const DMA_RANGE_SIZE: usize = 16;
/// `DMA_IOVA_USE_SWIOTLB`: a size with this bit set cannot be mapped.
const DMA_IOVA_USE_SWIOTLB: u64 = 1 << 63;
/// Index of the first region that is not a standard BAR.
const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;

/// `vfio_check_feature()`: `Ok(false)` for a successful probe, `Ok(true)` to
/// carry the request out.
fn check_feature(flags: u32, argsz: usize, supported: u32, minsz: usize) -> Result<bool> {
    let ops = flags & (uapi::VFIO_DEVICE_FEATURE_GET | uapi::VFIO_DEVICE_FEATURE_SET);
    if ops & !supported != 0 {
        return Err(EINVAL);
    }
    if flags & uapi::VFIO_DEVICE_FEATURE_PROBE != 0 {
        return Ok(false);
    }
    if ops == 0 || argsz < minsz {
        return Err(EINVAL);
    }
    Ok(true)
}

fn page_aligned(value: u64) -> bool {
    value & (kernel::page::PAGE_SIZE as u64 - 1) == 0
}

/// Ranges of an export request copied to the stack; requests with more go
/// to the heap.  QEMU asks for one range per buffer.
const INLINE_REQUEST_RANGES: usize = 16;

/// The `(offset, length)` ranges of an export request, as copied from the
/// user.
struct RequestedRanges<'a>(&'a [u8]);

/// Where [`RequestedRanges::read`] copies a request's ranges to: the
/// stack for a few, the heap for more.
struct RequestBuffer {
    inline: [u8; INLINE_REQUEST_RANGES * DMA_RANGE_SIZE],
    // Created only when needed: dropping even an empty `KVec` calls the
    // allocator (see `kernel_ext::alloc`).
    heap: Option<KVec<u8>>,
}

impl RequestBuffer {
    fn new() -> Self {
        Self {
            inline: [0; INLINE_REQUEST_RANGES * DMA_RANGE_SIZE],
            heap: None,
        }
    }
}

impl<'a> RequestedRanges<'a> {
    /// Copies `nr_ranges` ranges from behind the request header into `buf`
    /// and checks them as the in-tree exporter does before it looks at the
    /// BAR, in its order, with its errnos; returns them and the total size.
    fn read(arg: UserPtr, nr_ranges: u32, buf: &'a mut RequestBuffer) -> Result<(Self, u64)> {
        let bytes = usize::try_from(nr_ranges)
            .ok()
            .and_then(|n| n.checked_mul(DMA_RANGE_SIZE))
            .ok_or(EOVERFLOW)?;
        let ranges_ptr = UserPtr::from_addr(arg.as_const_ptr() as usize + DMA_BUF_HEADER_SIZE);
        let user = UserSlice::new(ranges_ptr, bytes);
        let requested = if let Some(inline) = buf.inline.get_mut(..bytes) {
            user.reader().read_slice(inline)?;
            Self(inline)
        } else {
            let heap = buf.heap.insert(KVec::new());
            user.read_all(heap, flags::GFP_KERNEL | flags::__GFP_NOWARN)?;
            Self(heap)
        };

        let mut size = 0u64;
        for (offset, len) in requested.iter() {
            if len == 0 || !page_aligned(offset) || !page_aligned(len) {
                return Err(EINVAL);
            }
            size = size.checked_add(len).ok_or(EINVAL)?;
        }
        if size & DMA_IOVA_USE_SWIOTLB != 0 {
            return Err(EINVAL);
        }
        Ok((requested, size))
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (u64, u64)> + '_ {
        self.0.chunks_exact(DMA_RANGE_SIZE).map(|r| {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&r[i..i + 8]);
                u64::from_ne_bytes(b)
            };
            (word(0), word(8))
        })
    }

    /// The CPU physical ranges within the BAR at `bar` (start, length), the
    /// ones that follow each other physically merged; checked as the in-tree
    /// exporter's `vfio_pci_core_fill_phys_vec()` does, after the BAR's
    /// P2PDMA provider.
    fn phys_ranges(&self, bar: (u64, u64)) -> Result<PhysRanges> {
        let (start, bar_len) = bar;
        let bar_end = start.checked_add(bar_len).ok_or(EINVAL)?;
        let place = |(offset, len): (u64, u64)| -> Result<PhysRange> {
            let paddr = start.checked_add(offset).ok_or(EOVERFLOW)?;
            let end = paddr.checked_add(len).ok_or(EOVERFLOW)?;
            if end > bar_end {
                return Err(EINVAL);
            }
            Ok(PhysRange { paddr, len })
        };
        let mut requested = self.iter();
        // The request has at least one range.
        let first = place(requested.next().ok_or(EINVAL)?)?;
        if requested.len() == 0 {
            return Ok(PhysRanges::One([first]));
        }
        // Room for every range up front: each push below is a store.
        let mut ranges =
            KfreeVec::with_capacity(self.iter().len(), flags::GFP_KERNEL | flags::__GFP_NOWARN)?;
        ranges.push_within_capacity(first).map_err(|_| ENOMEM)?;
        for range in requested {
            let range = place(range)?;
            match ranges.last_mut() {
                // Cannot overflow: `place()` checked the end of `last`.
                Some(last) if last.paddr + last.len == range.paddr => last.len += range.len,
                _ => ranges.push_within_capacity(range).map_err(|_| ENOMEM)?,
            }
        }
        match *ranges {
            [merged] => Ok(PhysRanges::One([merged])),
            _ => Ok(PhysRanges::Many(ranges)),
        }
    }
}

/// The CPU physical ranges of a buffer, in buffer order.  One range, the
/// common case, needs no allocation of its own.
enum PhysRanges {
    One([PhysRange; 1]),
    Many(KfreeVec<PhysRange>),
}

impl core::ops::Deref for PhysRanges {
    type Target = [PhysRange];

    fn deref(&self) -> &[PhysRange] {
        match self {
            Self::One(range) => range,
            Self::Many(ranges) => ranges,
        }
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF` (GET): exports ranges of a BAR as a dma-buf
/// and returns its file descriptor.
fn export(dev: &Device<DmabufVfioPci>, arg: UserPtr) -> Result<i32> {
    // One copy for the header (every user access is costly under lockdep
    // and KASAN), one for the ranges: as many as vfio-pci makes.
    let [region, open_flags, request_flags, nr_ranges] = UserSlice::new(arg, DMA_BUF_HEADER_SIZE)
        .reader()
        .read::<[u32; 4]>()?;
    if nr_ranges == 0 || request_flags != 0 {
        return Err(EINVAL);
    }
    if region >= VFIO_PCI_ROM_REGION_INDEX || !dev.core().bar_mapped(region) {
        return Err(ENODEV);
    }
    let pci = dev.core().pci();
    let mut request = RequestBuffer::new();
    let (requested, size) = RequestedRanges::read(arg, nr_ranges, &mut request)?;
    // A BAR without a provider (an I/O BAR) fails before its ranges are
    // placed in it, as in vfio-pci.
    let provider = pci.p2pdma_provider(region).ok_or(EINVAL)?;
    let ranges = requested.phys_ranges(pci.bar_resource(region))?;
    let registration = dev.try_get_registration().ok_or(ENODEV)?;

    let bar = Exported::new(try_pin_init!(ExportedBar {
            ranges,
            size,
            provider,
            owner: dev.serial,
            prefetchable: pci.bar_prefetchable(region),
            region,
            exporter: pci.device().into(),
            ino: SetOnce::new(),
            revoked: Atomic::new(false),
            mappings: ZeroWaitCount::new(),
            state <- kernel::new_mutex!(BufferState {
                permanent: false,
                device: Some(registration),
                memattr: MemAttr::Uncached,
                wc: KfreeVec::new(),
                attachments: KfreeVec::new(),
                cpu_mappings: 0,
            }),
    }))?;
    let size = usize::try_from(size).map_err(|_| EINVAL)?;
    // From here on the dma-buf owns the buffer: errors free it through its
    // release (dma_buf_put), never directly.
    let module = <DmabufVfioPciModule as kernel::ModuleMetadata>::THIS_MODULE;
    let buf = dma_buf::export(&module, &bar, size, open_flags)?;
    // Which device and BAR, in /proc/<pid>/maps and bufinfo; 26 bytes at
    // most, DMA_BUF_NAME_LEN shows 31.
    buf.set_name(&[
        b"vfio-pci ",
        pci.device().name().to_bytes(),
        b" bar",
        &[b'0' + region as u8],
    ])?;
    {
        let memory = dev.core().memory_lock_write();
        let mut exports = dev.exports.lock();
        // A buffer exported while memory decode is off, the device is in D3
        // or an event is in progress starts revoked.  Nothing else sees it
        // yet: no lock is needed to set it.
        let revoked = !revoke::accessible(&exports, &memory);
        bar.revoked.store(revoked, Relaxed);
        if exports.synced != Some(!revoked) {
            exports.synced = None;
        }
        bar.ino.populate(buf.ino());
        trace::export(&bar.exporter, bar.ino(), bar.size, bar.ranges.len() as u32);
        exports.list.push(bar, GFP_KERNEL)?;
    }
    dev.stats.exports.add(1, Relaxed);
    buf.into_fd(open_flags)
}

/// An importer attached to a buffer.
struct AttachedImporter {
    /// Identifies the attachment (its address); only compared.
    id: usize,
    importer: ARef<device::Device>,
    map_type: MapType,
}

/// What changes over an exported buffer's life, apart from the revoke mark
/// and the mapping count (see [`ExportedBar`]).
struct BufferState {
    /// Revoked for good (`DMABUF_VFIO_PCI_FEATURE_REVOKE`).
    permanent: bool,
    /// The exporting device, until it is closed (then the buffer is revoked
    /// for good).
    device: Option<DeviceRegistration<DmabufVfioPci>>,
    /// How new CPU mappings map the BAR.
    memattr: MemAttr,
    /// The ranges' write-combining reservations while `memattr` says so,
    /// until the buffer is revoked for good.
    wc: KfreeVec<WcReservation>,
    /// Attached importers.
    attachments: KfreeVec<AttachedImporter>,
    /// Live VMAs mapping the buffer.
    cpu_mappings: usize,
}

/// One exported dma-buf: ranges of one BAR.
#[pin_data]
struct ExportedBar {
    /// CPU physical ranges, in buffer order.
    ranges: PhysRanges,
    /// Total size in bytes.
    size: u64,
    /// The BAR's P2PDMA provider (PCI bus offset).
    provider: P2pProvider,
    /// The exporting device's binding (`DmabufVfioPci::serial`).
    owner: u64,
    /// Whether the BAR is prefetchable, which write-combining needs.
    prefetchable: bool,
    /// The BAR (region index).
    region: u32,
    /// The exporting PCI function (names it in traces, after close too).
    exporter: ARef<device::Device>,
    /// The dma-buf's inode number, set once exported: the buffer's name in
    /// traces and debugfs.
    ino: SetOnce<u64>,
    /// Importers may not map, and CPU mappings fault.  Changed with both the
    /// reservation lock and `state` held, so either lock orders a read:
    /// maps read it under the reservation lock, as vfio-pci does, faults
    /// and attaches under `state`.
    revoked: Atomic<bool>,
    /// DMA mappings handed to importers and not yet unmapped: maps and
    /// unmaps change it under the reservation lock (every importer is
    /// dynamic), a revoke waits for it to drop to zero.
    mappings: ZeroWaitCount,
    #[pin]
    state: Mutex<BufferState>,
}

impl ExportedBar {
    /// The buffer's name in traces and debugfs (0 until exported).
    fn ino(&self) -> u64 {
        self.ino.as_ref().copied().unwrap_or(0)
    }

    /// Whether importers may not map it, nor CPUs fault it in.
    fn revoked(&self) -> bool {
        self.revoked.load(Relaxed)
    }

    /// DMA mappings importers hold now.
    fn dma_mappings(&self) -> usize {
        self.mappings.get()
    }

    /// Pins the exporting device, unless it was closed (or the buffer
    /// revoked for good).
    fn device_registration(&self) -> Option<DeviceRegistration<DmabufVfioPci>> {
        self.state
            .lock()
            .device
            .as_ref()
            .and_then(|d| d.try_get_registration())
    }

    /// Whether the buffer maps any page of the physical range `[start, end)`.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ranges
            .iter()
            .any(|r| r.paddr < end && start < r.paddr + r.len)
    }

    /// Whether `dev` exported the buffer.
    fn exported_by(&self, dev: &Device<DmabufVfioPci>) -> bool {
        self.owner == dev.serial
    }
}

impl Exporter for ExportedBar {
    dma_buf::dma_buf_ops!(ExportedBar);

    fn attach(&self, attachment: &Attachment) -> Result {
        if !attachment.peer2peer() {
            return Err(EOPNOTSUPP);
        }
        let state = self.state.lock();
        let device = match (self.revoked(), state.device.as_ref()) {
            (false, Some(device)) => device,
            _ => return Err(ENODEV),
        };
        if !attachment.revocable() {
            return Err(EOPNOTSUPP);
        }
        // The route cannot change while attached (the kernel caches it per
        // importer too): decide it once here, not on every map.
        let kind = p2pdma::cached_importer_map_type(
            &device.routes,
            device.core().pci(),
            attachment.dev(),
        )?;
        let mut state = state;
        state.attachments.push(
            AttachedImporter {
                id: attachment.id(),
                importer: attachment.dev().into(),
                map_type: kind,
            },
            GFP_KERNEL,
        )?;
        attachment.set_exporter_data(kind.to_word());
        trace::attach(&self.exporter, self.ino(), attachment.dev(), kind.name());
        Ok(())
    }

    fn detach(&self, attachment: &Attachment) {
        let id = attachment.id();
        self.state.lock().attachments.retain(|a| a.id != id);
    }

    fn map(&self, attachment: &Attachment, dir: DmaDirection) -> Result<KfreeBox<DmaTable>> {
        // The reservation lock is held: `revoked` cannot change meanwhile.
        if self.revoked() {
            return Err(ENODEV);
        }
        let kind = MapType::from_word(attachment.exporter_data()).ok_or(EINVAL)?;
        let table = match kind {
            MapType::BusAddr => DmaTable::bus_addresses(attachment.dev(), &self.ranges, |p| {
                self.provider.bus_addr(p)
            })?,
            MapType::ThruHostBridge => {
                DmaTable::dma_mapped(attachment.dev(), &self.ranges, self.size, dir)?
            }
            MapType::NotSupported => return Err(EINVAL),
        };
        self.mappings.inc();
        if trace::map_enabled() {
            trace::map(
                &self.exporter,
                self.ino(),
                attachment.dev(),
                kind.name(),
                table.dma_entries(),
            );
        }
        Ok(table)
    }

    fn unmap(&self, attachment: &Attachment, table: KfreeBox<DmaTable>, dir: DmaDirection) {
        table.unmap(dir);
        if trace::unmap_enabled() {
            if let Some(kind) = MapType::from_word(attachment.exporter_data()) {
                trace::unmap(&self.exporter, self.ino(), attachment.dev(), kind.name());
            }
        }
        self.mappings.dec();
    }

    fn mmap(&self, vma: &NewVma) -> Result<MemAttr> {
        mmap::mmap(self, vma)
    }

    fn fault(&self, fault: &Fault, order: u32) -> FaultOutcome {
        mmap::fault(self, fault, order)
    }

    fn vma_open(&self) {
        self.state.lock().cpu_mappings += 1;
    }

    fn vma_close(&self) {
        let mut state = self.state.lock();
        state.cpu_mappings = state.cpu_mappings.saturating_sub(1);
    }

    fn release(&self) {
        let (device, wc) = {
            let mut state = self.state.lock();
            (state.device.take(), !state.wc.is_empty())
        };
        if let Some(device) = device {
            if wc {
                // The device fd's mappings of the ranges took their type.
                let memory = device.core().memory_lock_write();
                self.state.lock().wc.clear();
                memory.zap_device_mappings(self.region);
            }
            device.exports.lock().list.retain(|e| !ptr::eq(&***e, self));
        }
    }
}

struct DmabufVfioPciModule {
    // Dropped first: unbinding every device ends the work they queue and
    // removes their debugfs directories.
    _driver: Registration<DmabufVfioPci>,
    _queue: wq::ModuleQueue,
    _debugfs: module::Published<kernel::debugfs::Dir>,
}

impl kernel::Module for DmabufVfioPciModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let queue = wq::ModuleQueue::new(c"dmabuf_vfio_pci")?;
        let debugfs = debugfs::create_root()?;
        Ok(Self {
            _driver: Registration::new()?,
            _queue: queue,
            _debugfs: debugfs,
        })
    }
}
