// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel side of imgfmt_port.h: memory for tables, log lines and
 * synchronous reads from the image device for the shared format code.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
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

/* Read len bytes at off; off, len and buf are aligned to the block size. */
static int kport_read_aligned(struct block_device *bdev, u64 off, u8 *buf,
			      size_t len)
{
	struct bio *bio;
	size_t added;
	int r;

	while (len) {
		bio = bio_alloc(bdev, min_t(size_t, BIO_MAX_VECS,
					    DIV_ROUND_UP(len, PAGE_SIZE) + 1),
				REQ_OP_READ | REQ_META | REQ_SYNC, GFP_NOIO);
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
		return kport_read_aligned(kdev->bdev, off, buf, len);
	bounce = kvmalloc(end - start, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	r = kport_read_aligned(kdev->bdev, start, bounce, end - start);
	if (!r)
		memcpy(buf, bounce + (off - start), len);
	kvfree(bounce);
	return r;
}

void imgfmt_kdev_init(struct imgfmt_kdev *kdev, struct block_device *bdev)
{
	kdev->bdev = bdev;
	kdev->dev.size = bdev_nr_bytes(bdev);
	kdev->dev.read = kport_dev_read;
	kdev->dev.read_align = bdev_logical_block_size(bdev);
	kdev->dev.priv = kdev;
}

struct imgfmt_decomp {
	struct z_stream_s zlib;
	/* The zstd workspace is made on first use: most images never need it. */
	void *zstd_workspace;
	size_t zstd_workspace_size;
	zstd_dstream *zstd;
};

struct imgfmt_decomp *imgfmt_decomp_create(void)
{
	struct imgfmt_decomp *d = kzalloc(sizeof(*d), GFP_KERNEL);

	if (!d)
		return NULL;
	d->zlib.workspace = kvmalloc(zlib_inflate_workspacesize(), GFP_KERNEL);
	if (!d->zlib.workspace) {
		kfree(d);
		return NULL;
	}
	return d;
}

void imgfmt_decomp_destroy(struct imgfmt_decomp *d)
{
	if (!d)
		return;
	kvfree(d->zlib.workspace);
	kvfree(d->zstd_workspace);
	kfree(d);
}

static long kport_inflate(struct imgfmt_decomp *d, int window_bits,
			  const void *src, size_t src_len, void *dst,
			  size_t dst_len)
{
	struct z_stream_s *zs = &d->zlib;
	int r;

	if (zlib_inflateInit2(zs, window_bits) != Z_OK)
		return -EIO;
	zs->next_in = src;
	zs->avail_in = src_len;
	zs->next_out = dst;
	zs->avail_out = dst_len;
	r = zlib_inflate(zs, Z_FINISH);
	zlib_inflateEnd(zs);
	/*
	 * The stream's length is known only to the sector, so running out of
	 * input or output once the cluster is complete is success.
	 */
	if (r == Z_STREAM_END)
		return dst_len - zs->avail_out;
	if ((r == Z_BUF_ERROR || r == Z_OK) && zs->avail_out == 0)
		return dst_len;
	return -EIO;
}

static long kport_unzstd(struct imgfmt_decomp *d, const void *src,
			 size_t src_len, void *dst, size_t dst_len)
{
	zstd_in_buffer in = { .src = src, .size = src_len, .pos = 0 };
	zstd_out_buffer out = { .dst = dst, .size = dst_len, .pos = 0 };
	size_t r;

	if (!d->zstd_workspace) {
		d->zstd_workspace_size =
			zstd_dstream_workspace_bound(IMGFMT_ZSTD_MAX_WINDOW);
		d->zstd_workspace = kvmalloc(d->zstd_workspace_size,
					     GFP_KERNEL);
		if (!d->zstd_workspace)
			return -ENOMEM;
	}
	d->zstd = zstd_init_dstream(IMGFMT_ZSTD_MAX_WINDOW, d->zstd_workspace,
				    d->zstd_workspace_size);
	if (!d->zstd)
		return -EIO;
	while (out.pos < out.size) {
		r = zstd_decompress_stream(d->zstd, &out, &in);
		if (zstd_is_error(r))
			return -EIO;
		if (r == 0)
			return out.pos;		/* the frame ended */
		if (in.pos == in.size)
			break;
	}
	return out.pos == out.size ? (long)out.pos : -EIO;
}

long imgfmt_decompress(struct imgfmt_decomp *d, enum imgfmt_compression type,
		       const void *src, size_t src_len, void *dst,
		       size_t dst_len)
{
	switch (type) {
	case IMGFMT_COMP_DEFLATE:
		return kport_inflate(d, -MAX_WBITS, src, src_len, dst, dst_len);
	case IMGFMT_COMP_ZLIB:
		return kport_inflate(d, MAX_WBITS, src, src_len, dst, dst_len);
	case IMGFMT_COMP_ZSTD:
		return kport_unzstd(d, src, src_len, dst, dst_len);
	default:
		return -EIO;
	}
}
