/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The virtual disk a command works on: one image file, or the extents a
 * VMDK descriptor joins, as a list of segments that follow each other.
 * Each segment becomes one target of the device-mapper table.
 */
#ifndef IMGFMT_DISK_H
#define IMGFMT_DISK_H

#include "image.h"
#include "vmdk_desc.h"

enum segment_kind {
	SEG_IMAGE,	/* an image file through the format code: imgfmt */
	SEG_FLAT,	/* raw data at an offset of a file: linear */
	SEG_ZERO,	/* zeroes: zero */
};

struct segment {
	enum segment_kind kind;
	u64 sectors;		/* its length in the disk */
	/* What `read` writes: sectors * 512, or an image's virtual size. */
	u64 bytes;
	char *path;		/* the file; NULL for SEG_ZERO */
	char name[IMGFMT_SHOWN_MAX];	/* path escaped, for messages */
	int fd;			/* SEG_FLAT: the open file; -1 otherwise */
	u64 file_size;		/* bytes */
	u64 offset;		/* SEG_FLAT: where its data starts, bytes */
	struct image im;	/* SEG_IMAGE */
	unsigned int line;	/* its descriptor line; 0 for a single image */
};

struct disk {
	const char *path;
	char name[IMGFMT_SHOWN_MAX];	/* path escaped, for messages */
	u64 file_size;		/* of path itself */
	bool is_desc;		/* a VMDK descriptor joins the segments */
	bool desc_parsed;	/* desc holds the parsed descriptor */
	struct vmdk_desc desc;
	struct segment *segs;
	unsigned int nr_segs;
	u64 size;		/* virtual bytes */
};

/*
 * Open path as a VMDK descriptor, or else as one image of format pin (NULL:
 * probe).  Returns 0 or FAIL with the error recorded.  After a failure d
 * still tells what was found (is_desc, desc, the refused image in segs[0])
 * for `info`; disk_close() it either way.
 */
int disk_open(struct disk *d, const char *path, const char *pin,
	      u64 cache_bytes);
void disk_close(struct disk *d);

/*
 * The same without the backing chain: an image's backing file is named,
 * not opened (what `info` describes; such a disk cannot be read).
 */
int disk_open_top(struct disk *d, const char *path, const char *pin);

/*
 * disk_open() of the internal snapshot snapshot (ID or name) of the
 * image at path, with its backing chain.
 */
int disk_open_snapshot(struct disk *d, const char *path, const char *pin,
		       const char *snapshot, u64 cache_bytes);

/* Files of the disk: of its segments (all but SEG_ZERO) and layers. */
unsigned int disk_nr_files(const struct disk *d);

/* The open file behind a segment, or -1. */
int segment_fd(const struct segment *s);

/*
 * Fill buf with len bytes of the segment from off (multiples of 512 within
 * its sectors); *zero tells whether they are all zero.  0 or FAIL.
 */
int segment_read(struct segment *s, u64 off, u64 len, char *buf, bool *zero);

/* vmdk_disk.c */

/*
 * Does d->path hold a VMDK descriptor (a text file, or a hosted sparse file
 * of capacity 0 that embeds one)?  Returns 1 with the text in *text
 * (free() it), 0 when it does not, or FAIL.  Sets d->is_desc when it does,
 * failing or not, and d->file_size.
 */
int vmdk_desc_load(struct disk *d, char **text, size_t *len);

/*
 * Parse the descriptor text of d->path and open its extents as segments;
 * a delta's parent chain too when with_backing is set.
 */
int vmdk_disk_open(struct disk *d, const char *text, size_t len,
		   u64 cache_bytes, bool with_backing);

/*
 * The createType in the descriptor a hosted sparse image embeds, into ct
 * ("" when there is none).  When that text does not parse, returns -1 with
 * the reason in why.
 */
int vmdk_embedded_create_type(struct image *im, char *ct, size_t ct_size,
			      char *why, size_t why_size);

#endif /* IMGFMT_DISK_H */
