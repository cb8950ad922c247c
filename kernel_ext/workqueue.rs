// SPDX-License-Identifier: GPL-2.0

//! A workqueue owned by the module.
//!
//! Work the driver defers runs module code; destroying the queue when the
//! module goes away waits for all of it, so no work item can run once the
//! module text is freed.  The system workqueues give no such guarantee to a
//! module that does not own its work items' memory.
//!
//! Upstream `rust/kernel/workqueue.rs` has `Queue`, `Work`, `DelayedWork`
//! and the system workqueues, but no queue a module allocates; this file
//! adds [`ModuleQueue`] (`alloc_workqueue()`, `destroy_workqueue()`).

use core::{
    ptr::{self, NonNull},
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{bindings, prelude::*, workqueue::Queue};

/// The queue every device of the module defers work to; set while a
/// [`ModuleQueue`] exists.
static QUEUE: AtomicPtr<bindings::workqueue_struct> = AtomicPtr::new(ptr::null_mut());

/// Owns the module's workqueue.
///
/// # Invariants
///
/// While it exists, `QUEUE` points at a valid workqueue that it allocated.
pub(crate) struct ModuleQueue(NonNull<bindings::workqueue_struct>);

// SAFETY: A workqueue may be used and destroyed from any thread.
unsafe impl Send for ModuleQueue {}
// SAFETY: `ModuleQueue` hands out no access of its own; `Queue` is `Sync`.
unsafe impl Sync for ModuleQueue {}

impl ModuleQueue {
    /// Allocates the module's queue.  There is one per module.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: The format is a valid C string with one `%s`, and `name`
        // is a valid C string for it.
        let raw = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_char_ptr(),
                bindings::wq_flags_WQ_UNBOUND,
                0,
                name.as_char_ptr(),
            )
        };
        let wq = NonNull::new(raw).ok_or(ENOMEM)?;
        if QUEUE
            .compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: Allocated above and never published.
            unsafe { bindings::destroy_workqueue(raw) };
            return Err(EBUSY);
        }
        // INVARIANT: `QUEUE` now points at the queue just allocated.
        Ok(Self(wq))
    }
}

impl Drop for ModuleQueue {
    fn drop(&mut self) {
        QUEUE.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: By the type invariant the queue is valid and ours; it runs
        // and frees every work item still queued before it is freed.
        unsafe { bindings::destroy_workqueue(self.0.as_ptr()) };
    }
}

/// The module's workqueue, if the module is initialized.
///
/// Callers are the module's device callbacks: they run between the module's
/// init and exit, and [`ModuleQueue`] lives exactly that long.
pub(crate) fn module_queue() -> Option<&'static Queue> {
    let raw = QUEUE.load(Ordering::Acquire);
    if raw.is_null() {
        return None;
    }
    // Destroyed only at module exit, once no device callback can run.
    // SAFETY: Non-null means a `ModuleQueue` owns a valid queue.
    Some(unsafe { Queue::from_raw(raw) })
}
