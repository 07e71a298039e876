// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: an arbitrary byte string as the image device.  Detects
 * the format, opens the image and maps ranges all over the virtual disk,
 * cold and warm, checking that every answer stays inside its contract,
 * and decompresses the first compressed clusters through the cluster cache.
 * Then it reads a set of sectors from cold caches in opposite orders, and
 * once more with the caches warm, and aborts unless every pass gives the
 * same bytes and the same errors: a read's result must never depend on
 * what was read before it.  Built with ASan and UBSan, so any out-of-bounds
 * access or overflow in the shared format code is a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccache.h"
#include "imgfmt_format.h"

/* Built once per format with -DFUZZ_FORMAT='"name"'; NULL: detect. */
#ifndef FUZZ_FORMAT
#define FUZZ_FORMAT NULL
#endif

struct mem_dev {
	struct imgfmt_dev dev;
	const u8 *data;
	/* Decompressed-cluster cache, made on the first compressed run. */
	struct imgfmt_ccache *cc;
	struct imgfmt_decoder *dec;
	int decompressed;
	u32 cluster_size;
};

/* Clusters decompressed per input: enough to cover the paths, fast. */
#define FUZZ_MAX_DECOMPRESS	4

static int mem_read(struct imgfmt_dev *dev, u64 off, void *buf, size_t len)
{
	struct mem_dev *m = container_of(dev, struct mem_dev, dev);

	if (off > dev->size || len > dev->size - off)
		abort();	/* imgfmt_dev_read must have refused this */
	memcpy(buf, m->data + off, len);
	return 0;
}

static void check_run(const struct imgfmt_image *img, u64 size, u64 off,
		      u64 len, const struct imgfmt_run *run)
{
	(void)img;
	if (run->length == 0 || run->length > len || run->length % 512)
		abort();
	if (run->kind == IMGFMT_RUN_DATA &&
	    (run->dev_offset % 512 || run->dev_offset > size ||
	     run->length > size - run->dev_offset))
		abort();
	if (run->kind == IMGFMT_RUN_COMPRESSED &&
	    (run->comp_offset >= size || run->comp_length > size - run->comp_offset))
		abort();
	(void)off;
}

/* Read a compressed run through the cluster cache; any result is fine. */
static void read_compressed(struct mem_dev *m, const struct imgfmt_run *run)
{
	static u8 out[64 << 10];
	u32 len;

	if (m->decompressed >= FUZZ_MAX_DECOMPRESS)
		return;
	m->decompressed++;
	if (!m->cc) {
		m->cc = imgfmt_ccache_create(&m->dev, run->comp_cluster_size);
		if (m->cc)
			m->dec = imgfmt_decoder_create(run->comp_cluster_size);
	}
	if (!m->dec)
		return;
	len = run->length < sizeof(out) ? (u32)run->length : sizeof(out);
	if (!imgfmt_ccache_read(m->cc, m->dec, run, 0, out, len) &&
	    imgfmt_ccache_prefetch(m->cc, m->dec, run))
		abort();	/* a cluster just read must be cached */
}

/* Requests of the order check, and a pass's answers to them. */
#define ORDER_REQUESTS		160
/* Decompressed bytes a pass may cost before the check gives up. */
#define ORDER_MAX_DECOMP	(8ULL << 20)

struct order_answer {
	int status;
	u32 sum;
};

/* FNV-1a over a sector: enough to tell two answers apart. */
static u32 sector_sum(const u8 *p, size_t len)
{
	u32 h = 2166136261U;

	while (len--)
		h = (h ^ *p++) * 16777619U;
	return h;
}

/*
 * Read one sector as a reader would: the bytes of its run, or an error.
 * The cache is made with the first compressed run and kept.
 */
