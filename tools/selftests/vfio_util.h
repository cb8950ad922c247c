/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the dmabuf-vfio-pci selftests: finding the test devices the
 * guest script bound, and opening them through vfio's two uAPIs.
 *
 * Every helper returns a negative errno (or -1 with errno set) on failure
 * and never exits, so a test can assert on the failure itself.
 */
#ifndef DMABUF_VFIO_UTIL_H
#define DMABUF_VFIO_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#define SYSFS_PCI "/sys/bus/pci/devices"

/* PCI address of a test device, from the environment the guest script set. */
static inline const char *test_dev(const char *role)
{
	char name[64];

	snprintf(name, sizeof(name), "DMABUF_TEST_%s", role);
	return getenv(name);
}

static inline int sysfs_read(const char *bdf, const char *attr, char *buf,
			     size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), SYSFS_PCI "/%s/%s", bdf, attr);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static inline long sysfs_read_hex(const char *bdf, const char *attr)
{
	char buf[64];
	int ret = sysfs_read(bdf, attr, buf, sizeof(buf));

	return ret ? ret : strtol(buf, NULL, 16);
}

/* Name of the driver bound to @bdf, or "" when none is. */
static inline int sysfs_driver(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;
	char *slash;

	snprintf(path, sizeof(path), SYSFS_PCI "/%s/driver", bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		buf[0] = '\0';
		return errno == ENOENT ? 0 : -errno;
	}
	target[n] = '\0';
	slash = strrchr(target, '/');
	snprintf(buf, len, "%s", slash ? slash + 1 : target);
	return 0;
}

/* Size of BAR @bar from sysfs "resource" (0 when the BAR is absent). */
static inline int sysfs_bar_size(const char *bdf, int bar, uint64_t *size)
{
	char buf[4096], *line;
	unsigned long long start, end, flags;
	int i, ret;

	ret = sysfs_read(bdf, "resource", buf, sizeof(buf));
	if (ret)
		return ret;
	line = buf;
	for (i = 0; i < bar; i++) {
		line = strchr(line, '\n');
		if (!line)
			return -EINVAL;
		line++;
	}
	if (sscanf(line, "%llx %llx %llx", &start, &end, &flags) != 3)
		return -EINVAL;
	*size = end ? end - start + 1 : 0;
	return 0;
}

/* Writes @s to the file @path (sysfs, tracefs); -errno. */
static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_TRUNC), ret;

	if (fd < 0)
		return -errno;
	ret = write(fd, s, strlen(s)) < 0 ? -errno : 0;
	close(fd);
	return ret;
}

struct vfio_handle {
	int device;
	int iommufd;	/* cdev path */
	int container;	/* group path */
	int group;
	uint32_t ioas;	/* cdev path: the IOAS the device is attached to */
};

static inline void vfio_handle_close(struct vfio_handle *h)
{
	if (h->device >= 0)
		close(h->device);
	if (h->group >= 0)
		close(h->group);
	if (h->container >= 0)
		close(h->container);
	if (h->iommufd >= 0)
		close(h->iommufd);
	h->device = h->group = h->container = h->iommufd = -1;
}

/*
 * Opens @bdf through /dev/vfio/devices/vfioN, bound to the iommufd of
 * @with and attached to its IOAS (devices of one IOMMU group must share
 * one; devices bound to one iommufd may hot-reset each other), or to a new
 * iommufd and IOAS when @with is NULL.
 */
