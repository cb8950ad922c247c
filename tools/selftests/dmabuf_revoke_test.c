// SPDX-License-Identifier: GPL-2.0
/*
 * Every event that makes a BAR unsafe revokes its dma-bufs, as the importer
 * sees it: it is invalidated, gives its mapping back, cannot map while the
 * event lasts, and maps (and reads by DMA) again once the device is usable.
 *
 * Exporters sit behind the same switch as the importing edu (SW_EDU):
 * SW_IVSHMEM, and FLR, a virtio device with PCIe FLR and PCI PM.  Each is
 * alone on its bus, so a hot reset of its bus is the user's to issue.
 * SIB_IVSHMEM shares a bus with SIB_VFIO (bound to vfio-pci), whose hot
 * reset resets ours too.
 */
#include <pthread.h>
#include <sys/eventfd.h>

#include "kselftest_harness.h"
#include "dmabuf_util.h"

#define VIRTIO_BAR	4

FIXTURE(revoke) {
	struct vfio_handle h;
	int buf, imp;
	const char *importer;
};

FIXTURE_VARIANT(revoke) {
	const char *exporter;
	int bar;
};

FIXTURE_VARIANT_ADD(revoke, ivshmem) {
	.exporter = "SW_IVSHMEM",
	.bar = 2,
};

FIXTURE_VARIANT_ADD(revoke, virtio) {
	.exporter = "FLR",
	.bar = VIRTIO_BAR,
};

FIXTURE_SETUP(revoke)
{
	const char *exporter = test_dev(variant->exporter);
	struct importer_map m;

	self->h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	self->buf = self->imp = -1;
	self->importer = test_dev("SW_EDU");
	ASSERT_NE(NULL, exporter);
	ASSERT_NE(NULL, self->importer);
	ASSERT_EQ(0, vfio_open(exporter, &self->h));
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	self->buf = export1(self->h.device, variant->bar, 0, 2 * PAGE);
	ASSERT_GE(self->buf, 0);
	self->imp = importer_open(self->importer, self->buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(self->imp, 0);
	ASSERT_EQ(0, importer_map(self->imp, &m));
}

FIXTURE_TEARDOWN(revoke)
{
	if (self->imp >= 0)
		close(self->imp);
	if (self->buf >= 0)
		close(self->buf);
	vfio_handle_close(&self->h);
}

/* The importer was told and gave its mapping back; mapping now fails. */
static void expect_revoked(struct __test_metadata *_metadata, int imp,
			   uint32_t invalidations)
{
	struct importer_status st = importer_status(imp);
	struct importer_map m;

	EXPECT_GE(st.invalidations, invalidations);
	EXPECT_EQ(0, st.mapped);
	EXPECT_EQ(1, st.unmaps);
	EXPECT_EQ(-ENODEV, importer_map(imp, &m));
}

static void expect_usable(struct __test_metadata *_metadata, int imp)
{
	struct importer_map m;

	ASSERT_EQ(0, importer_map(imp, &m));
	EXPECT_EQ(2 * PAGE, m.total);
}

TEST_F(revoke, memory_disable_until_enabled_again)
{
	ASSERT_EQ(0, set_memory_enable(self->h.device, 0));
	expect_revoked(_metadata, self->imp, 1);
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

/*
 * A write to the command register is an event whatever it writes: the core
 * copies the bytes from user memory again, after any look the driver could
 * take.  One that keeps memory enabled revokes across it and gives back.
 */
TEST_F(revoke, command_write_keeping_memory_on_is_given_back)
{
	struct importer_status st;

	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	st = importer_status(self->imp);
	EXPECT_EQ(2, st.invalidations);	/* the revoke and the give-back */
	EXPECT_EQ(0, st.mapped);
	expect_usable(_metadata, self->imp);
}

struct config_writer {
	int device;
	const uint8_t *src;
	size_t len;
	uint64_t reg;
	ssize_t ret;
};

static void *write_config(void *arg)
{
	struct config_writer *w = arg;

	w->ret = pwrite(w->device, w->src, w->len, w->reg);
	return NULL;
}

/* Whether the debugfs line of buffer @buf says "revoked". */
static bool debugfs_says_revoked(const char *bdf, int buf)
{
	char path[128], line[512], key[64];
	struct stat st;
	bool revoked = false;
	FILE *f;

	if (fstat(buf, &st))
		return false;
	snprintf(path, sizeof(path), "/sys/kernel/debug/dmabuf_vfio_pci/%s/status", bdf);
	snprintf(key, sizeof(key), "buffer %llu:", (unsigned long long)st.st_ino);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, key))
			revoked = strstr(line, " revoked ") != NULL;
	fclose(f);
	return revoked;
}

