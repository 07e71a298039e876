/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One image file opened through the shared format code: what `imgfmt`
 * validates, describes and reads, alone or as a sparse extent of a VMDK
 * descriptor.
 */
#ifndef IMGFMT_IMAGE_H
#define IMGFMT_IMAGE_H

#include "imgfmt.h"
#include "imgfmt_format.h"

#define SECTOR_SIZE	512ULL

struct imgfmt_ccache;
struct imgfmt_decoder;

struct image {
	const char *path;
	char name[IMGFMT_SHOWN_MAX];	/* path escaped, for messages */
	struct imgfmt_dev dev;
	const struct imgfmt_format_ops *ops;	/* set once detected */
	struct imgfmt_image *img;		/* set once opened */
	struct imgfmt_info info;
	const char *err;	/* why detection or validation failed */
	struct imgfmt_ccache *ccache;	/* made on the first compressed run */
	struct imgfmt_decoder *decoder;
	/*
	 * A QCOW2 image's external data file, opened by the name the image
	 * gives it (relative to the image's directory): data_path is NULL
	 * without one.  DATA runs with on_data_dev are read from it.
	 */
	char *data_path;
	char data_name[IMGFMT_SHOWN_MAX];	/* data_path escaped */
	struct imgfmt_dev data_dev;
	/*
	 * The layers below it, its backing file first, which it owns once
	 * image_set_lower() gave them; reads go through chain then.
	 */
	struct image *lower;
	unsigned int nr_lower;
	struct imgfmt_chain *chain;
};

/* How to open an image; zeroes are the defaults. */
struct image_opts {
	const char *pin;	/* format name; NULL: probe (never raw) */
	u64 cache_bytes;	/* 0: IMGFMT_DEFAULT_CACHE_BYTES */
	/* A layer below serves what it leaves unallocated (its backing). */
	bool has_lower;
	const char *snapshot;	/* QCOW2 internal snapshot; NULL: active */
};

/*
 * Open path and validate it as o says.  On failure records the error and
 * returns FAIL; when the image itself was refused, im->err holds the
 * format's message and im->ops the format, if detected.  path must stay
 * valid while the image is open.
 */
int image_open(struct image *im, const char *path,
	       const struct image_opts *o);

struct stat;

/*
 * Every file an image leads to (the image, a descriptor, its extents) is
 * opened with this: read-only, without waiting on a FIFO, and stat()ed.
 * Returns the open file or -errno.
 */
int file_open_nonblock(const char *path, struct stat *st);

/*
 * Open path read-only without blocking (a FIFO would wait for a writer)
 * and refuse anything but a regular file or a block device, with one
 * error line naming the file.  Returns 0 with the file in *fd, or FAIL.
 */
int image_open_file(const char *path, int *fd);

/*
 * The same for a file already open as fd, which the image takes over (it
 * is closed on failure too).
 */
int image_open_fd(struct image *im, int fd, const char *path,
		  const struct image_opts *o);

/*
 * Stack the nr open images at lower (top-down: im's backing file first)
 * under im, which takes them over (closes and frees them, on failure
 * too).  0 or FAIL.
 */
int image_set_lower(struct image *im, struct image *lower, unsigned int nr);

/* Close an image and its lower layers; safe on one that failed, twice. */
void image_close(struct image *im);

/* Files of the image: it, its data file, its layers and theirs. */
unsigned int image_nr_files(const struct image *im);

/* The open file or device holding the image, or -1. */
int image_fd(const struct image *im);

/* The open external data file of the image, or -1 when it has none. */
int image_data_fd(const struct image *im);

/* 512-byte sectors covering the virtual size; 0 when it is unusable. */
u64 image_sectors(const struct image *im);

/*
 * Fill buf with the len virtual bytes at off (both multiples of 512, within
 * image_sectors()), asking map() exactly as the kernel does.  *zero tells
 * whether the whole range reads as zeroes.  Returns 0 or FAIL.
 */
int image_read(struct image *im, u64 off, u64 len, char *buf, bool *zero);

#endif /* IMGFMT_IMAGE_H */
