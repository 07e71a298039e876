// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-imgfmt: a device-mapper target that presents a virtual machine disk
 * image (QCOW2 today) stored on a block device as a plain block device.
 *
 * The format code (formats/) tells where a virtual range lives; this file
 * moves bios.  map() never sleeps on I/O: when the metadata a bio needs is
 * cached it remaps or zero-fills the bio at once, otherwise it hands the bio
 * to a worker that reads the metadata and then submits the bio in pieces.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>

#include "ccache.h"
#include "compat.h"
#include "imgfmt_format.h"
#include "kport.h"
#include "mcache.h"

#define DM_MSG_PREFIX "imgfmt"

#define IMGFMT_FORMAT_NAME_MAX	16

static unsigned long long default_cache_size = IMGFMT_DEFAULT_CACHE_BYTES;
module_param(default_cache_size, ullong, 0644);
MODULE_PARM_DESC(default_cache_size,
		 "Metadata cache bound per device in bytes, when the table sets no cache_size");

struct imgfmt_target {
	struct dm_target *ti;
	struct dm_dev *dev;
	struct imgfmt_kdev kdev;
	const struct imgfmt_format_ops *ops;
	struct imgfmt_image *img;
	struct imgfmt_info info;
	/* Decompressed clusters; made by the worker on first need. */
	struct imgfmt_ccache *ccache;

	/* Table options, kept to print the table back. */
	char format_pin[IMGFMT_FORMAT_NAME_MAX];
	u64 cache_size;
	bool cache_size_set;

	atomic64_t io_errors;
	atomic64_t deferred_bios;

	/* Bios whose metadata is not cached, for the worker. */
	spinlock_t lock;
	struct bio_list deferred;
	struct workqueue_struct *wq;
	struct work_struct work;
	struct bio_set split_bs;
};

static void imgfmt_count_error(struct imgfmt_target *it, const char *what,
			       u64 offset)
{
	atomic64_inc(&it->io_errors);
	DMERR_LIMIT("%s: read at virtual offset %llu failed: %s",
		    dm_device_name(dm_table_get_md(it->ti->table)), offset,
		    what);
}

static u64 imgfmt_bio_offset(struct imgfmt_target *it, struct bio *bio)
{
	return (u64)dm_target_offset(it->ti, bio->bi_iter.bi_sector) <<
		SECTOR_SHIFT;
}

/* Where the bytes of a run come from when the worker copies them. */
typedef int (*imgfmt_fill_fn)(struct imgfmt_target *it,
			      const struct imgfmt_run *run, u32 skip,
			      void *dst, u32 len);

static int imgfmt_fill_decompressed(struct imgfmt_target *it,
				    const struct imgfmt_run *run, u32 skip,
				    void *dst, u32 len)
{
	return imgfmt_ccache_read(it->ccache, run, skip, dst, len);
}

static int imgfmt_fill_from_device(struct imgfmt_target *it,
				   const struct imgfmt_run *run, u32 skip,
				   void *dst, u32 len)
{
	return imgfmt_dev_read(&it->kdev.dev, run->dev_offset + skip, dst, len);
}

/*
 * Copy the run that piece covers into its pages, segment by segment; the
 * run's zeroed tail (past the virtual size) is zeroed instead.
 */
static blk_status_t imgfmt_copy_run(struct imgfmt_target *it,
				    struct bio *piece,
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
			r = fill(it, run, skip, p, n);
		memset(p + n, 0, bv.bv_len - n);
		kunmap_local(p);
		if (r) {
			imgfmt_count_error(it, "cannot read or decompress the cluster",
					   offset + skip);
			return BLK_STS_IOERR;
		}
		skip += bv.bv_len;
	}
	return BLK_STS_OK;
}

/* The decompressed-cluster cache, made on the first compressed run. */
static bool imgfmt_get_ccache(struct imgfmt_target *it,
			      const struct imgfmt_run *run, u64 offset)
{
	struct imgfmt_ccache *cc = it->ccache;

	if (cc)
		return true;
	cc = imgfmt_ccache_create(&it->kdev.dev, run->comp_cluster_size);
	if (!cc) {
		imgfmt_count_error(it, "cannot allocate the decompression cache",
				   offset);
		return false;
	}
	/* Published complete: status reads it without the worker. */
	smp_store_release(&it->ccache, cc);
	return true;
}

/*
 * Carry out one run that covers all of piece, from the worker.  Returns
 * without ending piece only when it was submitted.
 */
