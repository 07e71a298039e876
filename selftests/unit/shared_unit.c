// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace tests of the shared pieces below the formats: the escaper, the
 * metadata cache's keys and valid prefixes, the decompressed-cluster cache
 * and the decompression rules (imgfmt_port.h), with streams made here by
 * zlib and libzstd.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* The port headers first: kselftest.h keeps an ARRAY_SIZE it finds. */
#include "ccache.h"
#include "escape.h"
#include "mcache.h"

#include "kselftest_harness.h"

/* ----------------------------------------------------------- escaping */

static const char *esc(char *buf, size_t len, const char *s)
{
	return imgfmt_escape(buf, len, s, strlen(s));
}

TEST(escape_plain_and_control)
{
	char b[64];

	EXPECT_STREQ("abc", esc(b, sizeof(b), "abc"));
	EXPECT_STREQ("a\\x0aFAKE: Oops", esc(b, sizeof(b), "a\nFAKE: Oops"));
	EXPECT_STREQ("\\x5cx41", esc(b, sizeof(b), "\\x41"));
	EXPECT_STREQ("\\x1b[2J\\x7f\\xff", esc(b, sizeof(b), "\x1b[2J\x7f\xff"));
	EXPECT_STREQ("", esc(b, sizeof(b), ""));
}

TEST(escape_stops_at_nul_and_length)
{
	char b[64];

	EXPECT_STREQ("ab", imgfmt_escape(b, sizeof(b), "ab\0cd", 5));
	EXPECT_STREQ("abc", imgfmt_escape(b, sizeof(b), "abcdef", 3));
}

/* Cut text always ends in "..." and fits, never splitting an escape. */
TEST(escape_cut)
{
	char b[16], in[300];
	size_t n;

	EXPECT_STREQ("0123456789ab...", esc(b, sizeof(b), "0123456789abcdef"));
	EXPECT_STREQ("0123456789abcde", esc(b, sizeof(b), "0123456789abcde"));
	memset(in, '\n', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	esc(b, sizeof(b), in);
	n = strlen(b);
	EXPECT_GE(sizeof(b) - 1, n);
	EXPECT_STREQ("\\x0a\\x0a\\x0a...", b);
	EXPECT_STREQ("...", esc(b, 4, "abcdef"));
}

/* ---------------------------------------------------- a memory device */

#define DEV_BYTES	(1U << 20)

struct mem_dev {
	struct imgfmt_dev dev;
	u8 data[DEV_BYTES];
};

static int mem_read(struct imgfmt_dev *dev, u64 off, void *buf, size_t len)
{
	struct mem_dev *m = container_of(dev, struct mem_dev, dev);

	memcpy(buf, m->data + off, len);
	return 0;
}

static struct mem_dev *mem_dev_new(void)
{
	struct mem_dev *m = calloc(1, sizeof(*m));

	if (m) {
		m->dev.size = DEV_BYTES;
		m->dev.read = mem_read;
		m->dev.read_align = 512;
	}
	return m;
}

/* ------------------------------------------------------------- mcache */

/* A fill that makes tables whose valid prefix is ctx's number of bytes. */
static int fill_prefix(void *ctx, u64 key, void *buf, u32 len)
{
	int valid = *(int *)ctx;

	memset(buf, (int)(key & 0xff), len);
	return valid < 0 ? valid : (valid > (int)len ? (int)len : valid);
}

/* One key with two tags: two tables, neither answering for the other. */
TEST(mcache_key_and_tag)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_mkey a = { .key = 4096, .tag = 1 };
	struct imgfmt_mkey b = { .key = 4096, .tag = 2 };
	struct imgfmt_mcache *mc;
	int whole = 512, half = 256;
	u8 out[512];

	ASSERT_NE(NULL, m);
	mc = imgfmt_mcache_create(&m->dev, 512, 1 << 20);
	ASSERT_NE(NULL, mc);
	ASSERT_EQ(0, imgfmt_mcache_read_fill(mc, &a, 0, out, 512, fill_prefix,
					     &whole));
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_mcache_lookup(mc, &b, 0, out, 1));
	/* b's table holds 256 valid bytes: past them, EIO, every time. */
	EXPECT_EQ(-EIO, imgfmt_mcache_read_fill(mc, &b, 0, out, 512,
						fill_prefix, &half));
	EXPECT_EQ(-EIO, imgfmt_mcache_lookup(mc, &b, 255, out, 2));
	EXPECT_EQ(0, imgfmt_mcache_lookup(mc, &b, 0, out, 256));
	EXPECT_EQ(0, imgfmt_mcache_lookup(mc, &a, 0, out, 512));
	imgfmt_mcache_destroy(mc);
	free(m);
}

