// SPDX-License-Identifier: GPL-2.0-only
/*
 * QCOW2 consistency check (see qcow2_check.h).
 *
 * The check walks every piece of metadata the header leads to (the header
 * cluster, the active and every snapshot's L1 and L2 tables and the
 * clusters they map, the snapshot table, the refcount table and blocks,
 * the LUKS header, the bitmap directory and tables) and counts, in one
 * counter per host cluster, the references each cluster should have.  Then
 * it compares those with the stored refcounts and checks the COPIED flags
 * of the active tables against them.  What counts as corruption, as a
 * leak, or as neither follows `qemu-img check` of QEMU 7.2, its oracle,
 * so that both give the same numbers for the same file; the layout facts
 * come from docs/interop/qcow2.txt.
 *
 * Everything read from the image is hostile: offsets are checked before
 * they index the counters, and reads past the end of the file return
 * zeroes (as QEMU's do), so a table that runs off the end is reported once
 * and not trusted further.  L2 tables and refcount blocks are read one at
 * a time.
 */
#include "../imgfmt_format.h"
#include "qcow2_int.h"
#include "qcow2_check.h"

/* Refcount table entries: bits 9-63 the block's offset, 0-8 reserved. */
#define QCOW2_REFT_RESERVED		0x1ffULL
/* Version 3 snapshots carry at least the VM state and disk sizes. */
#define QCOW2_SNAPSHOT_V3_EXTRA		16
/* Counters of expected refcounts are at most 16 bits wide (order 4). */
#define QCOW2_CHECK_MAX_ORDER		4

/* How QEMU classifies an L2 entry. */
enum qcow2_ctype {
	QCOW2_C_UNALLOCATED,
	QCOW2_C_ZERO_PLAIN,
	QCOW2_C_ZERO_ALLOC,
	QCOW2_C_NORMAL,
	QCOW2_C_COMPRESSED,
};

struct qcow2_checker {
	struct imgfmt_dev *dev;
	struct qcow2_fields f;
	u32 cluster_bits;
	u32 cluster_size;
	u32 l2_entries;
	u32 l2_entsize;
	bool extended_l2;
	bool data_file;
	/* Expected refcounts: 2^count_order bits each, counters of them. */
	void *counts;
	u32 count_order;
	u64 counters;
	u64 count_max;
	/* Clusters compared: the file's, or one more a reference reached. */
	u64 nb_clusters;
	u64 refcount_max;	/* of a stored refcount */
	/* The refcount table in CPU order, and the block last read. */
	u64 *reftable;
	u64 reftable_entries;
	u32 refblock_bits;	/* log2 of refcounts per block */
	u8 *block;
	u64 block_off;
	bool block_valid;
	u8 *l2;			/* one L2 table */
	__be64 *l1;		/* one cluster of an L1 table */
	/* From the header extensions. */
	u64 crypto_offset;
	u64 crypto_length;
	bool has_bitmaps;
	struct qcow2_bitmaps_ext bitmaps;
	imgfmt_qcow2_report_fn report;
	void *ctx;
	struct imgfmt_qcow2_check *res;
	const char **err;
};

static void qcow2_check_note(struct qcow2_checker *c,
			     enum imgfmt_qcow2_finding what, u64 a, u64 b,
			     u64 v)
{
	if (c->report)
		c->report(c->ctx, what, a, b, v);
}

static void qcow2_check_corrupt(struct qcow2_checker *c,
				enum imgfmt_qcow2_finding what, u64 a, u64 b,
				u64 v)
{
	c->res->corruptions++;
	qcow2_check_note(c, what, a, b, v);
}

/* Read len bytes at off; what lies past the end of the file is zeroes. */
static int qcow2_check_pread(struct qcow2_checker *c, u64 off, void *buf,
			     u32 len)
{
	u64 avail = 0;
	int r;

	if (off < c->dev->size)
		avail = min_t(u64, len, c->dev->size - off);
	memset((u8 *)buf + avail, 0, len - avail);
	if (!avail)
		return 0;
	r = imgfmt_dev_read(c->dev, off, buf, avail);
	if (r)
		*c->err = "cannot read the image";
	return r;
}

/*
 * One reference to each cluster that [off, off + size) touches.  As in
 * QEMU, a region may end inside the cluster after the end of the file (a
 * file cut short inside its last cluster), not further.
 */
