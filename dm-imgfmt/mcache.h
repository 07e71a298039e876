/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A bounded LRU cache of metadata tables (QCOW2 L2 tables, VMDK grain
 * tables), keyed by the table's byte offset on the image device.
 *
 * All tables of one cache have the same size.  Lookups copy the wanted bytes
 * out under a spinlock, so a caller never holds a reference to a table and
 * map() can use the cache without sleeping.  Misses are filled by a blocking
 * read from the worker (or from userspace).
 */
#ifndef IMGFMT_MCACHE_H
#define IMGFMT_MCACHE_H

#include "imgfmt_port.h"

struct imgfmt_mcache_stats {
	u64 hits;
	u64 misses;
	u64 bytes;		/* held now */
	u64 peak_bytes;
	u64 limit_bytes;
	u64 dirty_bytes;	/* of bytes, in tables not yet written back */
	u32 table_size;
};

struct imgfmt_mcache;
struct imgfmt_mgroup;

/*
 * A cache of its own, bounded by limit_bytes, which is raised to hold at
 * least two tables.  Returns NULL when memory is short or the arguments
 * make no sense.
 */
struct imgfmt_mcache *imgfmt_mcache_create(struct imgfmt_dev *dev,
					   u32 table_size, u64 limit_bytes);
void imgfmt_mcache_destroy(struct imgfmt_mcache *mc);

/*
 * A budget that several caches share (the layers of a chain): their
 * tables together stay within limit_bytes, or one table when a single
 * one is larger, and the least recently used table of any of them makes
 * room.  Destroy its caches before it.
 */
struct imgfmt_mgroup *imgfmt_mgroup_create(u64 limit_bytes);
void imgfmt_mgroup_destroy(struct imgfmt_mgroup *g);

/*
 * Take bytes out of g's bound for memory held outside its tables (the
 * chain's owner sets).  At 0 a cache still holds the one table a fill
 * made.
 */
void imgfmt_mgroup_reserve(struct imgfmt_mgroup *g, u64 bytes);

/* A cache whose tables of table_size bytes draw on g. */
struct imgfmt_mcache *imgfmt_mcache_create_in(struct imgfmt_mgroup *g,
					      struct imgfmt_dev *dev,
					      u32 table_size);

/* The cache of an image being opened: in args' group if it has one. */
static inline struct imgfmt_mcache *
imgfmt_mcache_for(struct imgfmt_mgroup *g, struct imgfmt_dev *dev,
		  u32 table_size, u64 limit_bytes)
{
	return g ? imgfmt_mcache_create_in(g, dev, table_size) :
		   imgfmt_mcache_create(dev, table_size, limit_bytes);
}

/*
 * Copy len bytes at byte pos of the table stored at device offset table_off
 * into out.  With nowait, a table not in the cache gives -EWOULDBLOCK;
 * otherwise it is read (blocking).  -EIO when the table lies outside the
 * device or the read fails, -ENOMEM when no memory can be had.
 */
int imgfmt_mcache_read(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
		       void *out, u32 len, bool nowait);

/*
 * Table entries copied out of the cache by one lookup of the formats (one
 * map() call), so that the lookups of neighbouring units share one copy
 * (and one lock).
 */
#define IMGFMT_BATCH_BYTES	128

struct imgfmt_batch {
	u64 table_off;		/* the cached table they come from */
	u32 first;		/* byte of that table raw[0] holds */
	u32 count;		/* bytes held; 0: none */
	u64 raw[IMGFMT_BATCH_BYTES / 8];	/* as on disk */
};

/*
 * Point *entry at the entsize bytes at byte pos of the table at table_off,
 * copying them (and up to span bytes from pos, as far as the table and the
 * batch go) into b unless b holds them already.  0, or what
 * imgfmt_mcache_read() returns.
 */
int imgfmt_mcache_entry(struct imgfmt_batch *b, struct imgfmt_mcache *mc,
			u64 table_off, u32 pos, u32 entsize, u32 span,
			bool nowait, const void **entry);

/*
 * Fill function for tables that are not plain device bytes (decompressed
 * clusters): fills up to len bytes for key into buf and returns how many
 * it filled (the table's valid prefix: a copy that reaches past it fails
 * with -EIO, as the read would have), or -errno.
 */
typedef int (*imgfmt_mcache_fill_fn)(void *ctx, u64 key, void *buf, u32 len);

/*
 * A table made by a fill function is named by a key and a tag, both any u64
 * the caller chooses: everything that decides the table's contents must be
 * in them, so that no lookup ever meets a table made from other inputs.
 * Tables read from the device (imgfmt_mcache_read) have tag 0.
 */
struct imgfmt_mkey {
	u64 key;
	u64 tag;
};

/*
 * Like imgfmt_mcache_read() without nowait, but a missing table is made by
 * fill.
 */
int imgfmt_mcache_read_fill(struct imgfmt_mcache *mc,
			    const struct imgfmt_mkey *k, u32 pos, void *out,
			    u32 len, imgfmt_mcache_fill_fn fill, void *ctx);

/*
 * Copy out of a cached table without ever filling it: 0, -EWOULDBLOCK when
 * it is not cached, -EIO past its valid prefix.  Never sleeps.
 */
int imgfmt_mcache_lookup(struct imgfmt_mcache *mc,
			 const struct imgfmt_mkey *k, u32 pos, void *out,
			 u32 len);

/*
 * Make sure the table is cached, filling it when it is not: 1 when it was
 * filled, 0 when it was cached already (and is left alone: not counted as a
 * hit, not moved in the LRU order), or -errno.
 */
int imgfmt_mcache_prefetch_fill(struct imgfmt_mcache *mc,
				const struct imgfmt_mkey *k,
				imgfmt_mcache_fill_fn fill, void *ctx);

/*
 * Writes.  One thread at a time changes a cache's tables and writes them
 * back (the format's writer); readers may run alongside.
 *
 * Replace len bytes at pos of the table at table_off, reading it first
 * when it is not cached (or, with zeroed, taking it as all zeroes: a new
 * table whose cluster the caller has zeroed on the device).  The table is
 * dirty until imgfmt_mcache_writeback() writes it; until then it is never
 * evicted.  0, -EIO (outside the device, or the read failed) or -ENOMEM.
 */
int imgfmt_mcache_update(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
			 const void *in, u32 len, bool zeroed);

/*
 * The same on a cached table only: -EWOULDBLOCK, with nothing changed,
 * when it is not cached.  Never sleeps.
 */
int imgfmt_mcache_update_cached(struct imgfmt_mcache *mc, u64 table_off,
				u32 pos, const void *in, u32 len);

/*
 * Write every dirty table of mc to its device (not flushed: the caller
 * orders), counting them in *written.  0, or the first write's error, with
 * the tables not yet written still dirty.
 */
int imgfmt_mcache_writeback(struct imgfmt_mcache *mc, u32 *written);

/* Bytes held by mc's dirty tables. */
u64 imgfmt_mcache_dirty_bytes(struct imgfmt_mcache *mc);

/*
 * Its hits, misses and bytes held; the bound and peak are its group's
 * (peak 0 for a cache in a shared group: see imgfmt_mgroup_get_stats()).
 */
void imgfmt_mcache_get_stats(struct imgfmt_mcache *mc,
			     struct imgfmt_mcache_stats *st);

/* The group's bytes, peak and limit (hits, misses, table size untouched). */
void imgfmt_mgroup_get_stats(struct imgfmt_mgroup *g,
			     struct imgfmt_mcache_stats *st);

#endif /* IMGFMT_MCACHE_H */
