// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of the shared format code (dm-imgfmt/formats/, mcache.c) in
 * userspace, through the interface the kernel target uses
 * (imgfmt_format.h): images are built in memory, byte by byte, next to a
 * model of what every sector must map to, and map() answers are checked
 * against that model.
 *
 * Built against userspace/libimgfmt-shared.a, the same sources the kernel
 * module compiles.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The port headers first: kselftest.h keeps an ARRAY_SIZE it finds. */
#include "imgfmt_format.h"
#include "mcache.h"
#include "formats/qcow2.h"
#include "uhost.h"

#include "kselftest_harness.h"

#define QCOW_MAGIC	0x514649fbU
#define L2E_COPIED	BIT_ULL(63)
#define L2E_COMPRESSED	BIT_ULL(62)
#define L2E_ZERO	1ULL
#define UNIT_BAD	0xff	/* model: the map of this unit must fail */
#define KiB		1024ULL
#define MiB		(1024 * KiB)
#define SECTOR		512ULL

/* ------------------------------------------------- in-memory QCOW2 image */

struct mimg {
	struct imgfmt_dev dev;
	u8 *buf;
	u64 cap;
	unsigned long reads;	/* device reads so far */
	bool fail_reads;	/* make every device read fail */

	u32 version;
	u32 cbits;
	u64 csize;
	bool ext;		/* extended L2 entries */
	u64 vsize;
	u32 l1_size;
	u64 l1_off;
	u32 l2_entries;		/* per table */

	/* Model, per unit: cluster, or subcluster with extended L2. */
	u32 unit_bits;
	u64 units;
	u8 *kind;		/* enum imgfmt_run_kind, or UNIT_BAD */
	u64 *host;		/* DATA: device offset of the unit */
};

static void put_be(u8 *p, unsigned int width, u64 v)
{
	unsigned int i;

	for (i = 0; i < width; i++)
		p[i] = v >> (8 * (width - 1 - i));
}

static u64 get_be(const u8 *p, unsigned int width)
{
	unsigned int i;
	u64 v = 0;

	for (i = 0; i < width; i++)
		v = v << 8 | p[i];
	return v;
}

static int mimg_read(struct imgfmt_dev *dev, u64 off, void *buf, size_t len)
{
	struct mimg *m = container_of(dev, struct mimg, dev);

	/* imgfmt_dev_read() must have kept us in bounds. */
	if (off > dev->size || len > dev->size - off)
		abort();
	m->reads++;
	if (m->fail_reads)
		return -EIO;
	memcpy(buf, m->buf + off, len);
	return 0;
}

/* Grow the device by n clusters of zeroes; returns their offset. */
static u64 mimg_alloc(struct mimg *m, u64 n)
{
	u64 off = m->dev.size, need = off + n * m->csize;

	if (need > m->cap) {
		m->cap = need * 2;
		m->buf = realloc(m->buf, m->cap);
		if (!m->buf)
			abort();
	}
	memset(m->buf + off, 0, n * m->csize);
	m->dev.size = need;
	return off;
}

/*
 * A valid image: header in cluster 0 (version 3: 112-byte header, then the
 * end of extensions), an empty refcount table in cluster 1, the L1 table
 * from cluster 2.  Nothing allocated.
 */
static void mimg_init(struct mimg *m, u32 version, u32 cbits, u64 vsize,
		      bool ext)
{
	u64 span, l1_clusters, i;
	u8 *h;

	memset(m, 0, sizeof(*m));
	m->version = version;
	m->cbits = cbits;
	m->csize = 1ULL << cbits;
	m->ext = ext;
	m->vsize = vsize;
	m->l2_entries = m->csize / (ext ? 16 : 8);
	span = m->csize * m->l2_entries;
	m->l1_size = (vsize + span - 1) / span;
	m->dev.read = mimg_read;

	mimg_alloc(m, 2);
	l1_clusters = ((u64)m->l1_size * 8 + m->csize - 1) / m->csize;
	m->l1_off = mimg_alloc(m, l1_clusters ? l1_clusters : 1);

	h = m->buf;
	put_be(h + 0, 4, QCOW_MAGIC);
	put_be(h + 4, 4, version);
	put_be(h + 20, 4, cbits);
	put_be(h + 24, 8, vsize);
	put_be(h + 36, 4, m->l1_size);
	put_be(h + 40, 8, m->l1_off);
	put_be(h + 48, 8, m->csize);
	put_be(h + 56, 4, 1);
	if (version >= 3) {
		put_be(h + 72, 8, ext ? 1ULL << 4 : 0);
		put_be(h + 96, 4, 4);
		put_be(h + 100, 4, 112);
	}

	m->unit_bits = cbits - (ext ? 5 : 0);
	m->units = (vsize + (1ULL << m->unit_bits) - 1) >> m->unit_bits;
	m->kind = malloc(m->units);
	m->host = calloc(m->units, sizeof(*m->host));
	if (!m->kind || !m->host)
		abort();
	for (i = 0; i < m->units; i++)
		m->kind[i] = IMGFMT_RUN_UNALLOCATED;
}

static void mimg_free(struct mimg *m)
{
	free(m->buf);
	free(m->kind);
	free(m->host);
	m->buf = NULL;
	m->kind = NULL;
	m->host = NULL;
}

/* Offset of the L1 entry of virtual cluster vc. */
static u64 mimg_l1_pos(struct mimg *m, u64 vc)
{
	return m->l1_off + 8 * (vc / m->l2_entries);
}

/* The L2 table of virtual cluster vc, allocated on first use. */
static u64 mimg_l2(struct mimg *m, u64 vc)
{
	u64 pos = mimg_l1_pos(m, vc), e = get_be(m->buf + pos, 8), off;

	if (e & 0x00fffffffffffe00ULL)
		return e & 0x00fffffffffffe00ULL;
	off = mimg_alloc(m, 1);
	put_be(m->buf + pos, 8, off | L2E_COPIED);
	return off;
}

/* Offset of the L2 entry of virtual cluster vc. */
static u64 mimg_l2_pos(struct mimg *m, u64 vc)
{
	return mimg_l2(m, vc) + (m->ext ? 16 : 8) * (vc % m->l2_entries);
}

static void mimg_set_entry(struct mimg *m, u64 vc, u64 entry, u64 bitmap)
{
	u64 pos = mimg_l2_pos(m, vc);

	put_be(m->buf + pos, 8, entry);
	if (m->ext)
		put_be(m->buf + pos + 8, 8, bitmap);
}

static void model_cluster(struct mimg *m, u64 vc, u8 kind, u64 host)
{
	u64 per = m->csize >> m->unit_bits, u;

	for (u = vc * per; u < (vc + 1) * per && u < m->units; u++) {
		m->kind[u] = kind;
		m->host[u] = host ? host + ((u - vc * per) << m->unit_bits) : 0;
	}
}

/* Virtual cluster vc holds data at host (a cluster of the device). */
static void mimg_data(struct mimg *m, u64 vc, u64 host)
{
	mimg_set_entry(m, vc, host | L2E_COPIED, 0xffffffffULL);
	model_cluster(m, vc, IMGFMT_RUN_DATA, host);
}

/* Virtual cluster vc reads as zeroes (version 3). */
static void mimg_zero(struct mimg *m, u64 vc, u64 host)
{
	if (m->ext)
		mimg_set_entry(m, vc, host, 0xffffffff00000000ULL);
	else
		mimg_set_entry(m, vc, host | L2E_ZERO, 0);
	model_cluster(m, vc, IMGFMT_RUN_ZERO, 0);
}

/* Extended L2: subclusters of vc by the two halves of the bitmap. */
static void mimg_sub(struct mimg *m, u64 vc, u64 host, u32 alloc, u32 zero)
{
	u64 u0 = vc * 32;
	int i;

	mimg_set_entry(m, vc, host ? host | L2E_COPIED : 0,
		       (u64)zero << 32 | alloc);
	for (i = 0; i < 32 && u0 + i < m->units; i++) {
		if (alloc & (1U << i)) {
			m->kind[u0 + i] = IMGFMT_RUN_DATA;
			m->host[u0 + i] = host + ((u64)i << m->unit_bits);
		} else if (zero & (1U << i)) {
			m->kind[u0 + i] = IMGFMT_RUN_ZERO;
		} else {
			m->kind[u0 + i] = IMGFMT_RUN_UNALLOCATED;
		}
	}
}

static void model_bad(struct mimg *m, u64 vc)
{
	model_cluster(m, vc, UNIT_BAD, 0);
}

/* --------------------------------------------------------- test helpers */

struct opened {
	const struct imgfmt_format_ops *ops;
	struct imgfmt_image *img;
	const char *err;
	int rc;
};

static int open_image(struct mimg *m, u64 cache, struct opened *o)
{
	struct imgfmt_open_args args = { .dev = &m->dev, .cache_bytes = cache };

	memset(o, 0, sizeof(*o));
	o->ops = imgfmt_detect(&m->dev, NULL, &o->err);
	if (!o->ops)
		return o->rc = -ENOENT;
	o->rc = imgfmt_open(o->ops, &args, &o->img, &o->err);
	return o->rc;
}

static void close_image(struct opened *o)
{
	imgfmt_close(o->img);
	o->img = NULL;
}

static u8 model_kind(struct mimg *m, u64 off)
{
	return m->kind[off >> m->unit_bits];
}

static u64 model_host(struct mimg *m, u64 off)
{
	return m->host[off >> m->unit_bits] +
	       (off & ((1ULL << m->unit_bits) - 1));
}

/* Same L2 table for both virtual offsets? */
static bool same_l2(struct mimg *m, u64 a, u64 b)
{
	u64 span = m->csize * m->l2_entries;

	return a / span == b / span;
}

/*
 * Map [off, off + len) run by run and check every sector of every run
 * against the model; runs must also be maximal within an L2 table (a run
 * stops only where the kind changes or the data stops being contiguous).
 * Units the model marks bad must fail with -EIO and are skipped.
 */
static void check_walk(struct __test_metadata *_metadata, struct mimg *m,
		       struct opened *o, u64 off, u64 len, unsigned int flags)
{
	struct imgfmt_run run;
	const char *err;
	u64 p, next, skip;
	int r, steps = 0;

