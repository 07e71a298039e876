// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-imgfmt: a device-mapper target that presents a virtual machine disk
 * image (QCOW2, QCOW, VMDK) stored on a block device as a plain block device.
 *
 * The format code (formats/) tells where a virtual range lives; this file
 * moves bios.  map() never sleeps on I/O: when the metadata a bio needs is
 * cached it remaps or zero-fills the bio at once, otherwise it hands the bio
 * to a lane (below), a worker that reads the metadata and then submits the
 * bio in pieces.  Compressed clusters are decompressed in the lanes too.
 *
 * A read-write table (QCOW2 only so far) adds one writer: map() remaps a
 * write that lands where the image may be overwritten in place, and hands
 * every other write, every flush and every FUA write to the writer, a
 * single work item that prepares allocations, writes each planned range
 * whole (the bio's data over the range's current contents) and finishes
 * it, then commits once for all the flushes waiting.  One thread owns the
 * format's write side, so allocations never see each other half done.
 * A write whose data is all that its plan writes (a whole new cluster, or
 * new space that reads zeroes around the data) is not copied: the bio
 * itself goes down, remapped, and its plan finishes when it completes
 * (in the completing task when it can, else in the writer); until then
 * every bio touching its clusters waits in the writer.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>

#include "ccache.h"
#include "compat.h"
#include "imgfmt_format.h"
#include "kport.h"
#include "layers.h"
#include "mcache.h"

#define DM_MSG_PREFIX "imgfmt"

/*
 * Lanes: the workers, up to one per CPU, each a work item queued on a CPU
 * of its own (on an unbound workqueue they left CPUs idle: make bench's
 * parallel run had 56% idle samples and zlib clusters at 61 MiB/s, against
 * 85-91 MiB/s with a CPU per lane).
 *
 * Decompressing is CPU work that dwarfs the I/O.  Compressed cluster N
 * always goes to lane N % nr_lanes, whether a bio or the read-ahead asks
 * for it: two lanes never decompress the same cluster, and a bio that
 * wants a cluster the read-ahead is decompressing waits behind it in that
 * lane instead of doing the work twice.
 *
 * A bio whose metadata is not cached goes to the lane of its region of
 * 2^IMGFMT_REGION_SHIFT bytes, so that reads waiting for different tables
 * wait in parallel while those likely to need the same table queue behind
 * one read of it.  A lane serves bios before read-ahead.
 */
#define IMGFMT_REGION_SHIFT	25
#define IMGFMT_MAX_LANES	8
/* Read-ahead clusters a lane holds; a new one pushes out the oldest. */
#define IMGFMT_LANE_RA_SLOTS	8

static unsigned long long default_cache_size = IMGFMT_DEFAULT_CACHE_BYTES;
module_param(default_cache_size, ullong, 0644);
MODULE_PARM_DESC(default_cache_size,
		 "Metadata cache bound per device in bytes, when the table sets no cache_size");

static unsigned int decompress_lanes;
module_param(decompress_lanes, uint, 0644);
MODULE_PARM_DESC(decompress_lanes,
		 "Lanes (workers that read tables and decompress) per device, at table load (0: one per online CPU; at most 8)");

/*
 * dm-thin's default, and its meaning of 0: a write that finds the image
 * device full waits this long for it to grow; 0 waits until a suspend.
 */
static unsigned int no_space_timeout = 60;
module_param(no_space_timeout, uint, 0644);
MODULE_PARM_DESC(no_space_timeout,
		 "Seconds a write that finds the image device full waits for it to grow before it fails with ENOSPC (0: no limit; a suspend still ends the wait)");

/*
 * dm-thin commits about a second after a write: so long may dirty
 * metadata wait for a flush before the writer commits it anyway.
 */
static unsigned int commit_seconds = 1;
module_param(commit_seconds, uint, 0644);
MODULE_PARM_DESC(commit_seconds,
		 "Seconds after a write left metadata dirty before the writer commits it without a flush (at least 1)");

/* When the timed commit is due, from now. */
static unsigned long imgfmt_commit_delay(void)
{
	return max_t(unsigned long, READ_ONCE(commit_seconds), 1) * HZ;
}

static unsigned int lane_readahead = 2;
module_param(lane_readahead, uint, 0644);
MODULE_PARM_DESC(lane_readahead,
		 "Compressed clusters read ahead of a sequential reader per lane, when there are two lanes or more (0: none)");

/*
 * One workqueue for every device's lanes: a device costs memory, not
 * threads (a workqueue per device was a rescuer thread per device, 1000
 * threads for a 1000-extent VMDK).  Per-CPU, since each lane is queued on
 * a CPU of its own; WQ_MEM_RECLAIM, since the lanes serve I/O.
 */
static struct workqueue_struct *imgfmt_wq;

struct imgfmt_target {
	struct dm_target *ti;
	/* The image and the layers below it, and the table naming them. */
	struct imgfmt_layers ls;
	struct imgfmt_info info;	/* the top's */

	atomic64_t io_errors;
	atomic64_t deferred_bios;

	struct bio_set split_bs;
	bool split_bs_ready;

	struct imgfmt_lane *lanes;
	unsigned int nr_lanes;

	/*
	 * Sequential read-ahead of compressed clusters.  ra_expect is where
	 * the next read starts if the reader is sequential, ra_next the first
	 * cluster not yet queued ahead.
	 */
	spinlock_t ra_lock;
	u64 ra_expect;
	u64 ra_next;
	u32 ra_cluster_size;	/* 0: no read-ahead */
	u32 ra_window;		/* clusters */
	bool ra_stopped;	/* suspended: start no device I/O */
	atomic64_t prefetched;

	struct imgfmt_writer *w;	/* NULL for a read-only table */
};

/*
 * What a writer tells once, each with a log line and a dm event when it
 * begins (imgfmt_writer_raise), in imgfmt_writer.raised:
 * FAILED: a metadata write or flush failed, so what the device holds is
 *	not known to match memory; from then on writes and flushes fail and
 *	reads go on (dm-thin's and dm-clone's read-only mode).  For good.
 * FULL: a write that allocates found the device full: it waits (parked)
 *	for the device to grow, or fails with error_if_no_space.  Until
 *	resume.
 * NOSPC: the wait timed out: writes that find no room fail at once.
 *	Until resume.
 * LOW: the device's free space is below low_water.  Until it is not.
 */
enum {
	IMGFMT_W_FAILED,
	IMGFMT_W_FULL,
	IMGFMT_W_NOSPC,
	IMGFMT_W_LOW,
};

/* How the device is being suspended (from presuspend to resume). */
enum imgfmt_suspending {
	IMGFMT_RUNNING,
	IMGFMT_SUSPENDING,		/* writes must end: they fail */
	IMGFMT_SUSPENDING_NOFLUSH,	/* dm core may hold them: requeued */
};

/*
 * Spare clusters a writer keeps for map(): enough for the writes of one
 * queue between two of its passes at low depth; a full device takes them
 * back.
 */
#define IMGFMT_SPARES	8

/* The writer of a read-write table. */
struct imgfmt_writer {
	struct imgfmt_target *it;
	spinlock_t lock;	/* guards the lists, the flags below and wst */
	struct bio_list bios;		/* writes map() could not remap */
	struct bio_list flushes;	/* completed when the next commit is */
	/*
	 * Writes sent down whole, by the writer or by map() into a spare,
	 * until their plans are finished; and the bios of the writer's that
	 * wait on them.
	 */
	struct list_head inflight;	/* of struct imgfmt_wio */
	struct bio_list held;		/* the writer's own */
	u32 lock_size;			/* what one in flight holds: a cluster */
	/* The clusters of the write the writer works on: [busy_start, busy_end). */
	u64 busy_start;
	u64 busy_end;
	/*
	 * Spare clusters (imgfmt_reserve()) map() writes new clusters into;
	 * the writer keeps them coming, and gives back the newest first.
	 */
	u64 spares[IMGFMT_SPARES];	/* a ring: map() takes the oldest */
	unsigned int first_spare;
	unsigned int nr_spares;
	/* No spares: the image cannot have them, or the device was full. */
	bool no_spares;
	bool spares_paused;	/* until resume */
	/*
	 * A new cluster was taken since the last refill: only then do
	 * spares come, so that a device only overwritten never has dirty
	 * metadata (a commit that could fail) for their sake.
	 */
	bool spares_wanted;
	/* Writes sent down whole that completed; taken in interrupts too. */
	spinlock_t done_lock;
	struct bio_list done;
	/*
	 * Writes that found the device full, from where they stopped: not
	 * completed, so no flush waits for them, and they hold up nothing.
	 */
	struct bio_list parked;
	unsigned int nr_parked;
	bool commit_wanted;
	/*
	 * Writes the writer completed, and how many of them the last commit
	 * covered: when equal, a flush needs nothing of the writer.
	 */
	u64 acked;
	u64 committed;
	bool stopped;		/* suspended: no timed commits */
	/*
	 * A flush sent straight down failed (set in interrupt context):
	 * failed from now on, which the worker makes so and tells.
	 */
	bool flush_failed;
	enum imgfmt_suspending suspending;
	/* Look at the device's size before the next write (presuspend). */
	bool recheck_size;
	unsigned long raised;	/* IMGFMT_W_*, atomic bits */
	struct imgfmt_wstats wst;	/* as of the last pass or finish */
	/*
	 * Held by the writer's work for its whole pass, and by whoever else
	 * uses the format's write side: a write sent down whole whose
	 * completion finds it free finishes there (imgfmt_finish_here()).
	 */
	struct mutex pass_lock;
	struct work_struct work;
	/* Commits what writes left dirty, about a second later. */
	struct delayed_work timer;
	/* Ends the wait of the parked writes: no_space_timeout. */
	struct delayed_work no_space_timer;
	u8 *buf;		/* one cluster: a planned range is built here */
	u32 buf_size;
	struct imgfmt_decoder *dec;	/* for fills from compressed clusters */
	/* In imgfmt_writers while it holds its image device. */
	struct list_head node;
	dev_t devt;
};

/*
 * The per-bio data of a write sent down whole into new space: its plan
 * finishes when it completes.
 */
struct imgfmt_wio {
	struct imgfmt_writer *w;
	bio_end_io_t *end_io;		/* the bio's own, back before bio_endio */
	void *private;
	struct imgfmt_wplan plan;
	u64 lock_start;			/* virtual [start, end): whole clusters */
	u64 lock_end;
	struct list_head node;		/* in the writer's inflight */
};

