/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The thin interface between the shared format code and its host.
 *
 * Everything under dm-imgfmt/formats/ and dm-imgfmt/mcache.c builds both in
 * the kernel module and in userspace (the imgfmt helper, unit tests and
 * fuzzers), so that the code tested in userspace is the code the kernel runs.
 * That code may only use what this header provides: fixed-width and endian
 * types, errno values, the small list/hash helpers, a lock, acquire/release
 * publication (smp_load_acquire, smp_store_release, READ_ONCE, WRITE_ONCE),
 * memory for tables and synchronous reads from the image device.
 */
#ifndef IMGFMT_PORT_H
#define IMGFMT_PORT_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/slab.h>
#include <linux/math64.h>
#include <asm/barrier.h>
#include <asm/byteorder.h>
#else
#include "uport.h"
#endif

/*
 * The device holding the image, as the format code sees it: a size, a way
 * to read bytes from it and, when it is open for writing, to write and
 * flush.  The host fills in the callbacks.
 */
struct imgfmt_dev {
	u64 size;		/* bytes */
	/* Blocking read of len bytes at byte offset off; 0 or -errno. */
	int (*read)(struct imgfmt_dev *dev, u64 off, void *buf, size_t len);
	/*
	 * Reads whose offset, length and buffer are multiples of this (a
	 * power of two; 0 means 1) go straight to the device; others may
	 * need a bounce buffer.
	 */
	u32 read_align;
	/*
	 * Blocking write of len bytes at byte offset off (any offset: the
	 * host reads and rewrites partial blocks, so callers never write a
	 * block that another writer shares); NULL on a read-only device.
	 * Durable only after flush.
	 */
	int (*write)(struct imgfmt_dev *dev, u64 off, const void *buf,
		     size_t len);
	/* Make every write completed so far durable; 0 or -errno. */
	int (*flush)(struct imgfmt_dev *dev);
	/*
	 * Tell the device nothing uses [off, off + len) any more, so that
	 * a file under a loop device can punch the hole.  Advisory: what
	 * the range reads afterwards is unknown; NULL where unsupported.
	 */
	void (*discard)(struct imgfmt_dev *dev, u64 off, u64 len);
	/*
	 * Make [off, off + len) read as zeroes without writing the zeroes
	 * (write-zeroes: a loop device punches the file's hole); off and len
	 * multiples of write_align.  Durable only after flush.  0, or
	 * -errno when the device cannot do it cheaply (NULL: never).
	 */
	int (*zero)(struct imgfmt_dev *dev, u64 off, u64 len);
	/* The unit writes cannot split (the logical block size); 0 means 512. */
	u32 write_align;
	void *priv;
};

/* Does the device hold all of [off, off + len)? */
static inline bool imgfmt_dev_has(const struct imgfmt_dev *dev, u64 off,
				  u64 len)
{
	return off <= dev->size && len <= dev->size - off;
}

static inline int imgfmt_dev_read(struct imgfmt_dev *dev, u64 off, void *buf,
				  size_t len)
{
	if (!imgfmt_dev_has(dev, off, len))
		return -EIO;
	return dev->read(dev, off, buf, len);
}

static inline int imgfmt_dev_write(struct imgfmt_dev *dev, u64 off,
				   const void *buf, size_t len)
{
	if (!dev->write)
		return -EROFS;
	if (!imgfmt_dev_has(dev, off, len))
		return -EIO;
	return dev->write(dev, off, buf, len);
}

static inline int imgfmt_dev_flush(struct imgfmt_dev *dev)
{
	return dev->flush ? dev->flush(dev) : -EROFS;
}

static inline void imgfmt_dev_discard(struct imgfmt_dev *dev, u64 off,
				      u64 len)
{
	if (dev->discard && len && imgfmt_dev_has(dev, off, len))
		dev->discard(dev, off, len);
}

static inline int imgfmt_dev_zero(struct imgfmt_dev *dev, u64 off, u64 len)
{
	if (!dev->zero)
		return -EOPNOTSUPP;
	if (!imgfmt_dev_has(dev, off, len))
		return -EIO;
	return dev->zero(dev, off, len);
}

/*
 * Memory for metadata tables and other large buffers.  In the kernel these
 * may come from vmalloc and must only be called where sleeping is allowed
 * (constructor or worker); the worker runs them in a NOIO scope.
 */
void *imgfmt_alloc_large(size_t len);
void *imgfmt_zalloc_large(size_t len);
void imgfmt_free_large(void *p);

/*
 * Decompression with the host's libraries (kernel: zlib_inflate and zstd;
 * userspace: zlib and libzstd), which keeps its own workspaces: per thread
 * in userspace, shared by all devices in the kernel (kport.c).
 * imgfmt_decompress() decodes one stream of at most src_len bytes into dst
 * and returns the bytes produced, by the rules of the formats that use each
 * type, which are QEMU's:
 * - DEFLATE (QCOW, QCOW2) and ZSTD (QCOW2, one frame or several): the
 *   output must fill dst; the input may hold more than the stream, whose
 *   exact length is known only to the sector.  A deflate stream may go on
 *   past dst; the last zstd frame must end exactly there.  Returns
 *   dst_len.
 * - ZLIB (VMDK grains): the stream must end within src_len and dst_len.
 *   Returns the bytes it produced, which may be fewer than dst_len.
 * Anything else (corrupt data, input that runs out first, output that
 * would not fit) gives -EIO.
 */
enum imgfmt_compression {
	IMGFMT_COMP_NONE,
	IMGFMT_COMP_DEFLATE,	/* raw deflate (QCOW, QCOW2 zlib) */
	IMGFMT_COMP_ZLIB,	/* zlib-wrapped deflate (VMDK grains) */
	IMGFMT_COMP_ZSTD,
};

long imgfmt_decompress(enum imgfmt_compression type, const void *src,
		       size_t src_len, void *dst, size_t dst_len);

/* A note for the log (kernel) or stderr (userspace). */
__printf(1, 2) void imgfmt_log(const char *fmt, ...);

/* Rate-limited report of corruption found while mapping. */
void imgfmt_report_corruption(const char *fmt_name, const char *what,
			      u64 where);

#endif /* IMGFMT_PORT_H */
