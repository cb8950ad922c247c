// SPDX-License-Identifier: GPL-2.0
/*
 * A dynamic, peer-to-peer dma-buf importer for the dmabuf-vfio-pci selftests.
 *
 * It binds (through driver_override) to QEMU edu devices and imports dma-bufs
 * on their behalf, the way a P2P-capable driver does: dma_buf_dynamic_attach()
 * with invalidate_mappings, map under the reservation lock, and DMA by the
 * edu engine from the addresses it was given.  It counts invalidations and
 * unmaps, and can hold a mapping across an invalidation to prove that the
 * exporter waits.  Userspace drives it through /dev/dmabuf_test_importer.
 *
 * /dev/dmabuf_test_stall (see the header) stops a kernel copy from user
 * memory at a page of the test's choosing.
 */
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "dmabuf_test_importer.h"

MODULE_IMPORT_NS("DMA_BUF");

#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_COUNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_DMA_START	0x1
#define EDU_DMA_TO_RAM	0x2
#define EDU_BUFFER	0x40000
#define EDU_BUFFER_SIZE	4096
/* QEMU's edu rejects (and aborts on) a transfer that ends at the buffer end. */
#define EDU_DMA_MAX	2048

struct edu {
	struct list_head node;
	struct pci_dev *pdev;
	void __iomem *regs;
	struct mutex dma_lock;	/* one transfer at a time */
	void *bounce;
	dma_addr_t bounce_dma;
};

static LIST_HEAD(edus);
static DEFINE_MUTEX(edus_lock);

struct importer {
	struct edu *edu;
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;		/* under the dma-buf's resv */
	u32 flags;
	u32 defer_ms;
	/*
	 * IMPORTER_DEFER: the unmap defer_ms after the invalidation, by the
	 * module's own kthread (see deferred_unmaps).
	 */
	struct list_head deferred;	/* on deferred_unmaps, under deferred_lock */
	ktime_t unmap_at;		/* under deferred_lock */
	atomic_t invalidations;
	atomic_t unmaps;
	u64 invalidated_ns;		/* under the dma-buf's resv */
	u64 unmapped_ns;		/* under the dma-buf's resv */
};

static void importer_unmap_locked(struct importer *imp)
{
	dma_resv_assert_held(imp->dmabuf->resv);
	if (!imp->sgt)
		return;
	dma_buf_unmap_attachment(imp->attach, imp->sgt, DMA_BIDIRECTIONAL);
	imp->sgt = NULL;
	imp->unmapped_ns = ktime_get_ns();
	atomic_inc(&imp->unmaps);
}

/*
 * Deferred unmaps, earliest first, done by one kthread worker that sleeps
 * until the first one is due: a workqueue's pool starts and retires
 * workers by its own history, which a benchmark's boots do not share, and
 * a delayed work waits for the next jiffy too (0-1 ms more, by the tick's
 * phase).  One timer is armed at a time.  An hrtimer per importer, 64 x
 * 16 of them expiring microseconds apart, kept hrtimer_interrupt() looping
 * until its hang protection delayed the next event by the longest
 * interrupt the CPU had ever taken: late unmaps whose lateness grew with
 * the boot's history.
 */
static LIST_HEAD(deferred_unmaps);
static DEFINE_SPINLOCK(deferred_lock);
static struct kthread_worker *deferred_unmapper;
static struct kthread_work deferred_unmap_work;

static void importer_deferred_unmaps(struct kthread_work *work)
{
	for (;;) {
		struct importer *imp;
		ktime_t at;

		spin_lock(&deferred_lock);
		imp = list_first_entry_or_null(&deferred_unmaps, struct importer, deferred);
		if (!imp) {
			spin_unlock(&deferred_lock);
			return;
		}
		at = imp->unmap_at;
		if (ktime_before(ktime_get(), at)) {
			/* An earlier deadline queued meanwhile wakes us. */
			set_current_state(TASK_UNINTERRUPTIBLE);
			spin_unlock(&deferred_lock);
			schedule_hrtimeout(&at, HRTIMER_MODE_ABS);
			continue;
		}
		list_del_init(&imp->deferred);
		spin_unlock(&deferred_lock);

		/* importer_detach() waits for this before it frees imp. */
		dma_resv_lock(imp->dmabuf->resv, NULL);
		importer_unmap_locked(imp);
		dma_resv_unlock(imp->dmabuf->resv);
	}
}

/*
 * Queues imp's unmap defer_ms from now, in deadline order.  Out of line:
 * inlined, it made the invalidation of every importer, the ones that
 * unmap at once too, save more registers (0.02 us an importer on both
 * sides of the benchmark).
 */
