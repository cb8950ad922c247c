// SPDX-License-Identifier: GPL-2.0

//! CPU mappings of exported buffers.
//!
//! A process that holds only a dma-buf fd can `mmap()` it and reach exactly
//! the BAR ranges of the buffer, never the rest of the device.  The mapping
//! of special entries with the flags vfio-pci gives its own BAR mappings
//! (`VM_IO | VM_DONTEXPAND | VM_DONTDUMP`), so `get_user_pages()` refuses
//! it: no `O_DIRECT` into it, no `process_vm_readv()`, no ptrace peeks.  It
//! is `VM_MIXEDMAP`, not vfio-pci's `VM_PFNMAP`: vfio type1's
//! `VFIO_IOMMU_MAP_DMA` follows the PFNs of a `VM_PFNMAP` VMA into an IOMMU
//! domain that no revoke reaches, and refuses every other VMA.  KVM, which
//! follows `VM_IO` VMAs too, hears of the zap of a revoke through its MMU
//! notifier.  Pages are inserted on fault, at PUD or PMD size where the range,
//! the VMA and the PFN allow it (`huge_fault`), under the device's
//! `memory_lock` held for reading and the buffer's state lock; revocation
//! marks the buffer revoked under the state lock and then zaps every mapping
//! of the dma-buf's file, so a fault either maps before the zap or sees the
//! mark and gets `SIGBUS`.
//!
//! A mapping holds the dma-buf's file, which holds the buffer: it outlives
//! closing the dma-buf fd.  It does not hold the device: once the device is
//! closed (the buffer is then revoked for good) faults get `SIGBUS`, and a
//! fault pins the device's vfio registration before it takes `memory_lock`.

