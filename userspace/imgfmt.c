// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt: the userspace helper of dm-imgfmt.
 *
 * It validates and describes VM disk images with the same format code the
 * kernel target runs, prints device-mapper tables for them, attaches and
 * detaches them as read-only block devices, and reads a virtual disk, or a
 * window of it, through the shared mapping code (the oracle for the kernel's
 * answers).
 */
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "check.h"
#include "create.h"
#include "disk.h"
#include "table_args.h"
#include "imgfmt.h"
#include "rw.h"
#include "snapshot.h"
#include "uhost.h"

/* Bytes asked of map() and written out at a time by `imgfmt read`. */
#define READ_CHUNK	BIT(20)

/* Options given on the command line. */
struct opts {
	const char *format;	/* --format, or NULL to probe */
	const char *name;	/* --name, or NULL */
	u64 cache_bytes;	/* --cache-size, or 0 when not given */
	u64 offset;		/* --offset, or 0 */
	u64 length;		/* --length, when has_length */
	bool has_length;
	bool json;		/* --output=json */
	bool backing_chain;	/* --backing-chain */
	const char *snapshot;	/* --snapshot, or NULL: the active state */
	bool list;		/* snapshot -l */
	bool rw;		/* attach --rw */
	bool force_share;	/* attach --force-share, -U */
};

/* Table arguments */

/* A device argument must be one word of the table line. */
static int check_table_dev(const char *dev)
{
	const unsigned char *p;

	if (!*dev)
		return usage_fail("DEV must not be empty");
	for (p = (const unsigned char *)dev; *p; p++)
		if (isspace(*p) || iscntrl(*p) || *p == '\\')
			return usage_fail("DEV may not hold spaces, control characters or \\");
	return 0;
}

/* The targets of a disk's table, one per segment. */
struct pieces {
	struct dm_piece *p;
	unsigned int nr;
	char **opts;		/* each imgfmt target's option words */
	/*
	 * Per piece: its lower layers, their option words, and the data
	 * files of it ([0]) and of its layers ([1 + j]).
	 */
	struct dm_piece **lower;
	char (**lower_opts)[32];
	struct dm_piece **data;
};

static const enum dm_piece_kind piece_kinds[] = {
	[SEG_IMAGE] = DM_PIECE_IMGFMT,
	[SEG_FLAT] = DM_PIECE_LINEAR,
	[SEG_ZERO] = DM_PIECE_ZERO,
};

static void pieces_free(struct pieces *ps)
{
	unsigned int i;

	for (i = 0; ps->lower && i < ps->nr; i++) {
		free(ps->lower[i]);
		free(ps->lower_opts[i]);
		free(ps->data[i]);
		free(ps->opts[i]);
	}
	free(ps->lower);
	free(ps->lower_opts);
	free(ps->data);
	free(ps->p);
	free(ps->opts);
}

/*
 * The option words of an imgfmt target (data_dev= comes with the
 * devices): format is the format to pin, or NULL.  A string to free(),
 * or NULL with the error recorded.
 */
static char *target_opts(const char *format, u64 cache_bytes,
			 const char *snapshot)
{
	char cache[32] = "", *word = NULL, *buf = NULL;
	int n;

	if (snapshot) {
		word = table_word_encode(snapshot);
		if (!word) {
			fail("out of memory");
			return NULL;
		}
	}
	if (cache_bytes)
		snprintf(cache, sizeof(cache), "cache_size=%llu",
			 (unsigned long long)cache_bytes);
	n = asprintf(&buf, "%s%s%s%s%s%s", format ? "format=" : "",
		     format ? format : "", format && *cache ? " " : "", cache,
		     word && (format || *cache) ? " snapshot=" :
		     word ? "snapshot=" : "", word ? word : "");
	free(word);
	if (n < 0) {
		fail("out of memory");
		return NULL;
	}
	return buf;
}

/* The data file of im as a piece of its own, when it has one. */
static void piece_make_data(struct dm_piece *p, const struct image *im)
{
	p->kind = DM_PIECE_LINEAR;
	p->fd = image_data_fd(im);
	p->path = im->data_path;
	p->name = im->data_name;
	p->file_size = im->data_dev.size;
	p->sectors = im->data_dev.size / SECTOR_SIZE;
	p->opts = "";
}

/*
 * The lower layers of an image piece: each pinned to the format it was
 * opened as (raw is never detected, and the kernel must read each layer
 * as the helper resolved it).
 */
