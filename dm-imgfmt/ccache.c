// SPDX-License-Identifier: GPL-2.0-only
/*
 * Decompressed cluster cache, shared by the kernel target and userspace.
 * It is a metadata cache (mcache.c) whose tables are made by reading a
 * compressed stream and decompressing it, keyed by the stream's offset.
 */
#include "ccache.h"
#include "mcache.h"

#define CCACHE_MIN_BYTES	(4ULL << 20)
#define CCACHE_MIN_CLUSTERS	4

struct imgfmt_ccache {
	struct imgfmt_dev *dev;
	struct imgfmt_mcache *mc;
	struct imgfmt_decomp *decomp;
	u32 cluster_size;
	/* Compressed input, sized for the largest stream a format may give. */
	u32 in_size;
	u8 *in;
};

/* The fill context: the cache and the run being read. */
struct ccache_fill {
	struct imgfmt_ccache *cc;
	const struct imgfmt_run *run;
};

struct imgfmt_ccache *imgfmt_ccache_create(struct imgfmt_dev *dev,
					   u32 cluster_size)
{
	struct imgfmt_ccache *cc;
	u64 limit;

	if (!cluster_size || cluster_size % 512)
		return NULL;
	cc = kzalloc(sizeof(*cc), GFP_KERNEL);
	if (!cc)
		return NULL;
	cc->dev = dev;
	cc->cluster_size = cluster_size;
	/* Deflate and zstd never grow data by half; QCOW2 allows 2x. */
	cc->in_size = 2 * cluster_size + 4096;
	limit = max_t(u64, CCACHE_MIN_BYTES,
		      (u64)CCACHE_MIN_CLUSTERS * cluster_size);
	cc->mc = imgfmt_mcache_create(dev, cluster_size, limit);
	cc->in = imgfmt_alloc_large(cc->in_size);
	cc->decomp = imgfmt_decomp_create();
	if (!cc->mc || !cc->in || !cc->decomp) {
		imgfmt_ccache_destroy(cc);
		return NULL;
	}
	return cc;
}

void imgfmt_ccache_destroy(struct imgfmt_ccache *cc)
{
	if (!cc)
		return;
	imgfmt_mcache_destroy(cc->mc);
	imgfmt_free_large(cc->in);
	imgfmt_decomp_destroy(cc->decomp);
	kfree(cc);
}

static int ccache_fill(void *ctx, u64 key, void *buf, u32 len)
{
	struct ccache_fill *f = ctx;
	struct imgfmt_ccache *cc = f->cc;
	u32 in_len = min_t(u32, f->run->comp_length, cc->in_size);
	u32 need = f->run->comp_data_size ? f->run->comp_data_size : len;
	long produced;
	int r;

	if (len != cc->cluster_size || !in_len || need > len)
		return -EIO;
	r = imgfmt_dev_read(cc->dev, key, cc->in, in_len);
	if (r)
		return r;
	produced = imgfmt_decompress(cc->decomp, f->run->comp_type, cc->in,
				     in_len, buf, len);
	if (produced < 0)
		return (int)produced;
	if (produced < need)
		return -EIO;
	memset((u8 *)buf + produced, 0, len - produced);
	return 0;
}

int imgfmt_ccache_read(struct imgfmt_ccache *cc, const struct imgfmt_run *run,
		       u32 skip, void *out, u32 len)
{
	struct ccache_fill f = { .cc = cc, .run = run };
	u64 pos = (u64)run->comp_skip + skip;

	if (run->kind != IMGFMT_RUN_COMPRESSED ||
	    run->comp_cluster_size != cc->cluster_size ||
	    pos > cc->cluster_size || len > cc->cluster_size - pos)
		return -EIO;
	return imgfmt_mcache_read_fill(cc->mc, run->comp_offset, (u32)pos, out,
				       len, ccache_fill, &f);
}

u64 imgfmt_ccache_decompressed(struct imgfmt_ccache *cc)
{
	struct imgfmt_mcache_stats st;

	imgfmt_mcache_get_stats(cc->mc, &st);
	return st.misses;
}