static int qcow2_check_ref(struct qcow2_checker *c, u64 off, u64 size)
{
	u64 end, k, last, v;

	if (!size)
		return 0;
	if (check_add_overflow(off, size, &end) ||
	    (end > c->dev->size && end - c->dev->size >= c->cluster_size)) {
		qcow2_check_corrupt(c, IMGFMT_QCOW2_PAST_EOF, off, size, 0);
		return 0;
	}
	/* end < file size + cluster size: k stays below c->counters. */
	last = (end - 1) >> c->cluster_bits;
	for (k = off >> c->cluster_bits; k <= last; k++) {
		v = qcow2_refcount_get(c->counts, k, c->count_order);
		if (v == c->refcount_max) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_OVERFLOW,
					    k << c->cluster_bits, 0, 0);
			continue;
		}
		/* Only with refcounts wider than the counters. */
		if (v == c->count_max) {
			*c->err = "a cluster has more references than the check can count";
			return -E2BIG;
		}
		qcow2_refcount_set(c->counts, k, c->count_order, v + 1);
		if (k >= c->nb_clusters)
			c->nb_clusters = k + 1;
	}
	return 0;
}

static enum qcow2_ctype qcow2_check_type(const struct qcow2_checker *c,
					 u64 e)
{
	if (e & QCOW2_L2E_COMPRESSED)
		return QCOW2_C_COMPRESSED;
	if ((e & QCOW2_L2E_ZERO) && !c->extended_l2)
		return (e & QCOW2_OFFSET_MASK) ? QCOW2_C_ZERO_ALLOC :
						 QCOW2_C_ZERO_PLAIN;
	/* In a data file offset 0 is a cluster, told by COPIED (refcount 1). */
	if (!(e & QCOW2_OFFSET_MASK))
		return c->data_file && (e & QCOW2_L2E_COPIED) ?
		       QCOW2_C_NORMAL : QCOW2_C_UNALLOCATED;
	return QCOW2_C_NORMAL;
}

static int qcow2_check_compressed(struct qcow2_checker *c, u64 e, u64 bitmap,
				  bool active)
{
	u32 shift = 62 - (c->cluster_bits - 8);
	u64 off = e & ((1ULL << shift) - 1);
	u64 sectors = ((e >> shift) & ((1ULL << (c->cluster_bits - 8)) - 1)) + 1;

	if (e & QCOW2_L2E_COPIED)
		qcow2_check_corrupt(c, IMGFMT_QCOW2_COMPRESSED_COPIED, off, 0, 0);
	if (c->data_file) {
		qcow2_check_corrupt(c, IMGFMT_QCOW2_COMPRESSED_DATA_FILE, e, 0,
				    0);
		return 0;
	}
	if (bitmap) {
		qcow2_check_corrupt(c, IMGFMT_QCOW2_COMPRESSED_BITMAP, e, 0, 0);
		return 0;
	}
	if (active) {
		c->res->allocated_clusters++;
		c->res->compressed_clusters++;
		c->res->fragmented_clusters++;
	}
	/* The stream's sectors, from its first byte on. */
	return qcow2_check_ref(c, off, sectors * 512 - (off & 511));
}

/* A standard cluster with a host offset: data or preallocated zeroes. */
static int qcow2_check_allocated(struct qcow2_checker *c, u64 e, u64 bitmap,
				 bool active, u64 *next)
{
	u64 off = e & QCOW2_OFFSET_MASK;
	bool data;

	if ((bitmap >> 32) & bitmap)
		qcow2_check_corrupt(c, IMGFMT_QCOW2_SUBCLUSTER_BITMAP, off, 0, 0);
	if (!IS_ALIGNED(off, c->cluster_size)) {
		data = c->extended_l2 ? bitmap & 0xffffffffULL :
					!(e & QCOW2_L2E_ZERO);
		qcow2_check_corrupt(c, data ? IMGFMT_QCOW2_DATA_UNALIGNED :
					      IMGFMT_QCOW2_ZERO_UNALIGNED,
				    off, 0, 0);
	}
	if (active) {
		c->res->allocated_clusters++;
		if (*next && off != *next)
			c->res->fragmented_clusters++;
		*next = off + c->cluster_size;
	}
	/* The spec: clusters of an external data file have no refcounts. */
	if (c->data_file)
		return 0;
	return qcow2_check_ref(c, off, c->cluster_size);
}

