// SPDX-License-Identifier: GPL-2.0-only
/*
 * The worst-case growth attach --rw gives an image file (userspace/
 * growth.c): against qemu-img 7.2's measure of a fully allocated image
 * (the numbers below; a fresh image's end is what qemu-img check reports
 * for it), against a model of the kernel writer's allocator that allocates
 * every data cluster and L2 table (formats/qcow2_write.c: qw_bump,
 * qw_ensure_block, qw_grow_rt), and at QCOW2's limits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/growth.c"

#include "kselftest_harness.h"

struct measured {
	unsigned int cluster_bits, refcount_order;
	bool extended_l2;
	uint64_t size;		/* virtual */
	uint64_t end;		/* qemu-img check's image end of the new image */
	uint64_t rt_clusters;
	uint64_t full;		/* qemu-img measure: fully allocated size */
};

#define G	(1ULL << 30)

/* qemu-img create -f qcow2 -o ...; qemu-img check; qemu-img measure. */
static const struct measured fresh[] = {
	{ 16, 4, false, 1 * G, 262144, 1, 1074135040ULL },
	{ 16, 4, false, 100 * G, 262144, 1, 107390828544ULL },
	{ 12, 6, false, 1 * G, 16384, 1, 1077964800ULL },
	{ 12, 6, false, 100 * G, 421888, 1, 107795263488ULL },
	{ 16, 4, true, 1 * G, 262144, 1, 1074266112ULL },
	{ 16, 4, true, 100 * G, 262144, 1, 107403935744ULL },
	{ 9, 6, false, 1 * G, 267776, 1, 1108370944ULL },
	{ 9, 6, false, 100 * G, 26642944, 20, 110837007872ULL },
	{ 21, 0, false, 1 * G, 8388608, 1, 1084227584ULL },
	{ 21, 0, false, 100 * G, 8388608, 1, 107384668160ULL },
};

static struct qcow2_shape shape_of(const struct measured *m)
{
	struct qcow2_shape s = {
		.image_end = m->end,
		.virtual_size = m->size,
		.cluster_bits = m->cluster_bits,
		.refcount_order = m->refcount_order,
		.extended_l2 = m->extended_l2,
		.reftable_clusters = m->rt_clusters,
	};

	return s;
}

/*
 * At least what QEMU counts for the fully allocated image (it sizes one
 * refcount table exactly; the writer doubles tables and never reuses the
 * old ones), and not more than a thousandth and two clusters over it.
 */
TEST(fresh_images_against_qemu_measure)
{
	struct qcow2_shape s;
	uint64_t end, cs;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(fresh); i++) {
		s = shape_of(&fresh[i]);
		cs = 1ULL << s.cluster_bits;
		end = 0;
		ASSERT_EQ(0, qcow2_worst_case_end(&s, &end)) TH_LOG("case %zu", i);
		EXPECT_EQ(0, end % cs);
		EXPECT_LE(fresh[i].full, end) TH_LOG("case %zu", i);
		EXPECT_GE(fresh[i].full + fresh[i].full / 1000 + 2 * cs, end)
			TH_LOG("case %zu: %llu over", i,
			       (unsigned long long)(end - fresh[i].full));
	}
}

/* The writer's allocator, cluster by cluster, as qcow2_write.c runs it. */
struct model {
	unsigned int cb, rb_bits;
	uint64_t next_free;	/* clusters */
	uint64_t rt_entries;
	unsigned char *block;	/* per refcount block index: exists */
	uint64_t nr_block;
	int err;
};

static void model_set_refcount(struct model *m, uint64_t idx);

static uint64_t model_bump(struct model *m, uint64_t n)
{
	uint64_t off = m->next_free;

	m->next_free += n;
	return off;
}

static void model_grow_rt(struct model *m, uint64_t bi)
{
	uint64_t want = m->rt_entries, n, top, off, i;
	uint64_t per_cluster = (1ULL << m->cb) / 8;

	for (;;) {
		while (want <= bi)
			want *= 2;
		n = (want + per_cluster - 1) / per_cluster;
		top = m->next_free + 2 * n + 8;
		if ((top >> m->rb_bits) < want)
			break;
		want *= 2;
	}
	off = model_bump(m, n);
	m->rt_entries = n * per_cluster;
	for (i = 0; i < n; i++)
		model_set_refcount(m, off + i);
}

static void model_ensure_block(struct model *m, uint64_t bi)
{
	uint64_t off;

	if (bi >= m->rt_entries)
		model_grow_rt(m, bi);
	if (bi >= m->nr_block) {
		m->err = -ENOMEM;
		return;
	}
	if (m->block[bi])
		return;
	off = model_bump(m, 1);
	m->block[bi] = 1;
	model_set_refcount(m, off);
}

static void model_set_refcount(struct model *m, uint64_t idx)
{
	model_ensure_block(m, idx >> m->rb_bits);
}

/*
 * Allocate every data cluster and every L2 table of the shape, the L2
 * table before its first cluster, the way the writer meets them; return
 * where the image ends then.
 */
