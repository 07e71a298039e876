/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel-only glue between a block device and the shared format code.
 */
#ifndef IMGFMT_KPORT_H
#define IMGFMT_KPORT_H

#include "imgfmt_port.h"

struct block_device;

struct imgfmt_kdev {
	struct imgfmt_dev dev;
	struct block_device *bdev;
};

void imgfmt_kdev_init(struct imgfmt_kdev *kdev, struct block_device *bdev);
/* The device was opened for writing: let the format code write and flush. */
void imgfmt_kdev_make_writable(struct imgfmt_kdev *kdev);

/* At module load: size the decompression workspace slots. */
void imgfmt_kport_init(void);

/*
 * A device whose image holds clusters compressed with type reserves the
 * module's workspaces for it at table load and releases them at unload:
 * the first reservation of a type makes them, the last release frees them.
 * 0 or -ENOMEM.  COMP_NONE needs none.
 */
int imgfmt_decomp_reserve(enum imgfmt_compression type);
void imgfmt_decomp_unreserve(enum imgfmt_compression type);

#endif /* IMGFMT_KPORT_H */
