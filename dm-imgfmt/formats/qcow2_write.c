// SPDX-License-Identifier: GPL-2.0-only
/*
 * QCOW2 writes: cluster allocation, refcounts, and the ordered commit of
 * metadata that keeps the image consistent at every instant.
 *
 * Clusters are allocated at the end of the image only (next_free, found
 * from the refcounts at open), so a cluster handed out was never in use
 * since the image was last consistent: no freed cluster is reused, and a
 * crash can leak clusters but never make two owners of one.  The rules
 * that make a crash harmless:
 * - a new cluster is written whole (data and fill) before any table in
 *   memory points at it; a new L2 table or refcount block is zeroed on the
 *   device before anything points at it;
 * - commit writes refcount blocks, flushes, writes the refcount table
 *   (a moved table whole, flushed, then the header), flushes, writes L2
 *   tables, flushes if the L1 table changed, writes it, and flushes: what
 *   a table on the device points at is always durable before it;
 * - refcounts are only decreased after the commit that made the tables
 *   drop the reference is durable.
 * Everything here runs in one thread at a time (the host's writer).
 * Corruption met on the way fails the write with -EUCLEAN and changes
 * nothing; other errors are the device's.
 */
#include "../mcache.h"
#include "qcow2_int.h"
#include "runs.h"

/* Refcount table entries: bits 9-63 hold a refcount block's offset. */
#define QCOW2_RT_OFFSET_MASK	(~511ULL)
/* Clusters whose refcount decrease waits for the next commit. */
#define QCOW2_MAX_PENDING_FREES	256
/* Zeroes are written from a buffer of this size. */
#define QCOW2_ZERO_CHUNK	(64U << 10)
/* The space past the image's end is made to read as zeroes this much ahead. */
#define QCOW2_ZERO_AHEAD	(16ULL << 20)
/* Refcount blocks are cached in slices, like L2 tables. */
#define QCOW2_RB_SLICE		4096
/* The most of a table or of the header one commit write carries. */
#define QCOW2_STAGE		4096

/* What a prepared write carries in imgfmt_wplan.priv. */
enum {
	QW_SLICE,		/* device offset of the L2 slice */
	QW_POS,			/* byte of the entry in the slice */
	QW_ENTRY,		/* the new L2 entry */
	QW_BITMAP,		/* the new subcluster bitmap (extended L2) */
	QW_FREE_OFF,		/* what the old entry held, to release */
	QW_FREE_LEN,
};

struct qcow2_free {
	u64 off;
	u64 len;
};

/* Device space to discard, gathered into contiguous pieces. */
struct qw_punch {
	u64 off;
	u64 len;
};

struct qcow2_writer {
	u64 *rt;		/* the refcount table, CPU order */
	u32 rt_entries;
	u64 rt_offset;
	u32 rt_clusters;
	u32 rt_dirty_lo;	/* entries changed in place: [lo, hi) */
	u32 rt_dirty_hi;
	/* rt is a new table: written whole, then the header points at it. */
	bool rt_moved;
	u64 old_rt_offset;
	u32 old_rt_clusters;
	u32 l1_dirty_lo;	/* L1 entries changed: [lo, hi) */
	u32 l1_dirty_hi;
	u64 l1_offset;
	struct imgfmt_mcache *rb;	/* refcount block slices */
	u32 rb_slice;
	u32 order;		/* refcount_order */
	u32 rb_bits;		/* log2 of refcounts per block */
	u64 next_free;		/* first byte no cluster has ever used */
	/*
	 * [zeroed_from, zeroed_to) of the device read as zeroes except
	 * where clusters taken since wrote: a new cluster there needs no
	 * zeroes written.  zeroed_from is next_free at open: past it lies
	 * what a crash may have left, never to show in a new cluster.
	 */
	u64 zeroed_from;
	u64 zeroed_to;
	bool cannot_zero;	/* a zero op failed: zeroes are written */
	u64 dirty_limit;	/* commit first when this much is dirty */
	/* Unallocated clusters read from a layer below, not as zeroes. */
	bool has_lower;
	/*
	 * Owned ranges just marked zero, not yet discarded: before any
	 * write may fill them again (every one goes through prepare), and
	 * at commit.
	 */
	struct qw_punch zero_punch;
	struct qcow2_free frees[QCOW2_MAX_PENDING_FREES];
	u32 nr_frees;
	u64 commits;
	u64 allocations;
	void *zeroes;
	/*
	 * Table and header pieces are built here at commit: a cluster or
	 * QCOW2_STAGE, whichever is smaller; aligned to it (a whole device
	 * block at least, as clusters are).
	 */
	void *stage;
	u32 stage_size;
};

static struct qcow2_image *to_q(struct imgfmt_image *img)
{
	return container_of(img, struct qcow2_image, img);
}

static int qw_refuse(const char **err, const char *what, int r)
{
	*err = what;
	return r;
}

static void qw_l1_dirty(struct qcow2_writer *w, u32 i)
{
	if (w->l1_dirty_lo == w->l1_dirty_hi) {
		w->l1_dirty_lo = i;
		w->l1_dirty_hi = i + 1;
		return;
	}
	w->l1_dirty_lo = min(w->l1_dirty_lo, i);
	w->l1_dirty_hi = max(w->l1_dirty_hi, i + 1);
}

static void qw_rt_dirty(struct qcow2_writer *w, u32 i)
{
	if (w->rt_dirty_lo == w->rt_dirty_hi) {
		w->rt_dirty_lo = i;
		w->rt_dirty_hi = i + 1;
		return;
	}
	w->rt_dirty_lo = min(w->rt_dirty_lo, i);
	w->rt_dirty_hi = max(w->rt_dirty_hi, i + 1);
}

/* Take n clusters at the image's end. */
static int qw_bump(struct qcow2_image *q, u32 n, u64 *off, const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 bytes = (u64)n << q->cluster_bits;

	if (w->next_free > q->img.dev->size ||
	    bytes > q->img.dev->size - w->next_free ||
	    w->next_free + bytes > QCOW2_OFFSET_MASK)
		return qw_refuse(err, imgfmt_err_no_room, -ENOSPC);
	*off = w->next_free;
	w->next_free += bytes;
	return 0;
}

/*
 * Does [off, off + len), clusters just taken at the image's end, read as
 * zeroes?  The device is made to ahead of allocation, a piece at a time,
 * where it can without writing the zeroes (a loop device punches the
 * file).  Nothing points at that space yet, and the commit's first flush
 * makes the zeroes durable before any table points into it.
 */
