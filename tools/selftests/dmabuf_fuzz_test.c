// SPDX-License-Identifier: GPL-2.0
/*
 * A fuzzer over the driver's whole uAPI: several threads (and forked
 * children) issue random operations, with mostly plausible arguments, on
 * the devices of a target, and check every result against the documented
 * state machine (Documentation/dmabuf-vfio-pci.rst, "Fuzzing").
 *
 *   dmabuf_fuzz_test                   the short campaigns of make check
 *   dmabuf_fuzz_test --campaign ours|vfio SEED SECONDS THREADS
 *                                      one campaign (make fuzz)
 *
 * Targets: "ours" fuzzes SW_IVSHMEM (an 8 GiB RAM BAR: data checks) and
 * FLR (a virtio device with PCIe FLR and PCI PM), "vfio" in-tree vfio-pci
 * on VFIO_IVSHMEM (our extensions aside: no dma-buf mmap, no REVOKE or
 * MEMATTR, no O_PATH holders: Linux 7.3's exporter uses a freed file
 * then).  SW_EDU imports, bound to the test importer.
 *
 * The model.  A device is accessible when it is open, decodes memory, is
 * in D0 and not in low power, and no event is in progress; a buffer when
 * its device is and it was not revoked for good (REVOKE, or a close of the
 * device it was exported under).  Events (config writes, resets, low
 * power, REVOKE, close, unbind) bump a generation: an operation whose
 * generation changed while it ran may see either outcome; one that ran in
 * a quiet spell must see exactly the model's.  After an event the device's
 * command register and PMCSR are read back through the device fd (the
 * user's view, which the rules are stated in).  A fifth of the events run
 * "wild", outside the event lock, racing each other: until the next
 * serialized event reads the state again the device is "unknown".
 *
 * Each thread draws its operations from its own generator seeded from the
 * seed: a replay repeats every thread's sequence, not the interleaving.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "kselftest_harness.h"
#include "dmabuf_util.h"

#define NBUF		24	/* dma-buf fd slots */
#define NMAP		24	/* CPU mapping slots */
#define NIMP		10	/* importer slots */
#define NOPATH		6	/* O_PATH holder slots */
#define NBUFM		512	/* buffer models */
#define MAXR		16	/* ranges per export */
#define LOGN		512	/* operations remembered per thread */
#define LOGSHOW		24	/* of them, printed per thread on a failure */
#define MAXT		16	/* threads */
#define CLOSED_FD	900	/* never open: RLIMIT_NOFILE is kept below */
#define WC_FIRST	128	/* pages of the data BAR write-combining may cover */
#define WC_END		192
#define HUGE_OFF	(2ull << 20)
#define GIGA		(1ull << 30)
#define DEVS		3

enum { NO, YES, MAYBE };

/* One kind of operation; its weight, per target. */
enum op {
	OP_EXPORT, OP_EXPORT_BAD, OP_CLOSE_BUF, OP_DUP_BUF, OP_OPATH, OP_FEATURE,
	OP_REVOKE, OP_MEMATTR, OP_MMAP, OP_DEVMAP, OP_MUNMAP, OP_MREMAP,
	OP_MPROTECT, OP_MADVISE, OP_TOUCH, OP_DATA, OP_NO_GUP, OP_FORK,
	OP_CONFIG, OP_MEM_ON, OP_RESET, OP_HOT_RESET, OP_LOW_POWER,
	OP_SYSFS_RESET, OP_SIB_RESET, OP_IMP_ATTACH, OP_IMP_MAP, OP_IMP_UNMAP, OP_IMP_DMA,
	OP_IMP_DETACH, OP_REOPEN, OP_REBIND, NOPS
};

static const char * const op_name[NOPS] = {
	"export", "export_bad", "close_buf", "dup_buf", "o_path", "feature",
	"revoke", "memattr", "mmap", "devfd_mmap", "munmap", "mremap",
	"mprotect", "madvise", "touch", "data", "no_gup", "fork",
	"config_write", "memory_on", "device_reset", "hot_reset", "low_power",
	"sysfs_reset", "sibling_reset", "imp_attach", "imp_map", "imp_unmap", "imp_dma",
	"imp_detach", "reopen", "rebind",
};

static const int weight_ours[NOPS] = {
	[OP_EXPORT] = 40, [OP_EXPORT_BAD] = 12, [OP_CLOSE_BUF] = 25, [OP_DUP_BUF] = 6,
	[OP_OPATH] = 5, [OP_FEATURE] = 10, [OP_REVOKE] = 8, [OP_MEMATTR] = 10,
	[OP_MMAP] = 35, [OP_DEVMAP] = 5, [OP_MUNMAP] = 25, [OP_MREMAP] = 6,
	[OP_MPROTECT] = 5, [OP_MADVISE] = 6, [OP_TOUCH] = 60, [OP_DATA] = 15,
	[OP_NO_GUP] = 4, [OP_FORK] = 3, [OP_CONFIG] = 16, [OP_MEM_ON] = 14,
	[OP_RESET] = 4, [OP_HOT_RESET] = 3, [OP_LOW_POWER] = 5, [OP_SYSFS_RESET] = 2,
	[OP_SIB_RESET] = 2, [OP_IMP_ATTACH] = 14, [OP_IMP_MAP] = 20, [OP_IMP_UNMAP] = 6,
	[OP_IMP_DMA] = 2, [OP_IMP_DETACH] = 8, [OP_REOPEN] = 1, [OP_REBIND] = 1,
};

/* vfio-pci's dma-bufs have no mmap; REVOKE, MEMATTR are ours. */
static const int weight_vfio[NOPS] = {
	[OP_EXPORT] = 40, [OP_EXPORT_BAD] = 12, [OP_CLOSE_BUF] = 25, [OP_DUP_BUF] = 6,
	[OP_FEATURE] = 10, [OP_REVOKE] = 4, [OP_MEMATTR] = 4, [OP_MMAP] = 4,
	[OP_DEVMAP] = 8, [OP_MUNMAP] = 6, [OP_MREMAP] = 4, [OP_MPROTECT] = 4,
	[OP_MADVISE] = 4, [OP_TOUCH] = 30, [OP_DATA] = 15, [OP_NO_GUP] = 4,
	[OP_FORK] = 3, [OP_CONFIG] = 16, [OP_MEM_ON] = 14, [OP_RESET] = 4,
	[OP_HOT_RESET] = 3, [OP_LOW_POWER] = 5, [OP_SYSFS_RESET] = 2,
	[OP_IMP_ATTACH] = 14, [OP_IMP_MAP] = 20, [OP_IMP_UNMAP] = 6, [OP_IMP_DMA] = 2,
	[OP_IMP_DETACH] = 8, [OP_REOPEN] = 1, [OP_REBIND] = 1,
};

/* A device of the campaign, and the model of its state. */
struct fdev {
	const char *role, *bdf;
	int bar;
	uint64_t bar_size, window;	/* pages exports pick from */
	bool data;			/* RAM BAR: contents are checked */
	int pm, pcie, af;		/* capability offsets, -1 */
	bool p2p;			/* the importer can map it */
	bool reset_works;		/* VFIO_DEVICE_FLAGS_RESET */
	const char *sib_role;		/* a vfio-pci sibling on its bus */
	struct vfio_handle sib;
	pthread_rwlock_t fdlock;	/* users of h (read), reopen (write) */
	pthread_mutex_t evlock;		/* serialized events */
	struct vfio_handle h;
	uint64_t bar_region, cfg_region;
	/* The model, under world.lock. */
	unsigned int gen, inflight, wild, wild_gen;
	unsigned int epoch, binding;
	bool mem, d0, lp, lp_maybe, unknown;
	bool deferred;			/* a reset may settle from a work item */
	/* debugfs counters summed over bindings */
	unsigned long long cov[16], cov_base[16];
};

/* A dma-buf as the model knows it: outlives its fds. */
struct bufm {
	int refs;
	struct fdev *d;
	unsigned int epoch, binding;
	bool perm, wc;
	int accmode;
	int nr;
	struct vfio_region_dma_range r[MAXR];
	uint64_t size;
	pthread_mutex_t lock;		/* MEMATTR on it */
};

struct bufslot {
	pthread_rwlock_t rw;
	int fd;
	struct bufm *m;
};

struct mapslot {
	pthread_rwlock_t rw;
	uint8_t *addr;
	size_t len;
	uint64_t off;			/* into the buffer or the BAR */
	bool writable, wc;
	struct bufm *m;			/* NULL: the device fd's BAR mapping */
	struct fdev *d;
};

struct impslot {
	pthread_mutex_t lock;
	int fd;
	struct bufm *m;
};

struct opath {
	pthread_mutex_t lock;
	int fd;
	struct bufm *m;
};

struct thread {
	int id;
	uint64_t rng;
	pthread_t tid;
	char log[LOGN][200];
	uint64_t log_ns[LOGN];		/* when each began */
	unsigned long nlog;
	uint64_t cur_ns;
	uint64_t pattern;		/* of its scratch page in the data BAR */
	bool known;
	char cur[200];
};

static struct {
	bool ours;
	bool lp_tolerant;		/* vfio-pci's un-revoke in low power */
	const int *weight;
	int wsum;
	int ndev;
	struct fdev dev[DEVS];
	const char *importer;
	pthread_mutex_t lock;		/* the model */
	pthread_rwlock_t forklock;	/* children alive (read), reopen (write) */
	struct bufslot buf[NBUF];
	struct mapslot map[NMAP];
	struct impslot imp[NIMP];
	struct opath opath[NOPATH];
	struct bufm bufm[NBUFM];
	int nthreads;
	struct thread th[MAXT];
	volatile int stop;
	int failed;
	pthread_mutex_t out;
	char loopdev[64];
	int loopfd;
	unsigned long long runs[NOPS], oks[NOPS], sigbus, children;
} w;

#define LOCK()		pthread_mutex_lock(&w.lock)
#define UNLOCK()	pthread_mutex_unlock(&w.lock)


