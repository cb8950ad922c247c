// SPDX-License-Identifier: GPL-2.0
/*
 * make demo: a BAR range exported as a dma-buf, imported by a second PCI
 * device that reads it by DMA, then revoked when the exporter closes.
 */
#include "dmabuf_test_importer.h"
#include "vfio_util.h"

#define PAGE	4096ull

static const char message[] = "hello from the exporting BAR, read by peer DMA";

static int fail(const char *what)
{
	printf("  FAILED: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	const char *exporter = test_dev("SW_IVSHMEM"), *importer = test_dev("SW_EDU");
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf get;
		struct vfio_region_dma_range r;
	} req = {
		.hdr = {
			.argsz = sizeof(req),
			.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
		},
		.get = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = 16 * PAGE, .length = 4 * PAGE },
	};
	static struct importer_dma_read rd = { .offset = PAGE, .len = sizeof(message) };
	struct importer_attach at = { .flags = IMPORTER_P2P | IMPORTER_REVOCABLE };
	struct importer_status st = {};
	struct importer_map m = {};
	struct vfio_handle h;
	uint16_t cmd;
	char *bar;
	int buf, imp;

	if (!exporter || !importer)
		return fail("test devices not set");
	printf("Exporter %s (dmabuf-vfio-pci), importer %s (test importer, same switch)\n",
	       exporter, importer);
	if (vfio_open_cdev(exporter, &h))
		return fail("open exporter");
	vfio_config_read(h.device, PCI_COMMAND, &cmd, 2);
	cmd |= PCI_COMMAND_MEMORY;
	vfio_config_write(h.device, PCI_COMMAND, &cmd, 2);
	bar = vfio_mmap_bar(h.device, 2, 0, 32 * PAGE);
	if (bar == MAP_FAILED)
		return fail("mmap BAR2");
	memcpy(bar + 17 * PAGE, message, sizeof(message));
	printf("  wrote \"%s\" at BAR2+0x%llx through the device fd\n", message, 17 * PAGE);

	buf = ioctl(h.device, VFIO_DEVICE_FEATURE, &req);
	if (buf < 0)
		return fail("VFIO_DEVICE_FEATURE_DMA_BUF");
	printf("  exported BAR2 [0x%llx, +0x%llx) as dma-buf fd %d\n",
	       req.r.offset, req.r.length, buf);

	imp = open("/dev/dmabuf_test_importer", O_RDWR);
	snprintf(at.bdf, sizeof(at.bdf), "%s", importer);
	at.dmabuf_fd = buf;
	if (imp < 0 || ioctl(imp, IMPORTER_ATTACH, &at))
		return fail("attach");
	if (ioctl(imp, IMPORTER_MAP, &m))
		return fail("map");
	printf("  importer mapped %u entry: DMA address 0x%llx, %llu bytes (PCI bus address: same switch)\n",
	       m.nents, (unsigned long long)m.entries[0].addr,
	       (unsigned long long)m.entries[0].len);
	if (ioctl(imp, IMPORTER_DMA_READ, &rd))
		return fail("peer DMA");
	printf("  importer's DMA engine read: \"%s\"\n", (char *)rd.data);

	/* The BAR mapping holds the device file open: drop it, then close. */
	munmap(bar, 32 * PAGE);
	vfio_handle_close(&h);
	ioctl(imp, IMPORTER_STATUS, &st);
	printf("  exporter closed its device: importer saw %u invalidation, gave back %u mapping\n",
	       st.invalidations, st.unmaps);
	if (ioctl(imp, IMPORTER_MAP, &m) && errno == ENODEV)
		printf("  importer maps again: %s (revoked for good)\n", strerror(errno));
	close(imp);
	close(buf);
	return 0;
}
