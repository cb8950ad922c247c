// SPDX-License-Identifier: GPL-2.0
/*
 * Importers of dmabuf-vfio-pci buffers, seen from the importer's side
 * (the dmabuf_test_importer module acting for an edu device):
 * who may attach, what addresses a mapping carries for each P2P topology,
 * the bytes the importing device reads by DMA, and revocation on close.
 *
 *   exporter SW_IVSHMEM and importer SW_EDU share a PCIe switch;
 *   exporter IVSHMEM and importer IMP_EDU sit on the root bus (no common
 *   upstream bridge; q35's host bridge is not on the P2PDMA allow list).
 */
#include <pthread.h>
#include <time.h>

#include "kselftest_harness.h"
#include "dmabuf_util.h"

FIXTURE(import) {
	struct vfio_handle h;
	const char *exporter, *importer;
};

/* The same importer, topology and requests against in-tree vfio-pci. */
FIXTURE_VARIANT(import) {
	const char *exporter;
	const char *driver;
	bool merges_ranges;
	bool iommufd_maps;
	bool waits_once;
};

FIXTURE_VARIANT_ADD(import, ours) {
	.exporter = "SW_IVSHMEM",
	.driver = "dmabuf-vfio-pci",
	.merges_ranges = true,
	.waits_once = true,
};

FIXTURE_VARIANT_ADD(import, vfio_pci) {
	.exporter = "VFIO_IVSHMEM",
	.driver = "vfio-pci",
	.merges_ranges = false,
	.iommufd_maps = true,
};

FIXTURE_SETUP(import)
{
	self->exporter = test_dev(variant->exporter);
	self->importer = test_dev("SW_EDU");
	ASSERT_NE(NULL, self->exporter);
	ASSERT_NE(NULL, self->importer);
	ASSERT_EQ(0, vfio_open(self->exporter, &self->h));
}

FIXTURE_TEARDOWN(import)
{
	vfio_handle_close(&self->h);
}

TEST_F(import, only_p2p_revocable_importers_attach)
{
	int buf = export1(self->h.device, 2, 0, 4 * PAGE);

	ASSERT_GE(buf, 0);
	EXPECT_EQ(-EOPNOTSUPP, importer_open(self->importer, buf, 0));
	EXPECT_EQ(-EOPNOTSUPP, importer_open(self->importer, buf, IMPORTER_REVOCABLE));
	EXPECT_EQ(-EOPNOTSUPP, importer_open(self->importer, buf, IMPORTER_P2P));
	close(buf);
}

/* Behind one switch without ACS redirect: PCI bus addresses, no IOMMU. */
TEST_F(import, switch_peer_gets_bus_addresses)
{
	uint64_t start = bar_start(self->exporter, 2);
	struct importer_map m;
	int buf, imp;

	buf = export1(self->h.device, 2, 8 * PAGE, 4 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	EXPECT_EQ(1, m.nents);
	EXPECT_EQ(4 * PAGE, m.total);
	/* x86: bus address == CPU physical address. */
	EXPECT_EQ(start + 8 * PAGE, m.entries[0].addr);
	close(imp);
	close(buf);
}

/* The kernel agrees: a switch peer is reachable (distance 4 = 2 + 2 hops). */
TEST_F(import, kernel_agrees_switch_peer_is_reachable)
{
	EXPECT_EQ(4, kernel_p2p_distance(self->exporter, self->importer));
}

/*
 * No common upstream bridge and no allowed host bridge: mapping fails, and
 * the kernel refuses the pair too.
 */
TEST(root_bus_peer_cannot_map)
{
	const char *exporter = test_dev("IVSHMEM");
	const char *importer = test_dev("IMP_EDU");
	struct importer_map m;
	struct vfio_handle h;
	int buf, imp;

	ASSERT_NE(NULL, exporter);
	ASSERT_NE(NULL, importer);
	ASSERT_EQ(0, vfio_open(exporter, &h));
	buf = export1(h.device, 2, 0, PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	EXPECT_EQ(-EINVAL, importer_map(imp, &m));
	EXPECT_EQ(-1, kernel_p2p_distance(exporter, importer));

	/* A refused reset (no reset method here) is no event, as in vfio-pci. */
	EXPECT_EQ(-1, ioctl(h.device, VFIO_DEVICE_RESET));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, importer_status(imp).invalidations);
	close(imp);
	close(buf);
	vfio_handle_close(&h);
}

/*
 * Physically contiguous consecutive ranges become one larger entry (in-tree
 * vfio-pci keeps one entry per range).
 */
TEST_F(import, contiguous_ranges_merge)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf get;
		struct vfio_region_dma_range r[3];
	} req = {
		.hdr = {
			.argsz = sizeof(req),
			.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
		},
		.get = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 3 },
		.r = { { 0, PAGE }, { PAGE, 2 * PAGE }, { 16 * PAGE, PAGE } },
	};
	uint64_t start = bar_start(self->exporter, 2);
	struct importer_map m;
	int buf, imp;

	buf = ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	EXPECT_EQ(4 * PAGE, m.total);
	if (variant->merges_ranges) {
		ASSERT_EQ(2, m.nents);
		EXPECT_EQ(start, m.entries[0].addr);
		EXPECT_EQ(3 * PAGE, m.entries[0].len);
		EXPECT_EQ(start + 16 * PAGE, m.entries[1].addr);
		EXPECT_EQ(PAGE, m.entries[1].len);
	} else {
		ASSERT_EQ(3, m.nents);
		EXPECT_EQ(start + PAGE, m.entries[1].addr);
		EXPECT_EQ(start + 16 * PAGE, m.entries[2].addr);
	}
	close(imp);
	close(buf);
}