static int piece_make_lower(struct pieces *ps, unsigned int i,
			    const struct image *im)
{
	const struct image *l;
	struct dm_piece *p;
	unsigned int j;

	ps->data[i] = calloc(1 + (size_t)im->nr_lower, sizeof(*ps->data[i]));
	ps->lower[i] = calloc(im->nr_lower ? im->nr_lower : 1,
			      sizeof(*ps->lower[i]));
	ps->lower_opts[i] = calloc(im->nr_lower ? im->nr_lower : 1,
				   sizeof(*ps->lower_opts[i]));
	if (!ps->data[i] || !ps->lower[i] || !ps->lower_opts[i])
		return fail("out of memory");
	if (im->data_path) {
		piece_make_data(&ps->data[i][0], im);
		ps->p[i].data = &ps->data[i][0];
	}
	for (j = 0; j < im->nr_lower; j++) {
		l = &im->lower[j];
		p = &ps->lower[i][j];
		p->kind = DM_PIECE_IMGFMT;
		p->fd = image_fd(l);
		p->path = l->path;
		p->name = l->name;
		p->file_size = l->dev.size;
		snprintf(ps->lower_opts[i][j], sizeof(ps->lower_opts[i][j]),
			 "format=%s", l->ops->name);
		p->opts = ps->lower_opts[i][j];
		if (l->data_path) {
			piece_make_data(&ps->data[i][1 + j], l);
			p->data = &ps->data[i][1 + j];
		}
	}
	ps->p[i].lower = ps->lower[i];
	ps->p[i].nr_lower = im->nr_lower;
	return 0;
}

/*
 * Extents of a descriptor are pinned to the format found at open (vmdk, or
 * its seSparse variant); a single image only when --format asks for it.
 */
static int piece_make(struct pieces *ps, unsigned int i,
		      const struct disk *d, const struct opts *o)
{
	const struct segment *s = &d->segs[i];
	struct dm_piece *p = &ps->p[i];
	const char *format = NULL;

	if (s->kind == SEG_IMAGE && (d->is_desc || o->format))
		format = s->im.ops->name;
	p->kind = piece_kinds[s->kind];
	p->sectors = s->sectors;
	p->fd = segment_fd(s);
	p->path = s->path;
	p->name = s->name;
	p->file_size = s->file_size;
	p->offset = s->offset / SECTOR_SIZE;
	ps->opts[i] = target_opts(format, o->cache_bytes,
				  s->kind == SEG_IMAGE ? o->snapshot : NULL);
	if (!ps->opts[i])
		return FAIL;
	p->opts = ps->opts[i];
	if (s->kind == SEG_IMAGE && piece_make_lower(ps, i, &s->im))
		return FAIL;
	return 0;
}

static int pieces_make(struct pieces *ps, const struct disk *d,
		       const struct opts *o)
{
	unsigned int i;
	int rc;

	memset(ps, 0, sizeof(*ps));
	ps->p = calloc(d->nr_segs, sizeof(*ps->p));
	ps->opts = calloc(d->nr_segs, sizeof(*ps->opts));
	ps->lower = calloc(d->nr_segs, sizeof(*ps->lower));
	ps->lower_opts = calloc(d->nr_segs, sizeof(*ps->lower_opts));
	ps->data = calloc(d->nr_segs, sizeof(*ps->data));
	if (!ps->p || !ps->opts || !ps->lower || !ps->lower_opts || !ps->data)
		return fail("out of memory");
	ps->nr = d->nr_segs;
	for (i = 0; i < d->nr_segs; i++) {
		rc = piece_make(ps, i, d, o);
		if (rc)
			return rc;
	}
	return 0;
}

/* info */

static int cmd_info(struct opts *o, char **args)
{
	if (o->backing_chain)
		return info_chain_run(args[0], o->format, o->json);
	return info_run(args[0], o->format, o->json);
}

/* table */

/* Warn about image files whose last bytes a loop device would hide. */
static void note_partial_sectors(const struct disk *d)
{
	const struct segment *s;
	unsigned int i;

	for (i = 0; i < d->nr_segs; i++) {
		s = &d->segs[i];
		if (s->kind != SEG_IMAGE || !(s->file_size % SECTOR_SIZE))
			continue;
		fprintf(stderr, "imgfmt: note: %s is %llu bytes, not a multiple of 512: a loop device over it hides its last %llu bytes (imgfmt attach maps them)\n",
			s->name, (unsigned long long)s->file_size,
			(unsigned long long)(s->file_size % SECTOR_SIZE));
	}
}

/* devs: one per file, each piece's then its lower layers'. */
static int print_table(const struct pieces *ps, char **devs)
{
	unsigned long long start = 0;
	const struct dm_piece *p;
	char *params;
	unsigned int i;

	for (i = 0; i < ps->nr; i++) {
		p = &ps->p[i];
		params = dm_piece_params(p, devs);
		if (!params)
			return FAIL;
		devs += dm_piece_units(p);
		printf("%llu %llu %s%s%s\n", start, p->sectors,
		       dm_piece_target(p), params[0] ? " " : "", params);
		free(params);
		start += p->sectors;
	}
	return 0;
}

