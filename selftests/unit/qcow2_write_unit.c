// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QCOW2 write side (dm-imgfmt/formats/qcow2_write.c) driven from
 * userspace the way the kernel target drives it: prepare, write the
 * planned range whole (the caller's data over the range's current
 * contents), finish, commit now and then.  Images are made by qemu-img
 * and qemu-io in every shape the writer must take (cluster sizes,
 * refcount widths down to 1 bit and a refcount table that has to grow,
 * extended L2, v2, compressed and zero clusters, a backing file,
 * preallocated metadata, a cache small enough that dirty tables force
 * commits).  QEMU is the judge: after random writes `qemu-img check` must
 * find no error and no leak, and `qemu-img convert -O raw` must equal a
 * shadow copy that got the same writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* The port headers first: kselftest.h keeps an ARRAY_SIZE it finds. */
#include "imgfmt_format.h"
#include "uhost.h"

#include "kselftest_harness.h"

/* Run a shell command; its exit status. */
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc == -1 || !WIFEXITED(rc))
		return -1;
	return WEXITSTATUS(rc);
}

static u8 *slurp(const char *path, size_t *len)
{
	struct stat st;
	u8 *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st))
		return NULL;
	buf = malloc(st.st_size ? st.st_size : 1);
	if (buf && pread(fd, buf, st.st_size, 0) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	*len = st.st_size;
	return buf;
}

/* The refcount table's size in clusters, from the header. */
static u32 rt_clusters(int fd)
{
	u8 b[4];

	if (pread(fd, b, 4, 56) != 4)
		return 0;
	return (u32)b[0] << 24 | (u32)b[1] << 16 | (u32)b[2] << 8 | b[3];
}