/*
 * Every writer's image device: a second read-write table over the same
 * image (a reload while the first is live) would allocate the clusters
 * the first one does.
 */
static DEFINE_MUTEX(imgfmt_writers_lock);
static LIST_HEAD(imgfmt_writers);

struct imgfmt_lane {
	struct imgfmt_target *it;
	struct work_struct work;
	spinlock_t lock;	/* guards the bio lists and read-ahead ring */
	struct bio_list bios;		/* compressed, read-ahead done */
	struct bio_list deferred;	/* metadata not cached */
	u64 ra[IMGFMT_LANE_RA_SLOTS];	/* cluster offsets, oldest first */
	unsigned int ra_head;
	unsigned int ra_count;
	/* Used by the lane's work only; made on first use. */
	struct imgfmt_decoder *dec;
	/* Where the work runs; if it goes offline, anywhere (queue_work_on). */
	int cpu;
};

/* Count and log a read or write (op) that fails. */
static void imgfmt_count_error(struct imgfmt_target *it, const char *op,
			       const char *what, u64 offset)
{
	atomic64_inc(&it->io_errors);
	DMERR_LIMIT("%s: %s at virtual offset %llu failed: %s",
		    dm_device_name(dm_table_get_md(it->ti->table)), op, offset,
		    what);
}

/*
 * Where [offset, offset + len) lives: a single image asked directly (the
 * chain's extra call is 0.2% of a 4 KiB read), a chain through its
 * layers.
 */
static inline int imgfmt_target_map(struct imgfmt_target *it, u64 offset,
				    u64 len, unsigned int flags,
				    struct imgfmt_run *run, const char **err)
{
	if (it->ls.nr == 1)
		return imgfmt_map(it->ls.l[0].img, offset, len, flags, run,
				  err);
	return imgfmt_chain_map(it->ls.chain, offset, len, flags, run, err);
}

static u64 imgfmt_bio_offset(struct imgfmt_target *it, struct bio *bio)
{
	return (u64)dm_target_offset(it->ti, bio->bi_iter.bi_sector) <<
		SECTOR_SHIFT;
}

/* Where the bytes of a run come from when a worker copies them. */
typedef int (*imgfmt_fill_fn)(struct imgfmt_target *it,
			      struct imgfmt_lane *lane,
			      const struct imgfmt_run *run, u32 skip,
			      void *dst, u32 len);

static int imgfmt_fill_decompressed(struct imgfmt_target *it,
				    struct imgfmt_lane *lane,
				    const struct imgfmt_run *run, u32 skip,
				    void *dst, u32 len)
{
	struct imgfmt_ccache *cc = it->ls.l[run->layer].ccache;

	if (!cc)
		return -EIO;
	return imgfmt_ccache_read(cc, lane->dec, run, skip, dst, len);
}

static int imgfmt_fill_from_device(struct imgfmt_target *it,
				   struct imgfmt_lane *lane,
				   const struct imgfmt_run *run, u32 skip,
				   void *dst, u32 len)
{
	struct imgfmt_layer *l = &it->ls.l[run->layer];
	struct imgfmt_dev *dev = run->on_data_dev ? &l->kdata.dev : &l->kdev.dev;

	if (run->on_data_dev && !l->data)
		return -EIO;
	return imgfmt_dev_read(dev, run->dev_offset + skip, dst, len);
}

/*
 * Copy the run that piece covers into its pages, segment by segment; the
 * run's zeroed tail (past the virtual size) is zeroed instead.
 */
static blk_status_t imgfmt_copy_run(struct imgfmt_target *it,
				    struct imgfmt_lane *lane, struct bio *piece,
				    const struct imgfmt_run *run,
				    imgfmt_fill_fn fill, u64 offset)
{
	u64 data_end = run->length - run->tail_zero;
	struct bvec_iter iter;
	struct bio_vec bv;
	u32 skip = 0, n;
	void *p;
	int r = 0;

	bio_for_each_segment(bv, piece, iter) {
		n = skip < data_end ? min_t(u64, bv.bv_len, data_end - skip) : 0;
		p = bvec_kmap_local(&bv);
		if (n)
			r = fill(it, lane, run, skip, p, n);
		memset(p + n, 0, bv.bv_len - n);
		kunmap_local(p);
		if (r) {
			imgfmt_count_error(it, "read", "cannot read or decompress the cluster",
					   offset + skip);
			return BLK_STS_IOERR;
		}
		skip += bv.bv_len;
	}
	return BLK_STS_OK;
}

/*
 * A lane's decoder, made on its first compressed cluster, for the largest
 * clusters of any layer.
 */
static bool imgfmt_lane_ready(struct imgfmt_lane *lane)
{
	u32 cs = lane->it->ls.max_comp_cluster;

	if (cs && !lane->dec)
		WRITE_ONCE(lane->dec, imgfmt_decoder_create(cs));
	return lane->dec;
}

static struct imgfmt_lane *imgfmt_lane_of(struct imgfmt_target *it,
					  u64 cluster_offset, u32 cluster_size)
{
	u64 index = div_u64(cluster_offset, cluster_size ? cluster_size : 1);

	return &it->lanes[do_div(index, it->nr_lanes)];
}

/* Virtual offset of the cluster a COMPRESSED run at offset lies in. */
static u64 imgfmt_run_cluster(const struct imgfmt_run *run, u64 offset)
{
	return offset >= run->comp_skip ? offset - run->comp_skip : 0;
}

static void imgfmt_lane_queue_bio(struct imgfmt_target *it, struct bio *bio,
				  const struct imgfmt_run *run, u64 offset)
{
	struct imgfmt_lane *lane;

	lane = imgfmt_lane_of(it, imgfmt_run_cluster(run, offset),
			      run->comp_cluster_size);
	spin_lock(&lane->lock);
	bio_list_add(&lane->bios, bio);
	spin_unlock(&lane->lock);
	queue_work_on(lane->cpu, imgfmt_wq, &lane->work);
}

/*
 * Queue cluster_offset for read-ahead.  A full ring drops its oldest
 * cluster: the nearest to the reader, so the likeliest to have been read
 * meanwhile (a large read split into many clusters queues one read-ahead
 * cluster per piece, and only the last ones lie past its end).
 */
static void imgfmt_lane_queue_ra(struct imgfmt_target *it, u64 cluster_offset)
{
	struct imgfmt_lane *lane;

	lane = imgfmt_lane_of(it, cluster_offset, it->ra_cluster_size);
	spin_lock(&lane->lock);
	if (lane->ra_count == IMGFMT_LANE_RA_SLOTS) {
		lane->ra_head = (lane->ra_head + 1) % IMGFMT_LANE_RA_SLOTS;
		lane->ra_count--;
	}
	lane->ra[(lane->ra_head + lane->ra_count) % IMGFMT_LANE_RA_SLOTS] =
		cluster_offset;
	lane->ra_count++;
	spin_unlock(&lane->lock);
	queue_work_on(lane->cpu, imgfmt_wq, &lane->work);
}

/*
 * A compressed read of [offset, offset + len) in the run's cluster is on
 * its way.  When it continues the previous one, queue the clusters of the
 * window past it that are not queued yet, so that other lanes decompress
 * them while the reader works on this one.  Called from map(): no sleeping.
 */
static void imgfmt_readahead(struct imgfmt_target *it,
			     const struct imgfmt_run *run, u64 offset, u32 len)
{
	u64 end = offset + len, dev_end = (u64)it->ti->len << SECTOR_SHIFT;
	u64 cluster = imgfmt_run_cluster(run, offset), next, last;
	u32 cs;

	spin_lock(&it->ra_lock);
	cs = it->ra_cluster_size;
	/* Read-ahead maps whole clusters: their starts must be aligned. */
	if (!cs || cs != run->comp_cluster_size || it->ra_stopped ||
	    run->comp_skip > offset || do_div(cluster, cs))
		goto out;
	cluster = offset - run->comp_skip;
	if (offset != it->ra_expect) {
		/* Not sequential: start over from wherever this leads. */
		it->ra_expect = end;
		it->ra_next = 0;
		goto out;
	}
	it->ra_expect = end;
	last = cluster + (u64)it->ra_window * cs;
	next = max(it->ra_next, cluster + cs);
	for (; next <= last && next < dev_end; next += cs)
		imgfmt_lane_queue_ra(it, next);
	it->ra_next = next;
out:
	spin_unlock(&it->ra_lock);
}

/*
 * May a bio for [offset, offset + len) of a DATA run go to the image device
 * as it is?  Only whole logical blocks of the image device at aligned
 * places: a 4 KiB-sector device (losetup -b 4096) under an image with
 * 512-byte subclusters or grains at odd sectors would fail such a bio (on
 * 6.12) or serve it wrong.  Anything else is copied through a bounce read.
 */
static __always_inline bool imgfmt_remap_ok(struct imgfmt_target *it,
					    const struct imgfmt_run *run,
					    u64 offset, u64 len)
{
	const struct imgfmt_layer *l = &it->ls.l[run->layer];
	u64 mask;

	if (run->on_data_dev && !l->data)
		return false;
	mask = (run->on_data_dev ? l->data_lbs : l->lbs) - 1;
	return !run->tail_zero && !((offset | len | run->dev_offset) & mask);
}

/* The block device a remappable DATA run's bio goes to. */
static struct block_device *imgfmt_run_bdev(struct imgfmt_target *it,
					    const struct imgfmt_run *run)
{
	const struct imgfmt_layer *l = &it->ls.l[run->layer];

	return run->on_data_dev ? l->data->bdev : l->dev->bdev;
}

/*
 * Carry out one run that covers all of piece, from a lane.  Returns
 * without ending piece only when it was submitted or handed to the lane
 * of its compressed cluster.
 */
