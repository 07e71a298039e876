// SPDX-License-Identifier: GPL-2.0-only
/*
 * Images opened through the shared format code, and their virtual bytes
 * read the way the kernel target maps them.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "ccache.h"
#include "escape.h"
#include "formats/chain.h"
#include "formats/qcow2.h"
#include "image.h"
#include "imgfmt.h"
#include "uhost.h"

/* Make sure the strings get_info() filled in are terminated. */
static void info_terminate(struct imgfmt_info *info)
{
	info->backing_file[sizeof(info->backing_file) - 1] = '\0';
	info->backing_format[sizeof(info->backing_format) - 1] = '\0';
	info->data_file[sizeof(info->data_file) - 1] = '\0';
}

static const char *file_kind(mode_t mode);

static int image_refused(struct image *im, const char *err, int rc)
{
	if (!err)
		err = strerror(rc < 0 ? -rc : EIO);
	im->err = err;
	uport_dev_close(&im->dev);
	return fail("%s: %s", im->name, err);
}

/*
 * Where the data file named name lives: name itself when absolute, else
 * relative to the directory of the image at path.  (QEMU 7.2 resolves it
 * from its working directory, which makes an image's meaning depend on
 * where it is opened from; backing files it resolves as here.)
 */
static char *data_file_path(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;
	char *p;

	if (name[0] == '/' || !dir_len)
		return strdup(name);
	if (asprintf(&p, "%.*s%s", dir_len, path, name) < 0)
		return NULL;
	return p;
}

static int data_file_open(struct image *im, const char *name)
{
	struct stat st;
	int fd, rc;

	im->data_path = data_file_path(im->path, name);
	if (!im->data_path)
		return fail("out of memory");
	shown_name(&im->data_name, im->data_path);
	fd = file_open_nonblock(im->data_path, &st);
	if (fd < 0)
		return fail("%s: cannot open its external data file %s: %s",
			    im->name, im->data_name, strerror(-fd));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return fail("%s: its external data file %s is %s, not a regular file or block device",
			    im->name, im->data_name, file_kind(st.st_mode));
	}
	rc = uport_dev_open_fd(&im->data_dev, fd);
	if (rc) {
		close(fd);
		return fail("cannot open %s: %s", im->data_name,
			    strerror(-rc));
	}
	return 0;
}

/*
 * A QCOW2 image that keeps its clusters in an external data file gets it
 * opened here, read-only, by the name its data_file extension gives.
 * Errors in the header are left to imgfmt_open(), which names them.
 */
static int image_open_data_file(struct image *im)
{
	char name[sizeof(im->info.data_file)];
	const char *err = NULL;
	bool needed = false;

	if (im->ops != &imgfmt_qcow2_ops ||
	    imgfmt_qcow2_data_file(&im->dev, &needed, name, sizeof(name),
				   &err) || !needed)
		return 0;
	if (!name[0]) {
		im->err = "QCOW2 external data file not named in the image";
		return fail("%s: %s", im->name, im->err);
	}
	return data_file_open(im, name);
}

/* Detect and validate the image on im->dev. */
static int image_validate(struct image *im, const struct image_opts *o)
{
	struct imgfmt_open_args args = {
		.has_lower = o->has_lower,
		.snapshot = o->snapshot,
	};
	u64 cache_bytes = o->cache_bytes;
	const char *err = NULL;
	int rc;

	im->ops = imgfmt_detect(&im->dev, o->pin, &err);
	if (!im->ops)
		return image_refused(im, err ? err : "unknown image format",
				     -EINVAL);
	rc = image_open_data_file(im);
	if (rc) {
		uport_dev_close(&im->dev);
		return rc;
	}
	if (im->data_path)
		args.data_dev = &im->data_dev;

	if (!cache_bytes)
		cache_bytes = IMGFMT_DEFAULT_CACHE_BYTES;
	args.dev = &im->dev;
	args.cache_bytes = cache_bytes;
	rc = imgfmt_open(im->ops, &args, &im->img, &err);
	if (rc || !im->img) {
		im->img = NULL;
		return image_refused(im, err, rc);
	}
	im->info = im->img->info;
	info_terminate(&im->info);
	if (!im->info.format)
		im->info.format = im->ops->name;
	return 0;
}

_Static_assert(IMGFMT_SHOWN_MAX == IMGFMT_ESCAPED_MAX, "shown_name() cap");

char *shown_name(char (*buf)[IMGFMT_SHOWN_MAX], const char *s)
{
	return imgfmt_escape(*buf, sizeof(*buf), s, strlen(s));
}

