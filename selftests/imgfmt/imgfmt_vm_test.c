// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-VM tests of the dm-imgfmt target, against QEMU as the oracle.
 *
 * The images and their expected contents come from mkimages.sh (run on the
 * host): the manifests in $IMGFMT_IMAGES (default /payload/images) say what
 * each image must read as, and variants.h, generated from them and compiled
 * in, makes every image its own TAP result.
 *
 * Needs root, the dm-imgfmt module, loop, dmsetup and the imgfmt helper in
 * PATH (or $IMGFMT).  dmsetup runs with DM_DISABLE_UDEV=1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "md5.h"

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;

#define SECTOR		512ULL
#define CHUNK		(1U << 20)
#define OUT_MAX		8192

/* Images the table and concurrency tests use (made by mkimages.sh). */
#define TABLE_IMAGE		"v3_c64k"
#define SMALL_CLUSTER_IMAGE	"many_l2_c512"
#define CONCURRENT_IMAGE	"v3_c4k"
#define LOGGED_CORRUPT_IMAGE	"l2_past_eof"

/* -------------------------------------------------------- environment */

static const char *images_dir(void)
{
	const char *d = getenv("IMGFMT_IMAGES");

	return d && *d ? d : "/payload/images";
}

static const char *helper(void)
{
	const char *h = getenv("IMGFMT");

	return h && *h ? h : "imgfmt";
}

static void __attribute__((constructor)) no_udev(void)
{
	setenv("DM_DISABLE_UDEV", "1", 0);
}

/*
 * Run argv (searched in PATH) with stdin from /dev/null.  Its stdout goes
 * to out (truncated to len - 1); its stderr too when err is NULL, else to
 * err (truncated to errlen - 1).  Returns the exit status, 128 + signal, or
 * -1 when it could not run.
 */
static int run_cmdv(char *out, size_t len, char *err, size_t errlen,
		    char *const argv[])
{
	char tmp[4096];
	size_t n = 0;
	int pfd[2], status, fd, efd = -1;
	ssize_t r;
	pid_t pid;

	if (err) {
		efd = memfd_create("stderr", 0);
		if (efd < 0)
			return -1;
	}
	if (pipe(pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fd = open("/dev/null", O_RDONLY);
		dup2(fd, 0);
		dup2(pfd[1], 1);
		dup2(err ? efd : pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	while ((r = read(pfd[0], tmp, sizeof(tmp))) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (out && n + 1 < len) {
			size_t k = (size_t)r < len - 1 - n ? (size_t)r : len - 1 - n;

			memcpy(out + n, tmp, k);
			n += k;
		}
	}
	close(pfd[0]);
	if (out && len)
		out[n] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (err) {
		r = errlen ? pread(efd, err, errlen - 1, 0) : 0;
		if (errlen)
			err[r > 0 ? r : 0] = '\0';
		close(efd);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/* stdout and stderr together into out. */
#define run_cmd(out, len, ...) \
	run_cmdv(out, len, NULL, 0, (char *const[]){ __VA_ARGS__, NULL })

/* stdout into out, stderr into err. */
#define run_cmd2(out, len, err, errlen, ...) \
	run_cmdv(out, len, err, errlen, (char *const[]){ __VA_ARGS__, NULL })

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* Does text hold a line that is exactly line? */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') &&
		    (p[n] == '\n' || p[n] == '\0'))
			return true;
		p++;
	}
	return false;
}

/* ----------------------------------------------------------- manifests */

#define MAX_FIELDS	8

struct record {
	char line[1024];
	char *f[MAX_FIELDS];	/* the last one keeps the rest of the line */
	int n;
};

/*
 * Find the nth (from 0) record named name in list; fields split at spaces,
 * at most max of them.  Returns true when found.
 */
static bool manifest_find(const char *list, const char *name, int nth,
			  int max, struct record *rec)
{
	char path[PATH_MAX];
	bool found = false;
	FILE *fp;
	char *p;

	snprintf(path, sizeof(path), "%s/%s", images_dir(), list);
	fp = fopen(path, "r");
	if (!fp)
		return false;
	while (fgets(rec->line, sizeof(rec->line), fp)) {
		chomp(rec->line);
		p = rec->line;
		rec->n = 0;
		while (*p && rec->n < max) {
			rec->f[rec->n++] = p;
			if (rec->n == max)
				break;
			p = strchr(p, ' ');
			if (!p)
				break;
			*p++ = '\0';
		}
		if (rec->n && !strcmp(rec->f[0], name) && nth-- == 0) {
			found = true;
			break;
		}
	}
	fclose(fp);
	return found;
}

static void image_path(char *buf, size_t len, const char *file)
{
	snprintf(buf, len, "%s/%s", images_dir(), file);
}

struct good_image {
	char path[PATH_MAX];
	u64 vsize;
	char md5[33];
	u32 cluster_size;
	char format[32];
};

/* good.list: <name> <file> <virtual_size> <md5> <cluster_size> [<format>] */
static bool good_lookup(const char *name, struct good_image *g)
{
	struct record r;

	if (!manifest_find("good.list", name, 0, 6, &r) || r.n < 5)
		return false;
	image_path(g->path, sizeof(g->path), r.f[1]);
	g->vsize = strtoull(r.f[2], NULL, 0);
	snprintf(g->md5, sizeof(g->md5), "%s", r.f[3]);
	g->cluster_size = strtoul(r.f[4], NULL, 0);
	snprintf(g->format, sizeof(g->format), "%s", r.n > 5 ? r.f[5] : "qcow2");
	return true;
}

/* ---------------------------------------------------------- kernel log */

/* Put a unique marker into the kernel log; tag receives it. */
static void kmsg_mark(char *tag, size_t len, const char *what)
{
	static unsigned int seq;
	struct timespec ts;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(tag, len, "imgfmt-selftest mark %s %d.%u.%ld", what,
		 getpid(), seq++, ts.tv_nsec);
	fd = open("/dev/kmsg", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, tag, strlen(tag)) < 0)
			tag[0] = '\0';
		close(fd);
	}
}