/* One DEV per file of the disk, in the order of the descriptor's lines. */
static int check_nr_devs(const struct disk *d, unsigned int nr_devs)
{
	unsigned int nr_files = disk_nr_files(d);

	if (nr_devs == nr_files)
		return 0;
	if (!d->is_desc && nr_files == 1)
		return usage_fail("%s is a single image file: give one DEV, not %u",
				  d->name, nr_devs);
	if (!d->is_desc)
		return usage_fail("%s has %u files (the image, its data file, its backing files and theirs): give one DEV for each, in that order, not %u",
				  d->name, nr_files, nr_devs);
	return usage_fail("%s has %u extent file%s: give one DEV for each, in the order of its extent lines, not %u",
			  d->name, nr_files, nr_files == 1 ? "" : "s",
			  nr_devs);
}

static int cmd_table(struct opts *o, char **args)
{
	unsigned int i, nr_devs = 0;
	struct pieces ps = { 0 };
	struct disk d;
	int rc;

	for (i = 1; args[i]; i++, nr_devs++) {
		rc = check_table_dev(args[i]);
		if (rc)
			return rc;
	}
	rc = disk_open_snapshot(&d, args[0], o->format, o->snapshot,
				o->cache_bytes);
	if (!rc)
		rc = check_nr_devs(&d, nr_devs);
	if (!rc)
		rc = pieces_make(&ps, &d, o);
	if (!rc)
		rc = print_table(&ps, args + 1);
	if (!rc)
		note_partial_sectors(&d);
	pieces_free(&ps);
	disk_close(&d);
	return rc;
}

/* read */

struct output {
	char name[IMGFMT_SHOWN_MAX];	/* for messages */
	int fd;
	bool sparse;	/* a regular file: skip zeroes with lseek() */
	bool close_fd;
};

/* Is path the file or device that fd reads? */
static bool same_file(const struct stat *a, int fd)
{
	struct stat b;

	if (fd < 0 || fstat(fd, &b))
		return false;
	if (S_ISBLK(a->st_mode) && S_ISBLK(b.st_mode))
		return a->st_rdev == b.st_rdev;
	return a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* Would writing path overwrite the descriptor or a file of the disk? */
static bool output_is_input(const char *path, const struct disk *d)
{
	struct stat a, b;
	unsigned int i, j;

	if (stat(path, &a))
		return false;
	if (!stat(d->path, &b) && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino)
		return true;
	for (i = 0; i < d->nr_segs; i++) {
		if (same_file(&a, segment_fd(&d->segs[i])))
			return true;
		for (j = 0; d->segs[i].kind == SEG_IMAGE &&
			    j < d->segs[i].im.nr_lower; j++)
			if (same_file(&a, image_fd(&d->segs[i].im.lower[j])))
				return true;
	}
	return false;
}

static int output_open(struct output *out, const char *path,
		       const struct disk *d)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (!path || !strcmp(path, "-")) {
		snprintf(out->name, sizeof(out->name), "standard output");
		out->fd = STDOUT_FILENO;
	} else {
		shown_name(&out->name, path);
		if (output_is_input(path, d))
			return fail("%s: refusing to write over the image being read",
				    out->name);
		out->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
			       O_NOCTTY, 0666);
		if (out->fd < 0)
			return fail("cannot open %s: %s", out->name,
				    strerror(errno));
		out->close_fd = true;
		if (!fstat(out->fd, &st) && S_ISREG(st.st_mode))
			out->sparse = true;
	}
	if (isatty(out->fd))
		return fail("refusing to write a disk image to a terminal");
	return 0;
}

static int output_close(struct output *out, int rc)
{
	if (out->close_fd && close(out->fd) && !rc)
		rc = fail("write error on %s: %s", out->name, strerror(errno));
	out->close_fd = false;
	return rc;
}

