// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt: the userspace helper of dm-imgfmt.
 *
 * It validates and describes VM disk images with the same format code the
 * kernel target runs, prints device-mapper tables for them, attaches and
 * detaches them as read-only block devices, and reads a whole virtual disk
 * through the shared mapping code (the oracle for the kernel's answers).
 */
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "ccache.h"
#include "imgfmt_format.h"
#include "imgfmt.h"
#include "uhost.h"

#define SECTOR_SIZE	512ULL
/* The largest cache_size the kernel target accepts (its own limit). */
/* Bytes asked of map() and written out at a time by `imgfmt read`. */
#define READ_CHUNK	BIT(20)

/* Options given on the command line. */
struct opts {
	const char *format;	/* --format, or NULL to probe */
	const char *name;	/* --name, or NULL */
	u64 cache_bytes;	/* --cache-size, or 0 when not given */
};

/* An image opened and validated through the shared format code. */
struct image {
	const char *path;
	struct imgfmt_dev dev;
	const struct imgfmt_format_ops *ops;	/* set once detected */
	struct imgfmt_image *img;		/* set once opened */
	struct imgfmt_info info;
	const char *err;	/* why detection or validation failed */
	struct imgfmt_ccache *ccache;	/* made on the first compressed run */
};

static char error_line[1024];

static int record_failure(int status, const char *fmt, va_list ap)
{
	if (!error_line[0])
		vsnprintf(error_line, sizeof(error_line), fmt, ap);
	return status;
}

int fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record_failure(FAIL, fmt, ap);
	va_end(ap);
	return rc;
}

int usage_fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record_failure(FAIL_USAGE, fmt, ap);
	va_end(ap);
	return rc;
}

/* Images */

/* Make sure the strings get_info() filled in are terminated. */
static void info_terminate(struct imgfmt_info *info)
{
	info->backing_file[sizeof(info->backing_file) - 1] = '\0';
	info->backing_format[sizeof(info->backing_format) - 1] = '\0';
	info->data_file[sizeof(info->data_file) - 1] = '\0';
}

static int image_refused(struct image *im, const char *err, int rc)
{
	if (!err)
		err = strerror(rc < 0 ? -rc : EIO);
	im->err = err;
	uport_dev_close(&im->dev);
	return fail("%s: %s", im->path, err);
}

/*
 * Open path and validate it as image format pin (NULL: probe).  On failure
 * records the error and returns FAIL; when the image itself was refused,
 * im->err holds the format's message and im->ops the format, if detected.
 */
static int image_open(struct image *im, const char *path, const char *pin,
		      u64 cache_bytes)
{
	const char *err = NULL;
	int rc;

	memset(im, 0, sizeof(*im));
	im->path = path;
	rc = uport_dev_open(&im->dev, path);
	if (rc == -ENOTBLK)
		return fail("%s: not a regular file or block device", path);
	if (rc)
		return fail("cannot open %s: %s", path, strerror(-rc));

	im->ops = imgfmt_detect(&im->dev, pin, &err);
	if (!im->ops)
		return image_refused(im, err ? err : "unknown image format",
				     -EINVAL);

	if (!cache_bytes)
		cache_bytes = IMGFMT_DEFAULT_CACHE_BYTES;
	rc = im->ops->open(&im->dev, cache_bytes, &im->img, &err);
	if (rc || !im->img) {
		im->img = NULL;
		return image_refused(im, err, rc);
	}
	im->ops->get_info(im->img, &im->info);
	info_terminate(&im->info);
	if (!im->info.format)
		im->info.format = im->ops->name;
	return 0;
}

static void image_close(struct image *im)
{
	imgfmt_ccache_destroy(im->ccache);
	im->ccache = NULL;
	if (im->img)
		im->ops->close(im->img);
	im->img = NULL;
	uport_dev_close(&im->dev);
}

/* 512-byte sectors covering the virtual size; 0 when it is unusable. */
static u64 image_sectors(const struct image *im)
{
	u64 size = im->info.virtual_size;

	if (size > U64_MAX - (SECTOR_SIZE - 1))
		return 0;
	return (size + SECTOR_SIZE - 1) / SECTOR_SIZE;
}

