// SPDX-License-Identifier: GPL-2.0-only
/*
 * VMDK disks made of extents: find the descriptor (a text file, or the
 * text a hosted sparse file of capacity 0 embeds, as QEMU reads it), parse
 * it (vmdk_desc.c) and open every extent file it names, relative to the
 * descriptor's directory, as one segment of the disk:
 *
 *	FLAT, VMFS				raw data at an offset: SEG_FLAT
 *	SPARSE, VMFSSPARSE, SESPARSE		the vmdk format code: SEG_IMAGE
 *	ZERO					zeroes: SEG_ZERO
 *
 * Extent names come from the descriptor, which anyone may have written:
 * only regular files are accepted (no devices, no FIFOs), each is checked
 * to hold what its line says, and opening never blocks.
 */
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "backing.h"
#include "disk.h"
#include "formats/vmdk_keys.h"
#include "escape.h"
#include "imgfmt.h"

/* The start of a file that tells a descriptor from an image. */
#define PROBE_BYTES		65536

/* Hosted sparse header fields (little-endian), VMware's layout. */
#define KDMV_CAPACITY		12	/* u64 sectors */
#define KDMV_DESC_OFFSET	28	/* u64 sectors */
#define KDMV_DESC_SIZE		36	/* u64 sectors */
#define KDMV_HEADER_LEN		44

static const unsigned char kdmv_magic[4] = { 'K', 'D', 'M', 'V' };
static const unsigned char cowd_magic[4] = { 'C', 'O', 'W', 'D' };
static const unsigned char sesparse_magic[8] = {
	0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0	/* le64 0xcafebabe */
};

static u64 get_le64(const unsigned char *p)
{
	u64 v;

	memcpy(&v, p, sizeof(v));
	return le64_to_cpu(v);
}

