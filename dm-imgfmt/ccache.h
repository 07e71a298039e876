/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Decompressed clusters: a small bounded cache, so that reading a compressed
 * cluster in 4 KiB pieces decompresses it once, not once per piece, and so
 * that clusters decompressed ahead of a sequential reader wait for it there.
 *
 * The cache itself may be used from any number of threads at once.  What
 * decompressing needs per thread (a buffer for the compressed bytes; the
 * host keeps the decompression workspaces) is a decoder; each thread that
 * may fill the cache brings its own.
 */
#ifndef IMGFMT_CCACHE_H
#define IMGFMT_CCACHE_H

#include "imgfmt_format.h"

struct imgfmt_ccache;
struct imgfmt_decoder;
struct imgfmt_mgroup;

/*
 * A cache for clusters of cluster_size bytes read from dev.  Its bound is
 * imgfmt_ccache_bound(cluster_size).  NULL when memory is short.
 */
struct imgfmt_ccache *imgfmt_ccache_create(struct imgfmt_dev *dev,
					   u32 cluster_size);

/*
 * The same in the group g (mcache.h), which the caches of a chain's
 * layers share: its bound is theirs together.  g NULL: a bound of its own.
 */
struct imgfmt_ccache *imgfmt_ccache_create_in(struct imgfmt_mgroup *g,
					      struct imgfmt_dev *dev,
					      u32 cluster_size);

/* The bound for clusters up to max_cluster_size: 4 MiB or four of them. */
u64 imgfmt_ccache_bound(u32 max_cluster_size);
void imgfmt_ccache_destroy(struct imgfmt_ccache *cc);

/* Whole clusters the cache holds at its bound. */
u32 imgfmt_ccache_capacity(struct imgfmt_ccache *cc);

/*
 * A decoder for clusters of up to max_cluster_size bytes, of any cache;
 * NULL when memory is short.
 */
struct imgfmt_decoder *imgfmt_decoder_create(u32 max_cluster_size);
void imgfmt_decoder_destroy(struct imgfmt_decoder *dec);

/*
 * Copy len bytes, starting skip bytes past the queried offset of the
 * COMPRESSED run, out of the decompressed cluster.  A cluster not in the
 * cache is read and decompressed with dec (blocking).  -EIO when the stream
 * is corrupt or lies outside the device.
 */
int imgfmt_ccache_read(struct imgfmt_ccache *cc, struct imgfmt_decoder *dec,
		       const struct imgfmt_run *run, u32 skip, void *out,
		       u32 len);

/*
 * Like imgfmt_ccache_read(), but only from a cluster in the cache; never
 * sleeps: -EWOULDBLOCK when the cluster is not cached.
 */
int imgfmt_ccache_read_cached(struct imgfmt_ccache *cc,
			      const struct imgfmt_run *run, u32 skip,
			      void *out, u32 len);

/*
 * Make sure the cluster of the COMPRESSED run is in the cache, decompressing
 * it with dec when it is not: 1 when it was decompressed, 0 when it was
 * there already (left as it is: neither a hit nor moved in the LRU order),
 * or -errno.
 */
int imgfmt_ccache_prefetch(struct imgfmt_ccache *cc,
			   struct imgfmt_decoder *dec,
			   const struct imgfmt_run *run);

/* Bytes the decoder holds. */
u64 imgfmt_decoder_bytes(const struct imgfmt_decoder *dec);

/* Clusters decompressed so far (by reads and prefetches). */
u64 imgfmt_ccache_decompressed(struct imgfmt_ccache *cc);

#endif /* IMGFMT_CCACHE_H */
