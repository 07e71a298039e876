/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Backing chains: from an open image to the files below it, found and
 * checked as QEMU finds them (a relative name is taken against the
 * directory of the image that names it; the format is the recorded one,
 * else probed, and a file no format claims is raw) and refused as QEMU
 * and UML refuse them (loops, missing files, mismatched VMDK CIDs or UML
 * COW stamps, a format other than the recorded one).
 */
#ifndef IMGFMT_BACKING_H
#define IMGFMT_BACKING_H

#include "image.h"

/*
 * Open the backing chain of the open image top (opened with has_lower=true)
 * into *lower (nr entries, top's backing first), as QEMU resolves it.  0 or
 * FAIL (one error line naming the file and the reason).  *lower is NULL
 * and *nr 0 when top has no backing file.  image_set_lower() takes the
 * array over, or backing_close() frees it.
 */
int backing_open(const struct image *top, const struct image_opts *o,
		 struct image **lower, unsigned int *nr);
void backing_close(struct image *lower, unsigned int nr);

/*
 * The file QEMU opens for the backing name of the image at path: name
 * itself when it is absolute or path has no directory, else name in
 * path's directory.  malloc()ed; NULL when out of memory.
 */
char *backing_full_name(const char *path, const char *name);

/*
 * Is layer, the backing file of parent, raw because no format claimed it
 * (parent records no backing format)?  QEMU allows that for a backing
 * file only; `info` notes it.
 */
bool backing_probed_raw(const struct image *parent, const struct image *layer);

#endif /* IMGFMT_BACKING_H */
