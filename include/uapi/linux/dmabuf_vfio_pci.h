/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dmabuf-vfio-pci: device features beyond Linux's vfio uAPI.
 *
 * The driver answers VFIO_DEVICE_FEATURE_DMA_BUF (linux/vfio.h) like in-tree
 * vfio-pci, and also lets a process mmap() the dma-bufs it exports.  These
 * features act on such a dma-buf through the device fd that exported it.
 *
 * Their numbers sit far above the ones Linux allocates in order (13 was the
 * last in 7.3); PROBE tells whether a device answers them.
 */
#ifndef _UAPI_LINUX_DMABUF_VFIO_PCI_H
#define _UAPI_LINUX_DMABUF_VFIO_PCI_H

#include <linux/types.h>

/*
 * Revokes a dma-buf of this device for good (VFIO_DEVICE_FEATURE_SET):
 * importers are invalidated and waited for, CPU mappings are removed (later
 * accesses get SIGBUS) and new mmap()s fail.  Later resets or memory enables
 * do not bring it back.
 *
 * Errors: EBADF, EINVAL: dmabuf_fd is no dma-buf; ENODEV: a dma-buf of
 * another device or exporter; EBADFD: already revoked for good.
 */
#define DMABUF_VFIO_PCI_FEATURE_REVOKE		0xdb00

struct dmabuf_vfio_pci_revoke {
	__s32	dmabuf_fd;
};

/*
 * How later mmap()s of a dma-buf map the device memory (SET), or how they
 * do now (GET).  Mappings that already exist keep theirs.
 *
 * Errors: as DMABUF_VFIO_PCI_FEATURE_REVOKE; ENOENT: unknown memattr.
 */
#define DMABUF_VFIO_PCI_FEATURE_MEMATTR		0xdb01

#define DMABUF_VFIO_PCI_MEMATTR_UNCACHED	0	/* the default */
#define DMABUF_VFIO_PCI_MEMATTR_WC		1	/* write-combining */

struct dmabuf_vfio_pci_memattr {
	__s32	dmabuf_fd;
	__u32	memattr;
};

#endif /* _UAPI_LINUX_DMABUF_VFIO_PCI_H */
