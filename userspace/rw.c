// SPDX-License-Identifier: GPL-2.0-only
/*
 * attach --rw and detach of a read-write disk, on the image file itself.
 *
 * The kernel's QCOW2 writer allocates clusters only inside its device,
 * at the image's end (the first cluster no refcount covers), so attach
 * makes the file as large as one attachment can make the image, sparse:
 * nothing is used until written.  First the file is cut to the image's
 * end: what lies past it (clusters a crash left unreferenced) then reads
 * as zeroes.  detach cuts the file back to the image's end once the
 * devices are gone, while the loop device still holds the file and its
 * write lock, so that nothing else can write it in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "formats/qcow2_check.h"
#include "growth.h"
#include "image.h"
#include "imgfmt.h"
#include "rw.h"
#include "uhost.h"

/* refcount_table_clusters in the QCOW2 header (big-endian). */
#define QCOW2_RT_CLUSTERS_AT	56

int rw_open_top(struct disk *d, struct rw_top *top)
{
	struct segment *s = &d->segs[0];
	struct stat a, b;
	int fd;

	top->fd = -1;
	top->im = NULL;
	if (d->is_desc || d->nr_segs != 1 || s->kind != SEG_IMAGE)
		return usage_fail("%s: this image format (vmdk) cannot be written yet: attach it without --rw",
				  d->name);
	if (s->im.ops != &imgfmt_qcow2_ops)
		return usage_fail("%s: this image format (%s) cannot be written yet: attach it without --rw",
				  d->name, s->im.ops->name);
	fd = open(s->path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fail("%s: cannot open it for writing: %s (attach it without --rw)",
			    d->name, strerror(errno));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	/* The file validated, not one renamed over it meanwhile. */
	if (fstat(fd, &a) || fstat(image_fd(&s->im), &b) ||
	    a.st_mode != b.st_mode ||
	    (S_ISBLK(a.st_mode) ? a.st_rdev != b.st_rdev :
	     a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
		close(fd);
		return fail("%s: the file changed while it was being opened",
			    d->name);
	}
	top->fd = fd;
	top->im = &s->im;
	return 0;
}

/* The refcount table's size in clusters, from the header. */
static int read_rt_clusters(int fd, const char *name, uint64_t *clusters)
{
	unsigned char b[4];

	if (pread(fd, b, sizeof(b), QCOW2_RT_CLUSTERS_AT) != (ssize_t)sizeof(b))
		return fail("%s: cannot read its header", name);
	*clusters = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 |
		    (uint64_t)b[2] << 8 | b[3];
	return 0;
}

/*
 * Open the image for writing as the kernel will, which refuses what it
 * refuses in the same words, and take its shape from it.
 */
static int writer_shape(const struct rw_top *t, struct qcow2_shape *sh)
{
	const struct image *im = t->im;
	struct imgfmt_open_args args = {
		.cache_bytes = IMGFMT_DEFAULT_CACHE_BYTES,
		.has_lower = im->nr_lower > 0,
		.writable = true,
	};
	struct imgfmt_image *img = NULL;
	struct imgfmt_wstats st;
	struct imgfmt_dev dev;
	const char *err = NULL;
	int fd, rc;

	fd = dup(t->fd);
	if (fd < 0)
		return fail("%s: %s", im->name, strerror(errno));
	rc = uport_dev_open_fd(&dev, fd);
	if (rc) {
		close(fd);
		return fail("%s: %s", im->name, strerror(-rc));
	}
	rc = uport_dev_make_writable(&dev);
	if (rc) {
		uport_dev_close(&dev);
		return fail("%s: %s", im->name, strerror(-rc));
	}
	args.dev = &dev;
	if (im->data_path)
		args.data_dev = (struct imgfmt_dev *)&im->data_dev;
	rc = imgfmt_open(&imgfmt_qcow2_ops, &args, &img, &err);
	if (rc || !img) {
		uport_dev_close(&dev);
		return fail("%s: %s", im->name,
			    err ? err : strerror(rc < 0 ? -rc : EIO));
	}
	imgfmt_get_wstats(img, &st);
	sh->image_end = st.image_end;
	sh->virtual_size = img->info.virtual_size;
	sh->cluster_bits = (unsigned int)__builtin_ctz(img->info.cluster_size);
	sh->refcount_order = (unsigned int)__builtin_ctz(img->info.refcount_bits);
	sh->extended_l2 = img->info.extended_l2;
	imgfmt_close(img);
	rc = read_rt_clusters(fd, im->name, &sh->reftable_clusters);
	uport_dev_close(&dev);
	return rc;
}

int rw_prepare_top(void *top, unsigned long long *file_size)
{
	const struct rw_top *t = top;
	const char *name = t->im->name;
	struct qcow2_shape sh;
	struct stat st;
	uint64_t end;
	int rc;

	rc = writer_shape(t, &sh);
	if (rc)
		return rc;
	if (fstat(t->fd, &st))
		return fail("%s: %s", name, strerror(errno));
	/* A block device is not resized: the image grows up to its end. */
	if (!S_ISREG(st.st_mode))
		return 0;
	rc = qcow2_worst_case_end(&sh, &end);
	if (rc == -EFBIG || end > (uint64_t)INT64_MAX)
		return fail("%s: the image could grow past the largest QCOW2 image",
			    name);
	if (rc)
		return fail("%s: QCOW2 layout outside what the writer takes",
			    name);
	if (ftruncate(t->fd, (off_t)sh.image_end))
		return fail("%s: cannot cut it to the image's end (%llu bytes): %s",
			    name, (unsigned long long)sh.image_end,
			    strerror(errno));
	if (ftruncate(t->fd, (off_t)end))
		return fail("%s: cannot grow it to %llu bytes (as far as writes can take the image): %s",
			    name, (unsigned long long)end, strerror(errno));
	*file_size = end;
	return 0;
}

int rw_trim_file(int fd, const char *name)
{
	struct imgfmt_dev dev;
	const char *err = NULL;
	struct stat st;
	u64 end = 0;
	int dfd, rc;

	if (fstat(fd, &st))
		return fail("%s: %s", name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return 0;
	dfd = dup(fd);
	if (dfd < 0)
		return fail("%s: %s", name, strerror(errno));
	rc = uport_dev_open_fd(&dev, dfd);
	if (rc) {
		close(dfd);
		return fail("%s: %s", name, strerror(-rc));
	}
	rc = imgfmt_qcow2_image_end(&dev, &end, &err);
	uport_dev_close(&dev);
	if (rc)
		return fail("%s: cannot find the image's end: %s", name,
			    err ? err : strerror(-rc));
	/* No refcount at all is no QCOW2 image to cut: leave it. */
	if (!end)
		return fail("%s: no cluster has a refcount: not cut", name);
	if (end < (u64)st.st_size && ftruncate(fd, (off_t)end))
		return fail("%s: cannot cut it to the image's end (%llu bytes): %s",
			    name, (unsigned long long)end, strerror(errno));
	if (fsync(fd))
		return fail("%s: cannot sync it: %s", name, strerror(errno));
	return 0;
}
