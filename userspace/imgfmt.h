/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared declarations of the imgfmt command line helper.
 *
 * This header deliberately uses plain C types only: imgfmt_dm.c includes
 * the kernel's uapi headers (loop, device-mapper), whose __be64 and friends
 * clash with the userspace port's definitions, so it cannot see the format
 * headers.
 */
#ifndef IMGFMT_CLI_H
#define IMGFMT_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "failure.h"


/*
 * imgfmt info of path (format: NULL to probe): "key: value" lines, or one
 * JSON object when json is set; a refused image is described too, with an
 * "error" key.  Returns 0, FAIL or FAIL_USAGE (info.c).
 */
int info_run(const char *path, const char *format, bool json);

/*
 * The same for path and every layer of its backing chain, top first: text
 * blocks separated by a blank line, or a JSON array of the objects.
 */
int info_chain_run(const char *path, const char *format, bool json);

/*
 * Strings from an image or the command line go into messages and output
 * lines through shown_name(): escaped with imgfmt_escape() (escape.h) and
 * cut to IMGFMT_SHOWN_MAX bytes (its IMGFMT_ESCAPED_MAX), so that they stay
 * on one line of bounded length.  Returns *buf.
 */
#define IMGFMT_SHOWN_MAX	256
char *shown_name(char (*buf)[IMGFMT_SHOWN_MAX], const char *s);

/* Size of a device-mapper name buffer, NUL included (DM_NAME_LEN). */
#define IMGFMT_DM_NAME_LEN	128
/* The same for a device-mapper uuid (DM_UUID_LEN). */
#define IMGFMT_DM_UUID_LEN	129

/* The dm uuid of every device attach creates: this, then its name. */
#define IMGFMT_UUID_PREFIX	"IMGFMT-"

/*
 * The longest suffix a name derived from NAME gets: "-image4096", the
 * helper device of the last of VMDK_DESC_MAX_EXTENTS extents; partitions,
 * kpartx style, will be NAMEp1 to NAMEp999, shorter.
 */
#define IMGFMT_NAME_SUFFIX_MAX	(sizeof("-image4096") - 1)

/*
 * The longest NAME attach takes: every name derived from it, with the uuid
 * prefix in front, must fit in a device-mapper uuid (the uuid is the
 * longer of the two limits): 128 - 7 - 10 = 111 characters.
 */
#define IMGFMT_NAME_MAX		(IMGFMT_DM_UUID_LEN - 1 - \
				 (sizeof(IMGFMT_UUID_PREFIX) - 1) - \
				 IMGFMT_NAME_SUFFIX_MAX)

/* One target of the device attach creates, in table order. */
enum dm_piece_kind {
	DM_PIECE_IMGFMT,	/* an image file through the imgfmt target */
	DM_PIECE_LINEAR,	/* raw data of a file: linear */
	DM_PIECE_ZERO,		/* zeroes: zero */
};

struct dm_piece {
	enum dm_piece_kind kind;
	unsigned long long sectors;	/* its length in the device */
	int fd;				/* its file, open read-only; or -1 */
	const char *path;		/* the file's name */
	const char *name;		/* path for messages (shown_name()) */
	unsigned long long file_size;	/* bytes */
	unsigned long long offset;	/* LINEAR: sectors to skip in the file */
	/*
	 * IMGFMT: its options but data_dev=, as table words separated by
	 * blanks ("format=qcow2 cache_size=65536"), or "".
	 */
	const char *opts;
	/* IMGFMT: its external data file (a LINEAR piece), or NULL. */
	const struct dm_piece *data;
	/* IMGFMT: the layers below it, top-down, each an IMGFMT piece. */
	const struct dm_piece *lower;
	unsigned int nr_lower;
	/* The top layer of a read-write disk: its loop is read-write. */
	bool rw;
	/*
	 * Called once its file is locked, before anything is set up (attach
	 * --rw grows the file there); may change file_size.  0 or FAIL.
	 */
	int (*prepare)(void *ctx, unsigned long long *file_size);
	void *prepare_ctx;
};