static int qcow2_check_l2_entry(struct qcow2_checker *c, u64 e, u64 bitmap,
				bool active, u64 *next)
{
	enum qcow2_ctype type = qcow2_check_type(c, e);

	if (type != QCOW2_C_COMPRESSED && (e & QCOW2_L2E_RESERVED))
		qcow2_check_corrupt(c, IMGFMT_QCOW2_L2_RESERVED, e, 0, 0);
	switch (type) {
	case QCOW2_C_COMPRESSED:
		return qcow2_check_compressed(c, e, bitmap, active);
	case QCOW2_C_NORMAL:
	case QCOW2_C_ZERO_ALLOC:
		return qcow2_check_allocated(c, e, bitmap, active, next);
	case QCOW2_C_UNALLOCATED:
		if (bitmap & 0xffffffffULL)
			qcow2_check_corrupt(c, IMGFMT_QCOW2_UNALLOCATED_BITMAP,
					    e, 0, 0);
		return 0;
	default:
		return 0;
	}
}

static void qcow2_check_l2_get(const struct qcow2_checker *c, u32 i, u64 *e,
			       u64 *bitmap)
{
	const __be64 *p = (const void *)(c->l2 + (size_t)i * c->l2_entsize);

	*e = be64_to_cpu(p[0]);
	*bitmap = c->extended_l2 ? be64_to_cpu(p[1]) : 0;
}

static int qcow2_check_l2(struct qcow2_checker *c, u64 l2_off, bool active)
{
	u64 e, bitmap, next = 0;
	u32 i;
	int r;

	r = qcow2_check_pread(c, l2_off, c->l2, c->cluster_size);
	for (i = 0; !r && i < c->l2_entries; i++) {
		qcow2_check_l2_get(c, i, &e, &bitmap);
		r = qcow2_check_l2_entry(c, e, bitmap, active, &next);
	}
	return r;
}

/*
 * Entry i of the L1 table of n entries at off, read a cluster at a time:
 * the caller walks i from 0 up.
 */
static int qcow2_check_l1_entry(struct qcow2_checker *c, u64 off, u32 n,
				u32 i, u64 *e)
{
	u32 per = c->cluster_size / 8, j = i & (per - 1);
	u64 pos;
	int r;

	if (!j) {
		/* A hostile snapshot's offset may wrap: zeroes then. */
		if (check_add_overflow(off, (u64)i * 8, &pos))
			pos = U64_MAX;
		r = qcow2_check_pread(c, pos, c->l1,
				      min_t(u32, n - i, per) * 8);
		if (r)
			return r;
	}
	*e = be64_to_cpu(c->l1[j]);
	return 0;
}

static int qcow2_check_l1(struct qcow2_checker *c, u64 off, u32 n,
			  bool active)
{
	u64 e, l2_off;
	u32 i;
	int r;

	if (!n)
		return 0;
	r = qcow2_check_ref(c, off, (u64)n * 8);
	for (i = 0; !r && i < n; i++) {
		r = qcow2_check_l1_entry(c, off, n, i, &e);
		if (r || !e)
			continue;
		if (e & QCOW2_L1E_RESERVED)
			qcow2_check_corrupt(c, IMGFMT_QCOW2_L1_RESERVED, e, 0, 0);
		/* Counted and walked even when corrupt, as QEMU does. */
		l2_off = e & QCOW2_OFFSET_MASK;
		r = qcow2_check_ref(c, l2_off, c->cluster_size);
		if (r)
			break;
		if (!IS_ALIGNED(l2_off, c->cluster_size))
			qcow2_check_corrupt(c, IMGFMT_QCOW2_L2_UNALIGNED, l2_off,
					    0, 0);
		r = qcow2_check_l2(c, l2_off, active);
	}
	return r;
}

/* Snapshot number i's L1 table, unless its entry is corrupt. */
static int qcow2_check_snapshot_l1(struct qcow2_checker *c, u32 i,
				   const struct qcow2_snapshot_header *h)
{
	u64 off = be64_to_cpu(h->l1_table_offset);
	u32 n = be32_to_cpu(h->l1_size);

	if (!IS_ALIGNED(off, c->cluster_size)) {
		qcow2_check_corrupt(c, IMGFMT_QCOW2_SNAPSHOT_L1_UNALIGNED, i, off,
				    0);
		return 0;
	}
	if (n > QCOW2_MAX_L1_BYTES / 8) {
		qcow2_check_corrupt(c, IMGFMT_QCOW2_SNAPSHOT_L1_TOO_LARGE, i, n,
				    0);
		return 0;
	}
	return qcow2_check_l1(c, off, n, false);
}