	while (len) {
		ASSERT_GT(1000000, steps++);
		err = NULL;
		r = imgfmt_map(o->img, off, len, flags, &run, &err);
		if (off < m->vsize && model_kind(m, off) == UNIT_BAD) {
			ASSERT_EQ(-EIO, r) TH_LOG("offset %llu: corrupt unit mapped",
						  (unsigned long long)off);
			ASSERT_NE(NULL, err);
			skip = (1ULL << m->unit_bits) -
			       (off & ((1ULL << m->unit_bits) - 1));
			skip = skip < len ? skip : len;
			off += skip;
			len -= skip;
			continue;
		}
		ASSERT_EQ(0, r) TH_LOG("offset %llu length %llu: %s",
				       (unsigned long long)off,
				       (unsigned long long)len, err ? err : "");
		ASSERT_LT(0, run.length);
		ASSERT_GE(len, run.length);
		ASSERT_EQ(0, run.length % SECTOR);
		for (p = off; p < off + run.length; p += SECTOR) {
			if (p >= m->vsize) {
				ASSERT_NE(IMGFMT_RUN_COMPRESSED, run.kind);
				continue;
			}
			ASSERT_EQ(model_kind(m, p), run.kind)
				TH_LOG("sector at %llu in run at %llu+%llu",
				       (unsigned long long)p,
				       (unsigned long long)off,
				       (unsigned long long)run.length);
			if (run.kind == IMGFMT_RUN_DATA) {
				ASSERT_EQ(model_host(m, p),
					  run.dev_offset + (p - off))
					TH_LOG("sector at %llu", (unsigned long long)p);
			}
		}
		next = off + run.length;
		if (!flags && next < off + len && next < m->vsize &&
		    same_l2(m, next - SECTOR, next) &&
		    model_kind(m, next) == run.kind &&
		    (run.kind != IMGFMT_RUN_DATA ||
		     model_host(m, next) == run.dev_offset + run.length))
			ASSERT_TRUE(false)
				TH_LOG("run at %llu ends at %llu; the next sector continues it",
				       (unsigned long long)off,
				       (unsigned long long)next);
		off = next;
		len -= run.length;
	}
}

/* A few hundred pseudo-random windows, plus the whole disk. */
static void check_walks(struct __test_metadata *_metadata, struct mimg *m,
			struct opened *o)
{
	u64 state = 0x1234567, sectors = (m->vsize + SECTOR - 1) / SECTOR;
	u64 off, len;
	int i;

	check_walk(_metadata, m, o, 0, sectors * SECTOR, 0);
	for (i = 0; i < 400; i++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (state >> 20) % sectors;
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		len = 1 + (state >> 20) % (i % 4 ? 64 : 4096);
		if (off + len > sectors)
			len = sectors - off;
		check_walk(_metadata, m, o, off * SECTOR, len * SECTOR, 0);
	}
}

/* ------------------------------------------------------- map() behaviour */

FIXTURE(map) {
	struct mimg m;
	struct opened o;
};

FIXTURE_SETUP(map)
{
	uport_set_corruption_reports(false);
}

FIXTURE_TEARDOWN(map)
{
	close_image(&self->o);
	mimg_free(&self->m);
}

/* Runs of every kind on 4 KiB clusters; L2 tables cover 2 MiB. */
TEST_F(map, runs_v3)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 h, c = 4096, i;

	mimg_init(m, 3, 12, 6 * MiB + 3 * SECTOR, false);
	/* 0-3: contiguous data; 4-7 unallocated; 8, 9: data apart. */
	h = mimg_alloc(m, 4);
	for (i = 0; i < 4; i++)
		mimg_data(m, i, h + i * c);
	mimg_data(m, 9, mimg_alloc(m, 1));
	mimg_data(m, 8, mimg_alloc(m, 1));
	/* 10, 11: data in reverse host order. */
	h = mimg_alloc(m, 2);
	mimg_data(m, 10, h + c);
	mimg_data(m, 11, h);
	/* 16-18: zero clusters, one preallocated. */
	mimg_zero(m, 16, 0);
	mimg_zero(m, 17, mimg_alloc(m, 1));
	mimg_zero(m, 18, 0);
	/* Across the first L2 boundary: 511 and 512 contiguous on the host. */
	h = mimg_alloc(m, 2);
	mimg_data(m, 511, h);
	mimg_data(m, 512, h + c);
	/* The last cluster, partly past the virtual size. */
	mimg_data(m, (m->vsize - 1) / c, mimg_alloc(m, 1));
	/* L1 entry 2 (4-6 MiB) stays empty except the last cluster above. */
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);

	/* Contiguous clusters merge into one run. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 0, 8 * c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(4 * c, run.length);
	EXPECT_EQ(m->host[0], run.dev_offset);
	/* Starting mid-cluster. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, c + 1536, 3 * c - 1536, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(3 * c - 1536, run.length);
	EXPECT_EQ(m->host[1] + 1536, run.dev_offset);
	/* Unallocated clusters merge, and stop at data. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 4 * c, 8 * c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run.kind);
	EXPECT_EQ(4 * c, run.length);
	/* Discontiguous data: one cluster at a time. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 8 * c, 4 * c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(c, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, 10 * c, 2 * c, 0, &run, &err));
	EXPECT_EQ(c, run.length);
	EXPECT_EQ(m->host[10], run.dev_offset);
	/* Zero clusters merge, preallocated or not. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 16 * c, 3 * c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(3 * c, run.length);
	/* A whole empty L1 entry is one run. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 4 * MiB, 2 * MiB - c, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run.kind);
	EXPECT_EQ(2 * MiB - c, run.length);

	check_walks(_metadata, m, &self->o);
}

/* The same layout rules in a version 2 image, 512-byte clusters. */
TEST_F(map, runs_v2_small_clusters)
{
	struct mimg *m = &self->m;
	u64 i, h;

	/* L2 tables of 64 entries: 32 KiB each. */
	mimg_init(m, 2, 9, 256 * KiB, false);
	h = mimg_alloc(m, 100);
	for (i = 0; i < 100; i++)
		mimg_data(m, 30 + i, h + i * 512);
	for (i = 200; i < 500; i += 7)
		mimg_data(m, i, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);
	check_walks(_metadata, m, &self->o);
}

/* Extended L2 entries: subclusters of 2 KiB on 64 KiB clusters. */
TEST_F(map, subclusters)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 c = 65536, sc = c / 32, h;

	mimg_init(m, 3, 16, 8 * MiB, true);
	h = mimg_alloc(m, 1);
	/* 0-3 data, 4-7 zero, 8-31 unallocated. */
	mimg_sub(m, 0, h, 0x0000000f, 0x000000f0);
	/* Every other subcluster allocated. */
	mimg_sub(m, 1, mimg_alloc(m, 1), 0x55555555, 0);
	/* Fully allocated, next to a fully allocated cluster on the host. */
	h = mimg_alloc(m, 2);
	mimg_sub(m, 2, h, 0xffffffff, 0);
	mimg_sub(m, 3, h + c, 0xffffffff, 0);
	/* All zero, no host cluster. */
	mimg_sub(m, 4, 0, 0, 0xffffffff);
	mimg_data(m, 100, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);

	ASSERT_EQ(0, imgfmt_map(self->o.img, 0, c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(4 * sc, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, 4 * sc, c - 4 * sc, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(4 * sc, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, 8 * sc, c - 8 * sc, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run.kind);
	EXPECT_EQ(c - 8 * sc, run.length);
	/* Subcluster 2 of cluster 1 (allocated) lives at host + 2 sc. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, c + 2 * sc + 512, 512, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(m->host[32 + 2] + 512, run.dev_offset);
	/* Two whole clusters contiguous on the host: one run. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 2 * c, 2 * c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(2 * c, run.length);

	check_walks(_metadata, m, &self->o);
}

/*
 * Extended L2 entries, the virtual size ending inside the last cluster:
 * mid-subcluster, on a subcluster boundary, in the last subcluster.  The
 * last cluster is the device's last, cut where QEMU stops writing it (the
 * end of the disk, rounded up to a sector).
 */
TEST_F(map, subclusters_at_disk_end)
{
	static const u64 tails[] = { 5 * 2048 + 1024, 7 * 2048, 31 * 2048 + 512,
				     4096 + 512 };
	struct mimg *m = &self->m;
	u64 c = 65536, vs, h;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(tails); i++) {
		vs = 3 * c + tails[i];
		mimg_init(m, 3, 16, vs, true);
		mimg_sub(m, 1, mimg_alloc(m, 1), 0x0000ffff, 0xffff0000);
		h = mimg_alloc(m, 1);
		/* Every subcluster below the end: data, one zero, one hole. */
		mimg_sub(m, 3, h, 0xffffffffU >> (32 - (tails[i] + 2047) / 2048) &
			 ~0x6U, 0x2);
		m->dev.size = h + ALIGN(tails[i], 512);
		ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
			TH_LOG("%s", self->o.err);
		check_walks(_metadata, m, &self->o);
		check_walk(_metadata, m, &self->o, 3 * c, ALIGN(vs, 512) - 3 * c,
			   IMGFMT_MAP_NOWAIT);
		close_image(&self->o);
		mimg_free(m);
	}
}

/* Requests outside [0, virtual size rounded up to 512) are refused. */
TEST_F(map, bounds)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 vs;

	mimg_init(m, 3, 16, 10 * MiB + 3 * SECTOR, false);
	mimg_data(m, 0, mimg_alloc(m, 1));
	vs = m->vsize;
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));

	/* The last sector, and an empty run reaching the end. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, vs - SECTOR, SECTOR, 0, &run,
				&err));
	EXPECT_EQ(SECTOR, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, MiB, vs - MiB, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run.kind);
	EXPECT_EQ(vs - MiB, run.length);
	/*
	 * Past the end the disk reads zeroes (a backing layer smaller than
	 * the one above it): one ZERO run to the request's end.
	 */
	ASSERT_EQ(0, imgfmt_map(self->o.img, vs, SECTOR, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(SECTOR, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, 1ULL << 62, 4 * SECTOR, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(4 * SECTOR, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, ~0ULL - 1023, SECTOR, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	/* Across the end: the part inside first, then zeroes. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, vs - SECTOR, 2 * SECTOR, 0, &run,
				&err));
	EXPECT_EQ(SECTOR, run.length);
	ASSERT_EQ(0, imgfmt_map(self->o.img, vs, MiB, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(MiB, run.length);
	/* Wrapping around, zero length, unaligned: errors, not runs. */
	EXPECT_GT(0, imgfmt_map(self->o.img, ~0ULL - 511, SECTOR, 0, &run,
				&err));
	EXPECT_GT(0, imgfmt_map(self->o.img, SECTOR, ~0ULL - 511, 0, &run,
				&err));
	EXPECT_GT(0, imgfmt_map(self->o.img, 0, 0, 0, &run, &err));
	EXPECT_GT(0, imgfmt_map(self->o.img, 100, SECTOR, 0, &run, &err));
	EXPECT_GT(0, imgfmt_map(self->o.img, 0, 100, 0, &run, &err));
}

/*
 * A virtual size that is not a multiple of 512: the map covers the whole
 * last sector (the caller zeroes what lies past the virtual size).
 */
TEST_F(map, unaligned_virtual_size)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 vs = 3 * MiB + 777, last = vs / SECTOR * SECTOR;

	mimg_init(m, 3, 12, vs, false);
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);
	ASSERT_EQ(0, imgfmt_map(self->o.img, last, SECTOR, 0, &run, &err));
	EXPECT_EQ(SECTOR, run.length);
	EXPECT_NE(IMGFMT_RUN_DATA, run.kind);
	ASSERT_EQ(0, imgfmt_map(self->o.img, last + SECTOR, SECTOR, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
}

/*
 * NOWAIT: with the L2 table not cached, map() must not read and says
 * -EWOULDBLOCK; after a blocking map() of the same table it answers from
 * the cache, identically.  Empty L1 entries need no table at all.
 */
TEST_F(map, nowait)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run, run2;
	struct imgfmt_mcache_stats st;
	const char *err;
	unsigned long reads;
	u64 c = 4096;
	int r;

	mimg_init(m, 3, 12, 16 * MiB, false);
	mimg_data(m, 3, mimg_alloc(m, 1));		/* L2 table 0 */
	mimg_data(m, 512 + 7, mimg_alloc(m, 1));	/* L2 table 1 */
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));

	reads = m->reads;
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_map(self->o.img, 3 * c, c,
					   IMGFMT_MAP_NOWAIT, &run, &err));
	EXPECT_EQ(reads, m->reads);
	/* Empty L1 entry: answered without metadata. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 8 * MiB, c, IMGFMT_MAP_NOWAIT,
				&run, &err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run.kind);
	EXPECT_EQ(reads, m->reads);

	ASSERT_EQ(0, imgfmt_map(self->o.img, 3 * c, c, 0, &run, &err));
	EXPECT_LT(reads, m->reads);
	reads = m->reads;
	memset(&run2, 0xaa, sizeof(run2));
	ASSERT_EQ(0, imgfmt_map(self->o.img, 3 * c, c, IMGFMT_MAP_NOWAIT, &run2,
				&err));
	EXPECT_EQ(reads, m->reads);
	EXPECT_EQ(run.kind, run2.kind);
	EXPECT_EQ(run.length, run2.length);
	EXPECT_EQ(run.dev_offset, run2.dev_offset);
	EXPECT_EQ(m->host[3], run2.dev_offset);
	/* Other clusters of the cached table too. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 100 * c, c, IMGFMT_MAP_NOWAIT,
				&run2, &err));
	EXPECT_EQ(IMGFMT_RUN_UNALLOCATED, run2.kind);
	/* The second table is still cold. */
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_map(self->o.img, 2 * MiB + 7 * c, c,
					   IMGFMT_MAP_NOWAIT, &run, &err));
	EXPECT_EQ(reads, m->reads);

	/*
	 * Where a cold table begins, a NOWAIT map either returns the cached
	 * prefix or asks to wait; it never reads.
	 */
	r = imgfmt_map(self->o.img, 2 * MiB - c, 2 * c, IMGFMT_MAP_NOWAIT, &run,
		       &err);
	EXPECT_TRUE(r == -EWOULDBLOCK || (r == 0 && run.length == c))
		TH_LOG("r %d length %llu", r, (unsigned long long)run.length);
	EXPECT_EQ(reads, m->reads);

	imgfmt_mcache_get_stats(self->o.img->mcache, &st);
	EXPECT_LE(1, st.misses);
	EXPECT_LE(1, st.hits);
	EXPECT_EQ(c, st.table_size);
	EXPECT_GE(st.limit_bytes, st.bytes);
}

