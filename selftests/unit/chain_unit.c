// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of the chain (dm-imgfmt/formats/chain.c): random stacks of
 * small made-up images, each sector unallocated, zero or data, read
 * through imgfmt_chain_map() and compared with the rule QEMU defines,
 * computed here sector by sector: the highest layer that does not leave
 * a sector unallocated decides it, past a layer's end it reads zeroes,
 * and a sector no layer holds reads zeroes.  Chains both shallower and
 * deeper than IMGFMT_CHAIN_WALK_MAX, so both the walk and the owner sets
 * are checked, cold and warm, with and without IMGFMT_MAP_NOWAIT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The port headers first: kselftest.h keeps an ARRAY_SIZE it finds. */
#include "imgfmt_format.h"
#include "formats/chain.h"
#include "formats/runs.h"
#include "mcache.h"
#include "uhost.h"

#include "kselftest_harness.h"

enum { K_UNALLOC, K_ZERO, K_DATA };

/* A layer: a kind per sector; data of sector s sits at s * 512 + base. */
struct fake_image {
	struct imgfmt_image img;
	u8 *kinds;
	u64 sectors;
	u64 base;
};

static int fake_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
		       u64 pos, u64 limit, unsigned int flags,
		       struct imgfmt_unit *u, const char **err)
{
	struct fake_image *f = container_of(img, struct fake_image, img);
	u64 s = pos / 512;
	static const enum imgfmt_run_kind kinds[] = {
		IMGFMT_RUN_UNALLOCATED, IMGFMT_RUN_ZERO, IMGFMT_RUN_DATA,
	};

	if (s >= f->sectors) {
		*err = "fake lookup past the end";
		return -EIO;
	}
	u->kind = kinds[f->kinds[s]];
	u->start = s * 512;
	u->end = u->start + 512;
	u->host = f->base + s * 512;
	return 0;
}

static const struct imgfmt_format_ops fake_ops = {
	.name = "fake",
	.lookup = fake_lookup,
};

static struct imgfmt_dev fake_dev = { .size = 1ULL << 40 };

static struct fake_image *fake_new(u64 sectors, u32 layer, unsigned int pct)
{
	struct fake_image *f = calloc(1, sizeof(*f));
	u64 s;

	f->kinds = calloc(sectors ? sectors : 1, 1);
	f->sectors = sectors;
	f->base = (u64)layer << 32;
	f->img.ops = &fake_ops;
	f->img.dev = &fake_dev;
	f->img.info.format = "fake";
	f->img.info.virtual_size = sectors * 512;
	/* Stretches, so that runs are longer than a sector. */
	for (s = 0; s < sectors; s++) {
		if (s % 8 == 0 || (unsigned int)(rand() % 100) < pct / 4) {
			unsigned int r = (unsigned int)rand() % 100;

			f->kinds[s] = r < pct ? (r % 5 ? K_DATA : K_ZERO) :
					       K_UNALLOC;
		} else {
			f->kinds[s] = f->kinds[s - 1];
		}
	}
	return f;
}

/* What sector s must read as: (layer, kind), by the rule above. */
static void expected(struct fake_image **l, u32 nr, u64 s, u32 *layer,
		     int *kind)
{
	u32 j;

	for (j = 0; j < nr; j++) {
		if (s >= l[j]->sectors) {
			*layer = j;
			*kind = K_ZERO;
			return;
		}
		if (l[j]->kinds[s] != K_UNALLOC) {
			*layer = j;
			*kind = l[j]->kinds[s];
			return;
		}
	}
	*layer = 0;
	*kind = K_UNALLOC;
}

/* Map [off, end) piece by piece and check every sector of every run. */
static int check_range(struct imgfmt_chain *c, struct fake_image **l, u32 nr,
		       u64 off, u64 end, unsigned int flags)
{
	struct imgfmt_run run;
	const char *err = NULL;
	u64 s, pos = off;
	u32 layer;
	int kind, r;

	while (pos < end) {
		r = imgfmt_chain_map(c, pos, end - pos, flags, &run, &err);
		if (r == -EWOULDBLOCK && (flags & IMGFMT_MAP_NOWAIT)) {
			r = imgfmt_chain_map(c, pos, end - pos, 0, &run, &err);
		}
		if (r) {
			fprintf(stderr, "map at %llu: %d %s\n",
				(unsigned long long)pos, r, err ? err : "");
			return -1;
		}
		if (!run.length || run.length > end - pos || run.length % 512) {
			fprintf(stderr, "bad run length %llu at %llu\n",
				(unsigned long long)run.length,
				(unsigned long long)pos);
			return -1;
		}
		for (s = pos / 512; s < (pos + run.length) / 512; s++) {
			expected(l, nr, s, &layer, &kind);
			if ((kind == K_DATA) != (run.kind == IMGFMT_RUN_DATA) ||
			    (kind == K_ZERO) != (run.kind == IMGFMT_RUN_ZERO) ||
			    (kind == K_DATA &&
			     (run.layer != layer ||
			      run.dev_offset + (s * 512 - pos) !=
			      l[layer]->base + s * 512))) {
				fprintf(stderr, "sector %llu: kind %d layer %u, run kind %d layer %u\n",
					(unsigned long long)s, kind, layer,
					(int)run.kind, run.layer);
				return -1;
			}
		}
		pos += run.length;
	}
	return 0;
}

