// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt create -f qcow2: a new QCOW2 image, with qemu-img create's
 * command line and option names, that `qemu-img check` finds clean.
 *
 * Layout, in clusters: 0 holds the header, its extensions and the backing
 * file name; then come the refcount table, the refcount blocks and the L1
 * table; with preallocation=metadata each L2 table follows, directly
 * followed by the data clusters it maps.  Every cluster of the file is
 * metadata or preallocated data and has refcount 1, so nothing leaks and
 * the refcount structures count their own clusters.  The file is grown
 * with ftruncate(), so unwritten clusters are holes that read as zeroes.
 *
 * The header is written last, after the tables are on disk: until then
 * cluster 0 is a hole, and a create that stops half way leaves a file no
 * reader takes for an image.
 */
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "backing.h"
#include "create.h"
#include "disk.h"
#include "formats/qcow2_int.h"
#include "imgfmt.h"

/* Host offsets in L1 and L2 entries have bits 9 to 55. */
#define HOST_OFFSET_LIMIT	BIT_ULL(56)
/* Sizes are signed 64-bit numbers in QEMU. */
#define MAX_SIZE_ARG		((u64)INT64_MAX)
/* Digits of a size's fraction that count; more cannot change the bytes. */
#define MAX_FRACTION_DIGITS	18

struct create_opts {
	const char *path;
	const char *format;		/* -f */
	const char *backing;		/* -b or backing_file=, or NULL */
	const char *backing_fmt;	/* -F or backing_fmt=, or NULL */
	u64 size;			/* bytes, once has_size */
	bool has_size;
	bool opt_size;			/* size= came with -o */
	u32 version;			/* 2 (compat=0.10) or 3 (1.1) */
	u32 cluster_bits;
	u32 refcount_order;		/* log2 of refcount_bits */
	bool extended_l2;
	bool prealloc;			/* preallocation=metadata */
	u8 compression_type;
};

/* Where everything goes, in bytes and clusters. */
struct layout {
	u64 cs;			/* cluster size */
	u64 l2_entries;		/* entries of one L2 table */
	u64 l1_size;		/* L1 entries */
	u64 l1_clusters;
	u64 l2_tables;		/* preallocated L2 tables */
	u64 data_clusters;	/* preallocated data clusters */
	u64 refblocks;
	u64 reftable_clusters;
	u64 total;		/* clusters of the file, all in use */
	u64 reftable_off;
	u64 refblock_off;	/* the first; the others follow it */
	u64 l1_off;
	u64 l2_off;		/* the first L2 table */
};

/* A usage error of create: its reason, which follows "create: ". */
static __printf(1, 2) int bad(const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return usage_fail("create: %s", why);
}

/* Options and arguments */

/*
 * A size as qemu-img reads one: a decimal number, possibly with a
 * fraction, or a hexadecimal one (0x...), then at most one suffix of b, k,
 * M, G, T, P or E (either case; powers of 1024).  A fraction needs a
 * suffix above b and is cut to whole bytes.  At most 2^63 - 1.
 */
static int parse_size(const char *s, u64 *out)
{
	static const char suffixes[] = "BKMGTPE";
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	u64 v, frac = 0, scale = 1, part;
	unsigned int shift = 0, digits = 0;
	bool point = false;
	const char *p;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, hex ? 16 : 10);
	if (errno)
		return -1;
	if (*end == '.' && !hex) {
		point = true;
		for (end++; isdigit((unsigned char)*end); end++) {
			if (digits++ >= MAX_FRACTION_DIGITS)
				continue;
			frac = frac * 10 + (u64)(*end - '0');
			scale *= 10;
		}
	}
	if (*end) {
		p = strchr(suffixes, toupper((unsigned char)*end));
		if (!p || end[1])
			return -1;
		shift = 10 * (unsigned int)(p - suffixes);
	}
	if (point && !shift)
		return -1;
	if (v > (MAX_SIZE_ARG >> shift))
		return -1;
	/* frac < scale <= 10^18 < 2^60, shifted by at most 60 bits. */
	part = (u64)(((__uint128_t)frac << shift) / scale);
	v <<= shift;
	if (part > MAX_SIZE_ARG - v)
		return -1;
	*out = v + part;
	return 0;
}

