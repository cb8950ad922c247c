// SPDX-License-Identifier: GPL-2.0

//! dma-buf exporter abstractions.
//!
//! C headers: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h),
//! [`include/linux/dma-resv.h`](srctree/include/linux/dma-resv.h)
//!
//! An exporter implements [`Exporter`] for its per-buffer data, wraps it in
//! an [`Exported`] and [`export`]s that: the dma-buf holds an `Arc` of it as
//! private data, which the dma-buf's release drops.  Raw dma-buf calls of
//! the module live here.
//!
//! A dma-buf can outlive its file.  An `O_PATH` descriptor of
//! `/proc/<pid>/fd/<n>` holds the file's dentry, the dentry holds the
//! dma-buf, and the file itself is released and freed when its last
//! reference goes; `dma_buf.file` then points to freed memory until the
//! dentry goes too and the dma-buf is released.  Nothing here goes through
//! `dma_buf.file` except under a reference to that file: the exporter
//! reaches its dma-buf through [`Exported::with_dmabuf`], which the
//! dma-buf's release shuts before anything of the dma-buf is freed.
//!
//! Upstream has no dma-buf abstraction in `rust/kernel/`; this file would add
//! `rust/kernel/dma_buf.rs`: the [`Exporter`] trait and its `dma_buf_ops`,
//! [`Exported`], dma-buf references and reservation-lock guards, attachments
//! and the DMA tables a map hands to importers.

use crate::kernel_ext::{
    alloc::KfreeBox,
    bindings,
    mm::virt::{Fault, FaultOutcome, MemAttr, NewVma},
    pci::raw_device,
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::{addr_of_mut, NonNull},
};
use kernel::{
    device,
    error::{from_err_ptr, to_result},
    ffi::{c_char, c_int, c_uint, c_void},
    prelude::*,
    sync::{Arc, ArcBorrow, Mutex},
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

/// The `dma_buf_ops` table of an [`Exporter`].
pub(crate) type OpsTable = kernel::bindings::dma_buf_ops;

/// Implements [`Exporter::ops`] for `$t`: its `dma_buf_ops` in a `static`.
macro_rules! dma_buf_ops {
    ($t:ty) => {
        fn ops() -> &'static $crate::kernel_ext::dma_buf::OpsTable {
            static OPS: $crate::kernel_ext::dma_buf::OpsTable =
                $crate::kernel_ext::dma_buf::ops_table::<$t>();
            &OPS
        }
    };
}
pub(crate) use dma_buf_ops;

/// The `dma_buf_ops` built from `T`'s callbacks, for [`dma_buf_ops!`].
pub(crate) const fn ops_table<T: Exporter>() -> OpsTable {
    ExporterOps::<T>::OPS
}

/// `enum dma_data_direction` of a mapping request.
pub(crate) type DmaDirection = kernel::bindings::dma_data_direction;

/// A dma-buf exporter's per-buffer data and its callbacks.
///
/// The implementation names its `dma_buf_ops` table with
/// [`dma_buf_ops!`]: a dma-buf is recognised as the exporter's by the
/// address of its table, and only a `static` has one address (a `const`
/// may be copied wherever it is used).
pub(crate) trait Exporter: Send + Sync + Sized + 'static {
    /// The exporter's `dma_buf_ops`, in a `static`: write `dma_buf_ops!(Type);`.
    fn ops() -> &'static OpsTable;

    /// An importer attaches (`dma_buf_ops.attach`).
    fn attach(&self, attachment: &Attachment) -> Result;

    /// An importer maps the buffer for DMA; the reservation lock is held.
    fn map(&self, attachment: &Attachment, dir: DmaDirection) -> Result<KfreeBox<DmaTable>>;

    /// An importer detaches (`dma_buf_ops.detach`).
    fn detach(&self, attachment: &Attachment);

    /// An importer unmaps what [`Exporter::map`] returned; the reservation
    /// lock is held.  [`DmaTable::unmap`] undoes the table's DMA mappings.
    fn unmap(&self, attachment: &Attachment, table: KfreeBox<DmaTable>, dir: DmaDirection);

    /// The dma-buf is being freed; the private data is dropped right after.
    fn release(&self);

    /// A process maps the buffer (`dma_buf_ops.mmap`); the dma-buf core
    /// checked the range against the buffer's size.  Returns how the CPU
    /// maps it; the VMA is then an I/O map whose faults [`Exporter::fault`]
    /// serves, and which [`DmaBufRef::zap_cpu_mappings`] empties.  A
    /// successful `mmap` counts as the VMA's [`Exporter::vma_open`]: the
    /// VMA made by `mmap()` gets no `open` call.
    fn mmap(&self, vma: &NewVma) -> Result<MemAttr>;

    /// An access to a mapping of the buffer faulted; map `1 << order` pages
    /// around it, or fall back to a smaller order.
    fn fault(&self, fault: &Fault, order: u32) -> FaultOutcome;

    /// A VMA mapping the buffer came into existence (split, fork).
    fn vma_open(&self);

    /// A VMA mapping the buffer went away.
    fn vma_close(&self);
}

