// SPDX-License-Identifier: GPL-2.0
/*
 * How an importer reaches a BAR, topology by topology: our driver must route
 * every (exporter, importer) pair the way the kernel does.  The kernel's
 * answer is observed twice: pci_p2pdma_distance_many() (through the test
 * importer) and the mapping in-tree vfio-pci hands the same importer for the
 * same device, rebound to it for the comparison.
 *
 * run.sh boots this test on an Intel-like CPU model (routes through the host
 * bridge are refused: q35's host bridge is not allow-listed) and on an AMD
 * Zen model (-cpu EPYC: they are allowed and mapped through the IOMMU).
 */
#include <time.h>

#include "kselftest_harness.h"
#include "dmabuf_util.h"

enum route { REFUSED, BUS_ADDRESS, HOST_BRIDGE };

static const char *const route_name[] = { "refused", "bus address", "host bridge" };

struct outcome {
	int err;		/* of the importer's map */
	enum route route;
	uint64_t addr;		/* first DMA address */
	bool dma_read_ok;	/* the importer read the BAR's bytes by DMA */
};

/* Binds @bdf to @driver through driver_override, as guest.sh does. */
static int rebind(const char *bdf, const char *driver)
{
	char path[PATH_MAX], cur[64];

	if (sysfs_driver(bdf, cur, sizeof(cur)))
		return -ENOENT;
	if (!strcmp(cur, driver))
		return 0;
	if (cur[0]) {
		snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", cur);
		write_str(path, bdf);
	}
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/driver_override", bdf);
	write_str(path, driver);
	write_str("/sys/bus/pci/drivers_probe", bdf);
	if (sysfs_driver(bdf, cur, sizeof(cur)) || strcmp(cur, driver))
		return -EIO;
	return 0;
}

/* Linux lets P2P through the host bridge on AMD Zen (family 0x17) and later. */
static bool cpu_is_amd_zen(void)
{
	bool amd = false;
	int family = 0;
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "vendor_id", 9))
			amd = strstr(line, "AuthenticAMD");
		if (!strncmp(line, "cpu family", 10)) {
			if (sscanf(strchr(line, ':') + 1, "%d", &family) != 1)
				family = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	return amd && family >= 0x17;
}

/*
 * Exports 4 pages of BAR 2 of @exporter bound to @driver, maps them for
 * @importer and, when @dma, checks the importer reads the BAR's bytes.
 */
static struct outcome map_through(struct __test_metadata *_metadata,
				  const char *driver, const char *exporter,
				  const char *importer, bool dma)
{
	static struct importer_dma_read rd;
	struct outcome o = { .err = -EIO };
	volatile uint8_t *bar = MAP_FAILED;
	struct importer_map m;
	struct vfio_handle h;
	int buf, imp;

	if (rebind(exporter, driver)) {
		TH_LOG("cannot bind %s to %s", exporter, driver);
		return o;
	}
	if (vfio_open(exporter, &h))
		return o;
	set_memory_enable(h.device, 1);
	if (dma) {
		bar = vfio_mmap_bar(h.device, 2, 0, 4 * PAGE);
		if (bar == MAP_FAILED)
			goto out;
		for (unsigned int i = 0; i < PAGE; i++)
			bar[PAGE + i] = rand();
	}
	buf = export1(h.device, 2, 0, 4 * PAGE);
	if (buf < 0) {
		o.err = buf;
		goto out;
	}
	imp = importer_open(importer, buf, IMPORTER_DYNAMIC_P2P);
	if (imp < 0) {
		o.err = imp;
		close(buf);
		goto out;
	}
	o.err = importer_map(imp, &m);
	o.route = REFUSED;
	if (!o.err) {
		o.addr = m.entries[0].addr;
		o.route = o.addr == bar_start(exporter, 2) ? BUS_ADDRESS : HOST_BRIDGE;
	}
	if (!o.err && dma) {
		rd.offset = PAGE + 512;
		rd.len = 2048;
		o.dma_read_ok = !ioctl(imp, IMPORTER_DMA_READ, &rd);
		for (unsigned int i = 0; o.dma_read_ok && i < rd.len; i++)
			if (rd.data[i] != bar[PAGE + 512 + i]) {
				TH_LOG("byte %u: read %#x, BAR has %#x", i, rd.data[i],
				       bar[PAGE + 512 + i]);
				o.dma_read_ok = false;
			}
	}
	close(imp);
	close(buf);
out:
	if (bar != MAP_FAILED)
		munmap((void *)bar, 4 * PAGE);
	vfio_handle_close(&h);
	return o;
}

