// SPDX-License-Identifier: GPL-2.0
/*
 * make bench: dmabuf-vfio-pci against in-tree vfio-pci's C exporter, side by
 * side in one guest.  SW_IVSHMEM (ours) and VFIO_IVSHMEM (vfio-pci) are
 * identical 8 GiB ivshmem devices behind one switch; SW_EDU imports.
 *
 * Every figure is the median of repeated runs (min-max after it); absolute
 * times under TCG mean little, the ratio ours/theirs in one run does.
 */
#include <stdbool.h>
#include <sys/resource.h>
#include <time.h>

#include "dmabuf_util.h"
#include "linux/dmabuf_vfio_pci.h"

#define MIB	(1ull << 20)
#define GIB	(1ull << 30)
#define RUNS	15
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

struct side {
	const char *name, *bdf;
	struct vfio_handle h;
	volatile uint8_t *bar;	/* device-fd mapping, first 64 MiB */
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct stat3 {
	double med, min, max;
};

static struct stat3 summarize(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return (struct stat3){ v[n / 2], v[0], v[n - 1] };
}

static void row(const char *what, const char *unit, struct stat3 ours, struct stat3 theirs,
		bool lower_is_better)
{
	double ratio = theirs.med ? ours.med / theirs.med : 0;

	printf("%-44s %10.1f (%.1f-%.1f) %10.1f (%.1f-%.1f) %6.2fx %s%s\n", what,
	       ours.med, ours.min, ours.max, theirs.med, theirs.min, theirs.max, ratio, unit,
	       lower_is_better ? (ratio <= 1.0 ? "" : "  <- behind") :
				 (ratio >= 1.0 ? "" : "  <- behind"));
}

static int export_n(int device, int nr, uint64_t len)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf get;
		struct vfio_region_dma_range r[16];
	} req = {
		.hdr = {
			.argsz = sizeof(req),
			.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
		},
		.get = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = nr },
	};

	/* Separate ranges with a page between: nothing merges. */
	for (int i = 0; i < nr; i++)
		req.r[i] = (struct vfio_region_dma_range){ i * 2 * len, len };
	return ioctl(device, VFIO_DEVICE_FEATURE, &req);
}

/*
 * A sample of exports lasts at least this long: several timer ticks (4 ms
 * on Debian's kernel).  A release leaves work for later (the dma-buf's
 * inode is freed after an RCU grace period), which runs at a tick, in
 * whichever loop runs then.  With samples of 20 exports (0.2 ms there),
 * one boot in twelve read 10.7 against 8.3 us for 16 ranges, both sides'
 * samples moved 1.2 us, in opposite directions.
 */
#define EXPORT_SAMPLE_US	20000

static struct stat3 time_export(struct side *s, int nr)
{
	double v[RUNS];

	for (int r = 0; r < RUNS; r++) {
		double t = now_us(), elapsed;
		int n = 0;

		do {
			for (int i = 0; i < 20; i++)
				close(export_n(s->h.device, nr, PAGE));
			n += 20;
		} while ((elapsed = now_us() - t) < EXPORT_SAMPLE_US);
		v[r] = elapsed / n;
	}
	return summarize(v, RUNS);
}

static struct stat3 time_import(struct side *s, const char *importer)
{
	int buf = export_n(s->h.device, 1, 16 * PAGE);
	struct importer_map m;
	double v[RUNS];

	for (int r = 0; r < RUNS; r++) {
		double t = now_us();

		for (int i = 0; i < 10; i++) {
			int imp = importer_open(importer, buf, IMPORTER_DYNAMIC_P2P);

			importer_map(imp, &m);
			ioctl(imp, IMPORTER_UNMAP);
			close(imp);
		}
		v[r] = (now_us() - t) / 10;
	}
	close(buf);
	return summarize(v, RUNS);
}

/*
 * K buffers of a side, each imported (and mapped) by M importers, which
 * unmap from their invalidation callback or, with @defer_ms, that much
 * later (IMPORTER_DEFER).
 */