/*
 * A range over 4 GiB maps whole, split into entries below 4 GiB
 * (ALIGN_DOWN(UINT_MAX, PAGE_SIZE)) that follow each other.
 */
TEST_F(import, range_over_4g_maps_whole)
{
	const uint64_t len = 6ull << 30, max_entry = 0xfffff000ull;
	uint64_t size, next = bar_start(self->exporter, 2) + PAGE;
	struct importer_map m;
	int buf, imp;

	ASSERT_EQ(0, sysfs_bar_size(self->exporter, 2, &size));
	if (size < PAGE + len)
		SKIP(return, "BAR 2 is %llu bytes", (unsigned long long)size);
	buf = export1(self->h.device, 2, PAGE, len);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	EXPECT_EQ(len, m.total);
	EXPECT_EQ(2, m.nents);
	for (unsigned int i = 0; i < m.nents && i < IMPORTER_MAX_ENTRIES; i++) {
		EXPECT_LE(m.entries[i].len, max_entry);
		EXPECT_EQ(next, m.entries[i].addr);
		next += m.entries[i].len;
	}
	close(imp);
	close(buf);
}

/*
 * IOMMU_IOAS_MAP_FILE maps only in-tree vfio-pci's dma-bufs: iommufd calls
 * a function of that exporter, exported to it alone.  Ours gets a clean
 * error, at once, and the buffer keeps serving other importers.
 */
TEST_F(import, iommufd_map_file)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.length = 4 * PAGE,
	};
	struct importer_map m;
	int buf, imp, ret;

	if (self->h.iommufd < 0)
		SKIP(return, "the device is open through its group: this kernel has no iommufd");
	buf = export1(self->h.device, 2, 0, 4 * PAGE);
	ASSERT_GE(buf, 0);
	ASSERT_EQ(0, ioctl(self->h.iommufd, IOMMU_IOAS_ALLOC, &alloc));
	map.ioas_id = alloc.out_ioas_id;
	map.fd = buf;
	ret = ioctl(self->h.iommufd, IOMMU_IOAS_MAP_FILE, &map);
	if (variant->iommufd_maps) {
		EXPECT_EQ(0, ret);
	} else {
		EXPECT_EQ(-1, ret);
		EXPECT_EQ(EOPNOTSUPP, errno);
	}
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	EXPECT_EQ(0, importer_map(imp, &m));
	close(imp);
	close(buf);
}

/*
 * Closing the exporting device revokes: the importer is told, unmaps, and
 * can neither map again nor can new importers attach.
 */