static uint64_t model_fill(const struct qcow2_shape *s, int *err)
{
	uint64_t cs = 1ULL << s->cluster_bits, i, start, data, per_l2;
	struct model m = {
		.cb = s->cluster_bits,
		.rb_bits = s->cluster_bits + 3 - s->refcount_order,
		.rt_entries = s->reftable_clusters * (cs / 8),
	};

	start = (s->image_end + cs - 1) / cs;
	data = (s->virtual_size + cs - 1) / cs;
	per_l2 = cs >> (s->extended_l2 ? 4 : 3);
	m.next_free = start;
	m.nr_block = (start + 4 * data) / (1ULL << m.rb_bits) + 64;
	m.block = calloc(m.nr_block, 1);
	if (!m.block) {
		*err = -ENOMEM;
		return 0;
	}
	/* The blocks a fresh image has: those of the clusters it holds. */
	for (i = 0; i < (start + (1ULL << m.rb_bits) - 1) >> m.rb_bits; i++)
		m.block[i] = 1;
	for (i = 0; i < data && !m.err; i++) {
		if (!(i % per_l2))
			model_set_refcount(&m, model_bump(&m, 1));
		model_set_refcount(&m, model_bump(&m, 1));
	}
	free(m.block);
	*err = m.err;
	return m.next_free << s->cluster_bits;
}

/* Shapes where the refcount table must grow, some of them many times. */
TEST(bound_covers_the_writer)
{
	static const struct qcow2_shape shapes[] = {
		{ 4 * 512, 16 << 20, 9, 6, false, 1 },
		{ 4 * 512, 64 << 20, 9, 6, false, 1 },
		{ 4 * 512, 64 << 20, 9, 4, false, 1 },
		{ 1 << 20, 64 << 20, 12, 6, false, 1 },
		{ 3 << 16, 1ULL << 30, 16, 4, false, 1 },
		{ 3 << 16, 1ULL << 30, 16, 6, true, 1 },
		{ 3 << 14, 256 << 20, 14, 6, true, 1 },
		{ 5 << 21, 4ULL << 30, 21, 6, false, 1 },
		{ 7 * 512, 8 << 20, 9, 0, false, 1 },
		{ 40 << 20, 8 << 20, 9, 6, false, 2 },
	};
	uint64_t end, filled;
	size_t i;
	int err;

	for (i = 0; i < ARRAY_SIZE(shapes); i++) {
		end = 0;
		ASSERT_EQ(0, qcow2_worst_case_end(&shapes[i], &end));
		filled = model_fill(&shapes[i], &err);
		ASSERT_EQ(0, err) TH_LOG("case %zu", i);
		EXPECT_LE(filled, end) TH_LOG("case %zu: filled %llu, bound %llu",
					      i, (unsigned long long)filled,
					      (unsigned long long)end);
		/* Tight: within a few per cent and a few clusters. */
		EXPECT_GE(filled + filled / 50 + (16ULL << shapes[i].cluster_bits),
			  end) TH_LOG("case %zu: filled %llu, bound %llu", i,
				      (unsigned long long)filled,
				      (unsigned long long)end);
	}
}

/* An image already past its start: the bound counts from its end. */
TEST(bound_grows_with_the_image_end)
{
	struct qcow2_shape s = shape_of(&fresh[0]);
	uint64_t a, b;

	ASSERT_EQ(0, qcow2_worst_case_end(&s, &a));
	s.image_end += 10ULL << 30;
	ASSERT_EQ(0, qcow2_worst_case_end(&s, &b));
	EXPECT_LE(a + (10ULL << 30), b);
	/* An end inside a cluster is rounded up. */
	s.image_end = 1;
	ASSERT_EQ(0, qcow2_worst_case_end(&s, &a));
	EXPECT_EQ(0, a % 65536);
}

TEST(limits)
{
	struct qcow2_shape s = shape_of(&fresh[0]);
	uint64_t end = 12345;

	/* Beyond QCOW2's 56-bit offsets: refused, *end untouched. */
	s.virtual_size = (1ULL << 56) - 512;
	EXPECT_EQ(-EFBIG, qcow2_worst_case_end(&s, &end));
	s.virtual_size = (1ULL << 55);
	s.image_end = (1ULL << 55);
	EXPECT_EQ(-EFBIG, qcow2_worst_case_end(&s, &end));
	s.virtual_size = UINT64_MAX;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s = shape_of(&fresh[0]);
	s.image_end = UINT64_MAX;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s = shape_of(&fresh[0]);
	s.cluster_bits = 22;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s.cluster_bits = 8;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s.cluster_bits = 13;
	s.extended_l2 = true;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s = shape_of(&fresh[0]);
	s.refcount_order = 7;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	s.refcount_order = 4;
	s.reftable_clusters = UINT64_MAX;
	EXPECT_EQ(-EINVAL, qcow2_worst_case_end(&s, &end));
	EXPECT_EQ(12345, end);
	/* The largest virtual disk QEMU makes (2^55 bytes, 2M clusters). */
	s = shape_of(&fresh[9]);
	s.virtual_size = 1ULL << 55;
	EXPECT_EQ(0, qcow2_worst_case_end(&s, &end));
	EXPECT_LT(1ULL << 55, end);
}

TEST_HARNESS_MAIN