/// A device's attachment to a dma-buf (`struct dma_buf_attachment`).
///
/// # Invariants
///
/// The wrapped attachment is valid for the lifetime of the reference.
#[repr(transparent)]
pub(crate) struct Attachment(Opaque<kernel::bindings::dma_buf_attachment>);

impl Attachment {
    /// # Safety
    ///
    /// `ptr` must be a valid attachment for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut kernel::bindings::dma_buf_attachment) -> &'a Self {
        // SAFETY: Transparent wrapper; validity guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut kernel::bindings::dma_buf_attachment {
        self.0.get()
    }

    /// Whether the importer can reach device memory peer to peer.
    pub(crate) fn peer2peer(&self) -> bool {
        // SAFETY: By the type invariant the attachment is valid.
        unsafe { (*self.as_raw()).peer2peer }
    }

    /// Whether the importer handles `invalidate_mappings`, so the exporter
    /// can take the memory away.
    pub(crate) fn revocable(&self) -> bool {
        // SAFETY: By the type invariant the attachment is valid.
        unsafe { kernel::bindings::dma_buf_attach_revocable(self.as_raw()) }
    }

    /// Stores a word of the exporter's own (`dma_buf_attachment.priv`).
    ///
    /// Only from [`Exporter::attach`]: the attachment is not yet visible to
    /// anyone else then.
    pub(crate) fn set_exporter_data(&self, data: usize) {
        // SAFETY: By the type invariant the attachment is valid; `priv` is
        // the exporter's field and nothing reads it concurrently during attach.
        unsafe { (*self.as_raw()).priv_ = data as *mut c_void };
    }

    /// The word stored by [`Attachment::set_exporter_data`].
    pub(crate) fn exporter_data(&self) -> usize {
        // SAFETY: By the type invariant the attachment is valid; `priv` was
        // written in attach, before the attachment could be mapped.
        unsafe { (*self.as_raw()).priv_ as usize }
    }

    /// Identifies the attachment while it exists (its address); only for
    /// comparisons.
    pub(crate) fn id(&self) -> usize {
        self.as_raw() as usize
    }

    /// The importing device.
    pub(crate) fn dev(&self) -> &device::Device {
        // SAFETY: By the type invariant the attachment is valid, and its
        // device outlives it.
        unsafe { device::Device::from_raw((*self.as_raw()).dev) }
    }
}

/// An exporter's buffer: its data, and its way back to its dma-buf.
///
/// Dereferences to the data.  The dma-buf holds one `Arc` of it (its
/// private data); the exporter may keep others.
#[pin_data]
pub(crate) struct Exported<T: Exporter> {
    /// The dma-buf, from [`export`] until its release begins.
    #[pin]
    link: Mutex<Option<Link>>,
    #[pin]
    data: T,
}

/// A dma-buf and the inode of its file, for [`Exported::link`].
///
/// # Invariants
///
/// While stored in an [`Exported`]'s link, `dmabuf` is the dma-buf
/// exported with it, whose release has not begun, and `inode` is its file's
/// inode, on which the link owns a reference.
struct Link {
    dmabuf: NonNull<kernel::bindings::dma_buf>,
    inode: NonNull<kernel::bindings::inode>,
}

// SAFETY: The pointers are used only under the link's mutex, from any
// thread; the dma-buf and inode APIs synchronize themselves.
unsafe impl Send for Link {}

impl<T: Exporter> Exported<T> {
    /// Wraps `data`, not yet exported.
    pub(crate) fn new(data: impl PinInit<T, Error>) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                link <- kernel::new_mutex!(None),
                data <- data,
            }),
            GFP_KERNEL,
        )
    }

    /// Runs `f` on the buffer's dma-buf, unless the dma-buf's release has
    /// begun (`None` then).  The dma-buf is not freed before `f` returns;
    /// its file may be gone already.  `f` must not drop the last reference
    /// to the dma-buf's file itself (dropping one deferred by `fput()` is
    /// fine): the release would wait for `f`.
    pub(crate) fn with_dmabuf<R>(&self, f: impl FnOnce(&LiveDmaBuf<'_>) -> R) -> Option<R> {
        let link = self.link.lock();
        let link = link.as_ref()?;
        // INVARIANT: By `Link`'s invariant; the guard keeps the release,
        // which empties the link first, waiting until `f` returned.
        Some(f(&LiveDmaBuf {
            dmabuf: link.dmabuf,
            inode: link.inode,
            _guard: PhantomData,
        }))
    }

    /// Called first by the dma-buf's release: nobody reaches the dma-buf
    /// through [`Exported::with_dmabuf`] any more.
    fn unlink(&self) {
        let link = self.link.lock().take();
        if let Some(link) = link {
            // SAFETY: By `Link`'s invariant the link owned this reference.
            unsafe { kernel::bindings::iput(link.inode.as_ptr()) };
        }
    }
}

