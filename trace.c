// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf-vfio-pci: the tracepoints, and out-of-line wrappers the Rust side
 * calls (trace_*() are static inlines).  A disabled tracepoint costs the
 * call and a static-key test; map and unmap, per importer mapping, test
 * the key in Rust first (kernel_ext/tracepoint.rs).
 */
#define CREATE_TRACE_POINTS
#include "dmabuf_vfio_trace.h"

#include "dmabuf_vfio_glue.h"

void dmabuf_vfio_trace_export(struct device *dev, u64 ino, u64 size,
			      u32 nr_ranges)
{
	trace_dmabuf_vfio_export(dev, ino, size, nr_ranges);
}

void dmabuf_vfio_trace_attach(struct device *dev, u64 ino,
			      struct device *importer, const char *map_type)
{
	trace_dmabuf_vfio_attach(dev, ino, importer, map_type, 0);
}

void dmabuf_vfio_trace_map(struct device *dev, u64 ino, struct device *importer,
			   const char *map_type, u32 nents)
{
	trace_dmabuf_vfio_map(dev, ino, importer, map_type, nents);
}

void dmabuf_vfio_trace_unmap(struct device *dev, u64 ino,
			     struct device *importer, const char *map_type)
{
	trace_dmabuf_vfio_unmap(dev, ino, importer, map_type, 0);
}

void dmabuf_vfio_trace_revoke(struct device *dev, u64 ino, const char *cause)
{
	trace_dmabuf_vfio_revoke(dev, ino, cause);
}

void dmabuf_vfio_trace_unrevoke(struct device *dev, u64 ino, const char *cause)
{
	trace_dmabuf_vfio_unrevoke(dev, ino, cause);
}

void dmabuf_vfio_trace_fault(struct device *dev, u64 ino, unsigned long pgoff,
			     unsigned int order, const char *result)
{
	trace_dmabuf_vfio_fault(dev, ino, pgoff, order, result);
}
