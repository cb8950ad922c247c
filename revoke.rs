// SPDX-License-Identifier: GPL-2.0

//! Revocation of exported buffers.
//!
//! Owns, once the exporter lands: the table of every event that makes a
//! device's BARs unsafe to access (close, resets, FLR, memory decode off,
//! low power, unbind) with the hook that catches it, the revoke path itself
//! (invalidate importers' mappings, wait for their fences and unmaps) and
//! the un-revoke when the device is usable again.
