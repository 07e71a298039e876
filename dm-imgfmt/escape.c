// SPDX-License-Identifier: GPL-2.0-only
/*
 * Escaping of image strings for logs and terminals; see escape.h.  Shared
 * by the kernel module and the userspace helper.
 */
#include "escape.h"

static bool escape_plain(u8 c)
{
	return c >= 0x20 && c < 0x7f && c != '\\';
}

static size_t escape_width(u8 c)
{
	return escape_plain(c) ? 1 : 4;
}

/* Does the escaped text of s[0..len) (to a NUL) fit in room bytes? */
static bool escape_fits(const u8 *s, size_t len, size_t room)
{
	size_t i, n = 0;

	for (i = 0; i < len && s[i]; i++) {
		n += escape_width(s[i]);
		if (n > room)
			return false;
	}
	return true;
}

char *imgfmt_escape(char *dst, size_t dst_len, const void *src,
		    size_t src_len)
{
	static const char hex[] = "0123456789abcdef";
	const u8 *s = src;
	size_t i, n = 0, need;
	bool rest_fits = false;

	if (dst_len < 4) {
		if (dst_len)
			dst[0] = '\0';
		return dst;
	}
	for (i = 0; i < src_len && s[i]; i++) {
		need = escape_width(s[i]);
		/*
		 * Near the end, go on only if all the rest fits; else stop
		 * while "..." still does (each earlier step left room).
		 */
		if (!rest_fits && n + need + 4 > dst_len) {
			rest_fits = escape_fits(s + i, src_len - i,
						dst_len - 1 - n);
			if (!rest_fits) {
				memcpy(dst + n, "...", 3);
				n += 3;
				break;
			}
		}
		if (need == 1) {
			dst[n++] = s[i];
		} else {
			dst[n++] = '\\';
			dst[n++] = 'x';
			dst[n++] = hex[s[i] >> 4];
			dst[n++] = hex[s[i] & 15];
		}
	}
	dst[n] = '\0';
	return dst;
}