static void imgfmt_finish_piece(struct imgfmt_target *it, struct bio *clone,
				struct bio *piece, const struct imgfmt_run *run,
				u64 offset)
{
	if (run->tail_zero > run->length) {
		imgfmt_count_error(it, "bad run from the format", offset);
		piece->bi_status = BLK_STS_IOERR;
		bio_endio(piece);
		return;
	}
	switch (run->kind) {
	case IMGFMT_RUN_DATA:
		if (run->tail_zero) {
			piece->bi_status = imgfmt_copy_run(it, piece, run,
							   imgfmt_fill_from_device,
							   offset);
			bio_endio(piece);
			return;
		}
		bio_set_dev(piece, it->dev->bdev);
		piece->bi_iter.bi_sector = run->dev_offset >> SECTOR_SHIFT;
		dm_submit_bio_remap(clone, piece == clone ? NULL : piece);
		return;
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		zero_fill_bio(piece);
		bio_endio(piece);
		return;
	case IMGFMT_RUN_COMPRESSED:
		piece->bi_status = BLK_STS_RESOURCE;
		if (imgfmt_get_ccache(it, run, offset))
			piece->bi_status = imgfmt_copy_run(it, piece, run,
							   imgfmt_fill_decompressed,
							   offset);
		bio_endio(piece);
		return;
	default:
		imgfmt_count_error(it, "unknown run kind", offset);
		piece->bi_status = BLK_STS_IOERR;
		bio_endio(piece);
		return;
	}
}

/* Map and submit a deferred read, splitting it where its runs change. */
static void imgfmt_process_bio(struct imgfmt_target *it, struct bio *bio)
{
	struct imgfmt_run run;
	struct bio *piece;
	const char *err = "metadata read failed";
	u64 offset;
	int r;

	for (;;) {
		offset = imgfmt_bio_offset(it, bio);
		r = it->ops->map(it->img, offset, bio->bi_iter.bi_size, 0,
				 &run, &err);
		if (r) {
			imgfmt_count_error(it, err, offset);
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
		imgfmt_finish_piece(it, bio, piece, &run, offset);
	}
	imgfmt_finish_piece(it, bio, bio, &run, offset);
}

static void imgfmt_worker(struct work_struct *work)
{
	struct imgfmt_target *it = container_of(work, struct imgfmt_target,
						work);
	struct bio_list bios;
	struct blk_plug plug;
	unsigned int noio;
	struct bio *bio;

	spin_lock(&it->lock);
	bios = it->deferred;
	bio_list_init(&it->deferred);
	spin_unlock(&it->lock);

	/* Allocations here must not recurse into I/O to this device. */
	noio = memalloc_noio_save();
	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&bios)))
		imgfmt_process_bio(it, bio);
	blk_finish_plug(&plug);
	memalloc_noio_restore(noio);
}

static void imgfmt_defer_bio(struct imgfmt_target *it, struct bio *bio)
{
	spin_lock(&it->lock);
	bio_list_add(&it->deferred, bio);
	spin_unlock(&it->lock);
	atomic64_inc(&it->deferred_bios);
	queue_work(it->wq, &it->work);
}

