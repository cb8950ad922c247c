// SPDX-License-Identifier: GPL-2.0

//! CPU mappings of device memory: the VMA an `mmap()` sets up, and the page
//! faults that fill it with PFNs.
//!
//! Upstream `rust/kernel/mm/virt.rs` has `VmaRef`, `VmaMixedMap` and
//! `VmaNew` (VMA flags, `vm_insert_page()`, zapping).  This file adds what
//! mapping device memory by PFN takes: [`NewVma::set_io_map`] with the
//! driver's `vm_operations_struct`, the [`Fault`] a `huge_fault` handler gets
//! and its [`FaultOutcome`], the memory attribute ([`MemAttr`]) and the
//! write-combining reservations ([`WcReservation`]) of the ranges.

use kernel::{bindings, ffi::c_ulong, mm::virt::VmaRef, prelude::*, types::Opaque};

/// How the CPU maps device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemAttr {
    /// Uncached (`pgprot_noncached()`), as vfio-pci maps BARs.
    Uncached,
    /// Write-combining (`pgprot_writecombine()`), with the ranges held by
    /// [`WcReservation`]s: on x86 with PAT the memory type a physical range
    /// is reserved with wins over the VMA's protection when a PFN is
    /// inserted.
    WriteCombining,
}

/// A VMA that an `mmap()` file operation is setting up.
///
/// # Invariants
///
/// Wraps a valid `vm_area_struct` that is not yet visible to other threads.
#[repr(transparent)]
pub(crate) struct NewVma(Opaque<bindings::vm_area_struct>);

impl NewVma {
    /// # Safety
    ///
    /// `ptr` must be the VMA of an `mmap()` call in progress, valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::vm_area_struct) -> &'a Self {
        // SAFETY: Transparent wrapper; validity guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut bindings::vm_area_struct {
        self.0.get()
    }

    /// Whether the mapping is shared (`MAP_SHARED`).  `VM_MAYSHARE`, not
    /// `VM_SHARED`: mmap() clears `VM_SHARED` (and `VM_MAYWRITE`) for a
    /// shared mapping of a read-only file, which can then never be written.
    pub(crate) fn is_shared(&self) -> bool {
        // SAFETY: By the type invariant the VMA is valid; its flags do not
        // change during `mmap()`.
        let flags = unsafe { (*self.as_raw()).__bindgen_anon_2.vm_flags };
        flags & bindings::VM_MAYSHARE as bindings::vm_flags_t != 0
    }

    /// The offset of the mapping in the file, in pages.
    pub(crate) fn pgoff(&self) -> usize {
        // SAFETY: By the type invariant the VMA is valid.
        unsafe { (*self.as_raw()).vm_pgoff }
    }

    /// The length of the mapping, in bytes.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: By the type invariant the VMA is valid.
        let (start, end) = unsafe {
            let vma = self.as_raw();
            (
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_start,
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_end,
            )
        };
        end - start
    }

    /// Makes the VMA a map of device memory whose faults `ops` serves with
    /// `data`, with the flags vfio-pci gives its own BAR mappings except
    /// that the VMA is no `VM_PFNMAP`: vfio type1 follows the PFNs of such
    /// a VMA into IOMMU domains that a revoke cannot reach.  The faults
    /// must insert only PFNs that [`pfns_have_struct_pages`] says have none.
    ///
    /// # Safety
    ///
    /// `data` must stay valid for `ops` as long as the VMA exists.
    pub(crate) unsafe fn set_io_map(
        &self,
        ops: &'static bindings::vm_operations_struct,
        data: *mut c_void,
        attr: MemAttr,
    ) {
        // SAFETY: By the type invariant the VMA is valid and being set up;
        // the caller guarantees `data` for the VMA's life.
        unsafe {
            crate::kernel_ext::bindings::dmabuf_vfio_vma_set_io_mixedmap(
                self.as_raw(),
                ops,
                data,
                attr == MemAttr::WriteCombining,
            )
        };
    }
}

