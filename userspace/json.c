// SPDX-License-Identifier: GPL-2.0-only
/*
 * The JSON writer of `imgfmt info --output=json`; see json.h.
 */
#include <string.h>

#include "json.h"

/*
 * The length of the valid UTF-8 sequence at s (at most n bytes, s[0] at
 * least 0x80) with its code point in *cp, or 0 when it is not valid:
 * overlong forms, surrogates and code points past U+10FFFF are not.
 */
static size_t utf8_len(const unsigned char *s, size_t n, unsigned int *cp)
{
	unsigned int c, min;
	size_t len, i;

	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		c = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* One byte below 0x80: the short escapes where JSON has them. */
static void write_ascii(FILE *f, unsigned char c)
{
	static const char shorts[] = "\"\"\\\\\bb\ff\nn\rr\tt";
	const char *p;

	if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') {
		fputc(c, f);
		return;
	}
	for (p = shorts; *p; p += 2) {
		if ((unsigned char)p[0] == c) {
			fprintf(f, "\\%c", p[1]);
			return;
		}
	}
	fprintf(f, "\\u%04x", c);
}

/* Write the character at p (left bytes remain); returns its length. */
static size_t write_char(FILE *f, const unsigned char *p, size_t left)
{
	unsigned int cp = 0;
	size_t len;

	if (*p < 0x80) {
		write_ascii(f, *p);
		return 1;
	}
	len = utf8_len(p, left, &cp);
	if (!len) {
		/* Not UTF-8: the byte, as the code point of the same value. */
		fprintf(f, "\\u%04x", *p);
		return 1;
	}
	if (cp < 0xa0)		/* C1 controls: terminals obey them */
		fprintf(f, "\\u%04x", (unsigned int)cp);
	else
		fwrite(p, 1, len, f);
	return len;
}

void json_write_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s), len;

	fputc('"', f);
	while (left) {
		len = write_char(f, p, left);
		p += len;
		left -= len;
	}
	fputc('"', f);
}

/* Start a member (with its key) or an array element on a line of its own. */
static void json_member(struct json *j, const char *key)
{
	unsigned int i;

	fputs(j->has_members ? ",\n" : "\n", j->f);
	for (i = 0; i < j->depth; i++)
		fputs("    ", j->f);
	if (key) {
		json_write_string(j->f, key);
		fputs(": ", j->f);
	}
	j->has_members = true;
}

static void json_open(struct json *j, const char *key, char open, char close)
{
	if (j->depth >= JSON_MAX_DEPTH)
		return;
	if (j->depth)
		json_member(j, key);
	fputc(open, j->f);
	j->close[j->depth++] = close;
	j->has_members = false;
}

void json_begin(struct json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	json_open(j, NULL, '{', '}');
}

void json_begin_array(struct json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	json_open(j, NULL, '[', ']');
}

void json_object(struct json *j, const char *key)
{
	json_open(j, key, '{', '}');
}

void json_array(struct json *j, const char *key)
{
	json_open(j, key, '[', ']');
}

void json_close(struct json *j)
{
	unsigned int i;

	if (!j->depth)
		return;
	j->depth--;
	if (j->has_members) {
		fputc('\n', j->f);
		for (i = 0; i < j->depth; i++)
			fputs("    ", j->f);
	}
	fputc(j->close[j->depth], j->f);
	j->has_members = true;
}

void json_end(struct json *j)
{
	while (j->depth)
		json_close(j);
	fputc('\n', j->f);
}

void json_str(struct json *j, const char *key, const char *s)
{
	json_member(j, key);
	json_write_string(j->f, s);
}

void json_u64(struct json *j, const char *key, unsigned long long v)
{
	json_member(j, key);
	fprintf(j->f, "%llu", v);
}

void json_bool(struct json *j, const char *key, bool v)
{
	json_member(j, key);
	fputs(v ? "true" : "false", j->f);
}
