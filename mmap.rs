// SPDX-License-Identifier: GPL-2.0

//! CPU mappings of exported buffers.
//!
//! Owns, once the exporter lands: `mmap()` of a dma-buf, its `fault` and
//! `huge_fault` handlers inserting the BAR's PFNs under the device's
//! `memory_lock`, the zap of every mapping on revoke, and the mapping's
//! memory attribute (uncached or write-combining).
