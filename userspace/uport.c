// SPDX-License-Identifier: GPL-2.0-only
/*
 * The userspace host of the shared format code: memory for large tables,
 * notes and corruption reports on stderr and image devices read with
 * pread().
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "imgfmt_port.h"
#include "uhost.h"

void *imgfmt_alloc_large(size_t len)
{
	return malloc(len ? len : 1);
}

void *imgfmt_zalloc_large(size_t len)
{
	return calloc(1, len ? len : 1);
}

void imgfmt_free_large(void *p)
{
	free(p);
}

/* A note from the format code, one line on stderr. */
void imgfmt_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "imgfmt: %s\n", line);
}

/*
 * Corruption reports: each distinct line is printed once.  The lines seen
 * are remembered up to a bound; past it, one last line says that further
 * reports are dropped, so a badly damaged image cannot flood stderr.
 */
#define REPORT_MAX_SEEN		64
#define REPORT_LINE_MAX		256

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static char *report_seen[REPORT_MAX_SEEN];
static unsigned int report_nr_seen;
static bool report_suppressed;
static bool report_off;

void uport_set_corruption_reports(bool on)
{
	pthread_mutex_lock(&report_lock);
	report_off = !on;
	pthread_mutex_unlock(&report_lock);
}

static bool report_is_new(const char *line)
{
	unsigned int i;

	for (i = 0; i < report_nr_seen; i++)
		if (!strcmp(report_seen[i], line))
			return false;
	return true;
}

void imgfmt_report_corruption(const char *fmt_name, const char *what,
			      u64 where)
{
	char line[REPORT_LINE_MAX];

	/* The words of the kernel's report. */
	snprintf(line, sizeof(line), "imgfmt: %s: %s (virtual offset %llu)",
		 fmt_name ? fmt_name : "?", what ? what : "corruption",
		 (unsigned long long)where);

	pthread_mutex_lock(&report_lock);
	if (report_off || !report_is_new(line))
		goto out;
	if (report_nr_seen == REPORT_MAX_SEEN) {
		if (!report_suppressed)
			fputs("imgfmt: further corruption reports suppressed\n",
			      stderr);
		report_suppressed = true;
		goto out;
	}
	report_seen[report_nr_seen] = strdup(line);
	if (report_seen[report_nr_seen])
		report_nr_seen++;
	fprintf(stderr, "%s\n", line);
out:
	pthread_mutex_unlock(&report_lock);
}

/* What dev->priv points at for devices opened here. */
struct uport_file {
	int fd;
};

/* Reads larger than this are split; pread() takes at most SSIZE_MAX. */
#define UPORT_READ_CHUNK	BIT(30)

static int uport_dev_pread(struct imgfmt_dev *dev, u64 off, void *buf,
			   size_t len)
{
	struct uport_file *f = dev->priv;
	char *p = buf;

	if (off > (u64)INT64_MAX || len > (u64)INT64_MAX - off)
		return -EIO;
	while (len) {
		size_t want = min_t(size_t, len, UPORT_READ_CHUNK);
		ssize_t n = pread(f->fd, p, want, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* the file shrank under us */
		p += n;
		off += (u64)n;
		len -= (size_t)n;
	}
	return 0;
}

/* The size of an open file or block device, in bytes. */
static int uport_fd_size(int fd, u64 *size)
{
	struct stat st;
	u64 bytes;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (u64)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -ENOTBLK;
	if (ioctl(fd, BLKGETSIZE64, &bytes))
		return -errno;
	*size = bytes;
	return 0;
}

int uport_dev_open_fd(struct imgfmt_dev *dev, int fd)
{
	struct uport_file *f;
	u64 size = 0;
	int rc;

	memset(dev, 0, sizeof(*dev));
	rc = uport_fd_size(fd, &size);
	if (rc)
		return rc;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = fd;
	dev->size = size;
	dev->read = uport_dev_pread;
	dev->priv = f;
	return 0;
}

static int uport_dev_pwrite(struct imgfmt_dev *dev, u64 off, const void *buf,
			    size_t len)
{
	const struct uport_file *f = dev->priv;
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = pwrite(f->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (u64)n;
		len -= (size_t)n;
	}
	return 0;
}

static int uport_dev_fdatasync(struct imgfmt_dev *dev)
{
	const struct uport_file *f = dev->priv;

	return fdatasync(f->fd) ? -errno : 0;
}

static void uport_dev_punch(struct imgfmt_dev *dev, u64 off, u64 len)
{
	/* Advisory: a file system without holes keeps the space. */
	(void)fallocate(uport_dev_fd(dev), FALLOC_FL_PUNCH_HOLE |
			FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static int uport_dev_zero(struct imgfmt_dev *dev, u64 off, u64 len)
{
	/* A hole reads as zeroes; on a block device this is write-zeroes. */
	if (fallocate(uport_dev_fd(dev), FALLOC_FL_PUNCH_HOLE |
		      FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return -errno;
	return 0;
}

int uport_dev_make_writable(struct imgfmt_dev *dev)
{
	int fl = fcntl(uport_dev_fd(dev), F_GETFL);

	if (fl < 0)
		return -errno;
	if ((fl & O_ACCMODE) != O_RDWR)
		return -EBADF;
	dev->write = uport_dev_pwrite;
	dev->flush = uport_dev_fdatasync;
	dev->discard = uport_dev_punch;
	dev->zero = uport_dev_zero;
	dev->write_align = 512;
	return 0;
}

int uport_dev_open(struct imgfmt_dev *dev, const char *path)
{
	int fd, rc;

	memset(dev, 0, sizeof(*dev));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	rc = uport_dev_open_fd(dev, fd);
	if (rc)
		close(fd);
	return rc;
}

void uport_dev_close(struct imgfmt_dev *dev)
{
	struct uport_file *f = dev->priv;

	if (!f)
		return;
	close(f->fd);
	free(f);
	dev->priv = NULL;
	dev->read = NULL;
	dev->write = NULL;
	dev->flush = NULL;
	dev->discard = NULL;
	dev->zero = NULL;
}

int uport_dev_fd(const struct imgfmt_dev *dev)
{
	const struct uport_file *f = dev->priv;

	return f ? f->fd : -1;
}
