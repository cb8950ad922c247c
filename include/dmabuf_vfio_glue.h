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

#include <linux/atomic.h>
#include <linux/dma-mapping.h>
#include <linux/pci.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>

typedef int (*dmabuf_vfio_probe_fn)(struct pci_dev *pdev,
				    const struct pci_device_id *id);
typedef void (*dmabuf_vfio_remove_fn)(struct pci_dev *pdev);
typedef void (*dmabuf_vfio_reset_fn)(struct pci_dev *pdev);

int dmabuf_vfio_register_driver(dmabuf_vfio_probe_fn probe,
				dmabuf_vfio_remove_fn remove,
				dmabuf_vfio_reset_fn reset_prepare,
				dmabuf_vfio_reset_fn reset_done,
				dmabuf_vfio_reset_fn io_frozen);
void dmabuf_vfio_unregister_driver(void);

void dmabuf_vfio_put_device(struct vfio_device *vdev);

/*
 * PCI topology (static inlines of linux/pci.h, and the host-bridge device
 * lookup of drivers/pci/p2pdma.c, which is static there).
 */
struct pci_dev *dmabuf_vfio_upstream_bridge(struct pci_dev *pdev);
u32 dmabuf_vfio_pci_id(struct pci_dev *pdev);
u32 dmabuf_vfio_host_bridge_id(struct pci_dev *pdev);
bool dmabuf_vfio_host_bridge_root(struct pci_dev *pdev, u16 *vendor,
				  u16 *device);
bool dmabuf_vfio_cpu_is_amd_zen(void);
struct pci_dev *dmabuf_vfio_to_pci_dev(struct device *dev);

/* DMA mapping of MMIO for an importer. */
bool dmabuf_vfio_dma_mapping_error(struct device *dev, dma_addr_t addr);
bool dmabuf_vfio_dma_use_iova(struct dma_iova_state *state);

/*
 * CPU mappings of exported buffers (vm_flags_set(), pgprot_*() and
 * pfn_valid() are inline).
 */
void dmabuf_vfio_vma_set_io_mixedmap(struct vm_area_struct *vma,
				     const struct vm_operations_struct *ops,
				     void *data, bool write_combine);
bool dmabuf_vfio_pfns_have_struct_pages(unsigned long pfn, unsigned long nr);
/* pfn_valid() itself, for the KUnit check of the walk above. */
bool dmabuf_vfio_pfn_valid(unsigned long pfn);
int dmabuf_vfio_wc_reserve(phys_addr_t start, u64 size);
void dmabuf_vfio_wc_release(phys_addr_t start, u64 size);

/*
 * A BAR's kernel mapping that reserves no memory type (x86 PAT), in place
 * of vfio-pci-core's ioremap() (see glue.c), and the device fd's BAR
 * mappings, whose huge faults the driver screens (the core's
 * vm_operations_struct is static: only its address can be had, from a VMA).
 */
typedef vm_fault_t (*dmabuf_vfio_bar_huge_fault_fn)(
	struct vfio_pci_core_device *vdev, unsigned int bar,
	struct vm_fault *vmf, unsigned int order);
bool dmabuf_vfio_memtypes_tracked(void);
void __iomem *dmabuf_vfio_bar_map_untyped(struct pci_dev *pdev, int bar);
void dmabuf_vfio_bar_unmap_untyped(void __iomem *map);
void __iomem *dmabuf_vfio_bar_swap_map(struct vfio_pci_core_device *vdev,
				       int bar, void __iomem *map);
bool dmabuf_vfio_ioeventfds_in_use(struct vfio_pci_core_device *vdev);
void dmabuf_vfio_bar_unmap_core(struct pci_dev *pdev, void __iomem *map);
void dmabuf_vfio_bar_release_region(struct pci_dev *pdev, int bar);
void dmabuf_vfio_zap_bar(struct vfio_pci_core_device *vdev, int bar);
int dmabuf_vfio_device_mmap(struct vfio_device *vdev,
			    struct vm_area_struct *vma,
			    dmabuf_vfio_bar_huge_fault_fn huge_fault);
vm_fault_t dmabuf_vfio_core_huge_fault(struct vm_fault *vmf,
				       unsigned int order);

/*
 * may_split of the driver's VMAs (Rust, kernel_ext/mm/virt.rs): takes down
 * a PUD entry across the split, which Linux 7.3 cannot split itself.
 */
int dmabuf_vfio_may_split(struct vm_area_struct *vma, unsigned long addr);
void dmabuf_vfio_vma_start_write(struct vm_area_struct *vma);

/*
 * A count waited on until it drops to zero (wait_var_event() is a macro,
 * the wake needs the fully ordered atomic_long_dec_and_test()).
 */
void dmabuf_vfio_count_wait_zero(atomic_long_t *count);
void dmabuf_vfio_count_dec_wake(atomic_long_t *count);

/* Tracepoints (trace.c, events in dmabuf_vfio_trace.h). */
/*
 * The static keys of the per-mapping events, which Rust tests with one
 * load before it computes their arguments and calls into trace.c
 * (DECLARE_TRACE() declares them the same way).
 */
extern struct tracepoint __tracepoint_dmabuf_vfio_map;
extern struct tracepoint __tracepoint_dmabuf_vfio_unmap;
void dmabuf_vfio_trace_export(struct device *dev, u64 ino, u64 size,
			      u32 nr_ranges);
void dmabuf_vfio_trace_attach(struct device *dev, u64 ino,
			      struct device *importer, const char *map_type);
void dmabuf_vfio_trace_map(struct device *dev, u64 ino, struct device *importer,
			   const char *map_type, u32 nents);
void dmabuf_vfio_trace_unmap(struct device *dev, u64 ino,
			     struct device *importer, const char *map_type);
void dmabuf_vfio_trace_revoke(struct device *dev, u64 ino, const char *cause);
void dmabuf_vfio_trace_unrevoke(struct device *dev, u64 ino, const char *cause);
void dmabuf_vfio_trace_fault(struct device *dev, u64 ino, unsigned long pgoff,
			     unsigned int order, const char *result);

#endif /* DMABUF_VFIO_GLUE_H */