use crate::kernel_ext::{
    alloc::KfreeVec,
    dma_buf::{DmaBufRef, PhysRange},
    mm::virt::{pfns_have_struct_pages, Fault, FaultOutcome, MemAttr, NewVma, WcReservation},
    tracepoint as trace, uapi,
    vfio::Device,
};
use crate::{BufferState, DmabufVfioPci, ExportedBar};
use core::ptr;
use kernel::{
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// `dma_buf_ops.mmap`: `MAP_SHARED` only, within the buffer, not revoked.
pub(crate) fn mmap(bar: &ExportedBar, vma: &NewVma) -> Result<MemAttr> {
    if !vma.is_shared() {
        return Err(EINVAL);
    }
    // The dma-buf core checked this already; a range past the end would
    // fault into nothing, so refuse it here as well.
    let end = (vma.pgoff() as u64)
        .checked_add((vma.len() >> PAGE_SHIFT) as u64)
        .ok_or(EINVAL)?;
    if end > bar.size >> PAGE_SHIFT {
        return Err(EINVAL);
    }
    // Not the mapping type, then: BARs have no struct pages but in odd
    // memory layouts (a BAR in a memory section with RAM).
    if bar
        .ranges
        .iter()
        .any(|r| pfns_have_struct_pages(r.paddr >> PAGE_SHIFT, r.len >> PAGE_SHIFT))
    {
        return Err(ENXIO);
    }
    let mut state = bar.state.lock();
    if bar.revoked() {
        return Err(ENODEV);
    }
    // Counted with the memory type it gets, under the same lock: a memory
    // type changes only while the buffer is not mapped.
    state.cpu_mappings += 1;
    Ok(state.memattr)
}

/// The first PFN of the `pages` pages at page `pgoff` of a buffer made of
/// `ranges`, if they are physically contiguous (inside one range).
fn block_pfn(ranges: &[PhysRange], pgoff: u64, pages: u64) -> Option<u64> {
    let mut offset = pgoff.checked_mul(PAGE_SIZE as u64)?;
    let len = pages.checked_mul(PAGE_SIZE as u64)?;
    for range in ranges {
        if offset < range.len {
            if len > range.len - offset {
                return None;
            }
            return Some((range.paddr + offset) >> PAGE_SHIFT);
        }
        offset -= range.len;
    }
    None
}

/// `vm_operations_struct.fault` (order 0) and `.huge_fault`.
pub(crate) fn fault(bar: &ExportedBar, fault: &Fault, order: u32) -> FaultOutcome {
    // Closed devices let go of their buffers: nothing to map then.
    let Some(device) = bar.device_registration() else {
        return FaultOutcome::SIGBUS;
    };
    let outcome = map_block(bar, &device, fault, order);
    device.stats.faulted(order, outcome);
    let result = if outcome == FaultOutcome::SIGBUS {
        c"sigbus"
    } else if outcome == FaultOutcome::FALLBACK {
        c"fallback"
    } else {
        c"mapped"
    };
    trace::fault(&bar.exporter, bar.ino(), fault.pgoff(), order, result);
    outcome
}

fn map_block(
    bar: &ExportedBar,
    device: &Device<DmabufVfioPci>,
    fault: &Fault,
    order: u32,
) -> FaultOutcome {
    let fallback = if order == 0 {
        FaultOutcome::SIGBUS
    } else {
        FaultOutcome::FALLBACK
    };
    let size = PAGE_SIZE << order;
    let base = fault.address() & !(size - 1);
    let (start, end) = fault.vma_range();
    if base < start || end - base < size {
        return fallback;
    }
    let pgoff = fault.pgoff() - ((fault.address() - base) >> PAGE_SHIFT);
    let pages = 1u64 << order;
    let Some(pfn) = block_pfn(&bar.ranges, pgoff as u64, pages) else {
        return fallback;
    };
    if pfn % pages != 0 {
        return fallback;
    }
    // mmap() checked the buffer; the insert would BUG on such a PFN.
    if pfns_have_struct_pages(pfn, pages) {
        return FaultOutcome::SIGBUS;
    }
    let Ok(pfn) = usize::try_from(pfn) else {
        return FaultOutcome::SIGBUS;
    };

    let memory = device.core().memory_lock_read();
    // Memory types change under `memory_lock` held for writing.
    if device.bar_memtype_freed(bar.region) {
        let uncached = bar.state.lock().memattr == MemAttr::Uncached;
        if uncached && held_write_combining(device, bar, pfn, pages) {
            return fallback;
        }
    }
    // Held across the insert: a revoke sets the mark under it, then zaps.
    let _state = bar.state.lock();
    if bar.revoked() {
        return FaultOutcome::SIGBUS;
    }
    memory.insert_pfn(fault, pfn, order)
}

/// Whether the `pages` pages from `pfn` overlap ranges that a buffer of
/// `device` other than `bar` holds write-combining.  On x86 a page maps
/// with the memory type its range is reserved with, whatever the mapping
/// asks for: such a page is never mapped uncached.
fn held_write_combining(
    device: &Device<DmabufVfioPci>,
    bar: &ExportedBar,
    pfn: usize,
    pages: u64,
) -> bool {
    let start = (pfn as u64) << PAGE_SHIFT;
    let end = start + (pages << PAGE_SHIFT);
    device.exports.lock().list.iter().any(|other| {
        !ptr::eq(&***other, bar) && other.overlaps(start, end) && !other.state.lock().wc.is_empty()
    })
}

/// Whether a buffer of `device` other than `bar` that overlaps it is
/// mapped uncached now.
fn mapped_uncached(device: &Device<DmabufVfioPci>, bar: &ExportedBar) -> bool {
    device.exports.lock().list.iter().any(|other| {
        !ptr::eq(&***other, bar)
            && bar
                .ranges
                .iter()
                .any(|r| other.overlaps(r.paddr, r.paddr + r.len))
            && {
                let state = other.state.lock();
                state.memattr == MemAttr::Uncached && state.cpu_mappings > 0
            }
    })
}

/// `DMABUF_VFIO_PCI_FEATURE_MEMATTR`: sets (or gets) how later mappings of
/// one of the device's buffers map it.
pub(crate) fn memattr_feature(dev: &Device<DmabufVfioPci>, set: bool, arg: UserPtr) -> Result {
    let mut request = UserSlice::new(arg, 8).reader();
    let fd = request.read::<i32>()?;
    let requested = request.read::<u32>()?;
    let buf = DmaBufRef::<ExportedBar>::from_fd(fd)?;
    let bar = buf.data();
    if !bar.exported_by(dev) {
        return Err(ENODEV);
    }
    if set {
        let memattr = match requested {
            uapi::DMABUF_VFIO_PCI_MEMATTR_UNCACHED => MemAttr::Uncached,
            uapi::DMABUF_VFIO_PCI_MEMATTR_WC => MemAttr::WriteCombining,
            _ => return Err(ENOENT),
        };
        return set_memattr(dev, &bar, memattr);
    }
    let current = match bar.state.lock().memattr {
        MemAttr::Uncached => uapi::DMABUF_VFIO_PCI_MEMATTR_UNCACHED,
        MemAttr::WriteCombining => uapi::DMABUF_VFIO_PCI_MEMATTR_WC,
    };
    let memattr_field = UserPtr::from_addr(arg.as_const_ptr() as usize + 4);
    UserSlice::new(memattr_field, 4).writer().write(&current)
}

/// Changes how later mappings of `bar` map it.  A mapping's memory type is
/// never other than asked for: write-combining needs a prefetchable BAR
/// (`EINVAL`) and the ranges reserved write-combining (see
/// [`WcReservation::new`]), and a type cannot change while the buffer, or
/// another that overlaps it uncached, is mapped (`EBUSY`): on x86 one
/// physical page has one memory type.  The device fd's own mappings of
/// the BAR fault in again with the type each page has then.
fn set_memattr(dev: &Device<DmabufVfioPci>, bar: &ExportedBar, memattr: MemAttr) -> Result {
    let unchanged = |state: &BufferState| -> Result<bool> {
        if state.memattr == memattr {
            return Ok(true);
        }
        if state.cpu_mappings > 0 {
            return Err(EBUSY);
        }
        if memattr == MemAttr::WriteCombining {
            if !bar.prefetchable {
                return Err(EINVAL);
            }
            if state.permanent || state.device.is_none() {
                return Err(ENODEV);
            }
        }
        Ok(false)
    };
    // Checked before the BAR's kernel mapping is replaced for it, and again
    // under the locks the change is made under.
    if unchanged(&bar.state.lock())? {
        return Ok(());
    }
    if memattr == MemAttr::WriteCombining {
        dev.free_bar_memtype(bar.region)?;
    }

    let memory = dev.core().memory_lock_write();
    if memattr == MemAttr::WriteCombining && mapped_uncached(dev, bar) {
        return Err(EBUSY);
    }
    let mut state = bar.state.lock();
    if unchanged(&state)? {
        return Ok(());
    }
    if memattr == MemAttr::WriteCombining {
        let mut reservations = KfreeVec::with_capacity(bar.ranges.len(), GFP_KERNEL)?;
        for range in bar.ranges.iter() {
            reservations.push(WcReservation::new(range.paddr, range.len)?, GFP_KERNEL)?;
        }
        state.wc = reservations;
    } else {
        state.wc.clear();
    }
    state.memattr = memattr;
    drop(state);
    memory.zap_device_mappings(bar.region);
    Ok(())
}

#[cfg(CONFIG_KUNIT)]
#[kernel::macros::kunit_tests(dmabuf_vfio_pci_mmap)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE as u64;
    const MIB2: u64 = 2 << 20;

    fn range(paddr: u64, len: u64) -> PhysRange {
        PhysRange { paddr, len }
    }

    #[test]
    fn page_in_second_range() {
        let r = [range(0x1000_0000, 2 * P), range(0x2000_0000, 4 * P)];
        assert_eq!(block_pfn(&r, 3, 1), Some((0x2000_0000 + P) >> PAGE_SHIFT));
    }

    #[test]
    fn out_of_order_and_aliasing_ranges() {
        let r = [
            range(0x5000_0000, P),
            range(0x1000_0000, P),
            range(0x5000_0000, P),
        ];
        assert_eq!(block_pfn(&r, 0, 1), Some(0x5000_0000 >> PAGE_SHIFT));
        assert_eq!(block_pfn(&r, 1, 1), Some(0x1000_0000 >> PAGE_SHIFT));
        assert_eq!(block_pfn(&r, 2, 1), Some(0x5000_0000 >> PAGE_SHIFT));
    }

    #[test]
    fn block_across_ranges_is_refused() {
        // Physically adjacent but separate ranges are not merged here: the
        // exporter merges contiguous ranges when it builds the buffer.
        let r = [range(0, MIB2 / 2), range(MIB2 / 2, MIB2 / 2)];
        assert_eq!(block_pfn(&r, 0, MIB2 / P), None);
    }

    #[test]
    fn huge_block_inside_one_range() {
        let r = [range(0x4000_0000, 4 * MIB2)];
        assert_eq!(
            block_pfn(&r, MIB2 / P, MIB2 / P),
            Some((0x4000_0000 + MIB2) >> PAGE_SHIFT)
        );
    }

    #[test]
    fn past_the_end_is_refused() {
        let r = [range(0, 2 * P)];
        assert_eq!(block_pfn(&r, 2, 1), None);
        assert_eq!(block_pfn(&r, 1, 2), None);
        assert_eq!(block_pfn(&r, u64::MAX, 1), None);
    }
}