TEST_F(import, close_revokes_for_good)
{
	struct importer_status st;
	struct importer_map m;
	int buf, imp;

	buf = export1(self->h.device, 2, 0, 4 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	ASSERT_EQ(1, importer_status(imp).mapped);

	vfio_handle_close(&self->h);

	st = importer_status(imp);
	EXPECT_EQ(1, st.invalidations);
	EXPECT_EQ(1, st.unmaps);
	EXPECT_EQ(0, st.mapped);
	EXPECT_EQ(-ENODEV, importer_map(imp, &m));
	EXPECT_EQ(-ENODEV, importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P));
	close(imp);
	close(buf);
}

struct closer {
	struct vfio_handle *h;
	volatile int done;
};

static void *close_device(void *arg)
{
	struct closer *c = arg;

	vfio_handle_close(c->h);
	c->done = 1;
	return NULL;
}

/* Revocation waits until the importer really gave its mapping back. */
TEST_F(import, revoke_waits_for_the_importer_to_unmap)
{
	struct closer c = { .h = &self->h };
	struct importer_map m;
	pthread_t thread;
	int buf, imp;

	buf = export1(self->h.device, 2, 0, 4 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf,
			    IMPORTER_P2P | IMPORTER_REVOCABLE | IMPORTER_HOLD);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));

	ASSERT_EQ(0, pthread_create(&thread, NULL, close_device, &c));
	for (int i = 0; i < 100 && !importer_status(imp).invalidations; i++)
		usleep(10000);
	ASSERT_EQ(1, importer_status(imp).invalidations);
	usleep(300000);
	EXPECT_EQ(0, c.done);		/* still waiting for our unmap */
	EXPECT_EQ(1, importer_status(imp).mapped);

	ASSERT_EQ(0, ioctl(imp, IMPORTER_UNMAP));
	pthread_join(thread, NULL);
	EXPECT_EQ(1, c.done);
	close(imp);
	close(buf);
}

#define LATE_BUFS	4
#define LATE_MS		100

/*
 * An event invalidates the importers of every buffer before it waits for
 * their unmaps: importers that give their mappings back late (a driver
 * waiting for its hardware, IMPORTER_DEFER) are waited for together, so
 * the event takes the slowest one's delay, not the sum.  Still no importer
 * holds a mapping once the event proceeds.  In-tree vfio-pci waits buffer
 * by buffer: it invalidates the next only after the last one unmapped.
 */
TEST_F(import, event_invalidates_every_buffer_before_waiting)
{
	uint64_t last_invalidated = 0, first_unmapped = UINT64_MAX;
	int buf[LATE_BUFS], imp[LATE_BUFS];
	struct importer_status st;
	struct importer_map m;

	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	for (int i = 0; i < LATE_BUFS; i++) {
		buf[i] = export1(self->h.device, 2, i * PAGE, PAGE);
		ASSERT_GE(buf[i], 0);
		imp[i] = importer_open_deferred(self->importer, buf[i],
						IMPORTER_DYNAMIC_P2P | IMPORTER_DEFER, LATE_MS);
		ASSERT_GE(imp[i], 0);
		ASSERT_EQ(0, importer_map(imp[i], &m));
	}

	ASSERT_EQ(0, set_memory_enable(self->h.device, 0));
	for (int i = 0; i < LATE_BUFS; i++) {
		st = importer_status(imp[i]);
		/* Waited for: every mapping was given back before it returned. */
		EXPECT_EQ(0, st.mapped);
		EXPECT_EQ(1, st.unmaps);
		EXPECT_EQ(1, st.invalidations);
		if (st.invalidated_ns > last_invalidated)
			last_invalidated = st.invalidated_ns;
		if (st.unmapped_ns < first_unmapped)
			first_unmapped = st.unmapped_ns;
	}
	/* Ours invalidates them all first; vfio-pci one after an unmap. */
	EXPECT_EQ(variant->waits_once, last_invalidated < first_unmapped);
	TH_LOG("last invalidation %+.1f ms after the first unmap",
	       ((double)last_invalidated - (double)first_unmapped) / 1e6);

	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	for (int i = 0; i < LATE_BUFS; i++) {
		EXPECT_EQ(0, importer_map(imp[i], &m));
		close(imp[i]);
		close(buf[i]);
	}
}