/* The whole kernel log buffer (malloc'ed), or NULL. */
static char *klog_all(void)
{
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *buf;
	int n;

	if (size <= 0)
		size = 1 << 20;
	buf = malloc(size + 1);
	if (!buf)
		return NULL;
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The kernel log after the last copy of tag (malloc'ed), or NULL. */
static char *klog_since(const char *tag)
{
	char *all = klog_all(), *p, *last = NULL, *res;

	if (!all || !*tag) {
		free(all);
		return NULL;
	}
	for (p = all; (p = strstr(p, tag)); p++)
		last = p;
	res = last ? strdup(last + strlen(tag)) : NULL;
	free(all);
	return res;
}

/* -------------------------------------------------------- block devices */

/*
 * Bind path read-only to a free loop device with logical blocks of bs bytes
 * (0: 512).  Returns an open fd of the loop device (kept open by the caller
 * until it detaches) and its name.
 */
static int loop_attach_bs(const char *path, char *dev, size_t len, u32 bs)
{
	struct loop_config cfg;
	int ctl, file, lfd = -1, n, tries;

	ctl = open("/dev/loop-control", O_RDWR);
	file = open(path, O_RDONLY);
	if (ctl < 0 || file < 0)
		goto out;
	for (tries = 0; tries < 20; tries++) {
		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			break;
		snprintf(dev, len, "/dev/loop%d", n);
		lfd = open(dev, O_RDONLY);
		if (lfd < 0) {
			usleep(50000);
			continue;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = file;
		cfg.block_size = bs;
		cfg.info.lo_flags = LO_FLAGS_READ_ONLY;
		snprintf((char *)cfg.info.lo_file_name,
			 sizeof(cfg.info.lo_file_name), "%s", path);
		if (!ioctl(lfd, LOOP_CONFIGURE, &cfg))
			break;
		close(lfd);
		lfd = -1;
		if (errno != EBUSY)
			break;
	}
out:
	if (file >= 0)
		close(file);
	if (ctl >= 0)
		close(ctl);
	return lfd;
}

static int loop_attach(const char *path, char *dev, size_t len)
{
	return loop_attach_bs(path, dev, len, 0);
}

static void loop_detach(int *lfd)
{
	if (*lfd < 0)
		return;
	/* With the dm device gone this clears at once, else at last close. */
	ioctl(*lfd, LOOP_CLR_FD);
	close(*lfd);
	*lfd = -1;
}

static bool dm_exists(const char *name)
{
	char out[OUT_MAX];

	return run_cmd(out, sizeof(out), "dmsetup", "info", (char *)name) == 0;
}

static int dm_create(const char *name, const char *table, bool readonly,
		     char *out, size_t len)
{
	if (readonly)
		return run_cmd(out, len, "dmsetup", "create", (char *)name,
			       "--readonly", "--table", (char *)table);
	return run_cmd(out, len, "dmsetup", "create", (char *)name,
		       "--table", (char *)table);
}

/* Remove name if it exists; true when it is gone. */
static bool dm_remove(const char *name)
{
	char out[OUT_MAX];
	int i;

	for (i = 0; i < 20 && dm_exists(name); i++) {
		if (!run_cmd(out, sizeof(out), "dmsetup", "remove", (char *)name))
			break;
		usleep(100000);
	}
	return !dm_exists(name);
}

/* dmsetup status fields, by index after "<start> <length> imgfmt". */
enum status_field {
	ST_START, ST_LENGTH, ST_TARGET, ST_FORMAT, ST_VSIZE, ST_CLUSTER,
	ST_CACHE, ST_HITS, ST_MISSES, ST_IO_ERRORS, ST_CACHE_PEAK,
	ST_DEFERRED, ST_DECOMPRESSED, ST_PREFETCHED,
	ST_MIN_FIELDS = ST_IO_ERRORS + 1,
};

struct dm_status {
	char format[32];
	u64 length, vsize, cluster, cache_used, cache_limit, hits, misses;
	u64 io_errors, cache_peak, decompressed, prefetched;
	bool has_peak, has_prefetched;
};

static bool dm_get_status(const char *name, struct dm_status *st,
			  char *out, size_t len)
{
	char *tok[16], *save = NULL, *p;
	int n = 0;

	memset(st, 0, sizeof(*st));
	if (run_cmd(out, len, "dmsetup", "status", (char *)name))
		return false;
	chomp(out);
	p = strdup(out);
	for (tok[n] = strtok_r(p, " ", &save); tok[n] && n < 15;
	     tok[++n] = strtok_r(NULL, " ", &save))
		;
	if (n < ST_MIN_FIELDS || strcmp(tok[ST_TARGET], "imgfmt") ||
	    sscanf(tok[ST_CACHE], "%" SCNu64 "/%" SCNu64, &st->cache_used,
		   &st->cache_limit) != 2) {
		free(p);
		return false;
	}
	snprintf(st->format, sizeof(st->format), "%s", tok[ST_FORMAT]);
	st->length = strtoull(tok[ST_LENGTH], NULL, 10);
	st->vsize = strtoull(tok[ST_VSIZE], NULL, 10);
	st->cluster = strtoull(tok[ST_CLUSTER], NULL, 10);
	st->hits = strtoull(tok[ST_HITS], NULL, 10);
	st->misses = strtoull(tok[ST_MISSES], NULL, 10);
	st->io_errors = strtoull(tok[ST_IO_ERRORS], NULL, 10);
	if (n > ST_CACHE_PEAK) {
		st->cache_peak = strtoull(tok[ST_CACHE_PEAK], NULL, 10);
		st->has_peak = true;
	}
	if (n > ST_PREFETCHED) {
		st->decompressed = strtoull(tok[ST_DECOMPRESSED], NULL, 10);
		st->prefetched = strtoull(tok[ST_PREFETCHED], NULL, 10);
		st->has_prefetched = true;
	}
	free(p);
	return true;
}

static u64 dev_size(const char *dev)
{
	u64 size = 0;
	int fd = open(dev, O_RDONLY);

	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKGETSIZE64, &size))
		size = 0;
	close(fd);
	return size;
}

static void *alloc_aligned(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len))
		return NULL;
	return p;
}

/* pread all of len at off; 0 or -errno. */
static int pread_full(int fd, void *buf, size_t len, u64 off)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = pread(fd, (char *)buf + done, len - done, off + done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENODATA;
		done += r;
	}
	return 0;
}

struct dev_read {
	char md5[33];		/* of the first hash_len bytes */
	u64 nonzero_tail;	/* non-zero bytes after them */
	int err;		/* -errno of the first failed read */
	u64 err_off;
};

/*
 * Read [off, off + len) of dev in chunks of chunk bytes (O_DIRECT when
 * direct), hashing the first hash_len bytes and counting non-zero bytes
 * after them.
 */
static void dev_read_range(const char *dev, u64 off, u64 len, u64 hash_len,
			   size_t chunk, bool direct, struct dev_read *res)
{
	struct md5 m;
	u64 pos = 0, k, i;
	u8 *buf;
	int fd;

	memset(res, 0, sizeof(*res));
	md5_init(&m);
	buf = alloc_aligned(chunk);
	fd = open(dev, O_RDONLY | (direct ? O_DIRECT : 0));
	if (!buf || fd < 0) {
		res->err = -errno;
		goto out;
	}
	while (pos < len) {
		k = len - pos < chunk ? len - pos : chunk;
		res->err = pread_full(fd, buf, k, off + pos);
		if (res->err) {
			res->err_off = off + pos;
			break;
		}
		if (pos < hash_len)
			md5_update(&m, buf, hash_len - pos < k ? hash_len - pos : k);
		for (i = pos < hash_len ? hash_len - pos : 0; i < k; i++)
			res->nonzero_tail += buf[i] != 0;
		pos += k;
	}
	md5_hex(&m, res->md5);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
}

/* The dm device name is unique per fixture, variant and test. */
static void dm_name(char *buf, size_t len, const char *test, const char *var)
{
	snprintf(buf, len, "ift_%s_%s", test, var ? var : "x");
}

/*
 * "imgfmt table IMAGE DEV" (its stdout; notes on stderr go to err),
 * checked for the expected start.
 */
static bool imgfmt_table(const char *image, const char *loopdev, u64 vsize,
			 char *table, size_t len, char *err, size_t errlen)
{
	char want[256];

	if (run_cmd2(table, len, err, errlen, (char *)helper(), "table",
		     (char *)image, (char *)loopdev))
		return false;
	chomp(table);
	snprintf(want, sizeof(want), "0 %llu imgfmt %s",
		 (unsigned long long)((vsize + SECTOR - 1) / SECTOR), loopdev);
	return !strncmp(table, want, strlen(want)) &&
	       (table[strlen(want)] == '\0' || table[strlen(want)] == ' ');
}

/* Count allocated L1 entries of a QCOW2 file (for cache expectations). */
static long qcow2_allocated_l1(const char *path)
{
	u8 h[48], e[8];
	u64 l1off, v;
	u32 l1size, i;
	long n = 0;
	int fd = open(path, O_RDONLY), j;

	if (fd < 0 || pread(fd, h, sizeof(h), 0) != sizeof(h)) {
		n = -1;
		goto out;
	}
	l1size = (u32)h[36] << 24 | h[37] << 16 | h[38] << 8 | h[39];
	for (l1off = 0, j = 40; j < 48; j++)
		l1off = l1off << 8 | h[j];
	for (i = 0; i < l1size; i++) {
		if (pread(fd, e, 8, l1off + 8ULL * i) != 8) {
			n = -1;
			break;
		}
		for (v = 0, j = 0; j < 8; j++)
			v = v << 8 | e[j];
		n += (v & 0x00fffffffffffe00ULL) != 0;
	}
out:
	if (fd >= 0)
		close(fd);
	return n;
}

