// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf-vfio-pci: C glue for the Rust driver (see include/dmabuf_vfio_glue.h).
 */
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/vfio_pci_core.h>
#include <linux/vmalloc.h>
#include <linux/wait_bit.h>

#ifdef CONFIG_X86
#include <asm/memtype.h>
#endif

#include "include/dmabuf_vfio_glue.h"

static const struct pci_device_id dmabuf_vfio_pci_table[] = {
	/* Binds nothing by itself: only devices whose driver_override names us. */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, dmabuf_vfio_pci_table);

static dmabuf_vfio_reset_fn dmabuf_vfio_io_frozen;

/*
 * An uncorrectable error froze the link (or it failed for good): recovery
 * resets the device below the driver without reset_prepare, so the driver
 * is told first; vfio-pci-core then signals the user as usual.
 */
static pci_ers_result_t dmabuf_vfio_error_detected(struct pci_dev *pdev,
						   pci_channel_state_t state)
{
	if (state != pci_channel_io_normal)
		dmabuf_vfio_io_frozen(pdev);
	return vfio_pci_core_aer_err_detected(pdev, state);
}

/*
 * vfio-pci-core's handlers have error_detected only; resets of the device
 * that do not come through its fd (sysfs reset, a hot reset issued on a
 * sibling's fd) reach the driver only through reset_prepare/reset_done.
 */
static struct pci_error_handlers dmabuf_vfio_err_handlers = {
	.error_detected		= dmabuf_vfio_error_detected,
};

static struct pci_driver dmabuf_vfio_pci_driver = {
	.name			= "dmabuf-vfio-pci",
	.id_table		= dmabuf_vfio_pci_table,
	.err_handler		= &dmabuf_vfio_err_handlers,
	.driver_managed_dma	= true,
};