/*
 * A config write is judged by the registers it covers, never by bytes read
 * from user memory before the core reads them.  The write covers the
 * device ID (on a page whose fault stalls, /dev/dmabuf_test_stall), then
 * the command register with memory enable on.  While the core's copy is
 * stalled on the first page, the buffer must be revoked already: the test
 * then clears memory enable in the bytes the core will copy next.  The old
 * driver peeked at the command byte, saw memory on, and let the write
 * disable memory decode under an importer's live mapping and a CPU
 * mapping; it revoked only after the write.
 */
TEST_F(revoke, config_write_bytes_changed_after_a_look)
{
	const char *bdf = test_dev(variant->exporter);
	struct config_writer w = { .device = self->h.device };
	struct vfio_region_info config;
	struct importer_status st;
	volatile uint8_t *cpu;
	uint32_t arm = 1 << 0;
	pthread_t writer;
	uint16_t cmd;
	uint8_t *area;
	int stall;

	stall = open("/dev/dmabuf_test_stall", O_RDWR | O_CLOEXEC);
	ASSERT_GE(stall, 0);
	area = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, stall, 0);
	ASSERT_NE(MAP_FAILED, area);
	cpu = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, self->buf, 0);
	ASSERT_NE(MAP_FAILED, cpu);
	ASSERT_NE(-1, peek_or_sigbus(cpu + PAGE));

	/* Device ID (read-only) on page 0, the command register on page 1. */
	ASSERT_EQ(0, vfio_region(self->h.device, VFIO_PCI_CONFIG_REGION_INDEX, &config));
	w.reg = config.offset + PCI_COMMAND - 2;
	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_COMMAND, &cmd, 2));
	ASSERT_TRUE(cmd & PCI_COMMAND_MEMORY);
	w.src = area + PAGE - 2;
	w.len = 4;
	memcpy(area + PAGE, &cmd, 2);
	ASSERT_EQ(0, ioctl(stall, STALL_ARM, &arm));
	ASSERT_EQ(0, pthread_create(&writer, NULL, write_config, &w));
	ASSERT_EQ(0, ioctl(stall, STALL_WAIT));

	st = importer_status(self->imp);
	EXPECT_EQ(0, st.mapped) {
		TH_LOG("the importer still maps the BAR while the core writes the command register");
	}
	EXPECT_EQ(-1, peek_or_sigbus(cpu + PAGE)) {
		TH_LOG("the CPU mapping still reaches the BAR while the core writes the command register");
	}
	EXPECT_TRUE(debugfs_says_revoked(bdf, self->buf));
	cmd &= ~PCI_COMMAND_MEMORY;
	memcpy(area + PAGE, &cmd, 2);
	ASSERT_EQ(0, ioctl(stall, STALL_RELEASE, &(uint32_t){ 0 }));
	pthread_join(writer, NULL);
	ASSERT_EQ(4, w.ret);

	/* Memory decode is off: revoked until the user enables it again. */
	ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_COMMAND, &cmd, 2));
	EXPECT_FALSE(cmd & PCI_COMMAND_MEMORY);
	expect_revoked(_metadata, self->imp, 1);
	EXPECT_EQ(-1, peek_or_sigbus(cpu + PAGE));
	EXPECT_TRUE(debugfs_says_revoked(bdf, self->buf));
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
	EXPECT_NE(-1, peek_or_sigbus(cpu + PAGE));
	munmap((void *)cpu, 2 * PAGE);
	munmap(area, 2 * PAGE);
	close(stall);
}

