/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Strings taken from an image (feature names, file names, descriptor
 * lines, snapshot names) may hold any byte.  Before one reaches a log line
 * or a terminal it goes through imgfmt_escape(), so that it stays on one
 * line, cannot forge another message and has a bounded length.
 */
#ifndef IMGFMT_ESCAPE_H
#define IMGFMT_ESCAPE_H

#include "imgfmt_port.h"

/*
 * Longest escaped text a caller should keep, NUL included: longer input is
 * cut and ends in "...".
 */
#define IMGFMT_ESCAPED_MAX	256

/*
 * Write the first src_len bytes of src (stopping early at a NUL) into dst
 * as printable ASCII: bytes outside 0x20-0x7e and the backslash become
 * \xNN.  dst is always NUL-terminated; when the escaped text does not fit
 * in dst_len - 1 bytes it is cut at a whole character and ends in "...".
 * dst_len must be at least 4.  Returns dst.
 */
char *imgfmt_escape(char *dst, size_t dst_len, const void *src,
		    size_t src_len);

#endif /* IMGFMT_ESCAPE_H */
