// SPDX-License-Identifier: GPL-2.0-only
/* Since 6.5: block device open modes are blk_mode_t and BLK_OPEN_*. */
#include <linux/blkdev.h>

blk_mode_t imgfmt_probe_mode(void);
blk_mode_t imgfmt_probe_mode(void)
{
	return BLK_OPEN_READ | BLK_OPEN_WRITE;
}
