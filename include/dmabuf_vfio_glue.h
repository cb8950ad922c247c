/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C glue of dmabuf-vfio-pci: what the Rust side cannot express.
 *
 * - the pci_driver: pci_register_driver() is a macro that records
 *   THIS_MODULE/KBUILD_MODNAME, and the id table needs the vfio
 *   driver_override-only entry and MODULE_DEVICE_TABLE for the
 *   "vfio_pci:" modalias;
 * - static inline functions of the vfio headers that have no exported
 *   symbol and no kernel-crate helper.
 */
#ifndef DMABUF_VFIO_GLUE_H
#define DMABUF_VFIO_GLUE_H

#include <linux/pci.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>

typedef int (*dmabuf_vfio_probe_fn)(struct pci_dev *pdev,
				    const struct pci_device_id *id);
typedef void (*dmabuf_vfio_remove_fn)(struct pci_dev *pdev);

int dmabuf_vfio_register_driver(dmabuf_vfio_probe_fn probe,
				dmabuf_vfio_remove_fn remove);
void dmabuf_vfio_unregister_driver(void);

void dmabuf_vfio_put_device(struct vfio_device *vdev);

#endif /* DMABUF_VFIO_GLUE_H */