/*
 * The snapshot table: each entry's L1 table, then the table itself.  An
 * entry too large for QEMU makes it refuse the image: so do we.
 */
static int qcow2_check_snapshots(struct qcow2_checker *c)
{
	struct qcow2_snapshot_header h;
	u64 start = c->f.snapshots_offset, pos = start;
	u32 i, extra;
	int r;

	if (c->data_file && c->f.nb_snapshots)
		qcow2_check_corrupt(c, IMGFMT_QCOW2_SNAPSHOTS_DATA_FILE,
				    c->f.nb_snapshots, 0, 0);
	for (i = 0; i < c->f.nb_snapshots; i++) {
		/* pos - start stays within 64 MiB: no sum here overflows. */
		pos = ALIGN(pos, 8);
		r = qcow2_check_pread(c, pos, &h, sizeof(h));
		if (r)
			return r;
		extra = be32_to_cpu(h.extra_data_size);
		if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
			*c->err = "QCOW2 snapshot extra data too large";
			return -EINVAL;
		}
		pos += sizeof(h) + extra + be16_to_cpu(h.id_str_size) +
		       be16_to_cpu(h.name_size);
		if (pos - start > QCOW2_MAX_SNAPSHOT_TABLE) {
			*c->err = "QCOW2 snapshot table too large";
			return -EINVAL;
		}
		if (c->f.version >= 3 && extra < QCOW2_SNAPSHOT_V3_EXTRA)
			qcow2_check_corrupt(c, IMGFMT_QCOW2_SNAPSHOT_INCOMPLETE,
					    i, extra, 0);
		r = qcow2_check_snapshot_l1(c, i, &h);
		if (r)
			return r;
	}
	return qcow2_check_ref(c, start, pos - start);
}

/* One bitmap's table and the clusters it points at. */
static int qcow2_check_bitmap_table(struct qcow2_checker *c, u64 off, u32 n)
{
	u64 e, cl;
	u32 i;
	int r;

	r = qcow2_check_ref(c, off, (u64)n * 8);
	for (i = 0; !r && i < n; i++) {
		/* Read like an L1 table: a cluster of entries at a time. */
		r = qcow2_check_l1_entry(c, off, n, i, &e);
		if (r)
			break;
		cl = e & QCOW2_BME_OFFSET_MASK;
		if ((e & QCOW2_BME_RESERVED) ||
		    (cl && ((e & QCOW2_BME_ALL_ONES) ||
			    !IS_ALIGNED(cl, c->cluster_size)))) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_BITMAP_ENTRY, e, 0, 0);
			continue;
		}
		if (cl)
			r = qcow2_check_ref(c, cl, c->cluster_size);
	}
	return r;
}

static int qcow2_check_bitmap_dir(struct qcow2_checker *c, const u8 *dir,
				  u64 len)
{
	const struct qcow2_bitmap_dirent *d;
	u32 nb = be32_to_cpu(c->bitmaps.nb_bitmaps), i, n;
	u64 pos = 0, step;
	int r = 0;

	for (i = 0; !r && i < nb; i++) {
		if (len - pos < sizeof(*d))
			goto bad;
		d = (const void *)(dir + pos);
		step = qcow2_bitmap_dirent_len(d, len - pos);
		n = be32_to_cpu(d->table_size);
		if (!step || n > QCOW2_BITMAP_MAX_TABLE)
			goto bad;
		/* Unlike at open, the last entry's padding may run past. */
		pos = min_t(u64, len, pos + step);
		r = qcow2_check_bitmap_table(c, be64_to_cpu(d->table_offset), n);
	}
	return r;
bad:
	/* QEMU cannot load the directory either and gives up the check. */
	c->res->corruptions++;
	*c->err = "QCOW2 bitmap directory invalid";
	return -EINVAL;
}

/*
 * Persistent dirty bitmaps count only when the autoclear bit says the
 * last writer knew them; otherwise QEMU ignores them as stale.
 */