/* A random stack of nr layers read whole in random pieces, then warm. */
static int check_stack(u32 nr, unsigned int seed, u64 cache_bytes)
{
	struct imgfmt_image **layers = calloc(nr, sizeof(*layers));
	struct fake_image **l = calloc(nr, sizeof(*l));
	struct imgfmt_chain *c = NULL;
	const char *err = NULL;
	u64 top_sectors, off, len, size;
	int rc = 0, pass;
	u32 j;

	srand(seed);
	/* Several regions of 2 MiB, so that owner sets differ. */
	top_sectors = 4096 * 3 + (u64)(rand() % 4096);
	for (j = 0; j < nr; j++) {
		u64 sectors = j ? top_sectors / 2 +
				  (u64)rand() % top_sectors : top_sectors;
		/* Most layers sparse; a few empty, as overlays are. */
		unsigned int pct = rand() % 3 ? (unsigned int)rand() % 20 : 0;

		l[j] = fake_new(sectors, j, pct);
		layers[j] = &l[j]->img;
	}
	if (imgfmt_chain_create(layers, nr, cache_bytes, &c, &err))
		return -1;
	size = top_sectors * 512;
	for (pass = 0; pass < 3 && !rc; pass++) {
		for (off = 0; off < size && !rc; off += len) {
			len = 512 * (1 + (u64)rand() % 2048);
			if (len > size - off)
				len = size - off;
			rc = check_range(c, l, nr, off, off + len,
					 pass == 1 ? IMGFMT_MAP_NOWAIT : 0);
		}
	}
	/* Past the top's end: zeroes, whatever lies below. */
	if (!rc) {
		struct imgfmt_run run;

		rc = imgfmt_chain_map(c, size, 4096, 0, &run, &err) ||
		     run.kind != IMGFMT_RUN_ZERO || run.length != 4096;
	}
	imgfmt_chain_destroy(c);
	for (j = 0; j < nr; j++) {
		free(l[j]->kinds);
		free(l[j]);
	}
	free(l);
	free(layers);
	return rc;
}

TEST(single_layer)
{
	EXPECT_EQ(0, check_stack(1, 1, 1 << 20));
}

TEST(walked_stacks)
{
	unsigned int seed;

	for (seed = 0; seed < 20; seed++)
		ASSERT_EQ(0, check_stack(2 + seed % IMGFMT_CHAIN_WALK_MAX,
					 seed, 1 << 20)) TH_LOG("seed %u", seed);
}

TEST(owned_stacks)
{
	unsigned int seed;

	for (seed = 0; seed < 20; seed++)
		ASSERT_EQ(0, check_stack(IMGFMT_CHAIN_WALK_MAX + 2 + seed * 7,
					 100 + seed, 1 << 20))
			TH_LOG("seed %u", seed);
}

/*
 * A budget too small for 2 MiB regions: the sets cover larger ones, and
 * with a budget for one set, one region covers the whole disk.
 */
TEST(owned_stack_coarse_regions)
{
	EXPECT_EQ(0, check_stack(70, 7, 8 * 17 * 2));
	EXPECT_EQ(0, check_stack(70, 8, 8));
	EXPECT_EQ(0, check_stack(9, 9, 8));
}

TEST(deepest_stack)
{
	EXPECT_EQ(0, check_stack(IMGFMT_MAX_LAYERS, 3, 16 << 20));
}

TEST(too_deep_refused)
{
	struct imgfmt_image *layers[1] = { NULL };
	struct imgfmt_chain *c = (void *)1;
	const char *err = NULL;

	EXPECT_EQ(-EINVAL, imgfmt_chain_create(layers,
					       IMGFMT_MAX_LAYERS + 1,
					       1 << 20, &c, &err));
	EXPECT_EQ(NULL, c);
	EXPECT_STREQ("chain deeper than 1024 layers", err);
}

TEST_HARNESS_MAIN