#define MAX_LOWER	8

/*
 * The devices under sysfs block device name (e.g. "dm-3"), depth first,
 * appended to lower[*n]: the helper may stack dm devices over its loops.
 */
static void lower_devices(const char *name, char lower[][32], int *n)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/block/%s/slaves", name);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)) && *n < MAX_LOWER) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(lower[(*n)++], 32, "%s", de->d_name);
		lower_devices(de->d_name, lower, n);
	}
	closedir(d);
}

/* The sysfs name of block device node dev ("dm-3"). */
static bool sysfs_name(const char *dev, char *name, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	struct stat st;
	const char *base;
	ssize_t n;

	if (stat(dev, &st))
		return false;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	base = strrchr(target, '/');
	snprintf(name, len, "%s", base ? base + 1 : target);
	return true;
}

static bool loop_bound(const char *loop)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", loop);
	return access(path, F_OK) == 0;
}

/* Is the lower device name still in use: a bound loop, an existing dm? */
static bool lower_alive(const char *name)
{
	char path[PATH_MAX];

	if (!strncmp(name, "loop", 4))
		return loop_bound(name);
	snprintf(path, sizeof(path), "/sys/block/%s", name);
	return access(path, F_OK) == 0;
}

/* ================================================================ tests */

/* Before anything else: the pieces the tests need are there. */
TEST(environment)
{
	char out[OUT_MAX], path[PATH_MAX];
	static const char *const lists[] = {
		"good.list", "windows.list", "hostile.list", "corrupt.list",
	};
	unsigned int i;

	ASSERT_EQ(0, geteuid());
	ASSERT_EQ(0, access("/dev/loop-control", F_OK));
	for (i = 0; i < ARRAY_SIZE(lists); i++) {
		image_path(path, sizeof(path), lists[i]);
		EXPECT_EQ(0, access(path, R_OK)) TH_LOG("missing %s", path);
	}
	ASSERT_EQ(0, run_cmd(out, sizeof(out), "dmsetup", "targets"))
		TH_LOG("dmsetup: %s", out);
	ASSERT_NE(NULL, strstr(out, "imgfmt"))
		TH_LOG("the imgfmt target is not registered: %s", out);
	ASSERT_EQ(2, run_cmd(out, sizeof(out), (char *)helper()))
		TH_LOG("imgfmt helper '%s' does not run as expected: %s",
		       helper(), out);
}

/* ---------------------------------------------------- table validation */

FIXTURE(table) {
	struct good_image img;
	char loop[64];
	int lfd;
	int lfd2;
	char name[128];
	char name2[128];
	u64 sectors;
};

FIXTURE_SETUP(table)
{
	self->lfd = -1;
	self->lfd2 = -1;
	ASSERT_TRUE(good_lookup(TABLE_IMAGE, &self->img))
		TH_LOG("%s not in good.list", TABLE_IMAGE);
	self->lfd = loop_attach(self->img.path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd) TH_LOG("loop setup of %s failed: %s",
				       self->img.path, strerror(errno));
	self->sectors = (self->img.vsize + SECTOR - 1) / SECTOR;
	dm_name(self->name, sizeof(self->name), "table", "a");
	dm_name(self->name2, sizeof(self->name2), "table", "b");
	dm_remove(self->name);
	dm_remove(self->name2);
}

FIXTURE_TEARDOWN(table)
{
	dm_remove(self->name);
	dm_remove(self->name2);
	loop_detach(&self->lfd);
	loop_detach(&self->lfd2);
}

/*
 * Load table (read-only unless rw); it must fail, leave no device behind
 * and, when msg is given, the kernel must say "imgfmt: <msg>".
 */
static void expect_refused(struct __test_metadata *_metadata,
			   const char *name, const char *table, bool rw,
			   const char *msg)
{
	char out[OUT_MAX], tag[128], want[256];
	char *log;
	int rc;

	kmsg_mark(tag, sizeof(tag), name);
	rc = dm_create(name, table, !rw, out, sizeof(out));
	EXPECT_NE(0, rc) TH_LOG("table '%s' was accepted", table);
	log = klog_since(tag);
	ASSERT_NE(NULL, log) TH_LOG("cannot read the kernel log");
	snprintf(want, sizeof(want), "imgfmt: %s", msg ? msg : "");
	EXPECT_NE(NULL, strstr(log, want))
		TH_LOG("table '%s': no '%s' in the kernel log:\n%s", table,
		       want, log);
	free(log);
	EXPECT_FALSE(dm_exists(name)) TH_LOG("refused device %s lingers", name);
	dm_remove(name);
}

static void expect_loads(struct __test_metadata *_metadata, const char *name,
			 const char *table)
{
	char out[OUT_MAX];

	ASSERT_EQ(0, dm_create(name, table, true, out, sizeof(out)))
		TH_LOG("table '%s' refused: %s", table, out);
	ASSERT_TRUE(dm_remove(name));
}

TEST_F(table, length)
{
	char t[512];

	/* Exactly the virtual size loads; one sector more does not. */
	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors, self->loop);
	expect_loads(_metadata, self->name, t);
	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors - 1, self->loop);
	expect_loads(_metadata, self->name, t);
	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors + 1, self->loop);
	expect_refused(_metadata, self->name, t, false,
		       "table length exceeds the image's virtual size");
	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors * 4096, self->loop);
	expect_refused(_metadata, self->name, t, false,
		       "table length exceeds the image's virtual size");
}

/*
 * A read-write table needs a device it may write: these loops are
 * read-only, so every image is refused before its format is asked
 * (write_vm_test.sh loads read-write tables over writable loops).
 */
TEST_F(table, read_write)
{
	char t[512];

	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors, self->loop);
	expect_refused(_metadata, self->name, t, true,
		       "cannot open image device");
}

TEST_F_TIMEOUT(table, options, 120)
{
	static const char *const bad[] = {
		"1 bogus=1",
		"1 cache_size=abc",
		"1 cache_size=",
		"1 cache_size=1024",
		"1 cache_size=-1",
		"1 format=vmdk",
		"1 format=",
		"2 format=qcow2",
		"1 format=qcow2 cache_size=65536",
		"x",
		"3 format=qcow2 cache_size=65536 bogus=1",
	};
	static const char *const good[] = {
		"",
		"1 format=qcow2",
		"1 cache_size=65536",
		"2 cache_size=1048576 format=qcow2",
		"0",
	};
	char t[512];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(good); i++) {
		snprintf(t, sizeof(t), "0 %llu imgfmt %s %s",
			 (unsigned long long)self->sectors, self->loop, good[i]);
		expect_loads(_metadata, self->name, t);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(t, sizeof(t), "0 %llu imgfmt %s %s",
			 (unsigned long long)self->sectors, self->loop, bad[i]);
		expect_refused(_metadata, self->name, t, false, NULL);
	}
	/* No image device at all. */
	snprintf(t, sizeof(t), "0 %llu imgfmt", (unsigned long long)self->sectors);
	expect_refused(_metadata, self->name, t, false, NULL);
}

