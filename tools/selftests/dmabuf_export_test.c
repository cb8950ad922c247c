// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO_DEVICE_FEATURE_DMA_BUF as dmabuf-vfio-pci answers it: the in-tree
 * exporter's uAPI, errnos and lifetimes.  Every fixture test also runs
 * against in-tree vfio-pci on an identical device (variant vfio_pci): both
 * must agree, errno for errno.
 */
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "vfio_util.h"

#define PAGE		4096ull
#define MAX_RANGES	8

struct dma_buf_req {
	struct vfio_device_feature hdr;
	struct vfio_device_feature_dma_buf get;
	struct vfio_region_dma_range ranges[MAX_RANGES];
};

static int export_raw(int device, uint32_t feature_flags, uint32_t region,
		      uint32_t open_flags, uint32_t flags,
		      const struct vfio_region_dma_range *ranges, uint32_t nr,
		      uint32_t argsz)
{
	struct dma_buf_req req = {
		.hdr = {
			.argsz = argsz,
			.flags = feature_flags | VFIO_DEVICE_FEATURE_DMA_BUF,
		},
		.get = {
			.region_index = region,
			.open_flags = open_flags,
			.flags = flags,
			.nr_ranges = nr,
		},
	};
	int ret;

	if (nr <= MAX_RANGES)
		memcpy(req.ranges, ranges, nr * sizeof(*ranges));
	ret = ioctl(device, VFIO_DEVICE_FEATURE, &req);
	return ret < 0 ? -errno : ret;
}

/* Exports @nr ranges of BAR @region; returns the fd or -errno. */
static int export(int device, uint32_t region,
		  const struct vfio_region_dma_range *ranges, uint32_t nr)
{
	return export_raw(device, VFIO_DEVICE_FEATURE_GET, region,
			  O_RDWR | O_CLOEXEC, 0, ranges, nr,
			  sizeof(struct dma_buf_req));
}

/* A field of /proc/self/fdinfo/@fd, or -1. */
static long long fdinfo_field(int fd, const char *key, char *str, size_t len)
{
	char path[64], line[256];
	long long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		size_t klen = strlen(key);

		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		if (str)
			snprintf(str, len, "%s", line + klen + 1 + strspn(line + klen + 1, " \t"));
		val = strtoll(line + klen + 1, NULL, 0);
	}
	fclose(f);
	return val;
}

FIXTURE(export) {
	struct vfio_handle h;
	uint64_t bar_size;
};

FIXTURE_VARIANT(export) {
	const char *role;	/* an ivshmem-plain device */
	const char *driver;
	const char *exp_name;
};

FIXTURE_VARIANT_ADD(export, ours) {
	.role = "SW_IVSHMEM",
	.driver = "dmabuf-vfio-pci",
	.exp_name = "dmabuf-vfio-pci",
};

FIXTURE_VARIANT_ADD(export, vfio_pci) {
	.role = "VFIO_IVSHMEM",
	.driver = "vfio-pci",
	.exp_name = "vfio_pci_core",
};

FIXTURE_SETUP(export)
{
	const char *bdf = test_dev(variant->role);
	struct vfio_region_info info;

	self->h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, vfio_open(bdf, &self->h));
	ASSERT_EQ(0, vfio_region(self->h.device, 2, &info));
	self->bar_size = info.size;
	ASSERT_GE(self->bar_size, 64 * PAGE);
}

FIXTURE_TEARDOWN(export)
{
	vfio_handle_close(&self->h);
}

TEST_F(export, probe_reports_get_only)
{
	int dev = self->h.device;
	const uint32_t hdr = sizeof(struct vfio_device_feature);

	/* A probe needs no payload. */
	EXPECT_EQ(0, export_raw(dev, VFIO_DEVICE_FEATURE_PROBE |
				VFIO_DEVICE_FEATURE_GET, 2, 0, 0, NULL, 0, hdr));
	EXPECT_EQ(0, export_raw(dev, VFIO_DEVICE_FEATURE_PROBE, 2, 0, 0,
				NULL, 0, hdr));
	EXPECT_EQ(-EINVAL, export_raw(dev, VFIO_DEVICE_FEATURE_PROBE |
				      VFIO_DEVICE_FEATURE_SET, 2, 0, 0, NULL, 0, hdr));
	EXPECT_EQ(-EINVAL, export_raw(dev, VFIO_DEVICE_FEATURE_SET, 2, 0, 0,
				      NULL, 0, sizeof(struct dma_buf_req)));
}

TEST_F(export, one_range_is_a_dma_buf_of_its_size)
{
	struct vfio_region_dma_range r = { .offset = 16 * PAGE, .length = 8 * PAGE };
	char name[64] = "";
	int fd = export(self->h.device, 2, &r, 1);

	ASSERT_GE(fd, 0);
	EXPECT_EQ((long long)(8 * PAGE), fdinfo_field(fd, "size", NULL, 0));
	fdinfo_field(fd, "exp_name", name, sizeof(name));
	EXPECT_EQ(0, strncmp(name, variant->exp_name, strlen(variant->exp_name)))
		TH_LOG("exp_name %s", name);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDWR, fcntl(fd, F_GETFL) & O_ACCMODE);
	close(fd);
}

