// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace decompression for the shared format code, with zlib and
 * libzstd, following the same rules as the kernel side (kport.c; the rules
 * are in imgfmt_port.h).  Each thread keeps its own zstd stream.
 */
#include <pthread.h>
#include <zlib.h>
#include <zstd.h>

#include "imgfmt_port.h"

/* Same window bound as the kernel, so both refuse the same streams. */
#define UDECOMP_ZSTD_MAX_WINDOW_LOG	21

static pthread_key_t udecomp_key;
static pthread_once_t udecomp_once = PTHREAD_ONCE_INIT;

static void udecomp_free_stream(void *p)
{
	ZSTD_freeDStream(p);
}

static void udecomp_make_key(void)
{
	if (pthread_key_create(&udecomp_key, udecomp_free_stream))
		abort();
}

/* This thread's zstd stream, made on first use. */
static ZSTD_DStream *udecomp_zstd(void)
{
	ZSTD_DStream *z;

	pthread_once(&udecomp_once, udecomp_make_key);
	z = pthread_getspecific(udecomp_key);
	if (!z) {
		z = ZSTD_createDStream();
		if (z && pthread_setspecific(udecomp_key, z)) {
			ZSTD_freeDStream(z);
			z = NULL;
		}
	}
	return z;
}

/* Free the calling thread's stream at exit (keys only run for others). */
static void __attribute__((destructor)) udecomp_exit(void)
{
	ZSTD_DStream *z;

	if (pthread_once(&udecomp_once, udecomp_make_key))
		return;
	z = pthread_getspecific(udecomp_key);
	pthread_setspecific(udecomp_key, NULL);
	ZSTD_freeDStream(z);
}

static long u_inflate(enum imgfmt_compression type, const void *src,
		      size_t src_len, void *dst, size_t dst_len)
{
	int window_bits = type == IMGFMT_COMP_ZLIB ? MAX_WBITS : -MAX_WBITS;
	z_stream zs;
	int r;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, window_bits) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)src;
	zs.avail_in = (uInt)src_len;
	zs.next_out = dst;
	zs.avail_out = (uInt)dst_len;
	r = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	if (type == IMGFMT_COMP_ZLIB)
		return r == Z_STREAM_END ? (long)(dst_len - zs.avail_out) :
					   -EIO;
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) &&
	    zs.avail_out == 0)
		return (long)dst_len;
	return -EIO;
}

static long u_unzstd(const void *src, size_t src_len, void *dst,
		     size_t dst_len)
{
	ZSTD_inBuffer in = { .src = src, .size = src_len, .pos = 0 };
	ZSTD_outBuffer out = { .dst = dst, .size = dst_len, .pos = 0 };
	ZSTD_DStream *z = udecomp_zstd();
	size_t r = 1;

	if (!z)
		return -ENOMEM;
	if (ZSTD_isError(ZSTD_DCtx_reset(z, ZSTD_reset_session_and_parameters)) ||
	    ZSTD_isError(ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax,
						UDECOMP_ZSTD_MAX_WINDOW_LOG)))
		return -EIO;
	while (out.pos < out.size) {
		r = ZSTD_decompressStream(z, &out, &in);
		if (ZSTD_isError(r))
			return -EIO;
		if (out.pos < out.size && in.pos == in.size)
			return -EIO;
	}
	/* As QEMU: the cluster's last frame must end with the cluster. */
	return r == 0 ? (long)dst_len : -EIO;
}

long imgfmt_decompress(enum imgfmt_compression type, const void *src,
		       size_t src_len, void *dst, size_t dst_len)
{
	if (src_len > UINT_MAX || dst_len > UINT_MAX)
		return -EIO;
	switch (type) {
	case IMGFMT_COMP_DEFLATE:
	case IMGFMT_COMP_ZLIB:
		return u_inflate(type, src, src_len, dst, dst_len);
	case IMGFMT_COMP_ZSTD:
		return u_unzstd(src, src_len, dst, dst_len);
	default:
		return -EIO;
	}
}
