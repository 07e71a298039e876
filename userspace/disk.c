// SPDX-License-Identifier: GPL-2.0-only
/*
 * The virtual disk of a command: a single image, or a VMDK descriptor's
 * extents (vmdk_disk.c), as segments read one after the other.
 */
#include <stdio.h>
#include <unistd.h>

#include "backing.h"
#include "disk.h"
#include "imgfmt.h"

/*
 * The backing chain under the segment's image, when it has one (and the
 * caller wants it: `info` describes an overlay without its backing file,
 * as qemu-img info does).
 */
static int open_lower(struct segment *s, const struct image_opts *o,
		      bool with_backing)
{
	struct image *lower;
	unsigned int nr;
	int rc;

	if (!with_backing || !s->im.info.backing_file[0])
		return 0;
	rc = backing_open(&s->im, o, &lower, &nr);
	if (rc)
		return rc;
	return image_set_lower(&s->im, lower, nr);
}

static int disk_open_image(struct disk *d, const char *pin, u64 cache_bytes,
			   bool with_backing, const char *snapshot)
{
	struct image_opts o = {
		.pin = pin,
		.cache_bytes = cache_bytes,
		.snapshot = snapshot,
		/* Refused below when the layers cannot be found. */
		.has_lower = true,
	};
	struct segment *s;
	int rc;

	d->segs = calloc(1, sizeof(*d->segs));
	if (!d->segs)
		return fail("out of memory");
	s = &d->segs[0];
	s->fd = -1;
	d->nr_segs = 1;
	s->path = strdup(d->path);
	if (!s->path)
		return fail("out of memory");
	shown_name(&s->name, s->path);
	s->kind = SEG_IMAGE;
	rc = image_open(&s->im, s->path, &o);
	if (!rc)
		rc = open_lower(s, &o, with_backing);
	if (rc)
		return rc;
	s->sectors = image_sectors(&s->im);
	if (!s->sectors)
		return fail("%s: the virtual disk is empty or too large to map",
			    d->name);
	s->bytes = s->im.info.virtual_size;
	s->file_size = s->im.dev.size;
	d->file_size = s->file_size;
	d->size = s->bytes;
	return 0;
}

static int disk_open_as(struct disk *d, const char *path, const char *pin,
			u64 cache_bytes, bool with_backing,
			const char *snapshot)
{
	size_t len = 0;
	char *text = NULL;
	int rc;

	memset(d, 0, sizeof(*d));
	d->path = path;
	shown_name(&d->name, path);
	if (!pin || !strcmp(pin, "vmdk")) {
		rc = vmdk_desc_load(d, &text, &len);
		if (rc < 0)
			return rc;
		if (rc > 0 && snapshot) {
			free(text);
			return fail("%s: a VMDK descriptor has no internal snapshots",
				    d->name);
		}
		if (rc > 0) {
			rc = vmdk_disk_open(d, text, len, cache_bytes,
					    with_backing);
			free(text);
			return rc;
		}
	}
	return disk_open_image(d, pin, cache_bytes, with_backing, snapshot);
}

int disk_open(struct disk *d, const char *path, const char *pin,
	      u64 cache_bytes)
{
	return disk_open_as(d, path, pin, cache_bytes, true, NULL);
}

int disk_open_top(struct disk *d, const char *path, const char *pin)
{
	return disk_open_as(d, path, pin, 0, false, NULL);
}

int disk_open_snapshot(struct disk *d, const char *path, const char *pin,
		       const char *snapshot, u64 cache_bytes)
{
	return disk_open_as(d, path, pin, cache_bytes, true, snapshot);
}

void disk_close(struct disk *d)
{
	struct segment *s;
	unsigned int i;

	for (i = 0; i < d->nr_segs; i++) {
		s = &d->segs[i];
		image_close(&s->im);
		if (s->fd >= 0)
			close(s->fd);
		free(s->path);
	}
	free(d->segs);
	vmdk_desc_free(&d->desc);
	memset(d, 0, sizeof(*d));
}

unsigned int disk_nr_files(const struct disk *d)
{
	unsigned int i, n = 0;

	for (i = 0; i < d->nr_segs; i++) {
		if (d->segs[i].kind != SEG_ZERO)
			n++;
		if (d->segs[i].kind == SEG_IMAGE)
			n += image_nr_files(&d->segs[i].im) - 1;
	}
	return n;
}

int segment_fd(const struct segment *s)
{
	if (s->kind == SEG_IMAGE)
		return image_fd(&s->im);
	return s->fd;
}

static bool buffer_is_zero(const char *buf, u64 len)
{
	const char *end = buf + len;

	for (; buf < end; buf++)
		if (*buf)
			return false;
	return true;
}

/* Raw data of a FLAT extent; the file was checked to hold all of it. */
static int flat_read(struct segment *s, u64 off, u64 len, char *buf,
		     bool *zero)
{
	u64 pos = s->offset + off;
	ssize_t n;

	while (len) {
		n = pread(s->fd, buf, min_t(u64, len, 1U << 30), (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail("%s: read error at offset %llu: %s",
				    s->name, (unsigned long long)pos,
				    n < 0 ? strerror(errno) :
				    "the file shrank");
		if (!buffer_is_zero(buf, (u64)n))
			*zero = false;
		buf += n;
		pos += (u64)n;
		len -= (u64)n;
	}
	return 0;
}

int segment_read(struct segment *s, u64 off, u64 len, char *buf, bool *zero)
{
	switch (s->kind) {
	case SEG_IMAGE:
		return image_read(&s->im, off, len, buf, zero);
	case SEG_FLAT:
		*zero = true;
		return flat_read(s, off, len, buf, zero);
	case SEG_ZERO:
		memset(buf, 0, len);
		*zero = true;
		return 0;
	}
	return fail("unknown segment kind %d", (int)s->kind);
}
