// SPDX-License-Identifier: GPL-2.0-only
/*
 * replay-log: list and replay a write log recorded by the kernel's
 * dm-log-writes target, so that a test can look at the device as it was
 * at any entry of the log (a crash just there).
 *
 * The log format is the one drivers/md/dm-log-writes.c writes (version 1):
 * a super block in the first sector, then per entry one sector holding the
 * entry (and a mark's name), followed by the written data unless the entry
 * is a discard.  All numbers are little-endian; sectors are the log's own
 * sector size (the data device's logical block size), not 512 bytes.
 *
 * The log is input like any image: every field is checked before use and
 * a log that does not hold together is refused in one line.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>

#include "uport.h"		/* the kernel's type names, as the helper has */

#define LW_MAGIC	0x6a736677736872ULL
#define LW_VERSION	1

#define LW_FLUSH	BIT_ULL(0)
#define LW_FUA		BIT_ULL(1)
#define LW_DISCARD	BIT_ULL(2)
#define LW_MARK		BIT_ULL(3)
#define LW_META		BIT_ULL(4)
#define LW_KNOWN	(LW_FLUSH | LW_FUA | LW_DISCARD | LW_MARK | LW_META)

/* On-disk sizes: the super's fields, and an entry's before a mark name. */
#define LW_SUPER_BYTES	28
#define LW_ENTRY_BYTES	32

/* The kernel's logical block sizes run from 512 bytes to a page. */
#define LW_MIN_SECTOR	512
#define LW_MAX_SECTOR	65536

/* Data is copied through a buffer of this size, whatever the entry's. */
#define COPY_BYTES	BIT(20)

struct lw_log {
	const char *path;
	int fd;
	u64 bytes;		/* size of the log device */
	u32 sector;	/* the log's sector size in bytes */
	u64 nr_entries;	/* as the super says */
	u64 next;		/* byte offset of the next entry */
	u64 index;		/* index of that entry */
	unsigned char *hdr;	/* one sector: the current entry */
};

struct lw_entry {
	u64 index;
	u64 sector;
	u64 nr_sectors;
	u64 flags;
	u64 data_off;	/* byte offset of its data in the log */
	const unsigned char *mark;
	size_t mark_len;
};

struct lw_target {
	const char *path;
	int fd;
	u64 sectors;	/* size in log sectors; 0 when there is none */
};

static const char *prog = "replay-log";

static _Noreturn __printf(1, 2) void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Read exactly LEN bytes at OFF; a short file is an error like any other. */
static int read_at(int fd, void *buf, size_t len, u64 off)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ENODATA;
			return -1;
		}
		p += r;
		off += r;
		len -= r;
	}
	return 0;
}

static int write_at(int fd, const void *buf, size_t len, u64 off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += r;
		off += r;
		len -= r;
	}
	return 0;
}

/*
 * Opens a block device or a regular file (tests use both) and returns its
 * size.  O_NONBLOCK keeps the open of a FIFO from waiting for its other
 * end; anything but the two is refused before it is read.
 */