TEST_F(revoke, low_power_until_exit)
{
	struct vfio_device_feature f = { .argsz = sizeof(f) };

	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_revoked(_metadata, self->imp, 1);
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_usable(_metadata, self->imp);
}

/*
 * Nothing but LOW_POWER_EXIT (or a close) ends low power for the buffers:
 * not a command write with memory on, not a reset, not a hot reset.
 * In-tree vfio-pci un-revokes on each of those while the device stays in
 * low power; the fuzzer found it there (make fuzz SEED=7 TARGETS=vfio+strict).
 */
TEST_F(revoke, low_power_survives_memory_enable_and_resets)
{
	struct vfio_device_feature f = { .argsz = sizeof(f) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct importer_map m;

	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_revoked(_metadata, self->imp, 1);

	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	EXPECT_EQ(-ENODEV, importer_map(self->imp, &m)) {
		TH_LOG("a command write with memory on gave the buffer back in low power");
	}
	if (info.flags & VFIO_DEVICE_FLAGS_RESET) {
		ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_RESET));
		EXPECT_EQ(-ENODEV, importer_map(self->imp, &m)) {
			TH_LOG("VFIO_DEVICE_RESET gave the buffer back in low power");
		}
	}
	ASSERT_EQ(0, vfio_hot_reset(&self->h));
	EXPECT_EQ(-ENODEV, importer_map(self->imp, &m)) {
		TH_LOG("a hot reset gave the buffer back in low power");
	}

	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

TEST_F(revoke, low_power_with_wakeup_until_exit)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_low_power_entry_with_wakeup w;
	} req = { .f.argsz = sizeof(req) };
	struct vfio_device_feature exit_req = { .argsz = sizeof(exit_req) };

	req.w.wakeup_eventfd = eventfd(0, EFD_CLOEXEC);
	ASSERT_GE(req.w.wakeup_eventfd, 0);
	req.f.flags = VFIO_DEVICE_FEATURE_SET |
		      VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req));
	expect_revoked(_metadata, self->imp, 1);
	exit_req.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &exit_req));
	expect_usable(_metadata, self->imp);
	close(req.w.wakeup_eventfd);
}

/*
 * Low power entered with a wakeup eventfd ends on the next resume of the
 * device: vfio-pci-core leaves it by itself and signals the eventfd.
 * After a reset woke the device that way, its buffers come back; a device
 * that never suspended is still in low power, and they stay revoked.
 */
TEST_F(revoke, wakeup_ends_low_power_for_the_buffers)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_low_power_entry_with_wakeup w;
	} req = { .f.argsz = sizeof(req) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct importer_map m;
	uint64_t n = 0;

	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	if (!(info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "no reset method");
	req.w.wakeup_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_GE(req.w.wakeup_eventfd, 0);
	req.f.flags = VFIO_DEVICE_FEATURE_SET |
		      VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req));
	expect_revoked(_metadata, self->imp, 1);
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_RESET));
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	if (read(req.w.wakeup_eventfd, &n, sizeof(n)) == sizeof(n)) {
		TH_LOG("the reset woke the device: low power is over");
		expect_usable(_metadata, self->imp);
	} else {
		TH_LOG("the device did not suspend: still in low power");
		EXPECT_EQ(-ENODEV, importer_map(self->imp, &m));
	}
	close(req.w.wakeup_eventfd);
}

/*
 * A LOW_POWER_ENTRY that fails while the device is in low power leaves it
 * there: a second ENTRY (the core says EINVAL), an ENTRY_WITH_WAKEUP with a
 * bad eventfd, a short argsz.  The buffers stay revoked until the EXIT.
 */