/* The cache stays within its bound and re-reads evicted tables. */
TEST_F(map, cache_bound)
{
	struct mimg *m = &self->m;
	struct imgfmt_mcache_stats st;
	struct imgfmt_run run;
	const char *err;
	unsigned long reads;
	u64 c = 4096, span = 2 * MiB, i, n = 64;

	mimg_init(m, 3, 12, n * span, false);
	for (i = 0; i < n; i++)
		mimg_data(m, i * 512 + i % 500, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_MIN_CACHE_BYTES, &self->o));
	for (i = 0; i < n; i++) {
		ASSERT_EQ(0, imgfmt_map(self->o.img, i * span, span, 0, &run,
					&err));
		imgfmt_mcache_get_stats(self->o.img->mcache, &st);
		ASSERT_GE(st.limit_bytes, st.bytes);
	}
	EXPECT_EQ(n, st.misses);
	EXPECT_GE(IMGFMT_MIN_CACHE_BYTES, st.limit_bytes);
	EXPECT_GE(st.limit_bytes, st.peak_bytes);
	/* The first table was evicted long ago. */
	reads = m->reads;
	ASSERT_EQ(0, imgfmt_map(self->o.img, 0, c, 0, &run, &err));
	EXPECT_LT(reads, m->reads);
	check_walks(_metadata, m, &self->o);
}

/* A cache bound below two tables is raised to two. */
TEST_F(map, tiny_cache)
{
	struct mimg *m = &self->m;
	struct imgfmt_mcache_stats st;

	mimg_init(m, 3, 20, 64 * MiB, false);
	mimg_data(m, 1, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, 0, &self->o)) TH_LOG("%s", self->o.err);
	imgfmt_mcache_get_stats(self->o.img->mcache, &st);
	/* L2 tables are cached in 4 KiB slices; the cache holds two at least. */
	EXPECT_EQ(4096, st.table_size);
	EXPECT_LE(2ULL * st.table_size, st.limit_bytes);
	check_walks(_metadata, m, &self->o);
}

/* Device read errors fail the map, are not cached, and pass. */
TEST_F(map, read_errors)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err = NULL;
	u64 c = 4096;

	mimg_init(m, 3, 12, 4 * MiB, false);
	mimg_data(m, 5, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));
	m->fail_reads = true;
	EXPECT_EQ(-EIO, imgfmt_map(self->o.img, 5 * c, c, 0, &run, &err));
	EXPECT_NE(NULL, err);
	m->fail_reads = false;
	ASSERT_EQ(0, imgfmt_map(self->o.img, 5 * c, c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(m->host[5], run.dev_offset);
}

/*
 * Bad L1 and L2 entries fail the units behind them with -EIO; their
 * neighbours map fine (check_walks knows which units are bad).
 */
TEST_F(map, corrupt_entries)
{
	struct mimg *m = &self->m;
	u64 c = 4096, good, pos, e;

	mimg_init(m, 3, 12, 20 * MiB, false);
	for (pos = 0; pos < 10; pos++)
		mimg_data(m, pos * 512 + 1, mimg_alloc(m, 1));
	good = mimg_alloc(m, 1);
	mimg_data(m, 2, good);

	/*
	 * L1 entry 1: reserved bit 1; entry 2: bit 60; 3: unaligned; 4: past
	 * the end of the device.
	 */
	pos = mimg_l1_pos(m, 512);
	put_be(m->buf + pos, 8, get_be(m->buf + pos, 8) | 1ULL << 1);
	pos = mimg_l1_pos(m, 1024);
	put_be(m->buf + pos, 8, get_be(m->buf + pos, 8) | 1ULL << 60);
	pos = mimg_l1_pos(m, 1536);
	put_be(m->buf + pos, 8, get_be(m->buf + pos, 8) + 512);
	pos = mimg_l1_pos(m, 2048);
	put_be(m->buf + pos, 8, (1ULL << 40) | L2E_COPIED);
	for (pos = 512; pos < 2560; pos++)
		model_bad(m, pos);

	/* L2 entries in table 0: reserved bits, unaligned, past the end. */
	mimg_set_entry(m, 10, good | L2E_COPIED | 1ULL << 3, 0);
	model_bad(m, 10);
	mimg_set_entry(m, 11, good | L2E_COPIED | 1ULL << 57, 0);
	model_bad(m, 11);
	mimg_set_entry(m, 12, (good + 512) | L2E_COPIED, 0);
	model_bad(m, 12);
	mimg_set_entry(m, 13, (1ULL << 40) | L2E_COPIED, 0);
	model_bad(m, 13);
	/* Zero flag with reserved bits. */
	mimg_set_entry(m, 14, L2E_ZERO | 1ULL << 58, 0);
	model_bad(m, 14);
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);
	check_walks(_metadata, m, &self->o);

	/* A run from good data stops before the bad cluster. */
	e = 0;
	{
		struct imgfmt_run run;
		const char *err;
		int r = imgfmt_map(self->o.img, 9 * c, 4 * c, 0, &run, &err);

		if (!r)
			e = run.length;
		EXPECT_TRUE(r == -EIO || (r == 0 && e <= c));
	}
}

/* The zero flag is not defined in version 2: corruption there. */
TEST_F(map, v2_zero_flag)
{
	struct mimg *m = &self->m;

	mimg_init(m, 2, 12, 4 * MiB, false);
	mimg_data(m, 0, mimg_alloc(m, 1));
	mimg_set_entry(m, 1, L2E_ZERO, 0);
	model_bad(m, 1);
	mimg_data(m, 2, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));
	check_walks(_metadata, m, &self->o);
}

/* Subcluster bitmaps that contradict themselves or their entry. */
TEST_F(map, corrupt_subclusters)
{
	struct mimg *m = &self->m;
	u64 u0;

	mimg_init(m, 3, 14, 4 * MiB, true);
	mimg_sub(m, 0, mimg_alloc(m, 1), 0x0000ffff, 0xffff0000);
	/*
	 * Subcluster 5 both allocated and zero: the whole cluster fails, as
	 * in QEMU, not only that subcluster.
	 */
	mimg_sub(m, 1, mimg_alloc(m, 1), 0x000000ff, 0x00000020);
	for (u0 = 32; u0 < 64; u0++)
		m->kind[u0] = UNIT_BAD;
	/* No host cluster, but allocated subclusters: the cluster fails. */
	mimg_set_entry(m, 2, 0, 0x3);
	model_bad(m, 2);
	/* Zero flag (bit 0) is reserved with extended L2 entries. */
	mimg_set_entry(m, 3, mimg_alloc(m, 1) | L2E_COPIED | L2E_ZERO,
		       0xffffffff);
	model_bad(m, 3);
	mimg_sub(m, 4, 0, 0, 0xffffffff);
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);
	check_walks(_metadata, m, &self->o);
}