int dmabuf_vfio_register_driver(dmabuf_vfio_probe_fn probe,
				dmabuf_vfio_remove_fn remove,
				dmabuf_vfio_reset_fn reset_prepare,
				dmabuf_vfio_reset_fn reset_done,
				dmabuf_vfio_reset_fn io_frozen)
{
	dmabuf_vfio_io_frozen = io_frozen;
	dmabuf_vfio_pci_driver.probe = probe;
	dmabuf_vfio_pci_driver.remove = remove;
	dmabuf_vfio_err_handlers.reset_prepare = reset_prepare;
	dmabuf_vfio_err_handlers.reset_done = reset_done;
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

struct pci_dev *dmabuf_vfio_upstream_bridge(struct pci_dev *pdev)
{
	return pci_upstream_bridge(pdev);
}

u32 dmabuf_vfio_pci_id(struct pci_dev *pdev)
{
	return (u32)pci_domain_nr(pdev->bus) << 16 | pci_dev_id(pdev);
}

u32 dmabuf_vfio_host_bridge_id(struct pci_dev *pdev)
{
	struct pci_host_bridge *host = pci_find_host_bridge(pdev->bus);

	return (u32)pci_domain_nr(host->bus) << 16 | host->bus->number;
}

/*
 * The device drivers/pci/p2pdma.c:pci_host_bridge_dev() checks against the
 * P2PDMA allow list.
 */
bool dmabuf_vfio_host_bridge_root(struct pci_dev *pdev, u16 *vendor,
				  u16 *device)
{
	struct pci_host_bridge *host = pci_find_host_bridge(pdev->bus);
	struct pci_dev *root;

	root = list_first_entry_or_null(&host->bus->devices, struct pci_dev,
					bus_list);
	if (!root)
		return false;
	if (root->devfn != PCI_DEVFN(0, 0) &&
	    pci_pcie_type(root) != PCI_EXP_TYPE_ROOT_PORT)
		return false;
	*vendor = root->vendor;
	*device = root->device;
	return true;
}

bool dmabuf_vfio_cpu_is_amd_zen(void)
{
#ifdef CONFIG_X86
	return boot_cpu_data.x86_vendor == X86_VENDOR_AMD &&
	       boot_cpu_data.x86 >= 0x17;
#else
	return false;
#endif
}

struct pci_dev *dmabuf_vfio_to_pci_dev(struct device *dev)
{
	return dev_is_pci(dev) ? to_pci_dev(dev) : NULL;
}

bool dmabuf_vfio_dma_mapping_error(struct device *dev, dma_addr_t addr)
{
	return dma_mapping_error(dev, addr);
}

bool dmabuf_vfio_dma_use_iova(struct dma_iova_state *state)
{
	return dma_use_iova(state);
}

/*
 * The flags vfio_pci_core_mmap() gives the device fd's BAR mappings, but
 * VM_MIXEDMAP for VM_PFNMAP: vfio type1's VFIO_IOMMU_MAP_DMA follows the
 * PFNs of a VM_PFNMAP VMA into an IOMMU domain and never learns of a
 * revoke.  It refuses any other VMA; GUP refuses VM_IO; every PFN is
 * inserted as a special entry, at any order.  vmf_insert_pfn() requires a
 * VM_MIXEDMAP PFN to have no struct page: see
 * dmabuf_vfio_pfns_have_struct_pages().
 */
void dmabuf_vfio_vma_set_io_mixedmap(struct vm_area_struct *vma,
				     const struct vm_operations_struct *ops,
				     void *data, bool write_combine)
{
	pgprot_t prot = pgprot_decrypted(vma->vm_page_prot);

	vma->vm_page_prot = write_combine ? pgprot_writecombine(prot) :
					    pgprot_noncached(prot);
	vm_flags_set(vma, VM_ALLOW_ANY_UNCACHED | VM_IO | VM_MIXEDMAP |
			  VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_private_data = data;
	vma->vm_ops = ops;
}

/*
 * pfn_valid() is the same for every PFN of a memory subsection, and false
 * for every PFN of a section without a memory map: a BAR away from RAM
 * (the usual case) takes one test per section (128 MiB on x86-64), not a
 * pfn_valid() per subsection (2 MiB; 512 of them for a PUD fault, 15 us
 * of it on Debian's kernel, 0.45 ms under lockdep).
 */
bool dmabuf_vfio_pfns_have_struct_pages(unsigned long pfn, unsigned long nr)
{
	unsigned long end = pfn + nr;

	if (end < pfn)
		return true;
#ifdef CONFIG_SPARSEMEM
	while (pfn < end) {
		/* No section, no memory map, for this PFN or any above. */
		if (pfn_to_section_nr(pfn) >= NR_MEM_SECTIONS)
			return false;
		if (!valid_section(__pfn_to_section(pfn))) {
			pfn = ALIGN(pfn + 1, PAGES_PER_SECTION);
			continue;
		}
		if (pfn_valid(pfn))
			return true;
		pfn = ALIGN(pfn + 1, PAGES_PER_SUBSECTION);
	}
#else
	for (; pfn < end; pfn++)
		if (pfn_valid(pfn))
			return true;
#endif
	return false;
}

bool dmabuf_vfio_pfn_valid(unsigned long pfn)
{
	return pfn_valid(pfn);
}

#ifdef CONFIG_X86
/*
 * What a write-combining mapping of the range gets now: a reservation takes
 * the type another one holds the range with, if compatible (uncached-minus
 * is), without failing, and so does ioremap_wc().
 */
static bool dmabuf_vfio_range_maps_wc(phys_addr_t start, u64 size)
{
	void __iomem *probe = ioremap_wc(start, size);
	unsigned int level;
	pgprotval_t prot = 0;
	pte_t *pte;

	if (!probe)
		return false;
	pte = lookup_address((unsigned long)probe, &level);
	if (pte) {
		prot = pte_flags(*pte);
		if (level != PG_LEVEL_4K)
			prot = protval_large_2_4k(prot);
	}
	iounmap(probe);
	return pte && (prot & _PAGE_CACHE_MASK) ==
		      cachemode2protval(_PAGE_CACHE_MODE_WC);
}
#endif

/*
 * Reserves [start, start + size) write-combining: on x86 with PAT every
 * later mapping of the range gets the type it is reserved with
 * (pfnmap_setup_cachemode()), whatever its protection asks for.
 * -EOPNOTSUPP where write-combining is uncached (x86 without PAT);
 * -EBUSY where another mapping holds the range with another type.
 */
int dmabuf_vfio_wc_reserve(phys_addr_t start, u64 size)
{
	if (pgprot_val(pgprot_writecombine(PAGE_KERNEL)) ==
	    pgprot_val(pgprot_noncached(PAGE_KERNEL)))
		return -EOPNOTSUPP;
	if (arch_io_reserve_memtype_wc(start, size))
		return -EBUSY;
#ifdef CONFIG_X86
	if (pat_enabled() && !dmabuf_vfio_range_maps_wc(start, size)) {
		arch_io_free_memtype_wc(start, size);
		return -EBUSY;
	}
#endif
	return 0;
}

void dmabuf_vfio_wc_release(phys_addr_t start, u64 size)
{
	arch_io_free_memtype_wc(start, size);
}

/*
 * Whether a physical range's memory type is tracked (x86 PAT): every
 * mapping of it then gets the type it is reserved with.
 */
bool dmabuf_vfio_memtypes_tracked(void)
{
#ifdef CONFIG_X86
	return pat_enabled();
#else
	return false;
#endif
}

/*
 * vfio-pci-core ioremap()s every memory BAR of an open device for its
 * read()/write() and ioeventfds; on x86 that reserves the whole BAR
 * uncached-minus, and PAT gives every later mapping of any of its ranges
 * that type.  This maps the same pages the same way (uncached-minus, not
 * encrypted) through vmap_pfn(), which reserves nothing, so that ranges of
 * the BAR can be reserved write-combining.
 */
void __iomem *dmabuf_vfio_bar_map_untyped(struct pci_dev *pdev, int bar)
{
#if defined(CONFIG_X86) && defined(CONFIG_VMAP_PFN)
	resource_size_t start = pci_resource_start(pdev, bar);
	resource_size_t len = pci_resource_len(pdev, bar);
	unsigned long i, nr = len >> PAGE_SHIFT, *pfns;
	void *map;

	if (!(pci_resource_flags(pdev, bar) & IORESOURCE_MEM) || !len ||
	    !PAGE_ALIGNED(start) || !PAGE_ALIGNED(len) || nr > UINT_MAX)
		return IOMEM_ERR_PTR(-EINVAL);
	/* vmap_pfn() maps only frames without a struct page. */
	if (dmabuf_vfio_pfns_have_struct_pages(PHYS_PFN(start), nr))
		return IOMEM_ERR_PTR(-ENXIO);
	pfns = kvmalloc_array(nr, sizeof(*pfns), GFP_KERNEL);
	if (!pfns)
		return IOMEM_ERR_PTR(-ENOMEM);
	for (i = 0; i < nr; i++)
		pfns[i] = PHYS_PFN(start) + i;
	map = vmap_pfn(pfns, nr, pgprot_decrypted(pgprot_noncached(PAGE_KERNEL)));
	kvfree(pfns);
	return map ? (void __iomem *)map : IOMEM_ERR_PTR(-ENOMEM);
#else
	/* The core's mapping stays: it holds the BAR uncached-minus. */
	return IOMEM_ERR_PTR(-EBUSY);
#endif
}

void dmabuf_vfio_bar_unmap_untyped(void __iomem *map)
{
	vunmap((void __force *)map);
}

/*
 * The core reads barmap[] without a lock of its own: the caller keeps its
 * readers (the device fd's read(), write() and VFIO_DEVICE_IOEVENTFD) in a
 * section it can wait for.
 */
void __iomem *dmabuf_vfio_bar_swap_map(struct vfio_pci_core_device *vdev,
				       int bar, void __iomem *map)
{
	void __iomem *old = vdev->barmap[bar];

	WRITE_ONCE(vdev->barmap[bar], map);
	return old;
}

/*
 * Whether the device has ioeventfds: each holds an address in a BAR's
 * kernel mapping (struct vfio_pci_ioeventfd is private to the core, so
 * not which).
 */
bool dmabuf_vfio_ioeventfds_in_use(struct vfio_pci_core_device *vdev)
{
	bool in_use;

	mutex_lock(&vdev->ioeventfds_lock);
	in_use = vdev->ioeventfds_nr > 0;
	mutex_unlock(&vdev->ioeventfds_lock);
	return in_use;
}

void dmabuf_vfio_bar_unmap_core(struct pci_dev *pdev, void __iomem *map)
{
	pci_iounmap(pdev, map);
}

void dmabuf_vfio_bar_release_region(struct pci_dev *pdev, int bar)
{
	pci_release_selected_regions(pdev, 1 << bar);
}

/* Every page of BAR @bar that the device fd's mappings map. */
void dmabuf_vfio_zap_bar(struct vfio_pci_core_device *vdev, int bar)
{
	unmap_mapping_range(vdev->vdev.inode->i_mapping,
			    VFIO_PCI_INDEX_TO_OFFSET(bar),
			    pci_resource_len(vdev->pdev, bar), true);
}

/*
 * The device fd's BAR mappings are vfio-pci-core's, with the huge faults
 * screened by the driver: a PMD or PUD entry takes the memory type of its
 * first page for all of its pages (pfnmap_setup_cachemode_pfn()).  The
 * core's vm_operations_struct is static: its address comes from the first
 * BAR mapping, and the driver's table calls through it.
 */
static const struct vm_operations_struct *dmabuf_vfio_core_vm_ops;
static dmabuf_vfio_bar_huge_fault_fn dmabuf_vfio_bar_huge_fault;

static vm_fault_t dmabuf_vfio_device_page_fault(struct vm_fault *vmf)
{
	return dmabuf_vfio_core_vm_ops->fault(vmf);
}

static vm_fault_t dmabuf_vfio_device_huge_fault(struct vm_fault *vmf,
						unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;

	return dmabuf_vfio_bar_huge_fault(vma->vm_private_data,
		vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT),
		vmf, order);
}

static const struct vm_operations_struct dmabuf_vfio_device_vm_ops = {
	.fault		= dmabuf_vfio_device_page_fault,
	.huge_fault	= dmabuf_vfio_device_huge_fault,
	.may_split	= dmabuf_vfio_may_split,
};

/* Whether the core's table has nothing but the two faults the driver's has. */
static bool dmabuf_vfio_core_vm_ops_wrappable(const struct vm_operations_struct *ops)
{
	const struct vm_operations_struct faults_only = {
		.fault		= ops->fault,
		.huge_fault	= ops->huge_fault,
	};

	return ops->fault && ops->huge_fault &&
	       !memcmp(&faults_only, ops, sizeof(faults_only));
}

int dmabuf_vfio_device_mmap(struct vfio_device *vdev,
			    struct vm_area_struct *vma,
			    dmabuf_vfio_bar_huge_fault_fn huge_fault)
{
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	const struct vm_operations_struct *core_ops;
	int ret = vfio_pci_core_mmap(vdev, vma);

	if (ret || index >= VFIO_PCI_ROM_REGION_INDEX)
		return ret;
	core_ops = READ_ONCE(dmabuf_vfio_core_vm_ops);
	if (!core_ops) {
		if (!dmabuf_vfio_core_vm_ops_wrappable(vma->vm_ops))
			return 0;
		/* Every BAR mapping gets the same table and callback. */
		WRITE_ONCE(dmabuf_vfio_bar_huge_fault, huge_fault);
		cmpxchg(&dmabuf_vfio_core_vm_ops, NULL, vma->vm_ops);
		core_ops = READ_ONCE(dmabuf_vfio_core_vm_ops);
	}
	if (vma->vm_ops == core_ops)
		vma->vm_ops = &dmabuf_vfio_device_vm_ops;
	return 0;
}

/* Only reached through a VMA that dmabuf_vfio_device_mmap() set up. */
vm_fault_t dmabuf_vfio_core_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	return dmabuf_vfio_core_vm_ops->huge_fault(vmf, order);
}

/* vma_start_write() is static inline. */
void dmabuf_vfio_vma_start_write(struct vm_area_struct *vma)
{
	vma_start_write(vma);
}

void dmabuf_vfio_count_wait_zero(atomic_long_t *count)
{
	wait_var_event(count, !atomic_long_read_acquire(count));
}

void dmabuf_vfio_count_dec_wake(atomic_long_t *count)
{
	/* Fully ordered: wake_up_var() then sees any waiter queued before. */
	if (atomic_long_dec_and_test(count))
		wake_up_var(count);
}