static noinline void importer_defer_unmap(struct importer *imp)
{
	struct importer *pos;
	bool first;

	spin_lock(&deferred_lock);
	if (!list_empty(&imp->deferred)) {
		spin_unlock(&deferred_lock);
		return;
	}
	imp->unmap_at = ktime_add_ms(ktime_get(), imp->defer_ms);
	list_for_each_entry_reverse(pos, &deferred_unmaps, deferred)
		if (!ktime_before(imp->unmap_at, pos->unmap_at))
			break;
	list_add(&imp->deferred, &pos->deferred);
	first = deferred_unmaps.next == &imp->deferred;
	spin_unlock(&deferred_lock);
	/*
	 * The worker runs until the list is empty: only a new first entry
	 * needs it started, or woken from a longer sleep.
	 */
	if (first) {
		kthread_queue_work(deferred_unmapper, &deferred_unmap_work);
		wake_up_process(deferred_unmapper->task);
	}
}

static void importer_invalidate(struct dma_buf_attachment *attach)
{
	struct importer *imp = attach->importer_priv;

	atomic_inc(&imp->invalidations);
	imp->invalidated_ns = ktime_get_ns();
	if (imp->flags & IMPORTER_DEFER) {
		/* Nothing to give back, nothing to wait for (an un-revoke). */
		if (imp->sgt)
			importer_defer_unmap(imp);
	} else if (!(imp->flags & IMPORTER_HOLD)) {
		importer_unmap_locked(imp);
	}
}

static const struct dma_buf_attach_ops importer_revocable_ops = {
	.allow_peer2peer = true,
	.invalidate_mappings = importer_invalidate,
};

static const struct dma_buf_attach_ops importer_p2p_pinned_ops = {
	.allow_peer2peer = true,
};

static const struct dma_buf_attach_ops importer_revocable_no_p2p_ops = {
	.invalidate_mappings = importer_invalidate,
};

static struct edu *edu_find(const char *bdf)
{
	struct edu *edu;

	list_for_each_entry(edu, &edus, node)
		if (!strcmp(pci_name(edu->pdev), bdf))
			return edu;
	return NULL;
}

static int importer_attach(struct importer *imp, void __user *arg)
{
	const struct dma_buf_attach_ops *ops;
	struct importer_attach req;
	struct dma_buf_attachment *attach;
	struct dma_buf *dmabuf;
	struct edu *edu;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	req.bdf[sizeof(req.bdf) - 1] = '\0';
	if (imp->attach)
		return -EBUSY;

	switch (req.flags & (IMPORTER_P2P | IMPORTER_REVOCABLE)) {
	case IMPORTER_P2P | IMPORTER_REVOCABLE:
		ops = &importer_revocable_ops;
		break;
	case IMPORTER_P2P:
		ops = &importer_p2p_pinned_ops;
		break;
	case IMPORTER_REVOCABLE:
		ops = &importer_revocable_no_p2p_ops;
		break;
	default:
		ops = NULL;
		break;
	}

	mutex_lock(&edus_lock);
	edu = edu_find(req.bdf);
	if (edu)
		get_device(&edu->pdev->dev);
	mutex_unlock(&edus_lock);
	if (!edu)
		return -ENODEV;

	dmabuf = dma_buf_get(req.dmabuf_fd);
	if (IS_ERR(dmabuf)) {
		put_device(&edu->pdev->dev);
		return PTR_ERR(dmabuf);
	}
	imp->flags = req.flags;
	imp->defer_ms = req.defer_ms;
	if (ops)
		attach = dma_buf_dynamic_attach(dmabuf, &edu->pdev->dev, ops, imp);
	else
		attach = dma_buf_attach(dmabuf, &edu->pdev->dev);
	if (IS_ERR(attach)) {
		dma_buf_put(dmabuf);
		put_device(&edu->pdev->dev);
		return PTR_ERR(attach);
	}
	imp->edu = edu;
	imp->dmabuf = dmabuf;
	imp->attach = attach;
	return 0;
}