/* What a file that cannot hold an image is, for the error line. */
static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	return "not a regular file";
}

int file_open_nonblock(const char *path, struct stat *st)
{
	int fd, err;

	/* Opening a FIFO without O_NONBLOCK waits for a writer forever. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st)) {
		err = errno;
		close(fd);
		return -err;
	}
	/* Reads of files and block devices never block; keep them plain. */
	if (S_ISREG(st->st_mode) || S_ISBLK(st->st_mode))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int image_open_file(const char *path, int *fdp)
{
	char shown[IMGFMT_SHOWN_MAX];
	struct stat st;
	int fd;

	fd = file_open_nonblock(path, &st);
	if (fd < 0)
		return fail("cannot open %s: %s", shown_name(&shown, path),
			    strerror(-fd));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return fail("%s: %s, not a regular file or block device",
			    shown_name(&shown, path), file_kind(st.st_mode));
	}
	*fdp = fd;
	return 0;
}

int image_open(struct image *im, const char *path,
	       const struct image_opts *o)
{
	int fd, rc;

	memset(im, 0, sizeof(*im));
	im->path = path;
	shown_name(&im->name, path);
	rc = image_open_file(path, &fd);
	if (rc)
		return rc;
	return image_open_fd(im, fd, path, o);
}

int image_open_fd(struct image *im, int fd, const char *path,
		  const struct image_opts *o)
{
	int rc;

	memset(im, 0, sizeof(*im));
	im->path = path;
	shown_name(&im->name, path);
	rc = uport_dev_open_fd(&im->dev, fd);
	if (rc) {
		close(fd);
		if (rc == -ENOTBLK)
			return fail("%s: not a regular file or block device",
				    im->name);
		return fail("cannot open %s: %s", im->name, strerror(-rc));
	}
	return image_validate(im, o);
}

static void lower_close(struct image *lower, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		image_close(&lower[i]);
	free(lower);
}

int image_set_lower(struct image *im, struct image *lower, unsigned int nr)
{
	struct imgfmt_image **layers;
	const char *err = NULL;
	unsigned int i;
	int rc;

	if (im->lower || !im->img) {
		lower_close(lower, nr);
		return fail("%s: layers already set", im->name);
	}
	layers = calloc((size_t)nr + 1, sizeof(*layers));
	if (!layers) {
		lower_close(lower, nr);
		return fail("out of memory");
	}
	layers[0] = im->img;
	for (i = 0; i < nr; i++)
		layers[i + 1] = lower[i].img;
	rc = imgfmt_chain_create(layers, nr + 1, IMGFMT_DEFAULT_CACHE_BYTES,
				 &im->chain, &err);
	free(layers);
	if (rc) {
		lower_close(lower, nr);
		return fail("%s: %s", im->name, err);
	}
	im->lower = lower;
	im->nr_lower = nr;
	return 0;
}

void image_close(struct image *im)
{
	imgfmt_chain_destroy(im->chain);
	im->chain = NULL;
	lower_close(im->lower, im->nr_lower);
	im->lower = NULL;
	im->nr_lower = 0;
	imgfmt_decoder_destroy(im->decoder);
	im->decoder = NULL;
	imgfmt_ccache_destroy(im->ccache);
	im->ccache = NULL;
	imgfmt_close(im->img);
	im->img = NULL;
	uport_dev_close(&im->dev);
	uport_dev_close(&im->data_dev);
	free(im->data_path);
	im->data_path = NULL;
}

int image_fd(const struct image *im)
{
	return uport_dev_fd(&im->dev);
}

unsigned int image_nr_files(const struct image *im)
{
	unsigned int i, n = 1 + !!im->data_path;

	for (i = 0; i < im->nr_lower; i++)
		n += image_nr_files(&im->lower[i]);
	return n;
}

int image_data_fd(const struct image *im)
{
	return uport_dev_fd(&im->data_dev);
}

u64 image_sectors(const struct image *im)
{
	u64 size = im->info.virtual_size;

	if (size > U64_MAX - (SECTOR_SIZE - 1))
		return 0;
	return (size + SECTOR_SIZE - 1) / SECTOR_SIZE;
}

