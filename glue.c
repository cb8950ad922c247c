// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf-vfio-pci: C glue for the Rust driver (see include/dmabuf_vfio_glue.h).
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio_pci_core.h>

#include "include/dmabuf_vfio_glue.h"

static const struct pci_device_id dmabuf_vfio_pci_table[] = {
	/* Binds nothing by itself: only devices whose driver_override names us. */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, dmabuf_vfio_pci_table);

static struct pci_driver dmabuf_vfio_pci_driver = {
	.name			= "dmabuf-vfio-pci",
	.id_table		= dmabuf_vfio_pci_table,
	.err_handler		= &vfio_pci_core_err_handlers,
	.driver_managed_dma	= true,
};

int dmabuf_vfio_register_driver(dmabuf_vfio_probe_fn probe,
				dmabuf_vfio_remove_fn remove)
{
	dmabuf_vfio_pci_driver.probe = probe;
	dmabuf_vfio_pci_driver.remove = remove;
	return pci_register_driver(&dmabuf_vfio_pci_driver);
}

void dmabuf_vfio_unregister_driver(void)
{
	pci_unregister_driver(&dmabuf_vfio_pci_driver);
}

void dmabuf_vfio_put_device(struct vfio_device *vdev)
{
	vfio_put_device(vdev);
}