static int read_sector(struct imgfmt_image *img, struct mem_dev *m, u64 off,
		       u8 *buf)
{
	struct imgfmt_run run;
	const char *err;
	int r;

	r = imgfmt_map(img, off, 512, 0, &run, &err);
	if (r)
		return r;
	check_run(img, m->dev.size, off, 512, &run);
	memset(buf, 0, 512);
	switch (run.kind) {
	case IMGFMT_RUN_DATA:
		memcpy(buf, m->data + run.dev_offset, 512 - run.tail_zero);
		return 0;
	case IMGFMT_RUN_COMPRESSED:
		if (!m->cc) {
			m->cc = imgfmt_ccache_create(&m->dev,
						     run.comp_cluster_size);
			m->dec = NULL;
			if (m->cc)
				m->dec = imgfmt_decoder_create(
					run.comp_cluster_size);
		}
		if (!m->dec)
			return -ENOMEM;
		r = imgfmt_ccache_read(m->cc, m->dec, &run, 0, buf,
				       512 - run.tail_zero);
		return r;
	default:
		return 0;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/*
 * The first sectors, the last ones, the first of each of the first
 * clusters and some chosen by the input's bytes, sorted: each order then
 * visits a cluster's sectors together.
 */
static unsigned int order_requests(const u8 *data, size_t size, u64 vsize,
				   u32 cluster_size, u64 *req)
{
	unsigned int n = 0, i;
	u64 off;

	for (i = 0; i < 32 && (u64)i * 512 < vsize; i++)
		req[n++] = (u64)i * 512;
	for (i = 1; i < 32 && (u64)i * cluster_size < vsize; i++)
		req[n++] = (u64)i * cluster_size;
	for (i = 1; i <= 64 && (u64)i * 512 <= vsize; i++)
		req[n++] = vsize - (u64)i * 512;
	for (i = 0; i + 8 <= size && n < ORDER_REQUESTS; i += 8) {
		memcpy(&off, data + size - 8 - i, sizeof(off));
		req[n++] = (off % vsize) & ~511ULL;
	}
	qsort(req, n, sizeof(*req), cmp_u64);
	return n;
}

/* One pass over the requests, forwards or backwards. */
static bool order_pass(struct imgfmt_image *img, struct mem_dev *m,
		       const u64 *req, unsigned int n, bool backwards,
		       struct order_answer *ans)
{
	static u8 buf[512];
	unsigned int i, k;
	u64 start = m->cc ? imgfmt_ccache_decompressed(m->cc) : 0;

	for (k = 0; k < n; k++) {
		i = backwards ? n - 1 - k : k;
		ans[i].status = read_sector(img, m, req[i], buf);
		ans[i].sum = ans[i].status ? 0 : sector_sum(buf, 512);
		/* Huge clusters decompressed many times: too slow to go on. */
		if (m->cc && (imgfmt_ccache_decompressed(m->cc) - start) *
			     m->cluster_size > ORDER_MAX_DECOMP)
			return false;
	}
	return true;
}

/* Forget every decompressed cluster. */
static void order_reset_cache(struct mem_dev *m)
{
	imgfmt_decoder_destroy(m->dec);
	imgfmt_ccache_destroy(m->cc);
	m->dec = NULL;
	m->cc = NULL;
}

/*
 * Pass 1 from cold caches forwards, pass 2 from cold caches backwards,
 * pass 3 forwards again with the caches warm from pass 2.  Any difference
 * means a result depended on what had been read before.
 */
static void check_order(const struct imgfmt_format_ops *ops,
			struct mem_dev *m, const u8 *data, size_t size,
			u64 vsize)
{
	static struct order_answer ans[3][ORDER_REQUESTS];
	static u64 req[ORDER_REQUESTS];
	struct imgfmt_open_args args = { .dev = &m->dev,
					 .cache_bytes = 64 << 10,
					 .has_lower = true };
	struct imgfmt_image *img;
	const char *err;
	unsigned int n, i, p;
	bool ok;

	n = order_requests(data, size, vsize, m->cluster_size, req);
	for (p = 0; p < 2; p++) {
		order_reset_cache(m);
		if (imgfmt_open(ops, &args, &img, &err))
			abort();	/* it opened a moment ago */
		ok = order_pass(img, m, req, n, p == 1, ans[p]);
		if (ok && p == 1)
			ok = order_pass(img, m, req, n, false, ans[2]);
		imgfmt_close(img);
		if (!ok)
			return;
	}
	for (p = 1; p < 3; p++) {
		for (i = 0; i < n; i++) {
			/* -ENOMEM may come and go; anything else repeats. */
			if (ans[0][i].status == -ENOMEM ||
			    ans[p][i].status == -ENOMEM)
				continue;
			if (ans[0][i].status == ans[p][i].status &&
			    ans[0][i].sum == ans[p][i].sum)
				continue;
			fprintf(stderr, "sector %llu: pass 1 %d/%08x, pass %u %d/%08x\n",
				(unsigned long long)req[i], ans[0][i].status,
				ans[0][i].sum, p + 1, ans[p][i].status,
				ans[p][i].sum);
			abort();
		}
	}
}

/* Map [off, off + len) completely, run by run. */
static void map_range(struct imgfmt_image *img, struct mem_dev *m, u64 off,
		      u64 len, unsigned int flags)
{
	struct imgfmt_run run;
	const char *err;
	int steps = 0;

	while (len && steps++ < 4096) {
		if (imgfmt_map(img, off, len, flags, &run, &err)) {
			/* Skip the failing sector, as a reader would. */
			off += 512;
			len -= 512;
			continue;
		}
		check_run(img, m->dev.size, off, len, &run);
		if (run.kind == IMGFMT_RUN_COMPRESSED)
			read_compressed(m, &run);
		off += run.length;
		len -= run.length;
	}
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size);
int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	/* Aligned like a block device, so widened stream reads run too. */
	struct mem_dev m = { .dev = { .size = size, .read = mem_read,
				      .read_align = 512 },
			     .data = data };
	const struct imgfmt_format_ops *ops;
	/* Unallocated reads as zeroes here: any image may name a backing. */
	struct imgfmt_open_args args = { .cache_bytes = 64 << 10,
					 .has_lower = true };
	struct imgfmt_image *img;
	struct imgfmt_info info;
	const char *err = NULL;
	u64 vsize, span, off;
	int i;

	ops = imgfmt_detect(&m.dev, FUZZ_FORMAT, &err);
	if (!ops)
		return 0;
	args.dev = &m.dev;
	if (imgfmt_open(ops, &args, &img, &err)) {
		if (!err)
			abort();	/* every refusal names its reason */
		return 0;
	}
	info = img->info;
	vsize = (info.virtual_size + 511) & ~511ULL;
	if (vsize) {
		span = vsize < (1 << 20) ? vsize : (1 << 20);
		map_range(img, &m, 0, span, IMGFMT_MAP_NOWAIT);
		map_range(img, &m, 0, span, 0);
		map_range(img, &m, vsize - span, span, 0);
		/* Scattered offsets, chosen by the input's own bytes. */
		for (i = 0; i + 8 <= (int)size && i < 64; i += 8) {
			memcpy(&off, data + i, sizeof(off));
			off = (off % vsize) & ~511ULL;
			map_range(img, &m, off,
				  vsize - off < 65536 ? vsize - off : 65536, 0);
		}
		m.cluster_size = info.cluster_size ? info.cluster_size : 512;
		check_order(ops, &m, data, size, vsize);
	}
	imgfmt_decoder_destroy(m.dec);
	imgfmt_ccache_destroy(m.cc);
	imgfmt_close(img);
	return 0;
}