static void imgfmt_finish_piece(struct imgfmt_target *it,
				struct imgfmt_lane *lane, struct bio *clone,
				struct bio *piece, const struct imgfmt_run *run,
				u64 offset, bool readahead)
{
	if (run->tail_zero > run->length) {
		imgfmt_count_error(it, "read", "bad run from the format", offset);
		piece->bi_status = BLK_STS_IOERR;
		bio_endio(piece);
		return;
	}
	switch (run->kind) {
	case IMGFMT_RUN_DATA:
		if (!imgfmt_remap_ok(it, run, offset, piece->bi_iter.bi_size)) {
			piece->bi_status = imgfmt_copy_run(it, lane, piece,
							   run,
							   imgfmt_fill_from_device,
							   offset);
			bio_endio(piece);
			return;
		}
		bio_set_dev(piece, imgfmt_run_bdev(it, run));
		piece->bi_iter.bi_sector = run->dev_offset >> SECTOR_SHIFT;
		dm_submit_bio_remap(clone, piece == clone ? NULL : piece);
		return;
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		zero_fill_bio(piece);
		bio_endio(piece);
		return;
	case IMGFMT_RUN_COMPRESSED:
		if (readahead)
			imgfmt_readahead(it, run, offset,
					 piece->bi_iter.bi_size);
		if (lane != imgfmt_lane_of(it, imgfmt_run_cluster(run, offset),
					   run->comp_cluster_size)) {
			/* Not this lane's cluster: its own lane does it. */
			imgfmt_lane_queue_bio(it, piece, run, offset);
			return;
		}
		if (!imgfmt_lane_ready(lane)) {
			imgfmt_count_error(it, "read", "cannot allocate the decompression cache",
					   offset);
			piece->bi_status = BLK_STS_RESOURCE;
		} else {
			piece->bi_status = imgfmt_copy_run(it, lane, piece, run,
							   imgfmt_fill_decompressed,
							   offset);
		}
		bio_endio(piece);
		return;
	default:
		imgfmt_count_error(it, "read", "unknown run kind", offset);
		piece->bi_status = BLK_STS_IOERR;
		bio_endio(piece);
		return;
	}
}

/*
 * Map and submit a read in a lane, splitting it where its runs change.
 * readahead: map() did not see its compressed clusters (a metadata miss).
 */
static void imgfmt_process_bio(struct imgfmt_target *it,
			       struct imgfmt_lane *lane, struct bio *bio,
			       bool readahead)
{
	struct imgfmt_run run;
	struct bio *piece;
	const char *err = "metadata read failed";
	u64 offset;
	int r;

	for (;;) {
		offset = imgfmt_bio_offset(it, bio);
		r = imgfmt_target_map(it, offset, bio->bi_iter.bi_size, 0,
				      &run, &err);
		if (r) {
			imgfmt_count_error(it, "read", err, offset);
			bio->bi_status = r == -ENOMEM ? BLK_STS_RESOURCE :
							BLK_STS_IOERR;
			bio_endio(bio);
			return;
		}
		if (run.length >= bio->bi_iter.bi_size)
			break;
		piece = bio_split(bio, run.length >> SECTOR_SHIFT, GFP_NOIO,
				  &it->split_bs);
		bio_chain(piece, bio);
		imgfmt_finish_piece(it, lane, bio, piece, &run, offset,
				    readahead);
	}
	imgfmt_finish_piece(it, lane, bio, bio, &run, offset, readahead);
}

/*
 * Decompress one read-ahead cluster into the cache.  Failures are left to
 * the reader, who meets and reports them if it gets there.
 */
static void imgfmt_lane_prefetch(struct imgfmt_lane *lane, u64 cluster_offset)
{
	struct imgfmt_target *it = lane->it;
	u64 dev_end = (u64)it->ti->len << SECTOR_SHIFT;
	const char *err = NULL;
	struct imgfmt_run run;

	if (READ_ONCE(it->ra_stopped) || cluster_offset >= dev_end)
		return;
	if (imgfmt_target_map(it, cluster_offset,
			      min_t(u64, it->ra_cluster_size,
				    dev_end - cluster_offset),
			      0, &run, &err))
		return;
	if (run.kind != IMGFMT_RUN_COMPRESSED || run.comp_skip ||
	    !it->ls.l[run.layer].ccache || !imgfmt_lane_ready(lane))
		return;
	if (imgfmt_ccache_prefetch(it->ls.l[run.layer].ccache, lane->dec,
				   &run) > 0)
		atomic64_inc(&it->prefetched);
}

static void imgfmt_lane_work(struct work_struct *work)
{
	struct imgfmt_lane *lane = container_of(work, struct imgfmt_lane,
						work);
	struct imgfmt_target *it = lane->it;
	bool prefetch, deferred;
	struct blk_plug plug;
	unsigned int noio;
	struct bio *bio;
	u64 cluster = 0;

	/* Allocations here must not recurse into I/O to this device. */
	noio = memalloc_noio_save();
	blk_start_plug(&plug);
	for (;;) {
		prefetch = false;
		deferred = false;
		spin_lock(&lane->lock);
		bio = bio_list_pop(&lane->bios);
		if (!bio) {
			bio = bio_list_pop(&lane->deferred);
			deferred = true;
		}
		if (!bio && lane->ra_count) {
			cluster = lane->ra[lane->ra_head];
			lane->ra_head = (lane->ra_head + 1) %
					IMGFMT_LANE_RA_SLOTS;
			lane->ra_count--;
			prefetch = true;
		}
		spin_unlock(&lane->lock);
		if (bio)
			imgfmt_process_bio(it, lane, bio, deferred);
		else if (prefetch)
			imgfmt_lane_prefetch(lane, cluster);
		else
			break;
	}
	blk_finish_plug(&plug);
	memalloc_noio_restore(noio);
}

/* A read whose metadata is not cached: to the lane of its region. */
static void imgfmt_defer_bio(struct imgfmt_target *it, struct bio *bio,
			     u64 offset)
{
	u64 region = offset >> IMGFMT_REGION_SHIFT;
	struct imgfmt_lane *lane = &it->lanes[do_div(region, it->nr_lanes)];

	spin_lock(&lane->lock);
	bio_list_add(&lane->deferred, bio);
	spin_unlock(&lane->lock);
	atomic64_inc(&it->deferred_bios);
	queue_work_on(lane->cpu, imgfmt_wq, &lane->work);
}

/*
 * Serve a compressed read from clusters already decompressed (by the
 * read-ahead, or for an earlier piece of the cluster) without sleeping.
 * False when any of it is not cached: a lane then does the whole bio.
 */
static bool imgfmt_copy_cached(struct imgfmt_target *it, struct bio *bio,
			       const struct imgfmt_run *run)
{
	struct imgfmt_ccache *cc;
	struct bvec_iter iter;
	struct bio_vec bv;
	u32 skip = 0;
	void *p;
	int r;

	cc = it->ls.l[run->layer].ccache;
	if (!cc || run->tail_zero)
		return false;
	bio_for_each_segment(bv, bio, iter) {
		p = bvec_kmap_local(&bv);
		r = imgfmt_ccache_read_cached(cc, run, skip, p, bv.bv_len);
		kunmap_local(p);
		if (r)
			return false;
		skip += bv.bv_len;
	}
	return true;
}

static int imgfmt_map_write(struct imgfmt_target *it, struct bio *bio);

/* The writer: see the head of this file. */

static bool imgfmt_writer_broken(struct imgfmt_writer *w);

static bool imgfmt_writer_failed(struct imgfmt_writer *w)
{
	return test_bit(IMGFMT_W_FAILED, &w->raised);
}

/*
 * Set state bit (IMGFMT_W_*) of the writer; the first time, log what
 * (and detail, if any) and raise a dm event.  True that time.
 */
static bool imgfmt_writer_raise(struct imgfmt_target *it, unsigned int bit,
				const char *what, const char *detail)
{
	const char *name = dm_device_name(dm_table_get_md(it->ti->table));

	if (test_and_set_bit(bit, &it->w->raised))
		return false;
	if (bit == IMGFMT_W_FAILED)
		DMERR("%s: %s (%s)", name, what, detail);
	else if (bit == IMGFMT_W_LOW)
		DMINFO("%s: %s", name, what);
	else
		DMWARN("%s: %s", name, what);
	dm_table_event(it->ti->table);
	return true;
}

static void imgfmt_writer_fail(struct imgfmt_target *it, const char *what)
{
	imgfmt_writer_raise(it, IMGFMT_W_FAILED,
			    "metadata I/O failed: the device is read-only now",
			    what);
}

/*
 * At resume the top's device may have grown (lvextend, or a loop's
 * capacity set anew): allocate into the new space, with no reload.  The
 * writer is quiesced, or it is the caller (presuspend's look), so nothing
 * allocates meanwhile.  Never shrinks.
 */
static void imgfmt_writer_regrow(struct imgfmt_target *it)
{
	struct imgfmt_layer *top = &it->ls.l[0];
	struct block_device *bdev = top->dev->bdev;
	u64 size = round_down(bdev_nr_bytes(bdev),
			      bdev_logical_block_size(bdev));

	if (size > top->kdev.dev.size)
		WRITE_ONCE(top->kdev.dev.size, size);
}

static void imgfmt_writer_kick(struct imgfmt_target *it)
{
	queue_work(imgfmt_wq, &it->w->work);
}

/*
 * Tell once when the device's free space (past the image's end) falls
 * below low_water; again after it rose to it or above (the device grew).
 */
static void imgfmt_writer_low_water(struct imgfmt_target *it, u64 image_end)
{
	u64 size = READ_ONCE(it->ls.l[0].kdev.dev.size);
	u64 room = size > image_end ? size - image_end : 0;

	if (!it->ls.low_water_set)
		return;
	if (room >= it->ls.low_water)
		clear_bit(IMGFMT_W_LOW, &it->w->raised);
	else
		imgfmt_writer_raise(it, IMGFMT_W_LOW,
				    "free space on the image device is below low_water",
				    NULL);
}

/* The warning when the device is full, without and with error_if_no_space. */
static const char *const imgfmt_full_says[] = {
	"the image device is full: writes that allocate wait for it to grow and the device to be resumed",
	"the image device is full: writes that allocate fail with ENOSPC until it grows and the device is resumed",
};

/*
 * A write found no room for a new cluster.  While the device runs it
 * waits, parked, for the device to grow (up to no_space_timeout); with
 * error_if_no_space, after the wait timed out, and in a suspend that
 * must see every write end, it fails with ENOSPC; in a noflush suspend it
 * goes back to dm core, which sends it again after the resume.
 */
