/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of dmabuf-vfio-pci (trace.c defines them; the Rust side calls
 * the dmabuf_vfio_trace_*() wrappers).  A buffer is named by its dma-buf's
 * inode number, which user space reads with fstat() on the dma-buf fd.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM dmabuf_vfio_pci

#if !defined(_DMABUF_VFIO_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _DMABUF_VFIO_TRACE_H

#include <linux/device.h>
#include <linux/tracepoint.h>

TRACE_EVENT(dmabuf_vfio_export,
	TP_PROTO(struct device *dev, u64 ino, u64 size, u32 nr_ranges),
	TP_ARGS(dev, ino, size, nr_ranges),
	TP_STRUCT__entry(
		__string(dev, dev_name(dev))
		__field(u64, ino)
		__field(u64, size)
		__field(u32, nr_ranges)
	),
	TP_fast_assign(
		__assign_str(dev);
		__entry->ino = ino;
		__entry->size = size;
		__entry->nr_ranges = nr_ranges;
	),
	TP_printk("%s buf=%llu size=%llu ranges=%u", __get_str(dev),
		  __entry->ino, __entry->size, __entry->nr_ranges)
);

DECLARE_EVENT_CLASS(dmabuf_vfio_importer,
	TP_PROTO(struct device *dev, u64 ino, struct device *importer,
		 const char *map_type, u32 nents),
	TP_ARGS(dev, ino, importer, map_type, nents),
	TP_STRUCT__entry(
		__string(dev, dev_name(dev))
		__field(u64, ino)
		__string(importer, dev_name(importer))
		__string(map_type, map_type)
		__field(u32, nents)
	),
	TP_fast_assign(
		__assign_str(dev);
		__entry->ino = ino;
		__assign_str(importer);
		__assign_str(map_type);
		__entry->nents = nents;
	),
	TP_printk("%s buf=%llu importer=%s map_type=%s nents=%u", __get_str(dev),
		  __entry->ino, __get_str(importer), __get_str(map_type),
		  __entry->nents)
);

DEFINE_EVENT(dmabuf_vfio_importer, dmabuf_vfio_attach,
	TP_PROTO(struct device *dev, u64 ino, struct device *importer,
		 const char *map_type, u32 nents),
	TP_ARGS(dev, ino, importer, map_type, nents));
DEFINE_EVENT(dmabuf_vfio_importer, dmabuf_vfio_map,
	TP_PROTO(struct device *dev, u64 ino, struct device *importer,
		 const char *map_type, u32 nents),
	TP_ARGS(dev, ino, importer, map_type, nents));
DEFINE_EVENT(dmabuf_vfio_importer, dmabuf_vfio_unmap,
	TP_PROTO(struct device *dev, u64 ino, struct device *importer,
		 const char *map_type, u32 nents),
	TP_ARGS(dev, ino, importer, map_type, nents));

DECLARE_EVENT_CLASS(dmabuf_vfio_revocation,
	TP_PROTO(struct device *dev, u64 ino, const char *cause),
	TP_ARGS(dev, ino, cause),
	TP_STRUCT__entry(
		__string(dev, dev_name(dev))
		__field(u64, ino)
		__string(cause, cause)
	),
	TP_fast_assign(
		__assign_str(dev);
		__entry->ino = ino;
		__assign_str(cause);
	),
	TP_printk("%s buf=%llu cause=%s", __get_str(dev), __entry->ino,
		  __get_str(cause))
);

DEFINE_EVENT(dmabuf_vfio_revocation, dmabuf_vfio_revoke,
	TP_PROTO(struct device *dev, u64 ino, const char *cause),
	TP_ARGS(dev, ino, cause));
DEFINE_EVENT(dmabuf_vfio_revocation, dmabuf_vfio_unrevoke,
	TP_PROTO(struct device *dev, u64 ino, const char *cause),
	TP_ARGS(dev, ino, cause));

TRACE_EVENT(dmabuf_vfio_fault,
	TP_PROTO(struct device *dev, u64 ino, unsigned long pgoff,
		 unsigned int order, const char *result),
	TP_ARGS(dev, ino, pgoff, order, result),
	TP_STRUCT__entry(
		__string(dev, dev_name(dev))
		__field(u64, ino)
		__field(unsigned long, pgoff)
		__field(unsigned int, order)
		__string(result, result)
	),
	TP_fast_assign(
		__assign_str(dev);
		__entry->ino = ino;
		__entry->pgoff = pgoff;
		__entry->order = order;
		__assign_str(result);
	),
	TP_printk("%s buf=%llu pgoff=%lu order=%u result=%s", __get_str(dev),
		  __entry->ino, __entry->pgoff, __entry->order,
		  __get_str(result))
);

#endif /* _DMABUF_VFIO_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE dmabuf_vfio_trace
#include <trace/define_trace.h>
