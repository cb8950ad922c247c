// SPDX-License-Identifier: GPL-2.0
/*
 * Holds duplicates of another process's dma-buf fds (pidfd_getfd()), as a
 * process it had passed them to would, so qemu_e2e.sh can see what becomes
 * of QEMU's buffers once QEMU is gone.
 *
 *   dmabuf_grab PID
 *
 * Prints "grabbed N" once it holds every dma-buf of PID, then waits for a
 * line on stdin; then tries to mmap() each buffer and prints "mmap <errno
 * name>" (or "mmap ok") per buffer.  Exits, dropping them, at end of input.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_BUFS 64

/* A dma-buf's fdinfo names its exporter. */
static int is_dmabuf(int pid, const char *fd)
{
	char path[64], line[256];
	FILE *f;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, fd);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "exp_name:", 9))
			found = 1;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int bufs[MAX_BUFS], n = 0, pid, pidfd, i;
	char path[64], line[64];
	struct dirent *e;
	DIR *dir;

	if (argc != 2)
		return 2;
	pid = atoi(argv[1]);
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		perror("pidfd_open");
		return 1;
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	if (!dir) {
		perror(path);
		return 1;
	}
	while ((e = readdir(dir)) && n < MAX_BUFS) {
		int fd;

		if (e->d_name[0] == '.' || !is_dmabuf(pid, e->d_name))
			continue;
		fd = syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
		if (fd < 0) {
			perror("pidfd_getfd");
			return 1;
		}
		bufs[n++] = fd;
	}
	closedir(dir);
	close(pidfd);
	printf("grabbed %d\n", n);
	fflush(stdout);

	if (!fgets(line, sizeof(line), stdin))
		return 0;
	for (i = 0; i < n; i++) {
		void *p = mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED, bufs[i], 0);

		if (p == MAP_FAILED) {
			printf("mmap %s\n", strerrorname_np(errno));
		} else {
			printf("mmap ok\n");
			munmap(p, getpagesize());
		}
	}
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
