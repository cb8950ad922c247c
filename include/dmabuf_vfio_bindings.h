/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of the module's own bindgen run (see Kbuild): the C APIs the
 * kernel crate has no bindings for.  Types the kernel crate already has
 * (pci_dev, device, rw_semaphore, vm_area_struct, ...) are not generated
 * again: the output imports them from kernel::bindings, so our values
 * can be handed to the kernel crate's abstractions as they are.
 */
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>
#include <uapi/linux/vfio.h>
#include "uapi/linux/dmabuf_vfio_pci.h"

#include "dmabuf_vfio_glue.h"
