// SPDX-License-Identifier: GPL-2.0-only
/*
 * VMDK descriptor parser.
 *
 * A descriptor is a small text: a header of "key=value" lines (version,
 * CID, parentCID, createType, parentFileNameHint), one line per extent
 *
 *	ACCESS SECTORS TYPE ["FILE" [OFFSET]]
 *
 * and the disk database, "ddb.key = "value"" lines that only VMware's tools
 * need.  Comments start with '#'.  It comes as a file of its own or embedded
 * in a hosted sparse extent (see VMware's Virtual Disk Format 1.1).
 *
 * The text may come from anyone, so it is read within fixed bounds, and a
 * line that is not understood is an error naming it rather than skipped.
 * Lines end in LF or CRLF.  Bytes above 0x7f (windows-1252, UTF-8: see the
 * "encoding" key) pass through as they are, file names included: they name
 * files on this system byte for byte, as QEMU uses them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk_desc.h"

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif

/* A piece of the text: not NUL-terminated. */
struct span {
	const char *s;
	size_t len;
};

struct parser {
	const char *p, *end;		/* the text not read yet */
	unsigned int line;		/* number of the line being parsed */
	unsigned int seen;		/* header keys met, one bit each */
	unsigned int cap;		/* extents allocated */
	struct vmdk_desc *d;
	struct vmdk_desc_error *err;
};

static const char *const access_names[] = {
	[VMDK_ACCESS_RW] = "RW",
	[VMDK_ACCESS_RDONLY] = "RDONLY",
	[VMDK_ACCESS_NOACCESS] = "NOACCESS",
};

static const char *const type_names[] = {
	[VMDK_EXTENT_FLAT] = "FLAT",
	[VMDK_EXTENT_SPARSE] = "SPARSE",
	[VMDK_EXTENT_ZERO] = "ZERO",
	[VMDK_EXTENT_VMFS] = "VMFS",
	[VMDK_EXTENT_VMFSSPARSE] = "VMFSSPARSE",
	[VMDK_EXTENT_VMFSRDM] = "VMFSRDM",
	[VMDK_EXTENT_VMFSRAW] = "VMFSRAW",
	[VMDK_EXTENT_SESPARSE] = "SESPARSE",
};

#define NR_NAMES(a)	(sizeof(a) / sizeof((a)[0]))

const char *vmdk_access_name(enum vmdk_access access)
{
	if ((unsigned int)access >= NR_NAMES(access_names))
		return "?";
	return access_names[access];
}

const char *vmdk_extent_type_name(enum vmdk_extent_type type)
{
	if ((unsigned int)type >= NR_NAMES(type_names))
		return "?";
	return type_names[type];
}

bool vmdk_extent_is_sparse(enum vmdk_extent_type type)
{
	return type == VMDK_EXTENT_SPARSE || type == VMDK_EXTENT_VMFSSPARSE ||
	       type == VMDK_EXTENT_SESPARSE;
}

bool vmdk_extent_is_flat(enum vmdk_extent_type type)
{
	return type == VMDK_EXTENT_FLAT || type == VMDK_EXTENT_VMFS;
}

