/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading the arguments of an imgfmt target's table line back (detach
 * and list), in plain C types (imgfmt_dm.c cannot see the format headers).
 */
#ifndef IMGFMT_TABLE_ARGS_H
#define IMGFMT_TABLE_ARGS_H

/* The words of a table line, split as device-mapper splits them. */
struct table_words {
	char **w;
	unsigned int nr;
};

/*
 * Split params at blanks, a backslash keeping the next character as it
 * is (dm_split_args()).  0, or -1 when out of memory.
 */
int table_split(const char *params, struct table_words *tw);
void table_words_free(struct table_words *tw);

/*
 * The device words of imgfmt target arguments, in table order: each
 * layer's device, then its data_dev= value if any; they point into tw.
 * Returns how many (at most max), or -1 when the arguments do not parse.
 */
int imgfmt_args_devices(const struct table_words *tw, const char **devs,
			unsigned int max);

/*
 * s as one table word that passes libdevmapper and dm_split_args()
 * unchanged: bytes up to the blank, from DEL on, and backslashes as \xNN,
 * which the target decodes (snapshot names).  A string to free(), or
 * NULL when out of memory.
 */
char *table_word_encode(const char *s);

#endif /* IMGFMT_TABLE_ARGS_H */
