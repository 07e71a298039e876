/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel API differences, decided by compile probes (scripts/compat-probe.sh
 * writes compat-probed.h), never by version numbers: distribution kernels
 * carry backports.
 */
#ifndef IMGFMT_COMPAT_H
#define IMGFMT_COMPAT_H

#include <linux/blkdev.h>
#include "compat-probed.h"

#ifdef IMGFMT_HAVE_BLK_MODE_T
#define IMGFMT_MODE_WRITE	BLK_OPEN_WRITE
#define IMGFMT_MODE_READ	BLK_OPEN_READ
#define IMGFMT_MODE_T		blk_mode_t
#else
#define IMGFMT_MODE_WRITE	FMODE_WRITE
#define IMGFMT_MODE_READ	FMODE_READ
#define IMGFMT_MODE_T		fmode_t
#endif

#endif /* IMGFMT_COMPAT_H */
