/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * attach --rw: what happens to the top image's file before its loop device
 * is set up, and after detach removed its devices (rw.c).
 */
#ifndef IMGFMT_RW_H
#define IMGFMT_RW_H

#include "disk.h"

/* The top layer of a disk attached read-write. */
struct rw_top {
	struct image *im;	/* validated read-only, with its layers */
	int fd;			/* the same file, open read-write; or -1 */
};

/*
 * Can the disk d be attached read-write?  One QCOW2 image (with any
 * backing chain), opened once more for writing into top->fd, which must
 * be the very file d validated.  Refused in one line: other formats, a
 * VMDK descriptor, a file that cannot be opened for writing.  0, FAIL or
 * FAIL_USAGE; top->fd is -1 on failure.
 */
int rw_open_top(struct disk *d, struct rw_top *top);

/*
 * Once the top's file is locked for writing (dm_piece.prepare): refuse
 * what the kernel's writer refuses, with its words (dirty or corrupt
 * bits, snapshots, ...), then, on a regular file, cut the file to the
 * image's end (dropping what a crash left past it) and extend it sparsely
 * to the worst case one attachment can reach (growth.h).  *file_size gets
 * the size of the file now.  0 or FAIL.
 */
int rw_prepare_top(void *top, unsigned long long *file_size);

#endif /* IMGFMT_RW_H */