/* A compressed cluster is described, not read: where its stream lies. */
TEST_F(map, compressed)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 c = 65536, host, desc;
	u32 offset_bits = 62 - (16 - 8);

	mimg_init(m, 3, 16, 4 * MiB, false);
	host = mimg_alloc(m, 2) + 1000;
	/* Two more sectors after the first: three sectors, from byte 1000. */
	desc = host | 2ULL << offset_bits;
	mimg_set_entry(m, 3, L2E_COMPRESSED | desc, 0);
	mimg_data(m, 4, mimg_alloc(m, 1));
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));

	ASSERT_EQ(0, imgfmt_map(self->o.img, 3 * c + 4096, 2 * c, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_COMPRESSED, run.kind);
	EXPECT_GE(c - 4096, run.length);
	EXPECT_EQ(host, run.comp_offset);
	EXPECT_EQ(3 * SECTOR - (host & 511), run.comp_length);
	EXPECT_EQ(4096, run.comp_skip);
	/* The next cluster is ordinary data. */
	ASSERT_EQ(0, imgfmt_map(self->o.img, 4 * c, c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(m->host[4], run.dev_offset);
}

/*
 * A data cluster cut short by the end of the device: what the device holds
 * is data, the rest reads as zeroes (QEMU reads past the end of a file as
 * zeroes).  A cluster starting past the end is corruption.
 */
TEST_F(map, data_past_device_end)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err;
	u64 c = 4096, host;

	mimg_init(m, 3, 12, 1 * MiB, false);
	mimg_data(m, 0, mimg_alloc(m, 1));
	host = mimg_alloc(m, 1);
	mimg_data(m, 1, host);
	m->dev.size -= c - 1024;	/* 1 KiB of cluster 1 remains */
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o));
	ASSERT_EQ(0, imgfmt_map(self->o.img, c, c, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(1024, run.length);
	EXPECT_EQ(host, run.dev_offset);
	ASSERT_EQ(0, imgfmt_map(self->o.img, c + 1024, c - 1024, 0, &run,
				&err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(c - 1024, run.length);
}

/* get_info() reports the header. */
TEST_F(map, info)
{
	struct mimg *m = &self->m;
	struct imgfmt_info info;

	mimg_init(m, 3, 15, 100 * MiB, true);
	put_be(m->buf + 72, 8, get_be(m->buf + 72, 8) | 1);	/* dirty */
	put_be(m->buf + 80, 8, 1);				/* lazy */
	put_be(m->buf + 96, 4, 3);				/* 8 bits */
	ASSERT_EQ(0, open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o))
		TH_LOG("%s", self->o.err);
	memset(&info, 0, sizeof(info));
	info = self->o.img->info;
	EXPECT_STREQ("qcow2", info.format);
	EXPECT_STREQ("qcow2", self->o.ops->name);
	EXPECT_EQ(3, info.version);
	EXPECT_EQ(100 * MiB, info.virtual_size);
	EXPECT_EQ(32768, info.cluster_size);
	EXPECT_EQ(8, info.refcount_bits);
	EXPECT_TRUE(info.extended_l2);
	EXPECT_TRUE(info.dirty);
	EXPECT_TRUE(info.lazy_refcounts);
	EXPECT_FALSE(info.corrupt);
	EXPECT_FALSE(info.encrypted);
	EXPECT_EQ(m->l1_size, info.l1_entries);
	EXPECT_EQ(m->l1_off, info.l1_offset);
	EXPECT_EQ(0, info.nb_snapshots);
	EXPECT_STREQ("", info.backing_file);
	EXPECT_STREQ("", info.data_file);
}

/* ----------------------------------------------------- header validation */

struct patch {
	u32 off;
	u8 width;
	u64 val;
};

FIXTURE(header) {
	struct mimg m;
	struct opened o;
};

FIXTURE_VARIANT(header) {
	u32 version;
	u32 cbits;
	struct patch p[5];
	/* NULL: the image must open. */
	const char *err;
	/* Non-zero: cut the device to this many bytes. */
	u64 dev_size;
};

/*
 * Each variant patches a valid image: version 3 (or .version), 64 KiB
 * clusters (or .cbits), 1 MiB, whose L1 table is at 128 KiB.
 */
#define H(name) FIXTURE_VARIANT_ADD(header, name)

H(valid) {};

H(valid_v2) {
	.version = 2,
};

/*
 * Version 2 has no fields past 72: its header extensions start there.  An
 * unknown extension whose bytes, read as version 3 fields, would be an
 * unknown incompatible feature, refcount order 99 and header length 3.
 */
H(v2_ignores_v3_fields) {
	.version = 2,
	.p = { { 72, 8, 0x1234567800000018ULL }, { 96, 4, 99 }, { 100, 4, 3 } },
};

H(bad_magic) {
	.p = { { 0, 4, 0x514649fa } },
	.err = "unknown image format",
};

H(version_0) {
	.p = { { 4, 4, 0 } },
	.err = "unsupported QCOW2 version",
};

H(version_4) {
	.p = { { 4, 4, 4 } },
	.err = "unsupported QCOW2 version",
};

H(version_huge) {
	.p = { { 4, 4, 0xffffffff } },
	.err = "unsupported QCOW2 version",
};

H(cluster_bits_9) {
	.cbits = 9,
};

H(cluster_bits_21) {
	.cbits = 21,
};

H(cluster_bits_8) {
	.p = { { 20, 4, 8 } },
	.err = "QCOW2 cluster size out of range",
};

H(cluster_bits_22) {
	.p = { { 20, 4, 22 } },
	.err = "QCOW2 cluster size out of range",
};

H(cluster_bits_32) {
	.p = { { 20, 4, 32 } },
	.err = "QCOW2 cluster size out of range",
};

H(header_length_104) {
	.p = { { 100, 4, 104 } },
};

H(header_length_96) {
	.p = { { 100, 4, 96 } },
	.err = "QCOW2 header length invalid",
};

H(header_length_108) {
	.p = { { 100, 4, 108 } },
	.err = "QCOW2 header length invalid",
};

H(header_length_cluster) {
	.p = { { 100, 4, 65536 } },
};

H(header_length_past_cluster) {
	.p = { { 100, 4, 65536 + 8 } },
	.err = "QCOW2 header length invalid",
};

H(header_longer_than_device) {
	.cbits = 14,
	.p = { { 100, 4, 8192 } },
	.dev_size = 4096,
	.err = "image is smaller than a QCOW2 header",
};

H(device_smaller_than_header) {
	.dev_size = 64,
	.err = "image is smaller than a QCOW2 header",
};

H(incompat_dirty_corrupt) {
	.p = { { 72, 8, 3 } },
};

H(incompat_bit_5) {
	.p = { { 72, 8, 1ULL << 5 } },
	.err = "QCOW2 unknown incompatible feature",
};

H(incompat_bit_63) {
	.p = { { 72, 8, 1ULL << 63 } },
	.err = "QCOW2 unknown incompatible feature",
};

/* Autoclear bit 1 (raw external data) is known: see below. */
H(unknown_compatible_autoclear) {
	.p = { { 80, 8, ~1ULL }, { 88, 8, ~2ULL } },
};

H(raw_data_file_bit_alone) {
	.p = { { 88, 8, 2 } },
	.err = "QCOW2 raw external data bit without an external data file",
};

H(refcount_order_6) {
	.p = { { 96, 4, 6 } },
};

H(refcount_order_7) {
	.p = { { 96, 4, 7 } },
	.err = "QCOW2 refcount order out of range",
};

H(crypt_aes) {
	.p = { { 32, 4, 1 } },
	.err = "QCOW2 encrypted images are not supported yet",
};

H(crypt_luks) {
	.p = { { 32, 4, 2 } },
	.err = "QCOW2 encrypted images are not supported yet",
};

H(crypt_3) {
	.p = { { 32, 4, 3 } },
	.err = "QCOW2 unknown encryption method",
};

H(backing_file) {
	.p = { { 8, 8, 512 }, { 16, 4, 10 } },
	.err = "QCOW2 backing file not given as a lower layer",
};

H(backing_name_1024) {
	.p = { { 8, 8, 512 }, { 16, 4, 1024 } },
	.err = "QCOW2 backing file name too long",
};

H(backing_name_past_cluster) {
	.p = { { 8, 8, 65536 - 4 }, { 16, 4, 8 } },
	.err = "QCOW2 backing file name offset invalid",
};

H(backing_name_offset_huge) {
	.p = { { 8, 8, ~0ULL - 3 }, { 16, 4, 8 } },
	.err = "QCOW2 backing file name offset invalid",
};

H(external_data_file) {
	.p = { { 72, 8, 1ULL << 2 } },
	.err = "QCOW2 external data file not given",
};

H(compression_zstd) {
	.p = { { 72, 8, 1ULL << 3 }, { 104, 1, 1 } },
};

H(compression_type_2) {
	.p = { { 72, 8, 1ULL << 3 }, { 104, 1, 2 } },
	.err = "QCOW2 unknown compression type",
};

H(extended_l2_8k_clusters) {
	.cbits = 13,
	.p = { { 72, 8, 1ULL << 4 } },
	.err = "QCOW2 extended L2 entries need clusters of 16 KiB or more",
};

H(refcount_table_unaligned) {
	.p = { { 48, 8, 65536 + 512 } },
	.err = "QCOW2 refcount table offset invalid",
};

H(refcount_table_huge) {
	.p = { { 56, 4, 0xffffffff } },
	.err = "QCOW2 refcount table too large",
};

H(snapshots_65536) {
	.p = { { 60, 4, 65536 }, { 64, 8, 65536 } },
};

H(snapshots_65537) {
	.p = { { 60, 4, 65537 }, { 64, 8, 65536 } },
	.err = "QCOW2 too many snapshots",
};

H(snapshot_table_unaligned) {
	.p = { { 60, 4, 1 }, { 64, 8, 65536 + 8 } },
	.err = "QCOW2 snapshot table offset invalid",
};

H(refcount_table_none) {
	.p = { { 56, 4, 0 } },
	.err = "QCOW2 image has no refcount table",
};

/* QEMU's limit is where a table ends, at most 2^63 - 1. */
H(refcount_table_at_offset_limit) {
	.p = { { 48, 8, 0x7fffffffffff0000ULL - 65536 } },
};

H(refcount_table_past_offset_limit) {
	.p = { { 48, 8, 0x7fffffffffff0000ULL } },
	.err = "QCOW2 refcount table offset invalid",
};

H(snapshot_table_past_offset_limit) {
	.p = { { 60, 4, 2000 }, { 64, 8, 0x7fffffffffff0000ULL } },
	.err = "QCOW2 snapshot table offset invalid",
};

/* With no snapshots, the offset still counts. */
H(snapshot_table_unaligned_empty) {
	.p = { { 64, 8, 65536 + 8 } },
	.err = "QCOW2 snapshot table offset invalid",
};

H(snapshot_table_huge_offset_empty) {
	.p = { { 64, 8, 1ULL << 63 } },
	.err = "QCOW2 snapshot table offset invalid",
};

H(l1_empty_unaligned) {
	.p = { { 24, 8, 0 }, { 36, 4, 0 }, { 40, 8, 131072 + 512 } },
	.err = "QCOW2 L1 table offset not aligned to a cluster",
};

H(l1_empty_huge_offset) {
	.p = { { 24, 8, 0 }, { 36, 4, 0 }, { 40, 8, 1ULL << 63 } },
	.err = "QCOW2 L1 table offset invalid",
};

/* An empty table is never read: past the device is fine. */
H(l1_empty_past_device) {
	.p = { { 24, 8, 0 }, { 36, 4, 0 }, { 40, 8, 1ULL << 40 } },
};

/* Without an offset there is no backing file name to be too long. */
H(backing_size_without_offset) {
	.p = { { 16, 4, 5000 } },
};

/* 4 bytes left for extensions before the backing file name at 116. */
H(extension_header_cut) {
	.p = { { 8, 8, 116 }, { 16, 4, 4 } },
	.err = "QCOW2 header extension invalid",
};

H(extension_end_marker_overrun) {
	.p = { { 116, 4, 65536 } },
	.err = "QCOW2 header extension invalid",
};

H(backing_format_15) {
	.p = { { 112, 4, 0xe2792aca }, { 116, 4, 15 } },
};

H(backing_format_16) {
	.p = { { 112, 4, 0xe2792aca }, { 116, 4, 16 } },
	.err = "QCOW2 backing format name too long",
};

#define EXT_BITMAPS	0x23852875
#define EXT_CRYPTO	0x0537be77

/* Stale bitmaps (autoclear bit clear): only the length counts. */
H(bitmaps_stale) {
	.p = { { 112, 4, EXT_BITMAPS }, { 116, 4, 24 }, { 120, 4, 0 } },
};

H(bitmaps_length_16) {
	.p = { { 112, 4, EXT_BITMAPS }, { 116, 4, 16 } },
	.err = "QCOW2 bitmaps extension length invalid",
};

H(bitmaps_length_32) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 32 },
	       { 120, 4, 1 } },
	.err = "QCOW2 bitmaps extension length invalid",
};

