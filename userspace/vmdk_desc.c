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
#include "formats/vmdk_keys.h"

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif

struct parser {
	struct vmdk_lines text;		/* the lines not read yet */
	unsigned int line;		/* number of the line being parsed */
	struct vmdk_header hdr;		/* the header keys met */
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

static bool span_is(const struct vmdk_span *sp, const char *word)
{
	return sp->len == strlen(word) && !memcmp(sp->s, word, sp->len);
}

static void span_skip_blanks(struct vmdk_span *sp)
{
	while (sp->len && vmdk_is_blank(*sp->s)) {
		sp->s++;
		sp->len--;
	}
}

static void span_advance(struct vmdk_span *sp, size_t n)
{
	sp->s += n;
	sp->len -= n;
}

/* Take the run of characters up to a blank or a quote. */
static struct vmdk_span span_take_word(struct vmdk_span *sp)
{
	struct vmdk_span w = { sp->s, 0 };

	while (w.len < sp->len && !vmdk_is_blank(sp->s[w.len]) &&
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
static const char *clipped(char *buf, size_t size, const struct vmdk_span *sp)
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

static int dec_value(const struct vmdk_span *sp, uint64_t *v)
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
static bool next_line(struct parser *ps, struct vmdk_span *line)
{
	if (!vmdk_lines_next(&ps->text, line))
		return false;
	ps->line = ps->text.line;
	return true;
}

bool vmdk_desc_probe(const char *text, size_t len)
{
	struct parser ps = { .line = 0 };
	struct vmdk_span line, key, value;

	vmdk_lines_init(&ps.text, text, len);
	while (next_line(&ps, &line)) {
		if (vmdk_line_is_comment(&line))
			continue;
		return vmdk_split_key_value(line, &key, &value) &&
		       vmdk_key_of(&key) == VMDK_KEY_VERSION;
	}
	return false;
}

/* Header keys: vmdk_keys.c parses them, this names what is wrong. */

static int header_error(struct parser *ps, enum vmdk_key k, int why,
			const struct vmdk_span *value)
{
	const char *key = vmdk_key_name(k);
	char shown[64];

	clipped(shown, sizeof(shown), value);
	switch (why) {
	case VMDK_KEY_TWICE:
		return parse_error(ps, "%s given twice", key);
	case VMDK_KEY_BAD_QUOTING:
		return parse_error(ps, "bad value for %s: '%s'", key, shown);
	case VMDK_KEY_TOO_LONG:
		return parse_error(ps, "%s too long", key);
	}
	if (k == VMDK_KEY_VERSION)
		return parse_error(ps, "unsupported descriptor version '%s'",
				   shown);
	return parse_error(ps, "bad %s '%s'", key, shown);
}

/* A "key = value" line: header keys are parsed, others ignored. */
static int parse_key_line(struct parser *ps, const struct vmdk_span *line)
{
	struct vmdk_span key, value, bare;
	char shown[64];
	enum vmdk_key k;
	int why;

	if (!vmdk_split_key_value(*line, &key, &value))
		return parse_error(ps, "neither an extent nor a \"key = value\" line: '%s'",
				   clipped(shown, sizeof(shown), line));
	k = vmdk_key_of(&key);
	why = vmdk_header_take(&ps->hdr, k, ps->line, value);
	if (!why)
		return 0;	/* ddb.* and other keys: VMware's business */
	/* Name the value as it was meant, without its quotes. */
	bare = value;
	if (why != VMDK_KEY_BAD_QUOTING && bare.len >= 2 && bare.s[0] == '"') {
		bare.s++;
		bare.len -= 2;
	}
	return header_error(ps, k, why, &bare);
}

/* Copy the header into d: the spans point into the caller's text. */
static int take_header(struct parser *ps)
{
	const struct vmdk_header *h = &ps->hdr;
	struct vmdk_desc *d = ps->d;

	d->version = h->version;
	d->has_cid = h->has_cid;
	d->cid = h->cid;
	d->has_parent_cid = h->has_parent_cid;
	d->parent_cid = h->parent_cid;
	if (h->create_type.len) {
		memcpy(d->create_type, h->create_type.s, h->create_type.len);
		d->create_type[h->create_type.len] = '\0';
		d->create_type_line = h->line[VMDK_KEY_CREATE_TYPE];
	}
	if (!h->parent_hint.len)
		return 0;
	d->parent_hint = strndup(h->parent_hint.s, h->parent_hint.len);
	if (!d->parent_hint)
		return parse_error(ps, "out of memory");
	d->parent_hint_line = h->line[VMDK_KEY_PARENT_HINT];
	return 0;
}

/* Extent lines */

static int name_index(const struct vmdk_span *word, const char *const *names,
		      unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		if (span_is(word, names[i]))
			return (int)i;
	return -1;
}

/* Is this line an extent line: does it start with an access word? */
static bool extent_access(struct vmdk_span line, enum vmdk_access *access)
{
	struct vmdk_span word = span_take_word(&line);
	int i = name_index(&word, access_names, NR_NAMES(access_names));

	if (i < 0 || (line.len && !vmdk_is_blank(*line.s)))
		return false;
	*access = (enum vmdk_access)i;
	return true;
}

static int extent_sectors(struct parser *ps, struct vmdk_span *rest,
			  struct vmdk_extent *e)
{
	struct vmdk_span word;
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

static int extent_type(struct parser *ps, struct vmdk_span *rest,
		       struct vmdk_extent *e)
{
	struct vmdk_span word;
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
static int extent_file(struct parser *ps, struct vmdk_span *rest,
		       struct vmdk_extent *e)
{
	struct vmdk_span name;

	span_skip_blanks(rest);
	if (!rest->len && e->type == VMDK_EXTENT_ZERO)
		return 0;
	if (!rest->len || *rest->s != '"')
		return parse_error(ps, "quoted extent file name expected");
	span_advance(rest, 1);
	name.s = rest->s;
	name.len = 0;
	while (name.len < rest->len && rest->s[name.len] != '"') {
		if (vmdk_is_ctrl(rest->s[name.len]))
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
	if (rest->len && !vmdk_is_blank(*rest->s))
		return parse_error(ps, "blank expected after the extent file name");
	e->file = strndup(name.s, name.len);
	if (!e->file)
		return parse_error(ps, "out of memory");
	return 0;
}

/* FLAT and VMFS extents may give the sector their data starts at. */
static int extent_offset(struct parser *ps, struct vmdk_span *rest,
			 struct vmdk_extent *e)
{
	struct vmdk_span word;
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
static int parse_extent_line(struct parser *ps, const struct vmdk_span *line,
			     enum vmdk_access access)
{
	struct vmdk_extent e = {
		.access = access,
		.line = ps->line,
	};
	struct vmdk_span rest = *line;

	span_take_word(&rest);
	if (extent_sectors(ps, &rest, &e) || extent_type(ps, &rest, &e) ||
	    extent_file(ps, &rest, &e) || extent_offset(ps, &rest, &e) ||
	    extent_append(ps, &e)) {
		free(e.file);
		return -1;
	}
	return 0;
}

static int parse_line(struct parser *ps, const struct vmdk_span *line)
{
	enum vmdk_access access;

	if (vmdk_line_is_comment(line))
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
	struct vmdk_span line;

	memset(d, 0, sizeof(*d));
	memset(err, 0, sizeof(*err));
	if (len > VMDK_DESC_MAX_BYTES) {
		snprintf(err->msg, sizeof(err->msg),
			 "descriptor larger than %u bytes", VMDK_DESC_MAX_BYTES);
		return -1;
	}
	vmdk_lines_init(&ps.text, text, len);
	while (next_line(&ps, &line)) {
		if (parse_line(&ps, &line)) {
			vmdk_desc_free(d);
			return -1;
		}
	}
	if (take_header(&ps)) {
		vmdk_desc_free(d);
		return -1;
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
	struct vmdk_span sp = { ct, strlen(ct) };
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
