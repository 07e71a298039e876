// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of the UML COW format (dm-imgfmt/formats/cow.c) through the
 * interface the kernel target uses (imgfmt_format.h).
 *
 * The files come from mkcow.py, which writes every header layout from the
 * format's description (not from cow.c) together with what each sector
 * must be (NAME.kinds: D data, U unallocated, Z zeroes) and the virtual
 * disk's bytes (NAME.raw, the backing file's bytes where a bit is clear),
 * and hostile variants with the error each must be refused with.  A real
 * version 3 file comes from uml_mkcow when it is installed.
 *
 * Built against userspace/libimgfmt-shared.a, the same sources the kernel
 * module compiles.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The port headers first: kselftest.h keeps an ARRAY_SIZE it finds. */
#include "imgfmt_format.h"
#include "mcache.h"
#include "uhost.h"

#include "kselftest_harness.h"

#define SECTOR		512ULL

/* ------------------------------------------------------------- the files */

static char cow_dir[64];
static pid_t cow_owner;

/* mkcow.py sits next to this source file. */
__attribute__((constructor)) static void cow_make_files(void)
{
	char src[] = __FILE__, cmd[1024];

	strcpy(cow_dir, "/tmp/cow_unit.XXXXXX");
	if (!mkdtemp(cow_dir)) {
		cow_dir[0] = '\0';
		return;
	}
	cow_owner = getpid();
	snprintf(cmd, sizeof(cmd), "python3 '%s/mkcow.py' '%s'", dirname(src),
		 cow_dir);
	if (system(cmd)) {
		fprintf(stderr, "# mkcow.py failed\n");
		strcat(cow_dir, "/missing");
	}
}

__attribute__((destructor)) static void cow_remove_files(void)
{
	char cmd[128];

	/* The harness forks a child per test: only the parent cleans up. */
	if (cow_owner != getpid() || strncmp(cow_dir, "/tmp/cow_unit.", 14))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", 20, cow_dir);
	if (system(cmd))
		fprintf(stderr, "# cannot remove %s\n", cow_dir);
}

struct cow_case {
	char name[64];
	u32 version;
	u64 size;
	u64 data_offset;
	char backing[1024];
	char message[256];
	bool refuse;
};

/* The manifest line for name; false when there is none. */
static bool find_case(const char *name, struct cow_case *c)
{
	char path[128], line[2048], kind[16];
	bool found = false;
	int n, m;
	FILE *f;

	snprintf(path, sizeof(path), "%s/manifest", cow_dir);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		memset(c, 0, sizeof(*c));
		if (sscanf(line, "%15s %63s %n", kind, c->name, &n) < 2 ||
		    strcmp(c->name, name))
			continue;
		found = true;
		if (!strcmp(kind, "refuse")) {
			c->refuse = true;
			snprintf(c->message, sizeof(c->message), "%s", line + n);
		} else if (sscanf(line + n, "%u %llu %llu %n", &c->version,
				  (unsigned long long *)&c->size,
				  (unsigned long long *)&c->data_offset,
				  &m) == 3) {
			snprintf(c->backing, sizeof(c->backing), "%s",
				 line + n + m);
		} else {
			found = false;
		}
	}
	fclose(f);
	return found;
}

