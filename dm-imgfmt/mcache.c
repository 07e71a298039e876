// SPDX-License-Identifier: GPL-2.0-only
/*
 * Bounded LRU cache of metadata tables, shared by the kernel target and the
 * userspace helper.
 *
 * Why not dm-bufio: bufio has one memory limit for all its clients, no
 * per-client bound or statistics, and on 6.1 every lookup (even
 * dm_bufio_get) takes the client's mutex.  Here each device gets an exact
 * byte bound (cache_size=), hit/miss/peak counters for `dmsetup status`, and
 * lookups that only take a spinlock for the time of a short memcpy, so the
 * same code also runs unchanged in userspace.
 *
 * Nobody holds a reference to a cached table: readers copy what they need
 * under the lock, so eviction can always free memory.  One spare table is
 * kept from creation on, so a fill that cannot allocate can still make
 * progress by recycling it.
 *
 * Writers change tables in place (imgfmt_mcache_update()): a changed table
 * is dirty, leaves the LRU for its cache's dirty list and stays until
 * imgfmt_mcache_writeback() writes it.  Nothing writes a dirty table
 * behind the writer's back, so the writer decides the order in which
 * metadata reaches the device; it also bounds how much is dirty.
 */
#include "mcache.h"

struct imgfmt_mtable {
	/*
	 * In imgfmt_mgroup.lru, newest first; dirty: in its cache's dirty.
	 * A hit only sets referenced; eviction gives a referenced table a
	 * second chance at the head (the CLOCK approximation of LRU), so
	 * that a hit costs no list surgery, which CONFIG_DEBUG_LIST makes
	 * two out-of-line checks.
	 */
	struct list_head lru;
	struct list_head chain;	/* in a hash bucket */
	struct imgfmt_mcache *mc;	/* whose table it is */
	u64 off;
	u64 tag;
	/* Bytes of data that hold the table; copies past them fail. */
	u32 valid;
	u32 size;		/* bytes allocated for data */
	bool dirty;
	bool referenced;	/* hit since it was last at the head */
	void *data;
};

/*
 * The budget, LRU order and hash of the caches that share them: one
 * group per device, so that cache_size bounds the tables of every layer
 * of a chain together and the least recently used table of any layer
 * makes room.
 */
struct imgfmt_mgroup {
	/* Guards everything below but the sizes fixed at creation. */
	spinlock_t lock;
	unsigned int hash_bits;
	u64 limit_bytes;
	u64 bytes;
	u64 peak_bytes;
	u64 dirty_bytes;	/* of bytes, what dirty tables hold */
	struct list_head lru;
	struct list_head *buckets;
	/* One table kept for progress when memory is short; NULL in use. */
	struct imgfmt_mtable *spare;
	u32 spare_size;		/* the largest table size of its caches */
	bool private;		/* made by imgfmt_mcache_create() */
};

struct imgfmt_mcache {
	struct imgfmt_dev *dev;
	struct imgfmt_mgroup *g;
	u32 table_size;
	/* Guarded by g->lock. */
	u64 hits;
	u64 misses;
	u64 bytes;
	u64 dirty_bytes;
	struct list_head dirty;	/* its dirty tables */
};

#define MCACHE_MIN_HASH_BITS	4
#define MCACHE_MAX_HASH_BITS	16
/* The smallest table a group sizes its hash for. */
#define MCACHE_MIN_TABLE_BYTES	512

static u64 mtable_cost(u32 size)
{
	return size + sizeof(struct imgfmt_mtable);
}

static unsigned int mcache_hash(const struct imgfmt_mcache *mc, u64 key)
{
	/* Keys are byte offsets: drop the low bits that rarely differ. */
	u64 h = ((key >> 9) ^ (u64)(uintptr_t)mc) * 0x9E3779B97F4A7C15ULL;

	return (unsigned int)(h >> (64 - mc->g->hash_bits));
}

static struct imgfmt_mtable *mtable_alloc(u32 size)
{
	struct imgfmt_mtable *t = kmalloc(sizeof(*t), GFP_NOIO);

	if (!t)
		return NULL;
	t->size = size;
	t->data = imgfmt_alloc_large(size);
	if (!t->data) {
		kfree(t);
		return NULL;
	}
	return t;
}

