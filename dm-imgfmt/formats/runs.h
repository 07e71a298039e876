/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Building runs out of units, for every format.
 *
 * A format's lookup tells what one unit of the virtual disk is (a cluster,
 * a subcluster, a grain, or a whole unallocated table span); this code asks
 * it unit by unit and merges neighbours into the longest run map() may
 * return: units of one kind, and for data, physically contiguous.
 */
#ifndef IMGFMT_RUNS_H
#define IMGFMT_RUNS_H

#include "../imgfmt_format.h"
#include "../mcache.h"

struct imgfmt_unit {
	enum imgfmt_run_kind kind;
	u64 start;		/* virtual range of the unit */
	u64 end;
	u64 host;		/* DATA: device offset of start */
	bool on_data_dev;	/* DATA: host is on the external data file */
	bool in_place;		/* DATA: writable in place (imgfmt_run) */
	/* COMPRESSED: the unit is the whole cluster, start its beginning. */
	u64 comp_offset;
	u32 comp_length;
	u32 comp_cluster_size;
	enum imgfmt_compression comp_type;
};

/* How far a lookup at pos may copy ahead: units of 2^bits up to limit. */
static inline u32 imgfmt_units_wanted(u64 pos, u64 limit, u32 bits, u32 max)
{
	u64 n = (limit - pos + (1ULL << bits) - 1) >> bits;

	return (u32)(n < max ? n : max);
}

/*
 * Read a table of n big-endian 64-bit entries at off (a QCOW L1 table)
 * into memory that imgfmt_free_large() frees, in CPU order.  0, -ENOMEM,
 * or the read's error; *table is NULL for n == 0.
 */
int imgfmt_load_be64_table(struct imgfmt_dev *dev, u64 off, u32 n,
			   u64 **table);

/*
 * When virtual_size ends inside a sector, bytes of it past the end read
 * as zeroes whatever the image (or a layer below it) holds there: a DATA
 * or COMPRESSED run at offset stops before that sector, or is that one
 * sector, with tail_zero set.
 */
void imgfmt_run_cut_at_last_sector(struct imgfmt_run *run, u64 offset,
				   u64 virtual_size);

/*
 * Report corruption that a lookup met at virtual offset where: rate
 * limited in the log, *err = what, and -EIO to return.
 */
int imgfmt_corrupt(struct imgfmt_image *img, const char *what, u64 where,
		   const char **err);

#endif /* IMGFMT_RUNS_H */