/* The whole of a file; NULL when it cannot be read. */
static u8 *slurp(const char *name, const char *ext, size_t *len)
{
	char path[128];
	long n;
	u8 *p;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%s", cow_dir, name, ext);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc(n ? n : 1);
	if (p && fread(p, 1, n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = n;
	return p;
}

/* --------------------------------------------------------- an open image */

struct opened {
	struct imgfmt_dev dev;
	int (*read)(struct imgfmt_dev *dev, u64 off, void *buf, size_t len);
	bool fail_reads;
	const struct imgfmt_format_ops *ops;
	struct imgfmt_image *img;
	struct imgfmt_info info;
	const char *err;
	int rc;
	/* What the file must map to. */
	struct cow_case c;
	u8 *kinds;
	size_t nkinds;
	u8 *raw;
	size_t nraw;
	int cow_fd;
	int backing_fd;
};

static int failing_read(struct imgfmt_dev *dev, u64 off, void *buf,
			size_t len)
{
	struct opened *o = container_of(dev, struct opened, dev);

	return o->fail_reads ? -EIO : o->read(dev, off, buf, len);
}

static const struct imgfmt_format_ops *cow_ops(void)
{
	unsigned int i;

	for (i = 0; imgfmt_formats[i]; i++)
		if (!strcmp(imgfmt_formats[i]->name, "cow"))
			return imgfmt_formats[i];
	return NULL;
}

/* Open NAME.cow; by detection unless ops is given.  0 or -errno. */
static int open_file(struct opened *o, const char *name,
		     const struct imgfmt_format_ops *ops, u64 cache)
{
	struct imgfmt_open_args args = { .has_lower = true };
	char path[128];
	int r;

	memset(o, 0, sizeof(*o));
	o->cow_fd = -1;
	o->backing_fd = -1;
	snprintf(path, sizeof(path), "%s/%s.cow", cow_dir, name);
	r = uport_dev_open(&o->dev, path);
	if (r)
		return o->rc = r;
	o->read = o->dev.read;
	o->dev.read = failing_read;
	o->ops = ops ? ops : imgfmt_detect(&o->dev, NULL, &o->err);
	if (!o->ops)
		return o->rc = -ENOENT;
	/* The tests read what the bitmap leaves to the backing file. */
	args.dev = &o->dev;
	args.cache_bytes = cache;
	args.has_lower = true;
	o->rc = imgfmt_open(o->ops, &args, &o->img, &o->err);
	if (!o->rc)
		o->info = o->img->info;
	return o->rc;
}

static void close_file(struct opened *o)
{
	imgfmt_close(o->img);
	o->img = NULL;
	uport_dev_close(&o->dev);
	free(o->kinds);
	free(o->raw);
	o->kinds = NULL;
	o->raw = NULL;
	if (o->cow_fd >= 0)
		close(o->cow_fd);
	if (o->backing_fd >= 0)
		close(o->backing_fd);
	o->cow_fd = -1;
	o->backing_fd = -1;
}

static u8 kind_letter(enum imgfmt_run_kind k)
{
	switch (k) {
	case IMGFMT_RUN_DATA:
		return 'D';
	case IMGFMT_RUN_ZERO:
		return 'Z';
	case IMGFMT_RUN_UNALLOCATED:
		return 'U';
	default:
		return '?';
	}
}

/* The bytes a run gives, as a reader of the disk would assemble them. */
static int run_bytes(struct opened *o, u64 off, const struct imgfmt_run *run,
		     u8 *buf)
{
	ssize_t n = (ssize_t)run->length;

	memset(buf, 0, run->length);
	if (run->kind == IMGFMT_RUN_DATA)
		n = pread(o->cow_fd, buf, run->length, run->dev_offset);
	else if (run->kind == IMGFMT_RUN_UNALLOCATED)
		n = pread(o->backing_fd, buf, run->length, off);
	if (n < 0)
		return -1;
	if (run->kind == IMGFMT_RUN_DATA && n != (ssize_t)run->length)
		return -1;	/* a data run past the end of the file */
	if (run->tail_zero)
		memset(buf + run->length - run->tail_zero, 0, run->tail_zero);
	return 0;
}

/*
 * Map [off, off + len) run by run and check every sector against .kinds,
 * every data run's device offset against the data area, and the bytes
 * against .raw (zeroes past the virtual size).  Without flags, runs must
 * be maximal: a run stops only where the kind changes, or before the last
 * sector when the virtual size ends inside it (runs.c).
 */
static void check_walk(struct __test_metadata *_metadata, struct opened *o,
		       u64 off, u64 len, unsigned int flags)
{
	struct imgfmt_run run;
	const char *err;
	u64 p, next, s;
	u8 *buf;
	int r;

	while (len) {
		err = NULL;
		r = imgfmt_map(o->img, off, len, flags, &run, &err);
		if (r == -EWOULDBLOCK && flags)
			r = imgfmt_map(o->img, off, len, 0, &run, &err);
		ASSERT_EQ(0, r) TH_LOG("%s: offset %llu length %llu: %s",
				       o->c.name, (unsigned long long)off,
				       (unsigned long long)len, err ? err : "");
		ASSERT_LT(0, run.length);
		ASSERT_GE(len, run.length);
		ASSERT_EQ(0, run.length % SECTOR);
		for (p = off; p < off + run.length; p += SECTOR) {
			s = p / SECTOR;
			if (s >= o->nkinds)
				continue;
			ASSERT_EQ(o->kinds[s], kind_letter(run.kind))
				TH_LOG("%s: sector %llu in run at %llu+%llu",
				       o->c.name, (unsigned long long)s,
				       (unsigned long long)off,
				       (unsigned long long)run.length);
		}
		if (run.kind == IMGFMT_RUN_DATA)
			ASSERT_EQ(o->c.data_offset + off, run.dev_offset);
		buf = malloc(run.length);
		ASSERT_NE(NULL, buf);
		ASSERT_EQ(0, run_bytes(o, off, &run, buf));
		for (p = 0; p < run.length; p++) {
			u8 want = off + p < o->nraw ? o->raw[off + p] : 0;

			if (buf[p] != want)
				break;
		}
		free(buf);
		ASSERT_EQ(run.length, p) TH_LOG("%s: byte %llu differs",
						o->c.name,
						(unsigned long long)(off + p));
		next = (off + run.length) / SECTOR;
		/* A data run leaves a sector cut by the virtual size alone. */
		if (!flags && run.length < len && next < o->nkinds &&
		    !(o->c.size % SECTOR && next == o->nkinds - 1))
			ASSERT_NE(o->kinds[next], kind_letter(run.kind))
				TH_LOG("%s: run at %llu ends at sector %llu, which continues it",
				       o->c.name, (unsigned long long)off,
				       (unsigned long long)next);
		off += run.length;
		len -= run.length;
	}
}

/* The whole disk cold with IMGFMT_MAP_NOWAIT, then warm, then windows. */
static void check_walks(struct __test_metadata *_metadata, struct opened *o)
{
	u64 state = 0x2545f491, sectors = DIV_ROUND_UP_ULL(o->c.size, SECTOR);
	u64 off, len;
	int i;

	check_walk(_metadata, o, 0, sectors * SECTOR, IMGFMT_MAP_NOWAIT);
	check_walk(_metadata, o, 0, sectors * SECTOR, 0);
	for (i = 0; i < 300; i++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (state >> 20) % sectors;
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		len = 1 + (state >> 20) % (i % 3 ? 40 : 5000);
		if (off + len > sectors)
			len = sectors - off;
		check_walk(_metadata, o, off * SECTOR, len * SECTOR, 0);
	}
}

/* Open a valid layout, check what it says about itself, walk it. */
static void check_layout(struct __test_metadata *_metadata, const char *name,
			 u64 cache)
{
	char path[1100];
	struct opened o;
	struct cow_case c;

	ASSERT_TRUE(find_case(name, &c)) TH_LOG("%s: not in the manifest", name);
	ASSERT_FALSE(c.refuse);
	ASSERT_EQ(0, open_file(&o, name, NULL, cache))
		TH_LOG("%s: %s", name, o.err ? o.err : strerror(-o.rc));
	o.c = c;
	EXPECT_STREQ("cow", o.ops->name);
	EXPECT_STREQ("cow", o.info.format);
	EXPECT_EQ(c.version, o.info.version);
	EXPECT_EQ(c.size, o.info.virtual_size);
	EXPECT_EQ(512, o.info.cluster_size);
	EXPECT_STREQ(c.backing, o.info.backing_file);

	o.kinds = slurp(name, ".kinds", &o.nkinds);
	o.raw = slurp(name, ".raw", &o.nraw);
	snprintf(path, sizeof(path), "%s/%s.cow", cow_dir, name);
	o.cow_fd = open(path, O_RDONLY);
	o.backing_fd = open(c.backing, O_RDONLY);
	ASSERT_NE(NULL, o.kinds);
	ASSERT_NE(NULL, o.raw);
	ASSERT_LE(0, o.cow_fd);
	ASSERT_LE(0, o.backing_fd);
	ASSERT_EQ(DIV_ROUND_UP_ULL(c.size, SECTOR), o.nkinds);
	ASSERT_EQ(c.size, o.nraw);
	check_walks(_metadata, &o);
	close_file(&o);
}

#define LAYOUT(id, name) \
	TEST(layout_##id) { check_layout(_metadata, name, IMGFMT_DEFAULT_CACHE_BYTES); }

LAYOUT(v1_little_endian, "v1-le")
LAYOUT(v1_big_endian, "v1-be")
LAYOUT(v2, "v2")
LAYOUT(v2_qemu, "v2-qemu")
LAYOUT(v3, "v3")
LAYOUT(v3_align_64k, "v3-align64k")
LAYOUT(v3_unpacked_64bit, "v3-64bit")
/* QEMU's file ends where its last written sector does. */
LAYOUT(v2_qemu_short_file, "v2-qemu-short")
LAYOUT(v2_qemu_fresh_file, "v2-qemu-fresh")
LAYOUT(v3_size_inside_a_sector, "v3-odd-size")
LAYOUT(v2_uml_rounding, "v2-rounding")
LAYOUT(v2_uml_name_tail_not_qemu, "v2-name-tail")

/* A file made by uml_mkcow, bits and data set by mkcow.py. */
TEST(layout_uml_mkcow)
{
	struct cow_case c;

	if (!find_case("uml-mkcow", &c) && system("command -v uml_mkcow >/dev/null"))
		SKIP(return, "uml_mkcow (uml-utilities) is not installed");
	check_layout(_metadata, "uml-mkcow", IMGFMT_DEFAULT_CACHE_BYTES);
}

/* A cache of two bitmap pieces, for a bitmap of three: evictions. */
TEST(small_cache)
{
	check_layout(_metadata, "v2", 1);
}

/*
 * The bitmap is read only by map(): a failing read fails the map that
 * needs it, with the format's words, and is not remembered.
 */
TEST(bitmap_read_errors)
{
	struct imgfmt_run run;
	const char *err = NULL;
	struct opened o;

	ASSERT_EQ(0, open_file(&o, "v3", NULL, IMGFMT_DEFAULT_CACHE_BYTES))
		TH_LOG("%s", o.err);
	uport_set_corruption_reports(false);
	o.fail_reads = true;
	EXPECT_EQ(-EWOULDBLOCK, imgfmt_map(o.img, 0, 4096, IMGFMT_MAP_NOWAIT,
					   &run, &err));
	EXPECT_EQ(-EIO, imgfmt_map(o.img, 0, 4096, 0, &run, &err));
	EXPECT_STREQ("cannot read the UML COW bitmap", err);
	o.fail_reads = false;
	EXPECT_EQ(0, imgfmt_map(o.img, 0, 4096, 0, &run, &err));
	o.fail_reads = true;
	/* Cached now: no device read needed, with or without NOWAIT. */
	EXPECT_EQ(0, imgfmt_map(o.img, 0, 4096, IMGFMT_MAP_NOWAIT, &run, &err));
	EXPECT_EQ(0, imgfmt_map(o.img, 512, 4096, 0, &run, &err));
	close_file(&o);
}

/* Requests outside the virtual disk are refused, not mapped. */
TEST(map_bounds)
{
	struct imgfmt_run run;
	const char *err;
	struct opened o;
	u64 end;

	ASSERT_EQ(0, open_file(&o, "v3-odd-size", NULL,
			       IMGFMT_DEFAULT_CACHE_BYTES)) TH_LOG("%s", o.err);
	end = ALIGN(o.info.virtual_size, SECTOR);
	EXPECT_EQ(0, imgfmt_map(o.img, end - SECTOR, SECTOR, 0, &run, &err));
	EXPECT_EQ(SECTOR, run.length);
	/* Past the end: zeroes (a backing file may be smaller). */
	EXPECT_EQ(0, imgfmt_map(o.img, end, SECTOR, 0, &run, &err));
	EXPECT_EQ(IMGFMT_RUN_ZERO, run.kind);
	EXPECT_EQ(0, imgfmt_map(o.img, end - SECTOR, 2 * SECTOR, 0, &run, &err));
	EXPECT_EQ(SECTOR, run.length);
	EXPECT_GT(0, imgfmt_map(o.img, 0, 0, 0, &run, &err));
	EXPECT_GT(0, imgfmt_map(o.img, 100, SECTOR, 0, &run, &err));
	EXPECT_GT(0, imgfmt_map(o.img, ~0ULL - 511, SECTOR, 0, &run, &err));
	close_file(&o);
}

/* Detection claims both byte orders of the magic, and nothing else. */
TEST(probe)
{
	struct opened o;

	EXPECT_EQ(0, open_file(&o, "v1-le", NULL, IMGFMT_DEFAULT_CACHE_BYTES));
	EXPECT_STREQ("cow", o.ops ? o.ops->name : "");
	close_file(&o);
	EXPECT_EQ(0, open_file(&o, "v1-be", NULL, IMGFMT_DEFAULT_CACHE_BYTES));
	EXPECT_STREQ("cow", o.ops ? o.ops->name : "");
	close_file(&o);
	EXPECT_EQ(-ENOENT, open_file(&o, "bad-magic", NULL,
				     IMGFMT_DEFAULT_CACHE_BYTES));
	close_file(&o);
}

/*
 * Without a layer below (the kernel and the helper today), a COW file that
 * names its backing file is refused by name; the layers above read it.
 */
TEST(backing_needs_a_lower_layer)
{
	struct imgfmt_open_args args = { .cache_bytes = 1 << 20 };
	struct imgfmt_image *img = NULL;
	const char *err = NULL;
	struct opened o;

	ASSERT_EQ(0, open_file(&o, "v3", NULL, IMGFMT_DEFAULT_CACHE_BYTES))
		TH_LOG("%s", o.err);
	ASSERT_NE(0, o.info.backing_file[0]);
	args.dev = &o.dev;
	EXPECT_EQ(-EINVAL, imgfmt_open(o.ops, &args, &img, &err));
	EXPECT_STREQ("UML COW backing file not given as a lower layer",
		     err ? err : "");
	imgfmt_close(img);
	close_file(&o);
}

/* ------------------------------------------------------ hostile headers */

static void check_refused(struct __test_metadata *_metadata, const char *name)
{
	const struct imgfmt_format_ops *ops = cow_ops();
	struct opened o;
	struct cow_case c;

	ASSERT_NE(NULL, ops);
	ASSERT_TRUE(find_case(name, &c)) TH_LOG("%s: not in the manifest", name);
	ASSERT_TRUE(c.refuse);
	/* Straight to open(): detection would refuse a bad magic first. */
	EXPECT_GT(0, open_file(&o, name, ops, IMGFMT_DEFAULT_CACHE_BYTES))
		TH_LOG("%s: opened", name);
	EXPECT_EQ(NULL, o.img);
	EXPECT_STREQ(c.message, o.err ? o.err : "(no message)");
	close_file(&o);
}

#define REFUSE(id, name) \
	TEST(refuse_##id) { check_refused(_metadata, name); }

REFUSE(bad_magic, "bad-magic")
REFUSE(version_4, "version-4")
REFUSE(version_0, "version-0")
REFUSE(v3_little_endian, "v3-little-endian")
REFUSE(alignment_0, "align-0")
REFUSE(alignment_3000, "align-3000")
REFUSE(alignment_256, "align-256")
REFUSE(alignment_1g, "align-huge")
REFUSE(alignment_2g, "align-2g")
REFUSE(sectorsize_0, "sectorsize-0")
REFUSE(sectorsize_1000, "sectorsize-1000")
REFUSE(sectorsize_4096, "sectorsize-4096")
REFUSE(v1_sectorsize_1000, "v1-sectorsize-1000")
REFUSE(cow_format_1, "cow-format-1")
REFUSE(size_0, "size-0")
REFUSE(size_u64_max, "size-max")
REFUSE(size_2_62_plus_1, "size-2^62+1")
REFUSE(v1_size_overflow, "v1-size-max")
REFUSE(bitmap_past_device_1tib, "bitmap-past-end")
REFUSE(bitmap_cut_by_device_end, "bitmap-cut")
REFUSE(data_area_past_device, "data-past-end")
REFUSE(v2_bitmap_overlaps_data, "v2-bitmap-overlap")
REFUSE(name_unterminated, "name-unterminated")
REFUSE(v1_name_unterminated, "v1-name-unterminated")
REFUSE(name_too_long, "name-too-long")
REFUSE(short_header, "short-header")
REFUSE(tiny_file, "tiny")
REFUSE(v1_short_header, "v1-short-header")

TEST_HARNESS_MAIN
