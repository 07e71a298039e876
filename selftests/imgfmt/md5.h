/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * MD5 (RFC 1321), so that the in-VM tests compare device contents with the
 * md5sums QEMU's output got on the host without any library.
 */
#ifndef IMGFMT_TEST_MD5_H
#define IMGFMT_TEST_MD5_H

#include <stddef.h>
#include <stdint.h>

struct md5 {
	uint32_t h[4];
	uint64_t len;
	uint8_t buf[64];
	uint32_t fill;
};

void md5_init(struct md5 *m);
void md5_update(struct md5 *m, const void *data, size_t len);
/* Finish and write 32 lowercase hex digits and a NUL to out. */
void md5_hex(struct md5 *m, char out[33]);
void md5_buf(const void *p, size_t len, char out[33]);

#endif /* IMGFMT_TEST_MD5_H */