static u64 rnd(u64 *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

FIXTURE(qwrite) {
	char dir[64];
	char img[128];
	u8 *shadow;
	size_t size;
	int fd;
	struct imgfmt_dev dev;
	struct imgfmt_image *im;
	unsigned int finished_nowait;	/* by finish_as_target() */
};

FIXTURE_VARIANT(qwrite) {
	const char *create;	/* qemu-img create -o ... */
	u64 size;
	const char *prep;	/* qemu-io -c commands before we write */
	bool backing;		/* a raw backing file of random data */
	u64 cache_bytes;
	u32 max_sectors;	/* longest write */
	unsigned int writes;
	bool rt_grows;		/* the writes outgrow the refcount table */
};

FIXTURE_VARIANT_ADD(qwrite, plain_64k) {
	.create = "cluster_size=64k", .size = 64 << 20,
	.max_sectors = 384, .writes = 300,
};

FIXTURE_VARIANT_ADD(qwrite, v2_4k) {
	.create = "compat=0.10,cluster_size=4k", .size = 16 << 20,
	.max_sectors = 40, .writes = 400,
};

/* No zero flag in version 2: zeroes over a backing file are written. */
FIXTURE_VARIANT_ADD(qwrite, v2_backing) {
	.create = "compat=0.10,cluster_size=16k", .size = 8 << 20,
	.backing = true, .max_sectors = 64, .writes = 300,
};

FIXTURE_VARIANT_ADD(qwrite, refcount1_512) {
	.create = "cluster_size=512,refcount_bits=1", .size = 4 << 20,
	.max_sectors = 6, .writes = 400,
};

FIXTURE_VARIANT_ADD(qwrite, reftable_grows) {
	.create = "cluster_size=512,refcount_bits=64", .size = 24 << 20,
	.max_sectors = 64, .writes = 600, .rt_grows = true,
};

FIXTURE_VARIANT_ADD(qwrite, clusters_2m) {
	.create = "cluster_size=2M", .size = 64 << 20,
	.max_sectors = 8192, .writes = 40,
};

FIXTURE_VARIANT_ADD(qwrite, extended_l2) {
	.create = "cluster_size=64k,extended_l2=on", .size = 32 << 20,
	.prep = "-c 'write -P 0x11 0 8k' -c 'write -z 64k 16k' -c 'write -P 0x22 200k 2k'",
	.max_sectors = 40, .writes = 400,
};

FIXTURE_VARIANT_ADD(qwrite, extended_l2_backing) {
	.create = "cluster_size=32k,extended_l2=on", .size = 8 << 20,
	.backing = true, .prep = "-c 'write -z 1M 8k'",
	.max_sectors = 24, .writes = 300,
};

FIXTURE_VARIANT_ADD(qwrite, backing_64k) {
	.create = "cluster_size=64k", .size = 16 << 20, .backing = true,
	.prep = "-c 'write -z 4M 256k' -c 'write -P 0x33 8M 100k'",
	.max_sectors = 300, .writes = 200,
};

FIXTURE_VARIANT_ADD(qwrite, compressed_and_zero) {
	.create = "cluster_size=4k", .size = 8 << 20,
	.prep = "-c 'write -c -P 0x44 0 1M' -c 'write -z 2M 1M' -c 'write -c -P 0x55 4M 64k'",
	.max_sectors = 24, .writes = 400,
};

FIXTURE_VARIANT_ADD(qwrite, preallocated) {
	.create = "cluster_size=16k,preallocation=metadata", .size = 8 << 20,
	.max_sectors = 64, .writes = 300,
};

FIXTURE_VARIANT_ADD(qwrite, tiny_cache) {
	.create = "cluster_size=4k", .size = 64 << 20,
	.cache_bytes = 64 << 10, .max_sectors = 16, .writes = 800,
};

FIXTURE_SETUP(qwrite)
{
	struct imgfmt_open_args args = { 0 };
	const char *err = "";
	char back[160] = "", raw[160];

	strcpy(self->dir, "/tmp/qwrite.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->img, sizeof(self->img), "%s/img.qcow2", self->dir);
	if (variant->backing) {
		snprintf(back, sizeof(back), "%s/base.raw", self->dir);
		ASSERT_EQ(0, sh("head -c %llu /dev/urandom > %s",
				(unsigned long long)variant->size, back));
	}
	ASSERT_EQ(0, sh("qemu-img create -q -f qcow2 -o %s %s%s%s %s %llu",
			variant->create, back[0] ? "-F raw -b " : "", back,
			"", self->img, (unsigned long long)variant->size));
	if (variant->prep)
		ASSERT_EQ(0, sh("qemu-io -f qcow2 %s %s >/dev/null",
				variant->prep, self->img));
	snprintf(raw, sizeof(raw), "%s/before.raw", self->dir);
	ASSERT_EQ(0, sh("qemu-img convert -O raw %s %s", self->img, raw));
	self->shadow = slurp(raw, &self->size);
	ASSERT_NE(NULL, self->shadow);
	ASSERT_EQ(variant->size, self->size);

	self->fd = open(self->img, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, uport_dev_open_fd(&self->dev, self->fd));
	ASSERT_EQ(0, uport_dev_make_writable(&self->dev));
	/*
	 * Room to grow: the writer allocates only inside the device.  What
	 * a crashed writer left past the image's end must never show in a
	 * new cluster, nor be taken for zeroes: fill the start with it.
	 */
	ASSERT_EQ(0, sh("s=$(stat -c %%s %s) && head -c 4194304 /dev/zero | tr '\\0' '\\245' | dd of=%s bs=1M seek=$s oflag=seek_bytes conv=notrunc status=none",
			self->img, self->img));
	ASSERT_EQ(0, ftruncate(self->fd, 4 * variant->size + (8 << 20)));
	self->dev.size = 4 * variant->size + (8 << 20);
	args.dev = &self->dev;
	args.cache_bytes = variant->cache_bytes ? variant->cache_bytes :
			   IMGFMT_DEFAULT_CACHE_BYTES;
	args.writable = true;
	args.has_lower = variant->backing;
	ASSERT_EQ(0, imgfmt_open(&imgfmt_qcow2_ops, &args, &self->im, &err))
		TH_LOG("open: %s", err);
}

FIXTURE_TEARDOWN(qwrite)
{
	if (self->im)
		imgfmt_close(self->im);
	uport_dev_close(&self->dev);
	free(self->shadow);
	sh("rm -rf %s", self->dir);
}

static bool all_zero(const u8 *p, u64 len)
{
	while (len && !*p) {
		p++;
		len--;
	}
	return !len;
}

/*
 * Finish p as the target does: without blocking where the write
 * completed, else (-EWOULDBLOCK, nothing changed) in the writer.
 */
static int finish_as_target(FIXTURE_DATA(qwrite) *self,
			    const struct imgfmt_wplan *p, const char **err)
{
	int r = imgfmt_finish_write(self->im, p, IMGFMT_FINISH_NOWAIT, err);

	if (!r)
		self->finished_nowait++;
	if (r != -EWOULDBLOCK)
		return r;
	return imgfmt_finish_write(self->im, p, 0, err);
}

/*
 * Write [off, off + len) of data through the write side, as the target;
 * with data NULL, zeroes as a discard or write-zeroes request.
 */
static int write_through(struct __test_metadata *_metadata,
			 FIXTURE_DATA(qwrite) *self, u64 off, const u8 *data,
			 u64 len)
{
	unsigned int flags = data ? 0 : IMGFMT_WRITE_ZEROES;
	u64 pos = off, end = off + len, piece_end, n, ws, we;
	struct imgfmt_wplan p;
	const char *err = "";
	u8 *buf;
	int r;

	while (pos < end) {
		r = imgfmt_prepare_write(self->im, pos, end - pos, flags, &p,
					 &err);
		if (r) {
			TH_LOG("prepare at %llu: %s", (unsigned long long)pos, err);
			return r;
		}
		piece_end = end < p.vend ? end : p.vend;
		if (p.zeroed) {
			r = imgfmt_finish_write(self->im, &p, 0, &err);
			if (r)
				return r;
			pos = piece_end;
			continue;
		}
		buf = calloc(1, p.vend - p.vstart);
		if (!buf)
			return -ENOMEM;
		/* The range's current contents: past the disk's end zeroes. */
		n = p.vend <= self->size ? p.vend - p.vstart :
		    self->size - p.vstart;
		memcpy(buf, self->shadow + p.vstart, n);
		if (data)
			memcpy(buf + (pos - p.vstart), data + (pos - off),
			       piece_end - pos);
		else
			memset(buf + (pos - p.vstart), 0, piece_end - pos);
		/* As the target: fill the space reads as already is left out. */
		ws = p.vstart;
		we = p.vend;
		if (p.in_place || (p.host_zeroed && all_zero(buf, pos - ws)))
			ws = pos;
		if (p.in_place || (p.host_zeroed &&
				   all_zero(buf + (piece_end - p.vstart),
					    we - piece_end)))
			we = piece_end;
		r = pwrite(self->fd, buf + (ws - p.vstart), we - ws,
			   p.host + (ws - p.vstart)) == (ssize_t)(we - ws) ?
		    0 : -EIO;
		free(buf);
		if (p.in_place) {
			if (r)
				return r;
			pos = piece_end;
			continue;
		}
		if (!r)
			r = finish_as_target(self, &p, &err);
		if (r) {
			TH_LOG("finish at %llu: %s", (unsigned long long)pos, err);
			return r;
		}
		pos = piece_end;
	}
	return 0;
}

/* Commit now and then, as timed commits would, after write i. */
static void commit_every_37th(struct __test_metadata *_metadata,
			      FIXTURE_DATA(qwrite) *self, unsigned int i)
{
	const char *err = "";

	if (i % 37 == 36)
		ASSERT_EQ(0, imgfmt_commit(self->im, &err))
			TH_LOG("commit: %s", err);
}

/*
 * Commit, close and cut the file back to the image's end, as detach
 * does; *st as of the commit.
 */
static void commit_close_trim(struct __test_metadata *_metadata,
			      FIXTURE_DATA(qwrite) *self,
			      struct imgfmt_wstats *st)
{
	const char *err = "";

	ASSERT_EQ(0, imgfmt_commit(self->im, &err)) TH_LOG("commit: %s", err);
	imgfmt_get_wstats(self->im, st);
	imgfmt_close(self->im);
	self->im = NULL;
	ASSERT_EQ(0, ftruncate(self->fd, st->image_end));
}

/*
 * Random writes, and with zero_every n every nth a range of zeroes (up to
 * 16 times as long, so that whole clusters go), committed now and then;
 * the shadow gets the same.  Leaves the image closed and trimmed.
 */
static void random_ops(struct __test_metadata *_metadata,
		       FIXTURE_DATA(qwrite) *self,
		       const FIXTURE_VARIANT(qwrite) *variant,
		       unsigned int zero_every)
{
	u64 seed = 0x9e3779b97f4a7c15ULL ^ variant->size, off, len;
	struct imgfmt_wstats st;
	bool zero;
	u8 *data;
	unsigned int i;
	u64 j;

	data = malloc((size_t)variant->max_sectors * 512);
	ASSERT_NE(NULL, data);
	for (i = 0; i < variant->writes; i++) {
		zero = zero_every && i % zero_every == zero_every - 1;
		off = (rnd(&seed) % (self->size / 512)) * 512;
		len = (1 + rnd(&seed) % variant->max_sectors) * 512;
		if (zero)
			len *= 1 + rnd(&seed) % 16;
		if (len > self->size - off)
			len = self->size - off;
		if (zero) {
			ASSERT_EQ(0, write_through(_metadata, self, off, NULL,
						   len));
			memset(self->shadow + off, 0, len);
		} else {
			for (j = 0; j < len; j += 8)
				*(u64 *)(data + j) = rnd(&seed);
			ASSERT_EQ(0, write_through(_metadata, self, off, data,
						   len));
			memcpy(self->shadow + off, data, len);
		}
		commit_every_37th(_metadata, self, i);
	}
	free(data);
	commit_close_trim(_metadata, self, &st);
	EXPECT_EQ(0, st.dirty_bytes);
	EXPECT_LT(0, st.commits);
}

/* qemu-img check finds nothing, and QEMU reads what the shadow holds. */
static void judge(struct __test_metadata *_metadata,
		  FIXTURE_DATA(qwrite) *self)
{
	char raw[160];
	size_t after_len;
	u8 *after;
	u64 j;

	EXPECT_EQ(0, sh("qemu-img check %s | grep -q 'No errors were found'",
			self->img));
	snprintf(raw, sizeof(raw), "%s/after.raw", self->dir);
	ASSERT_EQ(0, sh("qemu-img convert -O raw %s %s", self->img, raw));
	after = slurp(raw, &after_len);
	ASSERT_NE(NULL, after);
	ASSERT_EQ(self->size, after_len);
	for (j = 0; j < self->size && after[j] == self->shadow[j]; j++)
		;
	EXPECT_EQ(self->size, j) TH_LOG("first difference at byte %llu",
					(unsigned long long)j);
	free(after);
}

TEST_F(qwrite, random_writes_match_qemu)
{
	u32 rt_before = rt_clusters(self->fd);

	random_ops(_metadata, self, variant, 0);
	if (variant->rt_grows)
		EXPECT_LT(rt_before, rt_clusters(self->fd));
	/* With metadata preallocated every write goes in place. */
	if (!strstr(variant->create, "preallocation"))
		EXPECT_LT(0, self->finished_nowait);
	judge(_metadata, self);
}

/*
 * A finish that must not block (IMGFMT_FINISH_NOWAIT) succeeds while the
 * plan's L2 table is cached.  When other writes, committed, pushed the
 * table out of a cache of two, it says so and changes nothing, and the
 * blocking finish then does it all.  QEMU judges the result.
 */
TEST_F(qwrite, finish_nowait_needs_cached_table)
{
	u64 cs = self->im->info.cluster_size, span, off, a;
	struct imgfmt_open_args args = { 0 };
	bool prealloc = strstr(variant->create, "preallocation");
	struct imgfmt_wstats st;
	struct imgfmt_wplan p;
	struct imgfmt_run run;
	const char *err = "";
	int expect = 0;
	u8 *buf;

	imgfmt_close(self->im);
	args.dev = &self->dev;
	args.cache_bytes = 1;	/* raised to two tables */
	args.writable = true;
	args.has_lower = variant->backing;
	ASSERT_EQ(0, imgfmt_open(&imgfmt_qcow2_ops, &args, &self->im, &err))
		TH_LOG("open: %s", err);
	/* What one cached L2 slice (4 KiB at most) maps. */
	span = cs * ((cs < 4096 ? cs : 4096) /
		     (self->im->info.extended_l2 ? 16 : 8));
	/* The last cluster of the first slice: no variant's prep is there. */
	a = (span < self->size ? span : self->size) - cs;
	buf = malloc(cs);
	ASSERT_NE(NULL, buf);
	memset(buf, 0x5a, cs);
	ASSERT_EQ(0, imgfmt_prepare_write(self->im, a, cs, 0, &p, &err));
	EXPECT_EQ(prealloc, p.in_place);
	ASSERT_EQ((ssize_t)cs, pwrite(self->fd, buf, cs, p.host));
	if (!prealloc && self->size >= 3 * span) {
		for (off = span; off + cs <= self->size; off += span) {
			ASSERT_EQ(0, write_through(_metadata, self, off, buf,
						   cs));
			memcpy(self->shadow + off, buf, cs);
			ASSERT_EQ(0, imgfmt_commit(self->im, &err));
		}
		expect = -EWOULDBLOCK;
	}
	EXPECT_EQ(expect, imgfmt_finish_write(self->im, &p,
					      IMGFMT_FINISH_NOWAIT, &err));
	if (expect) {
		/* Nothing changed: the cluster reads as before. */
		ASSERT_EQ(0, imgfmt_map(self->im, a, cs, 0, &run, &err));
		EXPECT_NE(IMGFMT_RUN_DATA, run.kind);
		ASSERT_EQ(0, imgfmt_finish_write(self->im, &p, 0, &err));
	}
	memcpy(self->shadow + a, buf, cs);
	free(buf);
	commit_close_trim(_metadata, self, &st);
	judge(_metadata, self);
}

/*
 * A plan that replaces a compressed cluster releases its storage, and the
 * writer has room for one such plan's free at a time (the target never
 * sends one down whole).  A caller that prepares many before finishing
 * them gets an error from the finish that finds no room, never a write
 * past the writer's array of frees.  A fresh cluster releases nothing.
 */
TEST_F(qwrite, release_plans_one_at_a_time)
{
	u64 cs = self->im->info.cluster_size, off;
	struct imgfmt_wplan p, held[16];
	const char *err = "";
	unsigned int i, refused = 0;

	if (!variant->prep || !strstr(variant->prep, "write -c")) {
		ASSERT_EQ(0, imgfmt_prepare_write(self->im, self->size - cs, cs,
						  0, &p, &err));
		EXPECT_FALSE(p.releases);
		return;
	}
	/* compressed_and_zero: 1 MiB compressed at 0, 64 KiB at 4 MiB. */
	for (i = 0; i < 250; i++) {
		ASSERT_EQ(0, imgfmt_prepare_write(self->im, i * cs, cs, 0, &p,
						  &err)) TH_LOG("%s", err);
		EXPECT_TRUE(p.releases);
		ASSERT_EQ(0, imgfmt_finish_write(self->im, &p, 0, &err));
	}
	for (i = 0; i < 16; i++) {
		off = i < 6 ? (250 + i) * cs : 4 * 1048576 + (i - 6) * cs;
		ASSERT_EQ(0, imgfmt_prepare_write(self->im, off, cs, 0,
						  &held[i], &err));
		EXPECT_TRUE(held[i].releases);
	}
	for (i = 0; i < 16; i++)
		if (imgfmt_finish_write(self->im, &held[i], 0, &err) == -EIO)
			refused++;
	EXPECT_LT(0, refused);
	EXPECT_GT(16, refused);
}

/* Discards and write-zeroes among the writes read back as zeroes. */
TEST_F(qwrite, writes_and_zeroes_match_qemu)
{
	random_ops(_metadata, self, variant, 3);
	judge(_metadata, self);
}

/*
 * Zeroes over the whole disk leave no data cluster in QEMU's map (owned
 * clusters stay allocated as zero clusters, the rest become zero entries
 * or nothing at all without a layer below) and hand the space back: the
 * file's blocks are only metadata then.  Version 2 has no zero flag: its
 * zeroes are written.
 */
TEST_F(qwrite, zeroes_return_space)
{
	const char *err = "";
	struct imgfmt_wstats ws;
	struct stat st;
	bool v2 = strstr(variant->create, "compat=0.10");

	u64 seed = 0x2545f4914f6cdd1dULL, j;
	u8 *data = malloc(self->size);

	/* Data everywhere first, so that there is something to free. */
	ASSERT_NE(NULL, data);
	for (j = 0; j < self->size; j += 8)
		*(u64 *)(data + j) = rnd(&seed);
	ASSERT_EQ(0, write_through(_metadata, self, 0, data, self->size));
	free(data);
	ASSERT_EQ(0, imgfmt_commit(self->im, &err)) TH_LOG("commit: %s", err);
	ASSERT_EQ(0, write_through(_metadata, self, 0, NULL, self->size));
	memset(self->shadow, 0, self->size);
	commit_close_trim(_metadata, self, &ws);
	judge(_metadata, self);
	if (v2)
		return;
	EXPECT_NE(0, sh("qemu-img map --output=json %s | grep -q '\"data\": true'",
			self->img)) TH_LOG("data clusters left");
	ASSERT_EQ(0, fstat(self->fd, &st));
	EXPECT_GT(self->size / 2, (u64)st.st_blocks * 512)
		TH_LOG("%llu bytes still allocated",
		       (unsigned long long)st.st_blocks * 512);
}

/* A commit with nothing dirty still succeeds and leaves the image clean. */
TEST_F(qwrite, empty_commit)
{
	const char *err = "";

	ASSERT_EQ(0, imgfmt_commit(self->im, &err));
	ASSERT_EQ(0, imgfmt_commit(self->im, &err));
	imgfmt_close(self->im);
	self->im = NULL;
	EXPECT_EQ(0, sh("qemu-img check -q %s", self->img));
}

/*
 * As the target's map() does: writes into a new cluster go into a spare
 * the writer reserved (imgfmt_reserve()), planned without blocking
 * (imgfmt_prepare_reserved()), only the data written; the rest as usual.
 * At the end the unused spares go back, newest first: no leak remains,
 * and what lay past the image's end never shows.
 */
TEST_F(qwrite, spares_match_qemu)
{
	u64 seed = 0x5851f42d4c957f2dULL ^ variant->size, off, len, j;
	u64 spares[4], cs = self->im->info.cluster_size, host;
	unsigned int i, first = 0, nr = 0, used = 0;
	/* Spares need unallocated clusters that read zeroes, no subclusters. */
	bool can = !variant->backing &&
		   !strstr(variant->create, "extended_l2=on") &&
		   !strstr(variant->create, "preallocation");
	struct imgfmt_wstats st;
	struct imgfmt_wplan p;
	const char *err = "";
	u8 *data;
	int r;

	data = malloc((size_t)variant->max_sectors * 512);
	ASSERT_NE(NULL, data);
	for (i = 0; i < variant->writes; i++) {
		while (nr < 4) {
			r = imgfmt_reserve(self->im, &host, &err);
			if (r) {
				EXPECT_FALSE(can) TH_LOG("reserve: %s", err);
				break;
			}
			spares[(first + nr++) % 4] = host;
		}
		off = (rnd(&seed) % (self->size / 512)) * 512;
		len = (1 + rnd(&seed) % variant->max_sectors) * 512;
		if (len > self->size - off)
			len = self->size - off;
		for (j = 0; j < len; j += 8)
			*(u64 *)(data + j) = rnd(&seed);
		if (nr && off / cs == (off + len - 1) / cs &&
		    !imgfmt_prepare_reserved(self->im, off, len,
					     spares[first], &p)) {
			first = (first + 1) % 4;
			nr--;
			used++;
			ASSERT_EQ((ssize_t)len,
				  pwrite(self->fd, data, len,
					 p.host + (off - p.vstart)));
			ASSERT_EQ(0, finish_as_target(self, &p, &err));
		} else {
			ASSERT_EQ(0, write_through(_metadata, self, off, data,
						   len));
		}
		memcpy(self->shadow + off, data, len);
		commit_every_37th(_metadata, self, i);
	}
	free(data);
	while (nr--)
		ASSERT_EQ(0, imgfmt_unreserve(self->im,
					      spares[(first + nr) % 4], &err));
	if (can)
		EXPECT_LT(0, used);
	commit_close_trim(_metadata, self, &st);
	judge(_metadata, self);
}

TEST_HARNESS_MAIN