H(bitmaps_zero) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 24 } },
	.err = "QCOW2 bitmap count out of range",
};

H(bitmaps_65536) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 24 },
	       { 120, 4, 65536 } },
	.err = "QCOW2 bitmap count out of range",
};

H(bitmaps_reserved) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 24 },
	       { 120, 4, 1 }, { 124, 4, 1 } },
	.err = "QCOW2 bitmaps extension reserved field not zero",
};

H(bitmaps_directory_unaligned) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 24 },
	       { 120, 4, 1 }, { 136, 8, 65536 + 512 } },
	.err = "QCOW2 bitmap directory offset not aligned to a cluster",
};

H(bitmaps_directory_huge) {
	.p = { { 88, 8, 1 }, { 112, 4, EXT_BITMAPS }, { 116, 4, 24 },
	       { 120, 4, 1 }, { 128, 8, 1024ULL * 65535 + 1 } },
	.err = "QCOW2 bitmap directory too large",
};

H(crypto_header_without_luks) {
	.p = { { 112, 4, EXT_CRYPTO }, { 116, 4, 16 } },
	.err = "QCOW2 encryption header extension without LUKS encryption",
};

H(crypto_header_length_8) {
	.p = { { 32, 4, 2 }, { 112, 4, EXT_CRYPTO }, { 116, 4, 8 } },
	.err = "QCOW2 encryption header extension length invalid",
};

H(crypto_header_unaligned) {
	.p = { { 32, 4, 2 }, { 112, 4, EXT_CRYPTO }, { 116, 4, 16 },
	       { 120, 8, 512 } },
	.err = "QCOW2 encryption header offset not aligned to a cluster",
};

H(crypto_header_luks) {
	.p = { { 32, 4, 2 }, { 112, 4, EXT_CRYPTO }, { 116, 4, 16 },
	       { 120, 8, 65536 } },
	.err = "QCOW2 encrypted images are not supported yet",
};

H(l1_unaligned) {
	.p = { { 40, 8, 131072 + 512 } },
	.err = "QCOW2 L1 table offset not aligned to a cluster",
};

H(l1_past_device) {
	.p = { { 40, 8, 1ULL << 40 } },
	.err = "QCOW2 L1 table offset beyond end of device",
};

H(l1_offset_overflow) {
	.p = { { 40, 8, 0x00fffffffff00000ULL }, { 36, 4, 1 << 20 } },
	.err = "QCOW2 L1 table offset beyond end of device",
};

H(l1_too_large) {
	.p = { { 36, 4, (32 << 20) / 8 + 1 } },
	.err = "QCOW2 L1 table too large",
};

H(l1_too_small) {
	.p = { { 24, 8, 1ULL << 30 } },
	.err = "QCOW2 L1 table too small for the virtual size",
};

H(l1_empty) {
	.p = { { 36, 4, 0 } },
	.err = "QCOW2 L1 table too small for the virtual size",
};

H(virtual_size_huge) {
	.p = { { 24, 8, 0x7fffffffffffffffULL } },
	.err = "QCOW2 virtual size too large",
};

H(virtual_size_zero) {
	.p = { { 24, 8, 0 }, { 36, 4, 0 } },
};

H(extension_overrun) {
	.p = { { 112, 4, 0x12345678 }, { 116, 4, 65536 } },
	.err = "QCOW2 header extension invalid",
};

H(extension_to_cluster_end) {
	.p = { { 112, 4, 0x12345678 }, { 116, 4, 65536 - 120 } },
};

H(extension_unknown) {
	.p = { { 112, 4, 0x12345678 }, { 116, 4, 5 } },
};

FIXTURE_SETUP(header)
{
	struct mimg *m = &self->m;
	unsigned int i;

	uport_set_corruption_reports(false);
	mimg_init(m, variant->version ?: 3, variant->cbits ?: 16, MiB, false);
	mimg_data(m, 1, mimg_alloc(m, 1));
	for (i = 0; i < ARRAY_SIZE(variant->p) && variant->p[i].width; i++)
		put_be(m->buf + variant->p[i].off, variant->p[i].width,
		       variant->p[i].val);
	if (variant->dev_size)
		m->dev.size = variant->dev_size;
}

FIXTURE_TEARDOWN(header)
{
	close_image(&self->o);
	mimg_free(&self->m);
}

TEST_F(header, open)
{
	struct imgfmt_run run;
	const char *err;
	int r;

	r = open_image(&self->m, IMGFMT_DEFAULT_CACHE_BYTES, &self->o);
	if (!variant->err) {
		ASSERT_EQ(0, r) TH_LOG("refused: %s", self->o.err);
		ASSERT_NE(NULL, self->o.img);
		/* And it maps. */
		if (get_be(self->m.buf + 24, 8)) {
			ASSERT_EQ(0, imgfmt_map(self->o.img, 0, SECTOR, 0, &run,
						&err));
		}
		return;
	}
	ASSERT_GT(0, r) TH_LOG("accepted, expected '%s'", variant->err);
	ASSERT_NE(NULL, self->o.err);
	EXPECT_NE(NULL, strstr(self->o.err, variant->err))
		TH_LOG("expected '%s', got '%s'", variant->err, self->o.err);
	self->o.img = NULL;
}

/* ------------------------------------------------------ snapshot table */

/*
 * Append a snapshot table entry at *pos (8-byte aligned first, as QEMU
 * writes them); the ID and name bytes are left as they are.
 */
static void put_snapshot(struct mimg *m, u64 *pos, u64 l1_off, u32 l1_size,
			 u32 extra, u16 id, u16 name)
{
	u8 *e;

	*pos = ALIGN(*pos, 8);
	e = m->buf + *pos;
	memset(e, 0, 40);
	put_be(e + 0, 8, l1_off);
	put_be(e + 8, 4, l1_size);
	put_be(e + 12, 2, id);
	put_be(e + 14, 2, name);
	put_be(e + 36, 4, extra);
	*pos += 40 + extra + id + name;
}

/* A table of n entries from cluster `at` on; the header points at it. */
static void set_snapshots(struct mimg *m, u64 at, u32 n)
{
	put_be(m->buf + 60, 4, n);
	put_be(m->buf + 64, 8, at);
}

FIXTURE(snap) {
	struct mimg m;
	struct opened o;
	u64 table;	/* where the table goes: a cluster of its own */
};

FIXTURE_SETUP(snap)
{
	uport_set_corruption_reports(false);
	mimg_init(&self->m, 3, 16, MiB, false);
	mimg_data(&self->m, 1, mimg_alloc(&self->m, 1));
	self->table = mimg_alloc(&self->m, 4);
}

FIXTURE_TEARDOWN(snap)
{
	close_image(&self->o);
	mimg_free(&self->m);
}

static void expect_open(struct __test_metadata *_metadata, struct mimg *m,
			struct opened *o, const char *err)
{
	int r = open_image(m, IMGFMT_DEFAULT_CACHE_BYTES, o);

	if (!err) {
		ASSERT_EQ(0, r) TH_LOG("refused: %s", o->err);
		return;
	}
	o->img = NULL;
	ASSERT_GT(0, r) TH_LOG("accepted, expected '%s'", err);
	EXPECT_STREQ(err, o->err);
}

