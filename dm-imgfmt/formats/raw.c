// SPDX-License-Identifier: GPL-2.0-only
/*
 * Raw data: the device is the virtual disk.  Never detected by magic (any
 * bytes are a raw image, and a guest can write any header into one): it is
 * used only where a table or the helper names it, as QEMU allows a probed
 * raw file only as a backing layer.
 */
#include "runs.h"

struct raw_image {
	struct imgfmt_image img;
};

static int raw_open(const struct imgfmt_open_args *args,
		    struct imgfmt_image **imgp, const char **err)
{
	struct raw_image *r;

	/* imgfmt_open() refused a snapshot or a data file already. */
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r) {
		*err = "cannot allocate memory for the image";
		return -ENOMEM;
	}
	r->img.dev = args->dev;
	r->img.info.format = "raw";
	r->img.info.virtual_size = args->dev->size;
	*imgp = &r->img;
	return 0;
}

static void raw_close(struct imgfmt_image *img)
{
	if (img)
		kfree(container_of(img, struct raw_image, img));
}

static int raw_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
		      u64 pos, u64 limit, unsigned int flags,
		      struct imgfmt_unit *u, const char **err)
{
	/* One unit from pos to the end: nothing to look up or to fail. */
	(void)b;
	(void)limit;
	(void)flags;
	(void)err;
	u->kind = IMGFMT_RUN_DATA;
	u->start = pos;
	u->end = img->info.virtual_size;
	u->host = pos;
	return 0;
}

const struct imgfmt_format_ops imgfmt_raw_ops = {
	.name = "raw",
	.probe = NULL,		/* only by name */
	.open = raw_open,
	.close = raw_close,
	.lookup = raw_lookup,
};