TEST_F(export, ranges_in_any_order_and_aliasing)
{
	struct vfio_region_dma_range r[4] = {
		{ .offset = 32 * PAGE, .length = 2 * PAGE },
		{ .offset = 0, .length = 4 * PAGE },
		{ .offset = 0, .length = 4 * PAGE },	/* alias */
		{ .offset = self->bar_size - PAGE, .length = PAGE },
	};
	int fd = export(self->h.device, 2, r, 4);

	ASSERT_GE(fd, 0);
	EXPECT_EQ((long long)(11 * PAGE), fdinfo_field(fd, "size", NULL, 0));
	close(fd);
}

TEST_F(export, whole_bar)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = self->bar_size };
	int fd = export(self->h.device, 2, &r, 1);

	ASSERT_GE(fd, 0);
	EXPECT_EQ((long long)self->bar_size, fdinfo_field(fd, "size", NULL, 0));
	close(fd);
}

TEST_F(export, bad_requests_get_the_upstream_errno)
{
	const uint64_t size = self->bar_size;
	const struct {
		const char *what;
		uint32_t region, flags, nr;
		struct vfio_region_dma_range r[2];
		int err;
	} cases[] = {
		{ "flags set", 2, 1, 1, { { 0, PAGE } }, -EINVAL },
		{ "no ranges", 2, 0, 0, { { 0, PAGE } }, -EINVAL },
		{ "zero length", 2, 0, 1, { { 0, 0 } }, -EINVAL },
		{ "unaligned offset", 2, 0, 1, { { 100, PAGE } }, -EINVAL },
		{ "unaligned length", 2, 0, 1, { { 0, 100 } }, -EINVAL },
		{ "length sum overflows", 2, 0, 2,
		  { { 0, 1ull << 63 }, { 0, 1ull << 63 } }, -EINVAL },
		{ "length sets the SWIOTLB bit", 2, 0, 1, { { 0, 1ull << 63 } }, -EINVAL },
		{ "offset + length overflows", 2, 0, 1,
		  { { ~0ull & ~(PAGE - 1), PAGE } }, -EOVERFLOW },
		{ "past the BAR end", 2, 0, 1, { { size, PAGE } }, -EINVAL },
		{ "straddles the BAR end", 2, 0, 1, { { size - PAGE, 2 * PAGE } }, -EINVAL },
		{ "second range past the end", 2, 0, 2, { { 0, PAGE }, { size, PAGE } }, -EINVAL },
		{ "ROM region", 6, 0, 1, { { 0, PAGE } }, -ENODEV },
		{ "config region", 7, 0, 1, { { 0, PAGE } }, -ENODEV },
		{ "absent BAR", 1, 0, 1, { { 0, PAGE } }, -ENODEV },
		{ "upper half of a 64-bit BAR", 3, 0, 1, { { 0, PAGE } }, -ENODEV },
		{ "huge region index", 0xffffffff, 0, 1, { { 0, PAGE } }, -ENODEV },
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		int ret = export_raw(self->h.device, VFIO_DEVICE_FEATURE_GET,
				     cases[i].region, O_RDWR, cases[i].flags,
				     cases[i].r, cases[i].nr,
				     sizeof(struct dma_buf_req));

		EXPECT_EQ(cases[i].err, ret) TH_LOG("%s", cases[i].what);
		if (ret >= 0)
			close(ret);
	}
}

TEST_F(export, argsz_below_the_header_is_einval)
{
	struct vfio_region_dma_range r = { 0, PAGE };

	EXPECT_EQ(-EINVAL, export_raw(self->h.device, VFIO_DEVICE_FEATURE_GET,
				      2, O_RDWR, 0, &r, 1,
				      sizeof(struct vfio_device_feature) + 15));
}

/* An absurd range count fails to allocate, quietly. */
TEST_F(export, huge_range_count_is_enomem)
{
	EXPECT_EQ(-ENOMEM, export_raw(self->h.device, VFIO_DEVICE_FEATURE_GET,
				      2, O_RDWR, 0, NULL, 0xffffffff,
				      sizeof(struct dma_buf_req)));
}

/* Ranges that run into an unmapped page are -EFAULT. */
TEST_F(export, ranges_in_unmapped_memory_are_efault)
{
	size_t hdr = sizeof(struct vfio_device_feature) +
		     sizeof(struct vfio_device_feature_dma_buf);
	char *pages = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct dma_buf_req *req;

	ASSERT_NE(MAP_FAILED, pages);
	ASSERT_EQ(0, munmap(pages + PAGE, PAGE));
	req = (struct dma_buf_req *)(pages + PAGE - hdr);
	req->hdr.argsz = hdr + sizeof(struct vfio_region_dma_range);
	req->hdr.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req->get = (struct vfio_device_feature_dma_buf){
		.region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1,
	};
	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_FEATURE, req));
	EXPECT_EQ(EFAULT, errno);
	munmap(pages, PAGE);
}