static int qcow2_check_bitmaps(struct qcow2_checker *c)
{
	u64 off = be64_to_cpu(c->bitmaps.directory_offset);
	u64 len = be64_to_cpu(c->bitmaps.directory_size);
	u8 *dir;
	int r;

	if (!c->has_bitmaps)
		return 0;
	if (!(c->f.autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
		qcow2_check_note(c, IMGFMT_QCOW2_BITMAPS_IGNORED, 0, 0, 0);
		return 0;
	}
	if (!be32_to_cpu(c->bitmaps.nb_bitmaps))
		return 0;
	if (len > QCOW2_MAX_BITMAP_DIRECTORY) {
		*c->err = "QCOW2 bitmap directory too large";
		return -EINVAL;
	}
	r = qcow2_check_ref(c, off, len);
	if (r || !len)
		return r;
	dir = imgfmt_alloc_large(len);
	if (!dir) {
		*c->err = "cannot allocate memory for the bitmap directory";
		return -ENOMEM;
	}
	r = qcow2_check_pread(c, off, dir, len);
	if (!r)
		r = qcow2_check_bitmap_dir(c, dir, len);
	imgfmt_free_large(dir);
	return r;
}

/* The refcount blocks, each referenced once by the refcount table. */
static int qcow2_check_refblocks(struct qcow2_checker *c)
{
	u64 i, e, off;
	int r;

	for (i = 0; i < c->reftable_entries; i++) {
		e = c->reftable[i];
		off = e & ~QCOW2_REFT_RESERVED;
		if (e & QCOW2_REFT_RESERVED) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_REFTABLE_RESERVED, i,
					    0, 0);
			continue;
		}
		if (!IS_ALIGNED(off, c->cluster_size)) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_REFBLOCK_UNALIGNED, i,
					    0, 0);
			continue;
		}
		if ((off >> c->cluster_bits) >= c->nb_clusters) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_REFBLOCK_OUTSIDE, i,
					    0, 0);
			continue;
		}
		if (!off)
			continue;
		r = qcow2_check_ref(c, off, c->cluster_size);
		if (r)
			return r;
		e = qcow2_refcount_get(c->counts, off >> c->cluster_bits,
				       c->count_order);
		if (e != 1)
			qcow2_check_corrupt(c, IMGFMT_QCOW2_REFBLOCK_SHARED, i, e,
					    0);
	}
	return 0;
}

/*
 * The stored refcount of cluster k: 0 beyond the table or without a
 * block; -EIO (and *err) for an unaligned block or a failed read.
 */
static int qcow2_stored_refcount(struct qcow2_checker *c, u64 k, u64 *rc)
{
	u64 idx = k >> c->refblock_bits, off;
	int r;

	*rc = 0;
	if (idx >= c->reftable_entries)
		return 0;
	off = c->reftable[idx] & ~QCOW2_REFT_RESERVED;
	if (!off)
		return 0;
	if (!IS_ALIGNED(off, c->cluster_size)) {
		*c->err = "QCOW2 refcount block offset not aligned to a cluster";
		return -EIO;
	}
	if (!c->block_valid || c->block_off != off) {
		c->block_valid = false;
		r = qcow2_check_pread(c, off, c->block, c->cluster_size);
		if (r)
			return r;
		c->block_valid = true;
		c->block_off = off;
	}
	*rc = qcow2_refcount_get(c->block, k & ((1ULL << c->refblock_bits) - 1),
				 c->f.refcount_order);
	return 0;
}

static void qcow2_check_compare(struct qcow2_checker *c)
{
	u64 k, stored, want, highest = 0;

	for (k = 0; k < c->nb_clusters; k++) {
		if (qcow2_stored_refcount(c, k, &stored)) {
			c->res->check_errors++;
			qcow2_check_note(c, IMGFMT_QCOW2_REFCOUNT_UNREADABLE, k,
					 0, 0);
			continue;
		}
		want = qcow2_refcount_get(c->counts, k, c->count_order);
		if (stored || want)
			highest = k;
		if (stored < want) {
			qcow2_check_corrupt(c, IMGFMT_QCOW2_REFCOUNT_LOW, k,
					    stored, want);
		} else if (stored > want) {
			c->res->leaks++;
			qcow2_check_note(c, IMGFMT_QCOW2_LEAK, k, stored, want);
		}
	}
	c->res->image_end_offset = (highest + 1) << c->cluster_bits;
}