/* An option given twice is refused, naming it, whatever its values. */
TEST_F(table, repeated_option)
{
	static const char *const bad[][2] = {
		{ "2 format=qcow2 format=qcow2", "format= given twice" },
		{ "2 format=qcow2 format=vmdk", "format= given twice" },
		{ "2 cache_size=65536 cache_size=65536", "cache_size= given twice" },
		{ "2 cache_size=65536 cache_size=1048576", "cache_size= given twice" },
	};
	char t[512];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(t, sizeof(t), "0 %llu imgfmt %s %s",
			 (unsigned long long)self->sectors, self->loop,
			 bad[i][0]);
		expect_refused(_metadata, self->name, t, false, bad[i][1]);
	}
}

/* The table reads back as given: options in their order and spelling. */
TEST_F(table, table_echo)
{
	static const char *const opts[] = {
		" 2 format=qcow2 cache_size=131072",
		" 2 cache_size=0x20000 format=qcow2",
		" 1 cache_size=131072",
	};
	char t[512], out[OUT_MAX];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(opts); i++) {
		snprintf(t, sizeof(t), "0 %llu imgfmt %s%s",
			 (unsigned long long)self->sectors, self->loop, opts[i]);
		ASSERT_EQ(0, dm_create(self->name, t, true, out, sizeof(out)))
			TH_LOG("%s", out);
		ASSERT_EQ(0, run_cmd(out, sizeof(out), "dmsetup", "table",
				     self->name));
		chomp(out);
		EXPECT_NE(NULL, strstr(out, opts[i])) TH_LOG("dmsetup table: %s", out);
		EXPECT_EQ(strlen(strstr(out, opts[i]) ?: ""), strlen(opts[i]))
			TH_LOG("dmsetup table: %s", out);
		ASSERT_TRUE(dm_remove(self->name));
	}
}

/* Two devices over one image at once. */
TEST_F_TIMEOUT(table, two_devices, 120)
{
	char t[512], out[OUT_MAX], dev[256];
	struct dev_read r;

	snprintf(t, sizeof(t), "0 %llu imgfmt %s",
		 (unsigned long long)self->sectors, self->loop);
	ASSERT_EQ(0, dm_create(self->name, t, true, out, sizeof(out)))
		TH_LOG("%s", out);
	ASSERT_EQ(0, dm_create(self->name2, t, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name2);
	dev_read_range(dev, 0, self->img.vsize, self->img.vsize, CHUNK, true, &r);
	ASSERT_EQ(0, r.err);
	EXPECT_STREQ(self->img.md5, r.md5);
	ASSERT_TRUE(dm_remove(self->name2));
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	dev_read_range(dev, 0, self->img.vsize, self->img.vsize, CHUNK, true, &r);
	ASSERT_EQ(0, r.err);
	EXPECT_STREQ(self->img.md5, r.md5);
}

/*
 * A 64 KiB cache over an image with 512-byte clusters (hundreds of L2
 * tables): reads stay correct, the cache stays in its bound, and every
 * allocated L2 table was read at least once.
 */
TEST_F_TIMEOUT(table, small_cache, 180)
{
	char t[512], out[OUT_MAX], dev[256];
	struct good_image img;
	struct dm_status st;
	struct dev_read r;
	char loop[64];
	long l2_tables;
	u64 misses;

	ASSERT_TRUE(good_lookup(SMALL_CLUSTER_IMAGE, &img));
	l2_tables = qcow2_allocated_l1(img.path);
	/* More tables than the cache can hold. */
	ASSERT_LT(65536, l2_tables * img.cluster_size)
		TH_LOG("%s has too few L2 tables (%ld) to evict",
		       SMALL_CLUSTER_IMAGE, l2_tables);
	self->lfd2 = loop_attach(img.path, loop, sizeof(loop));
	ASSERT_LE(0, self->lfd2);
	snprintf(t, sizeof(t), "0 %llu imgfmt %s 1 cache_size=65536",
		 (unsigned long long)((img.vsize + SECTOR - 1) / SECTOR), loop);
	ASSERT_EQ(0, dm_create(self->name, t, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	dev_read_range(dev, 0, img.vsize, img.vsize, CHUNK, true, &r);
	EXPECT_EQ(0, r.err);
	EXPECT_STREQ(img.md5, r.md5);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out))) TH_LOG("%s", out);
	EXPECT_EQ(65536, st.cache_limit) TH_LOG("%s", out);
	EXPECT_GE(st.cache_limit, st.cache_used) TH_LOG("%s", out);
	if (st.has_peak) {
		EXPECT_GE(st.cache_limit, st.cache_peak) TH_LOG("%s", out);
	}
	EXPECT_LE((u64)l2_tables, st.misses) TH_LOG("%s", out);
	EXPECT_EQ(0, st.io_errors);
	/* Read backwards: the first tables were evicted, so misses grow. */
	misses = st.misses;
	dev_read_range(dev, img.vsize / 2, img.vsize / 2, img.vsize / 2, 65536,
		       true, &r);
	EXPECT_EQ(0, r.err);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_LT(misses, st.misses) TH_LOG("%s", out);
	EXPECT_GE(st.cache_limit, st.cache_used) TH_LOG("%s", out);
	ASSERT_TRUE(dm_remove(self->name));
}

/* ---------------------------------------------------------- concurrency */

/*
 * Reader i reads the device in its own order and chunk size into a private
 * buffer, then compares its md5 with the manifest.
 */
static int concurrent_reader(const char *dev, u64 size, int i, const char *md5)
{
	static const size_t chunks[] = { 65536, 4096, 12288, 1 << 20 };
	size_t chunk = chunks[i % 4];
	u64 n = (size + chunk - 1) / chunk, k, idx, len, state = 12345 + i;
	char sum[33];
	u8 *buf = alloc_aligned(size), *tmp = alloc_aligned(chunk);
	int fd = open(dev, O_RDONLY | O_DIRECT), pass;

	if (!buf || !tmp || fd < 0)
		return 2;
	for (pass = 0; pass < 2; pass++) {
		memset(buf, 0xa5, size);
		for (k = 0; k < n; k++) {
			switch (i % 4) {
			case 0:		/* forward */
				idx = k;
				break;
			case 1:		/* backward */
				idx = n - 1 - k;
				break;
			case 2:		/* stride coprime with n */
				idx = (k * 7919) % n;
				if (n % 7919 == 0)
					idx = k;
				break;
			default:	/* pseudo-random, with repeats */
				state = state * 6364136223846793005ULL + 1;
				idx = (k + (state >> 33)) % n;
				if (k >= n / 2)
					idx = k;
				break;
			}
			len = size - idx * chunk < chunk ? size - idx * chunk : chunk;
			if (pread_full(fd, tmp, (len + 511) & ~511ULL, idx * chunk))
				return 3;
			memcpy(buf + idx * chunk, tmp, len);
		}
		if (i % 4 == 3) {
			/* The random order may have skipped chunks. */
			for (k = 0; k < n / 2; k++) {
				len = size - k * chunk < chunk ? size - k * chunk : chunk;
				if (pread_full(fd, tmp, (len + 511) & ~511ULL,
					       k * chunk))
					return 3;
				memcpy(buf + k * chunk, tmp, len);
			}
		}
		md5_buf(buf, size, sum);
		if (strcmp(sum, md5))
			return 1;
	}
	close(fd);
	return 0;
}

static void run_concurrent(struct __test_metadata *_metadata, const char *dev,
			   const struct good_image *img)
{
	pid_t pids[4];
	int i, status;

	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		ASSERT_LE(0, pids[i]);
		if (!pids[i])
			_exit(concurrent_reader(dev, img->vsize, i, img->md5));
	}
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(pids[i], waitpid(pids[i], &status, 0));
		EXPECT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status))
			TH_LOG("reader %d: %s", i,
			       WEXITSTATUS(status) == 1 ? "wrong data" :
			       "read failed");
	}
}

FIXTURE(concurrent) {
	char name[128];
	int lfd;
};

