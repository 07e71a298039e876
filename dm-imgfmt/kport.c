// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel side of imgfmt_port.h: memory for tables, log lines and
 * synchronous reads from the image device for the shared format code.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/vmalloc.h>
#include <linux/device-mapper.h>
#include <linux/zlib.h>
#include <linux/zstd.h>

#include "imgfmt_port.h"
#include "kport.h"

#define DM_MSG_PREFIX "imgfmt"

/*
 * Largest zstd window accepted: QEMU compresses each cluster (at most
 * 2 MiB) as its own frame, so its window never needs to be larger.
 */
#define IMGFMT_ZSTD_MAX_WINDOW	(2U << 20)

void *imgfmt_alloc_large(size_t len)
{
	return kvmalloc(len, GFP_KERNEL);
}

void *imgfmt_zalloc_large(size_t len)
{
	return kvzalloc(len, GFP_KERNEL);
}

void imgfmt_free_large(void *p)
{
	kvfree(p);
}

void imgfmt_log(const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	DMWARN("%pV", &vaf);
	va_end(args);
}

void imgfmt_report_corruption(const char *fmt_name, const char *what,
			      u64 where)
{
	DMERR_LIMIT("%s: %s (virtual offset %llu)", fmt_name, what, where);
}

/* Add the pages of a kmalloc or vmalloc buffer to bio; returns bytes added. */
static size_t kport_add_buffer(struct bio *bio, u8 *buf, size_t len)
{
	size_t done = 0, chunk;
	struct page *page;

	while (done < len) {
		chunk = min_t(size_t, len - done,
			      PAGE_SIZE - offset_in_page(buf + done));
		page = is_vmalloc_addr(buf + done) ?
			vmalloc_to_page(buf + done) : virt_to_page(buf + done);
		if (bio_add_page(bio, page, chunk,
				 offset_in_page(buf + done)) != chunk)
			break;
		done += chunk;
	}
	return done;
}

/*
 * Read or write (opf) len bytes at off; off, len and buf are aligned to
 * the block size.
 */
static int kport_io_aligned(struct block_device *bdev, blk_opf_t opf, u64 off,
			    u8 *buf, size_t len)
{
	struct bio *bio;
	size_t added;
	int r;

	while (len) {
		bio = bio_alloc(bdev, min_t(size_t, BIO_MAX_VECS,
					    DIV_ROUND_UP(len, PAGE_SIZE) + 1),
				opf | REQ_META | REQ_SYNC, GFP_NOIO);
		bio->bi_iter.bi_sector = off >> SECTOR_SHIFT;
		added = kport_add_buffer(bio, buf, len);
		added &= ~((size_t)bdev_logical_block_size(bdev) - 1);
		if (!added) {
			bio_put(bio);
			return -EIO;
		}
		if (added < bio->bi_iter.bi_size)
			bio_trim(bio, 0, added >> SECTOR_SHIFT);
		r = submit_bio_wait(bio);
		bio_put(bio);
		if (r)
			return r;
		off += added;
		buf += added;
		len -= added;
	}
	return 0;
}

/*
 * The format code reads at any byte offset and length (an L1 table of 10
 * entries, a 72-byte header); the block layer wants whole logical blocks
 * from aligned memory, so odd requests go through an aligned bounce buffer.
 */
