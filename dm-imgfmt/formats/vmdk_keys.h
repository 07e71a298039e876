/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The header of a VMDK descriptor: its "key = value" lines (version, CID,
 * parentCID, createType, parentFileNameHint), shared by the kernel, which
 * reads the descriptor a hosted sparse extent embeds to tell a delta disk,
 * and the helper's full descriptor parser (userspace/vmdk_desc.c), which
 * adds the extent lines on top.
 *
 * The text is hostile: it is walked within its length, never copied, and
 * a header value that does not parse is an error, not a default.
 */
#ifndef IMGFMT_VMDK_KEYS_H
#define IMGFMT_VMDK_KEYS_H

#include "../imgfmt_port.h"

/* parentCID of a disk without a parent. */
#define VMDK_CID_NONE		0xffffffffU
/* Bytes of a createType value and of a parentFileNameHint. */
#define VMDK_CREATE_TYPE_MAX	63
#define VMDK_PARENT_HINT_MAX	4095

/* A piece of the text: not NUL-terminated. */
struct vmdk_span {
	const char *s;
	size_t len;
};

/* The lines of a text not read yet. */
struct vmdk_lines {
	const char *p, *end;
	unsigned int line;	/* number of the line last returned */
};

enum vmdk_key {
	VMDK_KEY_VERSION,
	VMDK_KEY_CID,
	VMDK_KEY_PARENT_CID,
	VMDK_KEY_CREATE_TYPE,
	VMDK_KEY_PARENT_HINT,
	VMDK_NR_KEYS,
};

/* Why a header line was refused. */
enum vmdk_key_error {
	VMDK_KEY_TWICE = 1,	/* the key was given before */
	VMDK_KEY_BAD_QUOTING,	/* an unbalanced quote, a control character */
	VMDK_KEY_BAD_VALUE,	/* not a value of this key */
	VMDK_KEY_TOO_LONG,	/* parentFileNameHint longer than the cap */
};

struct vmdk_header {
	unsigned int version;		/* 1 to 3; 0: no version line */
	bool has_cid, has_parent_cid;
	u32 cid, parent_cid;
	struct vmdk_span create_type;	/* in the text; len 0: none */
	struct vmdk_span parent_hint;	/* in the text; len 0: none */
	unsigned int line[VMDK_NR_KEYS];	/* where each key is; 0: absent */
};

/*
 * Start reading text of len bytes; it ends earlier at a NUL byte (an
 * embedded descriptor is NUL-padded), and a UTF-8 byte order mark is
 * skipped.
 */
void vmdk_lines_init(struct vmdk_lines *t, const char *text, size_t len);

/* The next line without its end (LF or CRLF) and the blanks around it. */
bool vmdk_lines_next(struct vmdk_lines *t, struct vmdk_span *line);

/* Blank lines and '#' comments. */
bool vmdk_line_is_comment(const struct vmdk_span *line);

bool vmdk_is_blank(char c);
bool vmdk_is_ctrl(char c);

/*
 * Split "key = value" (the key made of letters, digits, '.', '_', '-');
 * false when the line is not of that form.
 */
bool vmdk_split_key_value(struct vmdk_span line, struct vmdk_span *key,
			  struct vmdk_span *value);

/* Which header key this is, or VMDK_NR_KEYS for any other key. */
enum vmdk_key vmdk_key_of(const struct vmdk_span *key);
const char *vmdk_key_name(enum vmdk_key k);

/*
 * Take the value of header key k from line number line into h: 0, or a
 * vmdk_key_error.  The value is "quoted" or a bare word; a quoted one
 * comes without its quotes.
 */
int vmdk_header_take(struct vmdk_header *h, enum vmdk_key k,
		     unsigned int line, struct vmdk_span value);

/*
 * The header of a whole descriptor, other lines (extents, the disk
 * database, anything else) passed over.  0, or -EINVAL with *err a static
 * message naming the key and *line its line.
 */
int vmdk_header_parse(const char *text, size_t len, struct vmdk_header *h,
		      unsigned int *line, const char **err);

/* Does it name a parent: a parentFileNameHint, or a parentCID? */
bool vmdk_header_names_parent(const struct vmdk_header *h);

#endif /* IMGFMT_VMDK_KEYS_H */
