// SPDX-License-Identifier: GPL-2.0

//! Revocation of exported buffers.
//!
//! Revoking a buffer marks it revoked (new attaches and maps fail with
//! `ENODEV`), tells every importer to drop its mappings
//! (`dma_buf_invalidate_mappings()`), waits for the importers' fences, then
//! waits until every DMA mapping is unmapped.  Only then may the BAR become
//! unreachable.
//!
//! Events that make a device's BARs unsafe, the hook that catches each, and
//! what it does:
//!
//! | event | hook | action |
//! |---|---|---|
//! | last close of the device | `close_device`, before the core disables the device | revoke for good, drop the buffers' device registrations |
//!
//! Lock order: the core's `memory_lock` → the device's export list → a
//! dma-buf's reservation lock → the buffer's state.

use crate::vfio::Device;
use crate::{dma_buf::DmaBufRef, DmabufVfioPci, ExportedBar};

/// Revokes `bar`: afterwards no importer holds a mapping of it.
fn revoke(bar: &ExportedBar, buf: &DmaBufRef<ExportedBar>) {
    {
        let resv = buf.lock_resv();
        let mut state = bar.state.lock();
        if state.revoked {
            return;
        }
        state.revoked = true;
        drop(state);
        resv.invalidate_mappings();
        resv.wait_idle();
    }
    let mut state = bar.state.lock();
    while state.mappings > 0 {
        bar.unmapped.wait(&mut state);
    }
}

/// The device is being closed: revokes every buffer for good and lets go of
/// the device, so a buffer that outlives the close only fails and frees.
pub(crate) fn release_all(dev: &Device<DmabufVfioPci>) {
    let _memory = dev.core().memory_lock_write();
    let mut exports = dev.exports.lock();
    for bar in exports.drain_all() {
        let buf = bar.state.lock().dmabuf.as_ref().and_then(|b| b.try_get());
        if let Some(buf) = buf {
            revoke(&bar, &buf);
        }
        // A buffer whose release already began has no importers left.
        let device = bar.state.lock().device.take();
        drop(device);
    }
}