static void imgfmt_writer_no_room(struct imgfmt_target *it, struct bio *bio)
{
	unsigned long secs = READ_ONCE(no_space_timeout);
	struct imgfmt_writer *w = it->w;
	blk_status_t st = BLK_STS_NOSPC;
	u64 offset = imgfmt_bio_offset(it, bio);

	spin_lock(&w->lock);
	if (w->suspending == IMGFMT_SUSPENDING_NOFLUSH) {
		st = BLK_STS_DM_REQUEUE;
	} else if (w->suspending == IMGFMT_RUNNING &&
		   !it->ls.error_if_no_space &&
		   !test_bit(IMGFMT_W_NOSPC, &w->raised)) {
		if (bio_list_empty(&w->parked) && secs)
			queue_delayed_work(imgfmt_wq, &w->no_space_timer,
					   secs * HZ);
		bio_list_add(&w->parked, bio);
		w->nr_parked++;
		bio = NULL;
	}
	spin_unlock(&w->lock);
	imgfmt_writer_raise(it, IMGFMT_W_FULL,
			    imgfmt_full_says[it->ls.error_if_no_space], NULL);
	if (!bio)
		return;
	if (st == BLK_STS_NOSPC)
		imgfmt_count_error(it, "write", imgfmt_err_no_room, offset);
	bio->bi_status = st;
	bio_endio(bio);
}

/* The wait is over: the parked writes fail, and so will others, until resume. */
static void imgfmt_writer_no_space_timeout(struct work_struct *work)
{
	struct imgfmt_writer *w = container_of(to_delayed_work(work),
					       struct imgfmt_writer,
					       no_space_timer);
	struct imgfmt_target *it = w->it;
	struct bio_list bios;
	struct bio *bio;
	bool none;

	spin_lock(&w->lock);
	none = bio_list_empty(&w->parked);
	spin_unlock(&w->lock);
	if (none)
		return;
	/* Before the parked are taken: no write parks after them. */
	imgfmt_writer_raise(it, IMGFMT_W_NOSPC,
			    "the image device is still full: the waiting writes fail with ENOSPC, as will others until it grows and the device is resumed",
			    NULL);
	spin_lock(&w->lock);
	bios = w->parked;
	bio_list_init(&w->parked);
	w->nr_parked = 0;
	spin_unlock(&w->lock);
	while ((bio = bio_list_pop(&bios))) {
		imgfmt_count_error(it, "write", imgfmt_err_no_room,
				   imgfmt_bio_offset(it, bio));
		bio->bi_status = BLK_STS_NOSPC;
		bio_endio(bio);
	}
}

/* Copy len bytes at byte skip of bio's data to dst. */
static void imgfmt_bio_copy_out(struct bio *bio, u32 skip, u8 *dst, u32 len)
{
	struct bvec_iter iter;
	struct bio_vec bv;
	u32 at = 0, from, n;
	void *p;

	bio_for_each_segment(bv, bio, iter) {
		if (at + bv.bv_len > skip && at < skip + len) {
			from = skip > at ? skip - at : 0;
			n = min(bv.bv_len - from, skip + len - (at + from));
			p = bvec_kmap_local(&bv);
			memcpy(dst + (at + from - skip), p + from, n);
			kunmap_local(p);
		}
		at += bv.bv_len;
		if (at >= skip + len)
			break;
	}
}

/*
 * What [offset, offset + len) of the disk reads now, into buf: the fill
 * around a write into a new cluster (the layers below, compressed
 * clusters, zeroes).
 */