/* The image's virtual size in sectors, refusing what dm cannot map. */
static int image_table_sectors(const struct image *im, u64 *sectors)
{
	*sectors = image_sectors(im);
	if (!*sectors)
		return fail("%s: the virtual disk is empty or too large to map",
			    im->path);
	return 0;
}

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

/*
 * The optional arguments of the imgfmt target, as they follow the device:
 * "" or " <#opt> <opt>...".
 */
static int target_opts(char *buf, size_t size, const struct image *im,
		       const struct opts *o)
{
	int nr_opts = (o->format ? 1 : 0) + (o->cache_bytes ? 1 : 0);
	char format_opt[80] = "", cache_opt[48] = "";
	int n;

	if (o->format)
		snprintf(format_opt, sizeof(format_opt), " format=%s",
			 im->ops->name);
	if (o->cache_bytes)
		snprintf(cache_opt, sizeof(cache_opt), " cache_size=%llu",
			 (unsigned long long)o->cache_bytes);
	n = 0;
	buf[0] = '\0';
	if (nr_opts)
		n = snprintf(buf, size, " %d%s%s", nr_opts, format_opt,
			     cache_opt);
	if (n < 0 || (size_t)n >= size)
		return fail("the table arguments are too long");
	return 0;
}

/* info */

static const char *compression_name(enum imgfmt_compression c)
{
	switch (c) {
	case IMGFMT_COMP_NONE:
		return "none";
	case IMGFMT_COMP_DEFLATE:
		return "deflate";
	case IMGFMT_COMP_ZLIB:
		return "zlib";
	case IMGFMT_COMP_ZSTD:
		return "zstd";
	}
	return "unknown";
}

/* "64 MiB", "1.5 GiB": binary units, one decimal when it is not zero. */
static void human_size(u64 bytes, char *buf, size_t size)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	unsigned int i = 0;
	u64 unit = 1, whole, tenths;

	while (i + 1 < ARRAY_SIZE(units) && bytes / 1024 >= unit) {
		unit *= 1024;
		i++;
	}
	whole = bytes / unit;
	tenths = ((bytes % unit) * 10 + unit / 2) / unit;
	if (tenths == 10) {
		whole++;
		tenths = 0;
	}
	if (tenths)
		snprintf(buf, size, "%llu.%llu %s", (unsigned long long)whole,
			 (unsigned long long)tenths, units[i]);
	else
		snprintf(buf, size, "%llu %s", (unsigned long long)whole,
			 units[i]);
}

static void print_u64(const char *key, u64 v)
{
	printf("%s: %llu\n", key, (unsigned long long)v);
}

static void print_hex(const char *key, u64 v)
{
	printf("%s: 0x%llx\n", key, (unsigned long long)v);
}

static void print_bool(const char *key, bool v)
{
	printf("%s: %s\n", key, v ? "yes" : "no");
}

/*
 * Strings read from the image may hold anything: control characters and
 * backslashes are printed as \xNN so that every key stays on one line.
 */
static void print_str(const char *key, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	printf("%s:", key);
	if (*p)
		putchar(' ');
	for (; *p; p++) {
		if (iscntrl(*p) || *p == '\\')
			printf("\\x%02x", *p);
		else
			putchar(*p);
	}
	putchar('\n');
}

static void print_info(const struct imgfmt_info *info)
{
	char human[64];

	human_size(info->virtual_size, human, sizeof(human));
	print_str("format", info->format);
	print_u64("version", info->version);
	print_u64("virtual-size", info->virtual_size);
	print_str("virtual-size-human", human);
	print_u64("cluster-size", info->cluster_size);
	print_u64("refcount-bits", info->refcount_bits);
	print_bool("dirty", info->dirty);
	print_bool("corrupt", info->corrupt);
	print_bool("lazy-refcounts", info->lazy_refcounts);
	print_bool("extended-l2", info->extended_l2);
	print_str("compression-type", compression_name(info->compression));
	print_hex("incompatible-features", info->incompatible_features);
	print_hex("compatible-features", info->compatible_features);
	print_hex("autoclear-features", info->autoclear_features);
	print_u64("snapshots", info->nb_snapshots);
	print_u64("l1-entries", info->l1_entries);
	print_u64("l1-offset", info->l1_offset);
	print_str("backing-file", info->backing_file);
	print_str("backing-format", info->backing_format);
	print_str("data-file", info->data_file);
	print_bool("encrypted", info->encrypted);
}