static int parse_bool(const char *key, const char *val, bool *out)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (!strcmp(val, "on") || !strcmp(val, "yes") || !strcmp(val, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(val, "off") || !strcmp(val, "no") ||
	    !strcmp(val, "false")) {
		*out = false;
		return 0;
	}
	return bad("%s must be on or off, not '%s'", key,
		   shown_name(&shown, val));
}

static int set_cluster_size(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX];
	u64 v;

	if (parse_size(val, &v) || v & (v - 1) ||
	    v < BIT_ULL(QCOW2_MIN_CLUSTER_BITS) ||
	    v > BIT_ULL(QCOW2_MAX_CLUSTER_BITS))
		return bad("cluster_size must be a power of two from 512 to 2M, not '%s'",
			   shown_name(&shown, val));
	c->cluster_bits = (u32)__builtin_ctzll(v);
	return 0;
}

static int set_refcount_bits(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX], *end;
	unsigned long v;

	errno = 0;
	v = isdigit((unsigned char)*val) ? strtoul(val, &end, 10) : 0;
	if (!v || errno || *end || v & (v - 1) ||
	    v > BIT(QCOW2_MAX_REFCOUNT_ORDER))
		return bad("refcount_bits must be 1, 2, 4, 8, 16, 32 or 64, not '%s'",
			   shown_name(&shown, val));
	c->refcount_order = (u32)__builtin_ctzl(v);
	return 0;
}

static int set_compat(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (!strcmp(val, "0.10") || !strcmp(val, "v2"))
		c->version = 2;
	else if (!strcmp(val, "1.1") || !strcmp(val, "v3"))
		c->version = 3;
	else
		return bad("compat must be 0.10 or 1.1 (v2 or v3), not '%s'",
			   shown_name(&shown, val));
	return 0;
}

static int set_preallocation(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (!strcmp(val, "off") || !strcmp(val, "metadata")) {
		c->prealloc = !strcmp(val, "metadata");
		return 0;
	}
	return bad("preallocation must be off or metadata, not '%s'",
		   shown_name(&shown, val));
}

static int set_compression(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (!strcmp(val, "zlib"))
		c->compression_type = QCOW2_COMPRESSION_ZLIB;
	else if (!strcmp(val, "zstd"))
		c->compression_type = QCOW2_COMPRESSION_ZSTD;
	else
		return bad("compression_type must be zlib or zstd, not '%s'",
			   shown_name(&shown, val));
	return 0;
}

static int set_size_opt(struct create_opts *c, const char *val)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (parse_size(val, &c->size))
		return bad("bad size '%s' (bytes, or with a suffix k, M, G, T, P or E)",
			   shown_name(&shown, val));
	c->has_size = true;
	c->opt_size = true;
	return 0;
}

/* One KEY=VALUE of an -o list. */
static int set_item(struct create_opts *c, char *item)
{
	char shown[IMGFMT_SHOWN_MAX], *val = strchr(item, '=');
	bool lazy;
	int rc;

	if (!val)
		return bad("-o '%s' needs a value (KEY=VALUE)",
			   shown_name(&shown, item));
	*val++ = '\0';
	if (!strcmp(item, "cluster_size"))
		return set_cluster_size(c, val);
	if (!strcmp(item, "refcount_bits"))
		return set_refcount_bits(c, val);
	if (!strcmp(item, "compat"))
		return set_compat(c, val);
	if (!strcmp(item, "extended_l2"))
		return parse_bool(item, val, &c->extended_l2);
	if (!strcmp(item, "preallocation"))
		return set_preallocation(c, val);
	if (!strcmp(item, "compression_type"))
		return set_compression(c, val);
	if (!strcmp(item, "size"))
		return set_size_opt(c, val);
	if (!strcmp(item, "backing_file")) {
		c->backing = val;
		return 0;
	}
	if (!strcmp(item, "backing_fmt")) {
		c->backing_fmt = val;
		return 0;
	}
	if (!strcmp(item, "lazy_refcounts")) {
		rc = parse_bool(item, val, &lazy);
		if (!rc && lazy)
			rc = bad("lazy_refcounts=on is not supported");
		return rc;
	}
	return bad("unknown option '%s' in -o",
		   shown_name(&shown, item));
}