/*
 * With no descriptor left, dma_buf_fd() fails after the dma-buf exists: it
 * must be freed exactly once (CVE-2026-31468 was a double free here; KASAN
 * would report it), and exporting works again once descriptors are back.
 */
TEST_F(export, fd_exhaustion_frees_once)
{
	struct vfio_region_dma_range r = { 0, PAGE };
	struct rlimit old, tight;
	int fd, probe;

	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old));
	probe = dup(0);
	ASSERT_GE(probe, 0);
	close(probe);
	tight = old;
	tight.rlim_cur = probe;		/* the lowest free fd is now over the limit */
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &tight));
	for (int i = 0; i < 16; i++)
		EXPECT_EQ(-EMFILE, export(self->h.device, 2, &r, 1));
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &old));
	fd = export(self->h.device, 2, &r, 1);
	ASSERT_GE(fd, 0);
	close(fd);
}

/*
 * A dma-buf outlives the device fd; closing the device lets go of the
 * device, so unbinding does not wait for the buffer, and the buffer's
 * release afterwards is safe.
 */
TEST_F(export, buffer_outlives_device_close_and_unbind)
{
	const char *bdf = test_dev(variant->role);
	struct vfio_region_dma_range r = { 0, 4 * PAGE };
	char path[PATH_MAX], driver[64];
	int fd, sysfs;

	fd = export(self->h.device, 2, &r, 1);
	ASSERT_GE(fd, 0);
	vfio_handle_close(&self->h);
	EXPECT_EQ((long long)(4 * PAGE), fdinfo_field(fd, "size", NULL, 0));

	snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", variant->driver);
	sysfs = open(path, O_WRONLY);
	ASSERT_GE(sysfs, 0);
	ASSERT_EQ((ssize_t)strlen(bdf), write(sysfs, bdf, strlen(bdf)));
	close(sysfs);
	ASSERT_EQ(0, sysfs_driver(bdf, driver, sizeof(driver)));
	EXPECT_STREQ("", driver);

	close(fd);

	sysfs = open("/sys/bus/pci/drivers_probe", O_WRONLY);
	ASSERT_GE(sysfs, 0);
	ASSERT_EQ((ssize_t)strlen(bdf), write(sysfs, bdf, strlen(bdf)));
	close(sysfs);
	ASSERT_EQ(0, sysfs_driver(bdf, driver, sizeof(driver)));
	EXPECT_STREQ(variant->driver, driver);
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/vfio-dev", bdf);
	EXPECT_EQ(0, access(path, F_OK));
}

/* A device with an I/O BAR (QEMU's pci-testdev, BAR 1), ours and vfio-pci's. */
FIXTURE(io_bar) {
	struct vfio_handle h;
};

FIXTURE_VARIANT(io_bar) {
	const char *role;
};

FIXTURE_VARIANT_ADD(io_bar, ours) {
	.role = "IO",
};

FIXTURE_VARIANT_ADD(io_bar, vfio_pci) {
	.role = "VFIO_IO",
};

FIXTURE_SETUP(io_bar)
{
	const char *bdf = test_dev(variant->role);
	struct vfio_region_info info;

	self->h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, vfio_open(bdf, &self->h));
	ASSERT_EQ(0, vfio_region(self->h.device, 1, &info));
	ASSERT_GT(info.size, 0);
}

FIXTURE_TEARDOWN(io_bar)
{
	vfio_handle_close(&self->h);
}

/*
 * An I/O BAR has no P2PDMA provider: EINVAL, checked before the ranges are
 * placed in the BAR, so an offset that overflows the BAR's address is
 * EINVAL too (not EOVERFLOW), as in vfio-pci.
 */
TEST_F(io_bar, export_is_einval_before_the_range_check)
{
	struct vfio_region_dma_range in_bar = { 0, PAGE };
	struct vfio_region_dma_range overflowing = { ~0ull & ~(PAGE - 1), PAGE };

	EXPECT_EQ(-EINVAL, export(self->h.device, 1, &in_bar, 1));
	EXPECT_EQ(-EINVAL, export(self->h.device, 1, &overflowing, 1));
	/* Misaligned: EINVAL from the first checks either way. */
	EXPECT_EQ(-EINVAL, export(self->h.device, 1, &(struct vfio_region_dma_range){ 1, PAGE }, 1));
}

/* Both uAPIs export; the group path too. */
TEST(export_through_group_path)
{
	struct vfio_region_dma_range r = { 0, PAGE };
	const char *bdf = test_dev("EDU");
	struct vfio_handle h;
	int fd;

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, vfio_open_group(bdf, &h));
	fd = export(h.device, 0, &r, 1);
	EXPECT_GE(fd, 0);
	if (fd >= 0)
		close(fd);
	vfio_handle_close(&h);
}

TEST_HARNESS_MAIN