static int imgfmt_read_virtual(struct imgfmt_target *it, u64 offset, u8 *buf,
			       u64 len)
{
	struct imgfmt_layer *l;
	const char *err = NULL;
	struct imgfmt_run run;
	u64 n, data;
	int r;

	while (len) {
		r = imgfmt_target_map(it, offset, len, 0, &run, &err);
		if (r)
			return r;
		n = min(run.length, len);
		data = run.length - run.tail_zero;
		data = min(n, data);
		l = &it->ls.l[run.layer];
		switch (run.kind) {
		case IMGFMT_RUN_DATA:
			r = imgfmt_dev_read(run.on_data_dev ? &l->kdata.dev :
					    &l->kdev.dev, run.dev_offset, buf,
					    data);
			break;
		case IMGFMT_RUN_COMPRESSED:
			r = l->ccache && it->w->dec ?
			    imgfmt_ccache_read(l->ccache, it->w->dec, &run, 0,
					       buf, (u32)data) : -EIO;
			break;
		default:
			data = 0;
			break;
		}
		if (r)
			return r;
		memset(buf + data, 0, n - data);
		offset += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* Does all of [from, to) of the disk read as zeroes now? */
static bool imgfmt_reads_zero(struct imgfmt_target *it, u64 from, u64 to)
{
	const char *err = NULL;
	struct imgfmt_run run;

	while (from < to) {
		/* An error is for imgfmt_read_virtual() to report. */
		if (imgfmt_target_map(it, from, to - from, 0, &run, &err) ||
		    (run.kind != IMGFMT_RUN_ZERO &&
		     run.kind != IMGFMT_RUN_UNALLOCATED))
			return false;
		from += min(run.length, to - from);
	}
	return true;
}

static blk_status_t imgfmt_errno_status(int r)
{
	switch (r) {
	case 0:
		return BLK_STS_OK;
	case -ENOSPC:
		return BLK_STS_NOSPC;
	case -ENOMEM:
		return BLK_STS_RESOURCE;
	case -EOPNOTSUPP:
		return BLK_STS_NOTSUPP;
	default:
		return BLK_STS_IOERR;
	}
}

/* Discards and write-zeroes carry no data: they write zeroes. */
static bool imgfmt_bio_zeroes(struct bio *bio)
{
	return bio_op(bio) == REQ_OP_DISCARD ||
	       bio_op(bio) == REQ_OP_WRITE_ZEROES;
}

/* The bio's data at byte skip of it, or its zeroes, into dst. */
static void imgfmt_bio_data(struct bio *bio, u32 skip, u8 *dst, u32 len)
{
	if (imgfmt_bio_zeroes(bio))
		memset(dst, 0, len);
	else
		imgfmt_bio_copy_out(bio, skip, dst, len);
}

/*
 * The part [*ws, *we) of plan p's range that a write of [pos, end) into
 * it must write: all of it, less the fill where the new space reads
 * zeroes already and so does the disk (what is written over pos-end is
 * the bio's data, the rest what the range reads now).
 */
static void imgfmt_plan_span(struct imgfmt_target *it,
			     const struct imgfmt_wplan *p, u64 pos, u64 end,
			     u64 *ws, u64 *we)
{
	if (p->in_place) {
		*ws = pos;
		*we = end;
		return;
	}
	*ws = p->host_zeroed && imgfmt_reads_zero(it, p->vstart, pos) ?
	      pos : p->vstart;
	*we = p->host_zeroed && imgfmt_reads_zero(it, end, p->vend) ?
	      end : p->vend;
}

/*
 * Write [pos, end) of bio (virtual offsets; bio starts at start) by the
 * plan p: [ws, we) of its range (imgfmt_plan_span()), the bio's data over
 * what the range reads now.
 */
static int imgfmt_write_planned(struct imgfmt_target *it, struct bio *bio,
				u64 start, u64 pos, u64 end,
				const struct imgfmt_wplan *p, u64 ws, u64 we)
{
	struct imgfmt_writer *w = it->w;
	struct imgfmt_dev *dev = &it->ls.l[0].kdev.dev;
	u64 size = p->vend - p->vstart;
	int r;

	if (p->zeroed)
		return 0;
	if (size > w->buf_size)
		return -EIO;
	if (p->in_place) {
		imgfmt_bio_data(bio, pos - start, w->buf, end - pos);
		return imgfmt_dev_write(dev, p->host + (pos - p->vstart), w->buf,
					end - pos);
	}
	r = imgfmt_read_virtual(it, ws, w->buf + (ws - p->vstart), pos - ws);
	if (!r)
		r = imgfmt_read_virtual(it, end, w->buf + (end - p->vstart),
					we - end);
	if (r)
		return r;
	imgfmt_bio_data(bio, pos - start, w->buf + (pos - p->vstart),
			end - pos);
	return imgfmt_dev_write(dev, p->host + (ws - p->vstart),
				w->buf + (ws - p->vstart), we - ws);
}

/* Fail a write: how depends on what failed (see imgfmt_write_bio()). */
static void imgfmt_write_failed(struct imgfmt_target *it, int r, bool data_io,
				u64 pos, const char *err)
{
	/* Corruption, ENOSPC of the device or bad data I/O fail this write only. */
	if (!data_io && r != -EUCLEAN && r != -ENOSPC && r != -EOPNOTSUPP &&
	    r != -EINVAL)
		imgfmt_writer_fail(it, err);
	imgfmt_count_error(it, "write", err, pos);
}

/*
 * Finish the plan of a write sent down whole where the write completed,
 * when that is a task and the writer is not at work: that saves the
 * hand-off to the writer, the largest cost left of an allocating write
 * at low depth (5 of 40 us a 4 KiB write in the guest).  Only where
 * nothing can fail: the write succeeded, it is not FUA (which waits for a
 * commit), and its metadata is cached.  A loop device completes in its
 * worker when one CPU submits to it (a softirq finishes for several, or
 * an interrupt for disks: the writer does those).  Returns whether bio
 * has ended.
 */
static bool imgfmt_finish_here(struct imgfmt_writer *w, struct bio *bio,
			       struct imgfmt_wio *io)
{
	struct imgfmt_image *top = w->it->ls.l[0].img;
	const char *err = NULL;
	struct imgfmt_wstats st;
	bool kick;

	if (!in_task() || bio->bi_status || (bio->bi_opf & REQ_FUA) ||
	    !mutex_trylock(&w->pass_lock))
		return false;
	/* Under the lock: a commit that failed before leaves no doubt. */
	if (imgfmt_writer_broken(w) ||
	    imgfmt_finish_write(top, &io->plan, IMGFMT_FINISH_NOWAIT, &err)) {
		mutex_unlock(&w->pass_lock);
		return false;
	}
	imgfmt_get_wstats(top, &st);
	spin_lock(&w->lock);
	/* After the finish: map() must see the entry or the claim. */
	list_del(&io->node);
	w->acked++;
	w->wst = st;
	/* Those that waited for this write's cluster go again. */
	bio_list_merge_head(&w->bios, &w->held);
	kick = !bio_list_empty(&w->bios) ||
	       (w->nr_spares < IMGFMT_SPARES / 2 && !w->no_spares &&
		!w->spares_paused);
	if (st.dirty_bytes && !w->stopped)
		queue_delayed_work(imgfmt_wq, &w->timer, imgfmt_commit_delay());
	spin_unlock(&w->lock);
	bio_list_init(&w->held);
	mutex_unlock(&w->pass_lock);
	if (kick)
		queue_work(imgfmt_wq, &w->work);
	bio_endio(bio);
	return true;
}

static void imgfmt_direct_endio(struct bio *bio)
{
	struct imgfmt_wio *io = bio->bi_private;
	struct imgfmt_writer *w = io->w;
	unsigned long flags;

	bio->bi_end_io = io->end_io;
	bio->bi_private = io->private;
	if (imgfmt_finish_here(w, bio, io))
		return;
	spin_lock_irqsave(&w->done_lock, flags);
	bio_list_add(&w->done, bio);
	spin_unlock_irqrestore(&w->done_lock, flags);
	queue_work(imgfmt_wq, &w->work);
}

/*
 * Caller holds w->lock.  Does [start, end) touch a cluster a write in
 * flight holds, or (busy too) the write the writer works on?
 */
static bool imgfmt_write_claimed(struct imgfmt_writer *w, u64 start, u64 end,
				 bool busy)
{
	struct imgfmt_wio *io;

	start = round_down(start, w->lock_size);
	end = round_up(end, w->lock_size);
	if (busy && start < w->busy_end && w->busy_start < end)
		return true;
	list_for_each_entry(io, &w->inflight, node)
		if (start < io->lock_end && io->lock_start < end)
			return true;
	return false;
}

/*
 * Caller holds w->lock and has found p's clusters free of claims: bio
 * becomes a write sent down whole as the data of plan p, and holds them
 * until it completes and imgfmt_writer_reap() finishes p.
 */
static struct imgfmt_wio *imgfmt_wio_claim(struct imgfmt_writer *w,
					   struct bio *bio,
					   const struct imgfmt_wplan *p)
{
	struct imgfmt_wio *io = dm_per_bio_data(bio, sizeof(*io));

	io->w = w;
	io->plan = *p;
	io->lock_start = round_down(p->vstart, w->lock_size);
	io->lock_end = round_up(p->vend, w->lock_size);
	list_add_tail(&io->node, &w->inflight);
	return io;
}

/* Point claimed bio at dev_offset of the top's device, ending in io. */
static void imgfmt_wio_remap(struct imgfmt_target *it, struct bio *bio,
			     struct imgfmt_wio *io, u64 dev_offset)
{
	io->end_io = bio->bi_end_io;
	io->private = bio->bi_private;
	bio->bi_end_io = imgfmt_direct_endio;
	bio->bi_private = io;
	bio_set_dev(bio, it->ls.l[0].dev->bdev);
	bio->bi_iter.bi_sector = dev_offset >> SECTOR_SHIFT;
}

/*
 * Send bio, all of [start, end), down as the data of plan p if that is
 * all p writes: [ws, we) (imgfmt_plan_span()) is the bio's range.  The
 * writer's busy claim covers p's clusters.
 */
static bool imgfmt_write_direct(struct imgfmt_target *it, struct bio *bio,
				u64 start, u64 end,
				const struct imgfmt_wplan *p, u64 ws, u64 we)
{
	const struct imgfmt_layer *top = &it->ls.l[0];
	struct imgfmt_writer *w = it->w;
	u64 dev_offset = p->host + (start - p->vstart);
	struct imgfmt_wio *io;

	/*
	 * A plan that releases old storage is finished before the next is
	 * prepared: never one in flight.
	 */
	if (bio_op(bio) != REQ_OP_WRITE || p->in_place || p->zeroed ||
	    p->releases || ws != start || we != end ||
	    ((dev_offset | (end - start)) & (top->lbs - 1)))
		return false;
	spin_lock(&w->lock);
	io = imgfmt_wio_claim(w, bio, p);
	spin_unlock(&w->lock);
	imgfmt_wio_remap(it, bio, io, dev_offset);
	dm_submit_bio_remap(bio, NULL);
	return true;
}

/*
 * Claim bio's clusters for the writer, unless a write in flight holds
 * one: then bio waits (false).  imgfmt_writer_unbusy() ends the claim.
 */
static bool imgfmt_writer_busy(struct imgfmt_target *it, struct bio *bio)
{
	struct imgfmt_writer *w = it->w;
	u64 start = imgfmt_bio_offset(it, bio);
	u64 end = start + bio->bi_iter.bi_size;
	bool held;

	spin_lock(&w->lock);
	held = imgfmt_write_claimed(w, start, end, false);
	if (!held) {
		w->busy_start = round_down(start, w->lock_size);
		w->busy_end = round_up(end, w->lock_size);
	}
	spin_unlock(&w->lock);
	return !held;
}

static void imgfmt_writer_unbusy(struct imgfmt_writer *w)
{
	spin_lock(&w->lock);
	w->busy_start = 0;
	w->busy_end = 0;
	spin_unlock(&w->lock);
}

/* The write went down whole (imgfmt_write_direct()): not ours to end now. */
#define IMGFMT_WRITE_SENT	1
/* The device is full: what is left of the bio waits (imgfmt_write_bio()). */
#define IMGFMT_NO_ROOM		2

/*
 * One write bio, plan by plan: synchronously, or, when its first plan
 * writes nothing but its data, sent down whole (IMGFMT_WRITE_SENT).  A
 * discard or write-zeroes becomes zero flags where the format has them,
 * zeroes written where not: afterwards its range reads as zeroes, over a
 * layer below too.  Returns 0, -errno (logged), IMGFMT_WRITE_SENT or
 * IMGFMT_NO_ROOM: the device is full, and bio now holds only what is
 * still to be written (the rest is, in the image).
 */
static int imgfmt_write_bio(struct imgfmt_target *it, struct bio *bio)
{
	struct imgfmt_image *top = it->ls.l[0].img;
	u64 start = imgfmt_bio_offset(it, bio), pos = start;
	u64 end = start + bio->bi_iter.bi_size, piece_end, ws = 0, we = 0;
	unsigned int flags = imgfmt_bio_zeroes(bio) ? IMGFMT_WRITE_ZEROES : 0;
	const char *err = "write failed";
	struct imgfmt_wplan p;
	bool data_io = false;
	int r;

	while (pos < end) {
		r = imgfmt_prepare_write(top, pos, end - pos, flags, &p, &err);
		if (r)
			goto fail;
		piece_end = min(end, p.vend);
		if (!p.in_place && !p.zeroed)
			WRITE_ONCE(it->w->spares_wanted, true);
		if (!p.zeroed)
			imgfmt_plan_span(it, &p, pos, piece_end, &ws, &we);
		if (pos == start &&
		    imgfmt_write_direct(it, bio, start, end, &p, ws, we))
			return IMGFMT_WRITE_SENT;
		r = imgfmt_write_planned(it, bio, start, pos, piece_end, &p,
					 ws, we);
		if (r) {
			/* The new cluster, if any, is a leak: harmless. */
			err = "cannot write the data";
			data_io = true;
			goto fail;
		}
		r = imgfmt_finish_write(top, &p, 0, &err);
		if (r)
			goto fail;
		pos = piece_end;
	}
	return 0;
fail:
	if (r == -ENOSPC && err == imgfmt_err_no_room && !data_io) {
		/* Rewriting the part written would do no harm, only work. */
		if (pos > start)
			bio_advance(bio, pos - start);
		return IMGFMT_NO_ROOM;
	}
	imgfmt_write_failed(it, r, data_io, pos, err);
	return r;
}

/* A write is done: a FUA one is durable only with the metadata finding it. */
static void imgfmt_write_end(struct imgfmt_target *it, struct bio *bio, int r)
{
	struct imgfmt_writer *w = it->w;
	bool fua = !r && (bio->bi_opf & REQ_FUA);

	bio->bi_status = imgfmt_errno_status(r);
	spin_lock(&w->lock);
	if (!r)
		w->acked++;
	if (fua)
		bio_list_add(&w->flushes, bio);
	spin_unlock(&w->lock);
	if (!fua)
		bio_endio(bio);
}

/*
 * Finish the plans of writes sent down whole that completed, then let
 * the bios that waited for them try again.  A failed one leaves its new
 * cluster a leak.  Returns whether any completed.
 */
static bool imgfmt_writer_reap(struct imgfmt_target *it)
{
	struct imgfmt_image *top = it->ls.l[0].img;
	struct imgfmt_writer *w = it->w;
	const char *err = "write failed";
	struct imgfmt_wio *io;
	struct bio_list done;
	struct bio *bio;
	int r;

	spin_lock_irq(&w->done_lock);
	done = w->done;
	bio_list_init(&w->done);
	spin_unlock_irq(&w->done_lock);
	if (bio_list_empty(&done))
		return false;
	while ((bio = bio_list_pop(&done))) {
		io = dm_per_bio_data(bio, sizeof(*io));
		if (bio->bi_status) {
			r = blk_status_to_errno(bio->bi_status);
			imgfmt_write_failed(it, r, true, io->plan.vstart,
					    "cannot write the data");
		} else if (imgfmt_writer_failed(w)) {
			r = -EIO;
		} else {
			r = imgfmt_finish_write(top, &io->plan, 0, &err);
			if (r)
				imgfmt_write_failed(it, r, false,
						    io->plan.vstart, err);
		}
		/* After the finish: map() must see the entry or the claim. */
		spin_lock(&w->lock);
		list_del(&io->node);
		spin_unlock(&w->lock);
		imgfmt_write_end(it, bio, r);
	}
	spin_lock(&w->lock);
	bio_list_merge_head(&w->bios, &w->held);
	spin_unlock(&w->lock);
	bio_list_init(&w->held);
	return true;
}

/* Commit, then complete the flushes that waited for it. */
static void imgfmt_writer_commit(struct imgfmt_target *it,
				 struct bio_list *flushes)
{
	const char *err = "commit failed";
	blk_status_t st = BLK_STS_OK;
	struct imgfmt_wstats wst;
	struct bio *bio;
	u64 acked;
	int r;

	if (imgfmt_writer_failed(it->w)) {
		st = BLK_STS_IOERR;
	} else {
		/* Only the writer completes writes: none completes meanwhile. */
		acked = READ_ONCE(it->w->acked);
		r = imgfmt_commit(it->ls.l[0].img, &err);
		if (r) {
			imgfmt_writer_fail(it, err);
			st = BLK_STS_IOERR;
		} else {
			/* Status shows the commit before its flushes end. */
			imgfmt_get_wstats(it->ls.l[0].img, &wst);
			spin_lock(&it->w->lock);
			it->w->committed = acked;
			it->w->wst = wst;
			spin_unlock(&it->w->lock);
		}
	}
	while ((bio = bio_list_pop(flushes))) {
		if (!bio->bi_status)
			bio->bi_status = st;
		bio_endio(bio);
	}
}

/*
 * Keep the spares map() writes new clusters into (imgfmt_map_spare()):
 * not while suspended, failed or full, nor where the image or the device
 * cannot have them.
 */
static void imgfmt_writer_refill(struct imgfmt_target *it)
{
	struct imgfmt_writer *w = it->w;
	const char *err = NULL;
	bool stop;
	u64 host;
	int r;

	for (;;) {
		spin_lock(&w->lock);
		stop = w->nr_spares == IMGFMT_SPARES || w->no_spares ||
		       w->spares_paused || w->stopped || !w->spares_wanted ||
		       imgfmt_writer_broken(w);
		if (w->nr_spares == IMGFMT_SPARES)
			w->spares_wanted = false;
		spin_unlock(&w->lock);
		if (stop)
			return;
		r = imgfmt_reserve(it->ls.l[0].img, &host, &err);
		if (r == -ENOSPC || r == -EOPNOTSUPP || r == -EAGAIN ||
		    r == -EUCLEAN) {
			/* Full until resume; the others for good. */
			spin_lock(&w->lock);
			if (r == -ENOSPC)
				w->spares_paused = true;
			else
				w->no_spares = true;
			spin_unlock(&w->lock);
			return;
		}
		if (r) {
			imgfmt_writer_fail(it, err);
			return;
		}
		spin_lock(&w->lock);
		w->spares[(w->first_spare + w->nr_spares) % IMGFMT_SPARES] = host;
		w->nr_spares++;
		spin_unlock(&w->lock);
	}
}

/*
 * Give the spares back, the newest first (so the image's end goes back
 * too); with pause, take no more until resume.  Only where nothing else
 * allocates: the writer, or a quiesced one.  Returns how many.
 */
static unsigned int imgfmt_writer_drain(struct imgfmt_target *it, bool pause)
{
	struct imgfmt_writer *w = it->w;
	const char *err = NULL;
	unsigned int n = 0;
	u64 host;

	for (;;) {
		spin_lock(&w->lock);
		if (pause)
			w->spares_paused = true;
		if (!w->nr_spares) {
			spin_unlock(&w->lock);
			return n;
		}
		w->nr_spares--;
		host = w->spares[(w->first_spare + w->nr_spares) % IMGFMT_SPARES];
		spin_unlock(&w->lock);
		if (imgfmt_unreserve(it->ls.l[0].img, host, &err)) {
			/* The spare stays a leak. */
			imgfmt_writer_fail(it, err);
			continue;
		}
		n++;
	}
}

static void imgfmt_writer_work(struct work_struct *work)
{
	struct imgfmt_writer *w = container_of(work, struct imgfmt_writer,
					       work);
	struct imgfmt_target *it = w->it;
	struct bio_list flushes;
	struct imgfmt_wstats st;
	unsigned int noio;
	bool commit, recheck;
	struct bio *bio;
	int r;

	noio = memalloc_noio_save();
	mutex_lock(&w->pass_lock);
	if (READ_ONCE(w->flush_failed))
		imgfmt_writer_fail(it, "cannot flush the device");
	for (;;) {
		imgfmt_writer_reap(it);
		spin_lock(&w->lock);
		/* Failed, the device will never take them: they fail too. */
		if (imgfmt_writer_failed(w) && !bio_list_empty(&w->parked)) {
			bio_list_merge_head(&w->bios, &w->parked);
			bio_list_init(&w->parked);
			w->nr_parked = 0;
		}
		recheck = w->recheck_size;
		w->recheck_size = false;
		bio = bio_list_pop(&w->bios);
		commit = false;
		if (!bio) {
			flushes = w->flushes;
			bio_list_init(&w->flushes);
			commit = w->commit_wanted || !bio_list_empty(&flushes);
			w->commit_wanted = false;
		}
		spin_unlock(&w->lock);
		if (recheck)
			imgfmt_writer_regrow(it);
		if (!bio && !commit)
			break;
		if (commit) {
			/* New spares' refcounts go with this commit. */
			imgfmt_writer_refill(it);
			imgfmt_writer_commit(it, &flushes);
			continue;
		}
		if (!imgfmt_writer_busy(it, bio)) {
			bio_list_add(&w->held, bio);
			continue;
		}
		r = imgfmt_writer_failed(w) ? -EIO : imgfmt_write_bio(it, bio);
		imgfmt_writer_unbusy(w);
		if (r == IMGFMT_NO_ROOM && imgfmt_writer_drain(it, true)) {
			/* The spares were the room: once more, with them. */
			spin_lock(&w->lock);
			bio_list_add_head(&w->bios, bio);
			spin_unlock(&w->lock);
		} else if (r == IMGFMT_NO_ROOM) {
			imgfmt_writer_no_room(it, bio);
		} else if (r != IMGFMT_WRITE_SENT) {
			imgfmt_write_end(it, bio, r);
		}
	}
	imgfmt_writer_refill(it);
	imgfmt_get_wstats(it->ls.l[0].img, &st);
	spin_lock(&w->lock);
	w->wst = st;
	if (st.dirty_bytes && !w->stopped && !imgfmt_writer_failed(w))
		queue_delayed_work(imgfmt_wq, &w->timer, imgfmt_commit_delay());
	spin_unlock(&w->lock);
	mutex_unlock(&w->pass_lock);
	imgfmt_writer_low_water(it, st.image_end);
	memalloc_noio_restore(noio);
}

static void imgfmt_writer_timer(struct work_struct *work)
{
	struct imgfmt_writer *w = container_of(to_delayed_work(work),
					       struct imgfmt_writer, timer);

	spin_lock(&w->lock);
	w->commit_wanted = true;
	spin_unlock(&w->lock);
	queue_work(imgfmt_wq, &w->work);
}

static bool imgfmt_writer_broken(struct imgfmt_writer *w)
{
	return imgfmt_writer_failed(w) || READ_ONCE(w->flush_failed);
}

/*
 * Has the last commit covered every write the writer completed?  Then a
 * flush only has the device's caches to flush: it goes straight down.
 */
static bool imgfmt_writer_clean(struct imgfmt_writer *w)
{
	bool clean;

	spin_lock(&w->lock);
	clean = w->acked == w->committed && !imgfmt_writer_broken(w);
	spin_unlock(&w->lock);
	return clean;
}

static void imgfmt_writer_queue(struct imgfmt_target *it, struct bio *bio,
				bool flush)
{
	struct imgfmt_writer *w = it->w;

	spin_lock(&w->lock);
	bio_list_add(flush ? &w->flushes : &w->bios, bio);
	spin_unlock(&w->lock);
	imgfmt_writer_kick(it);
}

/*
 * A write into a new cluster sent down from map(), into the oldest spare:
 * when the top alone is read, the cluster unallocated or zero, its L2
 * table cached and no write or the writer working on it.  The part of
 * bio in that cluster goes down now; dm core sends the rest again.
 */
static bool imgfmt_map_spare(struct imgfmt_target *it, struct bio *bio,
			     u64 offset)
{
	const struct imgfmt_layer *top = &it->ls.l[0];
	struct imgfmt_writer *w = it->w;
	u64 end = offset + bio->bi_iter.bi_size;
	struct imgfmt_wio *io = NULL;
	struct imgfmt_wplan p;

	end = min(end, round_down(offset, w->lock_size) + w->lock_size);
	if (!READ_ONCE(w->nr_spares) || it->ls.nr > 1 ||
	    ((offset | end) & (it->ls.max_lbs - 1)))
		return false;
	spin_lock(&w->lock);
	if (w->nr_spares && !imgfmt_write_claimed(w, offset, end, true) &&
	    !imgfmt_prepare_reserved(top->img, offset, end - offset,
				     w->spares[w->first_spare], &p)) {
		w->first_spare = (w->first_spare + 1) % IMGFMT_SPARES;
		w->nr_spares--;
		w->spares_wanted = true;
		io = imgfmt_wio_claim(w, bio, &p);
	}
	spin_unlock(&w->lock);
	if (!io)
		return false;
	if (end - offset < bio->bi_iter.bi_size)
		dm_accept_partial_bio(bio, (end - offset) >> SECTOR_SHIFT);
	imgfmt_wio_remap(it, bio, io, p.host + (offset - p.vstart));
	return true;
}

/*
 * A write where the image holds a cluster of its own (refcount 1) goes
 * straight to it; anything else, and every flush or FUA write, to the
 * writer.  Never sleeps.
 */
static int imgfmt_map_write(struct imgfmt_target *it, struct bio *bio)
{
	const struct imgfmt_layer *top = &it->ls.l[0];
	u32 size = bio->bi_iter.bi_size;
	const char *err = NULL;
	struct imgfmt_run run __uninitialized;	/* map() fills it */
	u64 offset;
	int r;

	if (imgfmt_writer_broken(it->w))
		return DM_MAPIO_KILL;
	if (!size && op_is_flush(bio->bi_opf)) {
		if (imgfmt_writer_clean(it->w)) {
			bio_set_dev(bio, top->dev->bdev);
			return DM_MAPIO_REMAPPED;
		}
		imgfmt_writer_queue(it, bio, true);
		return DM_MAPIO_SUBMITTED;
	}
	if (imgfmt_bio_zeroes(bio))
		goto defer;
	if (bio_op(bio) != REQ_OP_WRITE)
		return DM_MAPIO_KILL;
	if (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH))
		goto defer;
	offset = imgfmt_bio_offset(it, bio);
	r = imgfmt_target_map(it, offset, size, IMGFMT_MAP_NOWAIT, &run, &err);
	if (!r && run.kind != IMGFMT_RUN_DATA &&
	    imgfmt_map_spare(it, bio, offset))
		return DM_MAPIO_REMAPPED;
	if (r || run.kind != IMGFMT_RUN_DATA || !run.in_place || run.layer ||
	    run.on_data_dev ||
	    ((offset | run.dev_offset | run.length) & (top->lbs - 1)))
		goto defer;
	if (run.length < size) {
		if (run.length & (it->ls.max_lbs - 1))
			goto defer;
		dm_accept_partial_bio(bio, run.length >> SECTOR_SHIFT);
	}
	bio_set_dev(bio, top->dev->bdev);
	bio->bi_iter.bi_sector = run.dev_offset >> SECTOR_SHIFT;
	return DM_MAPIO_REMAPPED;
defer:
	imgfmt_writer_queue(it, bio, false);
	return DM_MAPIO_SUBMITTED;
}

static int imgfmt_writer_claim(struct imgfmt_writer *w, dev_t devt,
			       char **error)
{
	struct imgfmt_writer *o;
	int r = 0;

	mutex_lock(&imgfmt_writers_lock);
	list_for_each_entry(o, &imgfmt_writers, node)
		if (o->devt == devt)
			r = -EBUSY;
	if (!r) {
		w->devt = devt;
		list_add(&w->node, &imgfmt_writers);
	}
	mutex_unlock(&imgfmt_writers_lock);
	if (r)
		*error = "image is open read-write by another imgfmt table already";
	return r;
}

static int imgfmt_init_writer(struct imgfmt_target *it, char **error)
{
	struct imgfmt_writer *w;

	if (!it->ls.writable)
		return 0;
	w = kzalloc(sizeof(*w), GFP_KERNEL);
	if (!w) {
		*error = "cannot allocate the writer";
		return -ENOMEM;
	}
	it->w = w;
	w->it = it;
	INIT_LIST_HEAD(&w->node);
	spin_lock_init(&w->lock);
	mutex_init(&w->pass_lock);
	bio_list_init(&w->bios);
	bio_list_init(&w->flushes);
	INIT_LIST_HEAD(&w->inflight);
	bio_list_init(&w->held);
	spin_lock_init(&w->done_lock);
	bio_list_init(&w->done);
	bio_list_init(&w->parked);
	INIT_WORK(&w->work, imgfmt_writer_work);
	INIT_DELAYED_WORK(&w->timer, imgfmt_writer_timer);
	INIT_DELAYED_WORK(&w->no_space_timer, imgfmt_writer_no_space_timeout);
	w->buf_size = it->ls.l[0].img->info.cluster_size;
	w->lock_size = w->buf_size;
	w->buf = kvmalloc(w->buf_size, GFP_KERNEL);
	if (it->ls.max_comp_cluster)
		w->dec = imgfmt_decoder_create(it->ls.max_comp_cluster);
	if (!w->buf || (it->ls.max_comp_cluster && !w->dec)) {
		*error = "cannot allocate the writer";
		return -ENOMEM;
	}
	imgfmt_get_wstats(it->ls.l[0].img, &w->wst);
	return imgfmt_writer_claim(w, it->ls.l[0].dev->bdev->bd_dev, error);
}

/*
 * Stop timed commits, let the writer finish what it has, and commit the
 * rest: at suspend (nothing is in flight then) and at unload.
 */
static void imgfmt_writer_quiesce(struct imgfmt_target *it)
{
	struct imgfmt_writer *w = it->w;
	struct bio_list none;
	unsigned int noio;

	if (!w)
		return;
	spin_lock(&w->lock);
	w->stopped = true;
	spin_unlock(&w->lock);
	cancel_delayed_work_sync(&w->timer);
	cancel_delayed_work_sync(&w->no_space_timer);
	flush_work(&w->work);
	cancel_delayed_work_sync(&w->timer);
	bio_list_init(&none);
	/* The device is suspended: no allocation may wait on its I/O. */
	noio = memalloc_noio_save();
	mutex_lock(&w->pass_lock);
	imgfmt_writer_drain(it, false);
	if (!imgfmt_writer_failed(w))
		imgfmt_writer_commit(it, &none);
	imgfmt_get_wstats(it->ls.l[0].img, &w->wst);
	mutex_unlock(&w->pass_lock);
	memalloc_noio_restore(noio);
}

static void imgfmt_exit_writer(struct imgfmt_target *it)
{
	struct imgfmt_writer *w = it->w;
	struct bio *bio;

	if (!w)
		return;
	if (w->buf && !list_empty(&w->node))
		imgfmt_writer_quiesce(it);
	/* dm suspends a table before it goes (presuspend emptied this). */
	while ((bio = bio_list_pop(&w->parked))) {
		bio->bi_status = BLK_STS_NOSPC;
		bio_endio(bio);
	}
	mutex_lock(&imgfmt_writers_lock);
	list_del_init(&w->node);
	mutex_unlock(&imgfmt_writers_lock);
	imgfmt_decoder_destroy(w->dec);
	kvfree(w->buf);
	mutex_destroy(&w->pass_lock);
	kfree(w);
	it->w = NULL;
}

static int imgfmt_dm_map(struct dm_target *ti, struct bio *bio)
{
	struct imgfmt_target *it = ti->private;
	u32 size = bio->bi_iter.bi_size;
	const char *err = NULL;
	struct imgfmt_run run __uninitialized;	/* map() fills it */
	u64 offset;
	int r;

	if (it->w && bio_op(bio) != REQ_OP_READ)
		return imgfmt_map_write(it, bio);
	if (bio_op(bio) != REQ_OP_READ) {
		/* An empty flush has nothing to order on a read-only image. */
		if (op_is_flush(bio->bi_opf) && !size) {
			bio_set_dev(bio, it->ls.l[0].dev->bdev);
			return DM_MAPIO_REMAPPED;
		}
		return DM_MAPIO_KILL;
	}
	if (!size) {
		bio_set_dev(bio, it->ls.l[0].dev->bdev);
		return DM_MAPIO_REMAPPED;
	}
	offset = imgfmt_bio_offset(it, bio);
	r = imgfmt_target_map(it, offset, size, IMGFMT_MAP_NOWAIT, &run, &err);
	if (r == -EWOULDBLOCK) {
		imgfmt_defer_bio(it, bio, offset);
		return DM_MAPIO_SUBMITTED;
	}
	if (r) {
		imgfmt_count_error(it, "read", err ? err : "mapping failed", offset);
		return DM_MAPIO_KILL;
	}
	if (run.length < size) {
		if (run.length & (it->ls.max_lbs - 1)) {
			/* dm would send the rest unaligned: a lane splits. */
			imgfmt_defer_bio(it, bio, offset);
			return DM_MAPIO_SUBMITTED;
		}
		dm_accept_partial_bio(bio, run.length >> SECTOR_SHIFT);
	}
	switch (run.kind) {
	case IMGFMT_RUN_DATA:
		if (!imgfmt_remap_ok(it, &run, offset, bio->bi_iter.bi_size)) {
			/* Copied: the last, partly zeroed sector, or unaligned. */
			imgfmt_defer_bio(it, bio, offset);
			return DM_MAPIO_SUBMITTED;
		}
		bio_set_dev(bio, imgfmt_run_bdev(it, &run));
		bio->bi_iter.bi_sector = run.dev_offset >> SECTOR_SHIFT;
		return DM_MAPIO_REMAPPED;
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		zero_fill_bio(bio);
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	case IMGFMT_RUN_COMPRESSED:
		imgfmt_readahead(it, &run, offset, bio->bi_iter.bi_size);
		if (imgfmt_copy_cached(it, bio, &run)) {
			bio_endio(bio);
			return DM_MAPIO_SUBMITTED;
		}
		/* Decompression may sleep: a lane does it. */
		atomic64_inc(&it->deferred_bios);
		imgfmt_lane_queue_bio(it, bio, &run, offset);
		return DM_MAPIO_SUBMITTED;
	default:
		imgfmt_count_error(it, "read", "unknown run kind", offset);
		return DM_MAPIO_KILL;
	}
}

static int imgfmt_check_geometry(struct imgfmt_target *it, char **error)
{
	struct dm_target *ti = it->ti;

	if (ti->len > DIV_ROUND_UP_ULL(it->info.virtual_size, SECTOR_SIZE)) {
		*error = "table length exceeds the image's virtual size";
		return -EINVAL;
	}
	return 0;
}

static int imgfmt_init_lanes(struct imgfmt_target *it, char **error)
{
	struct imgfmt_lane *lane;
	unsigned int i;

	spin_lock_init(&it->ra_lock);
	atomic64_set(&it->prefetched, 0);
	it->nr_lanes = READ_ONCE(decompress_lanes);
	if (!it->nr_lanes)
		it->nr_lanes = num_online_cpus();
	it->nr_lanes = clamp_t(unsigned int, it->nr_lanes, 1, IMGFMT_MAX_LANES);
	it->lanes = kcalloc(it->nr_lanes, sizeof(*it->lanes), GFP_KERNEL);
	if (!it->lanes) {
		*error = "cannot allocate the decompression lanes";
		return -ENOMEM;
	}
	for (i = 0; i < it->nr_lanes; i++) {
		lane = &it->lanes[i];
		lane->it = it;
		INIT_WORK(&lane->work, imgfmt_lane_work);
		spin_lock_init(&lane->lock);
		bio_list_init(&lane->bios);
		bio_list_init(&lane->deferred);
		lane->cpu = cpumask_local_spread(i, NUMA_NO_NODE);
	}
	return 0;
}

/*
 * Wait until no lane of this device has work queued or running.  Callers
 * make sure that nothing queues more: no bios are in flight (dm waits for
 * them before postsuspend and dtr) and the read-ahead is stopped.
 */
static void imgfmt_flush_lanes(struct imgfmt_target *it)
{
	unsigned int i;

	for (i = 0; it->lanes && i < it->nr_lanes; i++)
		flush_work(&it->lanes[i].work);
}

static void imgfmt_exit_lanes(struct imgfmt_target *it)
{
	unsigned int i;

	imgfmt_flush_lanes(it);
	for (i = 0; it->lanes && i < it->nr_lanes; i++)
		imgfmt_decoder_destroy(it->lanes[i].dec);
	kfree(it->lanes);
}

/*
 * The read-ahead's geometry, for the clusters of the highest compressed
 * layer: a window that the cache holds many times over.
 */
static void imgfmt_init_readahead(struct imgfmt_target *it)
{
	struct imgfmt_ccache *cc = NULL;
	u32 window, i;

	for (i = 0; i < it->ls.nr && !cc; i++)
		cc = it->ls.l[i].ccache;
	if (!cc || it->nr_lanes < 2)
		return;
	window = min(it->nr_lanes * min(READ_ONCE(lane_readahead),
					IMGFMT_LANE_RA_SLOTS),
		     imgfmt_ccache_capacity(cc) / 4);
	it->ra_window = window;
	it->ra_cluster_size = window ? it->ls.l[i - 1].img->info.cluster_size :
				       0;
}

static int imgfmt_init_worker(struct imgfmt_target *it, char **error)
{
	int r;

	if (bioset_init(&it->split_bs, BIO_POOL_SIZE, 0, 0)) {
		*error = "cannot allocate the bio set";
		return -ENOMEM;
	}
	it->split_bs_ready = true;
	r = imgfmt_init_lanes(it, error);
	if (!r)
		imgfmt_init_readahead(it);
	return r;
}

static void imgfmt_dtr(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;

	imgfmt_exit_writer(it);
	imgfmt_exit_lanes(it);
	if (it->split_bs_ready)
		bioset_exit(&it->split_bs);
	imgfmt_layers_exit(&it->ls, ti);
	kfree(it);
}

static int imgfmt_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct imgfmt_target *it;
	int r;

	it = kzalloc(sizeof(*it), GFP_KERNEL);
	if (!it) {
		ti->error = "cannot allocate the target";
		return -ENOMEM;
	}
	it->ti = ti;
	ti->private = it;
	atomic64_set(&it->io_errors, 0);
	atomic64_set(&it->deferred_bios, 0);

	r = imgfmt_layers_init(&it->ls, ti, argc, argv,
			       READ_ONCE(default_cache_size), &ti->error);
	if (!r) {
		it->info = it->ls.l[0].img->info;
		r = imgfmt_check_geometry(it, &ti->error);
	}
	if (!r)
		r = imgfmt_init_worker(it, &ti->error);
	if (!r)
		r = imgfmt_init_writer(it, &ti->error);
	if (r)
		goto bad;
	ti->num_flush_bios = 1;
	if (it->w) {
		/* FUA and flushes must reach the writer, whatever the device has. */
		ti->flush_supported = true;
		/* Zeroes are metadata here, whatever the device supports. */
		ti->num_discard_bios = 1;
		ti->discards_supported = true;
		ti->num_write_zeroes_bios = 1;
		ti->per_io_data_size = sizeof(struct imgfmt_wio);
	}
	return 0;
bad:
	imgfmt_dtr(ti);
	return r;
}