/* Characters and spans */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool is_ctrl(char c)
{
	unsigned char u = (unsigned char)c;

	return u < 0x20 || u == 0x7f;
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool span_is(const struct span *sp, const char *word)
{
	return sp->len == strlen(word) && !memcmp(sp->s, word, sp->len);
}

static void span_skip_blanks(struct span *sp)
{
	while (sp->len && is_blank(*sp->s)) {
		sp->s++;
		sp->len--;
	}
}

static void span_advance(struct span *sp, size_t n)
{
	sp->s += n;
	sp->len -= n;
}

/* Take the run of characters up to a blank or a quote. */
static struct span span_take_word(struct span *sp)
{
	struct span w = { sp->s, 0 };

	while (w.len < sp->len && !is_blank(sp->s[w.len]) &&
	       sp->s[w.len] != '"')
		w.len++;
	span_advance(sp, w.len);
	return w;
}

/*
 * Copy sp into buf for an error message, as it is but cut at 48 bytes
 * (then ending in "...").  The message is escaped where it is printed
 * (imgfmt_escape(), which this file cannot use: the descriptor fuzzer
 * builds it alone).
 */
static const char *clipped(char *buf, size_t size, const struct span *sp)
{
	static const size_t max_shown = 48;
	size_t n = sp->len < max_shown ? sp->len : max_shown;

	if (n + 4 > size)
		n = size > 4 ? size - 4 : 0;
	memcpy(buf, sp->s, n);
	if (n < sp->len && size >= 4) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* Numbers */

static int dec_value(const struct span *sp, uint64_t *v)
{
	size_t i;

	if (!sp->len || sp->len > 20)
		return -1;
	*v = 0;
	for (i = 0; i < sp->len; i++) {
		if (sp->s[i] < '0' || sp->s[i] > '9')
			return -1;
		if (*v > (UINT64_MAX - (uint64_t)(sp->s[i] - '0')) / 10)
			return -1;
		*v = *v * 10 + (uint64_t)(sp->s[i] - '0');
	}
	return 0;
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
static int cid_value(struct span sp, uint32_t *v)
{
	int digit;

	if (sp.len > 2 && sp.s[0] == '0' && (sp.s[1] == 'x' || sp.s[1] == 'X'))
		span_advance(&sp, 2);
	if (!sp.len || sp.len > 8)
		return -1;
	*v = 0;
	for (; sp.len; span_advance(&sp, 1)) {
		digit = hex_digit(*sp.s);
		if (digit < 0)
			return -1;
		*v = *v << 4 | (uint32_t)digit;
	}
	return 0;
}

/* Errors */

__printf(2, 3)
static int parse_error(struct parser *ps, const char *fmt, ...)
{
	va_list ap;

	ps->err->line = ps->line;
	va_start(ap, fmt);
	vsnprintf(ps->err->msg, sizeof(ps->err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Lines */

/* The next line without its end and the blanks around it. */
static bool next_line(struct parser *ps, struct span *line)
{
	const char *nl;

	if (ps->p >= ps->end)
		return false;
	nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
	line->s = ps->p;
	line->len = (size_t)((nl ? nl : ps->end) - ps->p);
	ps->p = nl ? nl + 1 : ps->end;
	ps->line++;
	span_skip_blanks(line);
	while (line->len && is_blank(line->s[line->len - 1]))
		line->len--;
	return true;
}

static bool line_is_comment(const struct span *line)
{
	return !line->len || line->s[0] == '#';
}

/* The text up to its first NUL, without a UTF-8 byte order mark. */
static void text_bounds(const char *text, size_t len, const char **start,
			const char **end)
{
	static const char bom[] = "\xef\xbb\xbf";

	len = strnlen(text, len);
	*start = text;
	*end = text + len;
	if (len >= 3 && !memcmp(text, bom, 3))
		*start += 3;
}

/*
 * Split "key = value" into its parts; false when the line is not of that
 * form.  The value is everything after '=', blanks around it removed.
 */
static bool split_key_value(struct span line, struct span *key,
			    struct span *value)
{
	key->s = line.s;
	key->len = 0;
	while (key->len < line.len && is_key_char(line.s[key->len]))
		key->len++;
	if (!key->len)
		return false;
	span_advance(&line, key->len);
	span_skip_blanks(&line);
	if (!line.len || *line.s != '=')
		return false;
	span_advance(&line, 1);
	span_skip_blanks(&line);
	*value = line;
	return true;
}

bool vmdk_desc_probe(const char *text, size_t len)
{
	struct parser ps = { .line = 0 };
	struct span line, key, value;

	text_bounds(text, len, &ps.p, &ps.end);
	while (next_line(&ps, &line)) {
		if (line_is_comment(&line))
			continue;
		return split_key_value(line, &key, &value) &&
		       span_is(&key, "version");
	}
	return false;
}

/* Header keys */

/*
 * The value of a header key: "quoted" (no quote inside) or one bare word;
 * no control characters either way.
 */
static int header_value(struct parser *ps, const struct span *key,
			struct span *value)
{
	char shown_key[64], shown[64];
	size_t i;

	if (value->len && value->s[0] == '"') {
		if (value->len < 2 || value->s[value->len - 1] != '"')
			goto bad;
		span_advance(value, 1);
		value->len--;
	}
	for (i = 0; i < value->len; i++)
		if (value->s[i] == '"' || is_ctrl(value->s[i]))
			goto bad;
	return 0;
bad:
	return parse_error(ps, "bad value for %s: '%s'",
			   clipped(shown_key, sizeof(shown_key), key),
			   clipped(shown, sizeof(shown), value));
}

static int parse_version(struct parser *ps, const struct span *v)
{
	char shown[64];

	if (span_is(v, "1") || span_is(v, "2") || span_is(v, "3")) {
		ps->d->version = (unsigned int)(v->s[0] - '0');
		return 0;
	}
	return parse_error(ps, "unsupported descriptor version '%s'",
			   clipped(shown, sizeof(shown), v));
}

static int parse_cid(struct parser *ps, const struct span *v)
{
	char shown[64];

	if (cid_value(*v, &ps->d->cid))
		return parse_error(ps, "bad CID '%s'",
				   clipped(shown, sizeof(shown), v));
	ps->d->has_cid = true;
	return 0;
}

static int parse_parent_cid(struct parser *ps, const struct span *v)
{
	char shown[64];

	if (cid_value(*v, &ps->d->parent_cid))
		return parse_error(ps, "bad parentCID '%s'",
				   clipped(shown, sizeof(shown), v));
	ps->d->has_parent_cid = true;
	return 0;
}

static int parse_create_type(struct parser *ps, const struct span *v)
{
	char shown[64];

	if (!v->len || v->len >= sizeof(ps->d->create_type))
		return parse_error(ps, "bad createType '%s'",
				   clipped(shown, sizeof(shown), v));
	memcpy(ps->d->create_type, v->s, v->len);
	ps->d->create_type[v->len] = '\0';
	ps->d->create_type_line = ps->line;
	return 0;
}

static int parse_parent_hint(struct parser *ps, const struct span *v)
{
	if (!v->len)
		return 0;	/* an empty hint names no parent */
	if (v->len > VMDK_DESC_MAX_FILE)
		return parse_error(ps, "parentFileNameHint too long");
	ps->d->parent_hint = strndup(v->s, v->len);
	if (!ps->d->parent_hint)
		return parse_error(ps, "out of memory");
	ps->d->parent_hint_line = ps->line;
	return 0;
}

static const struct {
	const char *key;
	int (*parse)(struct parser *ps, const struct span *value);
} header_keys[] = {
	{ "version", parse_version },
	{ "CID", parse_cid },
	{ "parentCID", parse_parent_cid },
	{ "createType", parse_create_type },
	{ "parentFileNameHint", parse_parent_hint },
};

/* A "key = value" line: header keys are parsed, others ignored. */
static int parse_key_line(struct parser *ps, const struct span *line)
{
	struct span key, value;
	char shown[64];
	unsigned int i;

	if (!split_key_value(*line, &key, &value))
		return parse_error(ps, "neither an extent nor a \"key = value\" line: '%s'",
				   clipped(shown, sizeof(shown), line));
	for (i = 0; i < NR_NAMES(header_keys); i++) {
		if (!span_is(&key, header_keys[i].key))
			continue;
		if (ps->seen & (1U << i))
			return parse_error(ps, "%s given twice",
					   header_keys[i].key);
		ps->seen |= 1U << i;
		if (header_value(ps, &key, &value))
			return -1;
		return header_keys[i].parse(ps, &value);
	}
	return 0;	/* ddb.* and other keys: VMware's business */
}

/* Extent lines */

static int name_index(const struct span *word, const char *const *names,
		      unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		if (span_is(word, names[i]))
			return (int)i;
	return -1;
}

/* Is this line an extent line: does it start with an access word? */
static bool extent_access(struct span line, enum vmdk_access *access)
{
	struct span word = span_take_word(&line);
	int i = name_index(&word, access_names, NR_NAMES(access_names));

	if (i < 0 || (line.len && !is_blank(*line.s)))
		return false;
	*access = (enum vmdk_access)i;
	return true;
}

static int extent_sectors(struct parser *ps, struct span *rest,
			  struct vmdk_extent *e)
{
	struct span word;
	char shown[64];

	span_skip_blanks(rest);
	word = span_take_word(rest);
	if (dec_value(&word, &e->sectors))
		return parse_error(ps, "bad extent size '%s' (sectors expected)",
				   clipped(shown, sizeof(shown), &word));
	if (!e->sectors)
		return parse_error(ps, "extent of 0 sectors");
	if (e->sectors > VMDK_DESC_MAX_SECTORS)
		return parse_error(ps, "extent too large (%llu sectors)",
				   (unsigned long long)e->sectors);
	return 0;
}

static int extent_type(struct parser *ps, struct span *rest,
		       struct vmdk_extent *e)
{
	struct span word;
	char shown[64];
	int i;

	span_skip_blanks(rest);
	word = span_take_word(rest);
	i = name_index(&word, type_names, NR_NAMES(type_names));
	if (i < 0)
		return parse_error(ps, "unknown extent type '%s'",
				   clipped(shown, sizeof(shown), &word));
	e->type = (enum vmdk_extent_type)i;
	return 0;
}

/* The quoted file name; a ZERO extent may go without one. */
static int extent_file(struct parser *ps, struct span *rest,
		       struct vmdk_extent *e)
{
	struct span name;

	span_skip_blanks(rest);
	if (!rest->len && e->type == VMDK_EXTENT_ZERO)
		return 0;
	if (!rest->len || *rest->s != '"')
		return parse_error(ps, "quoted extent file name expected");
	span_advance(rest, 1);
	name.s = rest->s;
	name.len = 0;
	while (name.len < rest->len && rest->s[name.len] != '"') {
		if (is_ctrl(rest->s[name.len]))
			return parse_error(ps, "control character in the extent file name");
		name.len++;
	}
	if (name.len == rest->len)
		return parse_error(ps, "extent file name without its closing quote");
	if (!name.len)
		return parse_error(ps, "empty extent file name");
	if (name.len > VMDK_DESC_MAX_FILE)
		return parse_error(ps, "extent file name too long");
	span_advance(rest, name.len + 1);
	if (rest->len && !is_blank(*rest->s))
		return parse_error(ps, "blank expected after the extent file name");
	e->file = strndup(name.s, name.len);
	if (!e->file)
		return parse_error(ps, "out of memory");
	return 0;
}

/* FLAT and VMFS extents may give the sector their data starts at. */
static int extent_offset(struct parser *ps, struct span *rest,
			 struct vmdk_extent *e)
{
	struct span word;
	char shown[64];

	span_skip_blanks(rest);
	if (!rest->len)
		return 0;
	word = span_take_word(rest);
	if (dec_value(&word, &e->offset))
		return parse_error(ps, "bad extent offset '%s' (sectors expected)",
				   clipped(shown, sizeof(shown), &word));
	if (!vmdk_extent_is_flat(e->type))
		return parse_error(ps, "only FLAT and VMFS extents take an offset");
	if (e->offset > VMDK_DESC_MAX_SECTORS - e->sectors)
		return parse_error(ps, "extent offset too large");
	span_skip_blanks(rest);
	if (rest->len)
		return parse_error(ps, "unexpected '%s' after the extent",
				   clipped(shown, sizeof(shown), rest));
	return 0;
}

static int extent_append(struct parser *ps, const struct vmdk_extent *e)
{
	struct vmdk_desc *d = ps->d;
	struct vmdk_extent *grown;
	unsigned int cap;

	if (d->nr_extents == VMDK_DESC_MAX_EXTENTS)
		return parse_error(ps, "more than %u extents",
				   VMDK_DESC_MAX_EXTENTS);
	if (e->sectors > VMDK_DESC_MAX_SECTORS - d->sectors)
		return parse_error(ps, "the extents add up to more than %llu sectors",
				   (unsigned long long)VMDK_DESC_MAX_SECTORS);
	if (d->nr_extents == ps->cap) {
		cap = ps->cap ? ps->cap * 2 : 8;
		grown = realloc(d->extents, cap * sizeof(*grown));
		if (!grown)
			return parse_error(ps, "out of memory");
		d->extents = grown;
		ps->cap = cap;
	}
	d->extents[d->nr_extents++] = *e;
	d->sectors += e->sectors;
	return 0;
}

/* ACCESS SECTORS TYPE ["FILE" [OFFSET]] */
static int parse_extent_line(struct parser *ps, const struct span *line,
			     enum vmdk_access access)
{
	struct vmdk_extent e = {
		.access = access,
		.line = ps->line,
	};
	struct span rest = *line;

	span_take_word(&rest);
	if (extent_sectors(ps, &rest, &e) || extent_type(ps, &rest, &e) ||
	    extent_file(ps, &rest, &e) || extent_offset(ps, &rest, &e) ||
	    extent_append(ps, &e)) {
		free(e.file);
		return -1;
	}
	return 0;
}

static int parse_line(struct parser *ps, const struct span *line)
{
	enum vmdk_access access;

	if (line_is_comment(line))
		return 0;
	if (extent_access(*line, &access))
		return parse_extent_line(ps, line, access);
	return parse_key_line(ps, line);
}

void vmdk_desc_free(struct vmdk_desc *d)
{
	unsigned int i;

	for (i = 0; i < d->nr_extents; i++)
		free(d->extents[i].file);
	free(d->extents);
	free(d->parent_hint);
	memset(d, 0, sizeof(*d));
}

int vmdk_desc_parse(const char *text, size_t len, struct vmdk_desc *d,
		    struct vmdk_desc_error *err)
{
	struct parser ps = { .d = d, .err = err };
	struct span line;

	memset(d, 0, sizeof(*d));
	memset(err, 0, sizeof(*err));
	if (len > VMDK_DESC_MAX_BYTES) {
		snprintf(err->msg, sizeof(err->msg),
			 "descriptor larger than %u bytes", VMDK_DESC_MAX_BYTES);
		return -1;
	}
	text_bounds(text, len, &ps.p, &ps.end);
	while (next_line(&ps, &line)) {
		if (parse_line(&ps, &line)) {
			vmdk_desc_free(d);
			return -1;
		}
	}
	if (!d->version) {
		snprintf(err->msg, sizeof(err->msg),
			 "no \"version=\" line: not a VMDK descriptor");
		vmdk_desc_free(d);
		return -1;
	}
	return 0;
}

/* Policy: what this helper maps */

/* createTypes whose extents are files this helper reads. */
static const char *const create_types[] = {
	"monolithicSparse", "monolithicFlat",
	"twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
	"streamOptimized", "vmfs", "vmfsThin", "vmfsPreallocated",
	"vmfsEagerZeroedThick", "vmfsSparse", "seSparse",
};

/* createTypes that give a host's disk or partitions as extents. */
static const char *const raw_create_types[] = {
	"fullDevice", "partitionedDevice", "vmfsRaw", "vmfsRDM", "vmfsRDMP",
	"vmfsRawDeviceMap", "vmfsPassthroughRawDeviceMap",
};

static bool in_list(const char *s, const char *const *list, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

__printf(3, 4)
static int check_error(struct vmdk_desc_error *err, unsigned int line,
		       const char *fmt, ...)
{
	va_list ap;

	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int check_create_type(const struct vmdk_desc *d,
			     struct vmdk_desc_error *err)
{
	const char *ct = d->create_type;
	struct span sp = { ct, strlen(ct) };
	char shown[64];

	if (!ct[0])
		return check_error(err, 0, "no createType line");
	if (in_list(ct, create_types, NR_NAMES(create_types)))
		return 0;
	clipped(shown, sizeof(shown), &sp);
	if (in_list(ct, raw_create_types, NR_NAMES(raw_create_types)))
		return check_error(err, d->create_type_line,
				   "createType '%s' (raw host disk access) is not supported",
				   shown);
	return check_error(err, d->create_type_line,
			   "unsupported createType '%s'", shown);
}

static int check_extent(const struct vmdk_extent *e,
			struct vmdk_desc_error *err)
{
	if (e->access == VMDK_ACCESS_NOACCESS)
		return check_error(err, e->line,
				   "NOACCESS extents are not supported");
	if (e->type == VMDK_EXTENT_VMFSRDM || e->type == VMDK_EXTENT_VMFSRAW)
		return check_error(err, e->line,
				   "%s extents (raw host disk access) are not supported",
				   vmdk_extent_type_name(e->type));
	if (e->type != VMDK_EXTENT_ZERO && !e->file)
		return check_error(err, e->line, "extent without a file name");
	return 0;
}

int vmdk_desc_check(const struct vmdk_desc *d, struct vmdk_desc_error *err)
{
	unsigned int i;

	memset(err, 0, sizeof(*err));
	if (check_create_type(d, err))
		return -1;
	if (!d->nr_extents)
		return check_error(err, 0, "no extent lines");
	for (i = 0; i < d->nr_extents; i++)
		if (check_extent(&d->extents[i], err))
			return -1;
	return 0;
}

bool vmdk_desc_has_parent(const struct vmdk_desc *d)
{
	return d->parent_hint;
}
