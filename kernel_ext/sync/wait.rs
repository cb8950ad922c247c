// SPDX-License-Identifier: GPL-2.0

//! A count a task can wait on until it drops to zero (`wait_var_event()`,
//! `wake_up_var()`).
//!
//! Like a `kref` with a `completion`, the decrement that reaches zero wakes
//! the waiters, and a decrement that does not costs one atomic operation:
//! no lock.  Unlike them, the count may rise from zero again, with nothing
//! to re-arm.  The waiters sleep on the kernel's hashed variable wait
//! queues, so the count needs no wait queue of its own.
//!
//! Upstream `rust/kernel/sync/` has `CondVar`, `Completion`, `Refcount` and
//! the atomics, but nothing over `wait_var_event()`; this file adds
//! [`ZeroWaitCount`].

use crate::kernel_ext::bindings;
use kernel::sync::atomic::{Atomic, Relaxed};

/// A count whose drop to zero wakes the tasks waiting for it.
///
/// # Invariants
///
/// `count` has the layout of `atomic_long_t`; it is only decremented
/// through [`ZeroWaitCount::dec`], which wakes the waiters at zero.
pub(crate) struct ZeroWaitCount {
    count: Atomic<isize>,
}

impl ZeroWaitCount {
    /// A count of zero.
    pub(crate) const fn new() -> Self {
        // INVARIANT: `Atomic<isize>` is a transparent `isize`, as
        // `atomic_long_t` is a `long` in a struct.
        Self {
            count: Atomic::new(0),
        }
    }

    fn as_raw(&self) -> *mut kernel::bindings::atomic_long_t {
        self.count.as_ptr().cast()
    }

    /// The count now (for statistics: it may change right after).
    pub(crate) fn get(&self) -> usize {
        self.count.load(Relaxed).max(0) as usize
    }

    /// Counts one more.
    pub(crate) fn inc(&self) {
        self.count.add(1, Relaxed);
    }

    /// Counts one less; wakes the waiters when that makes it zero.  What the
    /// caller did before is visible to them when they wake.
    pub(crate) fn dec(&self) {
        // SAFETY: By the type invariant the pointer is a valid
        // `atomic_long_t` for as long as `self` is borrowed.
        unsafe { bindings::dmabuf_vfio_count_dec_wake(self.as_raw()) };
    }

    /// Sleeps (uninterruptibly) until the count is zero; returns at once if
    /// it is.
    pub(crate) fn wait_zero(&self) {
        // SAFETY: As above; the wait ends before `self` can go away, as it
        // is borrowed for the call.
        unsafe { bindings::dmabuf_vfio_count_wait_zero(self.as_raw()) };
    }
}