static int cmd_info(struct opts *o, char **args)
{
	struct image im;
	int rc;

	rc = image_open(&im, args[0], o->format, 0);
	if (rc) {
		if (im.err) {
			if (im.ops)
				print_str("format", im.ops->name);
			print_str("error", im.err);
		}
		return rc;
	}
	print_info(&im.info);
	image_close(&im);
	return 0;
}

/* table */

static int cmd_table(struct opts *o, char **args)
{
	char topts[256];
	struct image im;
	u64 sectors;
	int rc;

	rc = check_table_dev(args[1]);
	if (rc)
		return rc;
	rc = image_open(&im, args[0], o->format, o->cache_bytes);
	if (rc)
		return rc;
	rc = image_table_sectors(&im, &sectors);
	if (!rc)
		rc = target_opts(topts, sizeof(topts), &im, o);
	if (!rc)
		printf("0 %llu imgfmt %s%s\n", (unsigned long long)sectors,
		       args[1], topts);
	image_close(&im);
	return rc;
}

/* read */

struct output {
	const char *name;
	int fd;
	bool sparse;	/* a regular file: skip zeroes with lseek() */
	bool close_fd;
};

/* Is path the file or device that image_fd reads? */
static bool same_file(const char *path, int image_fd)
{
	struct stat a, b;

	if (stat(path, &a) || fstat(image_fd, &b))
		return false;
	if (S_ISBLK(a.st_mode) && S_ISBLK(b.st_mode))
		return a.st_rdev == b.st_rdev;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int output_open(struct output *out, const char *path, int image_fd)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (!path || !strcmp(path, "-")) {
		out->name = "standard output";
		out->fd = STDOUT_FILENO;
	} else {
		if (same_file(path, image_fd))
			return fail("%s: refusing to write over the image being read",
				    path);
		out->name = path;
		out->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
			       O_NOCTTY, 0666);
		if (out->fd < 0)
			return fail("cannot open %s: %s", path,
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

/* Copy the bytes of one DATA run from the image device. */
static int read_data_run(struct image *im, const struct imgfmt_run *run,
			 u64 voff, char *buf)
{
	int rc;

	if (run->dev_offset > im->dev.size ||
	    run->length > im->dev.size - run->dev_offset)
		return fail("%s: data beyond the end of the image (virtual offset %llu, device offset %llu)",
			    im->path, (unsigned long long)voff,
			    (unsigned long long)run->dev_offset);
	rc = imgfmt_dev_read(&im->dev, run->dev_offset, buf, run->length);
	if (rc)
		return fail("%s: read error at device offset %llu: %s",
			    im->path, (unsigned long long)run->dev_offset,
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
		if (!im->ccache)
			return fail("%s: cannot set up decompression (cluster size %u)",
				    im->path, run->comp_cluster_size);
	}
	if (run->length > UINT32_MAX)
		return fail("%s: compressed run too long (virtual offset %llu)",
			    im->path, (unsigned long long)voff);
	rc = imgfmt_ccache_read(im->ccache, run, 0, buf, (u32)run->length);
	if (rc)
		return fail("%s: corrupt compressed cluster (virtual offset %llu, device offset %llu)",
			    im->path, (unsigned long long)voff,
			    (unsigned long long)run->comp_offset);
	return 0;
}

static int map_failed(struct image *im, int rc, const char *err, u64 voff)
{
	if (rc == -EIO && err)
		return fail("%s: %s (virtual offset %llu)", im->path, err,
			    (unsigned long long)voff);
	return fail("%s: mapping virtual offset %llu failed: %s", im->path,
		    (unsigned long long)voff,
		    err ? err : strerror(rc < 0 ? -rc : EIO));
}

/* Fill one run of buf, which holds virtual bytes from voff on. */
static int read_run(struct image *im, const struct imgfmt_run *run,
		    u64 voff, char *buf, bool *zero)
{
	switch (run->kind) {
	case IMGFMT_RUN_DATA:
		*zero = false;
		return read_data_run(im, run, voff, buf);
	case IMGFMT_RUN_ZERO:
	case IMGFMT_RUN_UNALLOCATED:
		memset(buf, 0, run->length);
		return 0;
	case IMGFMT_RUN_COMPRESSED:
		*zero = false;
		return read_compressed_run(im, run, voff, buf);
	}
	return fail("%s: the format returned an unknown run kind %d (virtual offset %llu)",
		    im->path, (int)run->kind, (unsigned long long)voff);
}

/*
 * Fill buf with the len virtual bytes at off, asking map() exactly as the
 * kernel does.  *zero tells whether the whole range reads as zeroes.
 */
static int read_chunk(struct image *im, u64 off, u64 len, char *buf,
		      bool *zero)
{
	struct imgfmt_run run;
	const char *err;
	u64 done = 0;
	int rc;

	*zero = true;
	while (done < len) {
		memset(&run, 0, sizeof(run));
		err = NULL;
		rc = im->ops->map(im->img, off + done, len - done, 0, &run,
				  &err);
		if (rc)
			return map_failed(im, rc, err, off + done);
		if (!run.length || run.length > len - done ||
		    run.length % SECTOR_SIZE)
			return fail("%s: bad run of %llu bytes for %llu bytes (virtual offset %llu)",
				    im->path, (unsigned long long)run.length,
				    (unsigned long long)(len - done),
				    (unsigned long long)(off + done));
		rc = read_run(im, &run, off + done, buf + done, zero);
		if (rc)
			return rc;
		done += run.length;
	}
	return 0;
}

/* Write the whole virtual disk, exactly virtual-size bytes, to out. */
static int read_image(struct image *im, struct output *out, char *buf)
{
	u64 size = im->info.virtual_size;
	u64 end = image_sectors(im) * SECTOR_SIZE;
	u64 off, len, keep;
	bool zero;
	int rc;

	if (size && !end)
		return fail("%s: the virtual disk is too large", im->path);
	for (off = 0; off < end; off += len) {
		len = min_t(u64, READ_CHUNK, end - off);
		rc = read_chunk(im, off, len, buf, &zero);
		if (rc)
			return rc;
		keep = min_t(u64, len, size - off);
		if (zero && out->sparse)
			rc = output_skip(out, keep);
		else
			rc = output_write(out, buf, keep);
		if (rc)
			return rc;
	}
	return output_finish(out, size);
}

static int cmd_read(struct opts *o, char **args)
{
	struct output out;
	struct image im;
	char *buf;
	int rc;

	rc = image_open(&im, args[0], o->format, 0);
	if (rc)
		return rc;
	buf = malloc(READ_CHUNK);
	if (!buf) {
		image_close(&im);
		return fail("out of memory");
	}
	rc = output_open(&out, args[1], uport_dev_fd(&im.dev));
	if (!rc)
		rc = read_image(&im, &out, buf);
	rc = output_close(&out, rc);
	free(buf);
	image_close(&im);
	return rc;
}

/* attach, detach */

/* Characters allowed in device names, which become /dev/mapper paths. */
static bool dm_name_char(char c)
{
	unsigned char u = (unsigned char)c;

	return isascii(u) && (isalnum(u) || (u && strchr("_.+-", u)));
}

/* Why name cannot be a device-mapper name, or NULL when it can. */
static const char *dm_name_problem(const char *name)
{
	const char *p;

	if (!*name)
		return "it is empty";
	if (strlen(name) >= IMGFMT_DM_NAME_LEN)
		return "it is too long";
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, "control"))
		return "it is reserved";
	for (p = name; *p; p++)
		if (!dm_name_char(*p))
			return "only A-Z a-z 0-9 _ . + - are allowed";
	return NULL;
}

