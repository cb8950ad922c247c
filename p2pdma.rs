// SPDX-License-Identifier: GPL-2.0

//! PCI peer-to-peer reachability of an exported BAR.
//!
//! Owns, once the exporter lands: the decision how an importing device
//! reaches the exporting BAR — by PCI bus address through a common upstream
//! switch without ACS redirection, through the host bridge with a DMA-API
//! mapping of MMIO where the kernel would allow it, or not at all — computed
//! here because `pci_p2pdma_map_type()` is not exported to modules; the
//! `attach` policy (peer-to-peer capable, revocable importers only); and the
//! construction and teardown of the importer's scatter-gather table.
