/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VMDK descriptors: the text that joins a virtual disk's extent files.
 *
 * The parser works on a buffer only (no I/O) so that it can be tested and
 * fuzzed on its own; vmdk_disk.c finds the text and opens the extents.
 */
#ifndef IMGFMT_VMDK_DESC_H
#define IMGFMT_VMDK_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on hostile input. */
#define VMDK_DESC_MAX_BYTES	(1U << 20)	/* the whole text */
#define VMDK_DESC_MAX_EXTENTS	4096
#define VMDK_DESC_MAX_FILE	4095		/* bytes of one file name */
#define VMDK_DESC_MAX_SECTORS	(1ULL << 53)	/* one extent, and the disk */

enum vmdk_access {
	VMDK_ACCESS_RW,
	VMDK_ACCESS_RDONLY,
	VMDK_ACCESS_NOACCESS,
};

enum vmdk_extent_type {
	VMDK_EXTENT_FLAT,
	VMDK_EXTENT_SPARSE,
	VMDK_EXTENT_ZERO,
	VMDK_EXTENT_VMFS,
	VMDK_EXTENT_VMFSSPARSE,
	VMDK_EXTENT_VMFSRDM,
	VMDK_EXTENT_VMFSRAW,
	VMDK_EXTENT_SESPARSE,
};

struct vmdk_extent {
	enum vmdk_access access;
	enum vmdk_extent_type type;
	uint64_t sectors;	/* its length in the virtual disk */
	uint64_t offset;	/* FLAT, VMFS: first sector of it in the file */
	char *file;		/* as written; NULL for a ZERO extent without */
	unsigned int line;
};

struct vmdk_desc {
	unsigned int version;		/* 1, 2 or 3 */
	bool has_cid, has_parent_cid;
	uint32_t cid, parent_cid;
	char create_type[64];		/* "" when the line is missing */
	unsigned int create_type_line;
	char *parent_hint;		/* parentFileNameHint; NULL: none */
	unsigned int parent_hint_line;
	struct vmdk_extent *extents;
	unsigned int nr_extents;
	uint64_t sectors;		/* the sum over the extents */
};

/*
 * What is wrong and where: line 0 when no single line is to blame.  msg
 * quotes the text as it is (cut short): escape it before printing.
 */
struct vmdk_desc_error {
	unsigned int line;
	char msg[256];
};

/*
 * Does this text look like a descriptor: is its first line that is neither
 * blank nor a comment "version=..."?  len may cover only the file's start.
 */
bool vmdk_desc_probe(const char *text, size_t len);

/*
 * Parse the descriptor text of len bytes (it ends earlier at a NUL byte).
 * Returns 0 and fills d, which the caller frees with vmdk_desc_free(), or
 * -1 with *err filled in and nothing to free.
 */
int vmdk_desc_parse(const char *text, size_t len, struct vmdk_desc *d,
		    struct vmdk_desc_error *err);

/*
 * Is the parsed descriptor one this helper can map: a supported createType,
 * at least one extent and only extents of supported types and access?
 * Parent links are left to the caller (see vmdk_desc_has_parent()).
 * Returns 0, or -1 with *err filled in.
 */
int vmdk_desc_check(const struct vmdk_desc *d, struct vmdk_desc_error *err);

/* Does the descriptor name a parent (a delta disk)? */
bool vmdk_desc_has_parent(const struct vmdk_desc *d);

void vmdk_desc_free(struct vmdk_desc *d);

const char *vmdk_access_name(enum vmdk_access access);
const char *vmdk_extent_type_name(enum vmdk_extent_type type);

/* Extents that keep data in a file of their own format, or raw data. */
bool vmdk_extent_is_sparse(enum vmdk_extent_type type);
bool vmdk_extent_is_flat(enum vmdk_extent_type type);

#endif /* IMGFMT_VMDK_DESC_H */
