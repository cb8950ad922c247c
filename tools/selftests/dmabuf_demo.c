// SPDX-License-Identifier: GPL-2.0
/*
 * make demo: a BAR range exported as a dma-buf, imported by a second PCI
 * device that reads it by DMA, revoked and given back while memory decode
 * is off, handed to a second process that maps it with only the dma-buf fd
 * and is cut off by a revoke, then revoked for good when the exporter
 * closes.
 */
#include <setjmp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dmabuf_util.h"

#define PAGE	4096ull

static const char message[] = "hello from the exporting BAR, read by peer DMA";

static int fail(const char *what)
{
	printf("  FAILED: %s: %s\n", what, strerror(errno));
	return 1;
}

static sigjmp_buf on_bus;

static void sigbus(int sig)
{
	siglongjmp(on_bus, sig);
}

static int recv_fd(int sock)
{
	char byte, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	int fd;

	if (recvmsg(sock, &msg, 0) != 1 || !CMSG_FIRSTHDR(&msg))
		return -1;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(fd));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char byte = 0, ctl[CMSG_SPACE(sizeof(int))] = {};
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	sendmsg(sock, &msg, 0);
}

/*
 * The second process: started before the device is opened, it owns no
 * vfio fd.  It maps the dma-buf it is sent, reads, waits, reads again.
 */
static void second_process(int sock)
{
	struct sigaction sa = { .sa_handler = sigbus };
	volatile char *m;
	char go, again[64];
	int fd = recv_fd(sock);
	size_t i;

	sigaction(SIGBUS, &sa, NULL);
	m = fd < 0 ? MAP_FAILED : mmap(NULL, 4 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		printf("  [client %d] FAILED: mmap: %s\n", getpid(), strerror(errno));
		_exit(1);
	}
	printf("  [client %d] got dma-buf fd %d only; mmap()ed it and read: \"%s\"\n",
	       getpid(), fd, (const char *)m + PAGE);
	fflush(stdout);
	write(sock, "r", 1);
	read(sock, &go, 1);
	if (sigsetjmp(on_bus, 1)) {
		printf("  [client %d] reading again: SIGBUS, cut off\n", getpid());
		fflush(stdout);
		_exit(0);
	}
	/*
	 * Read first, print after: a SIGBUS inside printf() would leave half
	 * a line in stdio's buffer, printed before the SIGBUS line.
	 */
	for (i = 0; i < sizeof(again) - 1 && m[PAGE + i]; i++)
		again[i] = m[PAGE + i];
	again[i] = '\0';
	printf("  [client %d] reading again: \"%s\" (NOT cut off)\n", getpid(), again);
	fflush(stdout);
	_exit(1);
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
	int buf, cbuf, imp, sv[2], status;
	pid_t pid;
	uint16_t cmd;
	char *bar, ack;

	if (!exporter || !importer)
		return fail("test devices not set");
	fflush(stdout);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return fail("socketpair");
	pid = fork();
	if (!pid) {
		close(sv[0]);
		second_process(sv[1]);
	}
	close(sv[1]);
	printf("Exporter %s (dmabuf-vfio-pci), importer %s (test importer, same switch)\n",
	       exporter, importer);
	if (vfio_open(exporter, &h))
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

	cmd &= ~PCI_COMMAND_MEMORY;
	vfio_config_write(h.device, PCI_COMMAND, &cmd, 2);
	ioctl(imp, IMPORTER_STATUS, &st);
	printf("  memory decode off: importer saw %u invalidation, holds %u mapping;",
	       st.invalidations, st.mapped);
	if (ioctl(imp, IMPORTER_MAP, &m) && errno == ENODEV)
		printf(" mapping again: %s (revoked)\n", strerror(errno));
	cmd |= PCI_COMMAND_MEMORY;
	vfio_config_write(h.device, PCI_COMMAND, &cmd, 2);
	memset(rd.data, 0, sizeof(rd.data));
	if (ioctl(imp, IMPORTER_MAP, &m) || ioctl(imp, IMPORTER_DMA_READ, &rd))
		return fail("map after memory on");
	printf("  memory decode on: importer mapped again and read \"%s\" (un-revoked)\n",
	       (char *)rd.data);

	/* A second buffer for the client process, which sees only its fd. */
	cbuf = ioctl(h.device, VFIO_DEVICE_FEATURE, &req);
	if (cbuf < 0)
		return fail("second export");
	printf("  exported the same range again as dma-buf fd %d, sent to client %d\n",
	       cbuf, pid);
	fflush(stdout);
	send_fd(sv[0], cbuf);
	read(sv[0], &ack, 1);
	if (revoke_for_good(h.device, cbuf))
		return fail("DMABUF_VFIO_PCI_FEATURE_REVOKE");
	printf("  revoked dma-buf %d for good (DMABUF_VFIO_PCI_FEATURE_REVOKE)\n", cbuf);
	fflush(stdout);
	write(sv[0], "g", 1);
	waitpid(pid, &status, 0);
	printf("  client exited %s; the device fd's own mapping still reads \"%.5s...\"\n",
	       WIFEXITED(status) && !WEXITSTATUS(status) ? "as expected" : "WRONGLY",
	       bar + 17 * PAGE);
	close(cbuf);

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