struct revoke_setup {
	int k, m, *bufs, *imps;
};

static void revoke_setup(struct side *s, const char *importer, int k, int m,
			 unsigned int defer_ms, struct revoke_setup *rs)
{
	uint32_t flags = IMPORTER_DYNAMIC_P2P | (defer_ms ? IMPORTER_DEFER : 0);
	struct importer_map map;

	*rs = (struct revoke_setup){ k, m, calloc(k, sizeof(int)), calloc(k * m, sizeof(int)) };
	for (int i = 0; i < k; i++)
		rs->bufs[i] = export_n(s->h.device, 1, 4 * PAGE);
	for (int i = 0; i < k * m; i++) {
		rs->imps[i] = importer_open_deferred(importer, rs->bufs[i / m], flags, defer_ms);
		importer_map(rs->imps[i], &map);
	}
}

/* Memory off then on: every buffer revoked (importers unmap) and given back. */
static double revoke_round(struct side *s, struct revoke_setup *rs)
{
	struct importer_map map;
	double t = now_us();

	set_memory_enable(s->h.device, 0);
	set_memory_enable(s->h.device, 1);
	t = now_us() - t;
	for (int i = 0; i < rs->k * rs->m; i++)
		importer_map(rs->imps[i], &map);
	return t;
}

static void revoke_teardown(struct revoke_setup *rs)
{
	for (int i = 0; i < rs->k * rs->m; i++)
		close(rs->imps[i]);
	for (int i = 0; i < rs->k; i++)
		close(rs->bufs[i]);
	free(rs->imps);
	free(rs->bufs);
}

#define REVOKE_RUNS	9

/*
 * Both sides set up at once and their rounds alternating: whatever the
 * host does meanwhile slows both alike.
 */
static void time_revoke(struct side *a, struct side *b, const char *importer, int k, int m,
			unsigned int defer_ms, struct stat3 *ta, struct stat3 *tb)
{
	double va[REVOKE_RUNS], vb[REVOKE_RUNS];
	struct revoke_setup ra, rb;

	revoke_setup(a, importer, k, m, defer_ms, &ra);
	revoke_setup(b, importer, k, m, defer_ms, &rb);
	for (int r = 0; r < REVOKE_RUNS; r++) {
		va[r] = revoke_round(a, &ra);
		vb[r] = revoke_round(b, &rb);
	}
	revoke_teardown(&ra);
	revoke_teardown(&rb);
	*ta = summarize(va, REVOKE_RUNS);
	*tb = summarize(vb, REVOKE_RUNS);
}

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/*
 * Maps @len bytes of @fd at an address aligned to @align, inside a
 * reservation of 2 x @align that stays reserved around it: nothing else of
 * the process lands in the same aligned block.
 */
static volatile uint8_t *map_aligned(int fd, size_t len, off_t off, size_t align)
{
	uint8_t *area = mmap(NULL, 2 * align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *at = (uint8_t *)(((uintptr_t)area + align - 1) & ~(align - 1));

	if (area == MAP_FAILED)
		return MAP_FAILED;
	return mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off);
}

/* Touch every page of a 1 GiB aligned mapping: time, and faults taken. */
static struct stat3 time_touch(int fd, off_t off, double *faults)
{
	double v[5];

	for (int r = 0; r < 5; r++) {
		volatile uint8_t *p = map_aligned(fd, GIB, off, GIB);
		long before = minflt();
		double t = now_us();

		for (uint64_t o = 0; o < GIB; o += PAGE)
			(void)p[o];
		v[r] = now_us() - t;
		*faults = minflt() - before;
		munmap((void *)p, GIB);
	}
	return summarize(v, 5);
}

/* MiB/s reading or writing 16 MiB through @p. */
static struct stat3 bandwidth(volatile uint8_t *p, bool write)
{
	static uint8_t tmp[16 * MIB];
	double v[5];