static void mtable_free(struct imgfmt_mtable *t)
{
	if (t) {
		imgfmt_free_large(t->data);
		kfree(t);
	}
}

struct imgfmt_mgroup *imgfmt_mgroup_create(u64 limit_bytes)
{
	struct imgfmt_mgroup *g;
	u64 nr_tables;
	unsigned int i;

	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g)
		return NULL;
	g->limit_bytes = limit_bytes;
	nr_tables = limit_bytes / mtable_cost(MCACHE_MIN_TABLE_BYTES);
	g->hash_bits = MCACHE_MIN_HASH_BITS;
	while (g->hash_bits < MCACHE_MAX_HASH_BITS &&
	       (1ULL << g->hash_bits) < nr_tables)
		g->hash_bits++;
	spin_lock_init(&g->lock);
	INIT_LIST_HEAD(&g->lru);
	g->buckets = kcalloc(1U << g->hash_bits, sizeof(*g->buckets),
			     GFP_KERNEL);
	if (!g->buckets) {
		kfree(g);
		return NULL;
	}
	for (i = 0; i < (1U << g->hash_bits); i++)
		INIT_LIST_HEAD(&g->buckets[i]);
	return g;
}

void imgfmt_mgroup_destroy(struct imgfmt_mgroup *g)
{
	if (!g)
		return;
	/* Its caches are gone, and with them every table in the LRU. */
	mtable_free(g->spare);
	kfree(g->buckets);
#ifndef __KERNEL__
	spin_lock_destroy(&g->lock);
#endif
	kfree(g);
}

void imgfmt_mgroup_reserve(struct imgfmt_mgroup *g, u64 bytes)
{
	spin_lock(&g->lock);
	g->limit_bytes = g->limit_bytes > bytes ? g->limit_bytes - bytes : 0;
	spin_unlock(&g->lock);
}

struct imgfmt_mcache *imgfmt_mcache_create_in(struct imgfmt_mgroup *g,
					      struct imgfmt_dev *dev,
					      u32 table_size)
{
	struct imgfmt_mtable *spare = NULL, *old = NULL;
	struct imgfmt_mcache *mc;

	if (!g || !table_size || table_size % 512)
		return NULL;
	mc = kzalloc(sizeof(*mc), GFP_KERNEL);
	if (!mc)
		return NULL;
	mc->dev = dev;
	mc->g = g;
	mc->table_size = table_size;
	INIT_LIST_HEAD(&mc->dirty);
	if (table_size > g->spare_size) {
		spare = mtable_alloc(table_size);
		if (!spare) {
			kfree(mc);
			return NULL;
		}
	}
	spin_lock(&g->lock);
	if (spare && table_size > g->spare_size) {
		old = g->spare;
		g->spare = spare;
		g->spare_size = table_size;
		spare = NULL;
	}
	spin_unlock(&g->lock);
	mtable_free(old);
	mtable_free(spare);
	return mc;
}

struct imgfmt_mcache *imgfmt_mcache_create(struct imgfmt_dev *dev,
					   u32 table_size, u64 limit_bytes)
{
	struct imgfmt_mgroup *g;
	struct imgfmt_mcache *mc;

	if (!table_size || table_size % 512)
		return NULL;
	g = imgfmt_mgroup_create(max_t(u64, limit_bytes,
				       2 * mtable_cost(table_size)));
	if (!g)
		return NULL;
	g->private = true;
	mc = imgfmt_mcache_create_in(g, dev, table_size);
	if (!mc)
		imgfmt_mgroup_destroy(g);
	return mc;
}

void imgfmt_mcache_destroy(struct imgfmt_mcache *mc)
{
	struct imgfmt_mtable *t, *n;
	struct imgfmt_mgroup *g;
	LIST_HEAD(victims);

	if (!mc)
		return;
	g = mc->g;
	spin_lock(&g->lock);
	list_for_each_entry_safe(t, n, &g->lru, lru) {
		if (t->mc != mc)
			continue;
		list_del(&t->chain);
		list_move(&t->lru, &victims);
		g->bytes -= mtable_cost(t->size);
	}
	/* Dirty tables not written back are dropped: the caller chose so. */
	list_for_each_entry_safe(t, n, &mc->dirty, lru) {
		list_del(&t->chain);
		list_move(&t->lru, &victims);
		g->bytes -= mtable_cost(t->size);
		g->dirty_bytes -= mtable_cost(t->size);
	}
	spin_unlock(&g->lock);
	list_for_each_entry_safe(t, n, &victims, lru) {
		list_del(&t->lru);
		mtable_free(t);
	}
	if (g->private)
		imgfmt_mgroup_destroy(g);
	kfree(mc);
}

