// SPDX-License-Identifier: GPL-2.0-only
/*
 * MD5 as RFC 1321 defines it.  Kept apart from the test program so that it
 * is built optimised: the tests hash hundreds of MiB under emulation, while
 * the kselftest harness needs its own file built without optimisation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "md5.h"

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;

/* K[i] = floor(|sin(i + 1)| * 2^32), computed once as the RFC says. */
static u32 md5_k[64];
static const u8 md5_shift[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 },
};

static void __attribute__((constructor)) md5_tables(void)
{
	int i;

	for (i = 0; i < 64; i++)
		md5_k[i] = (u32)(fabs(sin(i + 1.0)) * 4294967296.0);
}

void md5_init(struct md5 *m)
{
	m->h[0] = 0x67452301;
	m->h[1] = 0xefcdab89;
	m->h[2] = 0x98badcfe;
	m->h[3] = 0x10325476;
	m->len = 0;
	m->fill = 0;
}

static u32 rol32(u32 x, unsigned int n)
{
	return (x << n) | (x >> (32 - n));
}

static void md5_block(struct md5 *m, const u8 *p)
{
	u32 w[16], a = m->h[0], b = m->h[1], c = m->h[2], d = m->h[3], f, t;
	unsigned int i, g;

	for (i = 0; i < 16; i++)
		w[i] = p[4 * i] | p[4 * i + 1] << 8 | p[4 * i + 2] << 16 |
		       (u32)p[4 * i + 3] << 24;
	for (i = 0; i < 64; i++) {
		switch (i / 16) {
		case 0:
			f = (b & c) | (~b & d);
			g = i;
			break;
		case 1:
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
			break;
		case 2:
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
			break;
		default:
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
			break;
		}
		t = d;
		d = c;
		c = b;
		b += rol32(a + f + md5_k[i] + w[g], md5_shift[i / 16][i % 4]);
		a = t;
	}
	m->h[0] += a;
	m->h[1] += b;
	m->h[2] += c;
	m->h[3] += d;
}

void md5_update(struct md5 *m, const void *data, size_t len)
{
	const u8 *p = data;
	size_t n;

	m->len += len;
	if (m->fill) {
		n = 64 - m->fill < len ? 64 - m->fill : len;
		memcpy(m->buf + m->fill, p, n);
		m->fill += n;
		p += n;
		len -= n;
		if (m->fill < 64)
			return;
		md5_block(m, m->buf);
		m->fill = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		md5_block(m, p);
	memcpy(m->buf, p, len);
	m->fill = len;
}

void md5_hex(struct md5 *m, char out[33])
{
	static const u8 pad[64] = { 0x80 };
	u64 bits = m->len * 8;
	u8 lenbuf[8];
	int i;

	for (i = 0; i < 8; i++)
		lenbuf[i] = bits >> (8 * i);
	md5_update(m, pad, m->fill < 56 ? 56 - m->fill : 120 - m->fill);
	md5_update(m, lenbuf, 8);
	for (i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", (m->h[i / 4] >> (8 * (i % 4))) & 0xff);
}

void md5_buf(const void *p, size_t len, char out[33])
{
	struct md5 m;

	md5_init(&m);
	md5_update(&m, p, len);
	md5_hex(&m, out);
}
