// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: an arbitrary byte string as the image device.  Detects
 * the format, opens the image and maps ranges all over the virtual disk,
 * cold and warm, checking that every answer stays inside its contract,
 * and decompresses the first compressed clusters through the cluster cache.
 * Built with ASan and UBSan, so any out-of-bounds access or overflow in the
 * shared format code is a crash.
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
			m->dec = imgfmt_decoder_create(m->cc);
	}
	if (!m->dec)
		return;
	len = run->length < sizeof(out) ? (u32)run->length : sizeof(out);
	if (!imgfmt_ccache_read(m->cc, m->dec, run, 0, out, len) &&
	    imgfmt_ccache_prefetch(m->cc, m->dec, run))
		abort();	/* a cluster just read must be cached */
}

/* Map [off, off + len) completely, run by run. */
static void map_range(const struct imgfmt_format_ops *ops,
		      struct imgfmt_image *img, struct mem_dev *m, u64 off,
		      u64 len, unsigned int flags)
{
	struct imgfmt_run run;
	const char *err;
	int steps = 0;

	while (len && steps++ < 4096) {
		if (ops->map(img, off, len, flags, &run, &err)) {
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
	struct imgfmt_image *img;
	struct imgfmt_info info;
	const char *err = NULL;
	u64 vsize, span, off;
	int i;

	ops = imgfmt_detect(&m.dev, FUZZ_FORMAT, &err);
	if (!ops)
		return 0;
	if (ops->open(&m.dev, 64 << 10, &img, &err)) {
		if (!err)
			abort();	/* every refusal names its reason */
		return 0;
	}
	ops->get_info(img, &info);
	vsize = (info.virtual_size + 511) & ~511ULL;
	if (vsize) {
		span = vsize < (1 << 20) ? vsize : (1 << 20);
		map_range(ops, img, &m, 0, span, IMGFMT_MAP_NOWAIT);
		map_range(ops, img, &m, 0, span, 0);
		map_range(ops, img, &m, vsize - span, span, 0);
		/* Scattered offsets, chosen by the input's own bytes. */
		for (i = 0; i + 8 <= (int)size && i < 64; i += 8) {
			memcpy(&off, data + i, sizeof(off));
			off = (off % vsize) & ~511ULL;
			map_range(ops, img, &m, off,
				  vsize - off < 65536 ? vsize - off : 65536, 0);
		}
	}
	imgfmt_decoder_destroy(m.dec);
	imgfmt_ccache_destroy(m.cc);
	ops->close(img);
	return 0;
}
