// SPDX-License-Identifier: GPL-2.0

//! A vector that costs nothing until its first element.
//!
//! Upstream `rust/kernel/alloc/kvec.rs` frees every vector it drops through
//! the allocator, one that never allocated too: `krealloc(NULL, 0)`, which
//! calls `kfree(NULL)`, some 60 instructions for nothing (measured with the
//! function tracer on the instruction clock).  Buffers are exported and
//! released by the thousand, each with vectors that stay empty unless an
//! importer attaches or write-combining is asked for; [`LazyVec`] keeps no
//! vector until then, so dropping an empty one is a test of `None`.  (The
//! upstream fix would be for `Vec::drop` to skip the allocator at capacity
//! zero.)

use kernel::{
    alloc::{AllocError, Flags},
    prelude::*,
};

/// A [`KVec`] created at the first [`LazyVec::push`].
pub(crate) struct LazyVec<T>(Option<KVec<T>>);

impl<T> LazyVec<T> {
    /// An empty vector, with nothing allocated.
    pub(crate) const fn new() -> Self {
        Self(None)
    }

    /// Appends `value`, allocating the vector if it has none yet.
    pub(crate) fn push(&mut self, value: T, flags: Flags) -> Result<(), AllocError> {
        self.0.get_or_insert_with(KVec::new).push(value, flags)
    }

    /// Keeps the elements `keep` accepts, in order.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&mut T) -> bool) {
        if let Some(vec) = self.0.as_mut() {
            vec.retain(keep);
        }
    }

    /// Drops every element and frees the vector.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    /// Whether it has no element.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|vec| vec.is_empty())
    }

    /// The elements, in order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.as_deref().unwrap_or(&[]).iter()
    }
}

impl<T> Default for LazyVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> From<KVec<T>> for LazyVec<T> {
    fn from(vec: KVec<T>) -> Self {
        Self(Some(vec))
    }
}