static uint64_t rnd(struct thread *t)
{
	uint64_t x = t->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

static unsigned int below(struct thread *t, unsigned int n)
{
	return n ? rnd(t) % n : 0;
}

static bool chance(struct thread *t, unsigned int percent)
{
	return below(t, 100) < percent;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Records what the thread does, for the report of a failure. */
static void note(struct thread *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	t->cur_ns = now_ns();
	n = snprintf(t->cur, sizeof(t->cur), "#%lu ", t->nlog);
	va_start(ap, fmt);
	vsnprintf(t->cur + n, sizeof(t->cur) - n, fmt, ap);
	va_end(ap);
}

static void done(struct thread *t, const char *fmt, ...)
{
	char *slot = t->log[t->nlog % LOGN];
	size_t n;
	va_list ap;

	t->log_ns[t->nlog++ % LOGN] = t->cur_ns;
	n = snprintf(slot, sizeof(t->log[0]), "%s -> ", t->cur);
	if (n >= sizeof(t->log[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(slot + n, sizeof(t->log[0]) - n, fmt, ap);
	va_end(ap);
}

/*
 * Every thread's remembered operations, merged in the order they began,
 * into the file $DMABUF_FUZZ_HISTORY names: what other threads did to a
 * buffer or device before a disagreement.
 */
static void dump_history(void)
{
	const char *path = getenv("DMABUF_FUZZ_HISTORY");
	unsigned long next[MAXT];
	FILE *out;

	if (!path)
		return;
	out = fopen(path, "w");
	if (!out)
		return;
	for (int i = 0; i < w.nthreads; i++)
		next[i] = w.th[i].nlog > LOGN ? w.th[i].nlog - LOGN : 0;
	for (;;) {
		int pick = -1;

		for (int i = 0; i < w.nthreads; i++) {
			struct thread *t = &w.th[i];

			if (next[i] < t->nlog && (pick < 0 || t->log_ns[next[i] % LOGN] <
					w.th[pick].log_ns[next[pick] % LOGN]))
				pick = i;
		}
		if (pick < 0)
			break;
		fprintf(out, "%llu.%06llu t%d %s\n",
			(unsigned long long)w.th[pick].log_ns[next[pick] % LOGN] / 1000000000,
			(unsigned long long)w.th[pick].log_ns[next[pick] % LOGN] / 1000 % 1000000,
			pick, w.th[pick].log[next[pick] % LOGN]);
		next[pick]++;
	}
	for (int i = 0; i < w.nthreads; i++)
		fprintf(out, "%llu.%06llu t%d in progress: %s\n",
			(unsigned long long)w.th[i].cur_ns / 1000000000,
			(unsigned long long)w.th[i].cur_ns / 1000 % 1000000, i, w.th[i].cur);
	fclose(out);
	printf("# every thread's last %d operations, by start time: %s\n", LOGN, path);
}

static void dump_logs(void)
{
	for (int i = 0; i < w.nthreads; i++) {
		struct thread *t = &w.th[i];
		unsigned long n = t->nlog > LOGSHOW ? t->nlog - LOGSHOW : 0;

		printf("# thread %d, last operations:\n", i);
		for (; n < t->nlog; n++)
			printf("#   %s\n", t->log[n % LOGN]);
		printf("#   in progress: %s\n", t->cur);
	}
	dump_history();
}

/*
 * A result the model does not allow: the campaign stops, and fails.  True
 * for the first disagreement, which the caller may say more about.
 */
static bool disagree(struct thread *t, const char *fmt, ...)
{
	bool first = false;
	va_list ap;

	pthread_mutex_lock(&w.out);
	if (!w.failed) {
		printf("# DISAGREEMENT in thread %d, %s: ", t->id, t->cur);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		w.failed = 1;
		w.stop = 1;
		first = true;
	}
	pthread_mutex_unlock(&w.out);
	return first;
}

/*
 * The kernel's log from the campaign's start on.  A splat is a failure
 * like a disagreement, and the campaign reports it at once: an oops can
 * leave a lock held (the mmap_lock, in the first one found) and every
 * thread asleep for good, so nothing would come after it.
 */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* The first new record of @fd that names a kernel splat, into @line. */
static bool kmsg_splat(int fd, char *line, size_t size)
{
	static const char *const splats[] = {
		"BUG:", "Oops", "WARNING:", "KASAN", "UBSAN", "general protection fault",
		"possible circular locking", "possible recursive locking",
		"blocked for more than", "Kernel panic",
	};
	char rec[2048];
	ssize_t len;

	for (;;) {
		char *msg;

		len = read(fd, rec, sizeof(rec) - 1);
		if (len < 0 && errno == EPIPE)	/* records overwritten meanwhile */
			continue;
		if (len <= 0)
			return false;
		rec[len] = 0;
		msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		for (unsigned int i = 0; i < ARRAY_SIZE(splats); i++) {
			if (strstr(msg, splats[i])) {
				snprintf(line, size, "%s", msg);
				return true;
			}
		}
	}
}

/* --- SIGBUS ------------------------------------------------------------ */

static __thread sigjmp_buf bus_jmp;
static __thread volatile int bus_armed;

static void on_sigbus(int sig)
{
	if (!bus_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	siglongjmp(bus_jmp, 1);
}

/* Reads (or writes @val into) 8 bytes at @p; -1 on SIGBUS. */
static int access8(volatile uint64_t *p, bool write, uint64_t val, uint64_t *out)
{
	if (sigsetjmp(bus_jmp, 1)) {
		bus_armed = 0;
		return -1;
	}
	bus_armed = 1;
	if (write)
		*p = val;
	else
		*out = *p;
	bus_armed = 0;
	return 0;
}

/* A crash of the fuzzer itself: say where, and what each thread was doing. */
static void on_sigsegv(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	printf("# SIGSEGV at %p\n", si->si_addr);
	dump_logs();
	fflush(stdout);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* --- The model --------------------------------------------------------- */

static int dev_acc_locked(struct fdev *d)
{
	if (d->lp && w.lp_tolerant)
		return MAYBE;
	if (d->lp && !d->lp_maybe && !d->inflight)
		return NO;
	if (d->inflight || d->unknown || d->lp_maybe || d->deferred)
		return MAYBE;
	return d->mem && d->d0 && !d->lp ? YES : NO;
}

static bool buf_dead_locked(struct bufm *m)
{
	return m->perm || m->epoch != m->d->epoch;
}

static int buf_acc_locked(struct bufm *m)
{
	return buf_dead_locked(m) ? NO : dev_acc_locked(m->d);
}

struct obs {
	unsigned int gen;
	int acc;
	bool dead;
};

/* What the model says about @m (a buffer) or @d (the device fd's view). */
static struct obs observe(struct bufm *m, struct fdev *d)
{
	struct obs o;

	LOCK();
	if (m)
		d = m->d;
	o.gen = d->gen;
	o.dead = m && buf_dead_locked(m);
	o.acc = m ? buf_acc_locked(m) : dev_acc_locked(d);
	UNLOCK();
	return o;
}

/* The model's view of @m (or of @d's device fd), for a disagreement. */
static const char *model_str(struct bufm *m, struct fdev *d, char *buf, size_t size)
{
	LOCK();
	if (m)
		d = m->d;
	snprintf(buf, size,
		 "%s mem=%d d0=%d lp=%d lp_maybe=%d unknown=%d deferred=%d inflight=%u wild=%u gen=%u%s",
		 d->role, d->mem, d->d0, d->lp, d->lp_maybe, d->unknown, d->deferred, d->inflight,
		 d->wild, d->gen, m ? (buf_dead_locked(m) ? " buffer dead" : " buffer live") : "");
	UNLOCK();
	return buf;
}

/* The driver's debugfs status of @d (counters, what keeps buffers revoked). */
static FILE *open_status(struct fdev *d)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/kernel/debug/dmabuf_vfio_pci/%s/status", d->bdf);
	return fopen(path, "r");
}

/* What keeps the driver's buffers of @d revoked. */
static void print_driver_state(struct fdev *d)
{
	char line[512];
	FILE *f = open_status(d);

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "events in progress", 18))
			printf("# %s driver: %s", d->role, line);
	fclose(f);
}

/*
 * The kernel's own view of @d, for a disagreement on a touch: the power
 * state Linux holds (sysfs power_state, what vfio-pci-core's fault tests),
 * runtime PM, and the command register and PMCSR as the user reads them.
 */
static void print_kernel_view(struct fdev *d)
{
	char pstate[32] = "?", rpm[32] = "?";
	uint16_t cmd = 0xffff, pmcsr = 0xffff;
	int rc, rp = -1;

	sysfs_read(d->bdf, "power_state", pstate, sizeof(pstate));
	sysfs_read(d->bdf, "power/runtime_status", rpm, sizeof(rpm));
	pstate[strcspn(pstate, "\n")] = 0;
	rpm[strcspn(rpm, "\n")] = 0;
	pthread_rwlock_rdlock(&d->fdlock);
	rc = vfio_config_read(d->h.device, PCI_COMMAND, &cmd, 2);
	if (d->pm >= 0)
		rp = vfio_config_read(d->h.device, d->pm + PCI_PM_CTRL, &pmcsr, 2);
	pthread_rwlock_unlock(&d->fdlock);
	printf("# %s now: power_state=%s runtime_status=%s command=%#x (%d) pmcsr=%#x (%d)\n",
	       d->role, pstate, rpm, cmd, rc, pmcsr, rp);
	print_driver_state(d);
}

/* What held throughout: MAYBE when an event came in between. */
static int settled(struct bufm *m, struct fdev *d, struct obs o)
{
	int acc;

	if (o.dead)
		return NO;
	LOCK();
	if (m)
		d = m->d;
	acc = d->gen == o.gen ? o.acc : MAYBE;
	UNLOCK();
	return acc;
}

static void bufm_get(struct bufm *m)
{
	LOCK();
	m->refs++;
	UNLOCK();
}

static void bufm_put(struct bufm *m)
{
	LOCK();
	m->refs--;
	UNLOCK();
}

static struct bufm *bufm_new(struct fdev *d)
{
	struct bufm *m = NULL;

	LOCK();
	for (int i = 0; i < NBUFM; i++)
		if (!w.bufm[i].refs) {
			m = &w.bufm[i];
			m->refs = 1;
			m->d = d;
			m->epoch = d->epoch;
			m->binding = d->binding;
			m->perm = m->wc = false;
			break;
		}
	UNLOCK();
	return m;
}

struct devstate {
	bool mem, d0;
};

/* The user's view of the device state; false when it cannot be read. */
static bool read_state(struct fdev *d, struct devstate *st)
{
	uint16_t cmd, pmcsr = 0;

	if (vfio_config_read(d->h.device, PCI_COMMAND, &cmd, 2))
		return false;
	if (d->pm >= 0 && vfio_config_read(d->h.device, d->pm + PCI_PM_CTRL, &pmcsr, 2))
		return false;
	st->mem = cmd & PCI_COMMAND_MEMORY;
	st->d0 = (pmcsr & PCI_PM_CTRL_STATE_MASK) == 0;
	return true;
}

struct event {
	struct fdev *d;
	bool wild;
	unsigned int wild_gen;
	bool overlapped;	/* a wild event was in flight when it began */
};

static struct event ev_begin(struct fdev *d, bool wild)
{
	struct event e = { d, wild, 0, false };

	if (!wild)
		pthread_mutex_lock(&d->evlock);
	LOCK();
	d->inflight++;
	d->gen++;
	if (wild) {
		d->wild++;
		d->wild_gen++;
	}
	e.wild_gen = d->wild_gen;
	e.overlapped = !wild && d->wild;
	UNLOCK();
	return e;
}

/*
 * Ends an event; a serialized one reads the state back.  The read counts
 * only if no wild event ran at any time since the event began: one in
 * flight at its start may finish between the read and the check below
 * (a wild command write read as memory on, then turning it off), and a
 * wild reset's settle may come after this event's command write.
 */
static void ev_end(struct event e, void (*update)(struct fdev *d, long arg), long arg)
{
	struct fdev *d = e.d;
	struct devstate st;
	bool known = !e.wild && read_state(d, &st);

	LOCK();
	if (update)
		update(d, arg);
	d->inflight--;
	d->gen++;
	if (e.wild) {
		d->wild--;
		d->unknown = true;
	} else if (known && !e.overlapped && !d->wild && d->wild_gen == e.wild_gen) {
		d->mem = st.mem;
		d->d0 = st.d0;
		d->unknown = false;
	} else {
		d->unknown = true;
		d->deferred |= e.overlapped;
	}
	UNLOCK();
	if (!e.wild)
		pthread_mutex_unlock(&d->evlock);
}

/* --- Helpers ------------------------------------------------------------ */

static struct fdev *pick_dev(struct thread *t)
{
	return &w.dev[below(t, w.ndev)];
}

/* Offset in the BAR of byte @off of buffer @m. */
static uint64_t buf_to_bar(struct bufm *m, uint64_t off)
{
	for (int i = 0; i < m->nr; i++) {
		if (off < m->r[i].length)
			return m->r[i].offset + off;
		off -= m->r[i].length;
	}
	return ~0ull;
}

/* Offset in buffer @m of byte @bar_off of the BAR (its first alias). */
static uint64_t bar_to_buf(struct bufm *m, uint64_t bar_off)
{
	uint64_t pos = 0;

	for (int i = 0; i < m->nr; i++) {
		if (bar_off >= m->r[i].offset && bar_off < m->r[i].offset + m->r[i].length)
			return pos + bar_off - m->r[i].offset;
		pos += m->r[i].length;
	}
	return ~0ull;
}

static bool in_wc_zone(struct fdev *d, uint64_t bar_off)
{
	return d->data && bar_off >= WC_FIRST * PAGE && bar_off < WC_END * PAGE;
}

static int scratch_page(struct thread *t)
{
	return 8 + t->id;	/* pages 8..23: one per thread */
}

static int ioctl_err(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

static const char *acc_name(int acc)
{
	return acc == YES ? "accessible" : acc == NO ? "revoked" : "either";
}

/* A random buffer slot, read-locked with a live fd, or NULL. */
static struct bufslot *grab_buf(struct thread *t)
{
	struct bufslot *b = &w.buf[below(t, NBUF)];

	pthread_rwlock_rdlock(&b->rw);
	if (b->fd >= 0)
		return b;
	pthread_rwlock_unlock(&b->rw);
	return NULL;
}

static void drop_buf(struct bufslot *b)
{
	pthread_rwlock_unlock(&b->rw);
}

/* --- Exports ----------------------------------------------------------- */

struct export_req {
	struct vfio_device_feature hdr;
	struct vfio_device_feature_dma_buf get;
	struct vfio_region_dma_range r[MAXR];
};

/* Plausible ranges inside the device's window, the huge area or the end. */
static int random_ranges(struct thread *t, struct fdev *d, struct vfio_region_dma_range *r)
{
	int nr = chance(t, 70) ? 1 + below(t, 3) : 1 + below(t, MAXR);

	/* One aligned huge range: PMD (2 MiB) and PUD (1 GiB) faults. */
	if (d->data && chance(t, 12)) {
		bool pud = d->bar_size >= 2 * GIGA && chance(t, 25);

		r[0].offset = pud ? GIGA : HUGE_OFF * (1 + below(t, 2));
		r[0].length = pud ? GIGA : HUGE_OFF;
		return 1;
	}
	for (int i = 0; i < nr; i++) {
		uint64_t pages = 1 + below(t, 8), first;

		if (d->window < pages)
			pages = d->window;
		first = below(t, d->window - pages + 1);
		if (d->data && chance(t, 5)) {
			r[i].offset = HUGE_OFF * (1 + below(t, 2));
			r[i].length = HUGE_OFF;
			continue;
		}
		if (d->data && chance(t, 1) && d->bar_size >= 2 * GIGA) {
			r[i].offset = GIGA;
			r[i].length = GIGA;
			continue;
		}
		if (d->data && chance(t, 3))
			first = d->bar_size / PAGE - pages;
		if (d->data && chance(t, 10) && nr == 1) {
			/* Inside the write-combining zone. */
			pages = 1 + below(t, 4);
			first = WC_FIRST + below(t, WC_END - WC_FIRST - pages);
		}
		r[i].offset = first * PAGE;
		r[i].length = pages * PAGE;
	}
	return nr;
}

/* Puts @fd (of buffer @m, a new reference) into a free slot, or closes it. */
static void store_buf(struct thread *t, int fd, struct bufm *m)
{
	for (int tries = 0; tries < NBUF; tries++) {
		struct bufslot *b = &w.buf[below(t, NBUF)];

		if (pthread_rwlock_trywrlock(&b->rw))
			continue;
		if (b->fd < 0) {
			b->fd = fd;
			b->m = m;
			pthread_rwlock_unlock(&b->rw);
			return;
		}
		pthread_rwlock_unlock(&b->rw);
	}
	close(fd);
	bufm_put(m);
}

static void op_export(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct export_req req = {};
	struct bufm *m;
	uint32_t oflags;
	int fd, acc;
	struct stat st;

	m = bufm_new(d);
	if (!m)
		return;
	m->nr = random_ranges(t, d, m->r);
	m->size = 0;
	for (int i = 0; i < m->nr; i++)
		m->size += m->r[i].length;
	oflags = chance(t, 80) ? O_RDWR : chance(t, 50) ? O_RDONLY : O_WRONLY;
	if (chance(t, 50))
		oflags |= O_CLOEXEC;
	if (chance(t, 10))
		oflags |= O_NONBLOCK;
	m->accmode = oflags & O_ACCMODE;
	req.hdr.argsz = sizeof(req.hdr) + sizeof(req.get) + m->nr * sizeof(req.r[0]);
	req.hdr.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req.get.region_index = d->bar;
	req.get.open_flags = oflags;
	req.get.nr_ranges = m->nr;
	memcpy(req.r, m->r, m->nr * sizeof(req.r[0]));
	note(t, "export %s bar%d ranges=%d [0]=%#llx+%#llx size=%#llx oflags=%#x", d->role,
	     d->bar, m->nr, (unsigned long long)m->r[0].offset,
	     (unsigned long long)m->r[0].length, (unsigned long long)m->size, oflags);
	pthread_rwlock_rdlock(&d->fdlock);
	LOCK();
	m->epoch = d->epoch;
	m->binding = d->binding;
	UNLOCK();
	fd = ioctl(d->h.device, VFIO_DEVICE_FEATURE, &req);
	acc = fd < 0 ? -errno : 0;
	pthread_rwlock_unlock(&d->fdlock);
	done(t, "%d", fd < 0 ? acc : fd);
	if (fd < 0) {
		bufm_put(m);
		disagree(t, "a valid export failed: %s", strerror(-acc));
		return;
	}
	if (!!(fcntl(fd, F_GETFD) & FD_CLOEXEC) != !!(oflags & O_CLOEXEC))
		disagree(t, "FD_CLOEXEC of the dma-buf fd is not as asked");
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != m->size)
		disagree(t, "the dma-buf's size is %lld, not %llu", (long long)st.st_size,
			 (unsigned long long)m->size);
	store_buf(t, fd, m);
}

/* An export with one thing (or several) wrong: it must fail as documented. */
static void op_export_bad(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	static const uint32_t regions[] = { 0, 1, 2, 3, 4, 5, 6, 7, 9, 0xffffffff };
	size_t big = 2 * PAGE;
	uint8_t *area;
	struct export_req *req;
	int kind = below(t, 10), nr, expect = -EINVAL, alt = 0, ret;

	area = mmap(NULL, big + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return;
	mprotect(area + big, PAGE, PROT_NONE);
	req = (struct export_req *)(area + big - sizeof(*req));
	memset(req, 0, sizeof(*req));
	nr = random_ranges(t, d, req->r);
	req->hdr.argsz = sizeof(req->hdr) + sizeof(req->get) + nr * sizeof(req->r[0]);
	req->hdr.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req->get.region_index = d->bar;
	req->get.open_flags = O_RDWR;
	req->get.nr_ranges = nr;
	switch (kind) {
	case 0:		/* argsz short of the dma-buf header */
		req->hdr.argsz = sizeof(req->hdr) + below(t, sizeof(req->get));
		break;
	case 1:		/* SET, or GET|SET */
		req->hdr.flags |= VFIO_DEVICE_FEATURE_SET;
		if (chance(t, 50))
			req->hdr.flags &= ~VFIO_DEVICE_FEATURE_GET;
		break;
	case 2:		/* flags, or no ranges */
		if (chance(t, 50))
			req->get.flags = 1u << below(t, 32);
		else
			req->get.nr_ranges = 0;
		break;
	case 3:		/* another region */
		req->get.region_index = regions[below(t, ARRAY_SIZE(regions))];
		/* A BAR the device has might be exportable: none of those. */
		if (req->get.region_index < 6) {
			uint64_t size = 0;

			sysfs_bar_size(d->bdf, req->get.region_index, &size);
			if (size)
				req->get.region_index = 6;
		}
		expect = -ENODEV;
		break;
	case 4:		/* an unaligned or empty range */
		req->r[below(t, nr)].length = chance(t, 30) ? 0 : req->r[0].length + 1 + below(t, 4095);
		if (chance(t, 50))
			req->r[below(t, nr)].offset += 1 + below(t, 4095);
		break;
	case 5:		/* past the BAR end */
		req->r[nr - 1].offset = d->bar_size - (chance(t, 50) ? 0 : PAGE);
		req->r[nr - 1].length = 2 * PAGE;
		alt = -EOVERFLOW;
		break;
	case 6:		/* lengths that overflow, or set bit 63 */
		req->r[0].length = chance(t, 50) ? 0x8000000000000000ull : ~0ull - 4095;
		if (nr == 1) {
			req->r[1] = req->r[0];
			req->get.nr_ranges = 2;
			req->hdr.argsz += sizeof(req->r[0]);
		}
		alt = -EOVERFLOW;
		break;
	case 7:		/* an offset that overflows the BAR's start */
		req->r[0].offset = ~0ull - 4095 - below(t, 4) * PAGE;
		alt = -EOVERFLOW;
		break;
	case 8:		/* ranges past readable memory */
		req->get.nr_ranges = MAXR + 1 + below(t, 3000);
		expect = -EFAULT;
		break;
	default:	/* more ranges than memory allows */
		req->get.nr_ranges = 0x10000000u + below(t, 0x70000000u);
		expect = -ENOMEM;
		alt = -EFAULT;
		break;
	}
	note(t, "export_bad kind=%d %s region=%u nr=%u argsz=%u flags=%#x r0=%#llx+%#llx", kind,
	     d->role, req->get.region_index, req->get.nr_ranges, req->hdr.argsz, req->hdr.flags,
	     (unsigned long long)req->r[0].offset, (unsigned long long)req->r[0].length);
	pthread_rwlock_rdlock(&d->fdlock);
	ret = ioctl(d->h.device, VFIO_DEVICE_FEATURE, req);
	if (ret < 0)
		ret = -errno;
	pthread_rwlock_unlock(&d->fdlock);
	done(t, "%d", ret);
	if (ret >= 0) {
		close(ret);
		disagree(t, "a bad export (kind %d) succeeded", kind);
	} else if (ret != expect && ret != alt) {
		disagree(t, "a bad export (kind %d) failed with %s, not %s", kind,
			 strerror(-ret), strerror(-expect));
	}
	munmap(area, big + PAGE);
}

static void op_close_buf(struct thread *t)
{
	struct bufslot *b = &w.buf[below(t, NBUF)];

	pthread_rwlock_wrlock(&b->rw);
	if (b->fd >= 0) {
		note(t, "close dma-buf fd %d", b->fd);
		if (close(b->fd))
			disagree(t, "close: %s", strerror(errno));
		done(t, "0");
		bufm_put(b->m);
		b->fd = -1;
		b->m = NULL;
	}
	pthread_rwlock_unlock(&b->rw);
}

static void op_dup_buf(struct thread *t)
{
	struct bufslot *b = grab_buf(t);
	int fd;

	if (!b)
		return;
	note(t, "dup dma-buf fd %d", b->fd);
	fd = chance(t, 50) ? dup(b->fd) : fcntl(b->fd, F_DUPFD_CLOEXEC, 3);
	done(t, "%d", fd);
	if (fd < 0) {
		disagree(t, "dup: %s", strerror(errno));
	} else {
		bufm_get(b->m);
		store_buf(t, fd, b->m);
	}
	drop_buf(b);
}

/* An O_PATH descriptor of /proc/self/fd/N: it holds the dma-buf's dentry. */
static void op_opath(struct thread *t)
{
	struct opath *o = &w.opath[below(t, NOPATH)];
	struct bufslot *b;
	char path[64];

	pthread_mutex_lock(&o->lock);
	b = o->fd < 0 ? grab_buf(t) : NULL;
	if (o->fd >= 0) {
		note(t, "close O_PATH holder %d", o->fd);
		close(o->fd);
		done(t, "0");
		bufm_put(o->m);
		o->fd = -1;
	} else if (b) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", b->fd);
		note(t, "O_PATH holder of fd %d", b->fd);
		o->fd = open(path, O_PATH | O_CLOEXEC);
		done(t, "%d", o->fd);
		if (o->fd < 0) {
			disagree(t, "open O_PATH: %s", strerror(errno));
		} else {
			o->m = b->m;
			bufm_get(o->m);
		}
		drop_buf(b);
	}
	pthread_mutex_unlock(&o->lock);
}

/* --- Device features ------------------------------------------------------ */

static void op_feature(struct thread *t)
{
	static const uint32_t ids[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
					0xdb00, 0xdb01, 0xdb02, 0xffff };
	struct fdev *d = pick_dev(t);
	struct {
		struct vfio_device_feature hdr;
		uint8_t data[64];
	} req = {};
	uint32_t id = ids[below(t, ARRAY_SIZE(ids))], ops = 0;
	bool probe = chance(t, 60), known_flags = true;
	int ret, expect = 1;	/* 1: any result */

	if (chance(t, 50))
		ops |= VFIO_DEVICE_FEATURE_GET;
	if (chance(t, 50))
		ops |= VFIO_DEVICE_FEATURE_SET;
	/* Low power is an event: op_low_power's. */
	if (id >= 3 && id <= 5)
		probe = true;
	req.hdr.flags = id | ops | (probe ? VFIO_DEVICE_FEATURE_PROBE : 0);
	if (chance(t, 5)) {
		req.hdr.flags |= 1u << (19 + below(t, 13));
		known_flags = false;
	}
	req.hdr.argsz = sizeof(req.hdr) + 8 * below(t, 9);
	if (chance(t, 5))
		req.hdr.argsz = below(t, sizeof(req.hdr));
	/* What each feature supports, as PROBE must answer it. */
	switch (id) {
	case 0:
		break;
	case 3:
	case 4:
	case 5:
	case 11:
		if (probe)
			expect = ops & ((id == 11 ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET)) ?
				 -EINVAL : 0;
		break;
	case 0xdb00:
	case 0xdb01:
		if (w.ours && probe)
			expect = id == 0xdb00 && (ops & VFIO_DEVICE_FEATURE_GET) ? -EINVAL : 0;
		if (!w.ours)
			expect = -ENOTTY;
		break;
	case 14:
	case 0xdb02:
	case 0xffff:
		expect = -ENOTTY;
		break;
	default:
		break;	/* migration, logging, ZPCI, VF token: not predicted */
	}
	if (!probe && (ops == (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
		expect = -EINVAL;
	if (!known_flags || req.hdr.argsz < sizeof(req.hdr))
		expect = -EINVAL;
	note(t, "feature %s flags=%#x argsz=%u", d->role, req.hdr.flags, req.hdr.argsz);
	pthread_rwlock_rdlock(&d->fdlock);
	ret = ioctl_err(d->h.device, VFIO_DEVICE_FEATURE, &req);
	pthread_rwlock_unlock(&d->fdlock);
	done(t, "%d", ret);
	if (ret > 0)
		close(ret);
	if (expect != 1 && ret != expect)
		disagree(t, "feature %#x: %d, expected %d", req.hdr.flags, ret, expect);
	if (!probe && ret >= 0 && (id == 11 || id == 0xdb00))
		disagree(t, "feature %#x with an empty payload succeeded", req.hdr.flags);
}

/* The REVOKE or MEMATTR request on @fd through device @d (fdlock held). */
static int buf_feature(struct fdev *d, uint32_t id, uint32_t op, int fd, uint32_t *attr)
{
	struct {
		struct vfio_device_feature hdr;
		struct dmabuf_vfio_pci_memattr m;
	} req = {
		.hdr = { .argsz = sizeof(req), .flags = op | id },
		.m = { .dmabuf_fd = fd, .memattr = attr ? *attr : 0 },
	};
	int ret = ioctl_err(d->h.device, VFIO_DEVICE_FEATURE, &req);

	if (attr && !ret && op == VFIO_DEVICE_FEATURE_GET)
		*attr = req.m.memattr;
	return ret;
}

/* An fd that is no dma-buf of @d: closed, not a dma-buf, an O_PATH. */
static int other_fd(struct thread *t, int *expect, int *tmp)
{
	*tmp = -1;
	switch (below(t, 3)) {
	case 0:
		*expect = -EBADF;
		return CLOSED_FD;
	case 1:
		*expect = -EINVAL;
		*tmp = eventfd(0, EFD_CLOEXEC);
		return *tmp;
	default:
		*expect = -EBADF;
		*tmp = open("/dev/null", O_PATH | O_CLOEXEC);
		return *tmp;
	}
}

static void op_revoke(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct bufslot *b;
	int ret, expect, tmp;
	struct event e;
	bool dead;

	if (!w.ours || chance(t, 25)) {
		int fd = other_fd(t, &expect, &tmp);

		if (!w.ours)
			expect = -ENOTTY;
		note(t, "revoke %s of a non-dma-buf fd %d", d->role, fd);
		pthread_rwlock_rdlock(&d->fdlock);
		ret = buf_feature(d, DMABUF_VFIO_PCI_FEATURE_REVOKE, VFIO_DEVICE_FEATURE_SET, fd, NULL);
		pthread_rwlock_unlock(&d->fdlock);
		done(t, "%d", ret);
		if (tmp >= 0)
			close(tmp);
		if (ret != expect)
			disagree(t, "expected %d", expect);
		return;
	}
	b = grab_buf(t);
	if (!b)
		return;
	note(t, "revoke %s fd %d (of %s)", d->role, b->fd, b->m->d->role);
	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(b->m->d, false);
	/* A MEMATTR judges on the model's view of the buffer: not meanwhile. */
	pthread_mutex_lock(&b->m->lock);
	LOCK();
	dead = buf_dead_locked(b->m);
	if (b->m->d != d || b->m->binding != d->binding)
		expect = -ENODEV;
	else
		expect = dead ? -EBADFD : 0;
	UNLOCK();
	ret = buf_feature(d, DMABUF_VFIO_PCI_FEATURE_REVOKE, VFIO_DEVICE_FEATURE_SET, b->fd, NULL);
	done(t, "%d", ret);
	if (ret != expect)
		disagree(t, "expected %d", expect);
	if (!ret) {
		LOCK();
		b->m->perm = true;
		UNLOCK();
	}
	pthread_mutex_unlock(&b->m->lock);
	ev_end(e, NULL, 0);
	pthread_rwlock_unlock(&d->fdlock);
	drop_buf(b);
}

static void op_memattr(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct bufslot *b;
	uint32_t attr, want;
	int ret, expect, tmp;
	bool set = chance(t, 60), in_zone = true, foreign, live;

	if (!w.ours || chance(t, 15)) {
		int fd = other_fd(t, &expect, &tmp);

		attr = 0;
		if (!w.ours)
			expect = -ENOTTY;
		note(t, "memattr %s of a non-dma-buf fd %d", d->role, fd);
		pthread_rwlock_rdlock(&d->fdlock);
		ret = buf_feature(d, DMABUF_VFIO_PCI_FEATURE_MEMATTR,
				  set ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET, fd, &attr);
		pthread_rwlock_unlock(&d->fdlock);
		done(t, "%d", ret);
		if (tmp >= 0)
			close(tmp);
		if (ret != expect)
			disagree(t, "expected %d", expect);
		return;
	}
	b = grab_buf(t);
	if (!b)
		return;
	pthread_rwlock_rdlock(&d->fdlock);
	pthread_mutex_lock(&b->m->lock);
	for (int i = 0; i < b->m->nr; i++)
		if (!in_wc_zone(b->m->d, b->m->r[i].offset) ||
		    !in_wc_zone(b->m->d, b->m->r[i].offset + b->m->r[i].length - 1))
			in_zone = false;
	/* Write-combining only where the model allows for it. */
	want = set && in_zone && chance(t, 70) ? DMABUF_VFIO_PCI_MEMATTR_WC :
	       chance(t, 95) ? DMABUF_VFIO_PCI_MEMATTR_UNCACHED : 2 + below(t, 100);
	attr = want;
	LOCK();
	foreign = b->m->d != d || b->m->binding != d->binding;
	live = !buf_dead_locked(b->m);
	UNLOCK();
	note(t, "memattr %s %s fd %d attr=%u (of %s)", set ? "set" : "get", d->role, b->fd, want,
	     b->m->d->role);
	ret = buf_feature(d, DMABUF_VFIO_PCI_FEATURE_MEMATTR,
			  set ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET, b->fd, &attr);
	done(t, "%d attr=%u", ret, attr);
	if (foreign) {
		if (ret != -ENODEV)
			disagree(t, "memattr of another device's buffer: %d", ret);
	} else if (!set) {
		if (ret || attr != (b->m->wc ? 1u : 0u))
			disagree(t, "memattr get: %d %u, the model says %d", ret, attr, b->m->wc);
	} else if (want > 1) {
		if (ret != -ENOENT)
			disagree(t, "memattr %u: %d, not ENOENT", want, ret);
	} else if (ret && ret != -EBUSY && ret != -ENODEV && ret != -EOPNOTSUPP) {
		disagree(t, "memattr set %u: %d", want, ret);
	} else if (ret == -ENODEV && live) {
		disagree(t, "memattr set on a live buffer: ENODEV");
	} else if (!ret) {
		b->m->wc = want == DMABUF_VFIO_PCI_MEMATTR_WC;
	}
	pthread_mutex_unlock(&b->m->lock);
	pthread_rwlock_unlock(&d->fdlock);
	drop_buf(b);
}

/* --- CPU mappings -------------------------------------------------------- */

/* A free mapping slot, write-locked, or NULL. */
static struct mapslot *free_map(struct thread *t)
{
	for (int tries = 0; tries < 4; tries++) {
		struct mapslot *s = &w.map[below(t, NMAP)];

		if (pthread_rwlock_trywrlock(&s->rw))
			continue;
		if (!s->addr)
			return s;
		pthread_rwlock_unlock(&s->rw);
	}
	return NULL;
}

/* Whether touching @bar_off through @s must not fault (YES), must (NO). */
static int touch_rule(struct mapslot *s, uint64_t bar_off, int acc)
{
	if (acc == YES && s->m && !s->wc && in_wc_zone(s->d, bar_off))
		return MAYBE;	/* another buffer may hold it write-combining */
	return acc;
}

/*
 * Maps @len bytes of @fd at an address aligned to @align (a PMD or PUD
 * fault needs it), inside a reservation no other thread can take.
 */
static void *mmap_aligned(size_t len, int prot, int flags, int fd, off_t off, size_t align)
{
	uint8_t *r, *a;
	void *p;

	if (align <= PAGE)
		return mmap(NULL, len, prot, flags, fd, off);
	r = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return r;
	a = (uint8_t *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
	p = mmap(a, len, prot, flags | MAP_FIXED, fd, off);
	if (a > r)
		munmap(r, a - r);
	munmap(a + len, r + len + align - (a + len));
	if (p == MAP_FAILED) {
		int err = errno;

		/*
		 * A MAP_FIXED mmap the exporter refused may have left a hole
		 * where the reservation was, which another thread's mmap may
		 * have taken since: unmap the range only if it is still ours
		 * or free, never what is there now.
		 */
		if (mmap(a, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
			 MAP_FIXED_NOREPLACE, -1, 0) == a)
			munmap(a, len);
		errno = err;
	}
	return p;
}

static void op_mmap(struct thread *t)
{
	struct bufslot *b = grab_buf(t);
	struct mapslot *s;
	uint64_t pages, off, len;
	int prot, flags = MAP_SHARED, core_err = 0, drv_err = 0, acc;
	struct obs o;
	void *p;

	if (!b)
		return;
	s = free_map(t);
	if (!s) {
		drop_buf(b);
		return;
	}
	pages = b->m->size / PAGE;
	off = below(t, pages);
	len = 1 + below(t, pages - off);
	if (b->m->size >= HUGE_OFF && chance(t, 50)) {
		off = 0;
		len = pages;
	}
	prot = PROT_READ | (chance(t, 85) ? PROT_WRITE : 0);
	if (chance(t, 4)) {
		flags = MAP_PRIVATE;
		drv_err = -EINVAL;
	} else if (chance(t, 4)) {
		len = pages - off + 1 + below(t, 4);
		drv_err = -EINVAL;
	}
	/* The core's checks of the file's mode come before the driver's. */
	if (b->m->accmode == O_WRONLY ||
	    (b->m->accmode == O_RDONLY && flags == MAP_SHARED && (prot & PROT_WRITE)))
		core_err = -EACCES;
	note(t, "mmap fd %d off=%llu pages=%llu prot=%d%s (of %s)", b->fd,
	     (unsigned long long)off, (unsigned long long)len, prot,
	     flags == MAP_PRIVATE ? " private" : "", b->m->d->role);
	pthread_mutex_lock(&b->m->lock);
	o = observe(b->m, NULL);
	p = mmap_aligned(len * PAGE, prot, flags, b->fd, off * PAGE,
			 len * PAGE >= GIGA ? GIGA : len * PAGE >= HUGE_OFF ? HUGE_OFF : PAGE);
	acc = settled(b->m, NULL, o);
	done(t, "%s", p == MAP_FAILED ? strerror(errno) : "mapped");
	if (!w.ours) {
		/* vfio-pci's dma-bufs have no mmap. */
		if (p != MAP_FAILED)
			disagree(t, "vfio-pci's dma-buf was mapped");
		goto out;
	}
	if (p == MAP_FAILED) {
		int err = -errno;

		if (core_err ? err == core_err :
		    (err == -ENODEV && acc != YES) || (drv_err && err == drv_err))
			goto out;
		if (disagree(t, "mmap failed with %s; the buffer %s", strerror(-err),
			     acc_name(acc)))
			print_kernel_view(b->m->d);
		goto out;
	}
	if (core_err || drv_err || acc == NO) {
		disagree(t, "mmap succeeded, expected %d, the buffer %s", core_err ? core_err : drv_err,
			 acc_name(acc));
		munmap(p, len * PAGE);
		goto out;
	}
	s->addr = p;
	s->len = len * PAGE;
	s->off = off * PAGE;
	s->writable = prot & PROT_WRITE;
	s->wc = b->m->wc;
	s->m = b->m;
	s->d = b->m->d;
	bufm_get(b->m);
	/* A huge mapping is touched at once: PMD and PUD faults. */
	if (s->len >= HUGE_OFF) {
		uint64_t v;
		int ret, rule;

		ret = access8((volatile uint64_t *)(s->addr + s->len / 2), false, 0, &v);
		rule = touch_rule(s, buf_to_bar(s->m, s->off + s->len / 2), settled(b->m, NULL, o));
		if (ret)
			__atomic_add_fetch(&w.sigbus, 1, __ATOMIC_RELAXED);
		if ((ret && rule == YES) || (!ret && rule == NO))
			disagree(t, "touch of the new huge mapping: %s, the buffer %s",
				 ret ? "SIGBUS" : "read", acc_name(rule));
	}
out:
	pthread_mutex_unlock(&b->m->lock);
	pthread_rwlock_unlock(&s->rw);
	drop_buf(b);
}

/* The device fd's own mapping of the BAR (vfio-pci-core's). */
static void op_devmap(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct mapslot *s;
	uint64_t off, len;
	void *p;

	pthread_rwlock_rdlock(&d->fdlock);
	s = free_map(t);
	if (!s) {
		pthread_rwlock_unlock(&d->fdlock);
		return;
	}
	off = below(t, d->window) * PAGE;
	len = (1 + below(t, 16)) * PAGE;
	if (off + len > d->window * PAGE)
		len = d->window * PAGE - off;
	note(t, "mmap %s device fd BAR%d off=%#llx len=%#llx", d->role, d->bar,
	     (unsigned long long)off, (unsigned long long)len);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, d->h.device, d->bar_region + off);
	done(t, "%s", p == MAP_FAILED ? strerror(errno) : "mapped");
	if (p == MAP_FAILED) {
		disagree(t, "mmap of the device fd: %s", strerror(errno));
	} else {
		s->addr = p;
		s->len = len;
		s->off = off;
		s->writable = true;
		s->wc = false;
		s->m = NULL;
		s->d = d;
	}
	pthread_rwlock_unlock(&s->rw);
	pthread_rwlock_unlock(&d->fdlock);
}

static void unmap_slot(struct mapslot *s)
{
	munmap(s->addr, s->len);
	if (s->m)
		bufm_put(s->m);
	s->addr = NULL;
	s->m = NULL;
}

static struct mapslot *grab_map_w(struct thread *t)
{
	struct mapslot *s = &w.map[below(t, NMAP)];

	pthread_rwlock_wrlock(&s->rw);
	if (s->addr)
		return s;
	pthread_rwlock_unlock(&s->rw);
	return NULL;
}

static void op_munmap(struct thread *t)
{
	struct mapslot *s = grab_map_w(t);

	if (!s)
		return;
	note(t, "munmap %p+%#zx", s->addr, s->len);
	unmap_slot(s);
	done(t, "0");
	pthread_rwlock_unlock(&s->rw);
}

/* mremap: moving or shrinking works, growing must not (VM_DONTEXPAND). */
static void op_mremap(struct thread *t)
{
	struct mapslot *s = grab_map_w(t);
	size_t len;
	void *p;
	int how;

	if (!s)
		return;
	how = below(t, 3);
	len = how == 0 ? s->len + PAGE : how == 1 && s->len > PAGE ? s->len - PAGE : s->len;
	note(t, "mremap %p+%#zx to %#zx%s", s->addr, s->len, len, how == 2 ? " moved" : "");
	if (how == 2) {
		void *to = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		p = to == MAP_FAILED ? MAP_FAILED :
		    mremap(s->addr, s->len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (p == MAP_FAILED && to != MAP_FAILED)
			munmap(to, len);
	} else {
		p = mremap(s->addr, s->len, len, how == 0 ? MREMAP_MAYMOVE : 0);
	}
	done(t, "%s", p == MAP_FAILED ? strerror(errno) : "ok");
	if (p != MAP_FAILED) {
		if (how == 0)
			disagree(t, "a mapping grew");
		s->addr = p;
		s->len = len;
	}
	pthread_rwlock_unlock(&s->rw);
}

static void op_mprotect(struct thread *t)
{
	struct mapslot *s = grab_map_w(t);
	bool rw = chance(t, 50), ro_buf;
	int ret;

	if (!s)
		return;
	ro_buf = s->m && s->m->accmode == O_RDONLY;
	note(t, "mprotect %p+%#zx %s", s->addr, s->len, rw ? "rw" : "r");
	ret = mprotect(s->addr, s->len, PROT_READ | (rw ? PROT_WRITE : 0)) ? -errno : 0;
	done(t, "%d", ret);
	if (!ret)
		s->writable = rw;
	if (ret && !(rw && ro_buf && ret == -EACCES))
		disagree(t, "mprotect: %s", strerror(-ret));
	else if (!ret && rw && ro_buf)
		disagree(t, "a read-only buffer's mapping became writable");
	pthread_rwlock_unlock(&s->rw);
}

static void op_madvise(struct thread *t)
{
	static const int advice[] = { MADV_DONTNEED, MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT,
				      MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_HUGEPAGE,
				      MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP,
				      MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_FREE };
	struct mapslot *s = grab_map_w(t);
	int a = advice[below(t, ARRAY_SIZE(advice))], ret;

	if (!s)
		return;
	note(t, "madvise %p+%#zx %d", s->addr, s->len, a);
	ret = madvise(s->addr, s->len, a);
	done(t, "%d", ret ? -errno : 0);
	if (!ret && (a == MADV_POPULATE_READ || a == MADV_POPULATE_WRITE))
		disagree(t, "MADV_POPULATE of a VM_IO mapping succeeded");
	pthread_rwlock_unlock(&s->rw);
}

/* Reads a page of a mapping; SIGBUS as the model says. */
static void op_touch(struct thread *t)
{
	struct mapslot *s = &w.map[below(t, NMAP)];
	uint64_t page, bar_off, v;
	char why[192];
	struct obs o;
	int ret, rule;

	pthread_rwlock_rdlock(&s->rw);
	if (!s->addr)
		goto out;
	page = below(t, s->len / PAGE);
	bar_off = s->m ? buf_to_bar(s->m, s->off + page * PAGE) : s->off + page * PAGE;
	note(t, "touch %p page %llu (bar %#llx of %s%s)", s->addr, (unsigned long long)page,
	     (unsigned long long)bar_off, s->d->role, s->m ? "" : ", device fd");
	o = observe(s->m, s->d);
	ret = access8((volatile uint64_t *)(s->addr + page * PAGE + 8 * below(t, 512)), false, 0, &v);
	rule = touch_rule(s, bar_off, settled(s->m, s->d, o));
	done(t, "%s", ret ? "SIGBUS" : "read");
	if (ret) {
		__atomic_add_fetch(&w.sigbus, 1, __ATOMIC_RELAXED);
		if (rule == YES && disagree(t, "SIGBUS on an accessible mapping (at gen %u; model now: %s)",
					    o.gen, model_str(s->m, s->d, why, sizeof(why))))
			print_kernel_view(s->d);
	} else if (rule == NO && disagree(t, "a revoked mapping was read (at gen %u; model now: %s)",
					  o.gen, model_str(s->m, s->d, why, sizeof(why)))) {
		print_kernel_view(s->d);
	}
out:
	pthread_rwlock_unlock(&s->rw);
}

/* The mapping slot (read-locked) covering the thread's scratch page. */
static struct mapslot *scratch_map(struct thread *t, struct fdev *d, uint8_t **at)
{
	uint64_t want = scratch_page(t) * PAGE;

	for (int tries = 0; tries < NMAP; tries++) {
		struct mapslot *s = &w.map[(tries + below(t, NMAP)) % NMAP];

		if (pthread_rwlock_tryrdlock(&s->rw))
			continue;
		if (s->addr && s->d == d) {
			uint64_t boff = s->m ? bar_to_buf(s->m, want) : want;

			if (boff != ~0ull && boff >= s->off && boff < s->off + s->len) {
				*at = s->addr + boff - s->off;
				return s;
			}
		}
		pthread_rwlock_unlock(&s->rw);
	}
	return NULL;
}

/* Writes the scratch page through one path, reads it back through another. */
static void op_data(struct thread *t)
{
	struct fdev *d = &w.dev[0];
	uint64_t pat = rnd(t), got = 0, where = scratch_page(t) * PAGE;
	struct mapslot *s = NULL;
	uint8_t *at = NULL;
	int ret, acc, how;
	struct obs o;

	if (!d->data)
		return;
	how = below(t, 2);
	if (how == 1)
		s = scratch_map(t, d, &at);
	if (s && !s->writable) {
		pthread_rwlock_unlock(&s->rw);
		s = NULL;
	}
	note(t, "data write %#llx via %s", (unsigned long long)pat,
	     s ? (s->m ? "dma-buf mapping" : "device fd mapping") : "device fd write");
	if (s) {
		o = observe(s->m, d);
		ret = access8((volatile uint64_t *)at, true, pat, NULL);
		acc = touch_rule(s, where, settled(s->m, d, o));
		pthread_rwlock_unlock(&s->rw);
	} else {
		pthread_rwlock_rdlock(&d->fdlock);
		o = observe(NULL, d);
		ret = pwrite(d->h.device, &pat, 8, d->bar_region + where) == 8 ? 0 : -1;
		acc = settled(NULL, d, o);
		pthread_rwlock_unlock(&d->fdlock);
	}
	done(t, "%s", ret ? "failed" : "written");
	if (ret && acc == YES)
		disagree(t, "a write to an accessible BAR failed");
	if (!ret && acc == NO && s)
		disagree(t, "a write through a revoked mapping went through");
	t->known = !ret && acc == YES;
	t->pattern = pat;
	if (!t->known)
		return;

	/* Read back: the device fd, a mapping, or the importer's DMA. */
	s = chance(t, 60) ? scratch_map(t, d, &at) : NULL;
	note(t, "data read back via %s", s ? "a mapping" : "device fd read");
	if (s) {
		o = observe(s->m, d);
		ret = access8((volatile uint64_t *)at, false, 0, &got);
		acc = touch_rule(s, where, settled(s->m, d, o));
		pthread_rwlock_unlock(&s->rw);
	} else {
		pthread_rwlock_rdlock(&d->fdlock);
		o = observe(NULL, d);
		ret = pread(d->h.device, &got, 8, d->bar_region + where) == 8 ? 0 : -1;
		acc = settled(NULL, d, o);
		pthread_rwlock_unlock(&d->fdlock);
	}
	done(t, "%s %#llx", ret ? "failed" : "read", (unsigned long long)got);
	if (acc == YES && (ret || got != pat))
		disagree(t, "read back %#llx (%d), wrote %#llx", (unsigned long long)got, ret,
			 (unsigned long long)pat);
}

/* read(), write(), process_vm_readv() and O_DIRECT into a mapping fail. */
static void op_no_gup(struct thread *t)
{
	struct bufslot *b = grab_buf(t);
	struct mapslot *s;
	uint8_t out[64];
	ssize_t n;

	if (b) {
		note(t, "read/write dma-buf fd %d", b->fd);
		n = chance(t, 50) ? read(b->fd, out, sizeof(out)) : write(b->fd, out, sizeof(out));
		done(t, "%zd", n < 0 ? -errno : n);
		if (n >= 0)
			disagree(t, "read()/write() of a dma-buf fd worked");
		drop_buf(b);
	}
	s = &w.map[below(t, NMAP)];
	pthread_rwlock_rdlock(&s->rw);
	if (s->addr) {
		struct iovec local = { out, sizeof(out) }, remote = { s->addr, sizeof(out) };

		note(t, "process_vm_readv %p", s->addr);
		n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		done(t, "%zd", n < 0 ? -errno : n);
		if (n >= 0)
			disagree(t, "process_vm_readv read a VM_IO mapping");
		if (w.loopfd >= 0 && s->writable) {
			int direct = open(w.loopdev, O_RDONLY | O_DIRECT | O_CLOEXEC);

			note(t, "O_DIRECT read into %p", s->addr);
			n = direct < 0 ? 0 : pread(direct, s->addr, PAGE, 0);
			done(t, "%zd", n < 0 ? -errno : n);
			if (direct >= 0 && n >= 0)
				disagree(t, "O_DIRECT read into a VM_IO mapping");
			if (direct >= 0)
				close(direct);
		}
	}
	pthread_rwlock_unlock(&s->rw);
}

/*
 * A child inherits a live mapping and touches it; it also receives a
 * dma-buf fd over a socket and maps and touches that (ours).
 */
static void op_fork(struct thread *t)
{
	struct mapslot *s = &w.map[below(t, NMAP)];
	struct bufslot *b;
	int sv[2] = { -1, -1 }, status, res, rule = MAYBE, rule2 = MAYBE;
	uint64_t page = 0, bar_off = 0;
	struct obs o = {}, o2 = {};
	pid_t child;

	pthread_rwlock_rdlock(&w.forklock);
	pthread_rwlock_rdlock(&s->rw);
	b = w.ours ? grab_buf(t) : NULL;
	if (b && b->m->accmode == O_WRONLY) {
		drop_buf(b);
		b = NULL;
	}
	if (b && socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv)) {
		drop_buf(b);
		b = NULL;
	}
	if (s->addr) {
		page = below(t, s->len / PAGE);
		bar_off = s->m ? buf_to_bar(s->m, s->off + page * PAGE) : s->off + page * PAGE;
		o = observe(s->m, s->d);
	}
	if (b)
		o2 = observe(b->m, NULL);
	note(t, "fork: child touches %p page %llu, gets fd %d", s->addr,
	     (unsigned long long)page, b ? b->fd : -1);
	child = fork();
	if (!child) {
		uint64_t v;
		int r = 0;

		bus_armed = 0;
		if (s->addr && access8((volatile uint64_t *)(s->addr + page * PAGE), false, 0, &v))
			r |= 1;
		if (sv[1] >= 0) {
			char c, cbuf[CMSG_SPACE(sizeof(int))];
			struct iovec iov = { &c, 1 };
			struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
					      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
			struct cmsghdr *cm;
			int fd = -1;
			void *p;

			if (recvmsg(sv[1], &msg, 0) == 1) {
				cm = CMSG_FIRSTHDR(&msg);
				if (cm)
					memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
			}
			if (fd < 0)
				_exit(16);
			p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED)
				r |= errno == ENODEV ? 2 : 8;
			else if (access8((volatile uint64_t *)p, false, 0, &v))
				r |= 4;
		}
		_exit(r);
	}
	if (child > 0 && b) {
		char c = 0, cbuf[CMSG_SPACE(sizeof(int))] = {};
		struct iovec iov = { &c, 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &b->fd, sizeof(int));
		sendmsg(sv[0], &msg, 0);
	}
	status = 0;
	if (child > 0)
		waitpid(child, &status, 0);
	__atomic_add_fetch(&w.children, 1, __ATOMIC_RELAXED);
	res = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
	if (s->addr)
		rule = touch_rule(s, bar_off, settled(s->m, s->d, o));
	if (b) {
		rule2 = settled(b->m, NULL, o2);
		if (rule2 == YES && in_wc_zone(b->m->d, buf_to_bar(b->m, 0)))
			rule2 = MAYBE;
	}
	done(t, "child %d", res);
	if (child < 0 || res >= 16)
		disagree(t, "the child ended with %d", res);
	else if ((rule == YES && (res & 1)) || (rule == NO && s->addr && !(res & 1)))
		disagree(t, "the child's touch of the inherited mapping: %d, the model: %s", res,
			 acc_name(rule));
	else if (b && ((rule2 == YES && (res & 14)) || (rule2 == NO && !(res & 2) && !(res & 4))))
		disagree(t, "the child's mapping of the passed fd: %d, the model: %s", res,
			 acc_name(rule2));
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	if (b)
		drop_buf(b);
	pthread_rwlock_unlock(&s->rw);
	pthread_rwlock_unlock(&w.forklock);
}

/* --- Events ---------------------------------------------------------------- */

static void op_config(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	static const int widths[] = { 1, 2, 4 };
	int width = widths[below(t, 3)], kind = below(t, 6), ret;
	uint32_t val = 0;
	uint64_t off;
	struct event e;

	pthread_rwlock_rdlock(&d->fdlock);
	switch (kind) {
	case 0:
	case 1:		/* the command register, memory on or off */
		off = PCI_COMMAND;
		vfio_config_read(d->h.device, off, &val, width);
		if (chance(t, 55))
			val |= PCI_COMMAND_MEMORY;
		else
			val &= ~PCI_COMMAND_MEMORY;
		break;
	case 2:		/* PMCSR: D3hot, or another state */
		if (d->pm < 0)
			goto random_reg;
		off = d->pm + PCI_PM_CTRL;
		width = chance(t, 70) ? 2 : 1;
		vfio_config_read(d->h.device, off, &val, width);
		val = (val & ~PCI_PM_CTRL_STATE_MASK) | (chance(t, 60) ? 3 : below(t, 4));
		break;
	case 3:		/* DEVCTL, initiating an FLR or not */
		if (d->pcie < 0)
			goto random_reg;
		off = d->pcie + PCI_EXP_DEVCTL;
		width = 2;
		vfio_config_read(d->h.device, off, &val, width);
		if (chance(t, 60))
			val |= PCI_EXP_DEVCTL_BCR_FLR;
		break;
	case 4:		/* AF control */
		if (d->af < 0)
			goto random_reg;
		off = d->af + PCI_AF_CTRL;
		width = 1;
		val = chance(t, 60) ? PCI_AF_CTRL_FLR : 0;
		break;
	default:
random_reg:
		kind = 5;
		off = below(t, 0x40 + 1 - width);
		val = rnd(t);
		break;
	}
	e = ev_begin(d, chance(t, 20));
	note(t, "config write %s off=%#llx width=%d val=%#x%s", d->role, (unsigned long long)off,
	     width, val, e.wild ? " (wild)" : "");
	ret = pwrite(d->h.device, &val, width, d->cfg_region + off);
	done(t, "%d", ret < 0 ? -errno : ret);
	if (ret != width && kind < 5 && !e.wild)
		disagree(t, "config write: %d (%s)", ret, strerror(errno));
	ev_end(e, NULL, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

static void no_lp(struct fdev *d, long arg)
{
	(void)arg;
	d->lp = false;
	d->lp_maybe = false;
	d->deferred = false;	/* the command write settled the buffers */
}

/* Memory on, D0 and out of low power: brings the buffers back. */
static void op_mem_on(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
	};
	uint16_t pmcsr;
	struct event e;
	int ret = 0;

	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, false);
	note(t, "restore %s: low power exit, D0, memory on", d->role);
	if (ioctl(d->h.device, VFIO_DEVICE_FEATURE, &f))
		ret = -1;
	if (d->pm >= 0 && !vfio_config_read(d->h.device, d->pm + PCI_PM_CTRL, &pmcsr, 2) &&
	    (pmcsr & PCI_PM_CTRL_STATE_MASK)) {
		pmcsr &= ~PCI_PM_CTRL_STATE_MASK;
		if (vfio_config_write(d->h.device, d->pm + PCI_PM_CTRL, &pmcsr, 2))
			ret = -2;
	}
	if (set_memory_enable(d->h.device, 1))
		ret = -3;
	done(t, "%d", ret);
	if (ret)
		disagree(t, "restoring the device failed (%d)", ret);
	ev_end(e, ret == -1 ? NULL : no_lp, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

static void op_reset(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct event e;
	int ret;

	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, chance(t, 20));
	note(t, "VFIO_DEVICE_RESET %s%s", d->role, e.wild ? " (wild)" : "");
	ret = ioctl_err(d->h.device, VFIO_DEVICE_RESET, NULL);
	done(t, "%d", ret);
	/* EAGAIN: the device lock was busy (a racing reset). */
	if (!d->reset_works ? ret != -EINVAL : ret && ret != -EAGAIN && ret != -EBUSY)
		disagree(t, "VFIO_DEVICE_RESET: %s", strerror(-ret));
	ev_end(e, NULL, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

static void op_hot_reset(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct event e;
	int ret;

	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, chance(t, 20));
	note(t, "hot reset %s%s", d->role, e.wild ? " (wild)" : "");
	ret = vfio_hot_reset(&d->h);
	done(t, "%d", ret);
	/* EBUSY: a fault or another reset held a memory_lock (documented). */
	if (ret && ret != -EBUSY && ret != -EAGAIN)
		disagree(t, "hot reset: %s", strerror(-ret));
	ev_end(e, NULL, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

static void lp_update(struct fdev *d, long arg)
{
	if (arg == 1) {			/* entered */
		d->lp = true;
		d->lp_maybe = false;
	} else if (arg == 2) {		/* entered, a resume may end it */
		d->lp = true;
		d->lp_maybe = true;
	} else if (arg == 3) {		/* exited */
		d->lp = d->lp_maybe = false;
	}
}

static void op_low_power(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_low_power_entry_with_wakeup wake;
	} req = { .hdr = { .argsz = sizeof(req.hdr) } };
	int kind = below(t, 3), efd = -1, ret, in;
	struct event e;

	if (kind == 1) {
		efd = eventfd(0, EFD_CLOEXEC);
		req.wake.wakeup_eventfd = chance(t, 10) ? -1 : efd;
		req.hdr.argsz = sizeof(req);
	}
	req.hdr.flags = VFIO_DEVICE_FEATURE_SET |
		(kind == 0 ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY :
		 kind == 1 ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP :
			     VFIO_DEVICE_FEATURE_LOW_POWER_EXIT);
	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, false);
	LOCK();
	in = d->lp_maybe ? MAYBE : d->lp ? YES : NO;
	UNLOCK();
	note(t, "low power %s %s", kind == 2 ? "exit" : kind ? "entry with wakeup" : "entry",
	     d->role);
	ret = ioctl_err(d->h.device, VFIO_DEVICE_FEATURE, &req);
	done(t, "%d", ret);
	if (kind == 2 && ret)
		disagree(t, "low power exit: %s", strerror(-ret));
	else if (kind < 2 && in == YES && ret != -EINVAL)
		disagree(t, "a second low power entry: %d", ret);
	else if (kind < 2 && in == NO && !ret != (kind == 0 || req.wake.wakeup_eventfd >= 0))
		disagree(t, "low power entry: %d", ret);
	ev_end(e, lp_update, ret ? 0 : kind == 0 ? 1 : kind == 1 ? 2 : 3);
	pthread_rwlock_unlock(&d->fdlock);
	if (efd >= 0)
		close(efd);
}

/*
 * A reset the driver's own hooks did not start settles the buffers from a
 * work item when memory_lock is busy (a fault, a sibling's hot reset): for
 * a moment after it returned they may still be revoked.  Until the next
 * command write settles them, either is allowed.
 */
static void set_deferred(struct fdev *d, long arg)
{
	(void)arg;
	d->deferred = true;
}

static void op_sysfs_reset(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	char path[PATH_MAX];
	struct event e;
	int ret;

	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, chance(t, 20));
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/reset", d->bdf);
	note(t, "sysfs reset %s%s", d->role, e.wild ? " (wild)" : "");
	ret = write_str(path, "1");
	done(t, "%d", ret);
	/* Low power: the PCI core may find the device suspended. */
	if (ret && ret != -ENOENT && ret != -EAGAIN && ret != -ENOTTY && ret != -EIO)
		disagree(t, "sysfs reset: %s", strerror(-ret));
	ev_end(e, set_deferred, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

/* A hot reset through the fd of a vfio-pci device on the same bus. */
static void op_sib_reset(struct thread *t)
{
	struct fdev *d = pick_dev(t);
	struct event e;
	int ret;

	if (d->sib.device < 0)
		return;
	pthread_rwlock_rdlock(&d->fdlock);
	e = ev_begin(d, chance(t, 20));
	note(t, "hot reset %s through its sibling %s%s", d->role, d->sib_role,
	     e.wild ? " (wild)" : "");
	ret = vfio_hot_reset(&d->sib);
	done(t, "%d", ret);
	if (ret && ret != -EBUSY && ret != -EAGAIN)
		disagree(t, "sibling hot reset: %s", strerror(-ret));
	ev_end(e, set_deferred, 0);
	pthread_rwlock_unlock(&d->fdlock);
}

/* --- The test importer ---------------------------------------------------- */

static void op_imp_attach(struct thread *t)
{
	struct impslot *im = &w.imp[below(t, NIMP)];
	struct bufslot *b;
	uint32_t flags = IMPORTER_DYNAMIC_P2P, defer = 0;
	int fd, acc;
	struct obs o;

	pthread_mutex_lock(&im->lock);
	b = im->fd < 0 ? grab_buf(t) : NULL;
	if (!b)
		goto out;
	if (chance(t, 10))
		flags = below(t, 3);	/* not a dynamic P2P importer */
	else if (chance(t, 15)) {
		flags |= IMPORTER_DEFER;
		defer = 1 + below(t, 5);
	}
	note(t, "importer attach fd %d flags=%#x (of %s)", b->fd, flags, b->m->d->role);
	o = observe(b->m, NULL);
	fd = importer_open_deferred(w.importer, b->fd, flags, defer);
	acc = settled(b->m, NULL, o);
	done(t, "%d", fd);
	if ((flags & IMPORTER_DYNAMIC_P2P) != IMPORTER_DYNAMIC_P2P) {
		if (fd >= 0)
			disagree(t, "an importer that is not dynamic P2P attached");
		else if (fd != -EOPNOTSUPP && fd != -ENODEV && fd != -EINVAL)
			disagree(t, "attach: %s", strerror(-fd));
		if (fd >= 0)
			close(fd);
	} else if (fd < 0) {
		if (!(fd == -ENODEV && acc != YES))
			disagree(t, "attach failed with %s, the buffer %s", strerror(-fd),
				 acc_name(acc));
	} else {
		if (acc == NO)
			disagree(t, "attach to a revoked buffer succeeded");
		im->fd = fd;
		im->m = b->m;
		bufm_get(b->m);
	}
	drop_buf(b);
out:
	pthread_mutex_unlock(&im->lock);
}

static struct impslot *grab_imp(struct thread *t)
{
	struct impslot *im = &w.imp[below(t, NIMP)];

	pthread_mutex_lock(&im->lock);
	if (im->fd >= 0)
		return im;
	pthread_mutex_unlock(&im->lock);
	return NULL;
}

static int imp_map_checked(struct thread *t, struct impslot *im)
{
	struct importer_map m;
	struct obs o = observe(im->m, NULL);
	int ret = importer_map(im->fd, &m), acc = settled(im->m, NULL, o);

	if (!im->m->d->p2p) {
		/* No route from the importer: refused, whatever the state. */
		if (ret != -EINVAL && ret != -ENODEV)
			disagree(t, "importer map without a P2P route: %d", ret);
		else if (ret == -EINVAL && acc == NO)
			disagree(t, "importer map of a revoked buffer: EINVAL, not ENODEV");
		return ret;
	}
	if (ret && !(ret == -ENODEV && acc != YES)) {
		if (disagree(t, "importer map: %s, the buffer %s", strerror(-ret), acc_name(acc)))
			print_kernel_view(im->m->d);
	} else if (!ret && acc == NO) {
		if (disagree(t, "importer map of a revoked buffer succeeded"))
			print_kernel_view(im->m->d);
	} else if (!ret && m.total != im->m->size) {
		disagree(t, "importer map of %llu bytes, the buffer has %llu",
			 (unsigned long long)m.total, (unsigned long long)im->m->size);
	}
	return ret;
}

static void op_imp_map(struct thread *t)
{
	struct impslot *im = grab_imp(t);

	if (!im)
		return;
	note(t, "importer map %d (of %s)", im->fd, im->m->d->role);
	done(t, "%d", imp_map_checked(t, im));
	pthread_mutex_unlock(&im->lock);
}

static void op_imp_unmap(struct thread *t)
{
	struct impslot *im = grab_imp(t);
	int ret;

	if (!im)
		return;
	note(t, "importer unmap %d", im->fd);
	ret = ioctl_err(im->fd, IMPORTER_UNMAP, NULL);
	done(t, "%d", ret);
	if (ret)
		disagree(t, "importer unmap: %s", strerror(-ret));
	pthread_mutex_unlock(&im->lock);
}

/* DMA by the importing edu from the buffer: the thread's scratch page. */
static void op_imp_dma(struct thread *t)
{
	struct impslot *im = grab_imp(t);
	static __thread struct importer_dma_read rd;
	uint64_t want = scratch_page(t) * PAGE, off;
	struct obs o;
	int ret, acc;

	if (!im)
		return;
	off = bar_to_buf(im->m, want);
	memset(&rd, 0, offsetof(struct importer_dma_read, data));
	rd.offset = off == ~0ull ? 0 : off;
	rd.len = 8;
	note(t, "importer DMA read %d at %#llx (of %s)", im->fd, (unsigned long long)rd.offset,
	     im->m->d->role);
	o = observe(im->m, NULL);
	ret = imp_map_checked(t, im);
	if (!ret)
		ret = ioctl_err(im->fd, IMPORTER_DMA_READ, &rd);
	acc = settled(im->m, NULL, o);
	done(t, "%d %#llx", ret, *(unsigned long long *)rd.data);
	if (acc == YES && ret && im->m->d->p2p)
		disagree(t, "DMA from an accessible buffer: %s", strerror(-ret));
	if (acc == YES && !ret && off != ~0ull && im->m->d->data && t->known &&
	    memcmp(rd.data, &t->pattern, 8))
		disagree(t, "DMA read %#llx, the thread wrote %#llx",
			 *(unsigned long long *)rd.data, (unsigned long long)t->pattern);
	pthread_mutex_unlock(&im->lock);
}

static void op_imp_detach(struct thread *t)
{
	struct impslot *im = grab_imp(t);
	int ret = 0;

	if (!im)
		return;
	note(t, "importer %s %d", chance(t, 50) ? "close" : "detach+close", im->fd);
	if (chance(t, 50))
		ret = ioctl_err(im->fd, IMPORTER_DETACH, NULL);
	close(im->fd);
	done(t, "%d", ret);
	bufm_put(im->m);
	im->fd = -1;
	im->m = NULL;
	pthread_mutex_unlock(&im->lock);
}

/* --- Close and reopen, unbind and rebind ------------------------------------ */

static void read_coverage(struct fdev *d, unsigned long long *c);

static int dev_open(struct fdev *d)
{
	struct vfio_region_info info;
	int ret = vfio_open(d->bdf, &d->h);

	if (ret)
		return ret;
	/* Hot resets need every device of the bus in the same iommufd/group. */
	if (d->sib_role && vfio_open_in(test_dev(d->sib_role), &d->h, &d->sib))
		return -EIO;
	if (vfio_region(d->h.device, VFIO_PCI_BAR0_REGION_INDEX + d->bar, &info))
		return -EIO;
	d->bar_region = info.offset;
	if (vfio_region(d->h.device, VFIO_PCI_CONFIG_REGION_INDEX, &info))
		return -EIO;
	d->cfg_region = info.offset;
	return set_memory_enable(d->h.device, 1);
}

static void reopened(struct fdev *d, long rebound)
{
	d->epoch++;
	d->binding += rebound;
	d->lp = d->lp_maybe = false;
}

static void op_reopen(struct thread *t, bool rebind)
{
	struct fdev *d = pick_dev(t);
	char path[PATH_MAX], driver[64] = "", again[64] = "";
	struct event e;
	int ret = 0;

	pthread_rwlock_wrlock(&w.forklock);
	pthread_rwlock_wrlock(&d->fdlock);
	e = ev_begin(d, false);
	note(t, "%s %s", rebind ? "close, unbind, rebind, open" : "close and reopen", d->role);
	/* The device fd's own mappings hold it open. */
	for (int i = 0; i < NMAP; i++) {
		struct mapslot *s = &w.map[i];

		pthread_rwlock_wrlock(&s->rw);
		if (s->addr && !s->m && s->d == d)
			unmap_slot(s);
		pthread_rwlock_unlock(&s->rw);
	}
	vfio_handle_close(&d->sib);
	vfio_handle_close(&d->h);
	if (rebind) {
		unsigned long long c[16];

		read_coverage(d, c);
		for (int i = 0; i < 16; i++) {
			d->cov[i] += c[i] - d->cov_base[i];
			d->cov_base[i] = 0;
		}
		sysfs_driver(d->bdf, driver, sizeof(driver));
		snprintf(path, sizeof(path), SYSFS_PCI "/%s/driver/unbind", d->bdf);
		ret = write_str(path, d->bdf);
		if (!ret)
			ret = write_str("/sys/bus/pci/drivers_probe", d->bdf);
		sysfs_driver(d->bdf, again, sizeof(again));
		if (!ret && strcmp(driver, again))
			ret = -ENXIO;
	}
	if (!ret)
		ret = dev_open(d);
	done(t, "%d", ret);
	if (ret) {
		disagree(t, "%s failed: %d (driver %s, was %s)", rebind ? "rebind" : "reopen", ret,
			 again, driver);
		w.stop = 2;	/* nothing can go on without the device */
	}
	ev_end(e, reopened, rebind);
	pthread_rwlock_unlock(&d->fdlock);
	pthread_rwlock_unlock(&w.forklock);
}

/* --- Coverage: the driver's debugfs counters -------------------------------- */

static const char * const cov_name[] = {
	"exports", "close", "device-reset", "hot-reset", "memory-enable", "power-state",
	"flr", "low-power", "pci-reset", "io-frozen", "revoke-request", "unrevokes",
	"page", "pmd", "pud", "sigbus",
};

#define SEP	" \t\n"

static void read_coverage(struct fdev *d, unsigned long long *c)
{
	char line[4096];
	FILE *f;

	memset(c, 0, 16 * sizeof(*c));
	f = open_status(d);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *tok, *save;

		if (!strncmp(line, "exports:", 8))
			c[0] = strtoull(line + 8, NULL, 10);
		else if (!strncmp(line, "unrevokes:", 10))
			c[11] = strtoull(line + 10, NULL, 10);
		else if (strncmp(line, "revokes:", 8) && strncmp(line, "faults:", 7))
			continue;
		for (tok = strtok_r(line, SEP, &save); tok; tok = strtok_r(NULL, SEP, &save)) {
			char *eq = strchr(tok, '=');

			if (!eq)
				continue;
			*eq = '\0';
			for (int i = 1; i < 16; i++)
				if (i != 11 && !strcmp(tok, cov_name[i]))
					c[i] = strtoull(eq + 1, NULL, 10);
		}
	}
	fclose(f);
}

/* --- Coverage: the driver's tracepoints --------------------------------------- */

#define TRACEFS "/sys/kernel/tracing"

static const char * const tp_name[] = {
	"dmabuf_vfio_export:", "dmabuf_vfio_attach:", "dmabuf_vfio_map:",
	"dmabuf_vfio_unmap:", "dmabuf_vfio_revoke:", "dmabuf_vfio_unrevoke:",
	"dmabuf_vfio_fault:",
};

static struct {
	pthread_t tid;
	int fd;
	volatile int stop;
	unsigned long long count[ARRAY_SIZE(tp_name)];
} tp = { .fd = -1 };

/* Counts the driver's events from trace_pipe, line by line. */
static void *trace_reader(void *arg)
{
	static char buf[65536 + 256];
	size_t carry = 0;

	(void)arg;
	while (!tp.stop) {
		ssize_t n = read(tp.fd, buf + carry, 65536);
		char *line, *nl;

		if (n <= 0) {
			usleep(100000);
			continue;
		}
		n += carry;
		buf[n] = '\0';
		for (line = buf; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = '\0';
			for (unsigned int i = 0; i < ARRAY_SIZE(tp_name); i++)
				if (strstr(line, tp_name[i]))
					tp.count[i]++;
		}
		carry = buf + n - line;
		if (carry > 255)
			carry = 0;	/* a line that long is none of ours */
		memmove(buf, line, carry);
	}
	return NULL;
}

static void trace_start(void)
{
	if (access(TRACEFS "/trace", F_OK))
		mount("nodev", TRACEFS, "tracefs", 0, NULL);
	memset(tp.count, 0, sizeof(tp.count));
	tp.stop = 0;
	tp.fd = open(TRACEFS "/trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (tp.fd < 0)
		return;
	write_str(TRACEFS "/trace", "");
	write_str(TRACEFS "/buffer_size_kb", "4096");
	if (write_str(TRACEFS "/events/dmabuf_vfio_pci/enable", "1") ||
	    pthread_create(&tp.tid, NULL, trace_reader, NULL)) {
		close(tp.fd);
		tp.fd = -1;
	}
}

static void trace_stop(void)
{
	if (tp.fd < 0)
		return;
	write_str(TRACEFS "/events/dmabuf_vfio_pci/enable", "0");
	usleep(300000);
	tp.stop = 1;
	pthread_join(tp.tid, NULL);
	close(tp.fd);
	tp.fd = -1;
	printf("#   tracepoints:");
	for (unsigned int i = 0; i < ARRAY_SIZE(tp_name); i++)
		printf(" %.*s=%llu", (int)strlen(tp_name[i]) - 13, tp_name[i] + 12, tp.count[i]);
	printf("\n");
}

/* --- The campaign ------------------------------------------------------------ */

static void op_reopen_only(struct thread *t)
{
	op_reopen(t, false);
}

static void op_rebind(struct thread *t)
{
	op_reopen(t, true);
}

static void (*const run_op[NOPS])(struct thread *t) = {
	[OP_EXPORT] = op_export,
	[OP_EXPORT_BAD] = op_export_bad,
	[OP_CLOSE_BUF] = op_close_buf,
	[OP_DUP_BUF] = op_dup_buf,
	[OP_OPATH] = op_opath,
	[OP_FEATURE] = op_feature,
	[OP_REVOKE] = op_revoke,
	[OP_MEMATTR] = op_memattr,
	[OP_MMAP] = op_mmap,
	[OP_DEVMAP] = op_devmap,
	[OP_MUNMAP] = op_munmap,
	[OP_MREMAP] = op_mremap,
	[OP_MPROTECT] = op_mprotect,
	[OP_MADVISE] = op_madvise,
	[OP_TOUCH] = op_touch,
	[OP_DATA] = op_data,
	[OP_NO_GUP] = op_no_gup,
	[OP_FORK] = op_fork,
	[OP_CONFIG] = op_config,
	[OP_MEM_ON] = op_mem_on,
	[OP_RESET] = op_reset,
	[OP_HOT_RESET] = op_hot_reset,
	[OP_LOW_POWER] = op_low_power,
	[OP_SYSFS_RESET] = op_sysfs_reset,
	[OP_SIB_RESET] = op_sib_reset,
	[OP_IMP_ATTACH] = op_imp_attach,
	[OP_IMP_MAP] = op_imp_map,
	[OP_IMP_UNMAP] = op_imp_unmap,
	[OP_IMP_DMA] = op_imp_dma,
	[OP_IMP_DETACH] = op_imp_detach,
	[OP_REOPEN] = op_reopen_only,
	[OP_REBIND] = op_rebind,
};

static void *thread_main(void *arg)
{
	struct thread *t = arg;

	while (!w.stop) {
		int pick = below(t, w.wsum), op = 0;

		while (pick >= w.weight[op])
			pick -= w.weight[op++];
		t->cur[0] = '\0';
		run_op[op](t);
		__atomic_add_fetch(&w.runs[op], 1, __ATOMIC_RELAXED);
		if (t->cur[0])
			__atomic_add_fetch(&w.oks[op], 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int setup_dev(struct fdev *d, const char *role, int bar, bool data, bool p2p,
		     const char *sib_role)
{
	d->role = role;
	d->p2p = p2p;
	d->sib_role = sib_role;
	if (sib_role && !test_dev(sib_role))
		return -ENOENT;
	d->bdf = test_dev(role);
	d->bar = bar;
	d->data = data;
	if (!d->bdf)
		return -ENOENT;
	if (sysfs_bar_size(d->bdf, bar, &d->bar_size) || d->bar_size < PAGE)
		return -ENODEV;
	d->window = d->bar_size / PAGE;
	if (data && d->window > 512)
		d->window = 512;
	pthread_rwlock_init(&d->fdlock, NULL);
	pthread_mutex_init(&d->evlock, NULL);
	if (dev_open(d))
		return -EIO;
	d->pm = vfio_find_cap(d->h.device, PCI_CAP_ID_PM);
	d->pcie = vfio_find_cap(d->h.device, PCI_CAP_ID_EXP);
	d->af = vfio_find_cap(d->h.device, PCI_CAP_ID_AF);
	{
		struct vfio_device_info info = { .argsz = sizeof(info) };

		if (!ioctl(d->h.device, VFIO_DEVICE_GET_INFO, &info))
			d->reset_works = info.flags & VFIO_DEVICE_FLAGS_RESET;
	}
	d->mem = d->d0 = true;
	read_coverage(d, d->cov_base);
	return 0;
}

static void teardown(void)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
	};

	for (int i = 0; i < NIMP; i++)
		if (w.imp[i].fd >= 0)
			close(w.imp[i].fd);
	for (int i = 0; i < NMAP; i++)
		if (w.map[i].addr)
			munmap(w.map[i].addr, w.map[i].len);
	for (int i = 0; i < NBUF; i++)
		if (w.buf[i].fd >= 0)
			close(w.buf[i].fd);
	for (int i = 0; i < NOPATH; i++)
		if (w.opath[i].fd >= 0)
			close(w.opath[i].fd);
	for (int i = 0; i < w.ndev; i++) {
		struct fdev *d = &w.dev[i];

		if (d->h.device >= 0) {
			ioctl(d->h.device, VFIO_DEVICE_FEATURE, &f);
			vfio_handle_close(&d->sib);
			vfio_handle_close(&d->h);
		}
	}
	if (w.loopfd >= 0) {
		ioctl(w.loopfd, LOOP_CLR_FD);
		close(w.loopfd);
	}
}

/* Whether every operation kind took effect, a SIGBUS and every event came. */
static bool covered(void)
{
	for (int i = 0; i < NOPS; i++)
		if (w.weight[i] && !w.oks[i])
			return false;
	for (unsigned int i = 0; w.ours && tp.fd >= 0 && i < ARRAY_SIZE(tp_name); i++)
		if (!tp.count[i])
			return false;
	return w.sigbus;
}

/*
 * Runs one campaign; 0 when every result agreed with the model, 1 on a
 * disagreement, -errno when the devices are not there.  The summary goes to
 * stdout, with a progress line every 10 s.  With @until_covered, it goes on
 * past @seconds (up to four times as long) until covered(): a loaded host
 * runs fewer operations in the time.
 */
static int campaign(const char *target, uint64_t seed, int seconds, int nthreads,
		    bool until_covered)
{
	struct rlimit nofile = { 512, 512 };
	struct sigaction sa = { .sa_handler = on_sigbus, .sa_flags = SA_NODEFER };
	time_t start = time(NULL), last = start;
	unsigned long long total = 0;
	int kmsg = kmsg_open();
	bool dumped = false;
	char splat[512];
	int ret;

	static int weight_vfio_opath[NOPS];

	memset(&w, 0, sizeof(w));
	w.ours = strncmp(target, "vfio", 4);
	w.weight = w.ours ? weight_ours : weight_vfio;
	/*
	 * Linux 7.3's vfio-pci un-revokes its buffers on a reset or a command
	 * write while the device is in low power (it checks memory enable and
	 * D0 only); the vfio target tolerates that unless "+strict".
	 */
	w.lp_tolerant = !w.ours && !strstr(target, "+strict");
	/*
	 * "+opath" adds O_PATH holders against vfio-pci: Linux 7.3's exporter
	 * then uses a freed file (see Documentation), a KASAN splat.
	 */
	if (!w.ours && strstr(target, "+opath")) {
		memcpy(weight_vfio_opath, weight_vfio, sizeof(weight_vfio));
		weight_vfio_opath[OP_OPATH] = 5;
		w.weight = weight_vfio_opath;
	}
	for (int i = 0; i < NOPS; i++)
		w.wsum += w.weight[i];
	pthread_mutex_init(&w.lock, NULL);
	pthread_mutex_init(&w.out, NULL);
	{
		pthread_rwlockattr_t a;

		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&w.forklock, &a);
	}
	for (int i = 0; i < NBUF; i++) {
		pthread_rwlock_init(&w.buf[i].rw, NULL);
		w.buf[i].fd = -1;
	}
	for (int i = 0; i < NMAP; i++)
		pthread_rwlock_init(&w.map[i].rw, NULL);
	for (int i = 0; i < NIMP; i++) {
		pthread_mutex_init(&w.imp[i].lock, NULL);
		w.imp[i].fd = -1;
	}
	for (int i = 0; i < NOPATH; i++) {
		pthread_mutex_init(&w.opath[i].lock, NULL);
		w.opath[i].fd = -1;
	}
	for (int i = 0; i < NBUFM; i++)
		pthread_mutex_init(&w.bufm[i].lock, NULL);
	for (int i = 0; i < DEVS; i++)
		w.dev[i].h = w.dev[i].sib = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	w.loopfd = -1;
	/* A feature request reads fd 0 from a zeroed payload: never a dma-buf. */
	while (fcntl(0, F_GETFD) < 0 || fcntl(1, F_GETFD) < 0 || fcntl(2, F_GETFD) < 0)
		if (open("/dev/null", O_RDWR) < 0)
			break;
	setrlimit(RLIMIT_NOFILE, &nofile);
	sigaction(SIGBUS, &sa, NULL);
	sa.sa_handler = NULL;
	sa.sa_sigaction = on_sigsegv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	w.importer = test_dev("SW_EDU");
	if (!w.importer)
		return -ENOENT;
	if (w.ours && strstr(target, "+flr")) {
		/* The FLR device alone: its PM and reset paths, three times as often. */
		ret = setup_dev(&w.dev[0], "FLR", 4, false, true, NULL);
		w.ndev = 1;
	} else if (w.ours) {
		ret = setup_dev(&w.dev[0], "SW_IVSHMEM", 2, true, true, NULL);
		if (!ret)
			ret = setup_dev(&w.dev[1], "FLR", 4, false, true, NULL);
		if (!ret)
			ret = setup_dev(&w.dev[2], "SIB_IVSHMEM", 2, false, false, "SIB_VFIO");
		w.ndev = 3;
	} else {
		ret = setup_dev(&w.dev[0], "VFIO_IVSHMEM", 2, true, true, NULL);
		w.ndev = 1;
	}
	if (ret) {
		teardown();
		return ret;
	}
	w.loopfd = direct_io_source(w.loopdev, sizeof(w.loopdev));
	printf("# fuzz %s: seed %llu, %d s, %d threads (replay: make fuzz SEED=%llu SECONDS=%d THREADS=%d)\n",
	       target, (unsigned long long)seed, seconds, nthreads, (unsigned long long)seed,
	       seconds, nthreads);
	fflush(stdout);
	w.nthreads = nthreads > MAXT ? MAXT : nthreads;
	if (w.ours)
		trace_start();
	for (int i = 0; i < w.nthreads; i++) {
		struct thread *t = &w.th[i];

		t->id = i;
		t->rng = (seed + 1) * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull;
		if (!t->rng)
			t->rng = 1;
		pthread_create(&t->tid, NULL, thread_main, t);
	}
	while (!w.stop && (time(NULL) - start < seconds ||
			   (until_covered && !covered() && time(NULL) - start < 4 * seconds))) {
		sleep(1);
		if (kmsg >= 0 && kmsg_splat(kmsg, splat, sizeof(splat))) {
			pthread_mutex_lock(&w.out);
			if (!w.failed)
				printf("# KERNEL SPLAT while fuzzing: %s", splat);
			w.failed = 1;
			w.stop = 1;
			pthread_mutex_unlock(&w.out);
			/* Now: the threads may never come back to be joined. */
			dump_logs();
			printf("# replay: make fuzz SEED=%llu SECONDS=%d THREADS=%d\n",
			       (unsigned long long)seed, seconds, w.nthreads);
			fflush(stdout);
			dumped = true;
			break;
		}
		if (time(NULL) - last >= 10) {
			last = time(NULL);
			total = 0;
			for (int i = 0; i < NOPS; i++)
				total += w.runs[i];
			printf("# progress: %lld s, %llu operations, %llu SIGBUS\n",
			       (long long)(last - start), total, w.sigbus);
			fflush(stdout);
		}
	}
	w.stop = w.stop ? w.stop : 1;
	for (int i = 0; i < w.nthreads; i++)
		pthread_join(w.th[i].tid, NULL);
	seconds = time(NULL) - start;
	total = 0;
	for (int i = 0; i < NOPS; i++)
		total += w.runs[i];
	printf("# fuzz %s: seed %llu: %llu operations in %d s (%.1f/s), %llu SIGBUS, %llu children\n",
	       target, (unsigned long long)seed, total, seconds, seconds ? (double)total / seconds : 0.0,
	       w.sigbus, w.children);
	for (int i = 0; i < NOPS; i++)
		if (w.weight[i])
			printf("#   %-13s %8llu run, %8llu with an effect\n", op_name[i], w.runs[i],
			       w.oks[i]);
	if (w.ours)
		trace_stop();
	for (int i = 0; i < w.ndev && w.ours; i++) {
		struct fdev *d = &w.dev[i];
		unsigned long long c[16];

		read_coverage(d, c);
		printf("#   %s (%s) debugfs:", d->role, d->bdf);
		for (int k = 0; k < 16; k++) {
			d->cov[k] += c[k] - d->cov_base[k];
			printf(" %s=%llu", cov_name[k], d->cov[k]);
		}
		printf("\n");
	}
	if (w.failed && !dumped) {
		dump_logs();
		printf("# replay: make fuzz SEED=%llu SECONDS=%d THREADS=%d\n",
		       (unsigned long long)seed, seconds, w.nthreads);
	}
	fflush(stdout);
	if (kmsg >= 0)
		close(kmsg);
	teardown();
	return w.failed;
}

/* --- make check: short campaigns with a fixed seed --------------------------- */

FIXTURE(fuzz) {
};

FIXTURE_SETUP(fuzz)
{
}

FIXTURE_TEARDOWN(fuzz)
{
}

/* Every operation kind ran, and (ours) every revoke cause it can reach. */
static void check_coverage(struct __test_metadata *_metadata)
{
	static const int causes[] = { 1, 2, 3, 4, 5, 6, 7, 8, 10, 11 };

	for (int i = 0; i < NOPS; i++) {
		const char *name = op_name[i];

		EXPECT_TRUE(!w.weight[i] || w.oks[i]) {
			TH_LOG("the campaign never ran %s", name);
		}
	}
	EXPECT_LT(0, w.sigbus);
	if (!w.ours)
		return;
	for (unsigned int i = 0; i < ARRAY_SIZE(tp_name); i++) {
		const char *name = tp_name[i];

		EXPECT_LT(0, tp.count[i]) {
			TH_LOG("no %s event", name);
		}
	}
	for (unsigned int i = 0; i < ARRAY_SIZE(causes); i++) {
		const char *name = cov_name[causes[i]];

		EXPECT_LT(0, w.dev[0].cov[causes[i]] + w.dev[1].cov[causes[i]] +
			     w.dev[2].cov[causes[i]]) {
			TH_LOG("no revoke/unrevoke counted as %s", name);
		}
	}
}

TEST_F_TIMEOUT(fuzz, ours, 900)
{
	int ret = campaign("ours", 20261207, 75, 4, true);

	if (ret < 0)
		SKIP(return, "the devices are not there: %s", strerror(-ret));
	EXPECT_EQ(0, ret);
	check_coverage(_metadata);
}

TEST_F_TIMEOUT(fuzz, vfio_pci, 900)
{
	int ret = campaign("vfio", 20261207, 40, 4, true);

	if (ret < 0)
		SKIP(return, "the devices are not there: %s", strerror(-ret));
	EXPECT_EQ(0, ret);
	check_coverage(_metadata);
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "--campaign")) {
		int ret = campaign(argv[2], strtoull(argv[3], NULL, 0), atoi(argv[4]),
				   atoi(argv[5]), false);

		if (ret < 0)
			printf("# fuzz %s: devices missing: %s\n", argv[2], strerror(-ret));
		return ret ? 1 : 0;
	}
	return test_harness_run(argc, argv);
}
