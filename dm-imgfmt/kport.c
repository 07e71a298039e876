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

#include "imgfmt_port.h"
#include "kport.h"

#define DM_MSG_PREFIX "imgfmt"

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
	kdev->dev.priv = kdev;
}