/* COPIED must be set exactly where the refcount is 1. */
static bool qcow2_copied_wrong(u64 e, u64 rc)
{
	return (rc == 1) != !!(e & QCOW2_L2E_COPIED);
}

/* The COPIED flags of one active L2 table's allocated clusters. */
static int qcow2_check_copied_l2(struct qcow2_checker *c, u64 l2_off)
{
	enum qcow2_ctype type;
	u64 e, bitmap, rc;
	u32 i;
	int r;

	r = qcow2_check_pread(c, l2_off, c->l2, c->cluster_size);
	for (i = 0; !r && i < c->l2_entries; i++) {
		qcow2_check_l2_get(c, i, &e, &bitmap);
		type = qcow2_check_type(c, e);
		if (type != QCOW2_C_NORMAL && type != QCOW2_C_ZERO_ALLOC)
			continue;
		rc = 1;
		/* An unreadable refcount is counted once, by the compare. */
		if (!c->data_file &&
		    qcow2_stored_refcount(c, (e & QCOW2_OFFSET_MASK) >>
					  c->cluster_bits, &rc))
			continue;
		if (qcow2_copied_wrong(e, rc))
			qcow2_check_corrupt(c, IMGFMT_QCOW2_COPIED_DATA, e, rc,
					    0);
	}
	return r;
}

/* Only the active state is written in place: only its flags matter. */
static int qcow2_check_copied(struct qcow2_checker *c)
{
	u64 e, l2_off, rc;
	u32 i;
	int r = 0;

	for (i = 0; !r && i < c->f.l1_size; i++) {
		r = qcow2_check_l1_entry(c, c->f.l1_offset, c->f.l1_size, i, &e);
		l2_off = e & QCOW2_OFFSET_MASK;
		if (r || !l2_off)
			continue;
		if (qcow2_stored_refcount(c, l2_off >> c->cluster_bits, &rc))
			continue;
		if (qcow2_copied_wrong(e, rc))
			qcow2_check_corrupt(c, IMGFMT_QCOW2_COPIED_L2, i, e, rc);
		r = qcow2_check_copied_l2(c, l2_off);
	}
	return r;
}

/* The header extensions the check needs: the LUKS header and bitmaps. */
static int qcow2_check_extension(struct qcow2_checker *c, u32 type,
				 const u8 *data, u32 len)
{
	const struct qcow2_crypto_ext *ce = (const void *)data;

	switch (type) {
	case QCOW2_EXT_CRYPTO_HEADER:
		if (len != sizeof(*ce))
			break;
		c->crypto_offset = be64_to_cpu(ce->offset);
		c->crypto_length = be64_to_cpu(ce->length);
		return 0;
	case QCOW2_EXT_BITMAPS:
		if (len != sizeof(c->bitmaps))
			break;
		memcpy(&c->bitmaps, data, len);
		c->has_bitmaps = true;
		return 0;
	default:
		return 0;
	}
	*c->err = "QCOW2 header extension length invalid";
	return -EINVAL;
}

/*
 * Walk the extensions in the header cluster (in c->l2): they end at the
 * backing file name, or at the end of the cluster.
 */
static int qcow2_check_extensions(struct qcow2_checker *c)
{
	const struct qcow2_ext_header *eh;
	u64 pos = c->f.header_length, end = c->cluster_size;
	u32 type, len;
	int r;

	r = qcow2_check_pread(c, 0, c->l2, c->cluster_size);
	if (c->f.backing_offset)
		end = min_t(u64, end, c->f.backing_offset);
	while (!r && pos < end) {
		if (end - pos < sizeof(*eh))
			goto bad;
		eh = (const void *)(c->l2 + pos);
		type = be32_to_cpu(eh->type);
		len = be32_to_cpu(eh->length);
		pos += sizeof(*eh);
		if (len > end - pos)
			goto bad;
		if (type == QCOW2_EXT_END)
			break;
		r = qcow2_check_extension(c, type, c->l2 + pos, len);
		pos += ALIGN((u64)len, 8);
	}
	return r;
bad:
	*c->err = "QCOW2 header extension invalid";
	return -EINVAL;
}

