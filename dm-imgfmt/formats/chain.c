// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reading a stack of images as one disk; see chain.h.
 */
#include "chain.h"
#include "runs.h"
#include "../mcache.h"

/* Owner sets one cached table holds: 32 regions, 64 MiB of the disk. */
#define CHAIN_SETS_PER_TABLE	32
#define CHAIN_SET_WORDS_MAX	(IMGFMT_MAX_LAYERS / 64)

struct imgfmt_chain {
	u32 nr;			/* layers, top included */
	struct imgfmt_image **layers;
	u64 size;		/* the top's virtual size */
	/* Owner sets, or NULL for a chain walked layer by layer. */
	struct imgfmt_mcache *owners;
	u32 set_words;		/* u64 words of one set: bit j-1 is layer j */
	u32 set_bytes;		/* bytes one set takes in a table */
};

int imgfmt_chain_create(struct imgfmt_image *const *layers, u32 nr,
			struct imgfmt_mgroup *g, u64 cache_bytes,
			struct imgfmt_chain **chainp, const char **err)
{
	struct imgfmt_chain *c;
	u32 i, table_size;

	*chainp = NULL;
	if (!nr || nr > IMGFMT_MAX_LAYERS) {
		*err = "chain deeper than 1024 layers";
		return -EINVAL;
	}
	for (i = 0; i < nr; i++) {
		if (!layers[i]) {
			*err = "chain layer missing";
			return -EINVAL;
		}
	}
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		goto nomem;
	c->layers = kcalloc(nr, sizeof(*c->layers), GFP_KERNEL);
	if (!c->layers)
		goto nomem;
	memcpy(c->layers, layers, nr * sizeof(*c->layers));
	c->nr = nr;
	c->size = layers[0]->info.virtual_size;
	if (nr - 1 > IMGFMT_CHAIN_WALK_MAX) {
		c->set_words = (nr - 1 + 63) / 64;
		/* Sixteen-byte sets make every table whole sectors. */
		c->set_bytes = ALIGN(c->set_words * 8, 16);
		table_size = c->set_bytes * CHAIN_SETS_PER_TABLE;
		c->owners = imgfmt_mcache_for(g, layers[0]->dev, table_size,
					      cache_bytes);
		if (!c->owners)
			goto nomem;
	}
	*chainp = c;
	return 0;
nomem:
	imgfmt_chain_destroy(c);
	*err = "cannot allocate memory for the chain";
	return -ENOMEM;
}

void imgfmt_chain_destroy(struct imgfmt_chain *c)
{
	if (!c)
		return;
	imgfmt_mcache_destroy(c->owners);
	kfree(c->layers);
	kfree(c);
}

struct imgfmt_mcache *imgfmt_chain_owner_cache(struct imgfmt_chain *c)
{
	return c->owners;
}

/*
 * Does img hold anything but unallocated space in [start, end)?  A zero
 * cluster, data, compressed data and the zeroes past its end all count.
 * A region it cannot map counts too, so that a read there meets the error
 * itself, rather than every read of the region failing.
 */
static int layer_holds(struct imgfmt_image *img, u64 start, u64 end)
{
	const char *err = NULL;
	struct imgfmt_run run;
	u64 pos = start;
	int r;

	while (pos < end) {
		r = imgfmt_map(img, pos, end - pos, 0, &run, &err);
		if (r == -EIO)
			return 1;
		if (r)
			return r;
		if (run.kind != IMGFMT_RUN_UNALLOCATED)
			return 1;
		pos += run.length;
	}
	return 0;
}