FIXTURE_SETUP(concurrent)
{
	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "conc", "a");
	dm_remove(self->name);
}

FIXTURE_TEARDOWN(concurrent)
{
	char out[OUT_MAX];

	if (dm_exists(self->name))
		run_cmd(out, sizeof(out), (char *)helper(), "detach", self->name);
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

/* Four readers on one device made by `imgfmt attach`. */
TEST_F_TIMEOUT(concurrent, attached, 300)
{
	struct good_image img;
	char out[OUT_MAX], dev[256];

	ASSERT_TRUE(good_lookup(CONCURRENT_IMAGE, &img));
	ASSERT_EQ(0, run_cmd(out, sizeof(out), (char *)helper(), "attach",
			     "--name", self->name, img.path)) TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	EXPECT_TRUE(has_line(out, dev)) TH_LOG("attach printed: %s", out);
	run_concurrent(_metadata, dev, &img);
	ASSERT_EQ(0, run_cmd(out, sizeof(out), (char *)helper(), "detach",
			     self->name)) TH_LOG("%s", out);
}

/* Four readers fighting over a 64 KiB cache of 512-byte tables. */
TEST_F_TIMEOUT(concurrent, small_cache, 300)
{
	struct good_image img;
	char out[OUT_MAX], dev[256], loop[64], t[512];
	struct dm_status st;

	ASSERT_TRUE(good_lookup(SMALL_CLUSTER_IMAGE, &img));
	self->lfd = loop_attach(img.path, loop, sizeof(loop));
	ASSERT_LE(0, self->lfd);
	snprintf(t, sizeof(t), "0 %llu imgfmt %s 1 cache_size=65536",
		 (unsigned long long)((img.vsize + SECTOR - 1) / SECTOR), loop);
	ASSERT_EQ(0, dm_create(self->name, t, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	run_concurrent(_metadata, dev, &img);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
	EXPECT_GE(st.cache_limit, st.cache_used) TH_LOG("%s", out);
	if (st.has_peak) {
		EXPECT_GE(st.cache_limit, st.cache_peak) TH_LOG("%s", out);
	}
	ASSERT_TRUE(dm_remove(self->name));
}

/* ---------------------------------------------------------- good images */

FIXTURE(good) {
	struct good_image img;
	char name[128];
	char loop[64];
	int lfd;
	bool attached;
};

FIXTURE_VARIANT(good) {
	const char *name;
};

/* ---------------------------------------------- huge images, by windows */

FIXTURE(window) {
	char name[128];
	char loop[64];
	int lfd;
};

FIXTURE_VARIANT(window) {
	const char *name;
};

/* ------------------------------------- compressed clusters, by lanes */

FIXTURE(lanes) {
	struct good_image img;
	char name[128];
	char loop[64];
	char dev[256];
	int lfd;
};

FIXTURE_VARIANT(lanes) {
	const char *name;
};

FIXTURE_VARIANT_ADD(lanes, zlib_c64k) { .name = "comp_zlib_c64k" };
FIXTURE_VARIANT_ADD(lanes, zstd_c64k) { .name = "comp_zstd_c64k" };
FIXTURE_VARIANT_ADD(lanes, zlib_c512) { .name = "comp_zlib_c512" };
FIXTURE_VARIANT_ADD(lanes, zlib_c256k) { .name = "comp_zlib_c256k" };

/* ------------------------------------------------------ hostile headers */

FIXTURE(hostile) {
	char name[128];
	char loop[64];
	int lfd;
	char path[PATH_MAX];
	char msg[256];
};

FIXTURE_VARIANT(hostile) {
	const char *name;
};

/* --------------------------------------------------- runtime corruption */

FIXTURE(corrupt) {
	char name[128];
	char loop[64];
	int lfd;
	char path[PATH_MAX];
	u64 bad, good;
	char good_md5[33];
};

FIXTURE_VARIANT(corrupt) {
	const char *name;
};

/* One variant per image, generated by mkimages.sh from the manifests. */
#include "variants.h"

FIXTURE_SETUP(good)
{
	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "good", variant->name);
	dm_remove(self->name);
	ASSERT_TRUE(good_lookup(variant->name, &self->img))
		TH_LOG("%s not in good.list", variant->name);
}

FIXTURE_TEARDOWN(good)
{
	char out[OUT_MAX];

	if (self->attached && dm_exists(self->name))
		run_cmd(out, sizeof(out), (char *)helper(), "detach", self->name);
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

/*
 * Through raw dmsetup: loop device, the helper's table, the whole virtual
 * disk by O_DIRECT, the rest of the last sector zero, the status line.
 */
TEST_F_TIMEOUT(good, dmsetup, 300)
{
	char table[1024], out[OUT_MAX], err[OUT_MAX], dev[256];
	u64 sectors = (self->img.vsize + SECTOR - 1) / SECTOR;
	struct dm_status st;
	struct dev_read r;
	struct stat fst;
	long l2_tables;

	ASSERT_EQ(0, stat(self->img.path, &fst));
	self->lfd = loop_attach(self->img.path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd) TH_LOG("loop: %s", strerror(errno));
	ASSERT_TRUE(imgfmt_table(self->img.path, self->loop, self->img.vsize,
				 table, sizeof(table), err, sizeof(err)))
		TH_LOG("imgfmt table: %s %s", table, err);
	if (dm_create(self->name, table, true, out, sizeof(out))) {
		/*
		 * A loop device ends at the file's last whole sector.  When
		 * the image needs what it hides, only `imgfmt attach` (which
		 * maps the tail) can serve it; the attach test does.
		 */
		for (char *c = out; *c; c++)
			*c = *c == '\n' ? ' ' : *c;
		if (fst.st_size % SECTOR)
			SKIP(return,
			     "file of %llu bytes: the loop device hides its tail (%s)",
			     (unsigned long long)fst.st_size, out);
		ASSERT_TRUE(false) TH_LOG("dmsetup create '%s': %s", table, out);
	}
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	ASSERT_EQ(sectors * SECTOR, dev_size(dev));

	dev_read_range(dev, 0, sectors * SECTOR, self->img.vsize, CHUNK, true, &r);
	ASSERT_EQ(0, r.err) TH_LOG("read error %d at %llu", r.err,
				   (unsigned long long)r.err_off);
	EXPECT_STREQ(self->img.md5, r.md5);
	EXPECT_EQ(0, r.nonzero_tail)
		TH_LOG("%llu non-zero bytes past the virtual size",
		       (unsigned long long)r.nonzero_tail);

	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)))
		TH_LOG("dmsetup status: %s", out);
	EXPECT_STREQ(self->img.format, st.format);
	EXPECT_EQ(sectors, st.length);
	EXPECT_EQ(self->img.vsize, st.vsize) TH_LOG("%s", out);
	EXPECT_EQ(self->img.cluster_size, st.cluster) TH_LOG("%s", out);
	/* Reading the whole disk read every L2 table there is. */
	if (!strcmp(self->img.format, "qcow2")) {
		l2_tables = qcow2_allocated_l1(self->img.path);
		ASSERT_LE(0, l2_tables);
		if (l2_tables) {
			EXPECT_LT(0, st.misses) TH_LOG("%s", out);
		} else {
			EXPECT_EQ(0, st.misses) TH_LOG("%s", out);
		}
	}
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
	EXPECT_GE(st.cache_limit, st.cache_used) TH_LOG("%s", out);

	ASSERT_TRUE(dm_remove(self->name));
	loop_detach(&self->lfd);
}

/*
 * Through the helper: attach, buffered reads (page cache and readahead),
 * detach; the loop devices (and any helper dm devices) must go with it.
 */