static int output_write(struct output *out, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(out->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail("write error on %s: %s", out->name,
				    n < 0 ? strerror(errno) : "short write");
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int output_skip(struct output *out, size_t len)
{
	if (lseek(out->fd, (off_t)len, SEEK_CUR) < 0)
		return fail("cannot seek in %s: %s", out->name,
			    strerror(errno));
	return 0;
}

/* A sparse output file gets its full length once all data is written. */
static int output_finish(struct output *out, u64 size)
{
	if (out->sparse && ftruncate(out->fd, (off_t)size))
		return fail("cannot set the size of %s: %s", out->name,
			    strerror(errno));
	return 0;
}

/*
 * Write the bytes [start, end) of one segment.  The sectors covering them
 * are read, at most READ_CHUNK bytes at a time, and only the bytes asked
 * for are written: neither end need be a multiple of 512.
 */
static int read_segment(struct segment *s, u64 start, u64 end,
			struct output *out, char *buf)
{
	u64 off, sec, len, keep;
	bool zero;
	int rc;

	for (off = start; off < end; off += keep) {
		sec = off - off % SECTOR_SIZE;
		len = min_t(u64, READ_CHUNK, ALIGN(end, SECTOR_SIZE) - sec);
		keep = min_t(u64, sec + len, end) - off;
		rc = segment_read(s, sec, len, buf, &zero);
		if (rc)
			return rc;
		if (zero && out->sparse)
			rc = output_skip(out, keep);
		else
			rc = output_write(out, buf + (off - sec), keep);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Write length bytes of the virtual disk from offset, exactly, to out;
 * the caller checked that they lie within its d->size bytes.
 */
static int read_disk(struct disk *d, u64 offset, u64 length,
		     struct output *out, char *buf)
{
	u64 pos = 0, end = offset + length;
	struct segment *s;
	unsigned int i;
	int rc;

	for (i = 0; i < d->nr_segs && pos < end; pos += s->bytes, i++) {
		s = &d->segs[i];
		if (pos + s->bytes <= offset)
			continue;
		rc = read_segment(s, max_t(u64, offset, pos) - pos,
				  min_t(u64, end, pos + s->bytes) - pos, out,
				  buf);
		if (rc)
			return rc;
	}
	return output_finish(out, length);
}

/* The window --offset and --length ask for, within the virtual disk. */
static int read_window(const struct opts *o, const struct disk *d,
		       u64 *length)
{
	if (o->offset >= d->size)
		return usage_fail("read: offset %llu is past the end of %s (virtual size %llu bytes)",
				  (unsigned long long)o->offset, d->name,
				  (unsigned long long)d->size);
	*length = d->size - o->offset;
	if (!o->has_length)
		return 0;
	if (o->length > *length)
		return usage_fail("read: offset %llu plus length %llu is past the end of %s (virtual size %llu bytes)",
				  (unsigned long long)o->offset,
				  (unsigned long long)o->length, d->name,
				  (unsigned long long)d->size);
	*length = o->length;
	return 0;
}

static int cmd_read(struct opts *o, char **args)
{
	struct output out;
	struct disk d;
	u64 length = 0;
	char *buf;
	int rc;

	if (o->snapshot)
		rc = disk_open_snapshot(&d, args[0], o->format, o->snapshot,
					0);
	else
		rc = disk_open(&d, args[0], o->format, 0);
	if (!rc)
		rc = read_window(o, &d, &length);
	if (rc) {
		disk_close(&d);
		return rc;
	}
	buf = malloc(READ_CHUNK);
	if (!buf) {
		disk_close(&d);
		return fail("out of memory");
	}
	rc = output_open(&out, args[1], &d);
	if (!rc)
		rc = read_disk(&d, o->offset, length, &out, buf);
	rc = output_close(&out, rc);
	free(buf);
	disk_close(&d);
	return rc;
}

/* attach, detach */

static int cmd_attach(struct opts *o, char **args)
{
	struct rw_top top = { .fd = -1 };
	char name[IMGFMT_DM_NAME_LEN];
	struct pieces ps = { 0 };
	unsigned int flags = 0;
	struct disk d;
	int rc;

	/* As qemu-img: sharing writes is only for a reader. */
	if (o->rw && o->force_share)
		return usage_fail("attach: --force-share is for read-only attach, not with --rw");
	/* A snapshot is mapped read-only (the kernel refuses it too). */
	if (o->rw && o->snapshot)
		return usage_fail("attach: --snapshot maps a snapshot read-only, not with --rw");
	flags |= o->rw ? DM_ATTACH_RW : 0;
	flags |= o->force_share ? DM_ATTACH_FORCE_SHARE : 0;
	if (o->name) {
		rc = check_attach_name(o->name);
		if (rc)
			return rc;
		snprintf(name, sizeof(name), "%s", o->name);
	} else {
		rc = default_dm_name(args[0], name, sizeof(name));
		if (rc)
			return rc;
	}
	rc = disk_open_snapshot(&d, args[0], o->format, o->snapshot,
				o->cache_bytes);
	if (!rc && o->rw)
		rc = rw_open_top(&d, &top);
	if (!rc)
		rc = pieces_make(&ps, &d, o);
	/* The top's loop and lock get the read-write file. */
	if (!rc && o->rw) {
		ps.p[0].fd = top.fd;
		ps.p[0].rw = true;
		ps.p[0].prepare = rw_prepare_top;
		ps.p[0].prepare_ctx = &top;
	}
	if (!rc)
		rc = dm_attach_disk(name, ps.p, ps.nr, flags);
	if (top.fd >= 0)
		close(top.fd);
	pieces_free(&ps);
	disk_close(&d);
	return rc;
}

static int cmd_detach(struct opts *o, char **args)
{
	(void)o;
	return dm_detach_device(args[0]);
}

static int cmd_list(struct opts *o, char **args)
{
	(void)args;
	return list_run(o->json);
}

/* Snapshots are only listed: the image is never written. */
static int cmd_snapshot(struct opts *o, char **args)
{
	if (!o->list)
		return usage_fail("snapshot: only -l (list) is supported");
	return snapshot_list_run(args[0], o->format);
}

static int cmd_check(struct opts *o, char **args)
{
	return check_run(args[0], o->json);
}

/* Command line */

enum {
	OPT_FORMAT = 1 << 0,
	OPT_CACHE = 1 << 1,
	OPT_NAME = 1 << 2,
	OPT_OFFSET = 1 << 3,
	OPT_LENGTH = 1 << 4,
	OPT_OUTPUT = 1 << 5,
	OPT_BACKING_CHAIN = 1 << 6,
	OPT_SNAPSHOT = 1 << 7,
	OPT_LIST = 1 << 8,
	/* The command parses its options itself (qemu-img's, for create). */
	OPT_OWN = 1 << 9,
	OPT_RW = 1 << 10,
	OPT_FORCE_SHARE = 1 << 11,
};

/* getopt values of the options that have no short form. */
enum {
	LONG_OFFSET = 256,
	LONG_LENGTH,
	LONG_OUTPUT,
	LONG_BACKING_CHAIN,
	LONG_SNAPSHOT,
	LONG_RW,
};

struct command {
	const char *name;
	int (*run)(struct opts *o, char **args);
	unsigned int opts;	/* OPT_* allowed */
	int min_args, max_args;
	const char *synopsis;
	const char *help;
};

static int cmd_help(struct opts *o, char **args);
static int cmd_create(struct opts *o, char **args);

static const struct command commands[] = {
	{
		"info", cmd_info, OPT_FORMAT | OPT_OUTPUT | OPT_BACKING_CHAIN, 1, 1,
		"info [--format F] [--output text|json] [--backing-chain] IMAGE",
		"Validate IMAGE and describe it as 'key: value' lines, one\n"
		"per line (strings from the image escaped as \\xNN and cut),\n"
		"or with --output=json as one JSON object (qemu-img info's\n"
		"field names); exit 1 with an 'error' line or field when the\n"
		"image is refused.  A VMDK descriptor is described with its\n"
		"extents, which must exist.  An image's backing file is named,\n"
		"not opened; with --backing-chain every layer is opened and\n"
		"described, top first (blocks separated by a blank line, or a\n"
		"JSON array).",
	}, {
		"table", cmd_table, OPT_FORMAT | OPT_CACHE | OPT_SNAPSHOT,
		2, 1 + VMDK_DESC_MAX_EXTENTS,
		"table [--format F] [--cache-size BYTES] [--snapshot ID|NAME] IMAGE DEV [DEV...]",
		"Validate IMAGE and print the device-mapper table that maps it\n"
		"from the block device DEV holding it.  A VMDK descriptor needs\n"
		"one DEV per extent file, in the order of its extent lines, and\n"
		"gets one table line per extent.  An image with a backing chain\n"
		"or a data file needs one DEV per file: the image's, its data\n"
		"file's, then each backing file's (and its data file's), top\n"
		"down.",
	}, {
		"attach", cmd_attach, OPT_FORMAT | OPT_CACHE | OPT_NAME |
		OPT_SNAPSHOT | OPT_RW | OPT_FORCE_SHARE, 1, 1,
		"attach [--name NAME] [--format F] [--cache-size BYTES] [--snapshot ID|NAME] [--force-share | --rw] IMAGE",
		"Validate IMAGE, put its files on read-only loop devices and\n"
		"create the read-only device /dev/mapper/NAME; print its path.\n"
		"Its backing files (and theirs) become the device's lower\n"
		"layers, an external data file joins its layer; --snapshot maps\n"
		"a QCOW2 internal snapshot instead of the active state.\n"
		"The partitions of its partition table (MBR, GPT) become\n"
		"/dev/mapper/NAMEp1, NAMEp2, ... (logical MBR ones from 5);\n"
		"'imgfmt list' shows them.  NAME defaults to the file name of\n"
		"IMAGE without its extension (with a hash appended when it had\n"
		"to be changed or cut).  Its files keep QEMU's image locks till\n"
		"detach: QEMU may read them but not write them, and an image\n"
		"that another process writes is refused, unless --force-share.\n"
		"--rw (QCOW2 only): the top image read-write, locked for\n"
		"writing; its file is grown sparsely to the most the image can\n"
		"need, and cut back to the image's end by detach.",
	}, {
		"detach", cmd_detach, 0, 1, 1,
		"detach NAME",
		"Remove the device NAME (or /dev/mapper/NAME) that attach made,\n"
		"its partitions and everything attach set up under it; refused,\n"
		"removing nothing, while NAME or a partition is open or mounted.\n"
		"A read-write image file is then cut back to the image's end.",
	}, {
		"list", cmd_list, OPT_OUTPUT, 0, 0,
		"list [--output text|json]",
		"List the disks attach made: per disk its name, path, size,\n"
		"open count, its targets with the layers and files each maps,\n"
		"and its partitions; as 'key: value' lines with a blank line\n"
		"between disks, or with --output=json as one JSON object.",
	}, {
		"snapshot", cmd_snapshot, OPT_FORMAT | OPT_LIST, 1, 1,
		"snapshot -l [--format F] IMAGE",
		"List the internal snapshots of the QCOW2 image IMAGE as\n"
		"'qemu-img snapshot -l' does (ID, TAG, VM SIZE, DATE, VM CLOCK,\n"
		"ICOUNT; nothing when it has none).",
	}, {
		"check", cmd_check, OPT_OUTPUT, 1, 1,
		"check [--output text|json] IMAGE",
		"Check the QCOW2 image IMAGE for consistency as 'qemu-img check'\n"
		"does, without changing it: every cluster's refcount against the\n"
		"references its metadata makes, and the COPIED flags.  Findings go\n"
		"to stderr, qemu-img's summary (or with --output=json its JSON\n"
		"object) to stdout.  Exit status as qemu-img's: 0 clean, 2\n"
		"corruption, 3 leaked clusters only, 1 when the check could not\n"
		"be done.",
	}, {
		"read", cmd_read,
		OPT_FORMAT | OPT_OFFSET | OPT_LENGTH | OPT_SNAPSHOT, 1, 2,
		"read [--format F] [--snapshot ID|NAME] [--offset BYTES] [--length BYTES] IMAGE [OUT]",
		"Write the virtual disk of IMAGE, virtual-size bytes, to OUT\n"
		"or to standard output ('-'), mapping it as the kernel target\n"
		"does.  --offset and --length write only that window of it, in\n"
		"bytes (suffix K, M or G; not necessarily whole sectors): the\n"
		"offset must be within the virtual size, the length defaults\n"
		"to the rest of the disk and may not go past its end.\n"
		"--snapshot reads the QCOW2 internal snapshot with that ID, or\n"
		"else that name, at its own virtual size.",
	}, {
		"create", cmd_create, OPT_OWN, 1, 2,
		"create -f qcow2 [-o OPTS] [-b BACKING -F FMT] IMAGE [SIZE]",
		"Create the QCOW2 image IMAGE (overwriting a file there) of\n"
		"SIZE bytes (suffix k, M, G, T, P or E; rounded up to 512), as\n"
		"qemu-img create does.  OPTS, comma separated: cluster_size=N\n"
		"(512 to 2M, a power of two; 64k), refcount_bits=1..64 (16),\n"
		"compat=0.10|1.1 (1.1), extended_l2=on|off (off; clusters of\n"
		"16k and up), preallocation=off|metadata (off),\n"
		"compression_type=zlib|zstd (zlib).  -b names the backing file\n"
		"(relative to IMAGE's directory) and needs -F, its format\n"
		"(qcow2, qcow, vmdk or raw); it must open, and without SIZE\n"
		"gives the size.",
	}, {
		"help", cmd_help, 0, 0, 1,
		"help [COMMAND]",
		"Show this text, or the help of one command.",
	},
};

static const struct option long_options[] = {
	{ "format", required_argument, NULL, 'f' },
	{ "cache-size", required_argument, NULL, 'c' },
	{ "name", required_argument, NULL, 'n' },
	{ "offset", required_argument, NULL, LONG_OFFSET },
	{ "length", required_argument, NULL, LONG_LENGTH },
	{ "output", required_argument, NULL, LONG_OUTPUT },
	{ "backing-chain", no_argument, NULL, LONG_BACKING_CHAIN },
	{ "snapshot", required_argument, NULL, LONG_SNAPSHOT },
	{ "list", no_argument, NULL, 'l' },
	{ "rw", no_argument, NULL, LONG_RW },
	{ "force-share", no_argument, NULL, 'U' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void print_formats(FILE *f)
{
	unsigned int i;

	fputs("Formats:", f);
	for (i = 0; imgfmt_formats[i]; i++)
		fprintf(f, " %s", imgfmt_formats[i]->name);
	fputc('\n', f);
}

static const char usage_options[] =
	"\nOptions:\n"
	"  -f, --format F          the image is of format F (no probing)\n"
	"  -c, --cache-size BYTES  metadata cache bound (suffix K, M or G)\n"
	"  -n, --name NAME         device-mapper name for attach\n"
	"      --offset BYTES      read from this virtual offset (suffix K, M or G)\n"
	"      --length BYTES      read this many bytes (default: to the end)\n"
	"      --output text|json  info's, list's and check's output format (default: text)\n"
	"      --backing-chain     info of every layer of the backing chain\n"
	"      --snapshot ID|NAME  read this QCOW2 internal snapshot\n"
	"  -l, --list              snapshot: list the snapshots\n"
	"      --rw                attach read-write (QCOW2)\n"
	"  -U, --force-share       attach even an image another process writes\n"
	"  -h, --help              show help\n\n";

static const char usage_notes[] =
	"\nErrors are one line on stderr; exit status 1 for failures, 2 for\n"
	"usage errors.  'imgfmt help COMMAND' describes one command.\n";

static void print_usage(FILE *f)
{
	size_t i;

	fputs("Usage: imgfmt COMMAND [OPTIONS] ARGUMENTS\n\nCommands:\n", f);
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  imgfmt %s\n", commands[i].synopsis);
	fputs(usage_options, f);
	print_formats(f);
	fputs(usage_notes, f);
}

static void print_command_help(const struct command *c)
{
	printf("Usage: imgfmt %s\n\n%s\n", c->synopsis, c->help);
}

static int cmd_create(struct opts *o, char **args)
{
	int rc;

	(void)o;
	rc = create_run(args);
	if (rc == CREATE_HELP) {
		print_command_help(find_command("create"));
		rc = 0;
	}
	return rc;
}

static int cmd_help(struct opts *o, char **args)
{
	char shown[IMGFMT_SHOWN_MAX];
	const struct command *c;

	(void)o;
	if (!args[0]) {
		print_usage(stdout);
		return 0;
	}
	c = find_command(args[0]);
	if (!c)
		return usage_fail("unknown command '%s' (try 'imgfmt --help')",
				  shown_name(&shown, args[0]));
	print_command_help(c);
	return 0;
}

/* A byte count with an optional binary suffix K, M or G. */
static int parse_size(const char *s, u64 *out)
{
	static const char suffixes[] = "KMG";
	unsigned long long v;
	unsigned int shift = 0;
	const char *p;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		p = strchr(suffixes, toupper((unsigned char)*end));
		if (!p || !*p || end[1])
			return -1;
		shift = 10 * (unsigned int)(p - suffixes + 1);
	}
	if (v > (U64_MAX >> shift))
		return -1;
	*out = (u64)v << shift;
	return 0;
}

static const struct {
	int opt;
	unsigned int bit;
	const char *name;
} option_bits[] = {
	{ 'f', OPT_FORMAT, "--format" },
	{ 'c', OPT_CACHE, "--cache-size" },
	{ 'n', OPT_NAME, "--name" },
	{ LONG_OFFSET, OPT_OFFSET, "--offset" },
	{ LONG_LENGTH, OPT_LENGTH, "--length" },
	{ LONG_OUTPUT, OPT_OUTPUT, "--output" },
	{ LONG_BACKING_CHAIN, OPT_BACKING_CHAIN, "--backing-chain" },
	{ LONG_SNAPSHOT, OPT_SNAPSHOT, "--snapshot" },
	{ 'l', OPT_LIST, "-l" },
	{ LONG_RW, OPT_RW, "--rw" },
	{ 'U', OPT_FORCE_SHARE, "--force-share" },
};

static const char *option_name(int opt)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(option_bits); i++)
		if (option_bits[i].opt == opt)
			return option_bits[i].name;
	return "?";
}

static int set_option(const struct command *c, struct opts *o, int opt,
		      const char *arg)
{
	char shown[IMGFMT_SHOWN_MAX];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(option_bits); i++)
		if (option_bits[i].opt == opt &&
		    !(c->opts & option_bits[i].bit))
			return usage_fail("%s: option '%s' does not apply",
					  c->name, option_bits[i].name);
	switch (opt) {
	case 'f':
		o->format = arg;
		return 0;
	case 'n':
		o->name = arg;
		return 0;
	case 'c':
		if (parse_size(arg, &o->cache_bytes))
			return usage_fail("%s: bad cache size '%s'", c->name,
					  shown_name(&shown, arg));
		if (o->cache_bytes < IMGFMT_MIN_CACHE_BYTES ||
		    o->cache_bytes > IMGFMT_MAX_CACHE_BYTES)
			return usage_fail("%s: the cache size must be from %llu to %llu bytes",
					  c->name, IMGFMT_MIN_CACHE_BYTES,
					  IMGFMT_MAX_CACHE_BYTES);
		return 0;
	case LONG_OFFSET:
		if (parse_size(arg, &o->offset))
			return usage_fail("%s: bad offset '%s'", c->name,
					  shown_name(&shown, arg));
		return 0;
	case LONG_LENGTH:
		if (parse_size(arg, &o->length))
			return usage_fail("%s: bad length '%s'", c->name,
					  shown_name(&shown, arg));
		if (!o->length)
			return usage_fail("%s: the length must not be 0",
					  c->name);
		o->has_length = true;
		return 0;
	case LONG_OUTPUT:
		if (strcmp(arg, "json") && strcmp(arg, "text"))
			return usage_fail("%s: --output must be text or json, not '%s'",
					  c->name, shown_name(&shown, arg));
		o->json = !strcmp(arg, "json");
		return 0;
	case LONG_BACKING_CHAIN:
		o->backing_chain = true;
		return 0;
	case LONG_SNAPSHOT:
		if (!*arg)
			return usage_fail("%s: --snapshot needs an ID or a name",
					  c->name);
		o->snapshot = arg;
		return 0;
	case 'l':
		o->list = true;
		return 0;
	case LONG_RW:
		o->rw = true;
		return 0;
	case 'U':
		o->force_share = true;
		return 0;
	}
	return usage_fail("%s: unknown option", c->name);
}

/*
 * Parse the options of command c from argv (argv[0] is the command).
 * Returns 1 when help was printed, 0 with *first set to the index of the
 * first argument, or FAIL_USAGE.
 */
static int parse_options(const struct command *c, int argc, char **argv,
			 struct opts *o, int *first)
{
	char shown[IMGFMT_SHOWN_MAX], optc[2] = "";
	int opt, rc;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":f:c:n:hlU", long_options,
				  NULL)) != -1) {
		if (opt == 'h') {
			print_command_help(c);
			return 1;
		}
		optc[0] = (char)optopt;
		if (opt == '?' && optopt && !strchr("fcnhlU", optopt))
			return usage_fail("%s: unknown option '-%s'", c->name,
					  shown_name(&shown, optc));
		if (opt == '?')
			return usage_fail("%s: unknown option '%s'", c->name,
					  shown_name(&shown, argv[optind - 1]));
		if (opt == ':')
			return usage_fail("%s: option '%s' needs a value",
					  c->name, option_name(optopt));
		rc = set_option(c, o, opt, optarg);
		if (rc)
			return rc;
	}
	*first = optind;
	return 0;
}