/*
 * An -o list: KEY=VALUE items separated by commas, ",," standing for a
 * comma in a value, as qemu-img reads them.  The list is taken apart in
 * place (argv's strings are the program's to change and live as long),
 * so that the values can be kept without copies.
 */
static int parse_o_list(struct create_opts *c, char *list)
{
	char *item = list, *r = list, *w = list;
	bool last;
	int rc;

	for (;;) {
		if (r[0] == ',' && r[1] == ',') {
			*w++ = ',';
			r += 2;
			continue;
		}
		if (*r && *r != ',') {
			*w++ = *r++;
			continue;
		}
		last = !*r;
		*w = '\0';
		if (!*item)
			return bad("empty item in -o");
		rc = set_item(c, item);
		if (rc || last)
			return rc;
		item = ++r;
		w = r;
	}
}

/* What the options ask for together, as qemu-img 7.2 allows it. */
static int check_opts(const struct create_opts *c)
{
	if (c->extended_l2 && c->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS)
		return bad("extended_l2 needs a cluster_size of at least 16k, not %llu",
			   1ULL << c->cluster_bits);
	if (c->version == 2 && c->refcount_order != 4)
		return bad("compat=0.10 needs refcount_bits=16 (other widths need compat=1.1)");
	if (c->version == 2 && c->extended_l2)
		return bad("extended_l2 needs compat=1.1");
	if (c->version == 2 && c->compression_type != QCOW2_COMPRESSION_ZLIB)
		return bad("compression_type=zstd needs compat=1.1");
	if (c->backing_fmt && !c->backing)
		return bad("a backing format (-F) needs a backing file (-b)");
	if (c->backing && !c->backing_fmt)
		return bad("-b needs -F FMT, the backing file's format (as in qemu-img 7.2)");
	/*
	 * Preallocated clusters would hide the backing file, unless their
	 * subclusters can stay unallocated (QEMU's rule).
	 */
	if (c->backing && c->prealloc && !c->extended_l2)
		return bad("preallocation=metadata with a backing file needs extended_l2=on");
	if (!c->has_size && !c->backing)
		return bad("no SIZE given, and no backing file to take it from");
	return 0;
}

/* The backing file */

/* Formats the helper reads that QEMU knows by the same name. */
static bool backing_format_known(const char *fmt)
{
	static const char *const names[] = { "qcow2", "qcow", "vmdk", "raw" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(fmt, names[i]))
			return true;
	return false;
}

static int check_backing_names(const struct create_opts *c)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (!*c->backing)
		return bad("the backing file name is empty");
	if (strlen(c->backing) > QCOW2_MAX_BACKING_NAME)
		return bad("the backing file name is longer than %u bytes",
			   QCOW2_MAX_BACKING_NAME);
	if (!backing_format_known(c->backing_fmt))
		return bad("backing format '%s' is not one imgfmt reads (qcow2, qcow, vmdk or raw)",
			   shown_name(&shown, c->backing_fmt));
	return 0;
}