static int kport_dev_read(struct imgfmt_dev *dev, u64 off, void *buf,
			  size_t len)
{
	struct imgfmt_kdev *kdev = container_of(dev, struct imgfmt_kdev, dev);
	u32 lbs = bdev_logical_block_size(kdev->bdev);
	u64 start = round_down(off, lbs);
	u64 end = round_up(off + len, lbs);
	u8 *bounce;
	int r;

	if (!len)
		return 0;
	if (start == off && end == off + len &&
	    IS_ALIGNED((unsigned long)buf, lbs))
		return kport_io_aligned(kdev->bdev, REQ_OP_READ, off, buf, len);
	bounce = kvmalloc(end - start, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	r = kport_io_aligned(kdev->bdev, REQ_OP_READ, start, bounce,
			     end - start);
	if (!r)
		memcpy(buf, bounce + (off - start), len);
	kvfree(bounce);
	return r;
}

/*
 * Writes may come at any byte offset: a partial block is read, patched
 * and written back whole.  Only the format's single writer writes
 * metadata, and no metadata block holds guest data (the format refuses
 * clusters smaller than a block), so the read-modify-write races with
 * nobody.  The QCOW2 writer's own writes are whole aligned pieces of
 * memory it holds, so its commits allocate nothing here.
 */
static int kport_dev_write(struct imgfmt_dev *dev, u64 off, const void *buf,
			   size_t len)
{
	struct imgfmt_kdev *kdev = container_of(dev, struct imgfmt_kdev, dev);
	u32 lbs = bdev_logical_block_size(kdev->bdev);
	u64 start = round_down(off, lbs);
	u64 end = round_up(off + len, lbs);
	bool head, tail;
	u8 *bounce;
	int r = 0;

	if (!len)
		return 0;
	if (start == off && end == off + len &&
	    IS_ALIGNED((unsigned long)buf, lbs))
		return kport_io_aligned(kdev->bdev, REQ_OP_WRITE, off,
					(u8 *)buf, len);
	bounce = kvmalloc(end - start, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	head = start != off;
	tail = end != off + len;
	if (head)
		r = kport_io_aligned(kdev->bdev, REQ_OP_READ, start, bounce,
				     lbs);
	/* The last block, unless it is the first and was just read. */
	if (!r && tail && !(head && end - lbs == start))
		r = kport_io_aligned(kdev->bdev, REQ_OP_READ, end - lbs,
				     bounce + (end - lbs - start), lbs);
	if (!r) {
		memcpy(bounce + (off - start), buf, len);
		r = kport_io_aligned(kdev->bdev, REQ_OP_WRITE, start, bounce,
				     end - start);
	}
	kvfree(bounce);
	return r;
}

static int kport_dev_flush(struct imgfmt_dev *dev)
{
	struct imgfmt_kdev *kdev = container_of(dev, struct imgfmt_kdev, dev);

	return blkdev_issue_flush(kdev->bdev);
}

static void kport_dev_discard(struct imgfmt_dev *dev, u64 off, u64 len)
{
	struct imgfmt_kdev *kdev = container_of(dev, struct imgfmt_kdev, dev);
	u32 lbs = bdev_logical_block_size(kdev->bdev);
	u64 start = round_up(off, lbs), end = round_down(off + len, lbs);

	/* Only whole blocks; a failure costs space, not consistency. */
	if (start < end)
		blkdev_issue_discard(kdev->bdev, start >> SECTOR_SHIFT,
				     (end - start) >> SECTOR_SHIFT, GFP_NOIO);
}

static int kport_dev_zero(struct imgfmt_dev *dev, u64 off, u64 len)
{
	struct imgfmt_kdev *kdev = container_of(dev, struct imgfmt_kdev, dev);
	u32 lbs = bdev_logical_block_size(kdev->bdev);

	if ((off | len) & (lbs - 1))
		return -EINVAL;
	/* Never the fallback that writes zero pages: that is not cheap. */
	return blkdev_issue_zeroout(kdev->bdev, off >> SECTOR_SHIFT,
				    len >> SECTOR_SHIFT, GFP_NOIO,
				    BLKDEV_ZERO_NOFALLBACK);
}

void imgfmt_kdev_init(struct imgfmt_kdev *kdev, struct block_device *bdev)
{
	u32 lbs = bdev_logical_block_size(bdev);

	kdev->bdev = bdev;
	/*
	 * Only whole logical blocks can be read: a device of 4 KiB blocks
	 * over a file whose size is not a multiple of them ends at the last
	 * whole one for us, as it does for every other reader.
	 */
	kdev->dev.size = round_down(bdev_nr_bytes(bdev), lbs);
	kdev->dev.read = kport_dev_read;
	kdev->dev.read_align = lbs;
	kdev->dev.priv = kdev;
}

void imgfmt_kdev_make_writable(struct imgfmt_kdev *kdev)
{
	kdev->dev.write = kport_dev_write;
	kdev->dev.flush = kport_dev_flush;
	if (bdev_max_discard_sectors(kdev->bdev))
		kdev->dev.discard = kport_dev_discard;
	if (bdev_write_zeroes_sectors(kdev->bdev))
		kdev->dev.zero = kport_dev_zero;
	kdev->dev.write_align = bdev_logical_block_size(kdev->bdev);
}

/*
 * Decompression workspaces are the module's, not a device's: up to one slot
 * per CPU (at most KPORT_WS_SLOTS), each a mutex with a zlib and, while a
 * zstd image is loaded, a zstd workspace (about 2.4 MiB).  A lane takes the
 * slot of the CPU it runs on; the mutex is held only while decompressing,
 * never across I/O, so one device waiting for its stream never holds up
 * another's decompression, and a device stacked over another cannot
 * deadlock on a slot.  Devices reserve the workspaces of their image's
 * compression at table load, so the I/O path never allocates them.
 */
#define KPORT_WS_SLOTS		8

struct kport_ws {
	struct mutex lock;		/* held while decompressing */
	struct z_stream_s zlib;		/* workspace: NULL until reserved */
	void *zstd_ws;			/* NULL until reserved */
	zstd_dstream *zstd;
};

static struct kport_ws kport_ws[KPORT_WS_SLOTS];
static unsigned int kport_nr_slots;
/* Guards the reservation counts and making or freeing workspaces. */
static DEFINE_MUTEX(kport_ws_users_lock);
static unsigned int kport_zlib_users;
static unsigned int kport_zstd_users;

static size_t kport_zstd_ws_size(void)
{
	return zstd_dstream_workspace_bound(IMGFMT_ZSTD_MAX_WINDOW);
}

void imgfmt_kport_init(void)
{
	unsigned int i;

	kport_nr_slots = clamp_t(unsigned int, num_possible_cpus(), 1,
				 KPORT_WS_SLOTS);
	for (i = 0; i < KPORT_WS_SLOTS; i++)
		mutex_init(&kport_ws[i].lock);
}

static bool kport_is_zstd(enum imgfmt_compression type)
{
	return type == IMGFMT_COMP_ZSTD;
}

/* Free the slots' workspaces of type (caller holds users_lock). */
static void kport_free_ws(enum imgfmt_compression type)
{
	struct kport_ws *ws;
	unsigned int i;

	for (i = 0; i < kport_nr_slots; i++) {
		ws = &kport_ws[i];
		mutex_lock(&ws->lock);
		if (kport_is_zstd(type)) {
			kvfree(ws->zstd_ws);
			ws->zstd_ws = NULL;
		} else {
			kvfree(ws->zlib.workspace);
			ws->zlib.workspace = NULL;
		}
		mutex_unlock(&ws->lock);
	}
}

static int kport_alloc_ws(enum imgfmt_compression type)
{
	size_t len = kport_is_zstd(type) ? kport_zstd_ws_size() :
			zlib_inflate_workspacesize();
	struct kport_ws *ws;
	unsigned int i;
	void *p;

	for (i = 0; i < kport_nr_slots; i++) {
		p = kvmalloc(len, GFP_KERNEL);
		if (!p) {
			kport_free_ws(type);
			return -ENOMEM;
		}
		ws = &kport_ws[i];
		mutex_lock(&ws->lock);
		if (kport_is_zstd(type))
			ws->zstd_ws = p;
		else
			ws->zlib.workspace = p;
		mutex_unlock(&ws->lock);
	}
	return 0;
}

int imgfmt_decomp_reserve(enum imgfmt_compression type)
{
	unsigned int *users;
	int r = 0;

	if (type == IMGFMT_COMP_NONE)
		return 0;
	users = kport_is_zstd(type) ? &kport_zstd_users : &kport_zlib_users;
	mutex_lock(&kport_ws_users_lock);
	if (!*users)
		r = kport_alloc_ws(type);
	if (!r)
		(*users)++;
	mutex_unlock(&kport_ws_users_lock);
	return r;
}

void imgfmt_decomp_unreserve(enum imgfmt_compression type)
{
	unsigned int *users;

	if (type == IMGFMT_COMP_NONE)
		return;
	users = kport_is_zstd(type) ? &kport_zstd_users : &kport_zlib_users;
	mutex_lock(&kport_ws_users_lock);
	if (*users && !--*users)
		kport_free_ws(type);
	mutex_unlock(&kport_ws_users_lock);
}

/* DEFLATE must fill dst; ZLIB must end within it (imgfmt_port.h). */
static long kport_inflate(struct z_stream_s *zs, enum imgfmt_compression type,
			  const void *src, size_t src_len, void *dst,
			  size_t dst_len)
{
	int window_bits = type == IMGFMT_COMP_ZLIB ? MAX_WBITS : -MAX_WBITS;
	int r;

	if (!zs->workspace)
		return -ENOMEM;
	if (zlib_inflateInit2(zs, window_bits) != Z_OK)
		return -EIO;
	zs->next_in = src;
	zs->avail_in = src_len;
	zs->next_out = dst;
	zs->avail_out = dst_len;
	r = zlib_inflate(zs, Z_FINISH);
	zlib_inflateEnd(zs);
	if (type == IMGFMT_COMP_ZLIB)
		return r == Z_STREAM_END ? (long)(dst_len - zs->avail_out) :
					   -EIO;
	/*
	 * A QCOW stream's length is known only to the sector, so running
	 * out of input or output once the cluster is complete is success.
	 */
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) &&
	    zs->avail_out == 0)
		return dst_len;
	return -EIO;
}

