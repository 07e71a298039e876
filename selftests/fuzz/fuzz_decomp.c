// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: arbitrary bytes as a compressed cluster.  Byte 0 picks
 * the compression type, byte 1 the cluster size (512 B to 2 MiB); the rest
 * is the stream.  Decoding must stay inside its buffers and report either
 * the bytes produced (never more than the cluster) or -EIO.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgfmt_port.h"

static u8 *out;

#define FUZZ_MAX_CLUSTER	(2U << 20)

int LLVMFuzzerTestOneInput(const u8 *data, size_t size);
int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	static const enum imgfmt_compression types[] = {
		IMGFMT_COMP_NONE, IMGFMT_COMP_DEFLATE, IMGFMT_COMP_ZLIB,
		IMGFMT_COMP_ZSTD,
	};
	size_t cluster;
	long r;

	if (size < 2)
		return 0;
	if (!out) {
		out = malloc(FUZZ_MAX_CLUSTER);
		if (!out)
			abort();
	}
	cluster = (size_t)512 << (data[1] % 13);
	r = imgfmt_decompress(types[data[0] % ARRAY_SIZE(types)], data + 2,
			      size - 2, out, cluster);
	if (r != -EIO && r != -ENOMEM && (r < 0 || (size_t)r > cluster))
		abort();
	return 0;
}