TEST_F_TIMEOUT(good, attach, 300)
{
	char out[OUT_MAX], err[OUT_MAX], dev[256], top[32];
	char lower[MAX_LOWER][32];
	int i, j, nlower = 0, nloops = 0;
	struct dev_read r;
	struct stat st;

	/* A name of its own, apart from the dmsetup test's. */
	dm_name(self->name, sizeof(self->name), "attach", variant->name);
	dm_remove(self->name);
	ASSERT_EQ(0, run_cmd2(out, sizeof(out), err, sizeof(err),
			      (char *)helper(), "attach", "--name", self->name,
			      self->img.path))
		TH_LOG("imgfmt attach: %s %s", out, err);
	self->attached = true;
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	EXPECT_TRUE(has_line(out, dev)) TH_LOG("attach printed: %s", out);
	ASSERT_TRUE(sysfs_name(dev, top, sizeof(top)));
	lower_devices(top, lower, &nlower);
	for (i = 0; i < nlower; i++)
		nloops += !strncmp(lower[i], "loop", 4);
	EXPECT_LT(0, nloops) TH_LOG("no loop device under %s", top);
	EXPECT_EQ((self->img.vsize + SECTOR - 1) & ~(SECTOR - 1), dev_size(dev));

	dev_read_range(dev, 0, self->img.vsize, self->img.vsize, 256 << 10,
		       false, &r);
	ASSERT_EQ(0, r.err) TH_LOG("read error %d at %llu", r.err,
				   (unsigned long long)r.err_off);
	EXPECT_STREQ(self->img.md5, r.md5);

	ASSERT_EQ(0, run_cmd(out, sizeof(out), (char *)helper(), "detach",
			     self->name)) TH_LOG("imgfmt detach: %s", out);
	self->attached = false;
	EXPECT_FALSE(dm_exists(self->name));
	EXPECT_NE(0, stat(dev, &st));
	for (i = 0; i < nlower; i++) {
		for (j = 0; j < 50 && lower_alive(lower[i]); j++)
			usleep(100000);
		EXPECT_FALSE(lower_alive(lower[i]))
			TH_LOG("%s still there after detach", lower[i]);
	}
}

FIXTURE_SETUP(window)
{
	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "win", variant->name);
	dm_remove(self->name);
}

FIXTURE_TEARDOWN(window)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

/*
 * windows.list: <name> <file> <offset> <length> <md5> <virtual_size>.
 * Each window by O_DIRECT reads of 64 KiB.
 */