/*
 * A full cache makes room with the oldest table not used since it was
 * filled: one that was used stays.
 */
TEST(mcache_used_table_stays)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_mcache *mc;
	int whole = 4096;
	u8 out[16];
	u64 i;

	ASSERT_NE(NULL, m);
	/* Room for four 4 KiB tables and their bookkeeping, not five. */
	mc = imgfmt_mcache_create(&m->dev, 4096, 4 * 4096 + 2048);
	ASSERT_NE(NULL, mc);
	for (i = 0; i < 4; i++) {
		struct imgfmt_mkey k = { .key = i * 4096 };

		ASSERT_EQ(0, imgfmt_mcache_read_fill(mc, &k, 0, out, 16,
						     fill_prefix, &whole));
	}
	{
		struct imgfmt_mkey k0 = { .key = 0 }, k1 = { .key = 4096 };
		struct imgfmt_mkey k4 = { .key = 4 * 4096 };

		ASSERT_EQ(0, imgfmt_mcache_lookup(mc, &k0, 0, out, 16));
		ASSERT_EQ(0, imgfmt_mcache_read_fill(mc, &k4, 0, out, 16,
						     fill_prefix, &whole));
		EXPECT_EQ(0, imgfmt_mcache_lookup(mc, &k0, 0, out, 16));
		EXPECT_EQ(-EWOULDBLOCK,
			  imgfmt_mcache_lookup(mc, &k1, 0, out, 16));
	}
	imgfmt_mcache_destroy(mc);
	free(m);
}

/* A failed fill caches nothing: the next read tries again. */
TEST(mcache_failed_fill_not_cached)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_mkey k = { .key = 0, .tag = 0 };
	struct imgfmt_mcache *mc;
	int bad = -EIO, good = 512;
	u8 out[16];

	ASSERT_NE(NULL, m);
	mc = imgfmt_mcache_create(&m->dev, 512, 1 << 20);
	ASSERT_NE(NULL, mc);
	EXPECT_EQ(-EIO, imgfmt_mcache_read_fill(mc, &k, 0, out, 16,
						fill_prefix, &bad));
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_mcache_lookup(mc, &k, 0, out, 16));
	EXPECT_EQ(0, imgfmt_mcache_read_fill(mc, &k, 0, out, 16, fill_prefix,
					     &good));
	imgfmt_mcache_destroy(mc);
	free(m);
}

/*
 * Two caches of different table sizes in one group: together they stay
 * within the group's bound, the least recently used table of either makes
 * room, and the same key in each is two tables.
 */
TEST(mgroup_shared_bound)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_mcache_stats st;
	struct imgfmt_mcache *a, *b;
	struct imgfmt_mkey k0 = { .key = 0 };
	struct imgfmt_mgroup *g;
	int whole = 4096;
	u8 out[16];
	u64 key;

	ASSERT_NE(NULL, m);
	g = imgfmt_mgroup_create(32 << 10);
	ASSERT_NE(NULL, g);
	a = imgfmt_mcache_create_in(g, &m->dev, 512);
	b = imgfmt_mcache_create_in(g, &m->dev, 4096);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(0, imgfmt_mcache_read_fill(a, &k0, 0, out, 16, fill_prefix,
					     &whole));
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_mcache_lookup(b, &k0, 0, out, 16));
	/* Twenty 4 KiB tables through b: a's old table is the LRU one. */
	for (key = 0; key < 20; key++) {
		struct imgfmt_mkey k = { .key = key * 4096 };

		ASSERT_EQ(0, imgfmt_mcache_read_fill(b, &k, 0, out, 16,
						     fill_prefix, &whole));
		imgfmt_mgroup_get_stats(g, &st);
		EXPECT_GE(32u << 10, st.bytes);
	}
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_mcache_lookup(a, &k0, 0, out, 16));
	imgfmt_mgroup_get_stats(g, &st);
	EXPECT_LT(4u << 10, st.bytes);
	imgfmt_mcache_destroy(a);
	imgfmt_mcache_destroy(b);
	imgfmt_mgroup_get_stats(g, &st);
	EXPECT_EQ(0, st.bytes);
	imgfmt_mgroup_destroy(g);
	free(m);
}

/* ------------------------------------------------------ decompression */

#define CLUSTER		65536U

