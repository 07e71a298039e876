/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * How large a QCOW2 image can grow while attached read-write: the kernel's
 * writer allocates only at the image's end and never reuses a freed
 * cluster, so one attachment can add at most a new cluster for every
 * cluster of the virtual disk, a new L2 table for every L2 table, refcount
 * blocks for everything and the refcount tables it grows.  Plain
 * arithmetic, no I/O (a host unit test drives it).
 */
#ifndef IMGFMT_GROWTH_H
#define IMGFMT_GROWTH_H

#include <stdbool.h>
#include <stdint.h>

struct qcow2_shape {
	uint64_t image_end;	/* bytes: where the writer starts allocating */
	uint64_t virtual_size;	/* bytes */
	unsigned int cluster_bits;	/* 9 to 21 */
	unsigned int refcount_order;	/* 0 to 6 */
	bool extended_l2;	/* 16-byte L2 entries */
	uint64_t reftable_clusters;	/* of the refcount table now */
};

/*
 * The end of the image after the worst an attachment can do, in *end
 * (a multiple of the cluster size, at least image_end rounded up to one).
 * 0, -EINVAL for a shape outside QCOW2's limits, or -EFBIG when the
 * result would not fit a QCOW2 offset (2^56 bytes).
 */
int qcow2_worst_case_end(const struct qcow2_shape *s, uint64_t *end);

#endif /* IMGFMT_GROWTH_H */