static int imgfmt_map(struct dm_target *ti, struct bio *bio)
{
	struct imgfmt_target *it = ti->private;
	u32 size = bio->bi_iter.bi_size;
	const char *err = NULL;
	struct imgfmt_run run;
	u64 offset;
	int r;

	if (bio_op(bio) != REQ_OP_READ) {
		/* An empty flush has nothing to order on a read-only image. */
		if (op_is_flush(bio->bi_opf) && !size) {
			bio_set_dev(bio, it->dev->bdev);
			return DM_MAPIO_REMAPPED;
		}
		return DM_MAPIO_KILL;
	}
	if (!size) {
		bio_set_dev(bio, it->dev->bdev);
		return DM_MAPIO_REMAPPED;
	}
	offset = imgfmt_bio_offset(it, bio);
	r = it->ops->map(it->img, offset, size, IMGFMT_MAP_NOWAIT, &run, &err);
	if (r == -EWOULDBLOCK) {
		imgfmt_defer_bio(it, bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (r) {
		imgfmt_count_error(it, err ? err : "mapping failed", offset);
		return DM_MAPIO_KILL;
	}
	if (run.length < size)
		dm_accept_partial_bio(bio, run.length >> SECTOR_SHIFT);
	switch (run.kind) {
	case IMGFMT_RUN_DATA:
		if (run.tail_zero) {
			/* The disk's last, partly zeroed sector: copied. */
			imgfmt_defer_bio(it, bio);
			return DM_MAPIO_SUBMITTED;
		}
		bio_set_dev(bio, it->dev->bdev);
		bio->bi_iter.bi_sector = run.dev_offset >> SECTOR_SHIFT;
		return DM_MAPIO_REMAPPED;
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		zero_fill_bio(bio);
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	case IMGFMT_RUN_COMPRESSED:
		/* Decompression may sleep: the worker does it. */
		imgfmt_defer_bio(it, bio);
		return DM_MAPIO_SUBMITTED;
	default:
		imgfmt_count_error(it, "unknown run kind", offset);
		return DM_MAPIO_KILL;
	}
}

static int imgfmt_parse_option(struct imgfmt_target *it, const char *opt,
			       char **error)
{
	const char *val;
	u64 bytes;

	if (!strncmp(opt, "format=", 7)) {
		val = opt + 7;
		if (!*val || strscpy(it->format_pin, val,
				     sizeof(it->format_pin)) < 0) {
			*error = "invalid format= option";
			return -EINVAL;
		}
		return 0;
	}
	if (!strncmp(opt, "cache_size=", 11)) {
		if (kstrtoull(opt + 11, 0, &bytes) ||
		    bytes < IMGFMT_MIN_CACHE_BYTES ||
		    bytes > IMGFMT_MAX_CACHE_BYTES) {
			*error = "invalid cache_size (64 KiB to 1 TiB)";
			return -EINVAL;
		}
		it->cache_size = bytes;
		it->cache_size_set = true;
		return 0;
	}
	*error = "unknown option";
	return -EINVAL;
}

/* <image_dev> [<#opts> <opt>...] */
static int imgfmt_parse_args(struct imgfmt_target *it, unsigned int argc,
			     char **argv, char **error)
{
	static const struct dm_arg opt_count = {
		0, 2, "invalid number of optional arguments"
	};
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	unsigned int nr_opts = 0;
	int r;

	if (argc < 1) {
		*error = "invalid number of arguments";
		return -EINVAL;
	}
	dm_shift_arg(&as);
	if (as.argc) {
		r = dm_read_arg_group(&opt_count, &as, &nr_opts, error);
		if (r)
			return r;
	}
	while (nr_opts--) {
		r = imgfmt_parse_option(it, dm_shift_arg(&as), error);
		if (r)
			return r;
	}
	if (as.argc) {
		*error = "invalid number of arguments";
		return -EINVAL;
	}
	return 0;
}

static int imgfmt_open_image(struct imgfmt_target *it, char **error)
{
	const char *err = NULL;
	u64 cache = it->cache_size_set ? it->cache_size :
		    clamp_t(u64, READ_ONCE(default_cache_size),
			    IMGFMT_MIN_CACHE_BYTES, IMGFMT_MAX_CACHE_BYTES);
	int r;

	imgfmt_kdev_init(&it->kdev, it->dev->bdev);
	it->ops = imgfmt_detect(&it->kdev.dev,
				it->format_pin[0] ? it->format_pin : NULL,
				&err);
	if (!it->ops) {
		*error = (char *)err;
		return -EINVAL;
	}
	r = it->ops->open(&it->kdev.dev, cache, &it->img, &err);
	if (r) {
		*error = (char *)err;
		return r == -ENOMEM ? r : -EINVAL;
	}
	it->ops->get_info(it->img, &it->info);
	return 0;
}

static int imgfmt_check_geometry(struct imgfmt_target *it, char **error)
{
	struct dm_target *ti = it->ti;

	if (ti->len > DIV_ROUND_UP_ULL(it->info.virtual_size, SECTOR_SIZE)) {
		*error = "table length exceeds the image's virtual size";
		return -EINVAL;
	}
	if (it->info.cluster_size < bdev_logical_block_size(it->dev->bdev)) {
		*error = "cluster size smaller than the device's logical block size";
		return -EINVAL;
	}
	return 0;
}

static int imgfmt_init_worker(struct imgfmt_target *it, char **error)
{
	spin_lock_init(&it->lock);
	bio_list_init(&it->deferred);
	INIT_WORK(&it->work, imgfmt_worker);
	it->wq = alloc_workqueue("kimgfmtd", WQ_MEM_RECLAIM, 0);
	if (!it->wq) {
		*error = "cannot allocate the workqueue";
		return -ENOMEM;
	}
	if (bioset_init(&it->split_bs, BIO_POOL_SIZE, 0, 0)) {
		destroy_workqueue(it->wq);
		it->wq = NULL;
		*error = "cannot allocate the bio set";
		return -ENOMEM;
	}
	return 0;
}

static void imgfmt_dtr(struct dm_target *ti)
{
	struct imgfmt_target *it = ti->private;

	if (it->wq) {
		destroy_workqueue(it->wq);
		bioset_exit(&it->split_bs);
	}
	imgfmt_ccache_destroy(it->ccache);
	if (it->img)
		it->ops->close(it->img);
	if (it->dev)
		dm_put_device(ti, it->dev);
	kfree(it);
}

static int imgfmt_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct imgfmt_target *it;
	int r;

	if (dm_table_get_mode(ti->table) & IMGFMT_MODE_WRITE) {
		ti->error = "writes are not supported yet";
		return -EROFS;
	}
	it = kzalloc(sizeof(*it), GFP_KERNEL);
	if (!it) {
		ti->error = "cannot allocate the target";
		return -ENOMEM;
	}
	it->ti = ti;
	ti->private = it;
	atomic64_set(&it->io_errors, 0);
	atomic64_set(&it->deferred_bios, 0);

	r = imgfmt_parse_args(it, argc, argv, &ti->error);
	if (r)
		goto bad;
	r = dm_get_device(ti, argv[0], dm_table_get_mode(ti->table), &it->dev);
	if (r) {
		ti->error = "cannot open image device";
		goto bad;
	}
	r = imgfmt_open_image(it, &ti->error);
	if (!r)
		r = imgfmt_check_geometry(it, &ti->error);
	if (!r)
		r = imgfmt_init_worker(it, &ti->error);
	if (r)
		goto bad;
	ti->num_flush_bios = 1;
	return 0;
bad:
	imgfmt_dtr(ti);
	return r;
}

static void imgfmt_emit_table(struct imgfmt_target *it, char *result,
			      unsigned int maxlen)
{
	unsigned int sz = 0;
	unsigned int nr_opts = !!it->format_pin[0] + it->cache_size_set;

	DMEMIT("%s", it->dev->name);
	if (nr_opts)
		DMEMIT(" %u", nr_opts);
	if (it->format_pin[0])
		DMEMIT(" format=%s", it->format_pin);
	if (it->cache_size_set)
		DMEMIT(" cache_size=%llu", it->cache_size);
}

static u64 imgfmt_target_decompressed(struct imgfmt_target *it)
{
	struct imgfmt_ccache *cc;

	/* Pairs with the worker's smp_store_release() when it made ccache. */
	cc = smp_load_acquire(&it->ccache);

	return cc ? imgfmt_ccache_decompressed(cc) : 0;
}

static void imgfmt_status(struct dm_target *ti, status_type_t type,
			  unsigned int status_flags, char *result,
			  unsigned int maxlen)
{
	struct imgfmt_target *it = ti->private;
	struct imgfmt_mcache_stats st;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		imgfmt_mcache_get_stats(it->ops->mcache(it->img), &st);
		DMEMIT("%s %llu %u %llu/%llu %llu %llu %lld %llu %lld %llu",
		       it->info.format, it->info.virtual_size,
		       it->info.cluster_size, st.bytes, st.limit_bytes,
		       st.hits, st.misses,
		       (long long)atomic64_read(&it->io_errors),
		       st.peak_bytes,
		       (long long)atomic64_read(&it->deferred_bios),
		       imgfmt_target_decompressed(it));
		break;
	case STATUSTYPE_TABLE:
		imgfmt_emit_table(it, result, maxlen);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",image_dev=%s,format=%s,virtual_size=%llu;",
		       it->dev->name, it->info.format, it->info.virtual_size);
		break;
	}
}

static int imgfmt_iterate_devices(struct dm_target *ti,
				  iterate_devices_callout_fn fn, void *data)
{
	struct imgfmt_target *it = ti->private;

	/* The image is smaller than the virtual disk it describes. */
	return fn(ti, it->dev, 0, bdev_nr_sectors(it->dev->bdev), data);
}

static struct target_type imgfmt_target_type = {
	.name = "imgfmt",
	.version = {0, 1, 0},
	.module = THIS_MODULE,
	.ctr = imgfmt_ctr,
	.dtr = imgfmt_dtr,
	.map = imgfmt_map,
	.status = imgfmt_status,
	.iterate_devices = imgfmt_iterate_devices,
};

static int __init dm_imgfmt_init(void)
{
	return dm_register_target(&imgfmt_target_type);
}

static void __exit dm_imgfmt_exit(void)
{
	dm_unregister_target(&imgfmt_target_type);
}

module_init(dm_imgfmt_init);
module_exit(dm_imgfmt_exit);

MODULE_DESCRIPTION(DM_NAME " target for virtual machine disk images");
MODULE_AUTHOR("dm-imgfmt developers");
MODULE_LICENSE("GPL");
