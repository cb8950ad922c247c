// SPDX-License-Identifier: GPL-2.0

//! Values the module owns from init to exit and its device callbacks reach.
//!
//! The module's data is moved after `init` returns, so a device callback
//! cannot hold a reference into it.  A [`ModuleGlobal`] publishes a boxed
//! value instead; the guard the module keeps unpublishes and frees it at
//! exit, after every device is unbound and no callback can run.
//!
//! Upstream `rust/kernel/module.rs` has the `Module` traits and
//! `ThisModule`; this file adds [`ModuleGlobal`] and its [`Published`]
//! guard.

use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::prelude::*;

/// A slot for one value of type `T`, published while a [`Published`] lives.
pub(crate) struct ModuleGlobal<T: Send + Sync + 'static>(AtomicPtr<T>);

impl<T: Send + Sync + 'static> ModuleGlobal<T> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(ptr::null_mut()))
    }

    /// Publishes `value` until the returned guard is dropped.
    pub(crate) fn publish(&'static self, value: KBox<T>) -> Result<Published<T>> {
        let raw = KBox::into_raw(value);
        if self
            .0
            .compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `raw` came from `KBox::into_raw` above and was not published.
            drop(unsafe { KBox::from_raw(raw) });
            return Err(EBUSY);
        }
        Ok(Published(self))
    }

    /// The published value, if any.
    ///
    /// Callers are device callbacks of the module: they run between its init
    /// and exit, while the value is published.
    pub(crate) fn get(&'static self) -> Option<&'static T> {
        let raw = self.0.load(Ordering::Acquire);
        // SAFETY: A non-null pointer is a published box, freed only when the
        // guard drops at module exit, when no callback runs any more.
        (!raw.is_null()).then(|| unsafe { &*raw })
    }
}

/// Keeps a value published; unpublishes and frees it when dropped.
pub(crate) struct Published<T: Send + Sync + 'static>(&'static ModuleGlobal<T>);

impl<T: Send + Sync + 'static> Drop for Published<T> {
    fn drop(&mut self) {
        let raw = self.0 .0.swap(ptr::null_mut(), Ordering::AcqRel);
        if !raw.is_null() {
            // SAFETY: The pointer was published by `publish` from a box.
            drop(unsafe { KBox::from_raw(raw) });
        }
    }
}