impl<T: Exporter> core::ops::Deref for Exported<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

/// A dma-buf that is not freed while this exists; its file may be.
///
/// # Invariants
///
/// `dmabuf` is a dma-buf whose release has not begun and waits for the end
/// of `'a`; `inode` is its file's inode, referenced meanwhile.
pub(crate) struct LiveDmaBuf<'a> {
    dmabuf: NonNull<kernel::bindings::dma_buf>,
    inode: NonNull<kernel::bindings::inode>,
    _guard: PhantomData<&'a ()>,
}

impl LiveDmaBuf<'_> {
    /// Locks the dma-buf's reservation object.
    pub(crate) fn lock_resv(&self) -> ResvGuard<'_> {
        // SAFETY: By the type invariant the dma-buf and its reservation
        // object are valid; a NULL acquire context cannot fail with -EDEADLK.
        unsafe {
            kernel::bindings::dma_resv_lock((*self.dmabuf.as_ptr()).resv, core::ptr::null_mut())
        };
        // INVARIANT: Locked above; valid for the borrow of `self`.
        ResvGuard(self.dmabuf, PhantomData)
    }

    /// Removes every CPU mapping of the buffer from every process; the next
    /// access faults into [`Exporter::fault`].  Goes through the inode,
    /// which every mapping's file shares: mappings hold the file, so a
    /// buffer whose file is gone has none.
    pub(crate) fn zap_cpu_mappings(&self) {
        // `holelen == 0`: up to the end; `even_cows`: private copies too.
        // SAFETY: By the type invariant the inode, and so its mapping, is
        // valid.
        unsafe { kernel::bindings::unmap_mapping_range((*self.inode.as_ptr()).i_mapping, 0, 0, 1) };
    }
}

/// A counted reference to a dma-buf (a reference to its file).
///
/// # Invariants
///
/// Owns one reference to the file of a valid dma-buf of exporter `T`.
pub(crate) struct DmaBufRef<T: Exporter>(
    NonNull<kernel::bindings::dma_buf>,
    PhantomData<fn() -> T>,
);

impl<T: Exporter> DmaBufRef<T> {
    fn as_raw(&self) -> *mut kernel::bindings::dma_buf {
        self.0.as_ptr()
    }

    /// The dma-buf behind file descriptor `fd`, if it is one of exporter `T`:
    /// `EBADF` for no file, `EINVAL` for a file that is no dma-buf, `ENODEV`
    /// for another exporter's dma-buf.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: Any value is a valid argument; success returns a counted
        // reference.
        let raw = from_err_ptr(unsafe { kernel::bindings::dma_buf_get(fd) })?;
        // INVARIANT: `dma_buf_get` took a reference on a valid dma-buf; it is
        // dropped here unless the dma-buf is `T`'s.
        let buf = Self(NonNull::new(raw).ok_or(EINVAL)?, PhantomData);
        // SAFETY: The dma-buf is valid while referenced.
        if !core::ptr::eq(unsafe { (*raw).ops }, T::ops()) {
            return Err(ENODEV);
        }
        Ok(buf)
    }

    /// The exporter's buffer.
    pub(crate) fn data(&self) -> ArcBorrow<'_, Exported<T>> {
        // SAFETY: By the type invariant the dma-buf is `T`'s and referenced,
        // so not released.
        unsafe { ExporterOps::<T>::data(self.as_raw()) }
    }

    /// The inode number of the dma-buf's file (`fstat()` on its fd shows it).
    pub(crate) fn ino(&self) -> u64 {
        // SAFETY: The dma-buf, its file and the file's inode are valid while
        // referenced.
        unsafe { (*(*(*self.as_raw()).file).f_inode).i_ino }
    }

    /// Names the dma-buf, as `DMA_BUF_SET_NAME` does: `/proc/<pid>/maps`
    /// shows the file of its mappings as `/dmabuf:<name>`, and `bufinfo`
    /// lists the name.  Both show at most `DMA_BUF_NAME_LEN - 1` bytes.
    /// The name is the concatenation of `parts`, built in one allocation
    /// without formatting: exports are a hot path.
    pub(crate) fn set_name(&self, parts: &[&[u8]]) -> Result {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let mut name = KVec::with_capacity(len + 1, GFP_KERNEL)?;
        for part in parts {
            name.extend_from_slice(part, GFP_KERNEL)?;
        }
        name.push(0, GFP_KERNEL)?;
        // A `KVec` is kmalloc()ed: the dma-buf core kfree()s the name.
        let (copy, _, _) = name.into_raw_parts();
        let copy = copy.cast::<c_char>();
        let raw = self.as_raw();
        // SAFETY: The dma-buf is valid while referenced; its name is read and
        // replaced under `name_lock` only, and freed (kfree) by its release.
        let old = unsafe {
            kernel::bindings::spin_lock(addr_of_mut!((*raw).name_lock));
            let old = (*raw).name;
            (*raw).name = copy;
            kernel::bindings::spin_unlock(addr_of_mut!((*raw).name_lock));
            old
        };
        // SAFETY: The replaced name was kmalloc()ed (here, strndup_user)
        // and is no longer reachable.
        unsafe { kernel::bindings::kfree(old.cast()) };
        Ok(())
    }

    /// Installs the dma-buf in a new file descriptor, which takes over the
    /// reference.  On failure the reference is dropped (and the dma-buf freed
    /// if it was the last), exactly once.
    pub(crate) fn into_fd(self, flags: u32) -> Result<i32> {
        // SAFETY: By the type invariant the dma-buf is valid and we own a reference.
        let fd = unsafe { kernel::bindings::dma_buf_fd(self.as_raw(), flags as c_int) };
        if fd < 0 {
            return Err(Error::from_errno(fd));
        }
        // The descriptor owns the reference now.
        let _ = ManuallyDrop::new(self);
        Ok(fd)
    }
}

