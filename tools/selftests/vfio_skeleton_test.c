// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf-vfio-pci must behave as vfio-pci does for everything it does not
 * add: binding, both vfio uAPIs, region info, config space, BAR access
 * through the device fd, and device reset.
 *
 * Test devices come from the environment (tools/selftests/guest.sh):
 *   DMABUF_TEST_EDU      QEMU edu (BAR0 registers: id, liveness check)
 *   DMABUF_TEST_IVSHMEM  ivshmem-plain with a 1 GiB RAM BAR2
 *   DMABUF_TEST_FLR      virtio-rng with PCIe FLR and PCI PM
 *   DMABUF_TEST_DEVICES  every device bound to the driver
 */
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "vfio_util.h"

#define EDU_ID			0x00
#define EDU_LIVENESS		0x04
#define VIRTIO_CAP_COMMON_CFG	1
#define VIRTIO_COMMON_STATUS	20
#define SZ_2M			(2UL << 20)

static const char *need_dev(const char *role)
{
	const char *bdf = test_dev(role);

	if (!bdf)
		fprintf(stderr, "# DMABUF_TEST_%s is not set\n", role);
	return bdf;
}

static void enable_memory(struct __test_metadata *_metadata, int device)
{
	uint16_t cmd;

	ASSERT_EQ(0, vfio_config_read(device, PCI_COMMAND, &cmd, 2));
	cmd |= PCI_COMMAND_MEMORY;
	ASSERT_EQ(0, vfio_config_write(device, PCI_COMMAND, &cmd, 2));
}

TEST(every_test_device_is_bound_to_us)
{
	char *list = strdup(getenv("DMABUF_TEST_DEVICES") ?: "");
	char driver[64], *bdf, *save;
	int n = 0;

	for (bdf = strtok_r(list, " ", &save); bdf;
	     bdf = strtok_r(NULL, " ", &save), n++) {
		ASSERT_EQ(0, sysfs_driver(bdf, driver, sizeof(driver)));
		EXPECT_STREQ("dmabuf-vfio-pci", driver) TH_LOG("%s", bdf);
	}
	free(list);
	ASSERT_GE(n, 3);
}

FIXTURE(vfio) {
	struct vfio_handle h;
};

FIXTURE_VARIANT(vfio) {
	int (*open)(const char *bdf, struct vfio_handle *h);
};

FIXTURE_VARIANT_ADD(vfio, cdev) {
	.open = vfio_open_cdev,
};

FIXTURE_VARIANT_ADD(vfio, group) {
	.open = vfio_open_group,
};

FIXTURE_SETUP(vfio)
{
	self->h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	if (variant->open == vfio_open_cdev && !have_iommufd())
		SKIP(return, "no iommufd in this kernel: no vfio device cdev");
}

FIXTURE_TEARDOWN(vfio)
{
	vfio_handle_close(&self->h);
}

TEST_F(vfio, device_info)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	const char *bdf = need_dev("EDU");

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
	EXPECT_GE(info.num_regions, VFIO_PCI_NUM_REGIONS);
	EXPECT_EQ(VFIO_PCI_NUM_IRQS, info.num_irqs);
}

TEST_F(vfio, regions_match_sysfs)
{
	static const char *const roles[] = { "EDU", "IVSHMEM", "FLR" };

	for (unsigned int r = 0; r < 3; r++) {
		const char *bdf = need_dev(roles[r]);
		struct vfio_region_info info;
		char path[PATH_MAX];
		struct stat st;

		ASSERT_NE(NULL, bdf);
		ASSERT_EQ(0, variant->open(bdf, &self->h));
		for (int bar = 0; bar < 6; bar++) {
			uint64_t size;

			ASSERT_EQ(0, sysfs_bar_size(bdf, bar, &size));
			ASSERT_EQ(0, vfio_region(self->h.device, bar, &info));
			EXPECT_EQ(size, info.size) TH_LOG("%s BAR%d", bdf, bar);
			if (size)
				EXPECT_TRUE(info.flags & VFIO_REGION_INFO_FLAG_READ);
		}
		/* The config region is as large as the device's config space. */
		snprintf(path, sizeof(path), SYSFS_PCI "/%s/config", bdf);
		ASSERT_EQ(0, stat(path, &st));
		ASSERT_EQ(0, vfio_region(self->h.device,
					 VFIO_PCI_CONFIG_REGION_INDEX, &info));
		EXPECT_EQ((uint64_t)st.st_size, info.size) TH_LOG("%s", bdf);
		vfio_handle_close(&self->h);
	}
}

TEST_F(vfio, config_space_identifies_device)
{
	const char *bdf = need_dev("IVSHMEM");
	uint8_t class[3];
	uint16_t id[2];

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_VENDOR_ID, id, 4));
	EXPECT_EQ(sysfs_read_hex(bdf, "vendor"), id[0]);
	EXPECT_EQ(sysfs_read_hex(bdf, "device"), id[1]);
	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_CLASS_PROG, class, 3));
	EXPECT_EQ(sysfs_read_hex(bdf, "class"),
		  class[0] | class[1] << 8 | class[2] << 16);
}