/* Text that deflate shrinks, but not to one sector. */
static void make_text(u8 *p, size_t len)
{
	size_t n = 0;
	unsigned int i = 0;

	while (n < len)
		n += snprintf((char *)p + n, len - n + 1, "%u\n", i++);
}

/* Deflate src into dst (raw when raw, else zlib-wrapped); its length. */
static size_t deflate_buf(const u8 *src, size_t len, u8 *dst, size_t cap,
			  bool raw)
{
	z_stream zs;
	size_t n;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 6, Z_DEFLATED, raw ? -MAX_WBITS : MAX_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	zs.next_in = (Bytef *)src;
	zs.avail_in = len;
	zs.next_out = dst;
	zs.avail_out = cap;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&zs);
		return 0;
	}
	n = cap - zs.avail_out;
	deflateEnd(&zs);
	return n;
}

FIXTURE(decomp) {
	u8 *plain;
	u8 *stream;
	u8 *out;
};

FIXTURE_SETUP(decomp)
{
	/* One byte more for make_text()'s last NUL. */
	self->plain = malloc(2 * CLUSTER + 1);
	self->stream = malloc(4 * CLUSTER);
	self->out = malloc(2 * CLUSTER);
	ASSERT_NE(NULL, self->plain);
	ASSERT_NE(NULL, self->stream);
	ASSERT_NE(NULL, self->out);
	make_text(self->plain, 2 * CLUSTER);
}

FIXTURE_TEARDOWN(decomp)
{
	free(self->plain);
	free(self->stream);
	free(self->out);
}

/* QCOW deflate: must fill the cluster; may run on past it. */
TEST_F(decomp, deflate_fills)
{
	size_t n = deflate_buf(self->plain, CLUSTER, self->stream, 4 * CLUSTER,
			       true);

	ASSERT_LT(512, n);
	EXPECT_EQ(CLUSTER, imgfmt_decompress(IMGFMT_COMP_DEFLATE, self->stream,
					     n + 300, self->out, CLUSTER));
	EXPECT_EQ(0, memcmp(self->plain, self->out, CLUSTER));
	/* Cut short: the output cannot fill. */
	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_DEFLATE, self->stream,
					  n / 2, self->out, CLUSTER));
	/* A stream of two clusters fills one: fine for QCOW. */
	n = deflate_buf(self->plain, 2 * CLUSTER, self->stream, 4 * CLUSTER,
			true);
	EXPECT_EQ(CLUSTER, imgfmt_decompress(IMGFMT_COMP_DEFLATE, self->stream,
					     n, self->out, CLUSTER));
	/* One of half a cluster does not. */
	n = deflate_buf(self->plain, CLUSTER / 2, self->stream, 4 * CLUSTER,
			true);
	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_DEFLATE, self->stream,
					  n, self->out, CLUSTER));
}

/* VMDK zlib: must end within the grain; may produce less. */
TEST_F(decomp, zlib_ends_within)
{
	size_t n = deflate_buf(self->plain, 2 * CLUSTER, self->stream,
			       4 * CLUSTER, false);

	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_ZLIB, self->stream, n,
					  self->out, CLUSTER));
	n = deflate_buf(self->plain, CLUSTER, self->stream, 4 * CLUSTER, false);
	EXPECT_EQ(CLUSTER, imgfmt_decompress(IMGFMT_COMP_ZLIB, self->stream,
					     n + 100, self->out, CLUSTER));
	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_ZLIB, self->stream,
					  n - 1, self->out, CLUSTER));
	n = deflate_buf(self->plain, 4096, self->stream, 4 * CLUSTER, false);
	EXPECT_EQ(4096, imgfmt_decompress(IMGFMT_COMP_ZLIB, self->stream, n,
					  self->out, CLUSTER));
}

/* QCOW2 zstd: frames until the cluster is full; the last ends with it. */
TEST_F(decomp, zstd_frames)
{
	size_t a, b;

	a = ZSTD_compress(self->stream, 4 * CLUSTER, self->plain, CLUSTER / 2,
			  3);
	ASSERT_FALSE(ZSTD_isError(a));
	b = ZSTD_compress(self->stream + a, 4 * CLUSTER - a,
			  self->plain + CLUSTER / 2, CLUSTER / 2, 3);
	ASSERT_FALSE(ZSTD_isError(b));
	EXPECT_EQ(CLUSTER, imgfmt_decompress(IMGFMT_COMP_ZSTD, self->stream,
					     a + b + 512, self->out, CLUSTER));
	EXPECT_EQ(0, memcmp(self->plain, self->out, CLUSTER));
	/* The first frame alone is half a cluster. */
	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_ZSTD, self->stream, a,
					  self->out, CLUSTER));
	/* A frame longer than the cluster does not end with it. */
	a = ZSTD_compress(self->stream, 4 * CLUSTER, self->plain, 2 * CLUSTER,
			  3);
	ASSERT_FALSE(ZSTD_isError(a));
	EXPECT_EQ(-EIO, imgfmt_decompress(IMGFMT_COMP_ZSTD, self->stream, a,
					  self->out, CLUSTER));
}