/// `vm_operations_struct.may_split` of every VMA whose huge faults the
/// driver serves (its dma-buf mappings, the device fd's BAR mappings): takes
/// down the PUD entry that maps across `addr`, where the core MM is about
/// to split the VMA, and never refuses the split.
///
/// Linux 7.3 splits huge PMD entries at a new VMA boundary
/// (`vma_adjust_trans_huge()`), but finds them with `mm_find_pmd()`, which
/// walks through a PUD leaf as if it were a page table: for a 1 GiB entry
/// of device memory it computes a "PMD table" inside the BAR and oopses on
/// its lock, with the mmap lock held for good.  A `munmap()`, `mprotect()`
/// or shrinking `mremap()` of part of a 1 GiB-mapped range gets there.
/// With the entry gone, the pieces fault again, at the sizes the new VMAs
/// allow.
///
/// # Safety
///
/// Called by the core MM as `may_split`, with the mmap lock of `vma` held
/// for writing.
#[no_mangle]
pub(crate) unsafe extern "C" fn dmabuf_vfio_may_split(
    vma: *mut bindings::vm_area_struct,
    addr: c_ulong,
) -> c_int {
    const PUD_SIZE: usize = 1 << bindings::PUD_SHIFT;
    let start = addr & !(PUD_SIZE - 1);
    // SAFETY: The caller holds the mmap lock, which a `VmaRef` needs.
    let vma_ref = unsafe { VmaRef::from_raw(vma) };
    // A PUD entry maps a block the VMA covers whole, or nothing.
    if addr == start || start < vma_ref.start() || vma_ref.end() - start < PUD_SIZE {
        return 0;
    }
    // The core MM write-locks the VMA only after this callback: until then
    // a fault under the per-VMA lock could map the block again.
    // SAFETY: The caller holds the mmap lock for writing.
    unsafe { crate::kernel_ext::bindings::dmabuf_vfio_vma_start_write(vma) };
    vma_ref.zap_vma_range(start, PUD_SIZE);
    0
}

/// Whether any of the `nr` page frames from `pfn` has a `struct page`
/// (`pfn_valid()`): device memory in a memory section with RAM, or pages
/// someone created for it.  A VMA made by [`NewVma::set_io_map`] cannot map
/// such frames.
pub(crate) fn pfns_have_struct_pages(pfn: u64, nr: u64) -> bool {
    let (Ok(pfn), Ok(nr)) = (usize::try_from(pfn), usize::try_from(nr)) else {
        return true;
    };
    // SAFETY: Only reads the memory model's section tables.
    unsafe { crate::kernel_ext::bindings::dmabuf_vfio_pfns_have_struct_pages(pfn, nr) }
}

/// What a fault handler did (`vm_fault_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FaultOutcome(bindings::vm_fault_t);

impl FaultOutcome {
    /// The access is refused: the process gets `SIGBUS`.
    pub(crate) const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);
    /// This order cannot map here; the core retries with a smaller one.
    pub(crate) const FALLBACK: Self = Self(bindings::vm_fault_reason_VM_FAULT_FALLBACK);

    /// Wraps what a PFN-inserting kernel function returned.
    pub(crate) fn from_raw(raw: bindings::vm_fault_t) -> Self {
        Self(raw)
    }

    pub(crate) fn into_raw(self) -> bindings::vm_fault_t {
        self.0
    }
}

/// A page fault in a PFN map (`struct vm_fault`).
///
/// # Invariants
///
/// Wraps a valid `vm_fault` being handled, whose VMA is valid.
#[repr(transparent)]
pub(crate) struct Fault(Opaque<bindings::vm_fault>);

