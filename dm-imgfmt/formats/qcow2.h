/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What QCOW2 offers the helper beyond imgfmt_format.h: the internal
 * snapshot table of an open image (`snapshot -l`, `info`), and the name of
 * the external data file to open.
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

/*
 * Does the QCOW2 image on dev keep its clusters in an external data file
 * (*needed), and what does its data_file extension name it (into name,
 * size bytes with the NUL; "" without one)?  For the helper, which opens
 * that file before imgfmt_open().  Checks the header and the extensions
 * as open does; 0 or -errno with *err set.
 */
int imgfmt_qcow2_data_file(struct imgfmt_dev *dev, bool *needed, char *name,
			   size_t size, const char **err);

#endif /* IMGFMT_QCOW2_H */