static int importer_map(struct importer *imp, void __user *arg)
{
	struct importer_map *out;
	struct scatterlist *sg;
	struct sg_table *sgt;
	int ret = 0, i;

	if (!imp->attach)
		return -ENOTCONN;
	out = kzalloc_obj(*out);
	if (!out)
		return -ENOMEM;

	dma_resv_lock(imp->dmabuf->resv, NULL);
	if (!imp->sgt) {
		sgt = dma_buf_map_attachment(imp->attach, DMA_BIDIRECTIONAL);
		if (IS_ERR(sgt))
			ret = PTR_ERR(sgt);
		else
			imp->sgt = sgt;
	}
	if (!ret) {
		for_each_sgtable_dma_sg(imp->sgt, sg, i) {
			if (i < IMPORTER_MAX_ENTRIES) {
				out->entries[i].addr = sg_dma_address(sg);
				out->entries[i].len = sg_dma_len(sg);
			}
			out->total += sg_dma_len(sg);
		}
		out->nents = imp->sgt->nents;
	}
	dma_resv_unlock(imp->dmabuf->resv);

	if (!ret && copy_to_user(arg, out, sizeof(*out)))
		ret = -EFAULT;
	kfree(out);
	return ret;
}

static int importer_unmap(struct importer *imp)
{
	if (!imp->attach)
		return -ENOTCONN;
	dma_resv_lock(imp->dmabuf->resv, NULL);
	importer_unmap_locked(imp);
	dma_resv_unlock(imp->dmabuf->resv);
	return 0;
}

/* The DMA address of buffer byte @offset, from the held mapping. */
static int importer_dma_addr(struct importer *imp, u64 offset, u32 len,
			     dma_addr_t *addr)
{
	struct scatterlist *sg;
	int i;

	for_each_sgtable_dma_sg(imp->sgt, sg, i) {
		if (offset < sg_dma_len(sg)) {
			if (offset + len > sg_dma_len(sg))
				return -EINVAL;	/* keep transfers in one entry */
			*addr = sg_dma_address(sg) + offset;
			return 0;
		}
		offset -= sg_dma_len(sg);
	}
	return -EINVAL;
}

static int edu_dma(struct edu *edu, u64 src, u64 dst, u32 len, u32 cmd)
{
	int ms;

	writeq(src, edu->regs + EDU_DMA_SRC);
	writeq(dst, edu->regs + EDU_DMA_DST);
	writeq(len, edu->regs + EDU_DMA_COUNT);
	writeq(cmd | EDU_DMA_START, edu->regs + EDU_DMA_CMD);
	/* QEMU completes edu DMA from a 100 ms timer. */
	for (ms = 0; ms < 5000; ms += 20) {
		if (!(readq(edu->regs + EDU_DMA_CMD) & EDU_DMA_START))
			return 0;
		msleep(20);
	}
	return -ETIMEDOUT;
}

static int importer_dma_read(struct importer *imp, void __user *arg)
{
	struct importer_dma_read *req;
	struct edu *edu = imp->edu;
	dma_addr_t src;
	int ret;

	if (!imp->attach)
		return -ENOTCONN;
	req = kzalloc_obj(*req);
	if (!req)
		return -ENOMEM;
	if (copy_from_user(req, arg, offsetof(struct importer_dma_read, data))) {
		ret = -EFAULT;
		goto out;
	}
	if (!req->len || req->len > EDU_DMA_MAX) {
		ret = -EINVAL;
		goto out;
	}

	/* The mapping stays valid while the reservation lock is held. */
	dma_resv_lock(imp->dmabuf->resv, NULL);
	ret = imp->sgt ? importer_dma_addr(imp, req->offset, req->len, &src) :
			 -ENOTCONN;
	if (!ret) {
		mutex_lock(&edu->dma_lock);
		/* Peer BAR -> edu buffer, then edu buffer -> our RAM. */
		ret = edu_dma(edu, src, EDU_BUFFER, req->len, 0);
		if (!ret)
			ret = edu_dma(edu, EDU_BUFFER, edu->bounce_dma, req->len,
				      EDU_DMA_TO_RAM);
		if (!ret)
			memcpy(req->data, edu->bounce, req->len);
		mutex_unlock(&edu->dma_lock);
	}
	dma_resv_unlock(imp->dmabuf->resv);

	if (!ret && copy_to_user(arg, req, sizeof(*req)))
		ret = -EFAULT;
out:
	kfree(req);
	return ret;
}

static struct pci_dev *pci_dev_by_name(const char *name)
{
	unsigned int domain, bus, dev, fn;

