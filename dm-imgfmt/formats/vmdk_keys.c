// SPDX-License-Identifier: GPL-2.0-only
/*
 * The "key = value" header of a VMDK descriptor (see vmdk_keys.h).  This
 * builds in the kernel and in userspace: no allocation, no libc beyond
 * what both have, every read within the text's length.
 */
#include "vmdk_keys.h"

static const char *const key_names[VMDK_NR_KEYS] = {
	[VMDK_KEY_VERSION] = "version",
	[VMDK_KEY_CID] = "CID",
	[VMDK_KEY_PARENT_CID] = "parentCID",
	[VMDK_KEY_CREATE_TYPE] = "createType",
	[VMDK_KEY_PARENT_HINT] = "parentFileNameHint",
};

/* The kernel's messages: static, one per key and kind of error. */
static const char *const twice_errors[VMDK_NR_KEYS] = {
	[VMDK_KEY_VERSION] = "VMDK descriptor: version given twice",
	[VMDK_KEY_CID] = "VMDK descriptor: CID given twice",
	[VMDK_KEY_PARENT_CID] = "VMDK descriptor: parentCID given twice",
	[VMDK_KEY_CREATE_TYPE] = "VMDK descriptor: createType given twice",
	[VMDK_KEY_PARENT_HINT] = "VMDK descriptor: parentFileNameHint given twice",
};

static const char *const value_errors[VMDK_NR_KEYS] = {
	[VMDK_KEY_VERSION] = "VMDK descriptor: unsupported version",
	[VMDK_KEY_CID] = "VMDK descriptor: bad CID",
	[VMDK_KEY_PARENT_CID] = "VMDK descriptor: bad parentCID",
	[VMDK_KEY_CREATE_TYPE] = "VMDK descriptor: bad createType",
	[VMDK_KEY_PARENT_HINT] = "VMDK descriptor: bad parentFileNameHint",
};

bool vmdk_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