/* What qemu-img snapshot -c writes: 16 bytes of extra data, ID, name. */
TEST_F(snap, qemu_like)
{
	u64 pos = self->table;

	put_snapshot(&self->m, &pos, self->m.l1_off, self->m.l1_size, 16, 1, 5);
	put_snapshot(&self->m, &pos, 4 * 65536, 1, 16, 1, 5);
	set_snapshots(&self->m, self->table, 2);
	expect_open(_metadata, &self->m, &self->o, NULL);
}

TEST_F(snap, extra_data)
{
	u64 pos = self->table;

	put_snapshot(&self->m, &pos, 0, 0, 1024, 0, 0);
	put_snapshot(&self->m, &pos, 0, 0, 1025, 0, 0);
	set_snapshots(&self->m, self->table, 1);
	expect_open(_metadata, &self->m, &self->o, NULL);
	close_image(&self->o);
	set_snapshots(&self->m, self->table, 2);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot extra data too large");
}

TEST_F(snap, l1_table)
{
	u64 pos = self->table;

	put_snapshot(&self->m, &pos, 65536 + 512, 1, 16, 0, 0);
	set_snapshots(&self->m, self->table, 1);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot L1 table offset invalid");
	pos = self->table;
	put_snapshot(&self->m, &pos, 0x7fffffffffff0000ULL, 8192, 16, 0, 0);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot L1 table offset invalid");
	pos = self->table;
	put_snapshot(&self->m, &pos, 65536, (32 << 20) / 8 + 1, 16, 0, 0);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot L1 table too large");
	pos = self->table;
	put_snapshot(&self->m, &pos, 65536, (32 << 20) / 8, 16, 0, 0);
	expect_open(_metadata, &self->m, &self->o, NULL);
}

/*
 * Entries of every size cross the walker's buffer boundaries; the last
 * one is bad, so it must have been found.
 */
TEST_F(snap, across_buffers)
{
	u64 pos = self->table;
	u32 i, n = 300;

	for (i = 0; i < n - 1; i++)
		put_snapshot(&self->m, &pos, 0, 0, i % 3 ? 16 : 0, i % 7,
			     (i * 37) % 500);
	ASSERT_GT(self->table + 4 * 65536, pos + 40);
	put_snapshot(&self->m, &pos, 512, 1, 16, 1, 1);
	set_snapshots(&self->m, self->table, n - 1);
	expect_open(_metadata, &self->m, &self->o, NULL);
	close_image(&self->o);
	set_snapshots(&self->m, self->table, n);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot L1 table offset invalid");
}

/* QEMU's 64 MiB bound on the whole table, with the largest entries. */
TEST_F(snap, table_size)
{
	u64 per = ALIGN(40 + 1024 + 2 * 65535ULL, 8), pos;
	u32 fit = ((64 << 20) - (40 + 1024 + 2 * 65535)) / per + 1, i;

	pos = mimg_alloc(&self->m, (fit + 1) * per / 65536 + 1);
	self->table = pos;
	for (i = 0; i < fit + 1; i++)
		put_snapshot(&self->m, &pos, 0, 0, 1024, 65535, 65535);
	set_snapshots(&self->m, self->table, fit);
	expect_open(_metadata, &self->m, &self->o, NULL);
	close_image(&self->o);
	set_snapshots(&self->m, self->table, fit + 1);
	expect_open(_metadata, &self->m, &self->o,
		    "QCOW2 snapshot table too large");
}

/*
 * The most entries QEMU allows, read in bounded pieces: a few reads per
 * 4 KiB of table, not one per entry.  Past the device the table reads as
 * zeroes (empty entries), as QEMU reads past the end of a file.
 */
TEST_F(snap, many_entries)
{
	unsigned long reads;
	u64 at = mimg_alloc(&self->m, 41), pos = at;
	u32 i;

	for (i = 0; i < 65536; i++)
		put_snapshot(&self->m, &pos, 0, 0, 0, 0, 0);
	set_snapshots(&self->m, at, 65536);
	reads = self->m.reads;
	expect_open(_metadata, &self->m, &self->o, NULL);
	EXPECT_GT(reads + 1000, self->m.reads);
	close_image(&self->o);
	set_snapshots(&self->m, 1ULL << 40, 65536);
	expect_open(_metadata, &self->m, &self->o, NULL);
}

/* ------------------------------------------------- mapping a snapshot */

/* Open m with the snapshot want selected (NULL: the active state). */
static int open_with(struct mimg *m, const char *want, struct imgfmt_dev *data,
		     struct opened *o)
{
	struct imgfmt_open_args args = {
		.dev = &m->dev,
		.cache_bytes = IMGFMT_DEFAULT_CACHE_BYTES,
		.snapshot = want,
		.data_dev = data,
	};

	memset(o, 0, sizeof(*o));
	o->ops = &imgfmt_qcow2_ops;
	o->rc = imgfmt_open(o->ops, &args, &o->img, &o->err);
	if (o->rc)
		o->img = NULL;
	return o->rc;
}

/*
 * A snapshot entry with 24 bytes of extra data (VM state size, disk size,
 * icount), its ID and its name, at *pos; extra_len may cut the extra data
 * short.
 */
static void put_named_snapshot(struct mimg *m, u64 *pos, u64 l1_off,
			       u32 l1_size, u32 extra_len, u64 disk_size,
			       const char *id, size_t id_len, const char *name,
			       size_t name_len)
{
	u8 *e, x[24];

	put_snapshot(m, pos, l1_off, l1_size, extra_len, id_len, name_len);
	e = m->buf + *pos - (40 + extra_len + id_len + name_len);
	put_be(e + 16, 4, 1700000000);		/* date */
	put_be(e + 20, 4, 123456789);
	put_be(e + 24, 8, 3723004000000ULL);	/* 1:02:03.004 */
	put_be(e + 32, 4, 0xffffffff);		/* ignored: extra has it */
	put_be(x, 8, 5 * MiB);
	put_be(x + 8, 8, disk_size);
	put_be(x + 16, 8, 42);
	memcpy(e + 40, x, extra_len < sizeof(x) ? extra_len : sizeof(x));
	memcpy(e + 40 + extra_len, id, id_len);
	memcpy(e + 40 + extra_len + id_len, name, name_len);
}

/*
 * A snapshot's L1 table of one entry whose L2 table maps virtual cluster
 * vc to a data cluster of its own; returns the L1 table's offset and the
 * data cluster in *host.
 */
static u64 snapshot_l1(struct mimg *m, u64 vc, u64 *host)
{
	u64 l1 = mimg_alloc(m, 1), l2 = mimg_alloc(m, 1);

	*host = mimg_alloc(m, 1);
	put_be(m->buf + l1, 8, l2);
	put_be(m->buf + l2 + 8 * vc, 8, *host);
	return l1;
}

static void expect_run(struct __test_metadata *_metadata, struct opened *o,
		       u64 off, enum imgfmt_run_kind kind, u64 dev_offset)
{
	struct imgfmt_run run;
	const char *err = NULL;

	ASSERT_EQ(0, imgfmt_map(o->img, off, SECTOR, 0, &run, &err))
		TH_LOG("map of %llu: %s", (unsigned long long)off, err);
	EXPECT_EQ(kind, run.kind) TH_LOG("at %llu", (unsigned long long)off);
	if (kind == IMGFMT_RUN_DATA)
		EXPECT_EQ(dev_offset, run.dev_offset);
}

/* A snapshot maps its own L1 table, found by ID first, then by name. */
TEST_F(snap, map_by_id_or_name)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, host, l1 = snapshot_l1(m, 3, &host);
	u64 active = m->host[1];

	put_named_snapshot(m, &pos, l1, 1, 24, MiB, "1", 1, "2", 1);
	put_named_snapshot(m, &pos, m->l1_off, 1, 24, MiB, "2", 1, "x", 1);
	set_snapshots(m, self->table, 2);

	ASSERT_EQ(0, open_with(m, NULL, NULL, &self->o)) TH_LOG("%s", self->o.err);
	expect_run(_metadata, &self->o, 3 * 65536, IMGFMT_RUN_UNALLOCATED, 0);
	expect_run(_metadata, &self->o, 65536, IMGFMT_RUN_DATA, active);
	close_image(&self->o);

	ASSERT_EQ(0, open_with(m, "1", NULL, &self->o)) TH_LOG("%s", self->o.err);
	expect_run(_metadata, &self->o, 3 * 65536, IMGFMT_RUN_DATA, host);
	expect_run(_metadata, &self->o, 65536, IMGFMT_RUN_UNALLOCATED, 0);
	close_image(&self->o);

	/* "2" is the first entry's name but the second's ID: the ID wins. */
	ASSERT_EQ(0, open_with(m, "2", NULL, &self->o)) TH_LOG("%s", self->o.err);
	expect_run(_metadata, &self->o, 65536, IMGFMT_RUN_DATA, active);
	close_image(&self->o);

	EXPECT_EQ(-ENOENT, open_with(m, "3", NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot not found", self->o.err);
	EXPECT_EQ(-ENOENT, open_with(m, "", NULL, &self->o));
	EXPECT_EQ(-ENOENT, open_with(m, "22", NULL, &self->o));
}

/* Duplicate names: the first entry, as QEMU picks it. */
TEST_F(snap, duplicate_names)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, h1, h2;
	u64 l1a = snapshot_l1(m, 2, &h1), l1b = snapshot_l1(m, 2, &h2);

	put_named_snapshot(m, &pos, l1a, 1, 24, MiB, "7", 1, "dup", 3);
	put_named_snapshot(m, &pos, l1b, 1, 24, MiB, "8", 1, "dup", 3);
	set_snapshots(m, self->table, 2);
	ASSERT_EQ(0, open_with(m, "dup", NULL, &self->o));
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_DATA, h1);
	close_image(&self->o);
	ASSERT_EQ(0, open_with(m, "8", NULL, &self->o));
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_DATA, h2);
	close_image(&self->o);

	/* Duplicate IDs (QEMU never writes them): the first, too. */
	pos = self->table;
	put_named_snapshot(m, &pos, l1a, 1, 24, MiB, "9", 1, "a", 1);
	put_named_snapshot(m, &pos, l1b, 1, 24, MiB, "9", 1, "b", 1);
	ASSERT_EQ(0, open_with(m, "9", NULL, &self->o));
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_DATA, h1);
}

