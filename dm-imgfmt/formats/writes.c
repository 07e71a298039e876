// SPDX-License-Identifier: GPL-2.0-only
/*
 * The format-independent part of writes: checks every request before a
 * format sees it.
 */
#include "../imgfmt_format.h"

const char *const imgfmt_err_no_room =
	"no space left on the device for a new cluster";

static bool write_request_ok(struct imgfmt_image *img, u64 offset, u64 len)
{
	u64 end;

	return len && !(offset % 512) && !(len % 512) &&
	       !check_add_overflow(offset, len, &end) &&
	       offset < img->info.virtual_size;
}

/* What the caller relies on: the plan holds offset and whole sectors. */
static bool write_plan_ok(const struct imgfmt_wplan *p, u64 offset, u64 len)
{
	if (p->vstart > offset || p->vend <= offset || p->vstart % 512 ||
	    p->vend % 512 || p->host % 512 ||
	    (p->host_zeroed && (p->in_place || p->zeroed)))
		return false;
	/* Zeroes change nothing outside the request, and write no data. */
	return !p->zeroed ||
	       (p->vstart == offset && p->vend - offset <= len && !p->in_place);
}

int imgfmt_prepare_write(struct imgfmt_image *img, u64 offset, u64 len,
			 unsigned int flags, struct imgfmt_wplan *p,
			 const char **err)
{
	int r;

	if (!img->ops->prepare_write || !img->writable) {
		*err = "image is not open for writing";
		return -EROFS;
	}
	if (!write_request_ok(img, offset, len)) {
		*err = "write not in whole sectors of the virtual disk";
		return -EINVAL;
	}
	memset(p, 0, sizeof(*p));
	r = img->ops->prepare_write(img, offset, len, flags, p, err);
	if (r)
		return r;
	if (!write_plan_ok(p, offset, len)) {
		*err = "bad write plan from the format";
		return -EIO;
	}
	return 0;
}

int imgfmt_finish_write(struct imgfmt_image *img,
			const struct imgfmt_wplan *p, unsigned int flags,
			const char **err)
{
	if (p->in_place)
		return 0;
	return img->ops->finish_write(img, p, flags, err);
}

int imgfmt_reserve(struct imgfmt_image *img, u64 *host, const char **err)
{
	if (!img->ops->reserve || !img->writable) {
		*err = "image has no reserved clusters";
		return -EOPNOTSUPP;
	}
	return img->ops->reserve(img, host, err);
}

int imgfmt_unreserve(struct imgfmt_image *img, u64 host, const char **err)
{
	return img->ops->unreserve(img, host, err);
}

/*
 * A plan for [offset, offset + len) into reserved cluster host: one that
 * holds the request whole and writes it alone into zeroed space, else
 * -EWOULDBLOCK (the writer's path).
 */
int imgfmt_prepare_reserved(struct imgfmt_image *img, u64 offset, u64 len,
			    u64 host, struct imgfmt_wplan *p)
{
	if (!img->ops->prepare_reserved || !img->writable ||
	    !write_request_ok(img, offset, len))
		return -EWOULDBLOCK;
	memset(p, 0, sizeof(*p));
	if (img->ops->prepare_reserved(img, offset, host, p))
		return -EWOULDBLOCK;
	if (!write_plan_ok(p, offset, len) || !p->host_zeroed ||
	    p->host != host || p->in_place || p->vend < offset + len)
		return -EIO;
	return 0;
}

int imgfmt_commit(struct imgfmt_image *img, const char **err)
{
	if (!img->ops->commit || !img->writable) {
		*err = "image is not open for writing";
		return -EROFS;
	}
	return img->ops->commit(img, err);
}

void imgfmt_get_wstats(struct imgfmt_image *img, struct imgfmt_wstats *st)
{
	memset(st, 0, sizeof(*st));
	if (img->writable && img->ops->get_wstats)
		img->ops->get_wstats(img, st);
}