/*
 * Memory this device holds for compressed clusters: decompressed ones in
 * the cache and each lane's input buffer.  The workspaces are the
 * module's (kport.c).
 */
static u64 imgfmt_target_decomp_bytes(struct imgfmt_target *it)
{
	struct imgfmt_decoder *dec;
	u64 bytes;
	unsigned int i;

	bytes = imgfmt_layers_ccache_bytes(&it->ls);
	for (i = 0; i < it->nr_lanes; i++) {
		dec = READ_ONCE(it->lanes[i].dec);
		if (dec)
			bytes += imgfmt_decoder_bytes(dec);
	}
	return bytes;
}

/* Status field 18: may a write that allocates go on? */
static const char *imgfmt_writer_space(struct imgfmt_target *it)
{
	unsigned long raised = READ_ONCE(it->w->raised);

	if (!(raised & BIT(IMGFMT_W_FULL)))
		return "ok";
	if ((raised & BIT(IMGFMT_W_NOSPC)) || it->ls.error_if_no_space)
		return "full";
	return "waiting";
}

static void imgfmt_status(struct dm_target *ti, status_type_t type,
			  unsigned int status_flags, char *result,
			  unsigned int maxlen)
{
	struct imgfmt_target *it = ti->private;
	struct imgfmt_mcache_stats st;
	struct imgfmt_wstats wst = { 0 };
	const char *mode = "ro", *space = "-";
	unsigned int sz = 0, parked = 0;
	u64 size, room = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		imgfmt_layers_stats(&it->ls, &st);
		if (it->w) {
			spin_lock(&it->w->lock);
			wst = it->w->wst;
			mode = imgfmt_writer_broken(it->w) ? "failed" : "rw";
			parked = it->w->nr_parked;
			spin_unlock(&it->w->lock);
			space = imgfmt_writer_space(it);
			size = READ_ONCE(it->ls.l[0].kdev.dev.size);
			room = size > wst.image_end ? size - wst.image_end : 0;
		}
		DMEMIT("%s %llu %u %llu/%llu %llu %llu %lld %llu %lld %llu %lld %llu %u",
		       it->info.format, it->info.virtual_size,
		       it->info.cluster_size, st.bytes, st.limit_bytes,
		       st.hits, st.misses,
		       (long long)atomic64_read(&it->io_errors),
		       st.peak_bytes,
		       (long long)atomic64_read(&it->deferred_bios),
		       imgfmt_layers_decompressed(&it->ls),
		       (long long)atomic64_read(&it->prefetched),
		       imgfmt_target_decomp_bytes(it), it->ls.nr);
		DMEMIT(" %s %llu %llu %llu %s %u %llu", mode, wst.dirty_bytes,
		       wst.image_end, wst.commits, space, parked, room);
		break;
	case STATUSTYPE_TABLE:
		imgfmt_layers_emit(&it->ls, result, maxlen);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",image_dev=%s,format=%s,virtual_size=%llu,layers=%u;",
		       it->ls.l[0].dev->name, it->info.format,
		       it->info.virtual_size, it->ls.nr);
		break;
	}
}