/* Caller holds the group's lock. */
static __always_inline struct imgfmt_mtable *
mcache_find(struct imgfmt_mcache *mc, const struct imgfmt_mkey *k)
{
	struct imgfmt_mtable *t;

	list_for_each_entry(t, &mc->g->buckets[mcache_hash(mc, k->key)], chain)
		if (t->mc == mc && t->off == k->key && t->tag == k->tag)
			return t;
	return NULL;
}

/*
 * Caller holds the group's lock; t is in the cache.  -EIO when the copy
 * reaches past the table's valid bytes.
 */
static __always_inline int mcache_copy_out(struct imgfmt_mtable *t, u32 pos,
					   void *out, u32 len)
{
	if (pos > t->valid || len > t->valid - pos)
		return -EIO;
	/* A lone 64-bit entry, the usual copy, is one move, not a call. */
	if (len == 8)
		memcpy(out, (u8 *)t->data + pos, 8);
	else if (len)
		memcpy(out, (u8 *)t->data + pos, len);
	return 0;
}

/*
 * At most this many referenced tables go back to the head per eviction,
 * which bounds the time under the lock; then the oldest goes anyway.
 */
#define MCACHE_SECOND_CHANCES	64

/*
 * Caller holds g->lock.  Unlinks and returns the oldest table not used
 * since it last came to the head.
 */
static struct imgfmt_mtable *mgroup_evict_lru(struct imgfmt_mgroup *g)
{
	struct imgfmt_mtable *t;
	unsigned int chances = 0;

	if (list_empty(&g->lru))
		return NULL;
	for (;;) {
		t = list_last_entry(&g->lru, struct imgfmt_mtable, lru);
		if (!t->referenced || chances++ == MCACHE_SECOND_CHANCES)
			break;
		t->referenced = false;
		list_move(&t->lru, &g->lru);
	}
	list_del(&t->lru);
	list_del(&t->chain);
	g->bytes -= mtable_cost(t->size);
	t->mc->bytes -= mtable_cost(t->size);
	return t;
}

/* Caller holds g->lock.  Keep t as the spare if it can be one. */
static bool mgroup_keep_spare(struct imgfmt_mgroup *g, struct imgfmt_mtable *t)
{
	if (g->spare || t->size < g->spare_size)
		return false;
	g->spare = t;
	return true;
}

/*
 * Caller holds g->lock.  Drops least recently used tables until there is
 * room for one more of size bytes; they go to the spare slot or onto
 * *victims for freeing once the lock is dropped.
 */
static void mgroup_make_room(struct imgfmt_mgroup *g, u32 size,
			     struct list_head *victims)
{
	struct imgfmt_mtable *t;

	while (g->bytes + mtable_cost(size) > g->limit_bytes) {
		t = mgroup_evict_lru(g);
		if (!t)
			break;
		if (!mgroup_keep_spare(g, t))
			list_add(&t->lru, victims);
	}
}

/*
 * A table to fill.  A full cache recycles its least recently used table
 * when it is large enough: allocating afresh would cost a page clearing
 * per miss (init_on_alloc), which make bench measured at a quarter of a
 * sparse image's random reads.  Otherwise a new one, or when memory is
 * short the spare.
 */
static struct imgfmt_mtable *mcache_get_free_table(struct imgfmt_mcache *mc)
{
	struct imgfmt_mgroup *g = mc->g;
	struct imgfmt_mtable *t = NULL, *victim = NULL;

	spin_lock(&g->lock);
	if (g->bytes + mtable_cost(mc->table_size) > g->limit_bytes)
		t = mgroup_evict_lru(g);
	if (t && t->size != mc->table_size) {
		/* Another layer's size: it makes room, not a table. */
		if (!mgroup_keep_spare(g, t))
			victim = t;
		t = NULL;
	}
	spin_unlock(&g->lock);
	mtable_free(victim);
	if (t)
		return t;
	t = mtable_alloc(mc->table_size);
	if (t)
		return t;
	spin_lock(&g->lock);
	t = g->spare;
	g->spare = NULL;
	spin_unlock(&g->lock);
	return t;
}