impl Fault {
    /// # Safety
    ///
    /// `ptr` must be a fault being handled, valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::vm_fault) -> &'a Self {
        // SAFETY: Transparent wrapper; validity guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::vm_fault {
        self.0.get()
    }

    /// The faulting address.
    pub(crate) fn address(&self) -> usize {
        // SAFETY: By the type invariant the fault is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.address }
    }

    /// The page offset in the file of the faulting address.
    pub(crate) fn pgoff(&self) -> usize {
        // SAFETY: By the type invariant the fault is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.pgoff }
    }

    /// The VMA's first and end address.
    pub(crate) fn vma_range(&self) -> (usize, usize) {
        // SAFETY: By the type invariant the fault and its VMA are valid.
        unsafe {
            let vma = (*self.as_raw()).__bindgen_anon_1.vma;
            (
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_start,
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_end,
            )
        }
    }

    /// The VMA's `vm_private_data`.
    pub(crate) fn vma_data(&self) -> *mut c_void {
        // SAFETY: By the type invariant the fault and its VMA are valid.
        unsafe { (*(*self.as_raw()).__bindgen_anon_1.vma).vm_private_data }
    }
}

/// A physical range reserved write-combining: on x86 with PAT, the memory
/// type every mapping of it made meanwhile gets.
///
/// # Invariants
///
/// `[start, start + len)` is reserved write-combining by this value.
pub(crate) struct WcReservation {
    start: u64,
    len: u64,
}

impl WcReservation {
    /// Reserves `[start, start + len)`: `EOPNOTSUPP` where write-combining
    /// maps uncached (x86 without PAT), `EBUSY` where another mapping holds
    /// the range with another memory type.
    pub(crate) fn new(start: u64, len: u64) -> Result<Self> {
        // SAFETY: Any range may be asked for; failure reserves nothing.
        let ret = unsafe { crate::kernel_ext::bindings::dmabuf_vfio_wc_reserve(start, len) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: Reserved just now.
        Ok(Self { start, len })
    }
}

impl Drop for WcReservation {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the range is reserved, by us.
        unsafe { crate::kernel_ext::bindings::dmabuf_vfio_wc_release(self.start, self.len) };
    }
}

#[cfg(CONFIG_KUNIT)]
#[kernel::macros::kunit_tests(dmabuf_vfio_pci_struct_pages)]
mod tests {
    use super::*;
    use kernel::page::PAGE_SHIFT;

    const SUBSECTION_PAGES: u64 = 1 << (21 - PAGE_SHIFT);
    const GIB_PAGES: u64 = 1 << (30 - PAGE_SHIFT);

    /// `pfn_valid()` of every subsection the frames touch: what the
    /// section walk must answer.
    fn per_subsection(pfn: u64, nr: u64) -> bool {
        let mut p = pfn;
        while p < pfn + nr {
            // SAFETY: Only reads the memory model's section tables.
            if unsafe { crate::kernel_ext::bindings::dmabuf_vfio_pfn_valid(p as c_ulong) } {
                return true;
            }
            p = (p + 1).next_multiple_of(SUBSECTION_PAGES);
        }
        false
    }

    /// Over this machine's first 16 GiB of physical addresses (its RAM, its
    /// holes and the edges between them), from every 128 MiB (a section on
    /// x86-64) and the frame before.
    #[test]
    fn section_walk_agrees_with_pfn_valid() {
        for section in 0..128u64 {
            let first = section * GIB_PAGES / 8;
            for pfn in [first, first.saturating_sub(1)] {
                for nr in [1, SUBSECTION_PAGES, GIB_PAGES, 4 * GIB_PAGES] {
                    assert_eq!(pfns_have_struct_pages(pfn, nr), per_subsection(pfn, nr));
                }
            }
        }
    }

    #[test]
    fn frames_past_the_memory_model_have_none() {
        assert!(!pfns_have_struct_pages(1 << 40, 4 * GIB_PAGES));
    }

    #[test]
    fn a_range_that_wraps_is_refused() {
        assert!(pfns_have_struct_pages(u64::MAX - 1, 4));
    }
}