FIXTURE(topology) {
	const char *exporter, *importer;
};

FIXTURE_VARIANT(topology) {
	const char *exporter, *importer;
	enum route on_intel, on_amd;
	int bus_distance;	/* the kernel's distance for a bus-address route */
	bool dma;		/* the importer's DMA reaches the BAR here */
};

/* Behind one switch without ACS: bus addresses (dist 2 + 2). */
FIXTURE_VARIANT_ADD(topology, switch_peers) {
	.exporter = "SW_IVSHMEM", .importer = "SW_EDU",
	.on_intel = BUS_ADDRESS, .on_amd = BUS_ADDRESS, .bus_distance = 4,
	.dma = true,
};

/* Integrated endpoints on the root bus: no common bridge. */
FIXTURE_VARIANT_ADD(topology, root_bus_peers) {
	.exporter = "IVSHMEM", .importer = "IMP_EDU",
	.on_intel = REFUSED, .on_amd = HOST_BRIDGE, .dma = true,
};

/* Two functions under one root port whose ACS redirects P2P upstream. */
FIXTURE_VARIANT_ADD(topology, same_root_port_acs_redirect) {
	.exporter = "ACS_IVSHMEM", .importer = "ACS_EDU",
	.on_intel = REFUSED, .on_amd = HOST_BRIDGE,
};

/* The same with ACS redirect disabled (pci=disable_acs_redir=). */
FIXTURE_VARIANT_ADD(topology, same_root_port_no_acs_redirect) {
	.exporter = "NOACS_IVSHMEM", .importer = "NOACS_EDU",
	.on_intel = BUS_ADDRESS, .on_amd = BUS_ADDRESS, .bus_distance = 2,
};

FIXTURE_VARIANT_ADD(topology, different_root_ports) {
	.exporter = "ACS_IVSHMEM", .importer = "NOACS_EDU",
	.on_intel = REFUSED, .on_amd = HOST_BRIDGE,
};

FIXTURE_VARIANT_ADD(topology, switch_to_root_bus) {
	.exporter = "SW_IVSHMEM", .importer = "IMP_EDU",
	.on_intel = REFUSED, .on_amd = HOST_BRIDGE, .dma = true,
};

FIXTURE_SETUP(topology)
{
	self->exporter = test_dev(variant->exporter);
	self->importer = test_dev(variant->importer);
	ASSERT_NE(NULL, self->exporter);
	ASSERT_NE(NULL, self->importer);
	srand(time(NULL));
}

FIXTURE_TEARDOWN(topology)
{
	EXPECT_EQ(0, rebind(self->exporter, "dmabuf-vfio-pci"));
}

TEST_F(topology, routes_as_the_kernel_does)
{
	enum route expected = cpu_is_amd_zen() ? variant->on_amd : variant->on_intel;
	int distance = kernel_p2p_distance(self->exporter, self->importer);
	struct outcome in_tree, ours;

	in_tree = map_through(_metadata, "vfio-pci", self->exporter,
			      self->importer, false);
	ours = map_through(_metadata, "dmabuf-vfio-pci", self->exporter,
			   self->importer, variant->dma);
	TH_LOG("%s -> %s: kernel distance %d; in-tree: %s (%d); ours: %s (%d) at %#llx",
	       variant->exporter, variant->importer, distance,
	       route_name[in_tree.route], in_tree.err, route_name[ours.route],
	       ours.err, (unsigned long long)ours.addr);

	/* The kernel's two answers and ours agree... */
	EXPECT_EQ(in_tree.err, ours.err);
	EXPECT_EQ(in_tree.route, ours.route);
	EXPECT_EQ(distance < 0, ours.route == REFUSED);
	if (ours.route == BUS_ADDRESS)
		EXPECT_EQ(in_tree.addr, ours.addr);

	/* ...and are what this topology and CPU call for. */
	EXPECT_EQ(expected, ours.route);
	if (expected == REFUSED)
		EXPECT_EQ(-EINVAL, ours.err);
	if (expected == BUS_ADDRESS)
		EXPECT_EQ(variant->bus_distance, distance);
	if (variant->dma && expected != REFUSED)
		EXPECT_TRUE(ours.dma_read_ok);
}

TEST_HARNESS_MAIN