/* As QEMU reads it, a name ends at its first NUL byte. */
TEST_F(snap, name_with_nul)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, host, l1 = snapshot_l1(m, 2, &host);

	put_named_snapshot(m, &pos, l1, 1, 24, MiB, "5", 1, "ab\0cd", 5);
	set_snapshots(m, self->table, 1);
	ASSERT_EQ(0, open_with(m, "ab", NULL, &self->o)) TH_LOG("%s", self->o.err);
	close_image(&self->o);
	EXPECT_EQ(-ENOENT, open_with(m, "abc", NULL, &self->o));
	EXPECT_EQ(-ENOENT, open_with(m, "a", NULL, &self->o));
}

/*
 * A name longer than the walker's pieces and buffer, crossing a buffer
 * boundary, compared whole.
 */
TEST_F(snap, long_name)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, host, l1 = snapshot_l1(m, 2, &host);
	char *name = malloc(5000);

	ASSERT_NE(NULL, name);
	memset(name, 'n', 4999);
	name[4999] = '\0';
	/* A first entry that ends 100 bytes before the first 4 KiB. */
	put_named_snapshot(m, &pos, l1, 1, 24, MiB, "0", 1, name,
			   4096 - 100 - 64 - 1);
	put_named_snapshot(m, &pos, l1, 1, 24, MiB, "1", 1, name, 4999);
	set_snapshots(m, self->table, 2);
	ASSERT_EQ(0, open_with(m, name, NULL, &self->o)) TH_LOG("%s", self->o.err);
	close_image(&self->o);
	name[4998] = 'm';
	EXPECT_EQ(-ENOENT, open_with(m, name, NULL, &self->o));
	name[4998] = '\0';
	EXPECT_EQ(-ENOENT, open_with(m, name, NULL, &self->o));
	free(name);
}

/*
 * The snapshot's virtual size is its own, from the extra data, else the
 * active one; an L1 table shorter than that size needs is padded with
 * unallocated entries.
 */