	if (sscanf(name, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4)
		return NULL;
	return pci_get_domain_bus_and_slot(domain, bus, PCI_DEVFN(dev, fn));
}

static int importer_p2p_distance(void __user *arg)
{
	struct importer_p2p_distance req;
	struct pci_dev *provider, *client;
	struct device *dev;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	req.provider[sizeof(req.provider) - 1] = '\0';
	req.client[sizeof(req.client) - 1] = '\0';
	provider = pci_dev_by_name(req.provider);
	client = pci_dev_by_name(req.client);
	if (provider && client) {
		dev = &client->dev;
		req.distance = pci_p2pdma_distance_many(provider, &dev, 1, false);
	}
	pci_dev_put(provider);
	pci_dev_put(client);
	if (!provider || !client)
		return -ENODEV;
	return copy_to_user(arg, &req, sizeof(req)) ? -EFAULT : 0;
}

static void importer_detach(struct importer *imp)
{
	if (!imp->attach)
		return;
	/*
	 * Unmapped first: an invalidation queues only a mapped importer, and
	 * both run under the resv, so none queues it after this.
	 */
	importer_unmap(imp);
	spin_lock(&deferred_lock);
	list_del_init(&imp->deferred);
	spin_unlock(&deferred_lock);
	/*
	 * The worker may have taken it off the list already.  Not under the
	 * resv: the worker takes it.
	 */
	kthread_flush_work(&deferred_unmap_work);
	dma_buf_detach(imp->dmabuf, imp->attach);
	dma_buf_put(imp->dmabuf);
	put_device(&imp->edu->pdev->dev);
	imp->attach = NULL;
	imp->dmabuf = NULL;
	imp->edu = NULL;
}

static long importer_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	struct importer *imp = file->private_data;
	struct importer_status st;

	switch (cmd) {
	case IMPORTER_ATTACH:
		return importer_attach(imp, (void __user *)arg);
	case IMPORTER_MAP:
		return importer_map(imp, (void __user *)arg);
	case IMPORTER_UNMAP:
		return importer_unmap(imp);
	case IMPORTER_STATUS:
		memset(&st, 0, sizeof(st));
		/*
		 * One snapshot under the resv: an exporter's wait may end in
		 * the unmap call, before the count here is raised.
		 */
		if (imp->attach)
			dma_resv_lock(imp->dmabuf->resv, NULL);
		st.invalidations = atomic_read(&imp->invalidations);
		st.unmaps = atomic_read(&imp->unmaps);
		if (imp->attach) {
			st.mapped = !!imp->sgt;
			st.invalidated_ns = imp->invalidated_ns;
			st.unmapped_ns = imp->unmapped_ns;
			dma_resv_unlock(imp->dmabuf->resv);
		}
		return copy_to_user((void __user *)arg, &st, sizeof(st)) ?
			       -EFAULT : 0;
	case IMPORTER_DMA_READ:
		return importer_dma_read(imp, (void __user *)arg);
	case IMPORTER_DETACH:
		importer_detach(imp);
		return 0;
	case IMPORTER_P2P_DISTANCE:
		return importer_p2p_distance((void __user *)arg);
	}
	return -ENOTTY;
}

static int importer_open(struct inode *inode, struct file *file)
{
	struct importer *imp = kzalloc_obj(*imp);

	if (!imp)
		return -ENOMEM;
	INIT_LIST_HEAD(&imp->deferred);
	file->private_data = imp;
	return 0;
}

static int importer_release(struct inode *inode, struct file *file)
{
	struct importer *imp = file->private_data;

	importer_detach(imp);
	kfree(imp);
	return 0;
}

static const struct file_operations importer_fops = {
	.owner = THIS_MODULE,
	.open = importer_open,
	.release = importer_release,
	.unlocked_ioctl = importer_ioctl,
};

static struct miscdevice importer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dmabuf_test_importer",
	.fops = &importer_fops,
};

struct stall {
	struct page *pages[STALL_PAGES];
	unsigned long armed;	/* pages whose faults block */
	long blocked;		/* the page a fault blocks on, or -1 */
	wait_queue_head_t wq;
};

static bool stall_blocked(struct stall *s)
{
	long page = READ_ONCE(s->blocked);

	return page >= 0 && test_bit(page, &s->armed);
}

static vm_fault_t stall_fault(struct vm_fault *vmf)
{
	struct stall *s = vmf->vma->vm_private_data;
	pgoff_t page = vmf->pgoff;

	if (page >= STALL_PAGES)
		return VM_FAULT_SIGBUS;
	if (test_bit(page, &s->armed)) {
		WRITE_ONCE(s->blocked, page);
		wake_up_all(&s->wq);
		if (wait_event_killable(s->wq, !test_bit(page, &s->armed)))
			return VM_FAULT_SIGBUS;
		cmpxchg(&s->blocked, page, -1);
	}
	get_page(s->pages[page]);
	vmf->page = s->pages[page];
	return 0;
}

static const struct vm_operations_struct stall_vm_ops = {
	.fault = stall_fault,
};

static int stall_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &stall_vm_ops;
	vma->vm_private_data = file->private_data;
	return 0;
}

