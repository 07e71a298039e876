// SPDX-License-Identifier: GPL-2.0-only
/*
 * Decompressed cluster cache, shared by the kernel target and userspace.
 * It is a metadata cache (mcache.c) whose tables are made by reading a
 * compressed stream and decompressing it.  A table is named by all that
 * decides what it holds: the stream's offset, its length and its
 * compression type (the cluster size is the cache's).  Two L2 entries may
 * point at one offset with different lengths, and a stream cut short by
 * the shorter one must fail every time, whatever was read before.
 */
#include "ccache.h"
#include "mcache.h"

#define CCACHE_MIN_BYTES	(4ULL << 20)
#define CCACHE_MIN_CLUSTERS	4
/* Largest device read alignment the decoders' input buffers allow for. */
#define CCACHE_MAX_ALIGN	4096U

struct imgfmt_ccache {
	struct imgfmt_dev *dev;
	struct imgfmt_mcache *mc;
	u32 cluster_size;
	/* Longest compressed stream read for one cluster. */
	u32 in_size;
};

struct imgfmt_decoder {
	/* Compressed input: in_size plus room to widen it to aligned reads. */
	u8 *in;
	u32 in_size;
};

/* The fill context: the cache, the decoder and the run being read. */
struct ccache_fill {
	struct imgfmt_ccache *cc;
	struct imgfmt_decoder *dec;
	const struct imgfmt_run *run;
};

/* Deflate and zstd never grow data by half; QCOW2 allows 2x. */
static u32 ccache_in_size(u32 cluster_size)
{
	return 2 * cluster_size + 4096;
}

static bool ccache_cluster_size_ok(u32 cluster_size)
{
	return cluster_size && cluster_size % 512 == 0 &&
	       cluster_size <= (64U << 20);
}

u64 imgfmt_ccache_bound(u32 max_cluster_size)
{
	return max_t(u64, CCACHE_MIN_BYTES,
		     (u64)CCACHE_MIN_CLUSTERS * max_cluster_size);
}

struct imgfmt_ccache *imgfmt_ccache_create_in(struct imgfmt_mgroup *g,
					      struct imgfmt_dev *dev,
					      u32 cluster_size)
{
	struct imgfmt_ccache *cc;

	if (!ccache_cluster_size_ok(cluster_size))
		return NULL;
	cc = kzalloc(sizeof(*cc), GFP_KERNEL);
	if (!cc)
		return NULL;
	cc->dev = dev;
	cc->cluster_size = cluster_size;
	cc->in_size = ccache_in_size(cluster_size);
	cc->mc = imgfmt_mcache_for(g, dev, cluster_size,
				   imgfmt_ccache_bound(cluster_size));
	if (!cc->mc) {
		kfree(cc);
		return NULL;
	}
	return cc;
}

struct imgfmt_ccache *imgfmt_ccache_create(struct imgfmt_dev *dev,
					   u32 cluster_size)
{
	return imgfmt_ccache_create_in(NULL, dev, cluster_size);
}

void imgfmt_ccache_destroy(struct imgfmt_ccache *cc)
{
	if (!cc)
		return;
	imgfmt_mcache_destroy(cc->mc);
	kfree(cc);
}

u32 imgfmt_ccache_capacity(struct imgfmt_ccache *cc)
{
	struct imgfmt_mcache_stats st;

	imgfmt_mcache_get_stats(cc->mc, &st);
	return (u32)min_t(u64, st.limit_bytes / cc->cluster_size, U32_MAX);
}

struct imgfmt_decoder *imgfmt_decoder_create(u32 max_cluster_size)
{
	struct imgfmt_decoder *dec;

	if (!ccache_cluster_size_ok(max_cluster_size))
		return NULL;
	dec = kzalloc(sizeof(*dec), GFP_KERNEL);
	if (!dec)
		return NULL;
	dec->in_size = ccache_in_size(max_cluster_size);
	dec->in = imgfmt_alloc_large((size_t)dec->in_size +
				     2 * CCACHE_MAX_ALIGN);
	if (!dec->in) {
		imgfmt_decoder_destroy(dec);
		return NULL;
	}
	return dec;
}

void imgfmt_decoder_destroy(struct imgfmt_decoder *dec)
{
	if (!dec)
		return;
	imgfmt_free_large(dec->in);
	kfree(dec);
}

/*
 * Read the len compressed bytes at off into the decoder's buffer and return
 * where they start there.  The read is widened to the device's alignment
 * when that stays on the device, so that it needs no bounce buffer.
 */