static bool qw_fresh_zero(struct qcow2_image *q, u64 off, u64 len)
{
	struct qcow2_writer *w = q->w;
	u64 end = off + len, to;

	if (off < w->zeroed_from)
		return false;
	if (end <= w->zeroed_to)
		return true;
	if (w->cannot_zero)
		return false;
	to = min(max(end, w->zeroed_to + QCOW2_ZERO_AHEAD), q->img.dev->size);
	if (to < end || imgfmt_dev_zero(q->img.dev, w->zeroed_to,
					to - w->zeroed_to)) {
		/* Zeroes are written instead; nothing else is at stake. */
		w->cannot_zero = true;
		return false;
	}
	w->zeroed_to = to;
	return true;
}

/* Zero n clusters just taken at off, on the device before use. */
static int qw_zero_clusters(struct qcow2_image *q, u64 off, u32 n,
			    const char **err)
{
	u64 left = (u64)n << q->cluster_bits;
	u32 chunk;
	int r;

	if (qw_fresh_zero(q, off, left))
		return 0;
	while (left) {
		chunk = (u32)min_t(u64, left, QCOW2_ZERO_CHUNK);
		r = imgfmt_dev_write(q->img.dev, off, q->w->zeroes, chunk);
		if (r)
			return qw_refuse(err, "cannot write a new metadata cluster", r);
		off += chunk;
		left -= chunk;
	}
	return 0;
}

/*
 * Where the refcount of cluster idx lives: the slice of its block, the
 * bytes holding it there (1 for widths below 8 bits) and its place among
 * the entries those bytes hold.  -ENOENT when it has no block.
 */
static int qw_refcount_slot(struct qcow2_image *q, u64 idx, u64 *slice,
			    u32 *pos, u32 *len, u32 *sub)
{
	struct qcow2_writer *w = q->w;
	u64 bi = idx >> w->rb_bits, block, within, byte;

	if (bi >= w->rt_entries)
		return -ENOENT;
	block = w->rt[bi] & QCOW2_RT_OFFSET_MASK;
	if (!block)
		return -ENOENT;
	within = idx & ((1ULL << w->rb_bits) - 1);
	byte = (within << w->order) >> 3;
	*slice = block + (byte & ~((u64)w->rb_slice - 1));
	*pos = (u32)(byte & (w->rb_slice - 1));
	*len = w->order >= 3 ? 1U << (w->order - 3) : 1;
	*sub = w->order >= 3 ? 0 : (u32)(within & ((8U >> w->order) - 1));
	return 0;
}

static int qw_get_refcount(struct qcow2_image *q, u64 idx, u64 *rc,
			   const char **err)
{
	u32 pos, len, sub;
	u64 slice;
	u8 buf[8];
	int r;

	r = qw_refcount_slot(q, idx, &slice, &pos, &len, &sub);
	if (r == -ENOENT) {
		*rc = 0;
		return 0;
	}
	r = imgfmt_mcache_read(q->w->rb, slice, pos, buf, len, false);
	if (r)
		return qw_refuse(err, "cannot read a refcount block", r);
	*rc = qcow2_refcount_get(buf, sub, q->w->order);
	return 0;
}

static int qw_set_refcount(struct qcow2_image *q, u64 idx, u64 value,
			   const char **err);