impl<T: Exporter> Drop for DmaBufRef<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference.
        unsafe { kernel::bindings::dma_buf_put(self.as_raw()) };
    }
}

/// The held reservation lock of a dma-buf.
///
/// # Invariants
///
/// Holds the reservation lock of a dma-buf that stays allocated for `'a`.
pub(crate) struct ResvGuard<'a>(NonNull<kernel::bindings::dma_buf>, PhantomData<&'a ()>);

impl ResvGuard<'_> {
    fn as_raw(&self) -> *mut kernel::bindings::dma_buf {
        self.0.as_ptr()
    }

    fn resv(&self) -> *mut kernel::bindings::dma_resv {
        // SAFETY: By the type invariant the dma-buf is valid.
        unsafe { (*self.as_raw()).resv }
    }
    /// Tells every revocable importer to drop its mappings.
    pub(crate) fn invalidate_mappings(&self) {
        // SAFETY: By the type invariant the dma-buf is valid and its
        // reservation lock held, as the function requires.
        unsafe { kernel::bindings::dma_buf_invalidate_mappings(self.as_raw()) };
    }

    /// Waits until every fence of the buffer signalled (importers' DMA done).
    pub(crate) fn wait_idle(&self) {
        // SAFETY: The reservation object is valid; waiting with it locked is
        // allowed (no new fences can be added meanwhile).
        unsafe {
            kernel::bindings::dma_resv_wait_timeout(
                self.resv(),
                kernel::bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP,
                false,
                kernel::ffi::c_long::MAX as usize,
            )
        };
    }
}

impl Drop for ResvGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the lock is held.
        unsafe { kernel::bindings::dma_resv_unlock(self.resv()) };
    }
}

/// Exports `buffer` as a dma-buf of `size` bytes; the dma-buf keeps a
/// reference to it until its release.  `EBUSY` while an earlier dma-buf of
/// `buffer` is not released.
pub(crate) fn export<T: Exporter>(
    module: &ThisModule,
    buffer: &Arc<Exported<T>>,
    size: usize,
    flags: u32,
) -> Result<DmaBufRef<T>> {
    // Held until the link is set: a second export waits, then fails.
    let mut link = buffer.link.lock();
    if link.is_some() {
        return Err(EBUSY);
    }
    let priv_ = buffer.clone().into_foreign();
    let info = kernel::bindings::dma_buf_export_info {
        exp_name: kernel::str::as_char_ptr_in_const_context(c"dmabuf-vfio-pci").cast(),
        owner: module.as_ptr(),
        ops: T::ops(),
        size,
        flags: flags as c_int,
        resv: core::ptr::null_mut(),
        priv_: priv_.cast(),
    };
    // SAFETY: `info` is complete; on success the dma-buf owns `priv_`.
    let raw = match from_err_ptr(unsafe { kernel::bindings::dma_buf_export(&info) }) {
        Ok(raw) => raw,
        Err(e) => {
            // SAFETY: Export failed, so the foreign pointer is still ours.
            drop(unsafe { Arc::<Exported<T>>::from_foreign(priv_) });
            return Err(e);
        }
    };
    // INVARIANT: A new dma-buf comes with one reference, now owned by `buf`.
    let buf = DmaBufRef(NonNull::new(raw).ok_or(EINVAL)?, PhantomData);
    // SAFETY: We own a reference to the new dma-buf, so its file and the
    // file's inode are valid.
    let inode = unsafe { (*(*raw).file).f_inode };
    let inode = NonNull::new(inode).ok_or(EINVAL)?;
    // SAFETY: As above; the link owns this reference until `unlink`.
    unsafe { kernel::bindings::ihold(inode.as_ptr()) };
    // INVARIANT: The dma-buf was exported with `buffer`, its release cannot
    // have begun while we hold a reference, and the inode reference was
    // taken above.
    *link = Some(Link {
        dmabuf: buf.0,
        inode,
    });
    Ok(buf)
}