static int ccache_read_stream(struct imgfmt_ccache *cc,
			      struct imgfmt_decoder *dec, u64 off, u32 len,
			      const u8 **stream)
{
	u32 align = cc->dev->read_align;
	u64 start, end;
	int r;

	if (align > 1 && align <= CCACHE_MAX_ALIGN && !(align & (align - 1)) &&
	    off <= cc->dev->size && len <= cc->dev->size - off) {
		start = off & ~(u64)(align - 1);
		end = (off + len + align - 1) & ~(u64)(align - 1);
		if (end <= cc->dev->size) {
			r = imgfmt_dev_read(cc->dev, start, dec->in,
					    end - start);
			*stream = dec->in + (off - start);
			return r;
		}
	}
	*stream = dec->in;
	return imgfmt_dev_read(cc->dev, off, dec->in, len);
}

static struct imgfmt_mkey ccache_key(const struct imgfmt_run *run)
{
	struct imgfmt_mkey k = {
		.key = run->comp_offset,
		.tag = (u64)run->comp_type << 32 | run->comp_length,
	};

	return k;
}

/*
 * Decompress the run's cluster into buf.  What the stream produced is the
 * table's valid prefix: all of it for QCOW and QCOW2 (their streams must
 * fill the cluster), possibly less for a VMDK grain, whose reads past it
 * fail as QEMU's do.
 */
static int ccache_fill(void *ctx, u64 key, void *buf, u32 len)
{
	struct ccache_fill *f = ctx;
	struct imgfmt_ccache *cc = f->cc;
	u32 in_len = f->run->comp_length;
	const u8 *stream;
	long produced;
	int r;

	if (len != cc->cluster_size || !in_len || in_len > cc->in_size ||
	    in_len > f->dec->in_size)
		return -EIO;
	r = ccache_read_stream(cc, f->dec, key, in_len, &stream);
	if (r)
		return r;
	produced = imgfmt_decompress(f->run->comp_type, stream, in_len, buf,
				     len);
	if (produced < 0)
		return (int)produced;
	if (produced > len ||
	    (f->run->comp_type != IMGFMT_COMP_ZLIB && produced != len))
		return -EIO;
	memset((u8 *)buf + produced, 0, len - produced);
	return (int)produced;
}

static bool ccache_run_ok(struct imgfmt_ccache *cc,
			  const struct imgfmt_run *run)
{
	return run->kind == IMGFMT_RUN_COMPRESSED &&
	       run->comp_cluster_size == cc->cluster_size &&
	       run->comp_skip <= cc->cluster_size;
}

int imgfmt_ccache_read(struct imgfmt_ccache *cc, struct imgfmt_decoder *dec,
		       const struct imgfmt_run *run, u32 skip, void *out,
		       u32 len)
{
	struct ccache_fill f = { .cc = cc, .dec = dec, .run = run };
	struct imgfmt_mkey k = ccache_key(run);
	u64 pos = (u64)run->comp_skip + skip;

	if (!ccache_run_ok(cc, run) || pos > cc->cluster_size ||
	    len > cc->cluster_size - pos)
		return -EIO;
	return imgfmt_mcache_read_fill(cc->mc, &k, (u32)pos, out, len,
				       ccache_fill, &f);
}

int imgfmt_ccache_read_cached(struct imgfmt_ccache *cc,
			      const struct imgfmt_run *run, u32 skip,
			      void *out, u32 len)
{
	struct imgfmt_mkey k = ccache_key(run);
	u64 pos = (u64)run->comp_skip + skip;

	if (!ccache_run_ok(cc, run) || pos > cc->cluster_size ||
	    len > cc->cluster_size - pos)
		return -EIO;
	return imgfmt_mcache_lookup(cc->mc, &k, (u32)pos, out, len);
}

int imgfmt_ccache_prefetch(struct imgfmt_ccache *cc,
			   struct imgfmt_decoder *dec,
			   const struct imgfmt_run *run)
{
	struct ccache_fill f = { .cc = cc, .dec = dec, .run = run };
	struct imgfmt_mkey k = ccache_key(run);

	if (!ccache_run_ok(cc, run))
		return -EIO;
	return imgfmt_mcache_prefetch_fill(cc->mc, &k, ccache_fill, &f);
}

u64 imgfmt_decoder_bytes(const struct imgfmt_decoder *dec)
{
	return sizeof(*dec) + dec->in_size + 2 * CCACHE_MAX_ALIGN;
}

u64 imgfmt_ccache_decompressed(struct imgfmt_ccache *cc)
{
	struct imgfmt_mcache_stats st;

	imgfmt_mcache_get_stats(cc->mc, &st);
	return st.misses;
}