/* The bounds QEMU's open puts on the tables the header points at. */
static int qcow2_check_layout(struct qcow2_checker *c)
{
	const struct qcow2_fields *f = &c->f;

	if (f->incompatible & ~QCOW2_INCOMPAT_KNOWN) {
		*c->err = "QCOW2 unknown incompatible feature";
		return -EINVAL;
	}
	if (!f->reftable_clusters ||
	    f->reftable_clusters > QCOW2_MAX_REFTABLE_BYTES / c->cluster_size ||
	    !IS_ALIGNED(f->reftable_offset, c->cluster_size) ||
	    f->reftable_offset > QCOW2_MAX_OFFSET -
				 ((u64)f->reftable_clusters << c->cluster_bits)) {
		*c->err = "QCOW2 refcount table invalid";
		return -EINVAL;
	}
	if (f->l1_size > QCOW2_MAX_L1_BYTES / 8 ||
	    !IS_ALIGNED(f->l1_offset, c->cluster_size) ||
	    f->l1_offset > QCOW2_MAX_OFFSET - (u64)f->l1_size * 8) {
		*c->err = "QCOW2 L1 table invalid";
		return -EINVAL;
	}
	if (f->nb_snapshots > QCOW2_MAX_SNAPSHOTS ||
	    !IS_ALIGNED(f->snapshots_offset, c->cluster_size) ||
	    f->snapshots_offset > QCOW2_MAX_OFFSET -
				  (u64)f->nb_snapshots * QCOW2_SNAPSHOT_HEADER_LEN) {
		*c->err = "QCOW2 snapshot table invalid";
		return -EINVAL;
	}
	return 0;
}

/* Header, geometry, buffers and the refcount table. */
static int qcow2_check_setup(struct qcow2_checker *c)
{
	u64 bytes, file_clusters;
	u32 i;
	int r;

	r = imgfmt_qcow2_read_head(c->dev, &c->f, c->err);
	if (r)
		return r;
	c->cluster_bits = c->f.cluster_bits;
	c->cluster_size = 1U << c->cluster_bits;
	c->extended_l2 = c->f.incompatible & QCOW2_INCOMPAT_EXTL2;
	c->data_file = c->f.incompatible & QCOW2_INCOMPAT_DATA_FILE;
	c->l2_entsize = c->extended_l2 ? 16 : 8;
	c->l2_entries = c->cluster_size / c->l2_entsize;
	c->refblock_bits = c->cluster_bits + 3 - c->f.refcount_order;
	c->refcount_max = c->f.refcount_order == 6 ? U64_MAX :
			  BIT_ULL(1U << c->f.refcount_order) - 1;
	c->count_order = min_t(u32, c->f.refcount_order, QCOW2_CHECK_MAX_ORDER);
	c->count_max = BIT_ULL(1U << c->count_order) - 1;
	r = qcow2_check_layout(c);
	if (r)
		return r;
	file_clusters = (c->dev->size + c->cluster_size - 1) >> c->cluster_bits;
	if (file_clusters > IMGFMT_QCOW2_CHECK_MAX_CLUSTERS) {
		*c->err = "image file has too many clusters to check (more than 2^28)";
		return -EFBIG;
	}
	c->nb_clusters = file_clusters;
	/* One more: a reference may reach into the cluster after the end. */
	c->counters = file_clusters + 1;
	bytes = DIV_ROUND_UP_ULL(c->counters << c->count_order, 8);
	c->counts = imgfmt_zalloc_large(bytes);
	c->l2 = imgfmt_alloc_large(c->cluster_size);
	c->l1 = imgfmt_alloc_large(c->cluster_size);
	c->block = imgfmt_alloc_large(c->cluster_size);
	c->reftable_entries = (u64)c->f.reftable_clusters <<
			      (c->cluster_bits - 3);
	c->reftable = imgfmt_alloc_large(c->reftable_entries * 8);
	if (!c->counts || !c->l2 || !c->l1 || !c->block || !c->reftable) {
		*c->err = "cannot allocate memory for the check";
		return -ENOMEM;
	}
	r = qcow2_check_pread(c, c->f.reftable_offset, c->reftable,
			      c->reftable_entries * 8);
	for (i = 0; !r && i < c->reftable_entries; i++)
		c->reftable[i] = be64_to_cpu(((__be64 *)c->reftable)[i]);
	if (!r)
		r = qcow2_check_extensions(c);
	return r;
}

