// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace decompression for the shared format code, with zlib and
 * libzstd, following the same rules as the kernel side (kport.c): the
 * output must be filled exactly; the input may hold more than the stream.
 */
#include <zlib.h>
#include <zstd.h>

#include "imgfmt_port.h"

/* Same window bound as the kernel, so both refuse the same streams. */
#define UDECOMP_ZSTD_MAX_WINDOW_LOG	21

struct imgfmt_decomp {
	z_stream zlib;
	ZSTD_DStream *zstd;
};

struct imgfmt_decomp *imgfmt_decomp_create(void)
{
	return calloc(1, sizeof(struct imgfmt_decomp));
}

void imgfmt_decomp_destroy(struct imgfmt_decomp *d)
{
	if (!d)
		return;
	ZSTD_freeDStream(d->zstd);
	free(d);
}

static long u_inflate(struct imgfmt_decomp *d, int window_bits,
		      const void *src, size_t src_len, void *dst,
		      size_t dst_len)
{
	z_stream *zs = &d->zlib;
	int r;

	if (src_len > UINT_MAX || dst_len > UINT_MAX)
		return -EIO;
	memset(zs, 0, sizeof(*zs));
	if (inflateInit2(zs, window_bits) != Z_OK)
		return -ENOMEM;
	zs->next_in = (Bytef *)src;
	zs->avail_in = (uInt)src_len;
	zs->next_out = dst;
	zs->avail_out = (uInt)dst_len;
	r = inflate(zs, Z_FINISH);
	inflateEnd(zs);
	if (r == Z_STREAM_END)
		return (long)(dst_len - zs->avail_out);
	if ((r == Z_BUF_ERROR || r == Z_OK) && zs->avail_out == 0)
		return (long)dst_len;
	return -EIO;
}

static long u_unzstd(struct imgfmt_decomp *d, const void *src, size_t src_len,
		     void *dst, size_t dst_len)
{
	ZSTD_inBuffer in = { .src = src, .size = src_len, .pos = 0 };
	ZSTD_outBuffer out = { .dst = dst, .size = dst_len, .pos = 0 };
	size_t r;

	if (!d->zstd) {
		d->zstd = ZSTD_createDStream();
		if (!d->zstd)
			return -ENOMEM;
	}
	if (ZSTD_isError(ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_and_parameters)) ||
	    ZSTD_isError(ZSTD_DCtx_setParameter(d->zstd, ZSTD_d_windowLogMax,
						UDECOMP_ZSTD_MAX_WINDOW_LOG)))
		return -EIO;
	while (out.pos < out.size) {
		r = ZSTD_decompressStream(d->zstd, &out, &in);
		if (ZSTD_isError(r))
			return -EIO;
		if (r == 0)
			return (long)out.pos;	/* the frame ended */
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
		return u_inflate(d, -MAX_WBITS, src, src_len, dst, dst_len);
	case IMGFMT_COMP_ZLIB:
		return u_inflate(d, MAX_WBITS, src, src_len, dst, dst_len);
	case IMGFMT_COMP_ZSTD:
		return u_unzstd(d, src, src_len, dst, dst_len);
	default:
		return -EIO;
	}
}