/* Read up to len bytes at off; *got says how many (fewer only at EOF). */
static int read_at(int fd, void *buf, size_t len, u64 off, size_t *got)
{
	char *p = buf;
	ssize_t n;

	*got = 0;
	while (*got < len) {
		n = pread(fd, p + *got, len - *got, (off_t)(off + *got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			break;
		*got += (size_t)n;
	}
	return 0;
}

/* Read len bytes at off of the file at path into a new NUL-ended buffer. */
static int read_text(int fd, const char *path, u64 off, size_t len,
		     char **text)
{
	size_t got;
	int rc;

	*text = malloc(len + 1);
	if (!*text)
		return fail("out of memory");
	rc = read_at(fd, *text, len, off, &got);
	if (rc) {
		free(*text);
		*text = NULL;
		return fail("cannot read %s: %s", path, strerror(-rc));
	}
	(*text)[got] = '\0';
	return 0;
}

/*
 * A hosted sparse file of capacity 0 is QEMU's way to store a descriptor
 * of other extents: take its embedded text as the descriptor.
 */
static int embedded_descriptor(struct disk *d, int fd,
			       const unsigned char *head, char **text,
			       size_t *len)
{
	u64 off = get_le64(head + KDMV_DESC_OFFSET);
	u64 sectors = get_le64(head + KDMV_DESC_SIZE);
	u64 file_size = d->file_size;
	const char *path = d->name;

	if (get_le64(head + KDMV_CAPACITY) || !off)
		return 0;
	d->is_desc = true;
	if (off >= file_size / SECTOR_SIZE || !sectors)
		return fail("%s: VMDK embedded descriptor beyond end of file",
			    path);
	*len = min_t(u64, sectors, VMDK_DESC_MAX_BYTES / SECTOR_SIZE) *
	       SECTOR_SIZE;
	*len = min_t(u64, *len, file_size - off * SECTOR_SIZE);
	return read_text(fd, path, off * SECTOR_SIZE, *len, text) ?: 1;
}

static int text_descriptor(struct disk *d, int fd, char **text, size_t *len)
{
	u64 file_size = d->file_size;
	const char *path = d->name;

	d->is_desc = true;
	if (file_size > VMDK_DESC_MAX_BYTES)
		return fail("%s: VMDK descriptor larger than %u bytes", path,
			    VMDK_DESC_MAX_BYTES);
	*len = (size_t)file_size;
	return read_text(fd, path, 0, *len, text) ?: 1;
}

static int probe_file(struct disk *d, int fd, char **text, size_t *len)
{
	const char *path = d->name;
	unsigned char *head;
	size_t got;
	int rc;

	head = malloc(PROBE_BYTES);
	if (!head)
		return fail("out of memory");
	rc = read_at(fd, head, PROBE_BYTES, 0, &got);
	if (rc)
		rc = fail("cannot read %s: %s", path, strerror(-rc));
	else if (got >= KDMV_HEADER_LEN && !memcmp(head, kdmv_magic, 4))
		rc = embedded_descriptor(d, fd, head, text, len);
	else if (vmdk_desc_probe((const char *)head, got))
		rc = text_descriptor(d, fd, text, len);
	free(head);
	return rc;
}

int vmdk_desc_load(struct disk *d, char **text, size_t *len)
{
	struct stat st;
	int fd, rc = 0;

	*text = NULL;
	*len = 0;
	fd = file_open_nonblock(d->path, &st);
	if (fd < 0)
		return 0;	/* opening it as an image reports why */
	if (S_ISREG(st.st_mode)) {
		d->file_size = (u64)st.st_size;
		rc = probe_file(d, fd, text, len);
	}
	close(fd);
	return rc;
}

/* Extents */

static int desc_failed(struct disk *d, const struct vmdk_desc_error *e)
{
	char msg[IMGFMT_SHOWN_MAX];

	/* The message quotes the descriptor's text as it is. */
	imgfmt_escape(msg, sizeof(msg), e->msg, sizeof(e->msg));
	if (e->line)
		return fail("%s:%u: %s", d->name, e->line, msg);
	return fail("%s: %s", d->name, msg);
}

/* The extent's file: absolute, or relative to the descriptor's directory. */
static int extent_path(struct disk *d, const struct vmdk_extent *e,
		       char **path)
{
	const char *slash = strrchr(d->path, '/');
	int dir_len = slash ? (int)(slash - d->path) + 1 : 0;
	size_t len;

	if (e->file[0] == '/')
		dir_len = 0;
	len = (size_t)dir_len + strlen(e->file);
	if (len >= PATH_MAX)
		return fail("%s:%u: extent path too long", d->name, e->line);
	*path = malloc(len + 1);
	if (!*path)
		return fail("out of memory");
	snprintf(*path, len + 1, "%.*s%s", dir_len, d->path, e->file);
	return 0;
}

static int flat_open(struct disk *d, const struct vmdk_extent *e,
		     struct segment *s, int fd)
{
	u64 need = (e->offset + e->sectors) * SECTOR_SIZE;

	if (s->file_size < need) {
		close(fd);
		return fail("%s:%u: extent file %s is too short: %llu bytes, the extent needs %llu",
			    d->name, e->line, s->name,
			    (unsigned long long)s->file_size,
			    (unsigned long long)need);
	}
	s->kind = SEG_FLAT;
	s->fd = fd;
	s->offset = e->offset * SECTOR_SIZE;
	return 0;
}

/* SPARSE and VMFSSPARSE take hosted or COWD files, SESPARSE seSparse. */
static bool sparse_magic_fits(const struct vmdk_extent *e,
			      const unsigned char *magic)
{
	if (e->type == VMDK_EXTENT_SESPARSE)
		return !memcmp(magic, sesparse_magic, sizeof(sesparse_magic));
	return !memcmp(magic, kdmv_magic, 4) || !memcmp(magic, cowd_magic, 4);
}

static int sparse_open(struct disk *d, const struct vmdk_extent *e,
		       struct segment *s, int fd, u64 cache_bytes)
{
	unsigned char magic[8];
	size_t got;
	int rc;

	rc = read_at(fd, magic, sizeof(magic), 0, &got);
	if (rc || got < sizeof(magic) || !sparse_magic_fits(e, magic)) {
		close(fd);
		if (rc)
			return fail("cannot read %s: %s", s->name,
				    strerror(-rc));
		return fail("%s:%u: extent file %s is not a %s extent",
			    d->name, e->line, s->name,
			    vmdk_extent_type_name(e->type));
	}
	s->kind = SEG_IMAGE;
	/* A delta's extent leaves to its parent what it does not hold. */
	rc = image_open_fd(&s->im, fd, s->path, &(struct image_opts){
		.cache_bytes = cache_bytes,
		.has_lower = vmdk_desc_has_parent(&d->desc) });
	if (rc)
		return rc;
	/* The magic was checked: this is the vmdk format or its seSparse. */
	if (strncmp(s->im.ops->name, "vmdk", 4))
		return fail("%s:%u: extent file %s is a %s image", d->name,
			    e->line, s->name, s->im.ops->name);
	if (s->im.info.virtual_size != s->bytes)
		return fail("%s:%u: extent file %s holds %llu sectors, the descriptor says %llu",
			    d->name, e->line, s->name,
			    (unsigned long long)(s->im.info.virtual_size /
						 SECTOR_SIZE),
			    (unsigned long long)e->sectors);
	return 0;
}

static int extent_open(struct disk *d, const struct vmdk_extent *e,
		       struct segment *s, u64 cache_bytes)
{
	struct stat st;
	int fd, rc;

	s->line = e->line;
	s->sectors = e->sectors;
	s->bytes = e->sectors * SECTOR_SIZE;
	if (e->type == VMDK_EXTENT_ZERO) {
		s->kind = SEG_ZERO;
		return 0;
	}
	rc = extent_path(d, e, &s->path);
	if (rc)
		return rc;
	shown_name(&s->name, s->path);
	/* Never wait on a FIFO a hostile descriptor names. */
	fd = file_open_nonblock(s->path, &st);
	if (fd < 0)
		return fail("%s:%u: cannot open extent file %s: %s", d->name,
			    e->line, s->name, strerror(-fd));
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail("%s:%u: extent file %s is not a regular file",
			    d->name, e->line, s->name);
	}
	s->file_size = (u64)st.st_size;
	if (vmdk_extent_is_flat(e->type))
		return flat_open(d, e, s, fd);
	return sparse_open(d, e, s, fd, cache_bytes);
}

static int extents_open(struct disk *d, u64 cache_bytes)
{
	unsigned int i, nr = d->desc.nr_extents;
	int rc;

	/* Each extent's file is held open (attach raises it further). */
	rc = raise_file_limit(nr, d->name);
	if (rc)
		return rc;
	d->segs = calloc(nr, sizeof(*d->segs));
	if (!d->segs)
		return fail("out of memory");
	for (i = 0; i < nr; i++)
		d->segs[i].fd = -1;
	d->nr_segs = nr;
	for (i = 0; i < nr; i++) {
		rc = extent_open(d, &d->desc.extents[i], &d->segs[i],
				 cache_bytes);
		if (rc)
			return rc;
	}
	return 0;
}

/* Do the two paths name files of the same directory (as written)? */
static bool same_dir(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
	size_t la = sa ? (size_t)(sa - a) : 0, lb = sb ? (size_t)(sb - b) : 0;

	return !!sa == !!sb && la == lb && !memcmp(a, b, la);
}

/*
 * The parent's name as the extent's image records it.  The hint is
 * relative to the descriptor and the chain code takes a name relative to
 * the image naming it, so the name is made absolute when the extent lives
 * in another directory.
 */
static int delta_backing_name(struct disk *d, struct segment *s)
{
	const char *hint = d->desc.parent_hint;
	char *name = s->im.info.backing_file, *full, cwd[PATH_MAX];
	size_t size = sizeof(s->im.info.backing_file);
	int n;

	if (hint[0] == '/' || same_dir(d->path, s->path)) {
		n = snprintf(name, size, "%s", hint);
	} else {
		full = backing_full_name(d->path, hint);
		if (!full)
			return fail("out of memory");
		if (full[0] != '/' && !getcwd(cwd, sizeof(cwd))) {
			free(full);
			return fail("cannot get the working directory: %s",
				    strerror(errno));
		}
		n = full[0] == '/' ? snprintf(name, size, "%s", full) :
			snprintf(name, size, "%s/%s", cwd, full);
		free(full);
	}
	if (n < 0 || (size_t)n >= size)
		return fail("%s:%u: parentFileNameHint too long", d->name,
			    d->desc.parent_hint_line);
	return 0;
}

/*
 * A descriptor naming a parent: a delta of one sparse extent, whose image
 * gets the parent as its backing file (and the descriptor's CIDs).
 */
static int delta_open(struct disk *d, u64 cache_bytes, bool with_backing)
{
	const struct vmdk_desc *desc = &d->desc;
	unsigned int line = desc->parent_hint_line;
	struct segment *s = &d->segs[0];
	struct imgfmt_info *info = &s->im.info;
	struct image *lower;
	unsigned int nr;
	int rc;

	if (desc->nr_extents != 1)
		return fail("%s:%u: backing chains through split VMDK descriptors are not supported yet",
			    d->name, line);
	if (s->kind != SEG_IMAGE)
		return fail("%s:%u: a VMDK delta disk needs a sparse extent",
			    d->name, line);
	if (!desc->has_parent_cid || desc->parent_cid == VMDK_CID_NONE)
		return fail("%s:%u: VMDK delta disk without a parentCID",
			    d->name, line);
	rc = delta_backing_name(d, s);
	if (rc)
		return rc;
	snprintf(info->backing_format, sizeof(info->backing_format), "vmdk");
	info->has_cid = desc->has_cid;
	info->cid = desc->cid;
	info->parent_cid = desc->parent_cid;
	if (!with_backing)
		return 0;
	rc = backing_open(&s->im, &(struct image_opts){
		.cache_bytes = cache_bytes }, &lower, &nr);
	return rc ?: image_set_lower(&s->im, lower, nr);
}

int vmdk_disk_open(struct disk *d, const char *text, size_t len,
		   u64 cache_bytes, bool with_backing)
{
	struct vmdk_desc_error e;
	int rc;

	if (vmdk_desc_parse(text, len, &d->desc, &e))
		return desc_failed(d, &e);
	d->desc_parsed = true;
	if (vmdk_desc_check(&d->desc, &e))
		return desc_failed(d, &e);
	rc = extents_open(d, cache_bytes);
	if (rc)
		return rc;
	/* After the extents: a missing file is the first thing to fix. */
	if (vmdk_desc_has_parent(&d->desc)) {
		rc = delta_open(d, cache_bytes, with_backing);
		if (rc)
			return rc;
	}
	d->size = d->desc.sectors * SECTOR_SIZE;
	return 0;
}

/* The descriptor embedded in a hosted sparse image */

static int embedded_text(struct image *im, char **text, size_t *len)
{
	unsigned char head[KDMV_HEADER_LEN];
	u64 off, sectors;

	*text = NULL;
	if (im->dev.size < sizeof(head) ||
	    imgfmt_dev_read(&im->dev, 0, head, sizeof(head)) ||
	    memcmp(head, kdmv_magic, 4))
		return 0;
	off = get_le64(head + KDMV_DESC_OFFSET);
	sectors = get_le64(head + KDMV_DESC_SIZE);
	if (!off || !sectors || off >= im->dev.size / SECTOR_SIZE)
		return 0;
	*len = min_t(u64, sectors, VMDK_DESC_MAX_BYTES / SECTOR_SIZE) *
	       SECTOR_SIZE;
	*len = min_t(u64, *len, im->dev.size - off * SECTOR_SIZE);
	*text = calloc(1, *len + 1);
	if (!*text)
		return -1;
	if (imgfmt_dev_read(&im->dev, off * SECTOR_SIZE, *text, *len)) {
		free(*text);
		*text = NULL;
		return -1;
	}
	return 0;
}

int vmdk_embedded_create_type(struct image *im, char *ct, size_t ct_size,
			      char *why, size_t why_size)
{
	struct vmdk_desc_error e;
	struct vmdk_desc desc;
	size_t len = 0;
	char *text;

	ct[0] = '\0';
	if (embedded_text(im, &text, &len)) {
		snprintf(why, why_size, "cannot read the embedded descriptor");
		return -1;
	}
	if (!text)
		return 0;
	/* Often all zeroes: the split sparse extents QEMU writes. */
	if (!text[0]) {
		free(text);
		return 0;
	}
	if (vmdk_desc_parse(text, len, &desc, &e)) {
		snprintf(why, why_size, "embedded descriptor line %u: %s",
			 e.line, e.msg);
		free(text);
		return -1;
	}
	snprintf(ct, ct_size, "%s", desc.create_type);
	vmdk_desc_free(&desc);
	free(text);
	return 0;
}