/* Frames until dst is full; input that runs out first is an error. */
static long kport_unzstd(struct kport_ws *ws, const void *src, size_t src_len,
			 void *dst, size_t dst_len)
{
	zstd_in_buffer in = { .src = src, .size = src_len, .pos = 0 };
	zstd_out_buffer out = { .dst = dst, .size = dst_len, .pos = 0 };
	size_t r = 1;

	if (!ws->zstd_ws)
		return -ENOMEM;
	ws->zstd = zstd_init_dstream(IMGFMT_ZSTD_MAX_WINDOW, ws->zstd_ws,
				     kport_zstd_ws_size());
	if (!ws->zstd)
		return -EIO;
	while (out.pos < out.size) {
		r = zstd_decompress_stream(ws->zstd, &out, &in);
		if (zstd_is_error(r))
			return -EIO;
		/* A frame ended (r == 0) or wants more: out of input? */
		if (out.pos < out.size && in.pos == in.size)
			return -EIO;
	}
	/* As QEMU: the cluster's last frame must end with the cluster. */
	return r == 0 ? (long)dst_len : -EIO;
}

long imgfmt_decompress(enum imgfmt_compression type, const void *src,
		       size_t src_len, void *dst, size_t dst_len)
{
	struct kport_ws *ws;
	long r;

	if (type != IMGFMT_COMP_DEFLATE && type != IMGFMT_COMP_ZLIB &&
	    type != IMGFMT_COMP_ZSTD)
		return -EIO;
	if (src_len > UINT_MAX || dst_len > UINT_MAX)
		return -EIO;
	ws = &kport_ws[raw_smp_processor_id() % kport_nr_slots];
	mutex_lock(&ws->lock);
	if (type == IMGFMT_COMP_ZSTD)
		r = kport_unzstd(ws, src, src_len, dst, dst_len);
	else
		r = kport_inflate(&ws->zlib, type, src, src_len, dst, dst_len);
	mutex_unlock(&ws->lock);
	return r;
}
