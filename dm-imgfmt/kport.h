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

#endif /* IMGFMT_KPORT_H */