TEST_F_TIMEOUT(window, read, 300)
{
	char table[1024], out[OUT_MAX], dev[256], path[PATH_MAX];
	u64 vsize, off, len;
	struct dm_status st;
	struct dev_read r;
	struct record rec;
	int nth, checked = 0;

	ASSERT_TRUE(manifest_find("windows.list", variant->name, 0, 6, &rec));
	ASSERT_EQ(6, rec.n);
	image_path(path, sizeof(path), rec.f[1]);
	vsize = strtoull(rec.f[5], NULL, 0);
	self->lfd = loop_attach(path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd);
	ASSERT_TRUE(imgfmt_table(path, self->loop, vsize, table, sizeof(table),
				 out, sizeof(out)))
		TH_LOG("imgfmt table: %s %s", table, out);
	ASSERT_EQ(0, dm_create(self->name, table, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	ASSERT_EQ((vsize + SECTOR - 1) & ~(SECTOR - 1), dev_size(dev));

	for (nth = 0; manifest_find("windows.list", variant->name, nth, 6, &rec);
	     nth++) {
		off = strtoull(rec.f[2], NULL, 0);
		len = strtoull(rec.f[3], NULL, 0);
		dev_read_range(dev, off, len, len, 65536, true, &r);
		EXPECT_EQ(0, r.err) TH_LOG("window %llu: error %d",
					   (unsigned long long)off, r.err);
		EXPECT_STREQ(rec.f[4], r.md5)
			TH_LOG("window %llu+%llu", (unsigned long long)off,
			       (unsigned long long)len);
		checked++;
	}
	EXPECT_LT(0, checked);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_EQ(vsize, st.vsize) TH_LOG("%s", out);
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
	ASSERT_TRUE(dm_remove(self->name));
}

FIXTURE_SETUP(lanes)
{
	char table[1024], out[OUT_MAX];

	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "lanes", variant->name);
	dm_remove(self->name);
	ASSERT_TRUE(good_lookup(variant->name, &self->img))
		TH_LOG("%s not in good.list", variant->name);
	self->lfd = loop_attach(self->img.path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd) TH_LOG("loop: %s", strerror(errno));
	ASSERT_TRUE(imgfmt_table(self->img.path, self->loop, self->img.vsize,
				 table, sizeof(table), out, sizeof(out)))
		TH_LOG("imgfmt table: %s %s", table, out);
	ASSERT_EQ(0, dm_create(self->name, table, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(self->dev, sizeof(self->dev), "/dev/mapper/%s", self->name);
}

FIXTURE_TEARDOWN(lanes)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

/*
 * One sequential pass by O_DIRECT reads of 64 KiB: right data, and with
 * two CPUs or more the read-ahead decompressed clusters before the reader
 * asked; no cluster was decompressed twice (the pass fits in no cache, so
 * a second decompression would push the count past the clusters there are).
 */
TEST_F_TIMEOUT(lanes, sequential, 300)
{
	u64 sectors = (self->img.vsize + SECTOR - 1) / SECTOR;
	u64 clusters = (self->img.vsize + self->img.cluster_size - 1) /
		       self->img.cluster_size;
	char out[OUT_MAX];
	struct dm_status st;
	struct dev_read r;

	dev_read_range(self->dev, 0, sectors * SECTOR, self->img.vsize, 65536,
		       true, &r);
	ASSERT_EQ(0, r.err) TH_LOG("read error %d at %llu", r.err,
				   (unsigned long long)r.err_off);
	EXPECT_STREQ(self->img.md5, r.md5);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	ASSERT_TRUE(st.has_prefetched) TH_LOG("%s", out);
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
	EXPECT_LT(0, st.decompressed) TH_LOG("%s", out);
	EXPECT_GE(clusters, st.decompressed) TH_LOG("%s", out);
	EXPECT_GE(st.decompressed, st.prefetched) TH_LOG("%s", out);
	if (get_nprocs() > 1) {
		EXPECT_LT(0, st.prefetched) TH_LOG("%d CPUs: %s",
						   get_nprocs(), out);
	} else {
		EXPECT_EQ(0, st.prefetched) TH_LOG("one CPU: %s", out);
	}
}

/* Four readers in four orders and sizes, on all lanes at once. */
TEST_F_TIMEOUT(lanes, concurrent, 300)
{
	char out[OUT_MAX];
	struct dm_status st;

	run_concurrent(_metadata, self->dev, &self->img);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
}

/*
 * Suspend in the middle of a sequential read, while the read-ahead has
 * work queued: the suspend must finish and stop it, and after the resume
 * every byte must still be right.
 */
TEST_F_TIMEOUT(lanes, suspend_resume, 300)
{
	u64 sectors = (self->img.vsize + SECTOR - 1) / SECTOR;
	char out[OUT_MAX];
	struct dm_status a, b;
	struct dev_read r;

	dev_read_range(self->dev, 0, sectors / 2 * SECTOR, 0, 65536, true, &r);
	ASSERT_EQ(0, r.err);
	ASSERT_EQ(0, run_cmd(out, sizeof(out), "dmsetup", "suspend",
			     self->name)) TH_LOG("%s", out);
	ASSERT_TRUE(dm_get_status(self->name, &a, out, sizeof(out)));
	usleep(200 * 1000);
	ASSERT_TRUE(dm_get_status(self->name, &b, out, sizeof(out)));
	EXPECT_EQ(a.decompressed, b.decompressed)
		TH_LOG("decompressing while suspended: %s", out);
	ASSERT_EQ(0, run_cmd(out, sizeof(out), "dmsetup", "resume",
			     self->name)) TH_LOG("%s", out);
	dev_read_range(self->dev, 0, sectors * SECTOR, self->img.vsize, 65536,
		       true, &r);
	ASSERT_EQ(0, r.err) TH_LOG("read error %d at %llu", r.err,
				   (unsigned long long)r.err_off);
	EXPECT_STREQ(self->img.md5, r.md5);
	ASSERT_TRUE(dm_get_status(self->name, &b, out, sizeof(out)));
	EXPECT_EQ(0, b.io_errors) TH_LOG("%s", out);
}

FIXTURE_SETUP(hostile)
{
	struct record rec;

	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "hostile", variant->name);
	dm_remove(self->name);
	ASSERT_TRUE(manifest_find("hostile.list", variant->name, 0, 3, &rec));
	ASSERT_EQ(3, rec.n);
	image_path(self->path, sizeof(self->path), rec.f[1]);
	snprintf(self->msg, sizeof(self->msg), "%s", rec.f[2]);
}

FIXTURE_TEARDOWN(hostile)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

/* The table load fails and the kernel log names the reason. */
TEST_F(hostile, table_load)
{
	char table[512];
	struct stat fst;

	/*
	 * A loop device shows whole sectors only: a file shorter than one is
	 * an empty device, which no format recognises.  Such files are
	 * judged by `imgfmt info` (the next test) and the userspace suite.
	 */
	ASSERT_EQ(0, stat(self->path, &fst));
	if (fst.st_size < SECTOR)
		SKIP(return, "file of %llu bytes: a loop device over it is empty",
		     (unsigned long long)fst.st_size);
	self->lfd = loop_attach(self->path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd);
	/* One sector: the header is judged before the length. */
	snprintf(table, sizeof(table), "0 1 imgfmt %s", self->loop);
	expect_refused(_metadata, self->name, table, false, self->msg);
}

/* The helper says the same words. */
TEST_F(hostile, info)
{
	char out[OUT_MAX], want[300];

	EXPECT_EQ(1, run_cmd(out, sizeof(out), (char *)helper(), "info",
			     self->path)) TH_LOG("%s", out);
	snprintf(want, sizeof(want), "error: %s", self->msg);
	EXPECT_TRUE(has_line(out, want)) TH_LOG("want '%s', got: %s", want, out);
}

/*
 * A feature name holding a newline reaches the kernel log escaped, on the
 * line that names the feature: no line of the log starts with its text.
 */
TEST(feature_name_escaped)
{
	char path[PATH_MAX], loop[64], table[512], tag[128], out[OUT_MAX];
	const char *name = "ift_feature_name";
	struct record rec;
	char *log, *line, *save = NULL;
	int lfd;

	ASSERT_TRUE(manifest_find("hostile.list", "feature_name_newline", 0, 3,
				  &rec));
	image_path(path, sizeof(path), rec.f[1]);
	lfd = loop_attach(path, loop, sizeof(loop));
	ASSERT_LE(0, lfd);
	snprintf(table, sizeof(table), "0 1 imgfmt %s", loop);
	kmsg_mark(tag, sizeof(tag), name);
	EXPECT_NE(0, dm_create(name, table, true, out, sizeof(out)));
	log = klog_since(tag);
	ASSERT_NE(NULL, log);
	EXPECT_NE(NULL, strstr(log, "bit 20 (x\\x0aFAKE-LOG-LINE: forged)"))
		TH_LOG("%s", log);
	for (line = strtok_r(log, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		EXPECT_EQ(NULL, strstr(line, "] FAKE-LOG-LINE")) TH_LOG("%s", line);
	free(log);
	dm_remove(name);
	loop_detach(&lfd);
}

FIXTURE_SETUP(corrupt)
{
	struct record rec;

	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "corrupt", variant->name);
	dm_remove(self->name);
	ASSERT_TRUE(manifest_find("corrupt.list", variant->name, 0, 5, &rec));
	ASSERT_EQ(5, rec.n);
	image_path(self->path, sizeof(self->path), rec.f[1]);
	self->bad = strtoull(rec.f[2], NULL, 0);
	self->good = strtoull(rec.f[3], NULL, 0);
	snprintf(self->good_md5, sizeof(self->good_md5), "%s", rec.f[4]);
}

FIXTURE_TEARDOWN(corrupt)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

static int pread_sector(int fd, void *buf, u64 off)
{
	ssize_t r = pread(fd, buf, SECTOR, off);

	if (r < 0)
		return -errno;
	return r == SECTOR ? 0 : -ENODATA;
}

/*
 * The header is valid, so the table loads; the sector over the bad entry
 * fails with EIO (twice: nothing is cached as good), its neighbour reads
 * right, the error counter moves, and the device comes down cleanly.
 */
TEST_F_TIMEOUT(corrupt, eio, 120)
{
	char table[1024], out[OUT_MAX], dev[256], sum[33], info[OUT_MAX];
	struct dm_status st;
	u8 *buf = alloc_aligned(4096);
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, run_cmd(info, sizeof(info), (char *)helper(), "info",
			     self->path)) TH_LOG("%s", info);
	self->lfd = loop_attach(self->path, self->loop, sizeof(self->loop));
	ASSERT_LE(0, self->lfd);
	ASSERT_EQ(0, run_cmd2(table, sizeof(table), out, sizeof(out),
			      (char *)helper(), "table", self->path, self->loop))
		TH_LOG("%s %s", table, out);
	chomp(table);
	ASSERT_EQ(0, dm_create(self->name, table, true, out, sizeof(out)))
		TH_LOG("%s", out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	fd = open(dev, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);

	EXPECT_EQ(-EIO, pread_sector(fd, buf, self->bad))
		TH_LOG("read at %llu", (unsigned long long)self->bad);
	memset(buf, 0, SECTOR);
	EXPECT_EQ(0, pread_sector(fd, buf, self->good))
		TH_LOG("read at %llu", (unsigned long long)self->good);
	md5_buf(buf, SECTOR, sum);
	EXPECT_STREQ(self->good_md5, sum);
	EXPECT_EQ(-EIO, pread_sector(fd, buf, self->bad));
	/* A read spanning good and bad sectors fails as a whole. */
	if (self->bad >= 4096) {
		EXPECT_NE(0, pread_full(fd, buf, 4096, self->bad & ~4095ULL));
	}
	EXPECT_EQ(0, pread_sector(fd, buf, self->good));
	close(fd);

	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_LE(2, st.io_errors) TH_LOG("%s", out);
	ASSERT_TRUE(dm_remove(self->name));
}

/*
 * Corruption is logged.  The log is rate limited (dm's limit is shared by
 * all dm devices), so wait out the window of earlier tests first.
 */
FIXTURE(logging) {
	char name[128];
	int lfd;
};

FIXTURE_SETUP(logging)
{
	self->lfd = -1;
	dm_name(self->name, sizeof(self->name), "logging", "a");
	dm_remove(self->name);
}

FIXTURE_TEARDOWN(logging)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
}

TEST_F_TIMEOUT(logging, corruption_logged, 60)
{
	char table[1024], out[OUT_MAX], dev[256], path[PATH_MAX], tag[128];
	char loop[64], *log;
	struct record rec;
	u8 *buf = alloc_aligned(4096);
	u64 bad;
	int fd;

	ASSERT_TRUE(manifest_find("corrupt.list", LOGGED_CORRUPT_IMAGE, 0, 5,
				  &rec));
	image_path(path, sizeof(path), rec.f[1]);
	bad = strtoull(rec.f[2], NULL, 0);
	self->lfd = loop_attach(path, loop, sizeof(loop));
	ASSERT_LE(0, self->lfd);
	ASSERT_EQ(0, run_cmd2(table, sizeof(table), out, sizeof(out),
			      (char *)helper(), "table", path, loop))
		TH_LOG("%s %s", table, out);
	chomp(table);
	ASSERT_EQ(0, dm_create(self->name, table, true, out, sizeof(out)))
		TH_LOG("%s", out);
	sleep(6);
	kmsg_mark(tag, sizeof(tag), "logging");
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	fd = open(dev, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EIO, pread_sector(fd, buf, bad));
	close(fd);
	log = klog_since(tag);
	ASSERT_NE(NULL, log);
	EXPECT_NE(NULL, strstr(log, "imgfmt")) TH_LOG("kernel log:\n%s", log);
	free(log);
}

/* ----------------------------------------------------------------- last */

/* ---------------------------------------------- 4 KiB logical sectors */

/*
 * Images whose pieces are finer than 4 KiB (512-byte subclusters, grains
 * at odd sectors, compressed streams at any byte) on a loop device with
 * 4 KiB logical blocks (losetup -b 4096) read exactly as QEMU reads them,
 * with no failed read: such pieces are copied, never remapped unaligned.
 */
FIXTURE(sector4k) {
	struct good_image img;
	char copy[PATH_MAX];
	char loop[64];
	int lfd;
	char name[128];
};

FIXTURE_VARIANT(sector4k) {
	const char *name;
};

FIXTURE_VARIANT_ADD(sector4k, xl2_c16k) { .name = "xl2_c16k" };
FIXTURE_VARIANT_ADD(sector4k, xl2_c32k) { .name = "xl2_c32k" };
FIXTURE_VARIANT_ADD(sector4k, v3_c4k) { .name = "v3_c4k" };
FIXTURE_VARIANT_ADD(sector4k, comp_zlib_c64k) { .name = "comp_zlib_c64k" };
FIXTURE_VARIANT_ADD(sector4k, comp_zstd_xl2_c32k) { .name = "comp_zstd_xl2_c32k" };
FIXTURE_VARIANT_ADD(sector4k, qcow1_c16k_l2e1024) { .name = "qcow1_c16k_l2e1024" };
FIXTURE_VARIANT_ADD(sector4k, vmdk_mono_8m) { .name = "vmdk_mono_8m" };
FIXTURE_VARIANT_ADD(sector4k, vmdk_stream_8m) { .name = "vmdk_stream_8m" };
FIXTURE_VARIANT_ADD(sector4k, vmdk_cowd_g8k) { .name = "vmdk_cowd_g8k" };

/* Copy src to dst, zero-padded to a multiple of 4 KiB (as QEMU reads). */
static int copy_padded(const char *src, const char *dst)
{
	static u8 buf[1 << 16];
	int in = open(src, O_RDONLY), out = -1, r = -1;
	ssize_t n;
	off_t size = 0;

	if (in < 0)
		return -1;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0)
		goto done;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, n) != n)
			goto done;
		size += n;
	}
	if (n == 0 && !ftruncate(out, (size + 4095) & ~(off_t)4095))
		r = 0;