TEST_F(revoke, failed_low_power_entry_keeps_it_revoked)
{
	struct vfio_device_feature f = { .argsz = sizeof(f) };
	struct {
		struct vfio_device_feature f;
		struct vfio_device_low_power_entry_with_wakeup w;
	} req = { .f.argsz = sizeof(req) };

	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_revoked(_metadata, self->imp, 1);

	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	EXPECT_EQ(EINVAL, errno);
	expect_revoked(_metadata, self->imp, 1);

	req.f.flags = VFIO_DEVICE_FEATURE_SET |
		      VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
	req.w.wakeup_eventfd = -1;
	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req));
	EXPECT_EQ(EINVAL, errno);
	expect_revoked(_metadata, self->imp, 1);

	req.w.wakeup_eventfd = self->buf;	/* not an eventfd */
	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req));
	expect_revoked(_metadata, self->imp, 1);

	req.f.argsz = sizeof(req.f) + sizeof(req.w) - 1;
	req.w.wakeup_eventfd = -1;
	EXPECT_EQ(-1, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &req));
	EXPECT_EQ(EINVAL, errno);
	expect_revoked(_metadata, self->imp, 1);

	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_usable(_metadata, self->imp);
}

struct low_power_flipper {
	int device;
	uint32_t feature;
	int rounds;
};

static void *flip_low_power(void *arg)
{
	struct low_power_flipper *p = arg;
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | p->feature,
	};
	int i;

	for (i = 0; i < p->rounds; i++)
		ioctl(p->device, VFIO_DEVICE_FEATURE, &f);
	return NULL;
}

/*
 * ENTRY and EXIT from two threads at once: whatever order they land in,
 * the buffers' state follows the device's.  Afterwards, in low power the
 * importer cannot map; out of it, it can.
 */
TEST_F(revoke, low_power_entry_and_exit_race)
{
	struct low_power_flipper entry = { self->h.device, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, 200 };
	struct low_power_flipper exit_ = { self->h.device, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, 200 };
	struct vfio_device_feature f = { .argsz = sizeof(f) };
	struct importer_map m;
	pthread_t a, b;

	ASSERT_EQ(0, pthread_create(&a, NULL, flip_low_power, &entry));
	ASSERT_EQ(0, pthread_create(&b, NULL, flip_low_power, &exit_));
	pthread_join(a, NULL);
	pthread_join(b, NULL);

	/* Enter (or stay) in low power: a mapping must fail. */
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f);
	EXPECT_EQ(-ENODEV, importer_map(self->imp, &m));
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_FEATURE, &f));
	expect_usable(_metadata, self->imp);
}