/* Caller holds g->lock: t, filled for k with valid bytes, joins the cache. */
static void mcache_insert(struct imgfmt_mcache *mc, struct imgfmt_mtable *t,
			  const struct imgfmt_mkey *k, u32 valid,
			  struct list_head *victims)
{
	struct imgfmt_mgroup *g = mc->g;

	mgroup_make_room(g, t->size, victims);
	t->mc = mc;
	t->off = k->key;
	t->tag = k->tag;
	t->valid = valid;
	t->dirty = false;
	t->referenced = false;
	list_add(&t->chain, &g->buckets[mcache_hash(mc, k->key)]);
	list_add(&t->lru, &g->lru);
	g->bytes += mtable_cost(t->size);
	mc->bytes += mtable_cost(t->size);
	if (g->bytes > g->peak_bytes)
		g->peak_bytes = g->bytes;
}

static int mcache_fill(struct imgfmt_mcache *mc, const struct imgfmt_mkey *k,
		       u32 pos, void *out, u32 len, imgfmt_mcache_fill_fn fill,
		       void *ctx)
{
	struct imgfmt_mtable *t, *v, *n, *cached;
	struct imgfmt_mgroup *g = mc->g;
	LIST_HEAD(victims);
	int r;

	t = mcache_get_free_table(mc);
	if (!t)
		return -ENOMEM;
	r = fill(ctx, k->key, t->data, mc->table_size);
	if (r > (int)mc->table_size)
		r = -EIO;
	spin_lock(&g->lock);
	if (r < 0) {
		if (mgroup_keep_spare(g, t))
			t = NULL;
		spin_unlock(&g->lock);
		mtable_free(t);
		return r;
	}
	mc->misses++;
	cached = mcache_find(mc, k);
	if (cached) {
		/* Filled by someone else meanwhile: keep theirs, a hit. */
		cached->referenced = true;
		r = mcache_copy_out(cached, pos, out, len);
		list_add(&t->lru, &victims);
	} else {
		mcache_insert(mc, t, k, (u32)r, &victims);
		r = mcache_copy_out(t, pos, out, len);
	}
	list_for_each_entry_safe(v, n, &victims, lru) {
		if (mgroup_keep_spare(g, v))
			list_del(&v->lru);
	}
	spin_unlock(&g->lock);
	list_for_each_entry_safe(v, n, &victims, lru) {
		list_del(&v->lru);
		mtable_free(v);
	}
	return r;
}

/*
 * Copy out of a cached table: 0, -EWOULDBLOCK when it is not cached, or
 * -EIO past its valid bytes.  Inlined: this is every mapped read's path.
 */
static __always_inline int mcache_lookup(struct imgfmt_mcache *mc,
					 const struct imgfmt_mkey *k, u32 pos,
					 void *out, u32 len)
{
	struct imgfmt_mtable *t;
	int r = -EWOULDBLOCK;

	spin_lock(&mc->g->lock);
	t = mcache_find(mc, k);
	if (t) {
		mc->hits++;
		/*
		 * Only a hit marks a table used: a fill leaves it unmarked,
		 * or every table would come round once more before any
		 * went (FIFO).
		 */
		if (!t->referenced)
			t->referenced = true;
		r = mcache_copy_out(t, pos, out, len);
	}
	spin_unlock(&mc->g->lock);
	return r;
}

static int mcache_fill_from_device(void *ctx, u64 off, void *buf, u32 len)
{
	struct imgfmt_mcache *mc = ctx;
	int r = imgfmt_dev_read(mc->dev, off, buf, len);

	return r ? r : (int)len;
}

/* A copy of [pos, pos + len) of a table read from the device at table_off. */
static int mcache_check_device_table(struct imgfmt_mcache *mc, u64 table_off,
				     u32 pos, u32 len)
{
	if (pos > mc->table_size || len > mc->table_size - pos)
		return -EINVAL;
	if (table_off % 512 || table_off > mc->dev->size ||
	    mc->table_size > mc->dev->size - table_off)
		return -EIO;
	return 0;
}

