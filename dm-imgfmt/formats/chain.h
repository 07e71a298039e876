/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A chain: images stacked as one disk, as QEMU stacks backing files.
 * Layer 0 is the top; what a layer leaves unallocated is read from the
 * layers below it, a zero cluster reads zeroes and stops the descent, and
 * past a lower layer's end the disk reads zeroes.
 *
 * Reading the bottom layer through many empty overlays must not walk every
 * overlay's tables for every request.  For chains deeper than a few
 * layers, the chain remembers per region of the disk which lower layers
 * hold anything there at all (an owner set, one bit per layer), in tables
 * of the shared metadata cache, and a lookup visits only those.  The sets
 * describe the lower layers only, which never change while the chain is
 * open; the top, which writes will change, is always asked first.
 */
#ifndef IMGFMT_CHAIN_H
#define IMGFMT_CHAIN_H

#include "../imgfmt_format.h"

/* The deepest chain, top included. */
#define IMGFMT_MAX_LAYERS		1024

/*
 * Lower layers walked one by one; a chain with more has owner sets.
 * make bench (icount, 4 KiB random reads of the bottom layer): an empty
 * qcow2 layer walked costs 1.1% of a read, the owner set's lookup 0.8%
 * whatever the depth (depth 10: 0.866 of linear walked, 0.948 with sets;
 * depth 1000: 0.071 and 0.935).  Up to two layers, the walk is cheaper.
 */
#define IMGFMT_CHAIN_WALK_MAX		2

/*
 * The region one owner set covers: 2 MiB, or larger on a disk whose sets
 * would take more than an eighth of cache_size.
 */
#define IMGFMT_CHAIN_REGION_SHIFT	21

struct imgfmt_chain;

/*
 * A chain of the nr open images at layers (top first, nr >= 1), whose
 * owner sets, if any, take at most an eighth of cache_bytes, but for one
 * region (imgfmt_chain_sets_bytes()).  The chain does not own the layers.
 * 0, -EINVAL or -ENOMEM with *err set.
 */
int imgfmt_chain_create(struct imgfmt_image *const *layers, u32 nr,
			u64 cache_bytes, struct imgfmt_chain **chainp,
			const char **err);
void imgfmt_chain_destroy(struct imgfmt_chain *c);

/*
 * imgfmt_map() of the whole chain: the run comes from the highest layer
 * that holds [offset, ...) (run->layer), is at most as long as the top
 * layer's answer, and is UNALLOCATED (reads as zeroes) when no layer
 * holds it.  Same returns as imgfmt_map().
 */
int imgfmt_chain_map(struct imgfmt_chain *c, u64 offset, u64 length,
		     unsigned int flags, struct imgfmt_run *run,
		     const char **err);

/* Bytes its owner sets take (0: none), for the budget and statistics. */
u64 imgfmt_chain_sets_bytes(const struct imgfmt_chain *c);

#endif /* IMGFMT_CHAIN_H */
