/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What QCOW2 offers beyond imgfmt_format.h: the internal snapshot table of
 * an open image, for the helper's `snapshot -l` and `info`.
 */
#ifndef IMGFMT_QCOW2_H
#define IMGFMT_QCOW2_H

#include "../imgfmt_format.h"

/* One entry of the snapshot table, as QEMU reads it. */
struct imgfmt_qcow2_snapshot {
	u32 index;		/* its place in the table, from 0 */
	u64 l1_offset;
	u32 l1_size;
	u64 vm_state_size;	/* the 64-bit extra field when present */
	u32 date_sec;
	u32 date_nsec;
	u64 vm_clock_nsec;
	/* The snapshot's own virtual size (extra data), if recorded. */
	bool has_disk_size;
	u64 disk_size;
	/* Instructions executed (record/replay), if recorded. */
	bool has_icount;
	u64 icount;
	/*
	 * NUL-terminated; like QEMU, a string ends at its first NUL byte.
	 * Valid only during the callback.
	 */
	const char *id;
	const char *name;
};

/*
 * Call fn for each snapshot of img, in table order, until it returns
 * non-zero (which is returned).  An image that is not QCOW2 has none.
 * On a read failure returns -errno with *err set.
 */
int imgfmt_qcow2_for_each_snapshot(struct imgfmt_image *img,
				   int (*fn)(void *ctx,
					     const struct imgfmt_qcow2_snapshot *sn),
				   void *ctx, const char **err);

#endif /* IMGFMT_QCOW2_H */