/* Fill the owner sets of the regions from key on (mcache fill function). */
static int chain_fill_owners(void *ctx, u64 key, void *buf, u32 len)
{
	struct imgfmt_chain *c = ctx;
	u64 end_of_disk = ALIGN(c->size, 512), start, end;
	u32 i, j;
	u64 *set;
	int r;

	if (len != c->set_bytes * CHAIN_SETS_PER_TABLE)
		return -EINVAL;
	memset(buf, 0, len);
	for (i = 0; i < CHAIN_SETS_PER_TABLE; i++) {
		start = key + ((u64)i << IMGFMT_CHAIN_REGION_SHIFT);
		if (start >= end_of_disk)
			break;
		end = min(start + BIT_ULL(IMGFMT_CHAIN_REGION_SHIFT),
			  end_of_disk);
		set = (u64 *)((u8 *)buf + i * c->set_bytes);
		for (j = 1; j < c->nr; j++) {
			r = layer_holds(c->layers[j], start, end);
			if (r < 0)
				return r;
			if (r)
				set[(j - 1) / 64] |= BIT_ULL((j - 1) % 64);
		}
	}
	return (int)len;
}

/* Copy the owner set of the region holding offset into set. */
static int chain_owner_set(struct imgfmt_chain *c, u64 offset,
			   unsigned int flags, u64 *set)
{
	u64 region = offset >> IMGFMT_CHAIN_REGION_SHIFT;
	struct imgfmt_mkey k = {
		.key = (region - region % CHAIN_SETS_PER_TABLE) <<
		       IMGFMT_CHAIN_REGION_SHIFT,
	};
	u32 pos = (u32)(region % CHAIN_SETS_PER_TABLE) * c->set_bytes;

	if (flags & IMGFMT_MAP_NOWAIT)
		return imgfmt_mcache_lookup(c->owners, &k, pos, set,
					    c->set_words * 8);
	return imgfmt_mcache_read_fill(c->owners, &k, pos, set,
				       c->set_words * 8, chain_fill_owners, c);
}

/* The first layer from j down that may hold the region: set, or any. */
static u32 chain_next(const struct imgfmt_chain *c, const u64 *set, u32 j)
{
	u32 bit, word;
	u64 w;

	if (!set || j >= c->nr)
		return j;
	bit = j - 1;
	for (word = bit / 64; word < c->set_words; word++) {
		w = set[word];
		if (word == bit / 64)
			w &= ~0ULL << (bit % 64);
		if (w)
			return min(word * 64 + (u32)__builtin_ctzll(w) + 1,
				   c->nr);
	}
	return c->nr;
}

/*
 * The top left [offset, offset + len) unallocated: the first lower layer
 * that holds it answers, clipped to the top's answer and, with owner sets,
 * to the region.
 */
static int chain_map_lower(struct imgfmt_chain *c, u64 offset, u64 len,
			   unsigned int flags, struct imgfmt_run *run,
			   const char **err)
{
	u64 set_buf[CHAIN_SET_WORDS_MAX], region_end;
	const u64 *set = NULL;
	u32 j;
	int r;

	if (c->owners) {
		r = chain_owner_set(c, offset, flags, set_buf);
		if (r) {
			if (r == -EIO)
				*err = "cannot map the layers below the top";
			return r;
		}
		set = set_buf;
		region_end = (offset | (BIT_ULL(IMGFMT_CHAIN_REGION_SHIFT) - 1))
			     + 1;
		len = min(len, region_end - offset);
	}
	for (j = chain_next(c, set, 1); j < c->nr;
	     j = chain_next(c, set, j + 1)) {
		r = imgfmt_map(c->layers[j], offset, len, flags, run, err);
		if (r)
			return r;
		if (run->kind != IMGFMT_RUN_UNALLOCATED) {
			run->layer = j;
			/* The top's end, not the lower layer's, ends the disk. */
			imgfmt_run_cut_at_last_sector(run, offset, c->size);
			return 0;
		}
		len = run->length;
	}
	memset(run, 0, sizeof(*run));
	run->kind = IMGFMT_RUN_UNALLOCATED;
	run->length = len;
	return 0;
}

int imgfmt_chain_map(struct imgfmt_chain *c, u64 offset, u64 length,
		     unsigned int flags, struct imgfmt_run *run,
		     const char **err)
{
	int r = imgfmt_map(c->layers[0], offset, length, flags, run, err);

	if (r || run->kind != IMGFMT_RUN_UNALLOCATED || c->nr == 1)
		return r;
	return chain_map_lower(c, offset, run->length, flags, run, err);
}