/* Would the new image overwrite the backing file full? */
static bool is_own_backing(const char *path, const char *full)
{
	struct stat a, b;

	if (!strcmp(path, full))
		return true;
	return !stat(path, &a) && !stat(full, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * Open the backing file (its name relative to the new image's directory)
 * as -F says, with its own chain, through the shared format code: as
 * qemu-img does, it must open, and it gives the size when none was given.
 */
static int open_backing(struct create_opts *c)
{
	struct disk d;
	char *full;
	int rc;

	if (!c->backing)
		return 0;
	rc = check_backing_names(c);
	if (rc)
		return rc;
	full = backing_full_name(c->path, c->backing);
	if (!full)
		return fail("out of memory");
	if (is_own_backing(c->path, full)) {
		free(full);
		return bad("the image would be its own backing file");
	}
	rc = disk_open(&d, full, c->backing_fmt, 0);
	/* Whatever the format code allows, QEMU's sizes are signed. */
	if (!rc && !c->has_size && d.size > MAX_SIZE_ARG)
		rc = bad("the backing file's size, %llu bytes, is too large",
			 (unsigned long long)d.size);
	if (!rc && !c->has_size) {
		c->size = d.size;
		c->has_size = true;
	}
	disk_close(&d);
	free(full);
	return rc;
}

/* Layout */

static u64 l2_table_off(const struct layout *l, u64 t)
{
	return l->l2_off + t * (1 + l->l2_entries) * l->cs;
}

/*
 * Refcount blocks and table large enough for every cluster, theirs
 * included: adding them can need more of them, so grow both until they
 * cover the total.  Each round only grows, and a round that needs
 * nothing more ends it.
 */
static int layout_refcounts(struct layout *l, const struct create_opts *c,
			    u64 fixed)
{
	u64 per_block = (l->cs * 8) >> c->refcount_order;
	u64 nb, nr;

	l->refblocks = 1;
	l->reftable_clusters = 1;
	for (;;) {
		l->total = fixed + l->reftable_clusters + l->refblocks;
		nb = DIV_ROUND_UP_ULL(l->total, per_block);
		nr = DIV_ROUND_UP_ULL(nb * 8, l->cs);
		if (nr * l->cs > QCOW2_MAX_REFTABLE_BYTES ||
		    (nb <= l->refblocks && nr <= l->reftable_clusters))
			break;
		l->refblocks = max(l->refblocks, nb);
		l->reftable_clusters = max(l->reftable_clusters, nr);
	}
	if (nr * l->cs > QCOW2_MAX_REFTABLE_BYTES)
		return bad("the refcount table would be over 8 MiB (try a larger cluster_size)");
	if (l->total > HOST_OFFSET_LIMIT >> c->cluster_bits)
		return bad("the preallocated image would be larger than a QCOW2 image can be");
	return 0;
}

static int layout_make(struct layout *l, const struct create_opts *c)
{
	u64 coverage, fixed;
	int rc;

	memset(l, 0, sizeof(*l));
	l->cs = 1ULL << c->cluster_bits;
	l->l2_entries = l->cs / (c->extended_l2 ? 16 : 8);
	/* At most 2^18 entries of 2^21 bytes: no overflow. */
	coverage = l->l2_entries << c->cluster_bits;
	l->l1_size = DIV_ROUND_UP_ULL(c->size, coverage);
	if (l->l1_size > QCOW2_MAX_L1_BYTES / 8)
		return bad("%llu bytes is too large for %llu-byte clusters (try larger ones)",
			   (unsigned long long)c->size,
			   (unsigned long long)l->cs);
	l->l1_clusters = DIV_ROUND_UP_ULL(l->l1_size * 8, l->cs);
	if (c->prealloc) {
		l->l2_tables = l->l1_size;
		l->data_clusters = DIV_ROUND_UP_ULL(c->size, l->cs);
	}
	/* Below 2^53 clusters here, as size <= 2^61. */
	fixed = 1 + l->l1_clusters + l->l2_tables + l->data_clusters;
	if (fixed > HOST_OFFSET_LIMIT >> c->cluster_bits)
		return bad("the preallocated image would be larger than a QCOW2 image can be");
	rc = layout_refcounts(l, c, fixed);
	if (rc)
		return rc;
	l->reftable_off = l->cs;
	l->refblock_off = l->reftable_off + l->reftable_clusters * l->cs;
	l->l1_off = l->refblock_off + l->refblocks * l->cs;
	l->l2_off = l->l1_off + l->l1_clusters * l->cs;
	return 0;
}

/* Writing */

struct writer {
	int fd;
	char name[IMGFMT_SHOWN_MAX];
	u8 *buf;			/* one cluster */
	const struct layout *l;
	const struct create_opts *c;
};

static int write_at(struct writer *w, const void *buf, size_t len, u64 off)
{
	const u8 *p = buf;
	ssize_t n;

	while (len) {
		n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail("cannot write %s: %s", w->name,
				    n < 0 ? strerror(errno) : "short write");
		p += n;
		len -= (size_t)n;
		off += (u64)n;
	}
	return 0;
}

static int write_reftable(struct writer *w)
{
	const struct layout *l = w->l;
	__be64 *e = (__be64 *)w->buf;
	u64 per = l->cs / 8, j = 0, i, n;
	int rc;

	for (n = 0; j < l->refblocks; n++) {
		memset(w->buf, 0, l->cs);
		for (i = 0; i < per && j < l->refblocks; i++, j++)
			e[i] = cpu_to_be64(l->refblock_off + j * l->cs);
		rc = write_at(w, w->buf, l->cs, l->reftable_off + n * l->cs);
		if (rc)
			return rc;
	}
	return 0;
}

/* Refcount 1 for the first n entries of the block in w->buf. */
static void fill_refblock(struct writer *w, u64 n)
{
	u64 i;

	memset(w->buf, 0, w->l->cs);
	for (i = 0; i < n; i++)
		qcow2_refcount_set(w->buf, i, w->c->refcount_order, 1);
}

/*
 * The file's clusters are all in use, so every block but the last is
 * full: it is filled once and written again for each.
 */
static int write_refblocks(struct writer *w)
{
	const struct layout *l = w->l;
	u64 per_block = (l->cs * 8) >> w->c->refcount_order;
	u64 j, n, filled = 0;
	int rc;

	for (j = 0; j < l->refblocks; j++) {
		n = min(per_block, l->total - j * per_block);
		if (n != filled)
			fill_refblock(w, n);
		filled = n;
		rc = write_at(w, w->buf, l->cs, l->refblock_off + j * l->cs);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Every L1 entry points at its preallocated L2 table; bit 63, COPIED,
 * means the same in L1 and L2 entries (refcount exactly 1).  Without
 * preallocation the L1 table stays a hole: all entries zero.
 */
static int write_l1(struct writer *w)
{
	const struct layout *l = w->l;
	__be64 *e = (__be64 *)w->buf;
	u64 per = l->cs / 8, t = 0, i, n;
	int rc;

	for (n = 0; t < l->l2_tables; n++) {
		memset(w->buf, 0, l->cs);
		for (i = 0; i < per && t < l->l2_tables; i++, t++)
			e[i] = cpu_to_be64(l2_table_off(l, t) |
					   QCOW2_L2E_COPIED);
		rc = write_at(w, w->buf, l->cs, l->l1_off + n * l->cs);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * L2 table t maps the data clusters that follow it.  With extended L2
 * entries, every subcluster is allocated (it reads the zeroes of the
 * hole), except over a backing file, where the subclusters stay
 * unallocated so that the backing file shows through, as QEMU does.
 */
static int write_l2_table(struct writer *w, u64 t)
{
	const struct layout *l = w->l;
	u64 base = l2_table_off(l, t), k, n, entry;
	u64 bitmap = w->c->backing ? 0 : U32_MAX;
	__be64 *e = (__be64 *)w->buf;

	n = min(l->l2_entries, l->data_clusters - t * l->l2_entries);
	memset(w->buf, 0, l->cs);
	for (k = 0; k < n; k++) {
		entry = (base + (1 + k) * l->cs) | QCOW2_L2E_COPIED;
		if (w->c->extended_l2) {
			e[2 * k] = cpu_to_be64(entry);
			e[2 * k + 1] = cpu_to_be64(bitmap);
		} else {
			e[k] = cpu_to_be64(entry);
		}
	}
	return write_at(w, w->buf, l->cs, base);
}

/* The feature name table qemu-img 7.2 writes into version 3 images. */
static const struct {
	u8 type;	/* 0 incompatible, 1 compatible, 2 autoclear */
	u8 bit;
	const char *name;
} feature_names[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};

/* A header extension at pos (len bytes of data, padded to 8); its end. */
static size_t put_ext(u8 *buf, size_t pos, u32 type, const void *data,
		      size_t len)
{
	struct qcow2_ext_header *x = (struct qcow2_ext_header *)(buf + pos);

	x->type = cpu_to_be32(type);
	x->length = cpu_to_be32((u32)len);
	memcpy(buf + pos + sizeof(*x), data, len);
	return pos + sizeof(*x) + ALIGN(len, (size_t)8);
}

static size_t put_feature_names(u8 *buf, size_t pos)
{
	struct qcow2_feature_name f[ARRAY_SIZE(feature_names)];
	size_t i;

	memset(f, 0, sizeof(f));
	for (i = 0; i < ARRAY_SIZE(feature_names); i++) {
		f[i].type = feature_names[i].type;
		f[i].bit = feature_names[i].bit;
		memcpy(f[i].name, feature_names[i].name,
		       strlen(feature_names[i].name));
	}
	return put_ext(buf, pos, QCOW2_EXT_FEATURE_NAMES, f, sizeof(f));
}

static void put_fields(struct qcow2_header *h, const struct layout *l,
		       const struct create_opts *c)
{
	h->magic = cpu_to_be32(QCOW_MAGIC);
	h->version = cpu_to_be32(c->version);
	h->cluster_bits = cpu_to_be32(c->cluster_bits);
	h->size = cpu_to_be64(c->size);
	h->l1_size = cpu_to_be32((u32)l->l1_size);
	/* An empty L1 table is at offset 0, as qemu-img puts it. */
	h->l1_table_offset = cpu_to_be64(l->l1_size ? l->l1_off : 0);
	h->refcount_table_offset = cpu_to_be64(l->reftable_off);
	h->refcount_table_clusters = cpu_to_be32((u32)l->reftable_clusters);
	if (c->version < 3)
		return;
	if (c->extended_l2)
		h->incompatible_features |= cpu_to_be64(QCOW2_INCOMPAT_EXTL2);
	if (c->compression_type != QCOW2_COMPRESSION_ZLIB)
		h->incompatible_features |=
			cpu_to_be64(QCOW2_INCOMPAT_COMPRESSION);
	h->refcount_order = cpu_to_be32(c->refcount_order);
	h->header_length = cpu_to_be32(sizeof(*h));
	h->compression_type = c->compression_type;
}

/*
 * Cluster 0 into w->buf: the header, the backing format extension, the
 * feature name table (version 3, when it fits: it is optional), the end
 * of the extensions, the backing file name.  Its length in *len.
 */
static int build_header(struct writer *w, size_t *len)
{
	const struct create_opts *c = w->c;
	struct qcow2_header *h = (struct qcow2_header *)w->buf;
	size_t hlen = c->version < 3 ? QCOW2_V2_HEADER_LEN : sizeof(*h);
	size_t fmt_len = c->backing ? strlen(c->backing_fmt) : 0;
	size_t name_len = c->backing ? strlen(c->backing) : 0;
	size_t ext = sizeof(struct qcow2_ext_header), pos, names = 0, need;

	need = hlen + (c->backing ? ext + ALIGN(fmt_len, (size_t)8) : 0) +
	       ext + name_len;
	if (need > w->l->cs)
		return bad("the backing file name does not fit in a %llu-byte cluster",
			   (unsigned long long)w->l->cs);
	if (c->version >= 3)
		names = ext + sizeof(struct qcow2_feature_name) *
			ARRAY_SIZE(feature_names);
	if (need + names > w->l->cs)
		names = 0;
	memset(w->buf, 0, w->l->cs);
	put_fields(h, w->l, c);
	pos = hlen;
	if (c->backing)
		pos = put_ext(w->buf, pos, QCOW2_EXT_BACKING_FORMAT,
			      c->backing_fmt, fmt_len);
	if (names)
		pos = put_feature_names(w->buf, pos);
	pos += ext;	/* QCOW2_EXT_END: zeroes */
	if (c->backing) {
		h->backing_file_offset = cpu_to_be64(pos);
		h->backing_file_size = cpu_to_be32((u32)name_len);
		memcpy(w->buf + pos, c->backing, name_len);
		pos += name_len;
	}
	*len = pos;
	return 0;
}

static int write_tables(struct writer *w)
{
	u64 t;
	int rc;

	rc = write_reftable(w);
	if (!rc)
		rc = write_refblocks(w);
	if (!rc)
		rc = write_l1(w);
	for (t = 0; !rc && t < w->l->l2_tables; t++)
		rc = write_l2_table(w, t);
	return rc;
}

/* The tables, then, once they are on disk, the header. */
static int write_contents(struct writer *w)
{
	size_t len = 0;
	int rc;

	if (ftruncate(w->fd, (off_t)(w->l->total * w->l->cs)))
		return fail("cannot grow %s to %llu bytes: %s", w->name,
			    (unsigned long long)(w->l->total * w->l->cs),
			    strerror(errno));
	rc = write_tables(w);
	if (rc)
		return rc;
	if (fdatasync(w->fd))
		return fail("cannot write %s: %s", w->name, strerror(errno));
	rc = build_header(w, &len);
	if (!rc)
		rc = write_at(w, w->buf, len, 0);
	if (!rc && fsync(w->fd))
		rc = fail("cannot write %s: %s", w->name, strerror(errno));
	return rc;
}

/*
 * Create (or, as qemu-img does, truncate) the image file.  Only a regular
 * file: a device or FIFO cannot be grown or truncated to a fresh image.
 */
static int write_image(const struct create_opts *c, const struct layout *l)
{
	struct writer w = { .l = l, .c = c };
	struct stat st;
	int rc;

	shown_name(&w.name, c->path);
	if (!stat(c->path, &st) && !S_ISREG(st.st_mode))
		return fail("%s exists and is not a regular file", w.name);
	w.buf = malloc(l->cs);
	if (!w.buf)
		return fail("out of memory");
	w.fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		    O_NOCTTY, 0644);
	if (w.fd < 0) {
		free(w.buf);
		return fail("cannot create %s: %s", w.name, strerror(errno));
	}
	rc = write_contents(&w);
	if (close(w.fd) && !rc)
		rc = fail("cannot write %s: %s", w.name, strerror(errno));
	/* What is left has no header; do not leave it looking like a file made. */
	if (rc)
		unlink(c->path);
	free(w.buf);
	return rc;
}

/* The command */

/* The options; *first is the index of the first argument. */
static int parse_args(struct create_opts *c, int argc, char **argv,
		      int *first)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char shown[IMGFMT_SHOWN_MAX], optc[3] = "-";
	int opt, rc = 0;

	opterr = 0;
	optind = 1;
	while (!rc && (opt = getopt_long(argc, argv, ":f:o:b:F:h", longopts,
					 NULL)) != -1) {
		optc[1] = (char)optopt;
		switch (opt) {
		case 'h':
			return CREATE_HELP;
		case 'f':
			c->format = optarg;
			break;
		case 'o':
			rc = parse_o_list(c, optarg);
			break;
		case 'b':
			c->backing = optarg;
			break;
		case 'F':
			c->backing_fmt = optarg;
			break;
		case ':':
			return bad("option '%s' needs a value",
				   shown_name(&shown, optc));
		default:
			return bad("unknown option '%s'",
				   shown_name(&shown, optopt ? optc :
				   argv[optind - 1]));
		}
	}
	*first = optind;
	return rc;
}

static int parse_command(struct create_opts *c, char **argv)
{
	char shown[IMGFMT_SHOWN_MAX];
	int argc = 0, first = 0, rc;

	while (argv[argc])
		argc++;
	rc = parse_args(c, argc, argv, &first);
	if (rc)
		return rc;
	if (argc - first < 1 || argc - first > 2)
		return bad("wrong number of arguments: IMAGE [SIZE] (see imgfmt help create)");
	if (!c->format)
		return bad("-f qcow2 is required (only QCOW2 images can be created)");
	if (strcmp(c->format, "qcow2"))
		return bad("cannot create '%s' images, only qcow2",
			   shown_name(&shown, c->format));
	c->path = argv[first];
	if (!argv[first + 1])
		return 0;
	if (c->opt_size)
		return bad("the size is given twice (SIZE and -o size=)");
	if (parse_size(argv[first + 1], &c->size))
		return bad("bad size '%s' (bytes, or with a suffix k, M, G, T, P or E)",
			   shown_name(&shown, argv[first + 1]));
	c->has_size = true;
	return 0;
}

int create_run(char **argv)
{
	struct create_opts c = {
		.version = 3,
		.cluster_bits = 16,
		.refcount_order = 4,
	};
	struct layout l;
	int rc;

	rc = parse_command(&c, argv);
	if (!rc)
		rc = check_opts(&c);
	if (!rc)
		rc = open_backing(&c);
	if (rc)
		return rc;
	/* QEMU counts disks in whole sectors: it rounds up, and so do we. */
	c.size = ALIGN(c.size, SECTOR_SIZE);
	rc = layout_make(&l, &c);
	if (!rc)
		rc = write_image(&c, &l);
	return rc;
}