static long stall_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct stall *s = file->private_data;
	u32 val;
	int ret;

	switch (cmd) {
	case STALL_ARM:
		if (get_user(val, (u32 __user *)arg))
			return -EFAULT;
		for (int i = 0; i < STALL_PAGES; i++)
			if (val & (1u << i))
				set_bit(i, &s->armed);
		return 0;
	case STALL_WAIT:
		ret = wait_event_interruptible(s->wq, stall_blocked(s));
		return ret ? ret : READ_ONCE(s->blocked);
	case STALL_RELEASE:
		if (get_user(val, (u32 __user *)arg))
			return -EFAULT;
		if (val >= STALL_PAGES)
			return -EINVAL;
		clear_bit(val, &s->armed);
		wake_up_all(&s->wq);
		return 0;
	}
	return -ENOTTY;
}

static int stall_release(struct inode *inode, struct file *file)
{
	struct stall *s = file->private_data;

	/* Mappings hold their own page references, and the file. */
	for (int i = 0; i < STALL_PAGES; i++)
		put_page(s->pages[i]);
	kfree(s);
	return 0;
}

static int stall_open(struct inode *inode, struct file *file)
{
	struct stall *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return -ENOMEM;
	for (int i = 0; i < STALL_PAGES; i++) {
		s->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!s->pages[i]) {
			while (i--)
				put_page(s->pages[i]);
			kfree(s);
			return -ENOMEM;
		}
	}
	s->blocked = -1;
	init_waitqueue_head(&s->wq);
	file->private_data = s;
	return 0;
}

static const struct file_operations stall_fops = {
	.owner = THIS_MODULE,
	.open = stall_open,
	.release = stall_release,
	.mmap = stall_mmap,
	.unlocked_ioctl = stall_ioctl,
};

static struct miscdevice stall_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dmabuf_test_stall",
	.fops = &stall_fops,
};

static int edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct edu *edu;
	int ret;

	edu = devm_kzalloc(&pdev->dev, sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	edu->regs = pcim_iomap_region(pdev, 0, "dmabuf-test-importer");
	if (IS_ERR(edu->regs))
		return PTR_ERR(edu->regs);
	edu->bounce = dmam_alloc_coherent(&pdev->dev, EDU_BUFFER_SIZE,
					  &edu->bounce_dma, GFP_KERNEL);
	if (!edu->bounce)
		return -ENOMEM;
	pci_set_master(pdev);
	mutex_init(&edu->dma_lock);
	edu->pdev = pdev;
	pci_set_drvdata(pdev, edu);
	mutex_lock(&edus_lock);
	list_add(&edu->node, &edus);
	mutex_unlock(&edus_lock);
	return 0;
}

static void edu_remove(struct pci_dev *pdev)
{
	struct edu *edu = pci_get_drvdata(pdev);

	mutex_lock(&edus_lock);
	list_del(&edu->node);
	mutex_unlock(&edus_lock);
}

static const struct pci_device_id edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8), .override_only = 1 },
	{}
};

static struct pci_driver edu_driver = {
	.name = "dmabuf-test-importer",
	.id_table = edu_ids,
	.probe = edu_probe,
	.remove = edu_remove,
	/*
	 * An edu that is a function of a multifunction device shares its
	 * IOMMU group with the exporter's function; vfio may only own that
	 * group when this driver does not claim the default DMA domain.
	 */
	.driver_managed_dma = true,
};

static int __init importer_init(void)
{
	int ret;

	kthread_init_work(&deferred_unmap_work, importer_deferred_unmaps);
	deferred_unmapper = kthread_run_worker(0, "dmabuf_test_unmap");
	if (IS_ERR(deferred_unmapper))
		return PTR_ERR(deferred_unmapper);
	ret = pci_register_driver(&edu_driver);
	if (ret)
		goto err_worker;
	ret = misc_register(&importer_misc);
	if (ret)
		goto err_driver;
	ret = misc_register(&stall_misc);
	if (ret)
		goto err_importer;
	return 0;

err_importer:
	misc_deregister(&importer_misc);
err_driver:
	pci_unregister_driver(&edu_driver);
err_worker:
	kthread_destroy_worker(deferred_unmapper);
	return ret;
}

static void __exit importer_exit(void)
{
	misc_deregister(&stall_misc);
	misc_deregister(&importer_misc);
	pci_unregister_driver(&edu_driver);
	kthread_destroy_worker(deferred_unmapper);
}

module_init(importer_init);
module_exit(importer_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test dma-buf importer for dmabuf-vfio-pci selftests");