/// The `dma_buf_ops` of an [`Exporter`].
struct ExporterOps<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterOps<T> {
    const OPS: kernel::bindings::dma_buf_ops = kernel::bindings::dma_buf_ops {
        attach: Some(Self::attach),
        detach: Some(Self::detach),
        map_dma_buf: Some(Self::map),
        unmap_dma_buf: Some(Self::unmap),
        release: Some(Self::release),
        mmap: Some(Self::mmap),
        ..pin_init::zeroed()
    };

    /// The operations of a CPU mapping of the buffer.
    const VM_OPS: kernel::bindings::vm_operations_struct = kernel::bindings::vm_operations_struct {
        fault: Some(Self::page_fault),
        huge_fault: Some(Self::huge_fault),
        open: Some(Self::vma_open),
        close: Some(Self::vma_close),
        may_split: Some(crate::kernel_ext::mm::virt::dmabuf_vfio_may_split),
        ..pin_init::zeroed()
    };

    /// # Safety
    ///
    /// `dmabuf` must be a dma-buf exported by [`export`] for `T` and not yet released.
    unsafe fn data<'a>(dmabuf: *mut kernel::bindings::dma_buf) -> ArcBorrow<'a, Exported<T>> {
        // SAFETY: `priv_` holds the `Arc` of `export` until release.
        unsafe { Arc::<Exported<T>>::borrow((*dmabuf).priv_.cast()) }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core as `dma_buf_ops.attach` for a live dma-buf
    /// of this exporter.
    unsafe extern "C" fn attach(
        dmabuf: *mut kernel::bindings::dma_buf,
        attachment: *mut kernel::bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: Per the function's safety requirements.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: The attachment is valid during the callback.
        let attachment = unsafe { Attachment::from_raw(attachment) };
        match data.attach(attachment) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core as `dma_buf_ops.map_dma_buf` with the
    /// reservation lock held.
    unsafe extern "C" fn map(
        attachment: *mut kernel::bindings::dma_buf_attachment,
        dir: DmaDirection,
    ) -> *mut kernel::bindings::sg_table {
        // SAFETY: The attachment is valid and belongs to a live dma-buf of ours.
        let (attachment, data) = unsafe {
            (
                Attachment::from_raw(attachment),
                Self::data((*attachment).dmabuf),
            )
        };
        match data.map(attachment, dir) {
            Ok(table) => table.into_raw().as_ptr(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core as `dma_buf_ops.unmap_dma_buf` with the
    /// reservation lock held, for a table returned by `map`.
    unsafe extern "C" fn unmap(
        attachment: *mut kernel::bindings::dma_buf_attachment,
        sgt: *mut kernel::bindings::sg_table,
        dir: DmaDirection,
    ) {
        // SAFETY: The attachment is valid and belongs to a live dma-buf of ours.
        let (attachment, data) = unsafe {
            (
                Attachment::from_raw(attachment),
                Self::data((*attachment).dmabuf),
            )
        };
        if let Some(sgt) = NonNull::new(sgt) {
            // SAFETY: The dma-buf core hands back a table `map` returned.
            let table = unsafe { DmaTable::from_raw(sgt) };
            data.unmap(attachment, table, dir);
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core as `dma_buf_ops.mmap` for a live dma-buf of
    /// this exporter, with a VMA being set up.
    unsafe extern "C" fn mmap(
        dmabuf: *mut kernel::bindings::dma_buf,
        vma: *mut kernel::bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: Per the function's safety requirements.
        let (data, vma) = unsafe { (Self::data(dmabuf), NewVma::from_raw(vma)) };
        match data.mmap(vma) {
            Ok(attr) => {
                // The VMA holds the dma-buf's file until it goes away.
                // SAFETY: So the dma-buf and its `priv_` outlive the VMA.
                unsafe { vma.set_io_map(&Self::VM_OPS, (*dmabuf).priv_, attr) };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the core MM as `vm_operations_struct.huge_fault` for a VMA
    /// set up by `mmap`.
    unsafe extern "C" fn huge_fault(
        vmf: *mut kernel::bindings::vm_fault,
        order: c_uint,
    ) -> kernel::bindings::vm_fault_t {
        // SAFETY: The fault is valid while handled.
        let fault = unsafe { Fault::from_raw(vmf) };
        // SAFETY: `mmap` set the VMA's private data to the dma-buf's `priv_`,
        // alive as long as the VMA (see there).
        let data = unsafe { Arc::<Exported<T>>::borrow(fault.vma_data().cast()) };
        data.fault(fault, order).into_raw()
    }

    /// # Safety
    ///
    /// Called by the core MM as `vm_operations_struct.open` or `.close` for
    /// a VMA set up by `mmap`.
    unsafe fn vma_data<'a>(
        vma: *mut kernel::bindings::vm_area_struct,
    ) -> ArcBorrow<'a, Exported<T>> {
        // SAFETY: `mmap` set the private data to the dma-buf's `priv_`, which
        // outlives the VMA.
        unsafe { Arc::<Exported<T>>::borrow((*vma).vm_private_data.cast()) }
    }

    /// # Safety
    ///
    /// See [`Self::vma_data`].
    unsafe extern "C" fn vma_open(vma: *mut kernel::bindings::vm_area_struct) {
        // SAFETY: Per the function's safety requirements.
        unsafe { Self::vma_data(vma) }.vma_open();
    }

    /// # Safety
    ///
    /// See [`Self::vma_data`].
    unsafe extern "C" fn vma_close(vma: *mut kernel::bindings::vm_area_struct) {
        // SAFETY: Per the function's safety requirements.
        unsafe { Self::vma_data(vma) }.vma_close();
    }

    /// # Safety
    ///
    /// Called by the dma-buf core as `dma_buf_ops.detach` for an attachment
    /// `attach` accepted.
    unsafe extern "C" fn detach(
        dmabuf: *mut kernel::bindings::dma_buf,
        attachment: *mut kernel::bindings::dma_buf_attachment,
    ) {
        // SAFETY: Per the function's safety requirements.
        let (data, attachment) = unsafe { (Self::data(dmabuf), Attachment::from_raw(attachment)) };
        data.detach(attachment);
    }

    /// # Safety
    ///
    /// As [`Self::huge_fault`], as `vm_operations_struct.fault`.
    unsafe extern "C" fn page_fault(
        vmf: *mut kernel::bindings::vm_fault,
    ) -> kernel::bindings::vm_fault_t {
        // SAFETY: Per the function's safety requirements.
        unsafe { Self::huge_fault(vmf, 0) }
    }

    /// # Safety
    ///
    /// Called once by the dma-buf core as `dma_buf_ops.release`, before it
    /// frees anything of the dma-buf.
    unsafe extern "C" fn release(dmabuf: *mut kernel::bindings::dma_buf) {
        // SAFETY: Release is the last use of the private data.
        let data = unsafe { Arc::<Exported<T>>::from_foreign((*dmabuf).priv_.cast()) };
        // Waits for anyone inside `with_dmabuf`.
        data.unlink();
        data.release();
    }
}

/// Number of bytes one scatter-gather entry can describe
/// (`ALIGN_DOWN(UINT_MAX, PAGE_SIZE)`).
const MAX_SG_ENTRY: u64 = (u32::MAX as u64) & !(kernel::page::PAGE_SIZE as u64 - 1);

/// How a [`DmaTable`]'s addresses were produced, and so how to undo them.
enum DmaMapping {
    /// PCI bus addresses: nothing to undo.
    BusAddr,
    /// One IOVA range of `size` bytes linked to the MMIO ranges.
    Iova(kernel::bindings::dma_iova_state, u64),
    /// One `dma_map_phys()` per range: the `(address, length)` of each.
    PerRange(KVec<(u64, u64)>),
}

/// Entries a [`DmaTable`] carries in its own allocation.
const INLINE_ENTRIES: usize = 4;

/// A DMA-address-only scatter-gather table handed to an importer.
///
/// Up to [`INLINE_ENTRIES`] entries live in the table itself: a map then
/// allocates once and an unmap frees once.  Revoking a buffer unmaps every
/// importer's table, and each allocation and free is the expensive part of
/// that (KASAN and kmemleak record a stack trace for each).
#[repr(C)]
pub(crate) struct DmaTable {
    // First: importers get a pointer to it and `unmap` turns it back.
    sgt: kernel::bindings::sg_table,
    /// Entries `sg_alloc_table()` allocated, 0 when they are `inline`:
    /// `sgt.orig_nents` is zero in a DMA-only table, and `sg_free_table()`
    /// frees `orig_nents` entries, so it must be restored.
    allocated: u32,
    mapping: DmaMapping,
    dev: *mut kernel::bindings::device,
    inline: [kernel::bindings::scatterlist; INLINE_ENTRIES],
}

/// A contiguous range of CPU physical MMIO addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PhysRange {
    pub(crate) paddr: u64,
    pub(crate) len: u64,
}

fn sg_entries(len: u64) -> u64 {
    len.div_ceil(MAX_SG_ENTRY)
}

/// DMA_ATTR_MMIO: the address is MMIO, never bounce or sync it.
const DMA_ATTR_MMIO: usize = 1 << 10;

impl DmaTable {
    fn alloc(
        nents: u64,
        dev: *mut kernel::bindings::device,
        mapping: DmaMapping,
    ) -> Result<KfreeBox<Self>> {
        let nents = u32::try_from(nents).map_err(|_| EINVAL)?;
        let mut table = KfreeBox::new(
            DmaTable {
                sgt: pin_init::zeroed(),
                allocated: 0,
                mapping,
                dev,
                inline: pin_init::zeroed(),
            },
            GFP_KERNEL,
        )?;
        if (1..=INLINE_ENTRIES).contains(&(nents as usize)) {
            let sgl = table.inline.as_mut_ptr();
            // SAFETY: `sgl` points to `INLINE_ENTRIES >= nents` entries, which
            // stay at this address as long as the boxed table.
            unsafe { kernel::bindings::sg_init_table(sgl, nents) };
            table.sgt.sgl = sgl;
            table.sgt.nents = nents;
            table.sgt.orig_nents = nents;
            return Ok(table);
        }
        // SAFETY: `sgt` is a zeroed table owned by `table`.
        to_result(unsafe {
            kernel::bindings::sg_alloc_table(
                &mut table.sgt,
                nents,
                kernel::bindings::GFP_KERNEL | kernel::bindings::__GFP_ZERO,
            )
        })?;
        table.allocated = nents;
        Ok(table)
    }

    /// Writes `(addr, len)` chunks into consecutive entries, splitting at
    /// [`MAX_SG_ENTRY`].
    fn fill(&mut self, chunks: impl Iterator<Item = (u64, u64)>) {
        let mut sg = self.sgt.sgl;
        for (mut addr, mut len) in chunks {
            while len > 0 && !sg.is_null() {
                let this = len.min(MAX_SG_ENTRY);
                // SAFETY: `sg` is an entry of the table allocated for exactly
                // the number of chunks this loop writes.
                unsafe {
                    (*sg).dma_address = addr;
                    (*sg).dma_length = this as u32;
                    sg = kernel::bindings::sg_next(sg);
                }
                addr += this;
                len -= this;
            }
        }
        // A DMA-only table: no CPU pages behind it.
        self.sgt.orig_nents = 0;
    }

    /// A table of the PCI bus addresses of `ranges`.
    pub(crate) fn bus_addresses(
        dev: &device::Device,
        ranges: &[PhysRange],
        to_bus: impl Fn(u64) -> u64,
    ) -> Result<KfreeBox<Self>> {
        let nents = ranges.iter().map(|r| sg_entries(r.len)).sum();
        let mut table = Self::alloc(nents, raw_device(dev), DmaMapping::BusAddr)?;
        table.fill(ranges.iter().map(|r| (to_bus(r.paddr), r.len)));
        Ok(table)
    }

    /// A table of DMA-API mappings of the MMIO `ranges` for `dev`: one IOVA
    /// range when `dev` is behind an IOMMU, else one mapping per range.
    pub(crate) fn dma_mapped(
        dev: &device::Device,
        ranges: &[PhysRange],
        size: u64,
        dir: DmaDirection,
    ) -> Result<KfreeBox<Self>> {
        let raw = raw_device(dev);
        let mut state: kernel::bindings::dma_iova_state = pin_init::zeroed();
        // SAFETY: `raw` is a valid device; `state` is a zeroed IOVA state.
        unsafe { kernel::bindings::dma_iova_try_alloc(raw, &mut state, 0, size as usize) };
        // SAFETY: `state` was initialized by `dma_iova_try_alloc`.
        if unsafe { bindings::dmabuf_vfio_dma_use_iova(&mut state) } {
            return Self::iova_mapped(raw, state, ranges, size, dir);
        }
        let nents = ranges.iter().map(|r| sg_entries(r.len)).sum();
        let mut table = Self::alloc(nents, raw, DmaMapping::PerRange(KVec::new()))?;
        let mut mapped = KVec::with_capacity(ranges.len(), GFP_KERNEL)?;
        for r in ranges {
            // SAFETY: `raw` is a valid device; the range is MMIO of a BAR the
            // exporter keeps enabled while it is mapped.
            let addr = unsafe {
                kernel::bindings::dma_map_phys(raw, r.paddr, r.len as usize, dir, DMA_ATTR_MMIO)
            };
            // SAFETY: `raw` is valid.
            if unsafe { bindings::dmabuf_vfio_dma_mapping_error(raw, addr) } {
                table.mapping = DmaMapping::PerRange(mapped);
                table.unmap(dir);
                return Err(EIO);
            }
            mapped.push((addr, r.len), GFP_KERNEL)?;
        }
        table.fill(mapped.iter().copied());
        table.mapping = DmaMapping::PerRange(mapped);
        Ok(table)
    }

    fn iova_mapped(
        raw: *mut kernel::bindings::device,
        mut state: kernel::bindings::dma_iova_state,
        ranges: &[PhysRange],
        size: u64,
        dir: DmaDirection,
    ) -> Result<KfreeBox<Self>> {
        let mut offset = 0u64;
        let mut ret = 0;
        for r in ranges {
            // SAFETY: `state` holds an IOVA range of `size` bytes; each range
            // is linked at its own offset within it.
            ret = unsafe {
                kernel::bindings::dma_iova_link(
                    raw,
                    &mut state,
                    r.paddr,
                    offset as usize,
                    r.len as usize,
                    dir,
                    DMA_ATTR_MMIO,
                )
            };
            if ret != 0 {
                break;
            }
            offset += r.len;
        }
        if ret == 0 {
            // SAFETY: `offset` bytes were linked above.
            ret = unsafe { kernel::bindings::dma_iova_sync(raw, &mut state, 0, offset as usize) };
        }
        if ret != 0 {
            // SAFETY: Unlinks what was linked and frees the IOVA range.
            unsafe {
                kernel::bindings::dma_iova_destroy(
                    raw,
                    &mut state,
                    offset as usize,
                    dir,
                    DMA_ATTR_MMIO,
                )
            };
            return Err(Error::from_errno(ret));
        }
        let base = state.addr;
        match Self::alloc(sg_entries(size), raw, DmaMapping::Iova(state, size)) {
            Ok(mut table) => {
                table.fill(core::iter::once((base, size)));
                Ok(table)
            }
            Err(e) => {
                // SAFETY: As above.
                unsafe {
                    kernel::bindings::dma_iova_destroy(
                        raw,
                        &mut state,
                        size as usize,
                        dir,
                        DMA_ATTR_MMIO,
                    )
                };
                Err(e)
            }
        }
    }

    /// Hands the table to the importer.
    /// The number of DMA entries an importer sees.
    pub(crate) fn dma_entries(&self) -> u32 {
        self.sgt.nents
    }

    fn into_raw(self: KfreeBox<Self>) -> NonNull<kernel::bindings::sg_table> {
        let table = KfreeBox::into_raw(self);
        // SAFETY: `table` is a valid allocation; `sgt` is its first field.
        unsafe { NonNull::new_unchecked(addr_of_mut!((*table).sgt)) }
    }

    /// Takes back a table handed out by [`DmaTable::into_raw`].
    ///
    /// # Safety
    ///
    /// `sgt` must come from [`DmaTable::into_raw`] and not be taken back twice.
    unsafe fn from_raw(sgt: NonNull<kernel::bindings::sg_table>) -> KfreeBox<Self> {
        // SAFETY: `sgt` is the first field of a `DmaTable` allocated by `KfreeBox`.
        unsafe { KfreeBox::from_raw(sgt.as_ptr().cast::<Self>()) }
    }

    /// Undoes the DMA mappings; dropping the table frees it.
    pub(crate) fn unmap(mut self: KfreeBox<Self>, dir: DmaDirection) {
        let dev = self.dev;
        match &mut self.mapping {
            DmaMapping::BusAddr => (),
            DmaMapping::Iova(state, size) => {
                // SAFETY: The IOVA range was linked and synced for `size` bytes.
                unsafe {
                    kernel::bindings::dma_iova_destroy(
                        dev,
                        state,
                        *size as usize,
                        dir,
                        DMA_ATTR_MMIO,
                    )
                };
            }
            DmaMapping::PerRange(mapped) => {
                for &(addr, len) in mapped.iter() {
                    // SAFETY: Each was returned by `dma_map_phys` for `len` bytes.
                    unsafe {
                        kernel::bindings::dma_unmap_phys(
                            dev,
                            addr,
                            len as usize,
                            dir,
                            DMA_ATTR_MMIO,
                        )
                    };
                }
            }
        }
        self.mapping = DmaMapping::BusAddr;
    }
}

impl Drop for DmaTable {
    fn drop(&mut self) {
        if self.allocated == 0 {
            // Zeroed, or the entries are `inline`: nothing to free.
            return;
        }
        self.sgt.orig_nents = self.allocated;
        // SAFETY: The table is zeroed or was set up by `sg_alloc_table` for
        // `allocated` entries; both are valid to free.
        unsafe { kernel::bindings::sg_free_table(&mut self.sgt) };
    }
}