	for (int r = 0; r < 5; r++) {
		double t = now_us();

		if (write)
			memcpy((void *)p, tmp, sizeof(tmp));
		else
			memcpy(tmp, (void *)p, sizeof(tmp));
		v[r] = 16.0 / ((now_us() - t) / 1e6);
	}
	return summarize(v, 5);
}

/*
 * A device-fd mapping of a BAR's first 64 MiB, alone in a gigabyte of
 * address space: vfio-pci-core zaps the device fd's mappings at every
 * memory-off, and that walk costs what the page tables around the mapping
 * hold — with the process's randomized layout, another amount each boot
 * (0.5-3.5 us per revoke row).  Alone (the rest of its gigabyte stays
 * reserved), it costs both sides the same, every boot.
 */
static volatile uint8_t *map_bar_alone(int device, int bar)
{
	struct vfio_region_info info;

	if (vfio_region(device, VFIO_PCI_BAR0_REGION_INDEX + bar, &info))
		return MAP_FAILED;
	return map_aligned(device, 64 * MIB, info.offset, GIB);
}

int main(int argc, char **argv)
{
	struct side ours = { .name = "dmabuf-vfio-pci", .bdf = test_dev("SW_IVSHMEM") };
	struct side theirs = { .name = "vfio-pci", .bdf = test_dev("VFIO_IVSHMEM") };
	const char *importer = test_dev("SW_EDU");
	struct rlimit rl = { 65536, 65536 };
	struct side *sides[] = { &ours, &theirs };
	static const int km[][2] = { { 1, 1 }, { 16, 1 }, { 64, 1 }, { 1, 16 }, { 1, 64 },
				     { 16, 16 }, { 64, 64 } };
	static const int late[][2] = { { 1, 1 }, { 16, 1 }, { 64, 1 }, { 1, 16 }, { 16, 16 },
				       { 64, 16 } };
	double faults_ours, faults_theirs;
	char what[64];
	int buf;

	if (!ours.bdf || !theirs.bdf || !importer) {
		printf("bench: test devices not set\n");
		return 1;
	}
	setrlimit(RLIMIT_NOFILE, &rl);
	/*
	 * One figure of one side alone, for a profiler to watch (perf record
	 * -a in the guest):
	 *   --export-loop ours|theirs N: N x 15 x 20 exports + closes;
	 *   --revoke-loop ours|theirs K M N: N revoke + un-revoke rounds with
	 *   K buffers x M importers.
	 */
	if (argc == 4 && !strcmp(argv[1], "--export-loop")) {
		struct side *s = strcmp(argv[2], "ours") ? &theirs : &ours;
		struct stat3 t = { 0 };

		if (vfio_open(s->bdf, &s->h))
			return 1;
		for (int i = 0; i < atoi(argv[3]); i++)
			t = time_export(s, 1);
		printf("%s: export + close: %.1f (%.1f-%.1f) us\n", s->name, t.med, t.min, t.max);
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "--revoke-loop")) {
		struct side *s = strcmp(argv[2], "ours") ? &theirs : &ours;
		struct revoke_setup rs;
		struct stat3 t;
		double *v;
		int n = atoi(argv[5]);

		if (n < 1 || vfio_open(s->bdf, &s->h) || set_memory_enable(s->h.device, 1))
			return 1;
		v = calloc(n, sizeof(*v));
		revoke_setup(s, importer, atoi(argv[3]), atoi(argv[4]), 0, &rs);
		for (int r = 0; r < n; r++)
			v[r] = revoke_round(s, &rs);
		revoke_teardown(&rs);
		t = summarize(v, n);
		free(v);
		printf("%s: revoke + un-revoke %s x %s: %.1f (%.1f-%.1f) us\n", s->name, argv[3],
		       argv[4], t.med, t.min, t.max);
		return 0;
	}
	for (int i = 0; i < 2; i++) {
		if (vfio_open(sides[i]->bdf, &sides[i]->h) ||
		    set_memory_enable(sides[i]->h.device, 1)) {
			printf("bench: cannot open %s\n", sides[i]->bdf);
			return 1;
		}
		sides[i]->bar = map_bar_alone(sides[i]->h.device, 2);
	}

	printf("%-44s %24s %24s %7s\n", "", "dmabuf-vfio-pci", "vfio-pci (C)", "ratio");
	row("export + close, 1 range", "us", time_export(&ours, 1), time_export(&theirs, 1), true);
	row("export + close, 16 ranges", "us", time_export(&ours, 16), time_export(&theirs, 16), true);
	row("attach + map + unmap + detach (bus address)", "us", time_import(&ours, importer),
	    time_import(&theirs, importer), true);
	for (unsigned int i = 0; i < ARRAY_SIZE(km); i++) {
		snprintf(what, sizeof(what), "revoke + un-revoke, %d bufs x %d importers",
			 km[i][0], km[i][1]);
		struct stat3 t_ours, t_theirs;

		time_revoke(&ours, &theirs, importer, km[i][0], km[i][1], 0, &t_ours, &t_theirs);
		row(what, "us", t_ours, t_theirs, true);
	}
	/* Importers that unmap 1 ms after their invalidation. */
	for (unsigned int i = 0; i < ARRAY_SIZE(late); i++) {
		snprintf(what, sizeof(what), "revoke + un-revoke, %d x %d, unmap +1 ms",
			 late[i][0], late[i][1]);
		struct stat3 t_ours, t_theirs;

		time_revoke(&ours, &theirs, importer, late[i][0], late[i][1], 1, &t_ours,
			    &t_theirs);
		row(what, "us", t_ours, t_theirs, true);
	}

	/* CPU mappings: ours through a dma-buf, theirs through the device fd. */
	buf = export_n(ours.h.device, 1, GIB);
	row("touch 1 GiB (1 GiB aligned)", "us", time_touch(buf, 0, &faults_ours),
	    time_touch(theirs.h.device, (off_t)2 << 40, &faults_theirs), true);
	printf("%-44s %24.0f %24.0f   (minimum: 1, one PUD)\n", "  faults taken", faults_ours,
	       faults_theirs);
	close(buf);

	buf = export_n(ours.h.device, 1, 16 * MIB);
	{
		volatile uint8_t *m = mmap(NULL, 16 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
		struct {
			struct vfio_device_feature hdr;
			struct dmabuf_vfio_pci_memattr a;
		} wc = {
			.hdr = { .argsz = sizeof(wc),
				 .flags = VFIO_DEVICE_FEATURE_SET | DMABUF_VFIO_PCI_FEATURE_MEMATTR },
			.a = { .dmabuf_fd = buf, .memattr = DMABUF_VFIO_PCI_MEMATTR_WC },
		};
		volatile uint8_t *w;
		struct stat3 uc;

		row("read bandwidth, dma-buf vs device-fd map", "MiB/s", bandwidth(m, false),
		    bandwidth(ours.bar, false), false);
		row("write bandwidth, dma-buf vs device-fd map", "MiB/s", bandwidth(m, true),
		    bandwidth(ours.bar, true), false);
		uc = bandwidth(m, true);
		munmap((void *)m, 16 * MIB);
		/* The memory type cannot change while the buffer is mapped. */
		if (ioctl(ours.h.device, VFIO_DEVICE_FEATURE, &wc)) {
			printf("%-44s %24s   (%s: no write-combining here)\n",
			       "write bandwidth, write-combining vs uncached", "refused",
			       strerror(errno));
		} else {
			w = mmap(NULL, 16 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
			row("write bandwidth, write-combining vs uncached", "MiB/s",
			    bandwidth(w, true), uc, false);
			munmap((void *)w, 16 * MIB);
		}
	}
	close(buf);
	return 0;
}
