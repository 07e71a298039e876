// SPDX-License-Identifier: GPL-2.0-only
/*
 * The virtual disk of a command: a single image, or a VMDK descriptor's
 * extents (vmdk_disk.c), as segments read one after the other.
 */
#include <stdio.h>
#include <unistd.h>

#include "disk.h"
#include "imgfmt.h"

static int disk_open_image(struct disk *d, const struct image_opts *o)
{
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
	rc = image_open(&s->im, s->path, o);
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

int disk_open(struct disk *d, const char *path, const char *pin,
	      u64 cache_bytes)
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
		if (rc > 0) {
			rc = vmdk_disk_open(d, text, len, cache_bytes);
			free(text);
			return rc;
		}
	}
	return disk_open_image(d, &(struct image_opts){
		.pin = pin, .cache_bytes = cache_bytes });
}

int disk_open_snapshot(struct disk *d, const char *path, const char *pin,
		       const char *snapshot)
{
	memset(d, 0, sizeof(*d));
	d->path = path;
	shown_name(&d->name, path);
	return disk_open_image(d, &(struct image_opts){
		.pin = pin, .snapshot = snapshot });
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
			n += d->segs[i].im.nr_lower;
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
