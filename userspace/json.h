/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small JSON writer for `imgfmt info --output=json`: nested objects and
 * arrays of strings, numbers and booleans, indented as qemu-img does.
 *
 * Strings may hold any byte (file names, names read from an image): the
 * output is always valid JSON in valid UTF-8 (RFC 8259).  Valid UTF-8
 * passes as it is, except control characters (C0, DEL and C1), which are
 * escaped; a byte that is not part of valid UTF-8 becomes \u00NN of the
 * byte.
 */
#ifndef IMGFMT_JSON_H
#define IMGFMT_JSON_H

#include <stdbool.h>
#include <stdio.h>

/* Deepest nesting of objects and arrays. */
#define JSON_MAX_DEPTH	8

struct json {
	FILE *f;
	unsigned int depth;
	char close[JSON_MAX_DEPTH];	/* '}' or ']' per open level */
	bool has_members;		/* the current level has one already */
};

/* Start the top-level object on f. */
void json_begin(struct json *j, FILE *f);
/* Start a top-level array instead (elements: json_object(j, NULL)). */
void json_begin_array(struct json *j, FILE *f);
/* Close every open level and end the line. */
void json_end(struct json *j);

/*
 * Open an object or array as member key of the current object, or as the
 * next element of the current array (key NULL).  Deeper than
 * JSON_MAX_DEPTH is a bug of the caller and is ignored.
 */
void json_object(struct json *j, const char *key);
void json_array(struct json *j, const char *key);
/* Close the innermost open object or array. */
void json_close(struct json *j);

void json_str(struct json *j, const char *key, const char *s);
void json_u64(struct json *j, const char *key, unsigned long long v);
void json_bool(struct json *j, const char *key, bool v);

/* Write s as a JSON string, quotes included. */
void json_write_string(FILE *f, const char *s);

#endif /* IMGFMT_JSON_H */
