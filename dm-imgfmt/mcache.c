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
 */
#include "mcache.h"

struct imgfmt_mtable {
	struct list_head lru;	/* in imgfmt_mcache.lru, newest first */
	struct list_head chain;	/* in a hash bucket */
	u64 off;
	u64 tag;
	/* Bytes of data that hold the table; copies past them fail. */
	u32 valid;
	void *data;
};

struct imgfmt_mcache {
	struct imgfmt_dev *dev;
	/* Guards everything below but the sizes fixed at creation. */
	spinlock_t lock;
	u32 table_size;
	unsigned int hash_bits;
	u64 limit_bytes;
	u64 bytes;
	u64 peak_bytes;
	u64 hits;
	u64 misses;
	struct list_head lru;
	struct list_head *buckets;
	struct imgfmt_mtable *spare;	/* NULL while in use */
};

#define MCACHE_MIN_HASH_BITS	4
#define MCACHE_MAX_HASH_BITS	16

static u64 mtable_cost(const struct imgfmt_mcache *mc)
{
	return mc->table_size + sizeof(struct imgfmt_mtable);
}

static unsigned int mcache_hash(const struct imgfmt_mcache *mc, u64 key)
{
	/* Keys are byte offsets: drop the low bits that rarely differ. */
	return (unsigned int)(((key >> 9) * 0x9E3779B97F4A7C15ULL) >>
			      (64 - mc->hash_bits));
}

static struct imgfmt_mtable *mtable_alloc(u32 table_size)
{
	struct imgfmt_mtable *t = kmalloc(sizeof(*t), GFP_NOIO);

	if (!t)
		return NULL;
	t->data = imgfmt_alloc_large(table_size);
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

struct imgfmt_mcache *imgfmt_mcache_create(struct imgfmt_dev *dev,
					   u32 table_size, u64 limit_bytes)
{
	struct imgfmt_mcache *mc;
	u64 nr_tables;
	unsigned int i;

	if (!table_size || table_size % 512)
		return NULL;
	mc = kzalloc(sizeof(*mc), GFP_KERNEL);
	if (!mc)
		return NULL;
	mc->dev = dev;
	mc->table_size = table_size;
	mc->limit_bytes = max_t(u64, limit_bytes, 2 * mtable_cost(mc));
	nr_tables = mc->limit_bytes / mtable_cost(mc);
	mc->hash_bits = MCACHE_MIN_HASH_BITS;
	while (mc->hash_bits < MCACHE_MAX_HASH_BITS &&
	       (1ULL << mc->hash_bits) < nr_tables)
		mc->hash_bits++;
	spin_lock_init(&mc->lock);
	INIT_LIST_HEAD(&mc->lru);
	mc->buckets = kcalloc(1U << mc->hash_bits, sizeof(*mc->buckets),
			      GFP_KERNEL);
	if (!mc->buckets)
		goto fail;
	for (i = 0; i < (1U << mc->hash_bits); i++)
		INIT_LIST_HEAD(&mc->buckets[i]);
	mc->spare = mtable_alloc(table_size);
	if (!mc->spare)
		goto fail;
	return mc;
fail:
	kfree(mc->buckets);
	kfree(mc);
	return NULL;
}

void imgfmt_mcache_destroy(struct imgfmt_mcache *mc)
{
	struct imgfmt_mtable *t, *n;

	if (!mc)
		return;
	list_for_each_entry_safe(t, n, &mc->lru, lru) {
		list_del(&t->lru);
		mtable_free(t);
	}
	mtable_free(mc->spare);
	kfree(mc->buckets);
#ifndef __KERNEL__
	spin_lock_destroy(&mc->lock);
#endif
	kfree(mc);
}

/* Caller holds mc->lock. */
static struct imgfmt_mtable *mcache_find(struct imgfmt_mcache *mc,
					 const struct imgfmt_mkey *k)
{
	struct imgfmt_mtable *t;

	list_for_each_entry(t, &mc->buckets[mcache_hash(mc, k->key)], chain)
		if (t->off == k->key && t->tag == k->tag)
			return t;
	return NULL;
}

/*
 * Caller holds mc->lock; t is in the cache.  Marks t most recently used;
 * -EIO when the copy reaches past the table's valid bytes.
 */
static int mcache_copy_out(struct imgfmt_mcache *mc, struct imgfmt_mtable *t,
			   u32 pos, void *out, u32 len)
{
	list_move(&t->lru, &mc->lru);
	if (pos > t->valid || len > t->valid - pos)
		return -EIO;
	if (len)
		memcpy(out, (u8 *)t->data + pos, len);
	return 0;
}

/* Caller holds mc->lock.  Unlinks and returns the least recently used. */
static struct imgfmt_mtable *mcache_evict_lru(struct imgfmt_mcache *mc)
{
	struct imgfmt_mtable *t;

	if (list_empty(&mc->lru))
		return NULL;
	t = list_last_entry(&mc->lru, struct imgfmt_mtable, lru);
	list_del(&t->lru);
	list_del(&t->chain);
	mc->bytes -= mtable_cost(mc);
	return t;
}

/*
 * Caller holds mc->lock.  Drops least recently used tables until there is
 * room for one more; they go to the spare slot or onto *victims for freeing
 * once the lock is dropped.
 */
static void mcache_make_room(struct imgfmt_mcache *mc,
			     struct list_head *victims)
{
	struct imgfmt_mtable *t;