static int run_command(const struct command *c, int argc, char **argv)
{
	struct opts o;
	int first = 0, nr, rc;

	/* Its own parser gets the command's name and all its words. */
	if (c->opts & OPT_OWN)
		return c->run(NULL, argv);
	rc = parse_options(c, argc, argv, &o, &first);
	if (rc)
		return rc > 0 ? 0 : rc;
	nr = argc - first;
	if (nr < c->min_args || nr > c->max_args)
		return usage_fail("%s: wrong number of arguments (usage: imgfmt %s)",
				  c->name, c->synopsis);
	/* argv[argc] is NULL: the arguments are a NULL-terminated list. */
	return c->run(&o, argv + first);
}

static int dispatch(int argc, char **argv)
{
	char shown[IMGFMT_SHOWN_MAX];
	const struct command *c;

	if (argc < 2)
		return usage_fail("no command given (try 'imgfmt --help')");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		print_usage(stdout);
		return 0;
	}
	c = find_command(argv[1]);
	if (!c)
		return usage_fail("unknown command '%s' (try 'imgfmt --help')",
				  shown_name(&shown, argv[1]));
	return run_command(c, argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
	int rc;

	/* A failing map() becomes the error line; no second report. */
	uport_set_corruption_reports(false);
	rc = dispatch(argc, argv);

	if ((fflush(stdout) || ferror(stdout)) && !rc)
		rc = fail("write error on standard output: %s",
			  strerror(errno));
	if (rc) {
		fprintf(stderr, "imgfmt: %s\n",
			failure_text()[0] ? failure_text() : "failed");
		return rc == FAIL_USAGE ? 2 : 1;
	}
	return 0;
}
