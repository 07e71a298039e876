// SPDX-License-Identifier: GPL-2.0-only
/*
 * Table lines read back; see table_args.h.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "table_args.h"

void table_words_free(struct table_words *tw)
{
	unsigned int i;

	for (i = 0; i < tw->nr; i++)
		free(tw->w[i]);
	free(tw->w);
	tw->w = NULL;
	tw->nr = 0;
}

/* The word starting at *p, unescaped, into a new string; *p past it. */
static char *next_word(const char **p)
{
	const char *s = *p;
	char *word = malloc(strlen(s) + 1), *o = word;

	if (!word)
		return NULL;
	while (*s && !isspace((unsigned char)*s)) {
		if (*s == '\\' && s[1])
			s++;
		*o++ = *s++;
	}
	*o = '\0';
	*p = s;
	return word;
}

int table_split(const char *params, struct table_words *tw)
{
	const char *p = params;
	char **grown;

	tw->w = NULL;
	tw->nr = 0;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		grown = realloc(tw->w, (tw->nr + 1) * sizeof(*grown));
		if (!grown)
			goto nomem;
		tw->w = grown;
		tw->w[tw->nr] = next_word(&p);
		if (!tw->w[tw->nr])
			goto nomem;
		tw->nr++;
	}
nomem:
	table_words_free(tw);
	return -1;
}

/* A count word: decimal digits only. */
static int count_at(const struct table_words *tw, unsigned int i,
		    unsigned int *n)
{
	char *end;
	unsigned long v;

	if (i >= tw->nr || !isdigit((unsigned char)tw->w[i][0]))
		return -1;
	v = strtoul(tw->w[i], &end, 10);
	if (*end || v > 1000000)
		return -1;
	*n = (unsigned int)v;
	return 0;
}

/* A layer at word *i: its device, its options; *i past them. */
static int layer_devices(const struct table_words *tw, unsigned int *i,
			 bool opts_optional, const char **devs,
			 unsigned int max, unsigned int *nr)
{
	unsigned int n, j;

	if (*i >= tw->nr)
		return -1;
	if (*nr < max)
		devs[*nr] = tw->w[*i];
	(*nr)++;
	(*i)++;
	if (opts_optional && *i == tw->nr)
		return 0;
	if (count_at(tw, *i, &n) || n > tw->nr - *i - 1)
		return -1;
	for (j = 1; j <= n; j++) {
		if (strncmp(tw->w[*i + j], "data_dev=", 9))
			continue;
		if (*nr < max)
			devs[*nr] = tw->w[*i + j] + 9;
		(*nr)++;
	}
	*i += n + 1;
	return 0;
}

int imgfmt_args_devices(const struct table_words *tw, const char **devs,
			unsigned int max)
{
	unsigned int i = 0, nr = 0, lower, j;

	if (layer_devices(tw, &i, true, devs, max, &nr))
		return -1;
	if (i == tw->nr)
		return (int)(nr < max ? nr : max);
	if (count_at(tw, i, &lower))
		return -1;
	i++;
	for (j = 0; j < lower; j++)
		if (layer_devices(tw, &i, false, devs, max, &nr))
			return -1;
	if (i != tw->nr)
		return -1;
	return (int)(nr < max ? nr : max);
}

char *table_word_encode(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	char *out = malloc(4 * strlen(s) + 1), *o = out;
	unsigned char c;

	if (!out)
		return NULL;
	for (; *s; s++) {
		c = (unsigned char)*s;
		if (c > ' ' && c < 0x7f && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		*o++ = 'x';
		*o++ = hex[c >> 4];
		*o++ = hex[c & 15];
	}
	*o = '\0';
	return out;
}