static int open_sized(const char *path, int flags, u64 *bytes)
{
	struct stat st;
	int fd;

	fd = open(path, flags | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		fail("%s: %s", path, strerror(errno));
	if (S_ISREG(st.st_mode))
		*bytes = (u64)st.st_size;
	else if (!S_ISBLK(st.st_mode))
		fail("%s: not a block device or regular file", path);
	else if (ioctl(fd, BLKGETSIZE64, bytes) < 0)
		fail("%s: BLKGETSIZE64: %s", path, strerror(errno));
	if (fcntl(fd, F_SETFL, flags) < 0)
		fail("%s: %s", path, strerror(errno));
	return fd;
}

static u64 get_le64(const unsigned char *p)
{
	u64 v;

	memcpy(&v, p, sizeof(v));
	return le64_to_cpu(v);
}

static u32 get_le32(const unsigned char *p)
{
	u32 v;

	memcpy(&v, p, sizeof(v));
	return le32_to_cpu(v);
}

static void log_open(struct lw_log *log, const char *path)
{
	unsigned char super[LW_SUPER_BYTES];
	u64 magic, version;

	log->path = path;
	log->fd = open_sized(path, O_RDONLY, &log->bytes);
	if (log->bytes < LW_MIN_SECTOR)
		fail("%s: log of %" PRIu64 " bytes is shorter than its super block",
		     path, log->bytes);
	if (read_at(log->fd, super, sizeof(super), 0) < 0)
		fail("%s: reading the super block: %s", path, strerror(errno));

	magic = get_le64(super);
	version = get_le64(super + 8);
	log->nr_entries = get_le64(super + 16);
	log->sector = get_le32(super + 24);
	if (magic != LW_MAGIC)
		fail("%s: bad magic 0x%" PRIx64 " (not a dm-log-writes log)",
		     path, magic);
	if (version != LW_VERSION)
		fail("%s: log version %" PRIu64 ", only %d is known",
		     path, version, LW_VERSION);
	if (log->sector < LW_MIN_SECTOR || log->sector > LW_MAX_SECTOR ||
	    (log->sector & (log->sector - 1)))
		fail("%s: sector size %" PRIu32 " is not a power of two in %d..%d",
		     path, log->sector, LW_MIN_SECTOR, LW_MAX_SECTOR);
	/* Each entry takes at least its own sector after the super's. */
	if (log->bytes < log->sector ||
	    log->nr_entries > log->bytes / log->sector - 1)
		fail("%s: %" PRIu64 " entries cannot fit in a log of %" PRIu64
		     " bytes", path, log->nr_entries, log->bytes);

	log->hdr = malloc(log->sector);
	if (!log->hdr)
		fail("out of memory");
	log->next = log->sector;
	log->index = 0;
}

/* Checks what an entry says against the log and the target's size. */
static void entry_check(const struct lw_log *log, const struct lw_entry *e,
			u64 data_len, const struct lw_target *t)
{
	u64 room = (log->bytes - e->data_off) / log->sector;

	if (e->flags & ~LW_KNOWN)
		fail("%s: entry %" PRIu64 ": unknown flags 0x%" PRIx64,
		     log->path, e->index, e->flags);
	if (e->flags & LW_MARK) {
		if (e->nr_sectors)
			fail("%s: entry %" PRIu64 ": a mark with %" PRIu64
			     " sectors of data", log->path, e->index,
			     e->nr_sectors);
		if (data_len > log->sector - LW_ENTRY_BYTES)
			fail("%s: entry %" PRIu64 ": mark of %" PRIu64
			     " bytes does not fit in its sector", log->path,
			     e->index, data_len);
		return;
	}
	/* Only marks carry data of their own (dm-log-writes' datalen). */
	if (data_len)
		fail("%s: entry %" PRIu64 ": data_len %" PRIu64
		     " on an entry that is not a mark", log->path, e->index,
		     data_len);
	if (!(e->flags & LW_DISCARD) && e->nr_sectors > room)
		fail("%s: entry %" PRIu64 ": %" PRIu64
		     " sectors of data run past the end of the log (%" PRIu64
		     " bytes)", log->path, e->index, e->nr_sectors, log->bytes);
	if (t->fd >= 0 && e->nr_sectors &&
	    (e->sector > t->sectors || e->nr_sectors > t->sectors - e->sector))
		fail("%s: entry %" PRIu64 ": sectors %" PRIu64 "+%" PRIu64
		     " lie past the end of %s (%" PRIu64 " sectors of %" PRIu32
		     " bytes)", log->path, e->index, e->sector, e->nr_sectors,
		     t->path, t->sectors, log->sector);
}

/*
 * Reads and checks the next entry; false at the end of the log.  The mark
 * name points into log->hdr, valid until the next call.
 */
static bool log_next(struct lw_log *log, struct lw_entry *e,
		     const struct lw_target *t)
{
	u64 data_len;

	if (log->index >= log->nr_entries)
		return false;
	/* log->next only grows by checked amounts, but never trust it. */
	if (log->next > log->bytes || log->bytes - log->next < log->sector)
		fail("%s: entry %" PRIu64 " of %" PRIu64
		     " lies past the end of the log (%" PRIu64 " bytes)",
		     log->path, log->index, log->nr_entries, log->bytes);
	if (read_at(log->fd, log->hdr, log->sector, log->next) < 0)
		fail("%s: reading entry %" PRIu64 ": %s", log->path,
		     log->index, strerror(errno));

	e->index = log->index;
	e->sector = get_le64(log->hdr);
	e->nr_sectors = get_le64(log->hdr + 8);
	e->flags = get_le64(log->hdr + 16);
	data_len = get_le64(log->hdr + 24);
	e->data_off = log->next + log->sector;
	entry_check(log, e, data_len, t);
	e->mark = (e->flags & LW_MARK) ? log->hdr + LW_ENTRY_BYTES : NULL;
	e->mark_len = (e->flags & LW_MARK) ? data_len : 0;

	/* Checked above: the data lies inside the log, so this cannot wrap. */
	log->next = e->data_off;
	if (!(e->flags & LW_DISCARD))
		log->next += e->nr_sectors * log->sector;
	log->index++;
	return true;
}

static bool mark_is(const struct lw_entry *e, const char *name)
{
	return e->mark && e->mark_len == strlen(name) &&
	       !memcmp(e->mark, name, e->mark_len);
}

/* A mark name is log data: print it escaped, as one word. */
static void print_mark(const struct lw_entry *e)
{
	size_t i;

	for (i = 0; i < e->mark_len; i++) {
		unsigned char c = e->mark[i];

		if (c > ' ' && c < 0x7f && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
}

static void print_entry(const struct lw_entry *e)
{
	static const struct {
		u64 bit;
		const char *name;
	} names[] = {
		{ LW_FLUSH, "FLUSH" }, { LW_FUA, "FUA" },
		{ LW_DISCARD, "DISCARD" }, { LW_MARK, "MARK" },
		{ LW_META, "META" },
	};
	const char *sep = "";
	size_t i;

	printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " ", e->index, e->sector,
	       e->nr_sectors);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (e->flags & names[i].bit) {
			printf("%s%s", sep, names[i].name);
			sep = "|";
		}
	}
	if (!*sep)
		putchar('-');
	if (e->mark) {
		putchar(' ');
		print_mark(e);
	}
	putchar('\n');
}

/*
 * Writes one entry to the target.  A discard becomes zeroes written: what
 * a discarded range reads back as is up to the device, and zeroes are the
 * one answer that makes a replay deterministic.
 */
static void replay_entry(const struct lw_log *log, const struct lw_entry *e,
			 const struct lw_target *t, unsigned char *buf)
{
	u64 left = e->nr_sectors * log->sector;
	u64 src = e->data_off;
	u64 dst = e->sector * log->sector;
	bool discard = e->flags & LW_DISCARD;

	if (discard)
		memset(buf, 0, COPY_BYTES);
	while (left) {
		size_t n = left < COPY_BYTES ? (size_t)left : COPY_BYTES;

		if (!discard && read_at(log->fd, buf, n, src) < 0)
			fail("%s: reading the data of entry %" PRIu64 ": %s",
			     log->path, e->index, strerror(errno));
		if (write_at(t->fd, buf, n, dst) < 0)
			fail("%s: writing entry %" PRIu64 ": %s", t->path,
			     e->index, strerror(errno));
		src += n;
		dst += n;
		left -= n;
	}
}

/* The index of the first mark called NAME; fails when there is none. */
static u64 find_mark(const char *path, const char *name,
		     const struct lw_target *t)
{
	struct lw_log log;
	struct lw_entry e;

	log_open(&log, path);
	while (log_next(&log, &e, t)) {
		if (mark_is(&e, name)) {
			close(log.fd);
			free(log.hdr);
			return e.index;
		}
	}
	fail("%s: no mark \"%s\" in its %" PRIu64 " entries", path, name,
	     log.nr_entries);
}

static const char help_text[] =
	"\n"
	"Replays a dm-log-writes log onto DEV, entries [START, END) in log order.\n"
	"\n"
	"  --log LOG        the log device (or a file holding a log)\n"
	"  --replay DEV     the device (or file) to write to; every entry's sectors\n"
	"                   are checked against its size, also when listing\n"
	"  --start N        skip entries [0, N): DEV already holds them (default 0)\n"
	"  --limit N        END is N: stop before entry N\n"
	"  --end-mark NAME  END is just after the first mark NAME\n"
	"                   (default END: the log's entry count)\n"
	"  --list           print entries [START, END), one a line:\n"
	"                   INDEX SECTOR NR_SECTORS FLAGS [MARK]\n"
	"                   (sectors of the log's sector size; FLAGS FLUSH, FUA,\n"
	"                   DISCARD, MARK, META joined by |, or -; MARK escaped)\n"
	"  --flush-points   print the index after each FLUSH or FUA entry in\n"
	"                   [START, END): the --limit values of the durable states\n"
	"  --info           print the log's entry count and sector size\n"
	"\n"
	"Discard entries are replayed as zeroes written to the range (no\n"
	"BLKDISCARD), so that a replay does not depend on what DEV reads back\n"
	"after a discard.  DEV is fsynced at the end.  Errors, including a log\n"
	"that does not hold together, are one line on stderr and exit status 1.\n";

static void print_help(FILE *f)
{
	fprintf(f, "usage: %s --log LOG [--replay DEV] [--start N] [--limit N | --end-mark NAME]\n"
		"       %s --log LOG [--replay DEV] --list | --flush-points | --info\n",
		prog, prog);
	fputs(help_text, f);
}

enum { OPT_LIST = 256, OPT_FLUSH, OPT_INFO };

struct options {
	const char *log;
	const char *replay;
	const char *end_mark;
	u64 start;
	u64 limit;
	bool have_limit;
	int mode;		/* 0: replay, else OPT_* */
};

static u64 parse_index(const char *opt, const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		fail("%s: not an entry index: %s", opt, s);
	return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "log", required_argument, NULL, 'l' },
		{ "replay", required_argument, NULL, 'r' },
		{ "start", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'n' },
		{ "end-mark", required_argument, NULL, 'e' },
		{ "list", no_argument, NULL, OPT_LIST },
		{ "flush-points", no_argument, NULL, OPT_FLUSH },
		{ "info", no_argument, NULL, OPT_INFO },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->log = optarg;
			break;
		case 'r':
			o->replay = optarg;
			break;
		case 's':
			o->start = parse_index("--start", optarg);
			break;
		case 'n':
			o->limit = parse_index("--limit", optarg);
			o->have_limit = true;
			break;
		case 'e':
			o->end_mark = optarg;
			break;
		case OPT_LIST:
		case OPT_FLUSH:
		case OPT_INFO:
			if (o->mode && o->mode != c)
				fail("--list, --flush-points and --info exclude each other");
			o->mode = c;
			break;
		case 'h':
			print_help(stdout);
			exit(0);
		default:
			print_help(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		fail("unexpected argument: %s", argv[optind]);
	if (!o->log)
		fail("--log LOG is required");
	if (!o->mode && !o->replay)
		fail("--replay DEV is required to replay");
	if (o->have_limit && o->end_mark)
		fail("--limit and --end-mark exclude each other");
}

static void target_open(struct lw_target *t, const char *path, bool write,
			u32 sector)
{
	u64 bytes;

	t->path = path;
	t->fd = -1;
	t->sectors = 0;
	if (!path)
		return;
	t->fd = open_sized(path, write ? O_WRONLY : O_RDONLY, &bytes);
	t->sectors = bytes / sector;
}

enum walk_mode { WALK_CHECK, WALK_REPLAY, WALK_LIST, WALK_FLUSH };

/*
 * One pass over entries [0, END) of the log, acting on [START, END).  The
 * entries before START are read too: that is how START is found.
 */
static void walk(const char *path, u64 start, u64 end,
		 const struct lw_target *t, enum walk_mode mode)
{
	unsigned char *buf = NULL;
	struct lw_log log;
	struct lw_entry e;

	if (mode == WALK_REPLAY) {
		buf = malloc(COPY_BYTES);
		if (!buf)
			fail("out of memory");
	}
	log_open(&log, path);
	while (log.index < end && log_next(&log, &e, t)) {
		if (e.index < start)
			continue;
		if (mode == WALK_LIST)
			print_entry(&e);
		else if (mode == WALK_FLUSH && (e.flags & (LW_FLUSH | LW_FUA)))
			printf("%" PRIu64 "\n", e.index + 1);
		else if (mode == WALK_REPLAY && e.nr_sectors)
			replay_entry(&log, &e, t, buf);
	}
	close(log.fd);
	free(log.hdr);
	free(buf);
}

int main(int argc, char **argv)
{
	struct options o;
	struct lw_log log;
	struct lw_target t;
	enum walk_mode mode;
	u64 end;

	parse_options(argc, argv, &o);
	log_open(&log, o.log);
	close(log.fd);
	free(log.hdr);
	target_open(&t, o.replay, !o.mode, log.sector);

	if (o.mode == OPT_INFO) {
		printf("entries %" PRIu64 "\nsector-size %" PRIu32 "\n",
		       log.nr_entries, log.sector);
		return 0;
	}
	mode = o.mode == OPT_LIST ? WALK_LIST :
	       o.mode == OPT_FLUSH ? WALK_FLUSH : WALK_REPLAY;
	end = log.nr_entries;
	if (o.have_limit) {
		if (o.limit > log.nr_entries)
			fail("--limit %" PRIu64 ": the log has %" PRIu64
			     " entries", o.limit, log.nr_entries);
		end = o.limit;
	} else if (o.end_mark) {
		end = find_mark(o.log, o.end_mark, &t) + 1;
	}
	if (o.start > end)
		fail("--start %" PRIu64 " lies after the end, entry %" PRIu64,
		     o.start, end);

	/*
	 * Every entry up to END is checked before anything is written or
	 * printed, so that a bad log leaves DEV as it was.
	 */
	walk(o.log, o.start, end, &t, WALK_CHECK);
	walk(o.log, o.start, end, &t, mode);
	if (mode == WALK_REPLAY && fsync(t.fd) < 0)
		fail("%s: fsync: %s", t.path, strerror(errno));
	if (fflush(stdout) == EOF || ferror(stdout))
		fail("writing the output: %s", strerror(errno));
	return 0;
}