static inline int vfio_open_cdev_in(const char *bdf, const struct vfio_handle *with,
				    struct vfio_handle *h)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int err;

	*h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/vfio-dev", bdf);
	dir = opendir(path);
	if (!dir)
		return -errno;
	path[0] = '\0';
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(path, sizeof(path), "/dev/vfio/devices/%s",
				 de->d_name);
	closedir(dir);
	if (!path[0])
		return -ENOENT;

	h->device = open(path, O_RDWR);
	if (h->device < 0)
		goto fail;
	h->iommufd = with ? dup(with->iommufd) : open("/dev/iommu", O_RDWR);
	if (h->iommufd < 0)
		goto fail;
	bind.iommufd = h->iommufd;
	if (ioctl(h->device, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		goto fail;
	if (with)
		alloc.out_ioas_id = with->ioas;
	else if (ioctl(h->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		goto fail;
	h->ioas = attach.pt_id = alloc.out_ioas_id;
	if (ioctl(h->device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		goto fail;
	return 0;
fail:
	err = -errno;
	vfio_handle_close(h);
	return err;
}

/* Opens @bdf through /dev/vfio/devices/vfioN and a new iommufd. */
static inline int vfio_open_cdev(const char *bdf, struct vfio_handle *h)
{
	return vfio_open_cdev_in(bdf, NULL, h);
}

/* Opens @bdf through its group and a type1 container. */
static inline int vfio_open_group(const char *bdf, struct vfio_handle *h)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[PATH_MAX], target[PATH_MAX];
	const char *group;
	ssize_t n;
	int err;

	*h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/iommu_group", bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	group = strrchr(target, '/');
	group = group ? group + 1 : target;
	snprintf(path, sizeof(path), "/dev/vfio/%s", group);

	h->container = open("/dev/vfio/vfio", O_RDWR);
	if (h->container < 0)
		goto fail;
	h->group = open(path, O_RDWR);
	if (h->group < 0)
		goto fail;
	if (ioctl(h->group, VFIO_GROUP_GET_STATUS, &status))
		goto fail;
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		goto fail;
	}
	if (ioctl(h->group, VFIO_GROUP_SET_CONTAINER, &h->container))
		goto fail;
	if (ioctl(h->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		goto fail;
	h->device = ioctl(h->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (h->device < 0)
		goto fail;
	return 0;
fail:
	err = -errno;
	vfio_handle_close(h);
	return err;
}

/*
 * Whether the kernel offers the iommufd uAPI: a distribution kernel without
 * CONFIG_IOMMUFD (Debian 13's) has only groups and type1 containers.
 */
static inline bool have_iommufd(void)
{
	return access("/dev/iommu", F_OK) == 0;
}

/*
 * Opens @bdf as a user of this kernel would: through its cdev and a new
 * iommufd when the kernel has iommufd, else through its group and a type1
 * container.  DMABUF_TEST_UAPI=group picks the group path anyway.
 */
static inline int vfio_open(const char *bdf, struct vfio_handle *h)
{
	const char *uapi = getenv("DMABUF_TEST_UAPI");

	if (!have_iommufd() || (uapi && !strcmp(uapi, "group")))
		return vfio_open_group(bdf, h);
	return vfio_open_cdev(bdf, h);
}

/*
 * VFIO_DEVICE_PCI_HOT_RESET of the bus of @h's device; every device it
 * affects must be in @h's group (cdev: bound to @h's iommufd).  Through a
 * cdev the iommufd proves ownership (no group fds); through a group, the
 * group's fd is the proof.
 */
static inline int vfio_hot_reset(const struct vfio_handle *h)
{
	struct {
		struct vfio_pci_hot_reset reset;
		int32_t group_fds[1];
	} arg = { .reset = { .argsz = sizeof(struct vfio_pci_hot_reset) } };

	if (h->group >= 0) {
		arg.reset.argsz = sizeof(arg);
		arg.reset.count = 1;
		arg.group_fds[0] = h->group;
	}
	return ioctl(h->device, VFIO_DEVICE_PCI_HOT_RESET, &arg) ? -errno : 0;
}

/*
 * Opens @bdf the way @with was opened: for a cdev, bound to @with's iommufd
 * and IOAS (vfio_open_cdev_in()); for a group, as another device of
 * @with's group, which must be @bdf's (a group fd opens only once).
 */
static inline int vfio_open_in(const char *bdf, const struct vfio_handle *with,
			       struct vfio_handle *h)
{
	int err;

	if (with->group < 0)
		return vfio_open_cdev_in(bdf, with, h);
	*h = (struct vfio_handle){ -1, -1, -1, -1, 0 };
	h->group = dup(with->group);
	if (h->group < 0)
		return -errno;
	h->device = ioctl(h->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (h->device < 0) {
		err = -errno;
		vfio_handle_close(h);
		return err;
	}
	return 0;
}

static inline int vfio_region(int device, unsigned int index,
			      struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	return ioctl(device, VFIO_DEVICE_GET_REGION_INFO, info) ? -errno : 0;
}

/* Maps @len bytes at @off of BAR @bar through the device fd. */
static inline void *vfio_mmap_bar(int device, int bar, uint64_t off,
				  size_t len)
{
	struct vfio_region_info info;

	if (vfio_region(device, VFIO_PCI_BAR0_REGION_INDEX + bar, &info))
		return MAP_FAILED;
	if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		errno = ENOTSUP;
		return MAP_FAILED;
	}
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, device,
		    info.offset + off);
}

static inline int vfio_config_read(int device, uint64_t off, void *buf,
				   size_t len)
{
	struct vfio_region_info info;
	int ret = vfio_region(device, VFIO_PCI_CONFIG_REGION_INDEX, &info);

	if (ret)
		return ret;
	return pread(device, buf, len, info.offset + off) == (ssize_t)len ?
		       0 : -EIO;
}

static inline int vfio_config_write(int device, uint64_t off, const void *buf,
				    size_t len)
{
	struct vfio_region_info info;
	int ret = vfio_region(device, VFIO_PCI_CONFIG_REGION_INDEX, &info);

	if (ret)
		return ret;
	return pwrite(device, buf, len, info.offset + off) == (ssize_t)len ?
		       0 : -EIO;
}

/* Config offset of standard capability @id as the user sees it, or -1. */
static inline int vfio_find_cap(int device, uint8_t id)
{
	uint8_t pos, cap[2];

	if (vfio_config_read(device, PCI_CAPABILITY_LIST, &pos, 1))
		return -1;
	while (pos) {
		if (vfio_config_read(device, pos, cap, 2))
			return -1;
		if (cap[0] == id)
			return pos;
		pos = cap[1];
	}
	return -1;
}

#endif /* DMABUF_VFIO_UTIL_H */