/* Our device is alone on its bus: the user may reset the bus. */
TEST_F(revoke, hot_reset_on_own_fd)
{
	uint32_t before = importer_status(self->imp).invalidations;

	ASSERT_EQ(0, vfio_hot_reset(&self->h));
	/* Revoked across the reset (one call), then given back (another). */
	EXPECT_GE(importer_status(self->imp).invalidations, before + 2);
	EXPECT_EQ(1, importer_status(self->imp).unmaps);
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

TEST_F(revoke, device_reset)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };

	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_GET_INFO, &info));
	if (!(info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "no reset method");
	ASSERT_EQ(0, ioctl(self->h.device, VFIO_DEVICE_RESET));
	EXPECT_GE(importer_status(self->imp).invalidations, 1);
	EXPECT_EQ(1, importer_status(self->imp).unmaps);
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

TEST_F(revoke, d3hot_until_d0)
{
	int pm = vfio_find_cap(self->h.device, PCI_CAP_ID_PM);
	int pmcsr = pm + PCI_PM_CTRL;
	uint16_t ctrl;

	if (pm < 0)
		SKIP(return, "no PM capability");
	ASSERT_EQ(0, vfio_config_read(self->h.device, pmcsr, &ctrl, 2));
	ctrl = (ctrl & ~PCI_PM_CTRL_STATE_MASK) | 3;
	ASSERT_EQ(0, vfio_config_write(self->h.device, pmcsr, &ctrl, 2));
	expect_revoked(_metadata, self->imp, 1);
	ctrl &= ~PCI_PM_CTRL_STATE_MASK;
	ASSERT_EQ(0, vfio_config_write(self->h.device, pmcsr, &ctrl, 2));
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

/* The ways back from D3hot a user has: each takes the device to D0. */
enum back_to_d0 { BY_PMCSR, BY_DEVICE_RESET, BY_HOT_RESET, BY_FLR, BACK_TO_D0_WAYS };

static const char *const back_to_d0_name[] = {
	"a PMCSR write", "VFIO_DEVICE_RESET", "a hot reset", "an FLR (DEVCTL)",
};

static int set_power_state(int device, int pm, int state)
{
	uint16_t ctrl;
	int ret = vfio_config_read(device, pm + PCI_PM_CTRL, &ctrl, 2);

	if (ret)
		return ret;
	ctrl = (ctrl & ~PCI_PM_CTRL_STATE_MASK) | state;
	return vfio_config_write(device, pm + PCI_PM_CTRL, &ctrl, 2);
}

static int back_to_d0(struct vfio_handle *h, int pm, enum back_to_d0 way)
{
	uint16_t devctl;
	int pcie, ret;

	switch (way) {
	case BY_PMCSR:
		return set_power_state(h->device, pm, 0);
	case BY_DEVICE_RESET:
		return ioctl(h->device, VFIO_DEVICE_RESET) ? -errno : 0;
	case BY_HOT_RESET:
		return vfio_hot_reset(h);
	default:
		pcie = vfio_find_cap(h->device, PCI_CAP_ID_EXP);
		if (pcie < 0)
			return -ENODEV;
		ret = vfio_config_read(h->device, pcie + PCI_EXP_DEVCTL, &devctl, 2);
		if (ret)
			return ret;
		devctl |= PCI_EXP_DEVCTL_BCR_FLR;
		return vfio_config_write(h->device, pcie + PCI_EXP_DEVCTL, &devctl, 2);
	}
}

/*
 * A command register written in D3hot is the one in force back in D0, on
 * every way back.  vfio-pci-core saves the config space when the user puts
 * a device without No_Soft_Reset in D3hot and restores that copy on the
 * way back (a PMCSR write, its resets), older than what the user wrote
 * meanwhile, and the PCI core's own way back (inside an FLR) finds the
 * soft reset's cleared register; vfio-pci-core goes on deciding on the
 * memory enable bit the user wrote.  Both directions: the device decodes
 * (the user reads memory enable), the device fd's mapping reads and the
 * importer maps, or none of it.
 */
TEST_F(revoke, memory_enable_written_in_d3hot_holds_in_d0)
{
	int pm = vfio_find_cap(self->h.device, PCI_CAP_ID_PM);
	volatile uint8_t *bar;
	struct importer_map m;

	if (pm < 0)
		SKIP(return, "no PM capability");
	bar = vfio_mmap_bar(self->h.device, variant->bar, 0, PAGE);
	ASSERT_NE(MAP_FAILED, bar);
	for (int way = 0; way < BACK_TO_D0_WAYS; way++) {
		for (int on = 0; on <= 1; on++) {
			uint16_t cmd;

			ASSERT_EQ(0, set_memory_enable(self->h.device, !on));
			ASSERT_EQ(0, set_power_state(self->h.device, pm, 3));
			ASSERT_EQ(0, set_memory_enable(self->h.device, on));
			ASSERT_EQ(0, back_to_d0(&self->h, pm, way)) {
				TH_LOG("back to D0 by %s", back_to_d0_name[way]);
			}
			ASSERT_EQ(0, vfio_config_read(self->h.device, PCI_COMMAND, &cmd, 2));
			EXPECT_EQ(on, !!(cmd & PCI_COMMAND_MEMORY)) {
				TH_LOG("memory %s in D3hot, back by %s: command %#x",
				       on ? "on" : "off", back_to_d0_name[way], cmd);
			}
			EXPECT_EQ(on, peek_or_sigbus(bar) >= 0) {
				TH_LOG("the device fd's mapping, back to D0 by %s",
				       back_to_d0_name[way]);
			}
			EXPECT_EQ(on ? 0 : -ENODEV, importer_map(self->imp, &m)) {
				TH_LOG("the importer, back to D0 by %s", back_to_d0_name[way]);
			}
		}
	}
	munmap((void *)bar, PAGE);
}

TEST_F(revoke, pcie_flr)
{
	int pcie = vfio_find_cap(self->h.device, PCI_CAP_ID_EXP);
	uint16_t devctl;
	uint32_t devcap;

	if (pcie < 0)
		SKIP(return, "not PCIe");
	ASSERT_EQ(0, vfio_config_read(self->h.device, pcie + PCI_EXP_DEVCAP, &devcap, 4));
	if (!(devcap & PCI_EXP_DEVCAP_FLR))
		SKIP(return, "no FLR");
	ASSERT_EQ(0, vfio_config_read(self->h.device, pcie + PCI_EXP_DEVCTL, &devctl, 2));
	devctl |= PCI_EXP_DEVCTL_BCR_FLR;
	ASSERT_EQ(0, vfio_config_write(self->h.device, pcie + PCI_EXP_DEVCTL, &devctl, 2));
	EXPECT_GE(importer_status(self->imp).invalidations, 1);
	EXPECT_EQ(1, importer_status(self->imp).unmaps);
	ASSERT_EQ(0, set_memory_enable(self->h.device, 1));
	expect_usable(_metadata, self->imp);
}

/* A reset the PCI core runs without vfio (sysfs "reset") revokes too. */
TEST_F(revoke, sysfs_reset)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), SYSFS_PCI "/%s/reset", test_dev(variant->exporter));
	fd = open(path, O_WRONLY);
	if (fd < 0)
		SKIP(return, "no reset method");
	ASSERT_EQ(1, write(fd, "1", 1));
	close(fd);
	EXPECT_GE(importer_status(self->imp).invalidations, 1);
	EXPECT_EQ(1, importer_status(self->imp).unmaps);
	expect_usable(_metadata, self->imp);
}

