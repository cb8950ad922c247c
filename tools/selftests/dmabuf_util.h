/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the dmabuf-vfio-pci selftests: exporting BAR ranges and
 * driving the test importer (importer/dmabuf_test_importer.h).
 */
#ifndef DMABUF_UTIL_H
#define DMABUF_UTIL_H

#include <fcntl.h>
#include <linux/loop.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dmabuf_test_importer.h"
#include "linux/dmabuf_vfio_pci.h"
#include "vfio_util.h"

#define PAGE	4096ull
#define IMPORTER_DYNAMIC_P2P	(IMPORTER_P2P | IMPORTER_REVOCABLE)

/* Where a SIGBUS in peek_or_sigbus() returns to, per thread. */
static inline sigjmp_buf *bus_return(void)
{
	static __thread sigjmp_buf jmp;

	return &jmp;
}

static inline void return_from_sigbus(int sig)
{
	siglongjmp(*bus_return(), sig);
}

/* Reads a byte of a mapping; -1 when the access raised SIGBUS. */
static inline int peek_or_sigbus(volatile uint8_t *p)
{
	struct sigaction sa = { .sa_handler = return_from_sigbus, .sa_flags = SA_NODEFER };

	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(*bus_return(), 1))
		return -1;
	return *p;
}

/* Exports one range of BAR @region, its fd opened @open_flags; fd or -errno. */
static inline int export1_flags(int device, uint32_t region, uint64_t off, uint64_t len,
				uint32_t open_flags)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf get;
		struct vfio_region_dma_range r[2];
	} req = {
		.hdr = {
			.argsz = sizeof(req),
			.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
		},
		.get = { .region_index = region, .open_flags = open_flags, .nr_ranges = 1 },
		.r = { { off, len } },
	};
	int ret = ioctl(device, VFIO_DEVICE_FEATURE, &req);

	return ret < 0 ? -errno : ret;
}

static inline int export1(int device, uint32_t region, uint64_t off, uint64_t len)
{
	return export1_flags(device, region, off, len, O_RDWR);
}

/* An importer of @dmabuf on @bdf: IMPORTER_* @flags, @defer_ms with DEFER. */
static inline int importer_open_deferred(const char *bdf, int dmabuf, uint32_t flags,
					 uint32_t defer_ms)
{
	struct importer_attach a = { .dmabuf_fd = dmabuf, .flags = flags, .defer_ms = defer_ms };
	int fd = open("/dev/dmabuf_test_importer", O_RDWR);

	if (fd < 0)
		return -errno;
	snprintf(a.bdf, sizeof(a.bdf), "%s", bdf);
	if (ioctl(fd, IMPORTER_ATTACH, &a)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static inline int importer_open(const char *bdf, int dmabuf, uint32_t flags)
{
	return importer_open_deferred(bdf, dmabuf, flags, 0);
}

static inline int importer_map(int imp, struct importer_map *m)
{
	memset(m, 0, sizeof(*m));
	return ioctl(imp, IMPORTER_MAP, m) ? -errno : 0;
}

static inline struct importer_status importer_status(int imp)
{
	struct importer_status st = {};

	ioctl(imp, IMPORTER_STATUS, &st);
	return st;
}

static inline uint64_t bar_start(const char *bdf, int bar)
{
	char buf[4096], *line = buf;
	unsigned long long start = 0;

	if (sysfs_read(bdf, "resource", buf, sizeof(buf)))
		return 0;
	for (int i = 0; i < bar && line; i++) {
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	if (line)
		sscanf(line, "%llx", &start);
	return start;
}

/* The kernel's P2PDMA distance from @client to @provider (-1: refused). */
static inline int kernel_p2p_distance(const char *provider, const char *client)
{
	struct importer_p2p_distance req = {};
	int fd = open("/dev/dmabuf_test_importer", O_RDWR), ret;

	if (fd < 0)
		return -1000;
	snprintf(req.provider, sizeof(req.provider), "%s", provider);
	snprintf(req.client, sizeof(req.client), "%s", client);
	ret = ioctl(fd, IMPORTER_P2P_DISTANCE, &req);
	close(fd);
	return ret ? -1000 : req.distance;
}

static inline int set_memory_enable(int device, int on)
{
	uint16_t cmd;
	int ret = vfio_config_read(device, PCI_COMMAND, &cmd, 2);

	if (ret)
		return ret;
	cmd = on ? cmd | PCI_COMMAND_MEMORY : cmd & ~PCI_COMMAND_MEMORY;
	return vfio_config_write(device, PCI_COMMAND, &cmd, 2);
}

/* DMABUF_VFIO_PCI_FEATURE_REVOKE on @dmabuf through @device; -errno. */
static inline int revoke_for_good(int device, int dmabuf)
{
	struct {
		struct vfio_device_feature hdr;
		struct dmabuf_vfio_pci_revoke r;
	} req = {
		.hdr = {
			.argsz = sizeof(req),
			.flags = VFIO_DEVICE_FEATURE_SET | DMABUF_VFIO_PCI_FEATURE_REVOKE,
		},
		.r = { .dmabuf_fd = dmabuf },
	};

	return ioctl(device, VFIO_DEVICE_FEATURE, &req) ? -errno : 0;
}

/*
 * A loop device over a file in /tmp, for O_DIRECT reads (GUP of a mapping
 * through the block layer); its path in PATH, -1 without one.
 */
static inline int direct_io_source(char *path, size_t len)
{
	char backing[] = "/tmp/dmabuf_direct_io.XXXXXX";
	int ctl, n, bfd, lfd = -1;

	bfd = mkstemp(backing);
	if (bfd < 0)
		return -1;
	unlink(backing);
	if (ftruncate(bfd, 1 << 20))
		goto out;
	ctl = open("/dev/loop-control", O_RDWR);
	n = ctl < 0 ? -1 : ioctl(ctl, LOOP_CTL_GET_FREE);
	if (ctl >= 0)
		close(ctl);
	if (n < 0)
		goto out;
	snprintf(path, len, "/dev/loop%d", n);
	lfd = open(path, O_RDWR);
	if (lfd >= 0 && ioctl(lfd, LOOP_SET_FD, bfd)) {
		close(lfd);
		lfd = -1;
	}
out:
	close(bfd);
	return lfd;
}

#endif /* DMABUF_UTIL_H */
