/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Decompressed clusters: a small bounded cache, so that reading a compressed
 * cluster in 4 KiB pieces decompresses it once, not once per piece.
 */
#ifndef IMGFMT_CCACHE_H
#define IMGFMT_CCACHE_H

#include "imgfmt_format.h"

struct imgfmt_ccache;

/*
 * A cache for clusters of cluster_size bytes read from dev.  Its bound is
 * the larger of 4 MiB and four clusters.  NULL when memory is short.
 */
struct imgfmt_ccache *imgfmt_ccache_create(struct imgfmt_dev *dev,
					   u32 cluster_size);
void imgfmt_ccache_destroy(struct imgfmt_ccache *cc);

/*
 * Copy len bytes, starting skip bytes past the queried offset of the
 * COMPRESSED run, out of the decompressed cluster.  Blocks to read and
 * decompress a cluster not in the cache; calls that may fill must be
 * serialized by the caller (one worker per device in the kernel).  -EIO
 * when the stream is corrupt or lies outside the device.
 */
int imgfmt_ccache_read(struct imgfmt_ccache *cc, const struct imgfmt_run *run,
		       u32 skip, void *out, u32 len);

/* Clusters decompressed so far. */
u64 imgfmt_ccache_decompressed(struct imgfmt_ccache *cc);

#endif /* IMGFMT_CCACHE_H */