/* A table read from the device: checked before it is read, not after. */
static int mcache_read_miss(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
			    void *out, u32 len, bool nowait)
{
	struct imgfmt_mkey k = { .key = table_off };
	int r;

	r = mcache_check_device_table(mc, table_off, pos, len);
	if (r)
		return r;
	if (nowait)
		return -EWOULDBLOCK;
	return mcache_fill(mc, &k, pos, out, len, mcache_fill_from_device, mc);
}

/*
 * A cached table passed the checks when it was read; a miss is checked
 * before it is read.  A copy past what the table holds is refused either
 * way.
 */
static __always_inline int mcache_read(struct imgfmt_mcache *mc,
				       u64 table_off, u32 pos, void *out,
				       u32 len, bool nowait)
{
	const struct imgfmt_mkey k = { .key = table_off };
	int r;

	r = mcache_lookup(mc, &k, pos, out, len);
	if (r != -EWOULDBLOCK)
		return r;
	return mcache_read_miss(mc, table_off, pos, out, len, nowait);
}

int imgfmt_mcache_read(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
		       void *out, u32 len, bool nowait)
{
	return mcache_read(mc, table_off, pos, out, len, nowait);
}

int imgfmt_mcache_entry(struct imgfmt_batch *b, struct imgfmt_mcache *mc,
			u64 table_off, u32 pos, u32 entsize, u32 span,
			bool nowait, const void **entry)
{
	u32 n;
	int r;

	if (!b->count || b->table_off != table_off || pos < b->first ||
	    pos - b->first + entsize > b->count) {
		if (pos > mc->table_size || entsize > mc->table_size - pos)
			return -EIO;
		n = min3(max(span, entsize), mc->table_size - pos,
			 (u32)IMGFMT_BATCH_BYTES);
		n -= n % entsize;
		r = mcache_read(mc, table_off, pos, b->raw, n, nowait);
		if (r)
			return r;
		b->table_off = table_off;
		b->first = pos;
		b->count = n;
	}
	*entry = (const u8 *)b->raw + (pos - b->first);
	return 0;
}

int imgfmt_mcache_read_fill(struct imgfmt_mcache *mc,
			    const struct imgfmt_mkey *k, u32 pos, void *out,
			    u32 len, imgfmt_mcache_fill_fn fill, void *ctx)
{
	int r;

	if (pos > mc->table_size || len > mc->table_size - pos)
		return -EINVAL;
	r = mcache_lookup(mc, k, pos, out, len);
	if (r != -EWOULDBLOCK)
		return r;
	return mcache_fill(mc, k, pos, out, len, fill, ctx);
}

int imgfmt_mcache_lookup(struct imgfmt_mcache *mc,
			 const struct imgfmt_mkey *k, u32 pos, void *out,
			 u32 len)
{
	if (pos > mc->table_size || len > mc->table_size - pos)
		return -EINVAL;
	return mcache_lookup(mc, k, pos, out, len);
}

int imgfmt_mcache_prefetch_fill(struct imgfmt_mcache *mc,
				const struct imgfmt_mkey *k,
				imgfmt_mcache_fill_fn fill, void *ctx)
{
	bool cached;
	int r;

	spin_lock(&mc->g->lock);
	cached = mcache_find(mc, k);
	spin_unlock(&mc->g->lock);
	if (cached)
		return 0;
	r = mcache_fill(mc, k, 0, NULL, 0, fill, ctx);
	return r < 0 ? r : 1;
}

/* Caller holds g->lock: t changed, and waits on the dirty list. */
static void mcache_mark_dirty(struct imgfmt_mcache *mc, struct imgfmt_mtable *t)
{
	if (t->dirty)
		return;
	t->dirty = true;
	list_move(&t->lru, &mc->dirty);
	mc->dirty_bytes += mtable_cost(t->size);
	mc->g->dirty_bytes += mtable_cost(t->size);
}

/* Caller holds g->lock: t is written, and evictable again. */
static void mcache_mark_clean(struct imgfmt_mcache *mc, struct imgfmt_mtable *t)
{
	t->dirty = false;
	list_move(&t->lru, &mc->g->lru);
	mc->dirty_bytes -= mtable_cost(t->size);
	mc->g->dirty_bytes -= mtable_cost(t->size);
}

