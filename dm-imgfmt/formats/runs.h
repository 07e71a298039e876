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

struct imgfmt_unit {
	enum imgfmt_run_kind kind;
	u64 start;		/* virtual range of the unit */
	u64 end;
	u64 host;		/* DATA: device offset of start */
	/* COMPRESSED: the unit is the whole cluster, start its beginning. */
	u64 comp_offset;
	u32 comp_length;
	u32 comp_cluster_size;
	enum imgfmt_compression comp_type;
};

/*
 * Describe the unit holding virtual offset pos (start <= pos < end).
 * limit is where the caller stops looking, for formats that copy several
 * table entries at a time.  0, -EWOULDBLOCK (IMGFMT_MAP_NOWAIT and the
 * table is not cached) or -EIO with *err set.
 */
typedef int (*imgfmt_lookup_fn)(void *ctx, u64 pos, u64 limit,
				unsigned int flags, struct imgfmt_unit *u,
				const char **err);

/*
 * The whole of a format's map(): checks the request against the virtual
 * size, then merges units from offset on into *run.  A lookup failure after
 * the first unit ends the run early instead, so that only a request that
 * starts at the bad unit fails.
 */
int imgfmt_map_runs(u64 virtual_size, u64 offset, u64 length,
		    unsigned int flags, imgfmt_lookup_fn lookup, void *ctx,
		    struct imgfmt_run *run, const char **err);

#endif /* IMGFMT_RUNS_H */
