// SPDX-License-Identifier: GPL-2.0

//! Boxes and vectors whose frees cost a `kfree()`.
//!
//! Upstream `rust/kernel/alloc/` frees every `KBox` and `KVec` through
//! `krealloc(ptr, 0)` and the Rust reallocation path around it, and a vector
//! that never allocated too (`krealloc(NULL, 0)`, which calls
//! `kfree(NULL)`).  Measured with the function tracer on the instruction
//! clock, that is some 50 instructions more per free than the C exporter's
//! `kfree()`: per importer at every revoke (its DMA table), and four times
//! per export and release for vectors that stay empty unless an importer
//! attaches or write-combining is asked for.  [`KmallocKfree`] is `Kmalloc`
//! with a `free` that calls `kfree()` and skips layouts of size zero; the
//! upstream fix would be the same override in `Kmalloc`.

use core::{alloc::Layout, ptr::NonNull};
use kernel::{
    alloc::{allocator::Kmalloc, AllocError, Allocator, Flags, NumaNode},
    prelude::*,
};

/// [`Kmalloc`] whose frees call `kfree()` itself: upstream's go through
/// `krealloc(ptr, 0)` and the Rust reallocation path around it, some 50
/// instructions more per free (measured per importer unmap).  A zero-sized
/// layout was never allocated and frees nothing.
pub(crate) struct KmallocKfree;

// SAFETY: Every allocation and reallocation is `Kmalloc`'s; `kfree()` frees
// what `krealloc()` allocated.
unsafe impl Allocator for KmallocKfree {
    const MIN_ALIGN: usize = Kmalloc::MIN_ALIGN;

    #[inline]
    unsafe fn realloc(
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
        nid: NumaNode,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: The caller's guarantees are `Kmalloc::realloc`'s, and an
        // allocation of this allocator is one of `Kmalloc`.
        unsafe { Kmalloc::realloc(ptr, layout, old_layout, flags, nid) }
    }

    #[inline]
    unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: The caller guarantees `ptr` is a live allocation of this
        // allocator: `krealloc()` returned it.
        unsafe { kernel::bindings::kfree(ptr.as_ptr().cast()) };
    }
}

/// A box freed with `kfree()` (see [`KmallocKfree`]).
pub(crate) type KfreeBox<T> = Box<T, KmallocKfree>;

/// A vector freed with `kfree()`, and not at all while it never allocated
/// (see [`KmallocKfree`]).
pub(crate) type KfreeVec<T> = Vec<T, KmallocKfree>;