/*
 * A flush that went straight down (imgfmt_writer_clean()) and failed
 * fails the writer as one it issued would: nothing is acknowledged after
 * it.  This may run in interrupt context: the worker logs and tells.
 */
static int imgfmt_end_io(struct dm_target *ti, struct bio *bio,
			 blk_status_t *error)
{
	struct imgfmt_target *it = ti->private;

	if (it->w && *error && (bio->bi_opf & REQ_PREFLUSH) &&
	    !bio->bi_iter.bi_size) {
		WRITE_ONCE(it->w->flush_failed, true);
		queue_work(imgfmt_wq, &it->w->work);
	}
	return DM_ENDIO_DONE;
}

/*
 * A suspend waits for every write: none may wait for the device to grow.
 * The writer looks at the device's size again and tries the parked writes
 * once more (a device grown before this suspend takes them now); those
 * that still find no room fail with ENOSPC, or in a noflush suspend go
 * back to dm core, which sends them again after the resume (dm-thin's
 * requeue), by then into a device that may have grown.
 */
static void imgfmt_presuspend(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;
	struct imgfmt_writer *w = it->w;

	if (!w)
		return;
	spin_lock(&w->lock);
	w->suspending = dm_noflush_suspending(ti) ? IMGFMT_SUSPENDING_NOFLUSH :
						    IMGFMT_SUSPENDING;
	w->recheck_size = true;
	bio_list_merge_head(&w->bios, &w->parked);
	bio_list_init(&w->parked);
	w->nr_parked = 0;
	spin_unlock(&w->lock);
	cancel_delayed_work_sync(&w->no_space_timer);
	imgfmt_writer_kick(it);
	flush_work(&w->work);
}