bool vmdk_is_ctrl(char c)
{
	unsigned char u = (unsigned char)c;

	return u < 0x20 || u == 0x7f;
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static void span_advance(struct vmdk_span *sp, size_t n)
{
	sp->s += n;
	sp->len -= n;
}

static void span_trim(struct vmdk_span *sp)
{
	while (sp->len && vmdk_is_blank(*sp->s))
		span_advance(sp, 1);
	while (sp->len && vmdk_is_blank(sp->s[sp->len - 1]))
		sp->len--;
}

static bool span_is(const struct vmdk_span *sp, const char *word)
{
	return sp->len == strlen(word) && !memcmp(sp->s, word, sp->len);
}

void vmdk_lines_init(struct vmdk_lines *t, const char *text, size_t len)
{
	len = strnlen(text, len);
	t->p = text;
	t->end = text + len;
	t->line = 0;
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		t->p += 3;
}

bool vmdk_lines_next(struct vmdk_lines *t, struct vmdk_span *line)
{
	const char *nl;

	if (t->p >= t->end)
		return false;
	nl = memchr(t->p, '\n', (size_t)(t->end - t->p));
	line->s = t->p;
	line->len = (size_t)((nl ? nl : t->end) - t->p);
	t->p = nl ? nl + 1 : t->end;
	t->line++;
	span_trim(line);
	return true;
}

bool vmdk_line_is_comment(const struct vmdk_span *line)
{
	return !line->len || line->s[0] == '#';
}

bool vmdk_split_key_value(struct vmdk_span line, struct vmdk_span *key,
			  struct vmdk_span *value)
{
	key->s = line.s;
	key->len = 0;
	while (key->len < line.len && is_key_char(line.s[key->len]))
		key->len++;
	if (!key->len)
		return false;
	span_advance(&line, key->len);
	while (line.len && vmdk_is_blank(*line.s))
		span_advance(&line, 1);
	if (!line.len || *line.s != '=')
		return false;
	span_advance(&line, 1);
	span_trim(&line);
	*value = line;
	return true;
}

enum vmdk_key vmdk_key_of(const struct vmdk_span *key)
{
	unsigned int k;

	for (k = 0; k < VMDK_NR_KEYS; k++)
		if (span_is(key, key_names[k]))
			return (enum vmdk_key)k;
	return VMDK_NR_KEYS;
}

const char *vmdk_key_name(enum vmdk_key k)
{
	return (unsigned int)k < VMDK_NR_KEYS ? key_names[k] : "?";
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A content ID: one to eight hex digits, "0x" allowed before them. */
static bool cid_value(struct vmdk_span sp, u32 *v)
{
	int digit;

	if (sp.len > 2 && sp.s[0] == '0' && (sp.s[1] == 'x' || sp.s[1] == 'X'))
		span_advance(&sp, 2);
	if (!sp.len || sp.len > 8)
		return false;
	*v = 0;
	for (; sp.len; span_advance(&sp, 1)) {
		digit = hex_digit(*sp.s);
		if (digit < 0)
			return false;
		*v = *v << 4 | (u32)digit;
	}
	return true;
}

/* Strip the quotes of a "quoted" value; no quote or control inside. */
static bool unquote(struct vmdk_span *v)
{
	size_t i;

	if (v->len && v->s[0] == '"') {
		if (v->len < 2 || v->s[v->len - 1] != '"')
			return false;
		span_advance(v, 1);
		v->len--;
	}
	for (i = 0; i < v->len; i++)
		if (v->s[i] == '"' || vmdk_is_ctrl(v->s[i]))
			return false;
	return true;
}

static int take_value(struct vmdk_header *h, enum vmdk_key k,
		      struct vmdk_span v)
{
	switch (k) {
	case VMDK_KEY_VERSION:
		if (v.len != 1 || v.s[0] < '1' || v.s[0] > '3')
			return VMDK_KEY_BAD_VALUE;
		h->version = (unsigned int)(v.s[0] - '0');
		return 0;
	case VMDK_KEY_CID:
		if (!cid_value(v, &h->cid))
			return VMDK_KEY_BAD_VALUE;
		h->has_cid = true;
		return 0;
	case VMDK_KEY_PARENT_CID:
		if (!cid_value(v, &h->parent_cid))
			return VMDK_KEY_BAD_VALUE;
		h->has_parent_cid = true;
		return 0;
	case VMDK_KEY_CREATE_TYPE:
		if (!v.len || v.len > VMDK_CREATE_TYPE_MAX)
			return VMDK_KEY_BAD_VALUE;
		h->create_type = v;
		return 0;
	case VMDK_KEY_PARENT_HINT:
		/* An empty hint names no parent. */
		if (v.len > VMDK_PARENT_HINT_MAX)
			return VMDK_KEY_TOO_LONG;
		h->parent_hint = v;
		return 0;
	default:
		return 0;
	}
}

int vmdk_header_take(struct vmdk_header *h, enum vmdk_key k,
		     unsigned int line, struct vmdk_span value)
{
	if ((unsigned int)k >= VMDK_NR_KEYS)
		return 0;
	if (h->line[k])
		return VMDK_KEY_TWICE;
	h->line[k] = line;
	if (!unquote(&value))
		return VMDK_KEY_BAD_QUOTING;
	return take_value(h, k, value);
}

int vmdk_header_parse(const char *text, size_t len, struct vmdk_header *h,
		      unsigned int *line, const char **err)
{
	struct vmdk_span l, key, value;
	struct vmdk_lines t;
	enum vmdk_key k;
	int r;

	memset(h, 0, sizeof(*h));
	vmdk_lines_init(&t, text, len);
	while (vmdk_lines_next(&t, &l)) {
		if (vmdk_line_is_comment(&l) ||
		    !vmdk_split_key_value(l, &key, &value))
			continue;
		k = vmdk_key_of(&key);
		r = vmdk_header_take(h, k, t.line, value);
		if (!r)
			continue;
		*line = t.line;
		*err = r == VMDK_KEY_TWICE ? twice_errors[k] : value_errors[k];
		return -EINVAL;
	}
	return 0;
}

bool vmdk_header_names_parent(const struct vmdk_header *h)
{
	return h->parent_hint.len ||
	       (h->has_parent_cid && h->parent_cid != VMDK_CID_NONE);
}
