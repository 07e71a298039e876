// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: a random stack of small random images read through
 * the chain (formats/chain.c).  The input is a layer count, the layers'
 * lengths and their bytes; each layer is detected, or raw when nothing
 * matches, and opened as a layer with a layer below.  Every sector asked
 * must map through the chain exactly as the rule says, computed here by
 * asking each layer in turn (imgfmt_map): the first that does not leave
 * it unallocated answers, with that layer's error when it fails.  Chains
 * up to 16 deep cover both the walk and the owner sets.  Built with ASan
 * and UBSan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgfmt_format.h"
#include "formats/chain.h"

#define FUZZ_MAX_LAYERS	16

struct mem_dev {
	struct imgfmt_dev dev;
	const u8 *data;
};

static int mem_read(struct imgfmt_dev *dev, u64 off, void *buf, size_t len)
{
	struct mem_dev *m = container_of(dev, struct mem_dev, dev);

	if (off > dev->size || len > dev->size - off)
		abort();
	memcpy(buf, m->data + off, len);
	return 0;
}

/* The rule, layer by layer. */
static int expected(struct imgfmt_image **l, u32 nr, u64 off,
		    struct imgfmt_run *run, u32 *layer)
{
	const char *err;
	u32 j;
	int r;

	for (j = 0; j < nr; j++) {
		r = imgfmt_map(l[j], off, 512, 0, run, &err);
		*layer = j;
		if (r || run->kind != IMGFMT_RUN_UNALLOCATED)
			return r;
	}
	*layer = 0;
	return 0;
}

static void check_sector(struct imgfmt_chain *c, struct imgfmt_image **l,
			 u32 nr, u64 off, unsigned int flags)
{
	struct imgfmt_run want, got, longer;
	const char *err;
	u32 wl;
	int rw, rg, rl;

	rw = expected(l, nr, off, &want, &wl);
	rg = imgfmt_chain_map(c, off, 512, flags, &got, &err);
	if (rg == -EWOULDBLOCK && (flags & IMGFMT_MAP_NOWAIT))
		rg = imgfmt_chain_map(c, off, 512, 0, &got, &err);
	if (rw != rg) {
		fprintf(stderr, "sector %llu: rule %d, chain %d\n",
			(unsigned long long)off, rw, rg);
		abort();
	}
	if (rw)
		return;
	if (got.length != 512 || got.kind != want.kind ||
	    (got.kind == IMGFMT_RUN_DATA &&
	     (got.layer != wl || got.dev_offset != want.dev_offset)) ||
	    (got.kind == IMGFMT_RUN_COMPRESSED &&
	     (got.layer != wl || got.comp_offset != want.comp_offset))) {
		fprintf(stderr, "sector %llu: rule kind %d layer %u, chain kind %d layer %u\n",
			(unsigned long long)off, (int)want.kind, wl,
			(int)got.kind, got.layer);
		abort();
	}
	/* A longer request starts with the same answer. */
	rl = imgfmt_chain_map(c, off, 64 << 10, 0, &longer, &err);
	if (!rl && (longer.kind != got.kind || longer.layer != got.layer ||
		    (got.kind == IMGFMT_RUN_DATA &&
		     longer.dev_offset != got.dev_offset)))
		abort();
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size);
int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	static struct mem_dev devs[FUZZ_MAX_LAYERS];
	struct imgfmt_image *layers[FUZZ_MAX_LAYERS] = { NULL };
	struct imgfmt_open_args args = { .cache_bytes = 64 << 10,
					 .has_lower = true };
	const struct imgfmt_format_ops *ops;
	struct imgfmt_chain *c = NULL;
	u32 nr, n = 0, i, len;
	const u8 *p;
	const char *err;
	u64 vsize, off;
	size_t left;

	if (size < 1 + 2)
		return 0;
	nr = 1 + data[0] % FUZZ_MAX_LAYERS;
	if (size < 1 + 2 * (size_t)nr)
		return 0;
	p = data + 1 + 2 * nr;
	left = size - 1 - 2 * nr;
	for (i = 0; i < nr; i++) {
		len = (u32)data[1 + 2 * i] << 8 | data[2 + 2 * i];
		len = len * 64 < left ? len * 64 : (u32)left;
		devs[n].data = p;
		devs[n].dev.size = len;
		devs[n].dev.read = mem_read;
		devs[n].dev.read_align = 512;
		p += len;
		left -= len;
		args.dev = &devs[n].dev;
		ops = imgfmt_detect(&devs[n].dev, NULL, &err);
		if (!ops)
			ops = imgfmt_detect(&devs[n].dev, "raw", &err);
		if (!ops || imgfmt_open(ops, &args, &layers[n], &err))
			continue;
		if (!layers[n]->info.virtual_size ||
		    layers[n]->info.virtual_size > (1ULL << 40)) {
			imgfmt_close(layers[n]);
			continue;
		}
		n++;
	}
	if (!n || imgfmt_chain_create(layers, n, 64 << 10, &c, &err))
		goto out;
	vsize = layers[0]->info.virtual_size & ~511ULL;
	for (i = 0; i < 64 && (u64)i * 512 < vsize; i++)
		check_sector(c, layers, n, (u64)i * 512, i % 2 ? IMGFMT_MAP_NOWAIT : 0);
	for (i = 0; i + 8 <= size && i < 8 * 64 && vsize; i += 8) {
		memcpy(&off, data + size - 8 - i, sizeof(off));
		check_sector(c, layers, n, (off % vsize) & ~511ULL, 0);
	}
out:
	imgfmt_chain_destroy(c);
	for (i = 0; i < n; i++)
		imgfmt_close(layers[i]);
	return 0;
}
