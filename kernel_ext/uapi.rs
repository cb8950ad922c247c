// SPDX-License-Identifier: GPL-2.0

//! The uAPI constants the driver answers to: vfio's device features
//! (`include/uapi/linux/vfio.h`) and the module's own
//! (`include/uapi/linux/dmabuf_vfio_pci.h`).
//!
//! Upstream has the `uapi` crate (`rust/uapi/`), re-exported as
//! `kernel::uapi`, which does not include either header.  This module adds
//! them, re-exported from the module's [`bindings`](super::bindings) so that
//! the driver logic never names the raw bindings.

pub(crate) use super::bindings::{
    DMABUF_VFIO_PCI_FEATURE_MEMATTR, DMABUF_VFIO_PCI_FEATURE_REVOKE,
    DMABUF_VFIO_PCI_MEMATTR_UNCACHED, DMABUF_VFIO_PCI_MEMATTR_WC, VFIO_DEVICE_FEATURE_DMA_BUF,
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
    VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
    VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
};
