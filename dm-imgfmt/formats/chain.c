// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reading a stack of images as one disk; see chain.h.
 */
#include "chain.h"
#include "runs.h"

#define CHAIN_SET_WORDS_MAX	(IMGFMT_MAX_LAYERS / 64)
/* The share of cache_size the owner sets may take. */
#define CHAIN_SETS_SHARE	8

struct imgfmt_chain {
	u32 nr;			/* layers, top included */
	struct imgfmt_image **layers;
	u64 size;		/* the top's virtual size */
	/*
	 * Owner sets, or NULL for a chain walked layer by layer: set_words
	 * u64 per region of 2^region_shift bytes (bit j-1: layer j), valid
	 * once the region's byte in ready is 1 (release/acquire: a set is
	 * written once, by whoever computes it first, always the same).
	 */
	u64 *sets;
	u8 *ready;
	u64 nr_regions;
	u32 set_words;
	u32 region_shift;
	u64 sets_bytes;
};

/*
 * Regions of 2 MiB, or larger when the sets of a large disk would not
 * fit in budget bytes: a coarser set is as correct, only less selective.
 */
static void chain_size_sets(struct imgfmt_chain *c, u64 budget)
{
	u64 per_region = (u64)c->set_words * 8 + 1;

	c->region_shift = IMGFMT_CHAIN_REGION_SHIFT;
	for (;;) {
		c->nr_regions = (c->size + BIT_ULL(c->region_shift) - 1) >>
				c->region_shift;
		if (c->nr_regions * per_region <= budget ||
		    c->region_shift >= 40)
			break;
		c->region_shift++;
	}
	c->sets_bytes = c->nr_regions * per_region;
}

static int chain_alloc_sets(struct imgfmt_chain *c, u64 cache_bytes)
{
	c->set_words = (c->nr - 1 + 63) / 64;
	chain_size_sets(c, cache_bytes / CHAIN_SETS_SHARE);
	c->sets = imgfmt_zalloc_large(c->nr_regions * c->set_words * 8);
	c->ready = imgfmt_zalloc_large(c->nr_regions);
	return c->sets && c->ready ? 0 : -ENOMEM;
}

int imgfmt_chain_create(struct imgfmt_image *const *layers, u32 nr,
			u64 cache_bytes, struct imgfmt_chain **chainp,
			const char **err)
{
	struct imgfmt_chain *c;
	u32 i;

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
	if (nr - 1 > IMGFMT_CHAIN_WALK_MAX && chain_alloc_sets(c, cache_bytes))
		goto nomem;
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
	imgfmt_free_large(c->sets);
	imgfmt_free_large(c->ready);
	kfree(c->layers);
	kfree(c);
}

u64 imgfmt_chain_sets_bytes(const struct imgfmt_chain *c)
{
	return c->sets ? c->sets_bytes : 0;
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

/* Compute the owner set of region r: every lower layer walked once. */
static int chain_compute_set(struct imgfmt_chain *c, u64 r, u64 *set)
{
	u64 end_of_disk = ALIGN(c->size, 512), start, end;
	u32 j, w;
	int h;

	memset(set, 0, c->set_words * 8);
	start = r << c->region_shift;
	end = min(start + BIT_ULL(c->region_shift), end_of_disk);
	for (j = 1; j < c->nr; j++) {
		h = layer_holds(c->layers[j], start, end);
		if (h < 0)
			return h;
		if (h)
			set[(j - 1) / 64] |= BIT_ULL((j - 1) % 64);
	}
	for (w = 0; w < c->set_words; w++)
		WRITE_ONCE(c->sets[r * c->set_words + w], set[w]);
	/* Pairs with chain_owner_set(): the words before the flag. */
	smp_store_release(&c->ready[r], 1);
	return 0;
}

/*
 * The owner set of the region holding offset, into set: lock-free once
 * computed; computing it may read tables, so not with NOWAIT.
 */
static int chain_owner_set(struct imgfmt_chain *c, u64 offset,
			   unsigned int flags, u64 *set)
{
	u64 r = offset >> c->region_shift;
	u32 w;

	if (r >= c->nr_regions)
		return -EIO;
	/* Pairs with chain_compute_set(): the flag, then the words. */
	if (smp_load_acquire(&c->ready[r])) {
		for (w = 0; w < c->set_words; w++)
			set[w] = READ_ONCE(c->sets[r * c->set_words + w]);
		return 0;
	}
	if (flags & IMGFMT_MAP_NOWAIT)
		return -EWOULDBLOCK;
	return chain_compute_set(c, r, set);
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
	/* Filled before use: not worth zeroing 128 bytes a read. */
	u64 set_buf[CHAIN_SET_WORDS_MAX] __uninitialized;
	u64 region_end;
	const u64 *set = NULL;
	u32 j;
	int r;

	if (c->sets) {
		r = chain_owner_set(c, offset, flags, set_buf);
		if (r) {
			if (r == -EIO)
				*err = "cannot map the layers below the top";
			return r;
		}
		set = set_buf;
		region_end = (offset | (BIT_ULL(c->region_shift) - 1)) + 1;
		len = min(len, region_end - offset);
	}
	for (j = chain_next(c, set, 1); j < c->nr;
	     j = chain_next(c, set, j + 1)) {
		r = imgfmt_map(c->layers[j], offset, len, flags, run, err);
		if (r)
			return r;
		if (run->kind != IMGFMT_RUN_UNALLOCATED) {
			run->layer = j;
			/* Lower layers are read-only: a write copies up. */
			run->in_place = false;
			/* The top's end, not the lower layer's, ends the disk. */
			if (c->size % 512)
				imgfmt_run_cut_at_last_sector(run, offset,
							      c->size);
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