/* Apply the change if the table is cached: true when it was. */
static bool mcache_try_update(struct imgfmt_mcache *mc,
			      const struct imgfmt_mkey *k, u32 pos,
			      const void *in, u32 len)
{
	struct imgfmt_mtable *t;

	spin_lock(&mc->g->lock);
	t = mcache_find(mc, k);
	if (t && pos <= t->valid && len <= t->valid - pos) {
		memcpy((u8 *)t->data + pos, in, len);
		mcache_mark_dirty(mc, t);
	} else {
		t = NULL;
	}
	spin_unlock(&mc->g->lock);
	return t;
}

static int mcache_fill_zeroes(void *ctx, u64 off, void *buf, u32 len)
{
	(void)ctx;
	(void)off;
	memset(buf, 0, len);
	return (int)len;
}

/* A table that a fill makes room for may go again before we change it. */
#define MCACHE_UPDATE_TRIES	8

int imgfmt_mcache_update(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
			 const void *in, u32 len, bool zeroed)
{
	struct imgfmt_mkey k = { .key = table_off };
	unsigned int i;
	int r;

	r = mcache_check_device_table(mc, table_off, pos, len);
	if (r)
		return r;
	for (i = 0; i < MCACHE_UPDATE_TRIES; i++) {
		if (mcache_try_update(mc, &k, pos, in, len))
			return 0;
		r = mcache_fill(mc, &k, 0, NULL, 0, zeroed ? mcache_fill_zeroes :
				mcache_fill_from_device, mc);
		if (r < 0)
			return r;
	}
	return -ENOMEM;
}

int imgfmt_mcache_update_cached(struct imgfmt_mcache *mc, u64 table_off,
				u32 pos, const void *in, u32 len)
{
	struct imgfmt_mkey k = { .key = table_off };
	int r;

	r = mcache_check_device_table(mc, table_off, pos, len);
	if (r)
		return r;
	return mcache_try_update(mc, &k, pos, in, len) ? 0 : -EWOULDBLOCK;
}

int imgfmt_mcache_writeback(struct imgfmt_mcache *mc, u32 *written)
{
	struct imgfmt_mgroup *g = mc->g;
	struct imgfmt_mtable *t;
	int r;

	*written = 0;
	for (;;) {
		spin_lock(&g->lock);
		t = list_first_entry_or_null(&mc->dirty, struct imgfmt_mtable,
					     lru);
		spin_unlock(&g->lock);
		if (!t)
			return 0;
		/*
		 * Off the LRU while dirty, so nobody frees it; and only the
		 * writer, which is here, changes it.
		 */
		r = imgfmt_dev_write(mc->dev, t->off, t->data, mc->table_size);
		if (r)
			return r;
		spin_lock(&g->lock);
		mcache_mark_clean(mc, t);
		spin_unlock(&g->lock);
		(*written)++;
	}
}

u64 imgfmt_mcache_dirty_bytes(struct imgfmt_mcache *mc)
{
	u64 bytes;

	spin_lock(&mc->g->lock);
	bytes = mc->dirty_bytes;
	spin_unlock(&mc->g->lock);
	return bytes;
}

void imgfmt_mcache_get_stats(struct imgfmt_mcache *mc,
			     struct imgfmt_mcache_stats *st)
{
	struct imgfmt_mgroup *g = mc->g;

	spin_lock(&g->lock);
	st->hits = mc->hits;
	st->misses = mc->misses;
	st->bytes = mc->bytes;
	st->peak_bytes = g->private ? g->peak_bytes : 0;
	st->limit_bytes = g->limit_bytes;
	st->dirty_bytes = mc->dirty_bytes;
	st->table_size = mc->table_size;
	spin_unlock(&g->lock);
}

void imgfmt_mgroup_get_stats(struct imgfmt_mgroup *g,
			     struct imgfmt_mcache_stats *st)
{
	spin_lock(&g->lock);
	st->bytes = g->bytes;
	st->peak_bytes = g->peak_bytes;
	st->limit_bytes = g->limit_bytes;
	st->dirty_bytes = g->dirty_bytes;
	spin_unlock(&g->lock);
}