static void imgfmt_presuspend_undo(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;

	if (!it->w)
		return;
	spin_lock(&it->w->lock);
	it->w->suspending = IMGFMT_RUNNING;
	spin_unlock(&it->w->lock);
}

/* After a suspend the device may change under us: no read-ahead I/O. */
static void imgfmt_postsuspend(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;

	spin_lock(&it->ra_lock);
	it->ra_stopped = true;
	spin_unlock(&it->ra_lock);
	imgfmt_flush_lanes(it);
	imgfmt_writer_quiesce(it);
}

static void imgfmt_resume(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;

	spin_lock(&it->ra_lock);
	it->ra_stopped = false;
	it->ra_expect = 0;
	it->ra_next = 0;
	spin_unlock(&it->ra_lock);
	if (!it->w)
		return;
	imgfmt_writer_regrow(it);
	clear_bit(IMGFMT_W_FULL, &it->w->raised);
	clear_bit(IMGFMT_W_NOSPC, &it->w->raised);
	spin_lock(&it->w->lock);
	it->w->stopped = false;
	it->w->spares_paused = false;
	it->w->suspending = IMGFMT_RUNNING;
	spin_unlock(&it->w->lock);
	imgfmt_writer_low_water(it, it->w->wst.image_end);
}

/*
 * A read-write image takes discards of any size (whole clusters become
 * zero flags) and prefers them cluster by cluster.
 */
static void imgfmt_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct imgfmt_target *it = ti->private;
	u32 unit = it->info.cluster_size;

	if (!it->w)
		return;
	if (it->info.extended_l2)
		unit /= 32;
	limits->discard_granularity = max_t(u32, unit, SECTOR_SIZE);
	limits->max_hw_discard_sectors = UINT_MAX >> SECTOR_SHIFT;
	limits->max_discard_sectors = UINT_MAX >> SECTOR_SHIFT;
}

static int imgfmt_iterate_devices(struct dm_target *ti,
				  iterate_devices_callout_fn fn, void *data)
{
	struct imgfmt_target *it = ti->private;

	return imgfmt_layers_iterate(&it->ls, ti, fn, data);
}

static struct target_type imgfmt_target_type = {
	.name = "imgfmt",
	.version = {0, 4, 0},
	.module = THIS_MODULE,
	.ctr = imgfmt_ctr,
	.dtr = imgfmt_dtr,
	.map = imgfmt_dm_map,
	.end_io = imgfmt_end_io,
	.presuspend = imgfmt_presuspend,
	.presuspend_undo = imgfmt_presuspend_undo,
	.postsuspend = imgfmt_postsuspend,
	.resume = imgfmt_resume,
	.status = imgfmt_status,
	.iterate_devices = imgfmt_iterate_devices,
	.io_hints = imgfmt_io_hints,
};

static int __init dm_imgfmt_init(void)
{
	int r;

	imgfmt_kport_init();
	imgfmt_wq = alloc_workqueue("kimgfmt", WQ_MEM_RECLAIM |
				    WQ_CPU_INTENSIVE, 0);
	if (!imgfmt_wq)
		return -ENOMEM;
	r = dm_register_target(&imgfmt_target_type);
	if (r)
		destroy_workqueue(imgfmt_wq);
	return r;
}

static void __exit dm_imgfmt_exit(void)
{
	dm_unregister_target(&imgfmt_target_type);
	destroy_workqueue(imgfmt_wq);
}

module_init(dm_imgfmt_init);
module_exit(dm_imgfmt_exit);

MODULE_DESCRIPTION(DM_NAME " target for virtual machine disk images");
MODULE_AUTHOR("dm-imgfmt developers");
MODULE_LICENSE("GPL");