/* The edu device answers its identification and liveness registers. */
TEST_F(vfio, edu_registers_through_bar_mmap)
{
	const char *bdf = need_dev("EDU");
	volatile uint32_t *regs;
	struct vfio_region_info info;
	uint32_t val = 0x5aa5c33c;

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	enable_memory(_metadata, self->h.device);
	regs = vfio_mmap_bar(self->h.device, 0, 0, 4096);
	ASSERT_NE(MAP_FAILED, regs);
	EXPECT_EQ(0xed, regs[EDU_ID / 4] & 0xff);
	regs[EDU_LIVENESS / 4] = val;
	EXPECT_EQ(~val, regs[EDU_LIVENESS / 4]);

	/* The same register through the device fd's read/write path. */
	ASSERT_EQ(0, vfio_region(self->h.device, 0, &info));
	val = 0x12345678;
	ASSERT_EQ(4, pwrite(self->h.device, &val, 4, info.offset + EDU_LIVENESS));
	EXPECT_EQ(~0x12345678u, regs[EDU_LIVENESS / 4]);
	ASSERT_EQ(4, pread(self->h.device, &val, 4, info.offset + EDU_LIVENESS));
	EXPECT_EQ(~0x12345678u, val);
	munmap((void *)regs, 4096);
}

/* Bytes written through one mapping of the RAM BAR are read through another. */
TEST_F(vfio, ivshmem_pattern_through_two_mappings)
{
	const char *bdf = need_dev("IVSHMEM");
	struct vfio_region_info info;
	uint64_t offs[2];

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	enable_memory(_metadata, self->h.device);
	ASSERT_EQ(0, vfio_region(self->h.device, 2, &info));
	ASSERT_GE(info.size, 2 * SZ_2M);
	offs[0] = 0;
	offs[1] = info.size - SZ_2M;	/* the far end of the BAR too */

	for (int i = 0; i < 2; i++) {
		uint64_t *a, *b, got;
		uint64_t seed = 0x9e3779b97f4a7c15ull * (getpid() + i);

		a = vfio_mmap_bar(self->h.device, 2, offs[i], SZ_2M);
		ASSERT_NE(MAP_FAILED, a);
		b = vfio_mmap_bar(self->h.device, 2, offs[i], SZ_2M);
		ASSERT_NE(MAP_FAILED, b);
		ASSERT_NE(a, b);
		for (size_t w = 0; w < SZ_2M / 8; w++)
			a[w] = seed ^ w;
		for (size_t w = 0; w < SZ_2M / 8; w++) {
			/* Braces: ASSERT_EQ expands to two statements. */
			if (b[w] != (seed ^ w))
				ASSERT_EQ(seed ^ w, b[w]) {
					TH_LOG("word %zu", w);
				}
		}
		ASSERT_EQ(8, pread(self->h.device, &got, 8,
				   info.offset + offs[i] + SZ_2M - 8));
		EXPECT_EQ(seed ^ (SZ_2M / 8 - 1), got);
		munmap(a, SZ_2M);
		munmap(b, SZ_2M);
	}
}

static int virtio_common_cfg(int device, int *bar, uint32_t *off)
{
	uint8_t pos, cap[12];

	if (vfio_config_read(device, PCI_CAPABILITY_LIST, &pos, 1))
		return -EIO;
	while (pos) {
		if (vfio_config_read(device, pos, cap, sizeof(cap)))
			return -EIO;
		if (cap[0] == PCI_CAP_ID_VNDR && cap[3] == VIRTIO_CAP_COMMON_CFG) {
			*bar = cap[4];
			memcpy(off, &cap[8], 4);
			return 0;
		}
		pos = cap[1];
	}
	return -ENOENT;
}

/* VFIO_DEVICE_RESET really resets: a virtio device forgets its status. */
TEST_F(vfio, reset_clears_device_state)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	const char *bdf = need_dev("FLR");
	volatile uint8_t *common;
	uint32_t off;
	int bar;

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_TRUE(info.flags & VFIO_DEVICE_FLAGS_RESET);
	ASSERT_EQ(0, virtio_common_cfg(self->h.device, &bar, &off));
	enable_memory(_metadata, self->h.device);
	common = vfio_mmap_bar(self->h.device, bar, off & ~4095u, 4096);
	ASSERT_NE(MAP_FAILED, common);
	common += off & 4095;

	common[VIRTIO_COMMON_STATUS] = 1;	/* ACKNOWLEDGE */
	ASSERT_EQ(1, common[VIRTIO_COMMON_STATUS]);
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_RESET));
	EXPECT_EQ(0, common[VIRTIO_COMMON_STATUS]);
}

TEST_F(vfio, reset_without_reset_method_is_einval)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	const char *bdf = need_dev("EDU");

	ASSERT_NE(NULL, bdf);
	ASSERT_EQ(0, variant->open(bdf, &self->h));
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_FALSE(info.flags & VFIO_DEVICE_FLAGS_RESET);
	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_RESET));
	EXPECT_EQ(EINVAL, errno);
}

TEST_HARNESS_MAIN