static void qcow2_check_free(struct qcow2_checker *c)
{
	imgfmt_free_large(c->counts);
	imgfmt_free_large(c->l2);
	imgfmt_free_large(c->l1);
	imgfmt_free_large(c->block);
	imgfmt_free_large(c->reftable);
}

/* Every reference, in QEMU's order. */
static int qcow2_check_count(struct qcow2_checker *c)
{
	int r;

	r = qcow2_check_ref(c, 0, c->cluster_size);
	if (!r)
		r = qcow2_check_l1(c, c->f.l1_offset, c->f.l1_size, true);
	if (!r)
		r = qcow2_check_snapshots(c);
	if (!r)
		r = qcow2_check_ref(c, c->f.reftable_offset,
				    c->reftable_entries * 8);
	if (!r && c->crypto_length)
		r = qcow2_check_ref(c, c->crypto_offset, c->crypto_length);
	if (!r)
		r = qcow2_check_bitmaps(c);
	if (!r)
		r = qcow2_check_refblocks(c);
	return r;
}

int imgfmt_qcow2_check(struct imgfmt_dev *dev, imgfmt_qcow2_report_fn report,
		       void *ctx, struct imgfmt_qcow2_check *res,
		       const char **err)
{
	struct qcow2_checker *c;
	int r;

	memset(res, 0, sizeof(*res));
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c) {
		*err = "cannot allocate memory for the check";
		return -ENOMEM;
	}
	c->dev = dev;
	c->report = report;
	c->ctx = ctx;
	c->res = res;
	c->err = err;
	r = qcow2_check_setup(c);
	if (!r) {
		res->total_clusters = (c->f.size + c->cluster_size - 1) >>
				      c->cluster_bits;
		r = qcow2_check_count(c);
	}
	if (!r) {
		qcow2_check_compare(c);
		r = qcow2_check_copied(c);
	}
	qcow2_check_free(c);
	kfree(c);
	return r;
}

int imgfmt_qcow2_image_end(struct imgfmt_dev *dev, u64 *end,
			   const char **err)
{
	struct qcow2_checker *c;
	u64 k, rc;
	u32 i;
	int r;

	*end = 0;
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c) {
		*err = "cannot allocate memory for the refcount table";
		return -ENOMEM;
	}
	c->dev = dev;
	c->err = err;
	r = imgfmt_qcow2_read_head(dev, &c->f, err);
	if (r)
		goto out;
	c->cluster_bits = c->f.cluster_bits;
	c->cluster_size = 1U << c->cluster_bits;
	c->refblock_bits = c->cluster_bits + 3 - c->f.refcount_order;
	r = qcow2_check_layout(c);
	if (r)
		goto out;
	c->reftable_entries = (u64)c->f.reftable_clusters <<
			      (c->cluster_bits - 3);
	c->reftable = imgfmt_alloc_large(c->reftable_entries * 8);
	c->block = imgfmt_alloc_large(c->cluster_size);
	if (!c->reftable || !c->block) {
		*err = "cannot allocate memory for the refcount table";
		r = -ENOMEM;
		goto out;
	}
	r = qcow2_check_pread(c, c->f.reftable_offset, c->reftable,
			      c->reftable_entries * 8);
	for (i = 0; !r && i < c->reftable_entries; i++)
		c->reftable[i] = be64_to_cpu(((__be64 *)c->reftable)[i]);
	/*
	 * From the last cluster of the file down to the first with a
	 * refcount: what lies past the end of the file cannot be cut off.
	 */
	k = (dev->size + c->cluster_size - 1) >> c->cluster_bits;
	k = min_t(u64, k, c->reftable_entries << c->refblock_bits);
	while (!r && k--) {
		if (!(c->reftable[k >> c->refblock_bits] & ~QCOW2_REFT_RESERVED)) {
			/* No block: all its clusters are free. */
			k &= ~((1ULL << c->refblock_bits) - 1);
			continue;
		}
		r = qcow2_stored_refcount(c, k, &rc);
		if (!r && rc) {
			*end = (k + 1) << c->cluster_bits;
			break;
		}
	}
out:
	imgfmt_free_large(c->reftable);
	imgfmt_free_large(c->block);
	kfree(c);
	return r;
}