int check_dm_name(const char *name)
{
	const char *why = dm_name_problem(name);

	if (why)
		return usage_fail("bad device name '%s': %s", name, why);
	return 0;
}

/* The image's file name without directory and extension, sanitised. */
static int default_dm_name(const char *path, char *name, size_t size)
{
	const char *base = strrchr(path, '/');
	const char *dot;
	size_t len, i;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	if (len >= size)
		len = 0;
	for (i = 0; i < len; i++)
		name[i] = dm_name_char(base[i]) ? base[i] : '_';
	name[len] = '\0';
	if (dm_name_problem(name))
		return usage_fail("cannot make a device name from '%s': use --name",
				  path);
	return 0;
}

static int cmd_attach(struct opts *o, char **args)
{
	char name[IMGFMT_DM_NAME_LEN], topts[256];
	struct image im;
	u64 sectors;
	int rc;

	if (o->name) {
		rc = check_dm_name(o->name);
		if (rc)
			return rc;
		snprintf(name, sizeof(name), "%s", o->name);
	} else {
		rc = default_dm_name(args[0], name, sizeof(name));
		if (rc)
			return rc;
	}
	rc = image_open(&im, args[0], o->format, o->cache_bytes);
	if (rc)
		return rc;
	rc = image_table_sectors(&im, &sectors);
	if (!rc)
		rc = target_opts(topts, sizeof(topts), &im, o);
	if (!rc)
		rc = dm_attach_image(uport_dev_fd(&im.dev), args[0], name,
				     sectors, topts);
	image_close(&im);
	return rc;
}

