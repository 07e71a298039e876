// SPDX-License-Identifier: GPL-2.0-only
/*
 * The worst-case growth of a QCOW2 image under the kernel's writer
 * (growth.h).  Everything is counted in clusters, which keeps the numbers
 * far below 2^64: a QCOW2 offset has 56 bits, so no image holds more than
 * 2^47 clusters (of 512 bytes), and the intermediate sums stay below 2^60.
 * The bound follows formats/qcow2_write.c: new clusters come only from the
 * image's end (qw_bump), a refcount block is made for each refcount block
 * index reached (qw_ensure_block), and the refcount table is replaced by
 * one of at least twice the entries when an index falls outside it
 * (qw_grow_rt), the old one's clusters never handed out again.
 */
#include <errno.h>

#include "growth.h"

/* QCOW2 host offsets are 56 bits wide (QCOW2_OFFSET_MASK). */
#define QCOW2_OFFSET_LIMIT	(1ULL << 56)
/* The writer's refcount table is at most 8 MiB. */
#define REFTABLE_MAX_BYTES	(8ULL << 20)
/* The fixed point below is reached in a few rounds; this many is a bug. */
#define MAX_ROUNDS		64

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + !!(a % b);
}

/*
 * Clusters of every refcount table the writer may allocate while the image
 * grows to total clusters, from a table of rt_entries entries: each new
 * table has at least twice its predecessor's entries and at most want
 * (see qw_grow_rt: enough for the last block index and the blocks just
 * past the table itself), so their entries sum to less than 2 * want, and
 * there is one more partial cluster per table.
 */
static uint64_t reftable_clusters(uint64_t total, uint64_t blocks,
				  uint64_t rt_entries, unsigned int rb_bits,
				  uint64_t per_cluster)
{
	uint64_t want = 0, n = 0, prev, tables = 0, grown;
	int i;

	if (blocks <= rt_entries)
		return 0;
	/* want covers the blocks and the table's own blocks past them. */
	for (i = 0; i < MAX_ROUNDS; i++) {
		prev = n;
		want = 2 * (((total + 2 * n + 8) >> rb_bits) + 1);
		if (want < 2 * blocks)
			want = 2 * blocks;
		n = div_up(want, per_cluster);
		if (n == prev)
			break;
	}
	for (grown = rt_entries ? rt_entries : 1; grown < want; grown *= 2)
		tables++;
	return 2 * n + tables + 1;
}

int qcow2_worst_case_end(const struct qcow2_shape *s, uint64_t *end)
{
	uint64_t cs, start, data, l2, base, blocks, tables = 0, total, prev;
	uint64_t per_cluster, rt_entries;
	unsigned int rb_bits;
	int i;

	if (s->cluster_bits < 9 || s->cluster_bits > 21 ||
	    s->refcount_order > 6 ||
	    (s->extended_l2 && s->cluster_bits < 14) ||
	    s->image_end >= QCOW2_OFFSET_LIMIT ||
	    s->virtual_size >= QCOW2_OFFSET_LIMIT ||
	    (s->reftable_clusters << s->cluster_bits) > REFTABLE_MAX_BYTES)
		return -EINVAL;
	cs = 1ULL << s->cluster_bits;
	start = div_up(s->image_end, cs);
	data = div_up(s->virtual_size, cs);
	/* L2 entries are 8 bytes, 16 with extended L2. */
	l2 = div_up(data, cs >> (s->extended_l2 ? 4 : 3));
	base = start + data + l2;
	rb_bits = s->cluster_bits + 3 - s->refcount_order;
	per_cluster = cs / 8;
	rt_entries = s->reftable_clusters * per_cluster;
	/*
	 * Refcount blocks and tables need refcounts too: grow the total
	 * until it covers them.  Every block index below the last one may
	 * need a new block, whatever exists already.
	 */
	total = base;
	for (i = 0; i < MAX_ROUNDS; i++) {
		prev = total;
		blocks = div_up(total, 1ULL << rb_bits);
		tables = reftable_clusters(total, blocks, rt_entries, rb_bits,
					   per_cluster);
		total = base + blocks + tables;
		if (total == prev)
			break;
	}
	if (total != prev)
		return -EFBIG;
	if (total > QCOW2_OFFSET_LIMIT >> s->cluster_bits)
		return -EFBIG;
	*end = total << s->cluster_bits;
	return 0;
}
