// SPDX-License-Identifier: GPL-2.0

//! dmabuf-vfio-pci: a vfio-pci variant driver that exports PCI BAR ranges as
//! dma-bufs.
//!
//! The driver binds any PCI device through `driver_override`, like vfio-pci,
//! and runs it on vfio-pci-core.  It will own the
//! `VFIO_DEVICE_FEATURE_DMA_BUF` exporter: the per-device list of exported
//! buffers lives here, [`p2pdma`] decides how an importer reaches the BAR,
//! [`revoke`] cuts importers off whenever the BAR becomes unsafe, and
//! [`mmap`] maps buffers into processes.

use kernel::prelude::*;

mod mmap;
mod p2pdma;
mod revoke;
mod vfio;

use vfio::{CoreDevice, Registration, VariantDriver};

module! {
    type: DmabufVfioPciModule,
    name: "dmabuf_vfio_pci",
    authors: ["dmabuf-vfio-pci developers"],
    description: "VFIO PCI variant driver exporting BAR ranges as dma-bufs",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

/// Per-device data of the driver, behind the vfio-pci core device.
///
/// The exporter's list of live dma-bufs and its lock belong here; the lock
/// order will be: the core's `memory_lock` → that lock → a dma-buf's
/// reservation lock.
struct DmabufVfioPci;

impl VariantDriver for DmabufVfioPci {
    const NAME: &'static CStr = c"dmabuf-vfio-pci";

    fn init(_core: &CoreDevice) -> impl PinInit<Self, Error> {
        Ok(Self)
    }
}

struct DmabufVfioPciModule {
    _driver: Registration<DmabufVfioPci>,
}

impl kernel::Module for DmabufVfioPciModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self {
            _driver: Registration::new()?,
        })
    }
}