done:
	if (out >= 0)
		close(out);
	close(in);
	return r;
}

FIXTURE_SETUP(sector4k)
{
	self->lfd = -1;
	self->copy[0] = '\0';
	dm_name(self->name, sizeof(self->name), "4k", variant->name);
	dm_remove(self->name);
	ASSERT_TRUE(good_lookup(variant->name, &self->img))
		TH_LOG("%s not in good.list", variant->name);
	if (self->img.vsize % 4096)
		SKIP(return, "virtual size not a multiple of 4 KiB");
	snprintf(self->copy, sizeof(self->copy), "/tmp/ift-4k-%s",
		 variant->name);
	ASSERT_EQ(0, copy_padded(self->img.path, self->copy));
	self->lfd = loop_attach_bs(self->copy, self->loop, sizeof(self->loop),
				   4096);
	ASSERT_LE(0, self->lfd) TH_LOG("4 KiB loop over %s: %s", self->copy,
				       strerror(errno));
}

FIXTURE_TEARDOWN(sector4k)
{
	dm_remove(self->name);
	loop_detach(&self->lfd);
	if (self->copy[0])
		unlink(self->copy);
}

TEST_F_TIMEOUT(sector4k, read, 300)
{
	char table[512], out[OUT_MAX], dev[256];
	struct dev_read res, whole;
	struct dm_status st;
	u64 len;

	snprintf(table, sizeof(table), "0 %llu imgfmt %s",
		 (unsigned long long)(self->img.vsize / SECTOR), self->loop);
	ASSERT_EQ(0, dm_create(self->name, table, true, out, sizeof(out)))
		TH_LOG("%s: %s", table, out);
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", self->name);
	dev_read_range(dev, 0, self->img.vsize, self->img.vsize, CHUNK, true,
		       &res);
	EXPECT_EQ(0, res.err) TH_LOG("read failed at %llu",
				     (unsigned long long)res.err_off);
	EXPECT_STREQ(self->img.md5, res.md5);
	/*
	 * Small reads too: every 4 KiB block of the first MiB on its own
	 * reads as the same MiB read in one piece (checked just above).
	 */
	len = self->img.vsize < (1 << 20) ? self->img.vsize : 1 << 20;
	dev_read_range(dev, 0, len, len, len, true, &whole);
	dev_read_range(dev, 0, len, len, 4096, true, &res);
	EXPECT_EQ(0, res.err) TH_LOG("4 KiB read failed at %llu",
				     (unsigned long long)res.err_off);
	EXPECT_STREQ(whole.md5, res.md5);
	ASSERT_TRUE(dm_get_status(self->name, &st, out, sizeof(out)));
	EXPECT_EQ(0, st.io_errors) TH_LOG("%s", out);
}

FIXTURE(final) {
	int unused;
};

FIXTURE_SETUP(final)
{
}

FIXTURE_TEARDOWN(final)
{
}

/* Nothing left behind by the tests above. */
TEST_F(final, no_leftovers)
{
	char out[OUT_MAX], path[PATH_MAX], backing[PATH_MAX];
	struct dirent *de;
	DIR *d;
	FILE *fp;

	ASSERT_EQ(0, run_cmd(out, sizeof(out), "dmsetup", "ls"));
	EXPECT_EQ(NULL, strstr(out, "ift_")) TH_LOG("dm devices left: %s", out);
	d = opendir("/sys/block");
	ASSERT_NE(NULL, d);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file",
			 de->d_name);
		fp = fopen(path, "r");
		if (!fp)
			continue;
		/* Nothing else in the VM uses loop devices. */
		if (!fgets(backing, sizeof(backing), fp))
			backing[0] = '\0';
		EXPECT_TRUE(false) TH_LOG("%s still bound to %s", de->d_name,
					  backing);
		fclose(fp);
	}
	closedir(d);
}

/* The kernel log holds no splat from anything the suite did. */
TEST_F(final, dmesg_clean)
{
	static const char *const bad[] = {
		"BUG:", "WARNING:", "Oops", "general protection", "KASAN",
		"UBSAN", "kernel BUG", "Call Trace",
	};
	char *log = klog_all(), *line, *save = NULL;
	unsigned int i;
	int hits = 0;

	ASSERT_NE(NULL, log);
	for (line = strtok_r(log, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		for (i = 0; i < ARRAY_SIZE(bad); i++) {
			if (strstr(line, bad[i])) {
				if (hits++ < 40)
					TH_LOG("%s", line);
				break;
			}
		}
	}
	free(log);
	EXPECT_EQ(0, hits);
}

TEST_HARNESS_MAIN