/* Copy the bytes of one DATA run from the image or its data file. */
static int read_data_run(struct image *im, const struct imgfmt_run *run,
			 u64 voff, char *buf)
{
	struct imgfmt_dev *dev = run->on_data_dev ? &im->data_dev : &im->dev;
	const char *name = run->on_data_dev ? im->data_name : im->name;
	int rc;

	if (run->on_data_dev && !im->data_path)
		return fail("%s: data in an external data file it does not have (virtual offset %llu)",
			    im->name, (unsigned long long)voff);
	if (run->dev_offset > dev->size ||
	    run->length > dev->size - run->dev_offset)
		return fail("%s: data beyond the end of %s (virtual offset %llu, device offset %llu)",
			    im->name, name, (unsigned long long)voff,
			    (unsigned long long)run->dev_offset);
	rc = imgfmt_dev_read(dev, run->dev_offset, buf, run->length);
	if (rc)
		return fail("%s: read error at device offset %llu: %s",
			    name, (unsigned long long)run->dev_offset,
			    strerror(-rc));
	return 0;
}

/* Decompress the part of one cluster that a COMPRESSED run covers. */
static int read_compressed_run(struct image *im, const struct imgfmt_run *run,
			       u64 voff, char *buf)
{
	int rc;

	if (!im->ccache) {
		im->ccache = imgfmt_ccache_create(&im->dev,
						  run->comp_cluster_size);
		if (im->ccache)
			im->decoder = imgfmt_decoder_create(
				run->comp_cluster_size);
		if (!im->decoder) {
			imgfmt_ccache_destroy(im->ccache);
			im->ccache = NULL;
		}
		if (!im->ccache)
			return fail("%s: cannot set up decompression (cluster size %u)",
				    im->name, run->comp_cluster_size);
	}
	if (run->length > UINT32_MAX)
		return fail("%s: compressed run too long (virtual offset %llu)",
			    im->name, (unsigned long long)voff);
	rc = imgfmt_ccache_read(im->ccache, im->decoder, run, 0, buf,
				(u32)run->length);
	if (rc)
		return fail("%s: corrupt compressed cluster (virtual offset %llu, device offset %llu)",
			    im->name, (unsigned long long)voff,
			    (unsigned long long)run->comp_offset);
	return 0;
}

/* The image of layer n of im's chain (0: im itself). */
static struct image *image_layer(struct image *im, u32 n)
{
	return n && n <= im->nr_lower ? &im->lower[n - 1] : im;
}

static int map_failed(struct image *im, int rc, const char *err, u64 voff)
{
	if (rc == -EIO && err)
		return fail("%s: %s (virtual offset %llu)", im->name, err,
			    (unsigned long long)voff);
	return fail("%s: mapping virtual offset %llu failed: %s", im->name,
		    (unsigned long long)voff,
		    err ? err : strerror(rc < 0 ? -rc : EIO));
}

/* Fill one run of buf, which holds virtual bytes from voff on. */
static int read_run(struct image *im, const struct imgfmt_run *run,
		    u64 voff, char *buf, bool *zero)
{
	int rc;

	if (run->tail_zero > run->length)
		return fail("%s: bad run tail (virtual offset %llu)", im->name,
			    (unsigned long long)voff);
	switch (run->kind) {
	case IMGFMT_RUN_DATA:
		*zero = false;
		rc = read_data_run(im, run, voff, buf);
		break;
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		memset(buf, 0, run->length);
		return 0;
	case IMGFMT_RUN_COMPRESSED:
		*zero = false;
		rc = read_compressed_run(im, run, voff, buf);
		break;
	default:
		return fail("%s: the format returned an unknown run kind %d (virtual offset %llu)",
			    im->name, (int)run->kind,
			    (unsigned long long)voff);
	}
	if (!rc && run->tail_zero)
		memset(buf + run->length - run->tail_zero, 0, run->tail_zero);
	return rc;
}

int image_read(struct image *im, u64 off, u64 len, char *buf, bool *zero)
{
	struct imgfmt_run run;
	const char *err;
	u64 done = 0;
	int rc;

	*zero = true;
	while (done < len) {
		memset(&run, 0, sizeof(run));
		err = NULL;
		if (im->chain)
			rc = imgfmt_chain_map(im->chain, off + done, len - done,
					      0, &run, &err);
		else
			rc = imgfmt_map(im->img, off + done, len - done, 0,
					&run, &err);
		if (rc)
			return map_failed(im, rc, err, off + done);
		if (!run.length || run.length > len - done ||
		    run.length % SECTOR_SIZE)
			return fail("%s: bad run of %llu bytes for %llu bytes (virtual offset %llu)",
				    im->name, (unsigned long long)run.length,
				    (unsigned long long)(len - done),
				    (unsigned long long)(off + done));
		rc = read_run(image_layer(im, run.layer), &run, off + done,
			      buf + done, zero);
		if (rc)
			return rc;
		done += run.length;
	}
	return 0;
}
