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

char *imgfmt_escape(char *dst, size_t dst_len, const void *src,
		    size_t src_len)
{
	static const char hex[] = "0123456789abcdef";
	const u8 *s = src;
	size_t i, n = 0, need;

	if (dst_len < 4) {
		if (dst_len)
			dst[0] = '\0';
		return dst;
	}
	for (i = 0; i < src_len && s[i]; i++) {
		need = escape_plain(s[i]) ? 1 : 4;
		/* Room for this character, and for "..." if more follows. */
		if (n + need + 1 > dst_len ||
		    (i + 1 < src_len && s[i + 1] && n + need + 4 > dst_len)) {
			/* The last step left room for it (see the test). */
			memcpy(dst + n, "...", 3);
			n += 3;
			break;
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