struct unbinder {
	const char *bdf, *driver;
	volatile int done;
};

static void *unbind_device(void *arg)
{
	struct unbinder *u = arg;
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", u->driver);
	fd = open(path, O_WRONLY);
	if (fd >= 0) {
		write(fd, u->bdf, strlen(u->bdf));
		close(fd);
	}
	u->done = 1;
	return NULL;
}

/*
 * Unbinding with a buffer exported and mapped: unbind waits for the user to
 * close the device, which revokes the buffer for good; the importer is
 * invalidated and cannot map; the device binds again afterwards.
 */
TEST_F(import, unbind_with_importer_attached)
{
	struct unbinder u = { .bdf = self->exporter, .driver = variant->driver };
	struct importer_status st;
	struct importer_map m;
	char driver[64];
	pthread_t thread;
	int buf, imp, fd;

	buf = export1(self->h.device, 2, 0, 4 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));

	ASSERT_EQ(0, pthread_create(&thread, NULL, unbind_device, &u));
	usleep(500000);
	EXPECT_EQ(0, u.done);		/* vfio asks the user to let go */
	vfio_handle_close(&self->h);
	pthread_join(thread, NULL);
	ASSERT_EQ(0, sysfs_driver(self->exporter, driver, sizeof(driver)));
	EXPECT_STREQ("", driver);

	st = importer_status(imp);
	EXPECT_EQ(1, st.invalidations);
	EXPECT_EQ(0, st.mapped);
	EXPECT_EQ(-ENODEV, importer_map(imp, &m));
	close(imp);
	close(buf);

	fd = open("/sys/bus/pci/drivers_probe", O_WRONLY);
	ASSERT_GE(fd, 0);
	write(fd, self->exporter, strlen(self->exporter));
	close(fd);
	ASSERT_EQ(0, sysfs_driver(self->exporter, driver, sizeof(driver)));
	EXPECT_STREQ(variant->driver, driver);
}

/* A buffer exported while memory decode is off starts revoked. */
TEST_F(import, exported_with_memory_off_starts_revoked)
{
	uint16_t cmd;
	int buf;

	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_COMMAND, &cmd, 2));
	cmd &= ~PCI_COMMAND_MEMORY;
	ASSERT_EQ(0, vfio_config_write(self->h.device, PCI_COMMAND, &cmd, 2));
	buf = export1(self->h.device, 2, 0, PAGE);
	ASSERT_GE(buf, 0);
	EXPECT_EQ(-ENODEV, importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P));
	close(buf);
}

/* The importing device reads, by DMA, the bytes the CPU wrote into the BAR. */
TEST_F(import, peer_dma_reads_the_bar)
{
	static struct importer_dma_read rd;
	volatile uint8_t *bar;
	struct importer_map m;
	uint16_t cmd;
	int buf, imp;

	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_COMMAND, &cmd, 2));
	cmd |= PCI_COMMAND_MEMORY;
	ASSERT_EQ(0, vfio_config_write(self->h.device, PCI_COMMAND, &cmd, 2));
	bar = vfio_mmap_bar(self->h.device, 2, 0, 16 * PAGE);
	ASSERT_NE(MAP_FAILED, bar);
	srand(time(NULL));
	for (unsigned int i = 0; i < PAGE; i++)
		bar[5 * PAGE + i] = rand();

	buf = export1(self->h.device, 2, 4 * PAGE, 4 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(self->importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	rd.offset = PAGE + 1024;
	rd.len = 2048;
	ASSERT_EQ(0, ioctl(imp, IMPORTER_DMA_READ, &rd));
	for (unsigned int i = 0; i < rd.len; i++)
		if (rd.data[i] != bar[5 * PAGE + 1024 + i]) {
			ASSERT_EQ(bar[5 * PAGE + 1024 + i], rd.data[i]) {
				TH_LOG("byte %u", i);
			}
		}
	close(imp);
	close(buf);
	munmap((void *)bar, 16 * PAGE);
}

TEST_HARNESS_MAIN