/* Grow the refcount table so that it has entry bi (a new table). */
static int qw_grow_rt(struct qcow2_image *q, u64 bi, const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 want = w->rt_entries, n, top, off, i;
	u64 per_cluster = q->cluster_size / 8;
	u64 *rt;
	int r;

	/*
	 * Big enough for bi and for the blocks of the new table's own
	 * clusters and of a few more after them.
	 */
	for (;;) {
		while (want <= bi)
			want *= 2;
		n = DIV_ROUND_UP_ULL(want, per_cluster);
		/* Its blocks come after it: fewer than n + 8 of them. */
		top = (w->next_free >> q->cluster_bits) + 2 * n + 8;
		if ((top >> w->rb_bits) < want)
			break;
		want *= 2;
	}
	if (n * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
		return qw_refuse(err, "QCOW2 refcount table would exceed 8 MiB",
				 -ENOSPC);
	rt = imgfmt_zalloc_large(n * q->cluster_size);
	if (!rt)
		return qw_refuse(err, "cannot allocate the refcount table", -ENOMEM);
	r = qw_bump(q, (u32)n, &off, err);
	if (r) {
		imgfmt_free_large(rt);
		return r;
	}
	memcpy(rt, w->rt, (size_t)w->rt_entries * 8);
	if (!w->rt_moved) {
		w->old_rt_offset = w->rt_offset;
		w->old_rt_clusters = w->rt_clusters;
	}
	/*
	 * A table grown before the last one was ever written is garbage
	 * nothing on the device points at: its clusters are free at once.
	 */
	for (i = 0; w->rt_moved && i < w->rt_clusters; i++) {
		r = qw_set_refcount(q, (w->rt_offset >> q->cluster_bits) + i, 0,
				    err);
		if (r) {
			imgfmt_free_large(rt);
			return r;
		}
	}
	imgfmt_free_large(w->rt);
	w->rt = rt;
	w->rt_entries = (u32)(n * per_cluster);
	w->rt_offset = off;
	w->rt_clusters = (u32)n;
	w->rt_moved = true;
	w->rt_dirty_lo = 0;
	w->rt_dirty_hi = 0;
	for (i = 0; i < n; i++) {
		r = qw_set_refcount(q, (off >> q->cluster_bits) + i, 1, err);
		if (r)
			return r;
	}
	return 0;
}

/*
 * Make sure refcount block bi exists.  A new one goes at the image's end,
 * zeroed on the device first; it usually covers itself.
 */
static int qw_ensure_block(struct qcow2_image *q, u64 bi, const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 off;
	int r;

	if (bi >= w->rt_entries) {
		r = qw_grow_rt(q, bi, err);
		if (r)
			return r;
	}
	if (w->rt[bi] & QCOW2_RT_OFFSET_MASK)
		return 0;
	r = qw_bump(q, 1, &off, err);
	if (!r)
		r = qw_zero_clusters(q, off, 1, err);
	if (r)
		return r;
	w->rt[bi] = off;
	if (!w->rt_moved)
		qw_rt_dirty(w, (u32)bi);
	return qw_set_refcount(q, off >> q->cluster_bits, 1, err);
}

static int qw_set_refcount(struct qcow2_image *q, u64 idx, u64 value,
			   const char **err)
{
	struct qcow2_writer *w = q->w;
	u32 pos, len, sub;
	u64 slice;
	u8 buf[8];
	int r;

	r = qw_ensure_block(q, idx >> w->rb_bits, err);
	if (r)
		return r;
	r = qw_refcount_slot(q, idx, &slice, &pos, &len, &sub);
	if (r)
		return qw_refuse(err, "refcount block missing after allocation",
				 -EIO);
	r = imgfmt_mcache_read(w->rb, slice, pos, buf, len, false);
	if (!r) {
		qcow2_refcount_set(buf, sub, w->order, value);
		r = imgfmt_mcache_update(w->rb, slice, pos, buf, len, false);
	}
	if (r)
		return qw_refuse(err, "cannot update a refcount block", r);
	return 0;
}

/* A new cluster with refcount 1 at the image's end. */
static int qw_alloc_cluster(struct qcow2_image *q, u64 *off, const char **err)
{
	int r = qw_bump(q, 1, off, err);

	if (!r)
		r = qw_set_refcount(q, *off >> q->cluster_bits, 1, err);
	if (!r)
		q->w->allocations++;
	return r;
}

static void qw_punch_flush(struct qcow2_image *q, struct qw_punch *pu)
{
	imgfmt_dev_discard(q->img.dev, pu->off, pu->len);
	pu->len = 0;
}

static void qw_punch_add(struct qcow2_image *q, struct qw_punch *pu, u64 off,
			 u64 len)
{
	if (pu->len && pu->off + pu->len != off)
		qw_punch_flush(q, pu);
	if (!pu->len)
		pu->off = off;
	pu->len += len;
}

/*
 * Release the clusters [off, off + len) touches: one reference each.  No
 * table points at a cluster whose count reaches zero (frees wait for the
 * commit that drops the reference) and allocation never goes back to it,
 * so its space is handed back to the device at once.
 */
static int qw_release(struct qcow2_image *q, u64 off, u64 len,
		      struct qw_punch *pu, const char **err)
{
	u64 idx = off >> q->cluster_bits;
	u64 last = (off + len - 1) >> q->cluster_bits;
	u64 rc;
	int r;

	for (; idx <= last; idx++) {
		r = qw_get_refcount(q, idx, &rc, err);
		if (r)
			return r;
		if (!rc) {
			/* Already free: the image was inconsistent; keep going. */
			imgfmt_report_corruption("qcow2",
						 "released cluster has refcount 0",
						 idx << q->cluster_bits);
			continue;
		}
		r = qw_set_refcount(q, idx, rc - 1, err);
		if (r)
			return r;
		if (rc == 1)
			qw_punch_add(q, pu, idx << q->cluster_bits,
				     q->cluster_size);
	}
	return 0;
}

/*
 * Write entries [lo, hi) of a table kept in memory in CPU order (the L1
 * table, which map() reads alongside, or the refcount table), of n
 * entries in all, to its place on the device at off (cluster aligned).
 * Whole stage-sized pieces go down, so no write needs a bounce buffer or
 * memory of its own at commit: a piece never leaves the table's clusters
 * (the stage divides a cluster), and entries past n, in the padding of
 * the last cluster, are written as zeroes.
 */
static int qw_write_be64(struct qcow2_image *q, const u64 *table, u32 n,
			 u64 off, u32 lo, u32 hi)
{
	struct qcow2_writer *w = q->w;
	u32 per = w->stage_size / 8, i, c, last;
	__be64 *buf = w->stage;
	int r;

	if (lo >= hi)
		return 0;
	last = (hi - 1) / per;
	for (c = lo / per; c <= last; c++) {
		for (i = 0; i < per; i++) {
			u64 e = (u64)c * per + i;

			buf[i] = cpu_to_be64(e < n ? READ_ONCE(table[e]) : 0);
		}
		r = imgfmt_dev_write(q->img.dev, off + (u64)c * w->stage_size,
				     buf, w->stage_size);
		if (r)
			return r;
	}
	return 0;
}

static int qw_write_l1(struct qcow2_image *q, u32 lo, u32 hi)
{
	return qw_write_be64(q, q->l1, q->l1_size, q->w->l1_offset, lo, hi);
}

static int qw_write_rt(struct qcow2_image *q, u32 lo, u32 hi)
{
	return qw_write_be64(q, q->w->rt, q->w->rt_entries, q->w->rt_offset,
			     lo, hi);
}

/*
 * Point the header at the new refcount table: 12 bytes in sector 0,
 * rewritten with the rest of the header's first stage-sized piece (only
 * the writer writes the header).
 */
static int qw_write_header_rt(struct qcow2_image *q)
{
	struct qcow2_writer *w = q->w;
	struct {
		__be64 offset;
		__be32 clusters;
	} __packed f = {
		.offset = cpu_to_be64(w->rt_offset),
		.clusters = cpu_to_be32(w->rt_clusters),
	};
	int r;

	r = imgfmt_dev_read(q->img.dev, 0, w->stage, w->stage_size);
	if (r)
		return r;
	memcpy((u8 *)w->stage + offsetof(struct qcow2_header,
					 refcount_table_offset),
	       &f, sizeof(f));
	return imgfmt_dev_write(q->img.dev, 0, w->stage, w->stage_size);
}

/* The refcount side of a commit: blocks, flush, table. */
static int qw_commit_refcounts(struct qcow2_image *q, bool *flushed,
			       const char **err)
{
	struct qcow2_writer *w = q->w;
	struct imgfmt_dev *dev = q->img.dev;
	u32 written;
	int r;

	r = imgfmt_mcache_writeback(w->rb, &written);
	if (r)
		return qw_refuse(err, "cannot write refcount blocks", r);
	if (!written && !w->rt_moved && w->rt_dirty_lo == w->rt_dirty_hi)
		return 0;
	r = imgfmt_dev_flush(dev);
	if (r)
		return qw_refuse(err, "cannot flush the device", r);
	*flushed = true;
	if (w->rt_moved) {
		r = qw_write_rt(q, 0, w->rt_entries);
		if (!r)
			r = imgfmt_dev_flush(dev);
		if (!r)
			r = qw_write_header_rt(q);
		if (r)
			return qw_refuse(err, "cannot write the new refcount table", r);
		w->rt_moved = false;
		/* Free once this commit is durable, like any dropped cluster. */
		w->frees[w->nr_frees].off = w->old_rt_offset;
		w->frees[w->nr_frees].len = (u64)w->old_rt_clusters <<
					    q->cluster_bits;
		w->nr_frees++;
	} else if (w->rt_dirty_lo != w->rt_dirty_hi) {
		r = qw_write_rt(q, w->rt_dirty_lo, w->rt_dirty_hi);
		if (r)
			return qw_refuse(err, "cannot write the refcount table", r);
	} else {
		return 0;
	}
	w->rt_dirty_lo = 0;
	w->rt_dirty_hi = 0;
	r = imgfmt_dev_flush(dev);
	if (r)
		return qw_refuse(err, "cannot flush the device", r);
	return 0;
}

/* The mapping side: L2 tables, then the L1 table, each after a flush. */
static int qw_commit_tables(struct qcow2_image *q, bool flushed,
			    const char **err)
{
	struct qcow2_writer *w = q->w;
	struct imgfmt_dev *dev = q->img.dev;
	u32 written;
	int r;

	/* The data the tables point at goes first. */
	if (!flushed && imgfmt_mcache_dirty_bytes(q->img.mcache)) {
		r = imgfmt_dev_flush(dev);
		if (r)
			return qw_refuse(err, "cannot flush the device", r);
	}
	r = imgfmt_mcache_writeback(q->img.mcache, &written);
	if (r)
		return qw_refuse(err, "cannot write L2 tables", r);
	if (w->l1_dirty_lo != w->l1_dirty_hi) {
		r = imgfmt_dev_flush(dev);
		if (!r)
			r = qw_write_l1(q, w->l1_dirty_lo, w->l1_dirty_hi);
		if (r)
			return qw_refuse(err, "cannot write the L1 table", r);
		w->l1_dirty_lo = 0;
		w->l1_dirty_hi = 0;
	}
	return 0;
}

/*
 * The tables on the device no longer point at what the frees name: their
 * refcounts drop now, and reach the device at once, so that a commit
 * leaves nothing behind.
 */
static int qw_release_frees(struct qcow2_image *q, const char **err)
{
	struct qcow2_writer *w = q->w;
	u32 i, n = w->nr_frees, written;
	struct qw_punch pu = { 0, 0 };
	int r = 0;

	if (!n)
		return 0;
	w->nr_frees = 0;
	for (i = 0; i < n; i++) {
		r = qw_release(q, w->frees[i].off, w->frees[i].len, &pu, err);
		if (r)
			break;
	}
	qw_punch_flush(q, &pu);
	if (r)
		return r;
	r = imgfmt_mcache_writeback(w->rb, &written);
	if (r)
		return qw_refuse(err, "cannot write refcount blocks", r);
	r = imgfmt_dev_flush(q->img.dev);
	if (r)
		return qw_refuse(err, "cannot flush the device", r);
	return 0;
}

int imgfmt_qcow2_commit(struct imgfmt_image *img, const char **err)
{
	struct qcow2_image *q = to_q(img);
	bool flushed = false;
	int r;

	qw_punch_flush(q, &q->w->zero_punch);
	r = qw_commit_refcounts(q, &flushed, err);
	if (!r)
		r = qw_commit_tables(q, flushed, err);
	if (r)
		return r;
	r = imgfmt_dev_flush(q->img.dev);
	if (r)
		return qw_refuse(err, "cannot flush the device", r);
	q->w->commits++;
	return qw_release_frees(q, err);
}

/* Commit early when dirty metadata nears its bound or frees pile up. */
static int qw_make_room(struct qcow2_image *q, const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 dirty = imgfmt_mcache_dirty_bytes(q->img.mcache) +
		    imgfmt_mcache_dirty_bytes(w->rb);

	if (dirty < w->dirty_limit && w->nr_frees < QCOW2_MAX_PENDING_FREES - 2)
		return 0;
	return imgfmt_qcow2_commit(&q->img, err);
}

/* A new, zeroed L2 table for L1 entry i. */
static int qw_new_l2(struct qcow2_image *q, u32 i, u64 *l2_offset,
		     const char **err)
{
	u64 off;
	int r;

	r = qw_alloc_cluster(q, &off, err);
	if (!r)
		r = qw_zero_clusters(q, off, 1, err);
	if (r)
		return r;
	WRITE_ONCE(q->l1[i], off | QCOW2_L2E_COPIED);
	qw_l1_dirty(q->w, i);
	*l2_offset = off;
	return 0;
}

/* The L2 table for offset, made when there is none. */
static int qw_l2_for(struct qcow2_image *q, u64 offset, u64 *l2_offset,
		     const char **err)
{
	u64 l1_index = offset >> (q->cluster_bits + q->l2_bits);
	u64 l1e;

	if (l1_index >= q->l1_size)
		return qw_refuse(err, "offset beyond the L1 table", -EUCLEAN);
	l1e = READ_ONCE(q->l1[l1_index]);
	if (l1e & QCOW2_L1E_RESERVED)
		return qw_refuse(err, "L1 entry has reserved bits set", -EUCLEAN);
	*l2_offset = l1e & QCOW2_OFFSET_MASK;
	if (!*l2_offset)
		return qw_new_l2(q, (u32)l1_index, l2_offset, err);
	if (!(l1e & QCOW2_L2E_COPIED))
		return qw_refuse(err, "QCOW2 L2 table shared with a snapshot: not writable yet",
				 -EOPNOTSUPP);
	if (!IS_ALIGNED(*l2_offset, q->cluster_size) ||
	    !imgfmt_dev_has(q->img.dev, *l2_offset, q->cluster_size))
		return qw_refuse(err, "L2 table offset invalid", -EUCLEAN);
	return 0;
}

/* What an old entry held that the new one drops, if anything. */
static void qw_old_storage(struct qcow2_image *q, u64 entry,
			   struct imgfmt_wplan *p)
{
	u32 offset_bits = 62 - (q->cluster_bits - 8);
	u64 desc = entry & QCOW2_DESCRIPTOR_MASK, off;

	if (entry & QCOW2_L2E_COMPRESSED) {
		off = desc & ((1ULL << offset_bits) - 1);
		p->priv[QW_FREE_OFF] = off;
		p->priv[QW_FREE_LEN] = ((desc >> offset_bits) + 1) * 512 -
				       (off & 511);
		p->releases = true;
		return;
	}
	if (entry & QCOW2_OFFSET_MASK) {
		p->priv[QW_FREE_OFF] = entry & QCOW2_OFFSET_MASK;
		p->priv[QW_FREE_LEN] = q->cluster_size;
		p->releases = true;
	}
}

/*
 * A write into a new cluster: all of it (clusters without subclusters, or
 * whose old contents must move), or subclusters [sc0, sc1] of it.
 */
static int qw_plan_new(struct qcow2_image *q, u64 cstart, u64 entry,
		       u64 bitmap, u32 sc0, u32 sc1, struct imgfmt_wplan *p,
		       const char **err)
{
	u32 sc_bits = q->subcluster_bits;
	u64 host, run;
	int r;

	r = qw_alloc_cluster(q, &host, err);
	if (r)
		return r;
	p->host_zeroed = qw_fresh_zero(q, host, q->cluster_size);
	qw_old_storage(q, entry, p);
	p->priv[QW_ENTRY] = host | QCOW2_L2E_COPIED;
	if (!q->extended_l2 || (entry & (QCOW2_L2E_COMPRESSED |
					 QCOW2_OFFSET_MASK))) {
		p->vstart = cstart;
		p->vend = cstart + q->cluster_size;
		p->host = host;
		p->priv[QW_BITMAP] = q->extended_l2 ? 0xffffffffULL : 0;
		return 0;
	}
	run = GENMASK_ULL(sc1, sc0);
	p->vstart = cstart + ((u64)sc0 << sc_bits);
	p->vend = cstart + ((u64)(sc1 + 1) << sc_bits);
	p->host = host + ((u64)sc0 << sc_bits);
	p->priv[QW_BITMAP] = run | (bitmap & ~(run << 32) & ~0xffffffffULL);
	return 0;
}

/* Subclusters of an allocated cluster of ours (extended L2). */
static void qw_plan_subclusters(struct qcow2_image *q, u64 cstart, u64 host,
				u64 entry, u64 bitmap, u32 sc0, u32 sc1,
				struct imgfmt_wplan *p)
{
	u32 sc_bits = q->subcluster_bits, sc;
	bool alloc0 = bitmap & BIT_ULL(sc0);
	u64 run;

	/* The run of subclusters from sc0 that are alike. */
	for (sc = sc0 + 1; sc <= sc1; sc++)
		if (!!(bitmap & BIT_ULL(sc)) != alloc0)
			break;
	p->vstart = cstart + ((u64)sc0 << sc_bits);
	p->vend = cstart + ((u64)sc << sc_bits);
	p->host = host + ((u64)sc0 << sc_bits);
	if (alloc0) {
		p->in_place = true;
		return;
	}
	run = GENMASK_ULL(sc - 1, sc0);
	p->priv[QW_ENTRY] = entry;
	p->priv[QW_BITMAP] = (bitmap | run) & ~(run << 32);
}

/* The checks an entry passes before a write plans on it. */
static int qw_check_entry(struct qcow2_image *q, u64 entry, u64 bitmap,
			  const char **err)
{
	u64 host = entry & QCOW2_OFFSET_MASK;

	if (entry & QCOW2_L2E_COMPRESSED)
		return 0;
	if ((entry & QCOW2_L2E_RESERVED) ||
	    (q->extended_l2 && (entry & QCOW2_L2E_ZERO)))
		return qw_refuse(err, "L2 entry has reserved bits set", -EUCLEAN);
	if (host && !IS_ALIGNED(host, q->cluster_size))
		return qw_refuse(err, "data cluster offset not aligned to a cluster",
				 -EUCLEAN);
	if (host && (entry & QCOW2_L2E_COPIED) &&
	    !imgfmt_dev_has(q->img.dev, host, q->cluster_size))
		return qw_refuse(err, "data cluster beyond end of device", -EUCLEAN);
	if (!q->extended_l2)
		return 0;
	if ((bitmap >> 32) & bitmap & 0xffffffffULL)
		return qw_refuse(err, "subcluster both allocated and zero", -EUCLEAN);
	if (!host && (bitmap & 0xffffffffULL))
		return qw_refuse(err, "unallocated cluster with allocated subclusters",
				 -EUCLEAN);
	return 0;
}

/* Is the entry a cluster of this image's own (refcount 1), uncompressed? */
static bool qw_owns(u64 entry)
{
	return (entry & QCOW2_OFFSET_MASK) && (entry & QCOW2_L2E_COPIED) &&
	       !(entry & QCOW2_L2E_COMPRESSED);
}

static int qw_plan(struct qcow2_image *q, u64 offset, u64 len, u64 entry,
		   u64 bitmap, struct imgfmt_wplan *p, const char **err)
{
	u64 cstart = offset & ~((u64)q->cluster_size - 1);
	u64 host = entry & QCOW2_OFFSET_MASK;
	u32 sc_bits = q->subcluster_bits;
	u32 sc0 = (u32)((offset - cstart) >> sc_bits);
	u32 sc1 = (u32)((offset + len - 1 - cstart) >> sc_bits);
	bool mine = qw_owns(entry);

	if (!q->extended_l2) {
		if (!mine)
			return qw_plan_new(q, cstart, entry, 0, 0, 0, p, err);
		/* Ours: in place, or a preallocated zero cluster filled. */
		p->vstart = cstart;
		p->vend = cstart + q->cluster_size;
		p->host = host;
		if (!(entry & QCOW2_L2E_ZERO)) {
			p->in_place = true;
			return 0;
		}
		p->priv[QW_ENTRY] = host | QCOW2_L2E_COPIED;
		return 0;
	}
	if (mine) {
		qw_plan_subclusters(q, cstart, host, entry, bitmap, sc0, sc1, p);
		return 0;
	}
	return qw_plan_new(q, cstart, entry, bitmap, sc0, sc1, p, err);
}

/* Does subcluster sc (the cluster, without extended L2) read as zeroes? */
static bool qw_reads_zero(struct qcow2_image *q, u64 entry, u64 bitmap,
			  u32 sc)
{
	bool below = q->w->has_lower;

	if (entry & QCOW2_L2E_COMPRESSED)
		return false;
	if (!q->extended_l2)
		return (entry & QCOW2_L2E_ZERO) ||
		       (!(entry & QCOW2_OFFSET_MASK) && !below);
	if (bitmap & BIT_ULL(32 + sc))
		return true;
	return !(bitmap & BIT_ULL(sc)) && !below;
}

static bool qw_zero_range(struct imgfmt_wplan *p, u64 vstart, u64 vend)
{
	p->vstart = vstart;
	p->vend = vend;
	p->zeroed = true;
	return true;
}

/*
 * Zeroes over [offset, offset + len), inside one cluster, with no data
 * written: a plan from offset over what reads as zeroes already (no
 * change), or over whole units the entry can mark as zeroes.  A cluster
 * the image owns stays allocated, marked zero (its space is discarded on
 * the device, p->host): freed clusters are not reused yet, so freeing it
 * would let an image that is trimmed and rewritten grow without bound.
 * Compressed or shared storage is released.  False when only data can
 * do it: part of a unit, or a version 2 image (no zero flag) where the
 * cluster is owned or a layer lies below.
 */
static bool qw_plan_zero(struct qcow2_image *q, u64 offset, u64 len,
			 u64 entry, u64 bitmap, struct imgfmt_wplan *p)
{
	u64 cstart = offset & ~((u64)q->cluster_size - 1), run, nb;
	u64 host = entry & QCOW2_OFFSET_MASK;
	bool mine = qw_owns(entry);
	u32 sc_bits = q->subcluster_bits;
	u32 units = 1U << (q->cluster_bits - sc_bits);
	u32 sc0 = (u32)((offset - cstart) >> sc_bits), sc = sc0;
	u64 end = offset + len;

	while (sc < units && qw_reads_zero(q, entry, bitmap, sc))
		sc++;
	if (sc > sc0) {
		p->priv[QW_SLICE] = 0;	/* nothing to change */
		return qw_zero_range(p, offset, min(end, cstart + ((u64)sc << sc_bits)));
	}
	sc = (u32)((end - cstart) >> sc_bits);
	if (!IS_ALIGNED(offset, 1ULL << sc_bits) || sc == sc0)
		return false;
	if (!q->extended_l2) {
		if (q->version < 3 && (q->w->has_lower || mine))
			return false;
		if (mine) {
			p->host = host;
			p->priv[QW_ENTRY] = entry | QCOW2_L2E_ZERO;
		} else {
			qw_old_storage(q, entry, p);
			p->priv[QW_ENTRY] = q->w->has_lower ? QCOW2_L2E_ZERO : 0;
		}
		return qw_zero_range(p, offset, cstart + q->cluster_size);
	}
	if (entry & QCOW2_L2E_COMPRESSED) {
		if (sc0 || sc != units)
			return false;
		qw_old_storage(q, entry, p);
		p->priv[QW_ENTRY] = 0;
		p->priv[QW_BITMAP] = 0xffffffffULL << 32;
		return qw_zero_range(p, offset, cstart + q->cluster_size);
	}
	run = GENMASK_ULL(sc - 1, sc0);
	nb = (bitmap & ~run) | (run << 32);
	if (mine) {
		p->host = host + ((u64)sc0 << sc_bits);
	} else if (!(nb & 0xffffffffULL) && host) {
		/* A shared cluster no subcluster reads any more: released. */
		qw_old_storage(q, entry, p);
		entry = 0;
	}
	p->priv[QW_ENTRY] = entry;
	p->priv[QW_BITMAP] = nb;
	return qw_zero_range(p, offset, cstart + ((u64)sc << sc_bits));
}

/*
 * Zeroes where the L1 entry has no L2 table and nothing lies below: all
 * of [offset, offset + len) the missing table covers reads as zeroes.
 */
static bool qw_zero_without_l2(struct qcow2_image *q, u64 offset, u64 len,
			       struct imgfmt_wplan *p)
{
	u32 span_bits = q->cluster_bits + q->l2_bits;
	u64 l1_index = offset >> span_bits;

	if (q->w->has_lower || l1_index >= q->l1_size ||
	    READ_ONCE(q->l1[l1_index]))
		return false;
	return qw_zero_range(p, offset,
			     min(offset + len, (l1_index + 1) << span_bits));
}

int imgfmt_qcow2_prepare_write(struct imgfmt_image *img, u64 offset, u64 len,
			       unsigned int flags, struct imgfmt_wplan *p,
			       const char **err)
{
	struct qcow2_image *q = to_q(img);
	bool zeroes = flags & IMGFMT_WRITE_ZEROES;
	u32 entsize = q->extended_l2 ? 16 : 8;
	u64 cstart = offset & ~((u64)q->cluster_size - 1);
	u64 l2_offset, byte, e[2] = { 0, 0 };
	__be64 raw[2];
	u32 idx;
	int r;

	if (!zeroes)
		qw_punch_flush(q, &q->w->zero_punch);
	if (zeroes && qw_zero_without_l2(q, offset, len, p))
		return 0;
	len = min(len, cstart + q->cluster_size - offset);
	r = qw_make_room(q, err);
	if (!r)
		r = qw_l2_for(q, offset, &l2_offset, err);
	if (r)
		return r;
	idx = (u32)((offset >> q->cluster_bits) & ((1U << q->l2_bits) - 1));
	byte = (u64)idx * entsize;
	p->priv[QW_SLICE] = l2_offset + (byte & ~((u64)q->l2_slice_size - 1));
	p->priv[QW_POS] = byte & (q->l2_slice_size - 1);
	r = imgfmt_mcache_read(q->img.mcache, p->priv[QW_SLICE],
			       (u32)p->priv[QW_POS], raw, entsize, false);
	if (r)
		return qw_refuse(err, "cannot read L2 table", r);
	e[0] = be64_to_cpu(raw[0]);
	if (q->extended_l2)
		e[1] = be64_to_cpu(raw[1]);
	r = qw_check_entry(q, e[0], e[1], err);
	if (r)
		return r;
	if (zeroes && qw_plan_zero(q, offset, len, e[0], e[1], p))
		return 0;
	return qw_plan(q, offset, len, e[0], e[1], p, err);
}

int imgfmt_qcow2_finish_write(struct imgfmt_image *img,
			      const struct imgfmt_wplan *p, unsigned int flags,
			      const char **err)
{
	struct qcow2_image *q = to_q(img);
	struct qcow2_writer *w = q->w;
	bool nowait = flags & IMGFMT_FINISH_NOWAIT;
	u32 pos = (u32)p->priv[QW_POS], len = q->extended_l2 ? 16 : 8;
	__be64 raw[2] = {
		cpu_to_be64(p->priv[QW_ENTRY]),
		cpu_to_be64(p->priv[QW_BITMAP]),
	};
	int r;

	if (!p->priv[QW_SLICE])
		return 0;	/* zeroes where the range read zeroes already */
	/*
	 * qw_make_room() left a slot for one plan's free: the caller
	 * finishes such a plan before it prepares the next (releases).
	 */
	if (p->priv[QW_FREE_LEN] && w->nr_frees >= QCOW2_MAX_PENDING_FREES)
		return qw_refuse(err, "too many clusters waiting to be freed",
				 -EIO);
	if (p->zeroed && p->host) {
		/* Queuing its discard may send the queue, which blocks. */
		if (nowait)
			return -EWOULDBLOCK;
		/*
		 * An owned range marked zero keeps its space; what it held
		 * is discarded before any later write can fill it again.
		 * Were the entry's change lost in a crash, the range reads
		 * what the discard left there (its old data, or zeroes: a
		 * loop's hole).
		 */
		qw_punch_add(q, &w->zero_punch, p->host, p->vend - p->vstart);
	}
	if (nowait)
		r = imgfmt_mcache_update_cached(q->img.mcache,
						p->priv[QW_SLICE], pos, raw,
						len);
	else
		r = imgfmt_mcache_update(q->img.mcache, p->priv[QW_SLICE], pos,
					 raw, len, false);
	if (r == -EWOULDBLOCK)
		return r;
	if (r)
		return qw_refuse(err, "cannot update L2 table", r);
	if (p->priv[QW_FREE_LEN]) {
		w->frees[w->nr_frees].off = p->priv[QW_FREE_OFF];
		w->frees[w->nr_frees].len = p->priv[QW_FREE_LEN];
		w->nr_frees++;
	}
	return 0;
}

void imgfmt_qcow2_get_wstats(struct imgfmt_image *img,
			     struct imgfmt_wstats *st)
{
	struct qcow2_image *q = to_q(img);
	struct qcow2_writer *w = q->w;

	st->dirty_bytes = imgfmt_mcache_dirty_bytes(q->img.mcache) +
			  imgfmt_mcache_dirty_bytes(w->rb) +
			  (u64)(w->l1_dirty_hi - w->l1_dirty_lo) * 8 +
			  (u64)(w->rt_dirty_hi - w->rt_dirty_lo) * 8;
	st->image_end = w->next_free;
	st->commits = w->commits;
	st->allocations = w->allocations;
}

/* Read the refcount table and check every entry. */
static int qw_load_rt(struct qcow2_image *q, const struct qcow2_fields *f,
		      const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 bytes = (u64)f->reftable_clusters << f->cluster_bits, e;
	u32 i;
	int r;

	w->rt_entries = (u32)(bytes / 8);
	w->rt_offset = f->reftable_offset;
	w->rt_clusters = f->reftable_clusters;
	r = imgfmt_load_be64_table(q->img.dev, f->reftable_offset,
				   w->rt_entries, &w->rt);
	if (r)
		return qw_refuse(err, "cannot read the QCOW2 refcount table", r);
	for (i = 0; i < w->rt_entries; i++) {
		e = w->rt[i];
		if (e & ~QCOW2_RT_OFFSET_MASK)
			return qw_refuse(err, "QCOW2 refcount table entry has reserved bits set",
					 -EINVAL);
		if (e && (!IS_ALIGNED(e, q->cluster_size) ||
			  !imgfmt_dev_has(q->img.dev, e, q->cluster_size)))
			return qw_refuse(err, "QCOW2 refcount block offset invalid",
					 -EINVAL);
	}
	return 0;
}

/*
 * The image ends after its last cluster with a refcount: scan the blocks
 * from the last one back to its last used entry.
 */
static int qw_find_end(struct qcow2_image *q, const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 per_block = 1ULL << w->rb_bits, j, rc;
	u32 bi = w->rt_entries;
	int r;

	w->next_free = 0;
	while (bi--) {
		if (!w->rt[bi])
			continue;
		for (j = per_block; j--;) {
			r = qw_get_refcount(q, ((u64)bi << w->rb_bits) + j, &rc,
					    err);
			if (r)
				return r;
			if (rc) {
				w->next_free = (((u64)bi << w->rb_bits) + j + 1) <<
					       q->cluster_bits;
				return 0;
			}
		}
	}
	return qw_refuse(err, "QCOW2 image has no cluster with a refcount",
			 -EINVAL);
}

/*
 * Allocation starts at the image's end and zeroes the space after it: the
 * tables every write goes through must lie before it (they have refcounts
 * in any image qemu-img check accepts).
 */
static int qw_check_end(struct qcow2_image *q, const struct qcow2_fields *f,
			const char **err)
{
	struct qcow2_writer *w = q->w;
	u64 l1_end = f->l1_offset + (u64)q->l1_size * 8;
	u64 rt_end = w->rt_offset + ((u64)w->rt_clusters << q->cluster_bits);

	if (l1_end > w->next_free || rt_end > w->next_free)
		return qw_refuse(err, "QCOW2 table past the image end: run qemu-img check -r all",
				 -EUCLEAN);
	return 0;
}

/* What a writer cannot take yet, or must not: refused by name. */
static const char *qw_refusal(struct qcow2_image *q,
			      const struct imgfmt_open_args *args,
			      const struct qcow2_fields *f)
{
	if (f->incompatible & QCOW2_INCOMPAT_DIRTY)
		return "QCOW2 image is dirty: run qemu-img check -r all first";
	if (f->incompatible & QCOW2_INCOMPAT_CORRUPT)
		return "QCOW2 image is marked corrupt: run qemu-img check -r all first";
	if (args->snapshot)
		return "QCOW2 snapshots are read-only";
	if (f->nb_snapshots)
		return "QCOW2 writes to images with internal snapshots are not supported yet";
	if (q->data_dev)
		return "QCOW2 writes to images with a data file are not supported yet";
	if (f->autoclear & QCOW2_AUTOCLEAR_BITMAPS)
		return "QCOW2 writes to images with bitmaps are not supported yet";
	if (!args->dev->write || !args->dev->flush)
		return "image device is not writable";
	/*
	 * A block written whole must belong to one writer: no metadata
	 * block holds guest data (kport's read-modify-write), and no
	 * subcluster written alone shares a block with its neighbours.
	 */
	if ((1U << q->subcluster_bits) < max_t(u32, args->dev->write_align, 512))
		return "QCOW2 (sub)clusters smaller than a device block cannot be written";
	return NULL;
}

static int qw_check_writable(struct qcow2_image *q,
			     const struct imgfmt_open_args *args,
			     const struct qcow2_fields *f, const char **err)
{
	const char *why = qw_refusal(q, args, f);

	if (!why)
		return 0;
	*err = why;
	return -EOPNOTSUPP;
}

void imgfmt_qcow2_writer_close(struct qcow2_image *q)
{
	struct qcow2_writer *w = q->w;

	if (!w)
		return;
	imgfmt_mcache_destroy(w->rb);
	imgfmt_free_large(w->rt);
	imgfmt_free_large(w->zeroes);
	imgfmt_free_large(w->stage);
	kfree(w);
	q->w = NULL;
}

int imgfmt_qcow2_writer_open(struct qcow2_image *q,
			     const struct imgfmt_open_args *args,
			     const struct qcow2_fields *f, const char **err)
{
	struct imgfmt_mcache_stats st;
	struct qcow2_writer *w;
	int r;

	r = qw_check_writable(q, args, f, err);
	if (r)
		return r;
	w = kzalloc(sizeof(*w), GFP_KERNEL);
	if (!w)
		return qw_refuse(err, "cannot allocate the QCOW2 writer", -ENOMEM);
	q->w = w;
	w->order = f->refcount_order;
	w->has_lower = args->has_lower;
	w->rb_bits = f->cluster_bits + 3 - f->refcount_order;
	w->rb_slice = min_t(u32, q->cluster_size, QCOW2_RB_SLICE);
	w->l1_offset = f->l1_offset;
	w->zeroes = imgfmt_zalloc_large(QCOW2_ZERO_CHUNK);
	w->stage_size = min_t(u32, q->cluster_size, QCOW2_STAGE);
	w->stage = imgfmt_alloc_large(w->stage_size);
	w->rb = imgfmt_mcache_for(args->mgroup, args->dev, w->rb_slice,
				  args->cache_bytes / 4);
	if (!w->zeroes || !w->stage || !w->rb) {
		imgfmt_qcow2_writer_close(q);
		return qw_refuse(err, "cannot allocate the QCOW2 writer", -ENOMEM);
	}
	imgfmt_mcache_get_stats(q->img.mcache, &st);
	/* Half the cache may wait for a commit; the rest serves reads. */
	w->dirty_limit = max_t(u64, st.limit_bytes / 2,
			       4 * (u64)(q->l2_slice_size + w->rb_slice));
	r = qw_load_rt(q, f, err);
	if (!r)
		r = qw_find_end(q, err);
	if (!r)
		r = qw_check_end(q, f, err);
	if (r) {
		imgfmt_qcow2_writer_close(q);
		return r;
	}
	w->zeroed_from = w->next_free;
	w->zeroed_to = w->next_free;
	q->img.writable = true;
	return 0;
}

/*
 * A cluster for a write that map() sends down without the writer
 * (prepare_reserved): fresh at the image's end, where the device reads
 * zeroes, with refcount 1 so that nothing else takes it.  Until a table
 * points at it, a crash leaves it a leak.  Only where every unallocated
 * cluster reads zeroes and clusters have no subclusters.
 */
int imgfmt_qcow2_reserve(struct imgfmt_image *img, u64 *host,
			 const char **err)
{
	struct qcow2_image *q = to_q(img);
	int r;

	if (q->w->has_lower || q->extended_l2)
		return qw_refuse(err, "no reserved clusters with a layer below or subclusters",
				 -EOPNOTSUPP);
	r = qw_make_room(q, err);
	if (!r)
		r = qw_alloc_cluster(q, host, err);
	if (r)
		return r;
	if (qw_fresh_zero(q, *host, q->cluster_size))
		return 0;
	r = imgfmt_qcow2_unreserve(img, *host, err);
	return r ? r : qw_refuse(err, "the device cannot be made to read zeroes",
				 -EAGAIN);
}

/*
 * Give back a reserved cluster no write used, the last reserved first:
 * nothing ever pointed at it, so its refcount drops at once, and the
 * image's end with it.
 */
int imgfmt_qcow2_unreserve(struct imgfmt_image *img, u64 host,
			   const char **err)
{
	struct qcow2_image *q = to_q(img);
	struct qcow2_writer *w = q->w;
	int r;

	r = qw_set_refcount(q, host >> q->cluster_bits, 0, err);
	if (r)
		return r;
	w->allocations--;
	if (host + q->cluster_size == w->next_free)
		w->next_free = host;
	return 0;
}

/*
 * The plan of a write at offset into the reserved cluster host, made
 * without blocking or changing anything (map() calls this alongside the
 * writer, which leaves the cluster's L2 entry alone meanwhile): the whole
 * cluster, host_zeroed.  -EWOULDBLOCK unless the cluster is unallocated
 * or zero and its L2 table is there and cached.
 */
int imgfmt_qcow2_prepare_reserved(struct imgfmt_image *img, u64 offset,
				  u64 host, struct imgfmt_wplan *p)
{
	struct qcow2_image *q = to_q(img);
	u64 l1_index = offset >> (q->cluster_bits + q->l2_bits);
	u64 l1e, l2_offset, byte, slice, e;
	__be64 raw;

	if (q->extended_l2 || l1_index >= q->l1_size)
		return -EWOULDBLOCK;
	l1e = READ_ONCE(q->l1[l1_index]);
	l2_offset = l1e & QCOW2_OFFSET_MASK;
	if (!l2_offset || !(l1e & QCOW2_L2E_COPIED) ||
	    (l1e & QCOW2_L1E_RESERVED) || !IS_ALIGNED(l2_offset, q->cluster_size) ||
	    !imgfmt_dev_has(q->img.dev, l2_offset, q->cluster_size))
		return -EWOULDBLOCK;
	byte = ((offset >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1)) * 8;
	slice = l2_offset + (byte & ~((u64)q->l2_slice_size - 1));
	if (imgfmt_mcache_read(q->img.mcache, slice,
			       (u32)(byte & (q->l2_slice_size - 1)), &raw, 8,
			       true))
		return -EWOULDBLOCK;
	e = be64_to_cpu(raw);
	if (e && (e != QCOW2_L2E_ZERO || q->version < 3))
		return -EWOULDBLOCK;
	if (!e && q->w->has_lower)
		return -EWOULDBLOCK;
	p->vstart = offset & ~((u64)q->cluster_size - 1);
	p->vend = p->vstart + q->cluster_size;
	p->host = host;
	p->host_zeroed = true;
	p->priv[QW_ENTRY] = host | QCOW2_L2E_COPIED;
	p->priv[QW_SLICE] = slice;
	p->priv[QW_POS] = byte & (q->l2_slice_size - 1);
	return 0;
}