TEST_F(snap, virtual_size)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, host, l1 = snapshot_l1(m, 2, &host);

	put_named_snapshot(m, &pos, l1, 1, 24, 300 * KiB + 1, "1", 1, "a", 1);
	put_named_snapshot(m, &pos, l1, 1, 8, 0, "2", 1, "b", 1);
	put_named_snapshot(m, &pos, l1, 1, 16, 2048 * MiB, "3", 1, "c", 1);
	put_named_snapshot(m, &pos, l1, 1, 16, (1ULL << 62) + 1, "4", 1, "d", 1);
	put_named_snapshot(m, &pos, l1, 0, 16, 4 * MiB, "5", 1, "e", 1);
	set_snapshots(m, self->table, 5);

	ASSERT_EQ(0, open_with(m, "a", NULL, &self->o));
	EXPECT_EQ(300 * KiB + 1, self->o.img->info.virtual_size);
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_DATA, host);
	/* Past the snapshot's end, zeroes, whatever its tables hold. */
	expect_run(_metadata, &self->o, 320 * KiB, IMGFMT_RUN_ZERO, 0);
	close_image(&self->o);

	ASSERT_EQ(0, open_with(m, "b", NULL, &self->o));
	EXPECT_EQ(MiB, self->o.img->info.virtual_size);
	close_image(&self->o);

	/* Four L1 entries' worth from a table of one. */
	ASSERT_EQ(0, open_with(m, "c", NULL, &self->o)) TH_LOG("%s", self->o.err);
	EXPECT_EQ(2048 * MiB, self->o.img->info.virtual_size);
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_DATA, host);
	expect_run(_metadata, &self->o, 1536 * MiB, IMGFMT_RUN_UNALLOCATED, 0);
	close_image(&self->o);

	EXPECT_EQ(-EINVAL, open_with(m, "d", NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot virtual size too large", self->o.err);

	ASSERT_EQ(0, open_with(m, "e", NULL, &self->o)) TH_LOG("%s", self->o.err);
	expect_run(_metadata, &self->o, 2 * 65536, IMGFMT_RUN_UNALLOCATED, 0);
}

/*
 * An L1 table past the device fails only the load of that snapshot (the
 * others, and the active state, still open); one of bad shape fails
 * every load.
 */
TEST_F(snap, l1_beyond_device)
{
	struct mimg *m = &self->m;
	u64 pos = self->table, host, l1 = snapshot_l1(m, 2, &host);

	put_named_snapshot(m, &pos, l1, 1, 24, MiB, "1", 1, "ok", 2);
	put_named_snapshot(m, &pos, 1ULL << 40, 1, 24, MiB, "2", 1, "far", 3);
	put_named_snapshot(m, &pos, m->dev.size - 65536, 8193, 24, MiB, "3", 1,
			   "long", 4);
	set_snapshots(m, self->table, 3);
	ASSERT_EQ(0, open_with(m, NULL, NULL, &self->o));
	close_image(&self->o);
	ASSERT_EQ(0, open_with(m, "ok", NULL, &self->o));
	close_image(&self->o);
	EXPECT_EQ(-EINVAL, open_with(m, "far", NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot L1 table offset beyond end of device",
		     self->o.err);
	EXPECT_EQ(-EINVAL, open_with(m, "long", NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot L1 table offset beyond end of device",
		     self->o.err);

	pos = self->table;
	put_named_snapshot(m, &pos, l1 + 512, 1, 24, MiB, "1", 1, "ok", 2);
	EXPECT_EQ(-EINVAL, open_with(m, "far", NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot L1 table offset invalid", self->o.err);
	pos = self->table;
	put_named_snapshot(m, &pos, l1, (32 << 20) / 8 + 1, 24, MiB, "1", 1,
			   "ok", 2);
	EXPECT_EQ(-EINVAL, open_with(m, NULL, NULL, &self->o));
	EXPECT_STREQ("QCOW2 snapshot L1 table too large", self->o.err);
}

struct listed {
	unsigned int n, stop_at;
	struct imgfmt_qcow2_snapshot sn[4];
	char id[4][16], name[4][16];
};

static int list_one(void *ctx, const struct imgfmt_qcow2_snapshot *sn)
{
	struct listed *l = ctx;

	if (l->n < 4) {
		l->sn[l->n] = *sn;
		snprintf(l->id[l->n], sizeof(l->id[0]), "%s", sn->id);
		snprintf(l->name[l->n], sizeof(l->name[0]), "%s", sn->name);
	}
	return ++l->n == l->stop_at ? 99 : 0;
}

/* What `imgfmt snapshot -l` lists: every field as QEMU reads it. */
TEST_F(snap, list)
{
	struct mimg *m = &self->m;
	u64 pos = self->table;
	struct listed l = { 0 };
	const char *err = NULL;

	put_named_snapshot(m, &pos, m->l1_off, 1, 24, 3 * MiB, "1", 1, "one", 3);
	put_named_snapshot(m, &pos, m->l1_off, 1, 16, 3 * MiB, "10", 2,
			   "t\0x", 3);
	put_named_snapshot(m, &pos, m->l1_off, 1, 0, 0, "", 0, "", 0);
	set_snapshots(m, self->table, 3);
	ASSERT_EQ(0, open_with(m, NULL, NULL, &self->o));
	ASSERT_EQ(0, imgfmt_qcow2_for_each_snapshot(self->o.img, list_one, &l,
						    &err));
	ASSERT_EQ(3, l.n);
	EXPECT_STREQ("1", l.id[0]);
	EXPECT_STREQ("one", l.name[0]);
	EXPECT_EQ(0, l.sn[0].index);
	EXPECT_EQ(5 * MiB, l.sn[0].vm_state_size);
	EXPECT_EQ(1700000000, l.sn[0].date_sec);
	EXPECT_EQ(123456789, l.sn[0].date_nsec);
	EXPECT_EQ(3723004000000ULL, l.sn[0].vm_clock_nsec);
	EXPECT_TRUE(l.sn[0].has_disk_size);
	EXPECT_EQ(3 * MiB, l.sn[0].disk_size);
	EXPECT_TRUE(l.sn[0].has_icount);
	EXPECT_EQ(42, l.sn[0].icount);
	EXPECT_STREQ("10", l.id[1]);
	EXPECT_STREQ("t", l.name[1]);
	EXPECT_FALSE(l.sn[1].has_icount);
	EXPECT_TRUE(l.sn[1].has_disk_size);
	/* No extra data: the 32-bit VM state size. */
	EXPECT_EQ(0xffffffffULL, l.sn[2].vm_state_size);
	EXPECT_FALSE(l.sn[2].has_disk_size);
	EXPECT_STREQ("", l.id[2]);

	memset(&l, 0, sizeof(l));
	l.stop_at = 2;
	EXPECT_EQ(99, imgfmt_qcow2_for_each_snapshot(self->o.img, list_one, &l,
						     &err));
	EXPECT_EQ(2, l.n);
	close_image(&self->o);

	m->fail_reads = false;
	set_snapshots(m, self->table, 0);
	ASSERT_EQ(0, open_with(m, NULL, NULL, &self->o));
	memset(&l, 0, sizeof(l));
	EXPECT_EQ(0, imgfmt_qcow2_for_each_snapshot(self->o.img, list_one, &l,
						    &err));
	EXPECT_EQ(0, l.n);
}

/* ---------------------------------------------- external data files */

/* A plain device: the data file. */
struct rawdev {
	struct imgfmt_dev dev;
	u8 *buf;
};

static int rawdev_read(struct imgfmt_dev *dev, u64 off, void *buf, size_t len)
{
	struct rawdev *r = container_of(dev, struct rawdev, dev);

	if (off > dev->size || len > dev->size - off)
		abort();
	memcpy(buf, r->buf + off, len);
	return 0;
}

FIXTURE(datafile) {
	struct mimg m;
	struct rawdev data;
	struct opened o;
};

#define DATA_BIT	(1ULL << 2)
#define RAW_BIT		(1ULL << 1)

/* The data_file extension right after the 112-byte header. */
static void put_data_file_ext(struct mimg *m, const char *name, u32 len)
{
	put_be(m->buf + 112, 4, 0x44415441);
	put_be(m->buf + 116, 4, len);
	memcpy(m->buf + 120, name, len);
}

FIXTURE_SETUP(datafile)
{
	uport_set_corruption_reports(false);
	mimg_init(&self->m, 3, 16, MiB, false);
	put_be(self->m.buf + 72, 8, DATA_BIT);
	put_data_file_ext(&self->m, "disk.data", 9);
	self->data.buf = calloc(1, MiB);
	ASSERT_NE(NULL, self->data.buf);
	self->data.dev.size = MiB;
	self->data.dev.read = rawdev_read;
}

FIXTURE_TEARDOWN(datafile)
{
	close_image(&self->o);
	free(self->data.buf);
	mimg_free(&self->m);
}

static void expect_data_run(struct __test_metadata *_metadata,
			    struct opened *o, u64 off, u64 dev_offset,
			    bool on_data_dev)
{
	struct imgfmt_run run;
	const char *err = NULL;

	ASSERT_EQ(0, imgfmt_map(o->img, off, 4096, 0, &run, &err))
		TH_LOG("%s", err);
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(dev_offset, run.dev_offset);
	EXPECT_EQ(on_data_dev, run.on_data_dev);
}

static void expect_map_error(struct __test_metadata *_metadata,
			     struct opened *o, u64 off, const char *what)
{
	struct imgfmt_run run;
	const char *err = NULL;

	EXPECT_EQ(-EIO, imgfmt_map(o->img, off, 4096, 0, &run, &err));
	EXPECT_STREQ(what, err);
}

TEST_F(datafile, needs_its_device)
{
	EXPECT_EQ(-EINVAL, open_with(&self->m, NULL, NULL, &self->o));
	EXPECT_STREQ("QCOW2 external data file not given", self->o.err);
	ASSERT_EQ(0, open_with(&self->m, NULL, &self->data.dev, &self->o))
		TH_LOG("%s", self->o.err);
	EXPECT_STREQ("disk.data", self->o.img->info.data_file);
	EXPECT_FALSE(self->o.img->info.data_file_raw);
	close_image(&self->o);

	/* The bit alone: QEMU opens it when given the file. */
	put_be(self->m.buf + 112, 4, 0);
	ASSERT_EQ(0, open_with(&self->m, NULL, &self->data.dev, &self->o));
	EXPECT_STREQ("", self->o.img->info.data_file);
	close_image(&self->o);

	put_be(self->m.buf + 88, 8, RAW_BIT);
	ASSERT_EQ(0, open_with(&self->m, NULL, &self->data.dev, &self->o));
	EXPECT_TRUE(self->o.img->info.data_file_raw);
}

/*
 * The extension without the bit: the data is in the image, as QEMU
 * reads it, and a data file is refused.
 */
TEST_F(datafile, name_without_bit)
{
	u64 host = mimg_alloc(&self->m, 1);

	put_be(self->m.buf + 72, 8, 0);
	mimg_data(&self->m, 1, host);
	EXPECT_EQ(-EINVAL, open_with(&self->m, NULL, &self->data.dev, &self->o));
	EXPECT_STREQ("QCOW2 data file given for an image without an external data file",
		     self->o.err);
	ASSERT_EQ(0, open_with(&self->m, NULL, NULL, &self->o));
	expect_data_run(_metadata, &self->o, 65536, host, false);
}

TEST_F(datafile, name_length)
{
	char name[1024];

	memset(name, 'd', sizeof(name));
	put_data_file_ext(&self->m, name, 1023);
	ASSERT_EQ(0, open_with(&self->m, NULL, &self->data.dev, &self->o));
	EXPECT_EQ(1023, strlen(self->o.img->info.data_file));
	close_image(&self->o);
	put_data_file_ext(&self->m, name, 1024);
	EXPECT_EQ(-EINVAL, open_with(&self->m, NULL, &self->data.dev, &self->o));
	EXPECT_STREQ("QCOW2 external data file name too long", self->o.err);
}

/*
 * Clusters live at their guest offset in the data file; offset 0 is a
 * cluster there when the COPIED bit says so.
 */
TEST_F(datafile, runs_on_the_data_file)
{
	struct mimg *m = &self->m;

	mimg_set_entry(m, 0, L2E_COPIED, 0);
	mimg_set_entry(m, 1, 0, 0);
	mimg_set_entry(m, 2, 2 * 65536 | L2E_COPIED, 0);
	mimg_set_entry(m, 3, 3 * 65536 | L2E_ZERO, 0);
	mimg_set_entry(m, 4, 4 * 65536, 0);
	ASSERT_EQ(0, open_with(m, NULL, &self->data.dev, &self->o));
	expect_data_run(_metadata, &self->o, 512, 512, true);
	expect_run(_metadata, &self->o, 65536, IMGFMT_RUN_UNALLOCATED, 0);
	expect_data_run(_metadata, &self->o, 2 * 65536, 2 * 65536, true);
	expect_run(_metadata, &self->o, 3 * 65536, IMGFMT_RUN_ZERO, 0);
	expect_data_run(_metadata, &self->o, 4 * 65536, 4 * 65536, true);
}

TEST_F(datafile, hostile_entries)
{
	struct mimg *m = &self->m;

	mimg_set_entry(m, 1, 2 * 65536 | L2E_COPIED, 0);
	mimg_set_entry(m, 2, 3 * 65536 | L2E_ZERO, 0);
	mimg_set_entry(m, 3, L2E_COMPRESSED | 65536, 0);
	mimg_set_entry(m, 4, 4 * 65536 + 512, 0);
	ASSERT_EQ(0, open_with(m, NULL, &self->data.dev, &self->o));
	expect_map_error(_metadata, &self->o, 65536,
			 "external data file cluster offset does not match the guest offset");
	expect_map_error(_metadata, &self->o, 2 * 65536,
			 "external data file cluster offset does not match the guest offset");
	expect_map_error(_metadata, &self->o, 3 * 65536,
			 "compressed cluster in an image with an external data file");
	expect_map_error(_metadata, &self->o, 4 * 65536,
			 "data cluster offset not aligned to a cluster");
}

/*
 * A data file shorter than its clusters: the cut cluster reads zeroes past
 * its end, one wholly past it fails.
 */
TEST_F(datafile, short_data_file)
{
	struct mimg *m = &self->m;
	struct imgfmt_run run;
	const char *err = NULL;

	mimg_set_entry(m, 1, 65536 | L2E_COPIED, 0);
	mimg_set_entry(m, 2, 2 * 65536 | L2E_COPIED, 0);
	self->data.dev.size = 65536 + 4096 + 100;
	ASSERT_EQ(0, open_with(m, NULL, &self->data.dev, &self->o));
	ASSERT_EQ(0, imgfmt_map(self->o.img, 65536, 65536, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_DATA, run.kind);
	EXPECT_EQ(4096, run.length);
	EXPECT_TRUE(run.on_data_dev);
	expect_run(_metadata, &self->o, 65536 + 4096, IMGFMT_RUN_ZERO, 0);
	expect_map_error(_metadata, &self->o, 2 * 65536,
			 "data cluster beyond end of the external data file");
}

/* Extended L2: a subcluster at its offset in the cluster, also at 0. */
TEST_F(datafile, subclusters)
{
	struct mimg *m = &self->m;

	mimg_free(m);
	mimg_init(m, 3, 16, MiB, true);
	put_be(m->buf + 72, 8, DATA_BIT | (1ULL << 4));
	mimg_set_entry(m, 0, L2E_COPIED, 0x4);
	mimg_set_entry(m, 1, 0, 0x1);
	mimg_set_entry(m, 2, 2 * 65536 | L2E_COPIED, 0x2);
	ASSERT_EQ(0, open_with(m, NULL, &self->data.dev, &self->o))
		TH_LOG("%s", self->o.err);
	expect_data_run(_metadata, &self->o, 2 * 2048, 2 * 2048, true);
	expect_run(_metadata, &self->o, 0, IMGFMT_RUN_UNALLOCATED, 0);
	expect_map_error(_metadata, &self->o, 65536,
			 "unallocated cluster with allocated subclusters");
	expect_data_run(_metadata, &self->o, 2 * 65536 + 2048,
			2 * 65536 + 2048, true);
}

/* The spec rules out internal snapshots with a data file. */
TEST_F(datafile, no_snapshots)
{
	u64 pos, table = mimg_alloc(&self->m, 1);

	pos = table;
	put_named_snapshot(&self->m, &pos, self->m.l1_off, 1, 24, MiB, "1", 1,
			   "s", 1);
	set_snapshots(&self->m, table, 1);
	ASSERT_EQ(0, open_with(&self->m, NULL, &self->data.dev, &self->o));
	close_image(&self->o);
	EXPECT_EQ(-EOPNOTSUPP, open_with(&self->m, "s", &self->data.dev,
					 &self->o));
	EXPECT_STREQ("QCOW2 snapshots are not supported with an external data file",
		     self->o.err);
}

/* ------------------------------------------------------------ detection */

TEST(detect)
{
	struct mimg m;
	const struct imgfmt_format_ops *ops;
	const char *err = NULL;

	mimg_init(&m, 3, 16, MiB, false);
	ops = imgfmt_detect(&m.dev, NULL, &err);
	ASSERT_NE(NULL, ops);
	EXPECT_STREQ("qcow2", ops->name);
	EXPECT_EQ(ops, imgfmt_detect(&m.dev, "qcow2", &err));
	err = NULL;
	EXPECT_EQ(NULL, imgfmt_detect(&m.dev, "vmdk-not-a-format", &err));
	EXPECT_NE(NULL, err);
	/* Pinning a format skips probing, but not a mismatch. */
	m.buf[0] = 'X';
	err = NULL;
	EXPECT_EQ(NULL, imgfmt_detect(&m.dev, NULL, &err));
	EXPECT_STREQ("unknown image format", err);
	err = NULL;
	EXPECT_EQ(NULL, imgfmt_detect(&m.dev, "qcow2", &err));
	EXPECT_NE(NULL, err);
	/* An empty device. */
	m.dev.size = 0;
	err = NULL;
	EXPECT_EQ(NULL, imgfmt_detect(&m.dev, NULL, &err));
	EXPECT_NE(NULL, err);
	mimg_free(&m);
}

/* Every format the build lists has a name and all operations. */
TEST(registry)
{
	unsigned int i;

	ASSERT_NE(NULL, imgfmt_formats[0]);
	for (i = 0; imgfmt_formats[i]; i++) {
		EXPECT_NE(NULL, imgfmt_formats[i]->name);
		/* Only raw is never detected, so only raw has no probe. */
		EXPECT_EQ(!strcmp(imgfmt_formats[i]->name, "raw"),
			  !imgfmt_formats[i]->probe);
		EXPECT_NE(NULL, imgfmt_formats[i]->open);
		EXPECT_NE(NULL, imgfmt_formats[i]->close);
		EXPECT_NE(NULL, imgfmt_formats[i]->lookup);
	}
}

TEST_HARNESS_MAIN
