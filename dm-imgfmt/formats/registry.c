// SPDX-License-Identifier: GPL-2.0-only
/*
 * The formats this build knows, and detection by header magic.
 */
#include "../imgfmt_format.h"

const struct imgfmt_format_ops *const imgfmt_formats[] = {
	&imgfmt_qcow2_ops,
	&imgfmt_vmdk_ops,
	&imgfmt_vmdk_sesparse_ops,
	&imgfmt_qcow_ops,
	&imgfmt_cow_ops,
	&imgfmt_raw_ops,
	NULL,
};

const char *const imgfmt_err_unreadable = "cannot read the image header";

/* Enough of the image's start for every format's probe. */
#define IMGFMT_PROBE_BYTES	512

const struct imgfmt_format_ops *imgfmt_detect(struct imgfmt_dev *dev,
					      const char *pin,
					      const char **err)
{
	u8 head[IMGFMT_PROBE_BYTES];
	size_t len = min_t(u64, sizeof(head), dev->size);
	unsigned int i;

	if (pin) {
		for (i = 0; imgfmt_formats[i]; i++)
			if (!strcmp(imgfmt_formats[i]->name, pin))
				break;
		if (!imgfmt_formats[i]) {
			*err = "unknown format name";
			return NULL;
		}
	}
	memset(head, 0, sizeof(head));
	if (len && imgfmt_dev_read(dev, 0, head, len)) {
		*err = imgfmt_err_unreadable;
		return NULL;
	}
	for (i = 0; imgfmt_formats[i]; i++) {
		if (pin && strcmp(imgfmt_formats[i]->name, pin))
			continue;
		/* No probe (raw): any bytes would pass; only by name. */
		if (!imgfmt_formats[i]->probe) {
			if (pin)
				return imgfmt_formats[i];
			continue;
		}
		if (imgfmt_formats[i]->probe(head, len))
			return imgfmt_formats[i];
		if (pin) {
			*err = "image does not match the format given by format=";
			return NULL;
		}
	}
	*err = "unknown image format";
	return NULL;
}

int imgfmt_open(const struct imgfmt_format_ops *ops,
		const struct imgfmt_open_args *args,
		struct imgfmt_image **imgp, const char **err)
{
	int r;

	/* Any other format would ignore them, and the device read wrong. */
	if ((args->snapshot || args->data_dev) && ops != &imgfmt_qcow2_ops) {
		*err = "only QCOW2 images have internal snapshots or external data files";
		return -EINVAL;
	}
	r = ops->open(args, imgp, err);
	if (!r)
		(*imgp)->ops = ops;
	return r;
}

void imgfmt_close(struct imgfmt_image *img)
{
	if (img)
		img->ops->close(img);
}
