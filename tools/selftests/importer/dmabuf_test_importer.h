/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uAPI of the dmabuf-vfio-pci test importer (/dev/dmabuf_test_importer).
 *
 * Each open file is one importer: a PCI device bound to the
 * "dmabuf-test-importer" driver attaching to one dma-buf as a dynamic,
 * peer-to-peer importer, exactly as a real P2P-capable driver would.
 */
#ifndef DMABUF_TEST_IMPORTER_H
#define DMABUF_TEST_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IMPORTER_MAX_ENTRIES	16

/* Attach flags: what kind of importer to be. */
#define IMPORTER_P2P		(1 << 0)	/* allow_peer2peer */
#define IMPORTER_REVOCABLE	(1 << 1)	/* has invalidate_mappings */
/* On invalidation, keep the mapping until IMPORTER_UNMAP (proves waits). */
#define IMPORTER_HOLD		(1 << 2)
/*
 * On invalidation, unmap defer_ms later from a work item: a driver that
 * must wait for its own hardware before it gives a mapping back.
 */
#define IMPORTER_DEFER		(1 << 3)

struct importer_attach {
	char bdf[16];		/* importing device, bound to the importer */
	__s32 dmabuf_fd;
	__u32 flags;
	__u32 defer_ms;		/* with IMPORTER_DEFER */
	__u32 pad;
};

struct importer_map {
	__u32 nents;		/* out */
	__u32 pad;
	__u64 total;		/* out: bytes mapped */
	struct {
		__u64 addr;
		__u64 len;
	} entries[IMPORTER_MAX_ENTRIES];	/* out: the first entries */
};

struct importer_status {
	__u32 mapped;		/* a mapping is held */
	__u32 invalidations;	/* invalidate_mappings calls seen */
	__u32 unmaps;		/* mappings given back */
	__u32 pad;
	__u64 invalidated_ns;	/* CLOCK_MONOTONIC of the last invalidation */
	__u64 unmapped_ns;	/* CLOCK_MONOTONIC of the last unmap */
};

/* DMA by the importing device (QEMU edu engine) from the mapping. */
struct importer_dma_read {
	__u64 offset;		/* into the dma-buf */
	__u32 len;		/* at most 2048 */
	__u32 pad;
	__u8 data[4096];	/* out */
};

/* The kernel's own P2P verdict for (provider, client): pci_p2pdma_distance(). */
struct importer_p2p_distance {
	char provider[16];
	char client[16];
	__s32 distance;		/* out: -1 when the kernel refuses */
	__u32 pad;
};

#define IMPORTER_ATTACH		_IOW('I', 1, struct importer_attach)
#define IMPORTER_MAP		_IOR('I', 2, struct importer_map)
#define IMPORTER_UNMAP		_IO('I', 3)
#define IMPORTER_STATUS		_IOR('I', 4, struct importer_status)
#define IMPORTER_DMA_READ	_IOWR('I', 5, struct importer_dma_read)
#define IMPORTER_DETACH		_IO('I', 6)
#define IMPORTER_P2P_DISTANCE	_IOWR('I', 7, struct importer_p2p_distance)

/*
 * /dev/dmabuf_test_stall: a stand-in for userfaultfd (the test kernel has
 * no CONFIG_USERFAULTFD).  Each open file is STALL_PAGES zeroed pages to
 * mmap(MAP_SHARED).  A fault on an armed page blocks until the page is
 * released, so a kernel copy from it (copy_from_user() in a write(2))
 * stops at a known point while another thread looks around.
 */
#define STALL_PAGES		4
#define STALL_ARM		_IOW('S', 1, __u32)	/* mask of pages */
#define STALL_WAIT		_IO('S', 2)	/* returns the blocked page */
#define STALL_RELEASE		_IOW('S', 3, __u32)	/* page index */

#endif /* DMABUF_TEST_IMPORTER_H */