/* The target type of a piece ("imgfmt", "linear", "zero"). */
const char *dm_piece_target(const struct dm_piece *p);

/*
 * The files a piece needs a device for, each a unit: its own, its data
 * file's, then each lower layer's and its data file's.
 */
unsigned int dm_piece_units(const struct dm_piece *p);

/*
 * Its table arguments when its units are the block devices devs[] (in
 * dm_piece_units() order): a string to free(), or NULL with the error
 * recorded.
 */
char *dm_piece_params(const struct dm_piece *p, char *const *devs);

/* How dm_attach_disk() attaches: flags. */
#define DM_ATTACH_RW		0x1U	/* --rw: lock the top for writing */
#define DM_ATTACH_FORCE_SHARE	0x2U	/* --force-share: lock nobody out */

/*
 * Lock the files of the validated pieces against QEMU (lock.h): the top
 * layer and its data file for reading, or with DM_ATTACH_RW for writing,
 * the lower layers and theirs for reading; with DM_ATTACH_FORCE_SHARE
 * each file is only marked as read and nothing is checked.  A file that
 * another process writes is refused.  The locks live on the descriptors
 * the loop devices keep, so they last until detach.  Then each piece's
 * prepare() runs.  Then put the files on loop devices, read-only but for
 * an rw piece's (an imgfmt piece whose file ends in a partial sector
 * through the helper device NAME-image, or NAME-imageN for unit N of
 * several) and create the device-mapper device name over them, then one
 * linear device NAMEpN per partition of its partition table, read-only
 * or, with DM_ATTACH_RW, read-write.  Prints the new disk's path (one
 * line; not the partitions').  On failure nothing is left (an rw
 * piece's file that prepare() grew is cut back with rw_trim_file()).
 * Returns 0, FAIL or FAIL_USAGE.
 */
int dm_attach_disk(const char *name, struct dm_piece *pieces,
		   unsigned int nr, unsigned int flags);

/*
 * detach of a read-write disk, its devices gone: cut the QCOW2 image file
 * fd (open read-write; name for messages) back to the image's end, the
 * end of its last cluster with a refcount, and sync it.  A block device
 * is left as it is.  0 or FAIL (rw.c).
 */
int rw_trim_file(int fd, const char *name);

/*
 * Remove the device name (or a path to it under /dev/mapper) that attach
 * created: its partitions first, then it, the helper devices and tail
 * files under it (its loop devices clear themselves).  Refused, with
 * nothing removed, while it or a partition is open.  Returns 0, FAIL or
 * FAIL_USAGE.
 */
int dm_detach_device(const char *name);

/*
 * imgfmt list: the disks attach made (not their helper devices and
 * partitions, which are shown under them), with their targets, layers,
 * files and partitions; as "key: value" lines, a blank line between
 * disks, or as one JSON object.  Returns 0 or FAIL (list.c).
 */
int list_run(bool json);

/*
 * Let this process hold nr_files files open at once, besides a few of its
 * own: raise the soft limit, and the hard one too when that is allowed
 * (root).  Returns 0, or FAIL with one line saying how many files what
 * (an escaped name) needs.
 */
int raise_file_limit(unsigned int nr_files, const char *what);

/* Is name usable as a device-mapper device name?  0 or FAIL_USAGE. */
int check_dm_name(const char *name);

/*
 * Is name usable as NAME for attach: a device-mapper name that leaves
 * room for the names derived from it (IMGFMT_NAME_MAX)?  0 or FAIL_USAGE.
 */
int check_attach_name(const char *name);

/*
 * The automatic device name for the image file path: its base name without
 * extension; when that had characters a device name may not hold (made
 * "_") or was longer than IMGFMT_NAME_MAX, cut as needed and followed by
 * a hash of the whole base name, so that different base names never share
 * a name.  0 or FAIL/FAIL_USAGE.
 */
int default_dm_name(const char *path, char *name, size_t size);

#endif /* IMGFMT_CLI_H */
