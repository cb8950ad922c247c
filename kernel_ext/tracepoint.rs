// SPDX-License-Identifier: GPL-2.0

//! The driver's tracepoints (`events/dmabuf_vfio_pci/` in tracefs).
//!
//! The events are defined in C (`include/dmabuf_vfio_trace.h`, `trace.c`);
//! these are the calls into them.  A buffer is named by its dma-buf's inode
//! number, which user space reads with `fstat()` on the dma-buf fd.
//!
//! Upstream `rust/kernel/tracepoint.rs` has `declare_trace!`, for events
//! whose static key and `rust_do_trace_*()` helper the kernel crate's own
//! bindings generate, which a module's events cannot have; this file adds
//! safe calls into the module's own events, through C wrappers in `trace.c`.

use crate::kernel_ext::{bindings, pci::raw_device as raw};
use core::ptr;
use kernel::{device::Device, prelude::*};

/// Whether `tracepoint` is on: `static_key_enabled()`, one load.
///
/// The kernel crate tests a key through `static_branch_unlikely!`, or
/// through C helpers for its atomics; a call per test is what the
/// per-mapping paths (every importer's map and unmap) save by testing
/// first and computing an event's arguments only for a tracer.  At the
/// call site, not inside the event functions: tested there, even inlined,
/// the arguments were computed first (revoke 64 x 64 read 1.03x against
/// 0.99x on Debian's kernel).
///
/// # Safety
///
/// `tracepoint` points to one of this module's tracepoints.
unsafe fn enabled(tracepoint: *const kernel::bindings::tracepoint) -> bool {
    // The tracing core changes the key's `atomic_t` atomically.
    // SAFETY: A static of this module, read as `atomic_read()` does.
    unsafe { ptr::read_volatile(&raw const (*tracepoint).key.key.enabled.counter) > 0 }
}

/// Whether the `dmabuf_vfio_map` event is on.
pub(crate) fn map_enabled() -> bool {
    // SAFETY: One of this module's tracepoints.
    unsafe { enabled(&raw const bindings::__tracepoint_dmabuf_vfio_map) }
}

/// Whether the `dmabuf_vfio_unmap` event is on.
pub(crate) fn unmap_enabled() -> bool {
    // SAFETY: One of this module's tracepoints.
    unsafe { enabled(&raw const bindings::__tracepoint_dmabuf_vfio_unmap) }
}

/// A buffer was exported.
pub(crate) fn export(dev: &Device, ino: u64, size: u64, nr_ranges: u32) {
    // SAFETY: `dev` is a valid device; the tracepoint only reads its name.
    unsafe { bindings::dmabuf_vfio_trace_export(raw(dev), ino, size, nr_ranges) };
}

/// `importer` attached; `map_type` is the route its maps will take.
pub(crate) fn attach(dev: &Device, ino: u64, importer: &Device, map_type: &CStr) {
    // SAFETY: Valid devices and a valid C string, only read during the call.
    unsafe {
        bindings::dmabuf_vfio_trace_attach(raw(dev), ino, raw(importer), map_type.as_char_ptr())
    };
}

/// `importer` mapped the buffer into `nents` DMA entries.
pub(crate) fn map(dev: &Device, ino: u64, importer: &Device, map_type: &CStr, nents: u32) {
    // SAFETY: As above.
    unsafe {
        bindings::dmabuf_vfio_trace_map(raw(dev), ino, raw(importer), map_type.as_char_ptr(), nents)
    };
}

/// `importer` unmapped the buffer.
pub(crate) fn unmap(dev: &Device, ino: u64, importer: &Device, map_type: &CStr) {
    // SAFETY: As above.
    unsafe {
        bindings::dmabuf_vfio_trace_unmap(raw(dev), ino, raw(importer), map_type.as_char_ptr())
    };
}

/// The buffer was revoked because of `cause`.
pub(crate) fn revoke(dev: &Device, ino: u64, cause: &CStr) {
    // SAFETY: As above.
    unsafe { bindings::dmabuf_vfio_trace_revoke(raw(dev), ino, cause.as_char_ptr()) };
}

/// The buffer became accessible again after `cause`.
pub(crate) fn unrevoke(dev: &Device, ino: u64, cause: &CStr) {
    // SAFETY: As above.
    unsafe { bindings::dmabuf_vfio_trace_unrevoke(raw(dev), ino, cause.as_char_ptr()) };
}

/// A CPU access faulted at page `pgoff` of the buffer.
pub(crate) fn fault(dev: &Device, ino: u64, pgoff: usize, order: u32, result: &CStr) {
    // SAFETY: As above.
    unsafe { bindings::dmabuf_vfio_trace_fault(raw(dev), ino, pgoff, order, result.as_char_ptr()) };
}