struct resetter {
	int device;
	volatile int done;
};

static void *reset_device(void *arg)
{
	struct resetter *r = arg;

	ioctl(r->device, VFIO_DEVICE_RESET);
	r->done = 1;
	return NULL;
}

/* A reset does not touch the hardware until the importer unmapped. */
TEST(reset_waits_for_importer)
{
	struct vfio_handle h;
	struct importer_map m;
	struct resetter r;
	pthread_t thread;
	int buf, imp;

	ASSERT_EQ(0, vfio_open(test_dev("FLR"), &h));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	buf = export1(h.device, VIRTIO_BAR, 0, PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(test_dev("SW_EDU"), buf, IMPORTER_DYNAMIC_P2P | IMPORTER_HOLD);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));

	r = (struct resetter){ .device = h.device };
	ASSERT_EQ(0, pthread_create(&thread, NULL, reset_device, &r));
	for (int i = 0; i < 100 && !importer_status(imp).invalidations; i++)
		usleep(10000);
	usleep(300000);
	EXPECT_EQ(0, r.done);
	ASSERT_EQ(0, ioctl(imp, IMPORTER_UNMAP));
	pthread_join(thread, NULL);
	EXPECT_EQ(1, r.done);
	close(imp);
	close(buf);
	vfio_handle_close(&h);
}

/*
 * A hot reset issued through the fd of a sibling on the same bus (bound to
 * vfio-pci) resets our device as well: vfio holds our memory_lock across
 * it and only the PCI core's reset_prepare/reset_done reach us.  The buffer
 * is revoked during the reset and given back after it, without any call
 * on our device's fd.  No importer can map across the root complex here
 * (SW_EDU), so the importer tells "revoked" (ENODEV) from "not reachable"
 * (EINVAL) and counts the invalidations.
 */