static int cmd_detach(struct opts *o, char **args)
{
	(void)o;
	return dm_detach_device(args[0]);
}

/* Command line */

enum {
	OPT_FORMAT = 1 << 0,
	OPT_CACHE = 1 << 1,
	OPT_NAME = 1 << 2,
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

static const struct command commands[] = {
	{
		"info", cmd_info, OPT_FORMAT, 1, 1,
		"info [--format F] IMAGE",
		"Validate IMAGE and describe it as 'key: value' lines; exit 1\n"
		"with an 'error:' line when the image is refused.",
	}, {
		"table", cmd_table, OPT_FORMAT | OPT_CACHE, 2, 2,
		"table [--format F] [--cache-size BYTES] IMAGE DEV",
		"Validate IMAGE and print the device-mapper table line that\n"
		"maps it from the block device DEV holding it.",
	}, {
		"attach", cmd_attach, OPT_FORMAT | OPT_CACHE | OPT_NAME, 1, 1,
		"attach [--name NAME] [--format F] [--cache-size BYTES] IMAGE",
		"Validate IMAGE, put it on a read-only loop device and create\n"
		"the read-only device /dev/mapper/NAME; print its path.  NAME\n"
		"defaults to the file name of IMAGE without its extension.",
	}, {
		"detach", cmd_detach, 0, 1, 1,
		"detach NAME",
		"Remove the imgfmt device NAME (or /dev/mapper/NAME) and the\n"
		"loop device under it.",
	}, {
		"read", cmd_read, OPT_FORMAT, 1, 2,
		"read [--format F] IMAGE [OUT]",
		"Write the virtual disk of IMAGE, virtual-size bytes, to OUT\n"
		"or to standard output, mapping it as the kernel target does.",
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

static int cmd_help(struct opts *o, char **args)
{
	const struct command *c;

	(void)o;
	if (!args[0]) {
		print_usage(stdout);
		return 0;
	}
	c = find_command(args[0]);
	if (!c)
		return usage_fail("unknown command '%s' (try 'imgfmt --help')",
				  args[0]);
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
					  arg);
		if (o->cache_bytes < IMGFMT_MIN_CACHE_BYTES ||
		    o->cache_bytes > IMGFMT_MAX_CACHE_BYTES)
			return usage_fail("%s: the cache size must be from %llu to %llu bytes",
					  c->name, IMGFMT_MIN_CACHE_BYTES,
					  IMGFMT_MAX_CACHE_BYTES);
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
	int opt, rc;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":f:c:n:h", long_options,
				  NULL)) != -1) {
		if (opt == 'h') {
			print_command_help(c);
			return 1;
		}
		if (opt == '?' && optopt && !strchr("fcnh", optopt))
			return usage_fail("%s: unknown option '-%c'", c->name,
					  optopt);
		if (opt == '?')
			return usage_fail("%s: unknown option '%s'", c->name,
					  argv[optind - 1]);
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
	char *args[3] = { NULL, NULL, NULL };
	struct opts o;
	int first = 0, nr, i, rc;

	rc = parse_options(c, argc, argv, &o, &first);
	if (rc)
		return rc > 0 ? 0 : rc;
	nr = argc - first;
	if (nr < c->min_args || nr > c->max_args)
		return usage_fail("%s: wrong number of arguments (usage: imgfmt %s)",
				  c->name, c->synopsis);
	for (i = 0; i < nr; i++)
		args[i] = argv[first + i];
	return c->run(&o, args);
}

static int dispatch(int argc, char **argv)
{
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
				  argv[1]);
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
			error_line[0] ? error_line : "failed");
		return rc == FAIL_USAGE ? 2 : 1;
	}
	return 0;
}