	while (mc->bytes + mtable_cost(mc) > mc->limit_bytes) {
		t = mcache_evict_lru(mc);
		if (!t)
			break;
		if (!mc->spare)
			mc->spare = t;
		else
			list_add(&t->lru, victims);
	}
}

/*
 * A table to fill.  A full cache recycles its least recently used table:
 * allocating afresh would cost a page clearing per miss (init_on_alloc),
 * which make bench measured at a quarter of a sparse image's random reads.
 * Otherwise a new one, or when memory is short the spare or the LRU one.
 */
static struct imgfmt_mtable *mcache_get_free_table(struct imgfmt_mcache *mc)
{
	struct imgfmt_mtable *t = NULL;

	spin_lock(&mc->lock);
	if (mc->bytes + mtable_cost(mc) > mc->limit_bytes)
		t = mcache_evict_lru(mc);
	spin_unlock(&mc->lock);
	if (t)
		return t;
	t = mtable_alloc(mc->table_size);
	if (t)
		return t;
	spin_lock(&mc->lock);
	t = mc->spare;
	mc->spare = NULL;
	if (!t)
		t = mcache_evict_lru(mc);
	spin_unlock(&mc->lock);
	return t;
}

static int mcache_fill(struct imgfmt_mcache *mc, const struct imgfmt_mkey *k,
		       u32 pos, void *out, u32 len, imgfmt_mcache_fill_fn fill,
		       void *ctx)
{
	struct imgfmt_mtable *t, *v, *n, *cached;
	LIST_HEAD(victims);
	int r;

	t = mcache_get_free_table(mc);
	if (!t)
		return -ENOMEM;
	r = fill(ctx, k->key, t->data, mc->table_size);
	if (r > (int)mc->table_size)
		r = -EIO;
	spin_lock(&mc->lock);
	if (r < 0) {
		if (!mc->spare) {
			mc->spare = t;
			t = NULL;
		}
		spin_unlock(&mc->lock);
		mtable_free(t);
		return r;
	}
	mc->misses++;
	cached = mcache_find(mc, k);
	if (cached) {
		/* Filled by someone else meanwhile: keep theirs. */
		r = mcache_copy_out(mc, cached, pos, out, len);
		list_add(&t->lru, &victims);
	} else {
		mcache_make_room(mc, &victims);
		t->off = k->key;
		t->tag = k->tag;
		t->valid = r;
		list_add(&t->chain, &mc->buckets[mcache_hash(mc, k->key)]);
		list_add(&t->lru, &mc->lru);
		mc->bytes += mtable_cost(mc);
		if (mc->bytes > mc->peak_bytes)
			mc->peak_bytes = mc->bytes;
		r = mcache_copy_out(mc, t, pos, out, len);
	}
	if (!mc->spare && !list_empty(&victims)) {
		mc->spare = list_first_entry(&victims, struct imgfmt_mtable,
					     lru);
		list_del(&mc->spare->lru);
	}
	spin_unlock(&mc->lock);
	list_for_each_entry_safe(v, n, &victims, lru) {
		list_del(&v->lru);
		mtable_free(v);
	}
	return r;
}

/*
 * Copy out of a cached table: 0, -EWOULDBLOCK when it is not cached, or
 * -EIO past its valid bytes.
 */
static int mcache_lookup(struct imgfmt_mcache *mc, const struct imgfmt_mkey *k,
			 u32 pos, void *out, u32 len)
{
	struct imgfmt_mtable *t;
	int r = -EWOULDBLOCK;

	spin_lock(&mc->lock);
	t = mcache_find(mc, k);
	if (t) {
		mc->hits++;
		r = mcache_copy_out(mc, t, pos, out, len);
	}
	spin_unlock(&mc->lock);
	return r;
}

static int mcache_fill_from_device(void *ctx, u64 off, void *buf, u32 len)
{
	struct imgfmt_mcache *mc = ctx;
	int r = imgfmt_dev_read(mc->dev, off, buf, len);

	return r ? r : (int)len;
}

int imgfmt_mcache_read(struct imgfmt_mcache *mc, u64 table_off, u32 pos,
		       void *out, u32 len, bool nowait)
{
	struct imgfmt_mkey k = { .key = table_off };
	int r;

	if (pos > mc->table_size || len > mc->table_size - pos)
		return -EINVAL;
	if (table_off % 512 || table_off > mc->dev->size ||
	    mc->table_size > mc->dev->size - table_off)
		return -EIO;
	r = mcache_lookup(mc, &k, pos, out, len);
	if (r != -EWOULDBLOCK || nowait)
		return r;
	return mcache_fill(mc, &k, pos, out, len, mcache_fill_from_device, mc);
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

	spin_lock(&mc->lock);
	cached = mcache_find(mc, k);
	spin_unlock(&mc->lock);
	if (cached)
		return 0;
	r = mcache_fill(mc, k, 0, NULL, 0, fill, ctx);
	return r < 0 ? r : 1;
}

u32 imgfmt_mcache_table_size(const struct imgfmt_mcache *mc)
{
	return mc->table_size;
}

void imgfmt_mcache_get_stats(struct imgfmt_mcache *mc,
			     struct imgfmt_mcache_stats *st)
{
	spin_lock(&mc->lock);
	st->hits = mc->hits;
	st->misses = mc->misses;
	st->bytes = mc->bytes;
	st->peak_bytes = mc->peak_bytes;
	st->limit_bytes = mc->limit_bytes;
	st->table_size = mc->table_size;
	spin_unlock(&mc->lock);
}
