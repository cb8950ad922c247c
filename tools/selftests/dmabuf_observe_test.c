// SPDX-License-Identifier: GPL-2.0
/*
 * The driver's state, seen from outside: its debugfs status file and its
 * tracepoints, checked against what the test did.
 */
#include <sys/mount.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "dmabuf_util.h"
#include "linux/dmabuf_vfio_pci.h"

#define TRACEFS "/sys/kernel/tracing"

static char *slurp(const char *path)
{
	static char buf[1 << 20];
	ssize_t n, len = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	return buf;
}

static unsigned long long ino_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : (unsigned long long)st.st_ino;
}

/* The number after "@key=" in @status (-1 if absent). */
static long long counter(const char *status, const char *key)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof(pat), " %s=", key);
	at = status ? strstr(status, pat) : NULL;
	return at ? strtoll(at + strlen(pat), NULL, 10) : -1;
}

/* The line of @status about buffer @ino, up to its end. */
static const char *buffer_line(const char *status, unsigned long long ino, char *out,
			       size_t len)
{
	char key[64];
	const char *at;

	snprintf(key, sizeof(key), "buffer %llu:", ino);
	at = status ? strstr(status, key) : NULL;
	if (!at)
		return NULL;
	snprintf(out, len, "%.*s", (int)strcspn(at, "\n"), at);
	return out;
}

TEST(debugfs_shows_buffers_importers_and_counters)
{
	const char *bdf = test_dev("SW_IVSHMEM"), *importer = test_dev("SW_EDU");
	char path[PATH_MAX], line[512], want[128];
	unsigned long long ino;
	struct importer_map m;
	struct vfio_handle h;
	volatile uint8_t *cpu;
	const char *status;
	long long memory_revokes, requests, sigbus;
	struct stat st;
	int buf, imp;

	ASSERT_NE(NULL, bdf);
	snprintf(path, sizeof(path), "/sys/kernel/debug/dmabuf_vfio_pci/%s/status", bdf);
	ASSERT_EQ(0, stat(path, &st));
	EXPECT_EQ(0400, st.st_mode & 0777);		/* root only */

	ASSERT_EQ(0, vfio_open(bdf, &h));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	buf = export1(h.device, 2, 4 * PAGE, 2 * PAGE);
	ASSERT_GE(buf, 0);
	ino = ino_of(buf);
	imp = importer_open(importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	cpu = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, buf, 0);
	ASSERT_NE(MAP_FAILED, cpu);
	ASSERT_GE(peek_or_sigbus(cpu), 0);

	status = slurp(path);
	ASSERT_NE(NULL, buffer_line(status, ino, line, sizeof(line))) {
		TH_LOG("no buffer %llu in:\n%s", ino, status);
	}
	memory_revokes = counter(status, "memory-enable");
	requests = counter(status, "revoke-request");
	sigbus = counter(status, "sigbus");
	ASSERT_GE(memory_revokes, 0);
	ASSERT_GE(requests, 0);
	ASSERT_GE(sigbus, 0);
	EXPECT_NE(NULL, strstr(line, "size=0x2000 accessible memattr=uncached dma_mappings=1 cpu_mappings=1")) {
		TH_LOG("%s", line);
	}
	snprintf(want, sizeof(want), "  range %#llx+0x2000",
		 (unsigned long long)bar_start(bdf, 2) + 4 * PAGE);
	EXPECT_NE(NULL, strstr(status, want));
	snprintf(want, sizeof(want), "  importer %s bus-address", importer);
	EXPECT_NE(NULL, strstr(status, want));
	EXPECT_NE(NULL, strstr(status, "faults: page="));

	ASSERT_EQ(0, set_memory_enable(h.device, 0));
	status = slurp(path);
	ASSERT_NE(NULL, buffer_line(status, ino, line, sizeof(line)));
	EXPECT_NE(NULL, strstr(line, " revoked memattr")) {
		TH_LOG("%s", line);
	}
	EXPECT_EQ(-1, peek_or_sigbus(cpu));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	ASSERT_EQ(0, revoke_for_good(h.device, buf));
	status = slurp(path);
	ASSERT_NE(NULL, buffer_line(status, ino, line, sizeof(line)));
	EXPECT_NE(NULL, strstr(line, "revoked-for-good")) {
		TH_LOG("%s", line);
	}
	EXPECT_EQ(memory_revokes + 1, counter(status, "memory-enable"));
	EXPECT_EQ(requests + 1, counter(status, "revoke-request"));
	EXPECT_EQ(sigbus + 1, counter(status, "sigbus"));

	/* Gone with its last reference. */
	munmap((void *)cpu, 2 * PAGE);
	close(imp);
	close(buf);
	status = slurp(path);
	EXPECT_EQ(NULL, buffer_line(status, ino, line, sizeof(line)));
	vfio_handle_close(&h);
}

TEST(tracepoints_follow_a_buffer)
{
	const char *bdf = test_dev("SW_IVSHMEM"), *importer = test_dev("SW_EDU");
	unsigned long long ino;
	struct importer_map m;
	struct vfio_handle h;
	volatile uint8_t *cpu;
	const char *trace;
	char want[256];
	int buf, imp;

	if (access(TRACEFS "/trace", F_OK))
		mount("nodev", TRACEFS, "tracefs", 0, NULL);
	ASSERT_EQ(0, access(TRACEFS "/events/dmabuf_vfio_pci/enable", W_OK));
	ASSERT_EQ(0, write_str(TRACEFS "/trace", ""));
	ASSERT_EQ(0, write_str(TRACEFS "/events/dmabuf_vfio_pci/enable", "1"));

	ASSERT_EQ(0, vfio_open(bdf, &h));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	buf = export1(h.device, 2, 0, 2 * PAGE);
	ASSERT_GE(buf, 0);
	ino = ino_of(buf);
	imp = importer_open(importer, buf, IMPORTER_DYNAMIC_P2P);
	ASSERT_GE(imp, 0);
	ASSERT_EQ(0, importer_map(imp, &m));
	ASSERT_EQ(0, set_memory_enable(h.device, 0));
	ASSERT_EQ(0, set_memory_enable(h.device, 1));
	cpu = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, buf, 0);
	ASSERT_NE(MAP_FAILED, cpu);
	ASSERT_GE(peek_or_sigbus(cpu + PAGE), 0);
	munmap((void *)cpu, 2 * PAGE);
	vfio_handle_close(&h);
	close(imp);
	close(buf);
	write_str(TRACEFS "/events/dmabuf_vfio_pci/enable", "0");

	trace = slurp(TRACEFS "/trace");
	ASSERT_NE(NULL, trace);
	snprintf(want, sizeof(want), "dmabuf_vfio_export: %s buf=%llu size=8192 ranges=1", bdf, ino);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s not in:\n%s", want, trace); }
	snprintf(want, sizeof(want), "dmabuf_vfio_attach: %s buf=%llu importer=%s map_type=bus-address",
		 bdf, ino, importer);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_map: %s buf=%llu importer=%s map_type=bus-address nents=1",
		 bdf, ino, importer);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_revoke: %s buf=%llu cause=memory-enable", bdf, ino);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_unmap: %s buf=%llu importer=%s", bdf, ino, importer);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_unrevoke: %s buf=%llu cause=memory-enable", bdf, ino);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_fault: %s buf=%llu pgoff=1 order=0 result=mapped", bdf, ino);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
	snprintf(want, sizeof(want), "dmabuf_vfio_revoke: %s buf=%llu cause=close", bdf, ino);
	EXPECT_NE(NULL, strstr(trace, want)) { TH_LOG("%s", want); }
}

TEST_HARNESS_MAIN