TEST(sibling_hot_reset_revokes_then_gives_back)
{
	struct vfio_handle ours, sibling;
	struct importer_map m;
	int buf, imp, i;

	ASSERT_NE(NULL, test_dev("SIB_IVSHMEM"));
	ASSERT_NE(NULL, test_dev("SIB_VFIO"));
	ASSERT_EQ(0, vfio_open(test_dev("SIB_IVSHMEM"), &ours));
	ASSERT_EQ(0, vfio_open_in(test_dev("SIB_VFIO"), &ours, &sibling));
	ASSERT_EQ(0, set_memory_enable(ours.device, 1));
	buf = export1(ours.device, 2, 0, 2 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(test_dev("SW_EDU"), buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(-EINVAL, importer_map(imp, &m));
	ASSERT_EQ(0, importer_status(imp).invalidations);

	ASSERT_EQ(0, vfio_hot_reset(&sibling));
	EXPECT_GE(importer_status(imp).invalidations, 1);
	/* Given back from a work item once vfio releases memory_lock. */
	for (i = 0; i < 200 && importer_status(imp).invalidations < 2; i++)
		usleep(10000);
	EXPECT_EQ(2, importer_status(imp).invalidations);
	EXPECT_EQ(-EINVAL, importer_map(imp, &m));

	close(imp);
	close(buf);
	vfio_handle_close(&sibling);
	vfio_handle_close(&ours);
}

/* drivers/pci/pcie/aer_inject.c's request. */
struct aer_error_inj {
	uint8_t bus, dev, fn;
	uint32_t uncor_status, cor_status;
	uint32_t header_log[4];
	uint32_t domain;
};

/* Waits for the kernel log line that ends an error recovery. */
static const char *wait_recovery(int kmsg)
{
	char rec[1024];

	for (int i = 0; i < 1000; i++) {
		ssize_t n = read(kmsg, rec, sizeof(rec) - 1);

		if (n < 0) {
			usleep(10000);
			continue;
		}
		rec[n] = '\0';
		if (strstr(rec, "device recovery successful"))
			return "successful";
		if (strstr(rec, "device recovery failed"))
			return "failed";
	}
	return "timed out";
}

/*
 * A fatal uncorrectable error (AER): the link is frozen and reset by the
 * recovery without reset_prepare, and nothing restores the device.  The
 * importer is cut off from error_detected on and stays cut off after the
 * recovery, until the user enables memory decode again (vfio restores the
 * lost BARs on that write).
 */
TEST(aer_fatal_error_revokes_until_the_user_restores)
{
	const char *bdf = test_dev("FLR");
	struct aer_error_inj einj = {
		.uncor_status = PCI_ERR_UNC_MALF_TLP,	/* fatal by default */
	};
	unsigned int domain, bus, dev, fn;
	struct importer_map m;
	int fields;
	struct vfio_handle h;
	int buf, imp, inj, kmsg;

	ASSERT_NE(NULL, bdf);
	inj = open("/dev/aer_inject", O_WRONLY);
	if (inj < 0)
		SKIP(return, "no aer_inject");
	fields = sscanf(bdf, "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
	ASSERT_EQ(4, fields);
	einj.domain = domain;
	einj.bus = bus;
	einj.dev = dev;
	einj.fn = fn;

	ASSERT_EQ(0, vfio_open(bdf, &h));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	buf = export1(h.device, VIRTIO_BAR, 0, 2 * PAGE);
	ASSERT_GE(buf, 0);
	imp = importer_open(test_dev("SW_EDU"), buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));

	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	ASSERT_GE(kmsg, 0);
	lseek(kmsg, 0, SEEK_END);
	ASSERT_EQ(sizeof(einj), write(inj, &einj, sizeof(einj))) {
		TH_LOG("aer_inject: %s", strerror(errno));
	}
	ASSERT_STREQ("successful", wait_recovery(kmsg));
	close(inj);
	/*
	 * aer_inject leaves its config accessors on the bus, and they take a
	 * spinlock inside the raw pci_lock that user config accesses (vfio's)
	 * hold: lockdep's "Invalid wait context".  Unload it first.
	 */
	ASSERT_EQ(0, system("modprobe -r aer_inject"));

	expect_revoked(_metadata, imp, 1);
	EXPECT_EQ(-ENODEV, importer_map(imp, &m));	/* still, after recovery */
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	expect_usable(_metadata, imp);

	close(kmsg);
	close(imp);
	close(buf);
	vfio_handle_close(&h);
}

TEST_HARNESS_MAIN