/* ------------------------------------------------------------- ccache */

static struct imgfmt_run comp_run(u64 off, u32 len,
				  enum imgfmt_compression type)
{
	struct imgfmt_run r = {
		.kind = IMGFMT_RUN_COMPRESSED,
		.length = CLUSTER,
		.comp_offset = off,
		.comp_length = len,
		.comp_cluster_size = CLUSTER,
		.comp_type = type,
	};

	return r;
}

/*
 * Two runs name one stream, the second too short for it: it fails
 * whether the whole one was decompressed first or not.
 */
TEST_F(decomp, ccache_shared_stream)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_run whole, cut;
	struct imgfmt_ccache *cc;
	struct imgfmt_decoder *dec;
	size_t n;
	int order;

	ASSERT_NE(NULL, m);
	n = deflate_buf(self->plain, CLUSTER, m->data + 4096, DEV_BYTES - 4096,
			true);
	ASSERT_LT(1024, n);
	whole = comp_run(4096, ALIGN(n, 512), IMGFMT_COMP_DEFLATE);
	cut = comp_run(4096, 512, IMGFMT_COMP_DEFLATE);
	for (order = 0; order < 2; order++) {
		cc = imgfmt_ccache_create(&m->dev, CLUSTER);
		ASSERT_NE(NULL, cc);
		dec = imgfmt_decoder_create(CLUSTER);
		ASSERT_NE(NULL, dec);
		if (order) {
			EXPECT_EQ(-EIO, imgfmt_ccache_read(cc, dec, &cut, 0,
							   self->out, 512));
		}
		EXPECT_EQ(0, imgfmt_ccache_read(cc, dec, &whole, 0, self->out,
						CLUSTER));
		EXPECT_EQ(0, memcmp(self->plain, self->out, CLUSTER));
		EXPECT_EQ(-EIO, imgfmt_ccache_read(cc, dec, &cut, 0, self->out,
						   512));
		EXPECT_EQ(-EWOULDBLOCK, imgfmt_ccache_read_cached(cc, &cut, 0,
								  self->out,
								  512));
		imgfmt_decoder_destroy(dec);
		imgfmt_ccache_destroy(cc);
	}
	free(m);
}

/*
 * A VMDK grain whose stream produces a quarter of the grain: reads inside
 * what it produced succeed, reads past it fail, cached or not.
 */
TEST_F(decomp, ccache_short_grain)
{
	struct mem_dev *m = mem_dev_new();
	struct imgfmt_ccache *cc;
	struct imgfmt_decoder *dec;
	struct imgfmt_run run;
	size_t n;

	ASSERT_NE(NULL, m);
	n = deflate_buf(self->plain, CLUSTER / 4, m->data + 512,
			DEV_BYTES - 512, false);
	ASSERT_LT(0, n);
	run = comp_run(512, n, IMGFMT_COMP_ZLIB);
	cc = imgfmt_ccache_create(&m->dev, CLUSTER);
	ASSERT_NE(NULL, cc);
	dec = imgfmt_decoder_create(CLUSTER);
	ASSERT_NE(NULL, dec);
	EXPECT_EQ(-EIO, imgfmt_ccache_read(cc, dec, &run, CLUSTER / 4 - 512,
					   self->out, 1024));
	EXPECT_EQ(0, imgfmt_ccache_read(cc, dec, &run, 0, self->out,
					CLUSTER / 4));
	EXPECT_EQ(0, memcmp(self->plain, self->out, CLUSTER / 4));
	EXPECT_EQ(-EIO, imgfmt_ccache_read_cached(cc, &run, CLUSTER / 4,
						  self->out, 512));
	EXPECT_EQ(1, (int)imgfmt_ccache_decompressed(cc));
	imgfmt_decoder_destroy(dec);
	imgfmt_ccache_destroy(cc);
	free(m);
}

TEST_HARNESS_MAIN
