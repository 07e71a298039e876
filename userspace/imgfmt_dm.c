// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt attach and detach.
 *
 * attach puts every file of the disk on a read-only loop device and creates
 * one read-only device-mapper device with one target per piece: imgfmt
 * over an image file, linear over raw data, zero.  A loop device ends at
 * the file's last whole sector; an image whose size is not a multiple of
 * 512 is therefore mapped through a helper device NAME-image, a linear
 * concatenation of its loop device and a one-sector loop device over
 * TAIL_DIR/NAME-image.tail, which holds the last partial sector padded with
 * zeroes.  The devices attach makes carry the dm uuid "IMGFMT-<their name>",
 * by which detach knows what to remove: the device, the helper devices
 * under it, their tail files and the loop devices (which clear themselves
 * once device-mapper lets go of them).
 *
 * Device nodes: when udev runs, its rules create /dev/mapper/NAME and we
 * wait for them through a libdevmapper cookie.  Without udev (a minimal VM,
 * DM_DISABLE_UDEV=1) libdevmapper creates and removes the nodes itself.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <linux/major.h>
#include <libdevmapper.h>

#include "imgfmt.h"
#include "lock.h"
#include "table_args.h"
#include "partitions.h"

_Static_assert(IMGFMT_DM_NAME_LEN == DM_NAME_LEN, "DM_NAME_LEN changed");
_Static_assert(IMGFMT_DM_UUID_LEN == DM_UUID_LEN, "DM_UUID_LEN changed");
/* The uuid limit is the tighter one: derived names fit DM_NAME_LEN too. */
_Static_assert(IMGFMT_NAME_MAX + IMGFMT_NAME_SUFFIX_MAX < DM_NAME_LEN,
	       "derived names do not fit DM_NAME_LEN");

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))
#define SECTOR_BYTES		512
#define TARGET_TYPE		"imgfmt"
#define UUID_PREFIX		IMGFMT_UUID_PREFIX
/* Where the zero-padded last sectors of odd-sized images live. */
#define TAIL_DIR		"/run/imgfmt"
/* Other processes may grab the free loop device we were offered. */
#define LOOP_TRIES		16
/* How long to wait for a new /dev/loopN node to appear. */
#define LOOP_NODE_TRIES		50
#define LOOP_NODE_WAIT_MS	20
/* Files open besides those counted: stdio, device-mapper, loop-control. */
#define FILE_MARGIN		64
/* Removal is retried while the device is busy, for about two seconds. */
#define REMOVE_TRIES		20
#define REMOVE_WAIT_MS		100

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {
		.tv_sec = ms / 1000,
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* libdevmapper messages */

/* The first error libdevmapper logged since dm_error_reset(). */
static char dm_error[512];

__printf(5, 6)
static void dm_log(int level, const char *file, int line, int dm_errno,
		   const char *f, ...);

/* Keep errors for our single error line; drop everything else. */
static void dm_log(int level, const char *file, int line, int dm_errno,
		   const char *f, ...)
{
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno;
	if ((level & 7) > 3 || dm_error[0])	/* 3: libdm's _LOG_ERR */
		return;
	va_start(ap, f);
	vsnprintf(dm_error, sizeof(dm_error), f, ap);
	va_end(ap);
}

static void dm_error_reset(void)
{
	dm_error[0] = '\0';
}

static const char *dm_error_text(void)
{
	static const char prefix[] = "device-mapper: ";

	if (!dm_error[0])
		return "unknown libdevmapper error";
	if (!strncmp(dm_error, prefix, sizeof(prefix) - 1))
		return dm_error + sizeof(prefix) - 1;
	return dm_error;
}

/* udev */

/* Like libdevmapper, any value of DM_DISABLE_UDEV turns udev off. */
static bool udev_running(void)
{
	if (getenv("DM_DISABLE_UDEV"))
		return false;
	return access("/run/udev/control", F_OK) == 0;
}

/* Choose how device nodes get made; returns the task's udev flags. */
static uint16_t dm_udev_flags(void)
{
	if (udev_running())
		return 0;
	/* Nobody will answer a cookie: libdevmapper makes the nodes. */
	dm_udev_set_sync_support(0);
	return DM_UDEV_DISABLE_DM_RULES_FLAG |
	       DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG;
}

/* Run a task that adds or removes a device node; non-zero on success. */
static int dm_run_with_cookie(struct dm_task *dmt)
{
	uint32_t cookie = 0;
	int ok;

	if (!dm_task_set_cookie(dmt, &cookie, dm_udev_flags()))
		return 0;
	ok = dm_task_run(dmt);
	/* Waits for udev, then creates or removes nodes udev did not. */
	(void)dm_udev_wait(cookie);
	return ok;
}

/* device-mapper queries */

/* Is there a device-mapper device called name?  1, 0 or FAIL. */
static int dm_device_exists(const char *name)
{
	struct dm_task *dmt;
	struct dm_info info;
	int rc;

	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_INFO);
	if (!dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt) &&
	    dm_task_get_info(dmt, &info))
		rc = info.exists ? 1 : 0;
	else
		rc = fail("cannot talk to device-mapper: %s",
			  dm_error_text());
	dm_task_destroy(dmt);
	return rc;
}

static bool versions_have(struct dm_versions *v, const char *type)
{
	struct dm_versions *last;

	do {
		if (!strcmp(v->name, type))
			return true;
		last = v;
		v = (struct dm_versions *)((char *)v + v->next);
	} while (v != last);
	return false;
}

/* Does the kernel know the target type?  1, 0, or -1 when unknown. */
static int dm_has_target(const char *type)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_LIST_VERSIONS);
	struct dm_versions *v;
	int found = -1;

	if (!dmt)
		return -1;
	if (dm_task_run(dmt)) {
		v = dm_task_get_versions(dmt);
		if (v)
			found = versions_have(v, type);
	}
	dm_task_destroy(dmt);
	return found;
}

/* Loop devices */

struct loop {
	int fd;
	dev_t devt;
	char path[PATH_MAX];
};

/*
 * Open the loop device node at lo->path, waiting for it to appear; for
 * writing when rw (a loop bound through a read-only open is read-only).
 */
static int loop_open_node(struct loop *lo, bool wait, bool rw)
{
	struct stat st;
	int i;

	for (i = 0; i < LOOP_NODE_TRIES; i++) {
		lo->fd = open(lo->path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (lo->fd >= 0 || errno != ENOENT || !wait)
			break;
		sleep_ms(LOOP_NODE_WAIT_MS);
	}
	if (lo->fd < 0)
		return fail("cannot open %s: %s", lo->path, strerror(errno));
	if (fstat(lo->fd, &st) || !S_ISBLK(st.st_mode) ||
	    major(st.st_rdev) != LOOP_MAJOR) {
		close(lo->fd);
		lo->fd = -1;
		return fail("%s is not a loop device", lo->path);
	}
	lo->devt = st.st_rdev;
	return 0;
}

/* The name loop devices show for their backing file. */
static void loop_fill_info(struct loop_info64 *info, const char *file,
			   __u32 flags)
{
	char *abs = realpath(file, NULL);
	const char *name = abs ? abs : file;
	size_t len = strlen(name);

	memset(info, 0, sizeof(*info));
	info->lo_flags = flags;
	if (len >= LO_NAME_SIZE)
		len = LO_NAME_SIZE - 1;
	memcpy(info->lo_file_name, name, len);
	free(abs);
}

static int loop_configure(int lfd, int image_fd, const char *file, bool rw)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (__u32)image_fd;
	loop_fill_info(&cfg.info, file,
		       (rw ? 0 : LO_FLAGS_READ_ONLY) | LO_FLAGS_AUTOCLEAR);
	return ioctl(lfd, LOOP_CONFIGURE, &cfg) ? -errno : 0;
}

/* Kernels before 5.8: the loop is read-only when the image fd is. */
static int loop_set_fd(int lfd, int image_fd, const char *file)
{
	struct loop_info64 info;
	int rc;

	if (ioctl(lfd, LOOP_SET_FD, image_fd))
		return -errno;
	loop_fill_info(&info, file, LO_FLAGS_AUTOCLEAR);
	if (!ioctl(lfd, LOOP_SET_STATUS64, &info))
		return 0;
	rc = -errno;
	ioctl(lfd, LOOP_CLR_FD, 0);
	return rc;
}

/* Bind the loop; -EROFS when it did not get the mode asked for. */
static int loop_bind(int lfd, int image_fd, const char *file, bool rw)
{
	struct loop_info64 info;
	int rc;

	rc = loop_configure(lfd, image_fd, file, rw);
	if (rc == -EINVAL || rc == -ENOTTY)
		rc = loop_set_fd(lfd, image_fd, file);
	if (rc)
		return rc;
	if (!ioctl(lfd, LOOP_GET_STATUS64, &info) &&
	    !(info.lo_flags & LO_FLAGS_READ_ONLY) == rw)
		return 0;
	ioctl(lfd, LOOP_CLR_FD, 0);
	return -EROFS;
}

/* Give up a loop device attached by loop_attach(). */
static void loop_detach(struct loop *lo)
{
	if (lo->fd < 0)
		return;
	ioctl(lo->fd, LOOP_CLR_FD, 0);
	close(lo->fd);
	lo->fd = -1;
}

/* Bind a free loop device to one attempt; -EBUSY when we lost a race. */
static int loop_try_attach(int ctl, int image_fd, const char *file,
			   bool rw, struct loop *lo)
{
	int nr, rc;

	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	if (nr < 0)
		return fail("cannot get a free loop device: %s",
			    strerror(errno));
	snprintf(lo->path, sizeof(lo->path), "/dev/loop%d", nr);
	rc = loop_open_node(lo, true, rw);
	if (rc)
		return rc;
	rc = loop_bind(lo->fd, image_fd, file, rw);
	if (!rc)
		return 0;
	close(lo->fd);
	lo->fd = -1;
	if (rc == -EBUSY)
		return rc;
	if (rc == -EROFS)
		return fail("%s did not become %s", lo->path,
			    rw ? "writable" : "read-only");
	return fail("cannot set up %s: %s", lo->path, strerror(-rc));
}

/*
 * Attach the image read-only (or read-write: rw) to a free loop device
 * that clears itself once its last user (the device-mapper device) closes
 * it.  lo->fd stays open: closing it before device-mapper opens the loop
 * would clear it.
 */
static int loop_attach(int image_fd, const char *file, bool rw,
		       struct loop *lo)
{
	int ctl, i, rc = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return fail("cannot open /dev/loop-control: %s",
			    strerror(errno));
	for (i = 0; i < LOOP_TRIES && rc == -EBUSY; i++)
		rc = loop_try_attach(ctl, image_fd, file, rw, lo);
	close(ctl);
	if (rc == -EBUSY)
		return fail("no free loop device: other programs kept taking them");
	return rc;
}

/* Open the loop device dev, found through sysfs. */
static int loop_open_devt(dev_t dev, struct loop *lo)
{
	char link[64], target[256];
	const char *base;
	ssize_t n;

	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(dev),
		 minor(dev));
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0 || n == sizeof(target) - 1)
		return fail("cannot find loop device %u:%u: %s", major(dev),
			    minor(dev),
			    n < 0 ? strerror(errno) : "sysfs link too long");
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	snprintf(lo->path, sizeof(lo->path), "/dev/%s", base);
	if (loop_open_node(lo, false, false))
		return FAIL;
	if (lo->devt != dev) {
		close(lo->fd);
		lo->fd = -1;
		return fail("%s is not loop device %u:%u", lo->path,
			    major(dev), minor(dev));
	}
	return 0;
}

/* Remove a device-mapper device, retrying while it is busy. */
static int dm_remove(const char *name)
{
	struct dm_task *dmt;
	int i, ok, err = 0;

	for (i = 0; i < REMOVE_TRIES; i++) {
		if (i)
			sleep_ms(REMOVE_WAIT_MS);
		dm_error_reset();
		dmt = dm_task_create(DM_DEVICE_REMOVE);
		if (!dmt)
			return fail("cannot talk to device-mapper: %s",
				    dm_error_text());
		ok = dm_task_set_name(dmt, name) && dm_run_with_cookie(dmt);
		err = ok ? 0 : dm_task_get_errno(dmt);
		dm_task_destroy(dmt);
		if (ok)
			return 0;
		if (err != EBUSY)
			break;
	}
	if (err == EBUSY)
		return fail("cannot remove '%s': it is in use (mounted or open)",
			    name);
	return fail("cannot remove '%s': %s", name, dm_error_text());
}

/* Open file limit */

int raise_file_limit(unsigned int nr_files, const char *what)
{
	rlim_t want = (rlim_t)nr_files + FILE_MARGIN;
	struct rlimit rl;
	rlim_t had;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return fail("cannot get the open file limit: %s",
			    strerror(errno));
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return 0;
	had = rl.rlim_cur;
	rl.rlim_cur = want;
	/* Needs CAP_SYS_RESOURCE; the kernel caps it at fs.nr_open. */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		rl.rlim_max = want;
	if (!setrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	return fail("%s needs %llu open files (%u of its own), but the open file limit (ulimit -n) is %llu and cannot be raised: %s",
		    what, (unsigned long long)want, nr_files,
		    (unsigned long long)had, strerror(errno));
}

/* Tables */

static const char *const piece_targets[] = {
	[DM_PIECE_IMGFMT] = TARGET_TYPE,
	[DM_PIECE_LINEAR] = "linear",
	[DM_PIECE_ZERO] = "zero",
};

const char *dm_piece_target(const struct dm_piece *p)
{
	if ((unsigned int)p->kind >= ARRAY_SIZE(piece_targets))
		return "error";
	return piece_targets[p->kind];
}

/* Append the printf result to *buf (of *len bytes): false when out of memory. */
static bool buf_append(char **buf, size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *grown;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return false;
	grown = realloc(*buf, *len + (size_t)n + 1);
	if (!grown)
		return false;
	*buf = grown;
	va_start(ap, fmt);
	vsnprintf(*buf + *len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	*len += (size_t)n;
	return true;
}

unsigned int dm_piece_units(const struct dm_piece *p)
{
	unsigned int i, n;

	if (p->kind == DM_PIECE_ZERO)
		return 0;
	n = 1 + !!p->data;
	for (i = 0; i < p->nr_lower; i++)
		n += dm_piece_units(&p->lower[i]);
	return n;
}

/* Blank-separated words of s. */
static unsigned int count_words(const char *s)
{
	unsigned int n = 0;
	bool in_word = false;

	for (; *s; s++) {
		if (*s == ' ') {
			in_word = false;
		} else if (!in_word) {
			in_word = true;
			n++;
		}
	}
	return n;
}

/*
 * One layer: "<dev> <#opts> <opt>... [data_dev=<dev>]"; the count may be
 * left out (only the top's, when it is 0 and nothing follows).  *devs is
 * moved past the devices it used.
 */
static bool layer_params(char **buf, size_t *len, const struct dm_piece *p,
			 char *const **devs, bool count_optional)
{
	unsigned int n = count_words(p->opts) + !!p->data;
	bool ok;

	ok = buf_append(buf, len, "%s%s", *len ? " " : "", (*devs)[0]);
	if (ok && (n || !count_optional))
		ok = buf_append(buf, len, " %u%s%s", n, *p->opts ? " " : "",
				p->opts);
	if (ok && p->data)
		ok = buf_append(buf, len, " data_dev=%s", (*devs)[1]);
	*devs += 1 + !!p->data;
	return ok;
}

char *dm_piece_params(const struct dm_piece *p, char *const *devs)
{
	size_t len = 0;
	char *buf = NULL;
	unsigned int i;
	bool ok;

	switch (p->kind) {
	case DM_PIECE_IMGFMT:
		ok = layer_params(&buf, &len, p, &devs, !p->nr_lower);
		if (ok && p->nr_lower)
			ok = buf_append(&buf, &len, " %u", p->nr_lower);
		for (i = 0; ok && i < p->nr_lower; i++)
			ok = layer_params(&buf, &len, &p->lower[i], &devs,
					  false);
		break;
	case DM_PIECE_LINEAR:
		ok = buf_append(&buf, &len, "%s %llu", devs[0], p->offset);
		break;
	default:
		ok = buf_append(&buf, &len, "%s", "");
		break;
	}
	if (!ok) {
		free(buf);
		fail("out of memory");
		return NULL;
	}
	return buf;
}

/* A table being built for a new device. */
struct table {
	struct dm_task *dmt;
	unsigned long long next;	/* where the next target starts */
	bool ok;
	const char *types[ARRAY_SIZE(piece_targets)];	/* types in use */
};

/* A table for the device name: read-only unless rw. */
static int table_begin(struct table *t, const char *name, bool rw)
{
	char uuid[DM_UUID_LEN];

	memset(t, 0, sizeof(*t));
	dm_error_reset();
	t->dmt = dm_task_create(DM_DEVICE_CREATE);
	if (!t->dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	/* check_attach_name() leaves room; a cut uuid would not be ours. */
	if ((size_t)snprintf(uuid, sizeof(uuid), "%s%s", UUID_PREFIX, name) >=
	    sizeof(uuid)) {
		dm_task_destroy(t->dmt);
		t->dmt = NULL;
		return fail("device name '%s' is too long for its uuid", name);
	}
	t->ok = dm_task_set_name(t->dmt, name) &&
		dm_task_set_uuid(t->dmt, uuid) &&
		(rw || dm_task_set_ro(t->dmt));
	return 0;
}

static void table_note_type(struct table *t, const char *type)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t->types); i++) {
		if (t->types[i] && !strcmp(t->types[i], type))
			return;
		if (!t->types[i]) {
			t->types[i] = type;
			return;
		}
	}
}

static void table_add(struct table *t, unsigned long long sectors,
		      const char *type, const char *params)
{
	t->ok = t->ok && dm_task_add_target(t->dmt, t->next, sectors, type,
					     params);
	t->next += sectors;
	table_note_type(t, type);
}

static int dm_create_failed(const char *name, const struct table *t)
{
	char why[sizeof(dm_error)];
	size_t i;

	snprintf(why, sizeof(why), "%s", dm_error_text());
	if (dm_device_exists(name) > 0)
		return fail("a device-mapper device named '%s' appeared meanwhile: %s",
			    name, why);
	for (i = 0; i < ARRAY_SIZE(t->types) && t->types[i]; i++) {
		if (dm_has_target(t->types[i]))
			continue;
		if (!strcmp(t->types[i], TARGET_TYPE))
			return fail("the kernel has no %s target (is dm-imgfmt available?): %s",
				    TARGET_TYPE, why);
		return fail("the kernel has no %s target (is dm-%s loaded?): %s",
			    t->types[i], t->types[i], why);
	}
	return fail("device-mapper refused the table (see dmesg): %s", why);
}

/* Create the device the table describes. */
static int table_create(struct table *t, const char *name)
{
	int ok = t->ok && dm_run_with_cookie(t->dmt);

	dm_task_destroy(t->dmt);
	t->dmt = NULL;
	return ok ? 0 : dm_create_failed(name, t);
}

/* The dm_info of the device-mapper device name: 0, or 1 when it is not. */
static int dm_query_info(const char *name, struct dm_info *info)
{
	struct dm_task *dmt;
	int ok;

	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_INFO);
	if (!dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	ok = dm_task_set_name(dmt, name) && dm_task_run(dmt) &&
	     dm_task_get_info(dmt, info) && info->exists;
	dm_task_destroy(dmt);
	return ok ? 0 : 1;
}

/* The device number of the device-mapper device name. */
static int dm_device_devt(const char *name, dev_t *devt)
{
	struct dm_info info;
	int rc = dm_query_info(name, &info);

	if (rc > 0)
		return fail("cannot find the new device '%s': %s", name,
			    dm_error_text());
	if (!rc)
		*devt = makedev(info.major, info.minor);
	return rc;
}

/* attach */

/* What attach has set up so far, undone when a later step fails. */
struct attach {
	const char *name;
	bool rw;			/* the top device is read-write */
	struct loop *loops;		/* bound and held open */
	unsigned int nr_loops;
	char (*helpers)[DM_NAME_LEN];	/* helper devices created */
	unsigned int nr_helpers;
	char (*tails)[PATH_MAX];	/* tail files written */
	unsigned int nr_tails;
	/*
	 * Per unit (each piece, then its lower layers, piece after piece):
	 * the device it maps.
	 */
	dev_t *devs;
	unsigned int nr_units;
};

/* Pieces and their lower layers: each needs a device of its own. */
static unsigned int count_units(const struct dm_piece *pieces,
				unsigned int nr)
{
	unsigned int i, n = 0;

	for (i = 0; i < nr; i++)
		n += dm_piece_units(&pieces[i]);
	return n;
}

static int attach_init(struct attach *a, const char *name,
		       const struct dm_piece *pieces, unsigned int nr_pieces)
{
	unsigned int nr = count_units(pieces, nr_pieces);

	memset(a, 0, sizeof(*a));
	a->name = name;
	a->nr_units = nr;
	a->loops = calloc(2 * (size_t)nr, sizeof(*a->loops));
	a->helpers = calloc(nr, sizeof(*a->helpers));
	a->tails = calloc(nr, sizeof(*a->tails));
	a->devs = calloc(nr, sizeof(*a->devs));
	if (!a->loops || !a->helpers || !a->tails || !a->devs)
		return fail("out of memory");
	/* Each unit's file and up to two loops: its own and a tail's. */
	return raise_file_limit(3 * nr, name);
}

static void attach_free(struct attach *a)
{
	free(a->loops);
	free(a->helpers);
	free(a->tails);
	free(a->devs);
}

/* Give up everything: on failure, before the top device exists. */
static void attach_undo(struct attach *a)
{
	unsigned int i;

	/* The first error is the one reported: ignore these. */
	for (i = a->nr_helpers; i--;)
		(void)dm_remove(a->helpers[i]);
	for (i = a->nr_loops; i--;)
		loop_detach(&a->loops[i]);
	for (i = 0; i < a->nr_tails; i++)
		unlink(a->tails[i]);
}

/* Success: the device-mapper devices hold the loops now. */
static void attach_release(struct attach *a)
{
	unsigned int i;

	for (i = 0; i < a->nr_loops; i++)
		close(a->loops[i].fd);
}

static int attach_loop(struct attach *a, int fd, const char *path, bool rw,
		       dev_t *devt)
{
	struct loop *lo = &a->loops[a->nr_loops];
	int rc;

	lo->fd = -1;
	rc = loop_attach(fd, path, rw, lo);
	if (rc)
		return rc;
	a->nr_loops++;
	*devt = lo->devt;
	return 0;
}

/*
 * The last partial sector of the image, zero-padded to a whole one, in a
 * file of its own under TAIL_DIR: reads past the end of an image file are
 * zeroes for QEMU too.
 */
static int write_tail(const struct dm_piece *p, const char *tail)
{
	char buf[SECTOR_BYTES] = { 0 };
	size_t len = p->file_size % SECTOR_BYTES;
	off_t off = (off_t)(p->file_size - len);
	int fd, rc = 0;

	if (pread(p->fd, buf, len, off) != (ssize_t)len)
		return fail("cannot read the end of %s: %s", p->name,
			    strerror(errno ? errno : EIO));
	if (mkdir(TAIL_DIR, 0700) && errno != EEXIST)
		return fail("cannot create %s: %s", TAIL_DIR, strerror(errno));
	fd = open(tail, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return fail("cannot create %s: %s", tail, strerror(errno));
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		rc = fail("cannot write %s: %s", tail,
			  strerror(errno ? errno : EIO));
	if (close(fd) && !rc)
		rc = fail("cannot write %s: %s", tail, strerror(errno));
	return rc;
}

/* Put the tail file on a loop device of one sector. */
static int attach_tail(struct attach *a, const struct dm_piece *p,
		       const char *helper, dev_t *devt)
{
	char *tail = a->tails[a->nr_tails];
	int fd, rc;

	snprintf(tail, PATH_MAX, "%s/%s.tail", TAIL_DIR, helper);
	errno = 0;
	rc = write_tail(p, tail);
	a->nr_tails++;
	if (rc)
		return rc;
	fd = open(tail, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return fail("cannot open %s: %s", tail, strerror(errno));
	rc = attach_loop(a, fd, tail, false, devt);
	close(fd);
	return rc;
}

/* "NAME-image", or "NAME-imageN" for unit N (from 1) of several. */
static int helper_name(const struct attach *a, unsigned int i,
		       unsigned int nr, char *buf, size_t size)
{
	int n;

	if (nr == 1)
		n = snprintf(buf, size, "%s-image", a->name);
	else
		n = snprintf(buf, size, "%s-image%u", a->name, i + 1);
	if (n < 0 || (size_t)n >= size)
		return usage_fail("device name '%s' leaves no room for its helper device's name: use a shorter --name",
				  a->name);
	if (dm_device_exists(buf) > 0)
		return fail("a device-mapper device named '%s' already exists",
			    buf);
	return 0;
}

/*
 * Loop devices end at the last whole sector, hiding the tail of an image
 * whose size is not a multiple of 512.  Such an image is mapped through
 * a helper device: the whole sectors, then the tail padded with zeroes.
 */
static int attach_padded(struct attach *a, const struct dm_piece *p,
			 unsigned int i, unsigned int nr, dev_t *devt)
{
	unsigned long long whole = p->file_size / SECTOR_BYTES;
	char *helper = a->helpers[a->nr_helpers];
	char params[64];
	struct table t;
	dev_t image = 0, tail;
	int rc;

	rc = helper_name(a, i, nr, helper, DM_NAME_LEN);
	if (!rc && whole)
		rc = attach_loop(a, p->fd, p->path, false, &image);
	if (!rc)
		rc = attach_tail(a, p, helper, &tail);
	if (!rc)
		rc = table_begin(&t, helper, false);
	if (rc)
		return rc;
	if (whole) {
		snprintf(params, sizeof(params), "%u:%u 0", major(image),
			 minor(image));
		table_add(&t, whole, "linear", params);
	}
	snprintf(params, sizeof(params), "%u:%u 0", major(tail), minor(tail));
	table_add(&t, 1, "linear", params);
	rc = table_create(&t, helper);
	if (rc)
		return rc;
	a->nr_helpers++;
	return dm_device_devt(helper, devt);
}

/* Set up the device that unit k maps. */
static int attach_backing(struct attach *a, const struct dm_piece *p,
			  unsigned int k)
{
	if (p->kind == DM_PIECE_ZERO)
		return 0;
	/* prepare() made the file of whole clusters. */
	if (p->rw && p->file_size % SECTOR_BYTES)
		return fail("%s: a partial last sector cannot be written",
			    p->name);
	if (p->kind == DM_PIECE_IMGFMT && p->file_size % SECTOR_BYTES)
		return attach_padded(a, p, k, a->nr_units, &a->devs[k]);
	return attach_loop(a, p->fd, p->path, p->rw, &a->devs[k]);
}

/* The devices of p's units, from unit *k on (dm_piece_units() order). */
static int attach_units(struct attach *a, const struct dm_piece *p,
			unsigned int *k)
{
	unsigned int i;
	int rc;

	if (p->kind == DM_PIECE_ZERO)
		return 0;
	rc = attach_backing(a, p, (*k)++);
	if (!rc && p->data)
		rc = attach_backing(a, p->data, (*k)++);
	for (i = 0; !rc && i < p->nr_lower; i++)
		rc = attach_units(a, &p->lower[i], k);
	return rc;
}

/* The devices of units [k, k + n) as "MAJ:MIN" words. */
static char **unit_devs(const struct attach *a, unsigned int k, unsigned int n)
{
	char **devs = calloc(n ? n : 1, sizeof(*devs));
	unsigned int i;

	for (i = 0; devs && i < n; i++) {
		if (asprintf(&devs[i], "%u:%u", major(a->devs[k + i]),
			     minor(a->devs[k + i])) < 0) {
			while (i--)
				free(devs[i]);
			free(devs);
			return NULL;
		}
	}
	return devs;
}

static void free_devs(char **devs, unsigned int n)
{
	unsigned int i;

	for (i = 0; devs && i < n; i++)
		free(devs[i]);
	free(devs);
}

/* The table line of piece p, whose unit is k. */
static int add_piece(struct table *t, const struct attach *a,
		     const struct dm_piece *p, unsigned int k)
{
	unsigned int n = dm_piece_units(p);
	char **devs = unit_devs(a, k, n);
	char *params;

	if (!devs)
		return fail("out of memory");
	params = dm_piece_params(p, devs);
	free_devs(devs, n);
	if (!params)
		return FAIL;
	table_add(t, p->sectors, dm_piece_target(p), params);
	free(params);
	return 0;
}

static int attach_top(struct attach *a, const struct dm_piece *pieces,
		      unsigned int nr)
{
	struct table t;
	unsigned int i, k = 0;
	int rc;

	rc = table_begin(&t, a->name, a->rw);
	for (i = 0; !rc && i < nr; i++) {
		rc = add_piece(&t, a, &pieces[i], k);
		k += dm_piece_units(&pieces[i]);
	}
	if (rc) {
		if (t.dmt)
			dm_task_destroy(t.dmt);
		return rc;
	}
	return table_create(&t, a->name);
}

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
	char shown[IMGFMT_SHOWN_MAX];

	if (why)
		return usage_fail("bad device name '%s': %s",
				  shown_name(&shown, name), why);
	return 0;
}

/*
 * attach derives names from NAME (NAME-image, NAME-imageN, later NAMEpN)
 * and gives each device the uuid IMGFMT-<its name>: a NAME whose derived
 * names do not fit could be attached but not detached.
 */
int check_attach_name(const char *name)
{
	char shown[IMGFMT_SHOWN_MAX];
	int rc;

	rc = check_dm_name(name);
	if (rc)
		return rc;
	if (strlen(name) > IMGFMT_NAME_MAX)
		return usage_fail("device name '%s' is too long: %zu characters, at most %zu (room for the names attach derives from it)",
				  shown_name(&shown, name),
				  strlen(name), IMGFMT_NAME_MAX);
	return 0;
}

/* FNV-1a, 32 bits: a fixed function of the whole file name. */
static uint32_t name_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261U;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619U;
	return h;
}

/* "-" and eight hex digits: what a shortened name ends in. */
#define NAME_HASH_LEN	9

/*
 * The image's file name without directory and extension, sanitised.  A
 * name that sanitising changed, or one longer than IMGFMT_NAME_MAX, ends
 * in a hash of the whole base name (and is cut first to leave room for
 * it): "a b" and "a_b" get different names, the same file name always
 * gives the same device name, and long names that share their start still
 * differ.  Clean names up to IMGFMT_NAME_MAX are kept as they are.
 */
int default_dm_name(const char *path, char *name, size_t size)
{
	const char *base = strrchr(path, '/');
	char shown[IMGFMT_SHOWN_MAX];
	bool changed = false;
	size_t len, keep, i;
	const char *dot;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	if (size <= IMGFMT_NAME_MAX)
		return fail("device name buffer too small");
	for (i = 0; i < len; i++)
		changed |= !dm_name_char(base[i]);
	keep = len;
	if ((changed || len > IMGFMT_NAME_MAX) &&
	    keep > IMGFMT_NAME_MAX - NAME_HASH_LEN)
		keep = IMGFMT_NAME_MAX - NAME_HASH_LEN;
	for (i = 0; i < keep; i++)
		name[i] = dm_name_char(base[i]) ? base[i] : '_';
	name[keep] = '\0';
	if (keep < len || changed)
		snprintf(name + keep, size - keep, "-%08x",
			 name_hash(base, len));
	if (dm_name_problem(name))
		return usage_fail("cannot make a device name from '%s': use --name",
				  shown_name(&shown, path));
	return 0;
}

/* The path of the new device; libdevmapper makes it if udev did not. */
static int dm_node_path(const char *name, char *path, size_t size)
{
	struct stat st;

	snprintf(path, size, "%s/%s", dm_dir(), name);
	if (!stat(path, &st))
		return 0;
	dm_error_reset();
	if (dm_mknodes(name) && !stat(path, &st))
		return 0;
	return fail("created device-mapper device '%s', but %s is missing",
		    name, path);
}

static int attach_all(struct attach *a, const struct dm_piece *pieces,
		      unsigned int nr)
{
	unsigned int i, k = 0;
	int rc = 0;

	for (i = 0; !rc && i < nr; i++)
		rc = attach_units(a, &pieces[i], &k);
	if (!rc)
		rc = attach_top(a, pieces, nr);
	return rc;
}

/* Partitions */

/* "NAMEpN", kpartx style; check_attach_name() left room for it. */
static int part_name(const char *disk, unsigned int partno, char *buf,
		     size_t size)
{
	int n = snprintf(buf, size, "%sp%u", disk, partno);

	if (n < 0 || (size_t)n >= size)
		return fail("device name '%s' leaves no room for partition names",
			    disk);
	return 0;
}

/* A linear device NAMEpN over its sectors of the disk, in its mode. */
static int part_create(const char *disk, dev_t disk_devt, bool rw,
		       const struct part_entry *pe, char *path, size_t size)
{
	char name[DM_NAME_LEN], params[64];
	struct table t;
	int rc;

	rc = part_name(disk, pe->partno, name, sizeof(name));
	if (rc)
		return rc;
	rc = dm_device_exists(name);
	if (rc > 0)
		return fail("a device-mapper device named '%s' already exists",
			    name);
	if (!rc)
		rc = table_begin(&t, name, rw);
	if (rc)
		return rc;
	snprintf(params, sizeof(params), "%u:%u %llu", major(disk_devt),
		 minor(disk_devt), pe->start);
	table_add(&t, pe->sectors, "linear", params);
	rc = table_create(&t, name);
	if (!rc)
		rc = dm_node_path(name, path, size);
	return rc;
}

/*
 * device-mapper devices do not scan partitions: map those of the disk's
 * table as NAMEpN.  Their paths are not printed: attach prints one line,
 * the disk's, which scripts use as it is ($(imgfmt attach ...)), and
 * disks with a partition table are common (two of the VMDK test corpus
 * have one).  `imgfmt list` shows them.
 */
static int attach_partitions(const char *name, const char *disk_path,
			     bool rw)
{
	char shown[IMGFMT_SHOWN_MAX], path[PATH_MAX];
	struct part_entry *parts;
	unsigned int nr, i;
	dev_t devt;
	int rc;

	rc = dm_device_devt(name, &devt);
	if (!rc)
		rc = partitions_probe(disk_path, shown_name(&shown, disk_path),
				      &parts, &nr);
	if (rc)
		return rc;
	for (i = 0; !rc && i < nr; i++)
		rc = part_create(name, devt, rw, &parts[i], path,
				 sizeof(path));
	free(parts);
	return rc;
}

/* Locks against QEMU */

/*
 * Lock p's file, and its data file, as mode says; then its lower layers
 * and theirs as lower says.  0, or FAIL with some locks left taken.
 */
static int lock_piece(const struct dm_piece *p, enum image_lock_mode mode,
		      enum image_lock_mode lower)
{
	unsigned int i;
	int rc = 0;

	if (p->fd >= 0)
		rc = image_lock(p->fd, p->name, mode);
	if (!rc && p->data)
		rc = lock_piece(p->data, mode, lower);
	for (i = 0; !rc && i < p->nr_lower; i++)
		rc = lock_piece(&p->lower[i], lower, lower);
	return rc;
}

static void unlock_piece(const struct dm_piece *p)
{
	unsigned int i;

	if (p->fd >= 0)
		image_unlock(p->fd);
	if (p->data)
		unlock_piece(p->data);
	for (i = 0; i < p->nr_lower; i++)
		unlock_piece(&p->lower[i]);
}

/* Unlocking a file that was not locked yet is harmless: all of them. */
static void unlock_pieces(const struct dm_piece *pieces, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		unlock_piece(&pieces[i]);
}

/*
 * Before anything is set up, so that a refusal leaves nothing behind.
 * The descriptors locked are the ones the loop devices get: the loop
 * keeps that open file description, and with it the locks.  A lower layer
 * is locked as QEMU locks a backing file it reads (a QCOW2 one), whatever
 * its format: a writer would change what the layers above show.  On a
 * failure, dm_attach_disk() drops what was taken.
 */
static int lock_pieces(const struct dm_piece *pieces, unsigned int nr,
		       unsigned int flags)
{
	enum image_lock_mode top = IMAGE_LOCK_READ, lower = IMAGE_LOCK_READ;
	unsigned int i;
	int rc = 0;

	if (flags & DM_ATTACH_FORCE_SHARE) {
		top = IMAGE_LOCK_SHARED;
		lower = IMAGE_LOCK_SHARED;
	} else if (flags & DM_ATTACH_RW) {
		top = IMAGE_LOCK_WRITE;
	}
	for (i = 0; !rc && i < nr; i++)
		rc = lock_piece(&pieces[i], top, lower);
	return rc;
}

/* Once the files are locked: what the pieces need done to their files. */
static int prepare_pieces(struct dm_piece *pieces, unsigned int nr)
{
	unsigned int i;
	int rc = 0;

	for (i = 0; !rc && i < nr; i++)
		if (pieces[i].prepare)
			rc = pieces[i].prepare(pieces[i].prepare_ctx,
					       &pieces[i].file_size);
	return rc;
}

static int detach(const char *name);

int dm_attach_disk(const char *name, struct dm_piece *pieces,
		   unsigned int nr, unsigned int flags)
{
	char path[PATH_MAX];
	bool prepared = false;
	struct attach a;
	unsigned int i;
	int rc;

	dm_log_with_errno_init(dm_log);
	rc = attach_init(&a, name, pieces, nr);
	a.rw = flags & DM_ATTACH_RW;
	if (!rc)
		rc = lock_pieces(pieces, nr, flags);
	/* Before a file is touched: the name, and device-mapper at all. */
	if (!rc) {
		rc = dm_device_exists(name);
		if (rc > 0)
			rc = fail("a device-mapper device named '%s' already exists",
				  name);
	}
	if (!rc) {
		rc = prepare_pieces(pieces, nr);
		prepared = !rc;
	}
	if (!rc)
		rc = attach_all(&a, pieces, nr);
	if (rc) {
		attach_undo(&a);
	} else {
		attach_release(&a);
		rc = dm_node_path(name, path, sizeof(path));
		if (!rc)
			rc = attach_partitions(name, path, a.rw);
		/* The disk exists: detach knows how to undo all of it. */
		if (rc)
			(void)detach(name);
		else
			printf("%s\n", path);
	}
	/* Nothing holds a grown file now: cut it back, still locked. */
	for (i = 0; rc && prepared && i < nr; i++)
		if (pieces[i].rw)
			(void)rw_trim_file(pieces[i].fd, pieces[i].name);
	if (rc)
		unlock_pieces(pieces, nr);
	attach_free(&a);
	dm_lib_release();
	return rc;
}

/* detach */

/* Accept NAME or DMDIR/NAME (normally /dev/mapper/NAME). */
static const char *dm_strip_dir(const char *arg)
{
	const char *dir = dm_dir();
	size_t len = strlen(dir);

	if (!strncmp(arg, dir, len) && arg[len] == '/')
		return arg + len + 1;
	if (!strncmp(arg, "/dev/mapper/", 12))
		return arg + 12;
	return arg;
}

/* The device under an imgfmt or linear target: "MAJ:MIN" or a path. */
static int parse_table_dev(const char *name, const char *params, dev_t *dev)
{
	char shown[IMGFMT_SHOWN_MAX];
	unsigned int maj, min;
	char path[PATH_MAX];
	struct stat st;

	if (sscanf(params, "%u:%u", &maj, &min) == 2) {
		*dev = makedev(maj, min);
		return 0;
	}
	if (sscanf(params, "%4095s", path) == 1 && !stat(path, &st) &&
	    S_ISBLK(st.st_mode)) {
		*dev = st.st_rdev;
		return 0;
	}
	return fail("cannot find the device in the table of '%s': %s", name,
		    shown_name(&shown, params));
}

/*
 * A loop device attach bound under the device being detached, held open
 * till the end.  Such loops clear themselves (autoclear) once
 * device-mapper lets go of them; detach never clears a loop itself.
 */
struct held_loop {
	struct loop lo;
	struct loop_info64 info;	/* its status before the removal */
};

/* What a device being detached sits on, and its partitions. */
struct stack {
	const char *name;
	char (*parts)[DM_NAME_LEN];
	unsigned int nr_parts, max_parts;
	struct held_loop *loops;
	unsigned int nr_loops, max_loops;
	char (*helpers)[DM_NAME_LEN];
	unsigned int nr_helpers, max_helpers;
};

/* One device-mapper table, as detach reads it. */
struct dm_table {
	char name[DM_NAME_LEN];
	char uuid[DM_UUID_LEN];
	dev_t devt;
	int open_count;
	dev_t *devs;			/* devices under imgfmt, linear */
	unsigned int nr_devs;
};

static int table_add_dev(struct dm_table *tbl, dev_t dev)
{
	dev_t *grown;
	unsigned int i;

	for (i = 0; i < tbl->nr_devs; i++)
		if (tbl->devs[i] == dev)
			return 0;
	grown = realloc(tbl->devs, (tbl->nr_devs + 1) * sizeof(*grown));
	if (!grown)
		return fail("out of memory");
	tbl->devs = grown;
	tbl->devs[tbl->nr_devs++] = dev;
	return 0;
}

/* Every device an imgfmt target names: its layers and data files. */
static int table_add_imgfmt_devs(struct dm_table *tbl, const char *params)
{
	struct table_words tw;
	const char **devs;
	dev_t dev;
	int n, i, rc = 0;

	if (table_split(params, &tw))
		return fail("out of memory");
	devs = calloc(tw.nr ? tw.nr : 1, sizeof(*devs));
	if (!devs) {
		table_words_free(&tw);
		return fail("out of memory");
	}
	n = imgfmt_args_devices(&tw, devs, tw.nr);
	if (n < 0)
		rc = fail("cannot read the table of '%s'", tbl->name);
	for (i = 0; !rc && i < n; i++) {
		rc = parse_table_dev(tbl->name, devs[i], &dev);
		if (!rc)
			rc = table_add_dev(tbl, dev);
	}
	free(devs);
	table_words_free(&tw);
	return rc;
}

static int table_read_targets(struct dm_task *dmt, struct dm_table *tbl)
{
	char *type = NULL, *params = NULL;
	uint64_t start, length;
	void *next = NULL;
	dev_t dev;
	int rc;

	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type,
					  &params);
		if (!type)
			break;
		if (strcmp(type, TARGET_TYPE) && strcmp(type, "linear"))
			continue;
		if (!params)
			return fail("no table arguments in '%s'", tbl->name);
		if (!strcmp(type, TARGET_TYPE)) {
			rc = table_add_imgfmt_devs(tbl, params);
		} else {
			rc = parse_table_dev(tbl->name, params, &dev);
			if (!rc)
				rc = table_add_dev(tbl, dev);
		}
		if (rc)
			return rc;
	} while (next);
	return 0;
}

/* Was this device made by imgfmt attach (under the name it has now)? */
static bool table_is_ours(const struct dm_table *tbl)
{
	size_t len = strlen(UUID_PREFIX);

	return !strncmp(tbl->uuid, UUID_PREFIX, len) &&
	       !strcmp(tbl->uuid + len, tbl->name);
}

/* Read the table of the device name, or of device number devt. */
static int dm_read_table(const char *name, dev_t devt, struct dm_table *tbl)
{
	struct dm_task *dmt;
	struct dm_info info;
	const char *s;
	int rc, ok;

	memset(tbl, 0, sizeof(*tbl));
	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_TABLE);
	if (!dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	ok = name ? dm_task_set_name(dmt, name) :
	     dm_task_set_major(dmt, (int)major(devt)) &&
	     dm_task_set_minor(dmt, (int)minor(devt));
	if (!ok || !dm_task_run(dmt) || !dm_task_get_info(dmt, &info)) {
		rc = fail("cannot query device-mapper device '%s': %s",
			  name ? name : "?", dm_error_text());
		goto out;
	}
	if (!info.exists) {
		rc = name ? fail("no device-mapper device named '%s'", name) :
			    fail("device-mapper device %u:%u vanished",
				 major(devt), minor(devt));
		goto out;
	}
	s = dm_task_get_name(dmt);
	snprintf(tbl->name, sizeof(tbl->name), "%s", s ? s : "");
	s = dm_task_get_uuid(dmt);
	snprintf(tbl->uuid, sizeof(tbl->uuid), "%s", s ? s : "");
	tbl->devt = makedev(info.major, info.minor);
	tbl->open_count = info.open_count;
	/* Tables attach did not make are none of our business. */
	rc = table_is_ours(tbl) ? table_read_targets(dmt, tbl) : 0;
out:
	dm_task_destroy(dmt);
	return rc;
}

static int stack_grow_loops(struct stack *st)
{
	unsigned int max = st->max_loops ? st->max_loops * 2 : 8;
	struct held_loop *grown;

	grown = realloc(st->loops, max * sizeof(*grown));
	if (!grown)
		return fail("out of memory");
	st->loops = grown;
	st->max_loops = max;
	return raise_file_limit(max, st->name);
}

/* Hold the loop device dev open until the end of detach. */
static int stack_add_loop(struct stack *st, dev_t dev)
{
	struct held_loop *h;
	unsigned int i;
	int rc;

	for (i = 0; i < st->nr_loops; i++)
		if (st->loops[i].lo.devt == dev)
			return 0;
	if (st->nr_loops == st->max_loops) {
		rc = stack_grow_loops(st);
		if (rc)
			return rc;
	}
	h = &st->loops[st->nr_loops];
	h->lo.fd = -1;
	rc = loop_open_devt(dev, &h->lo);
	if (rc)
		return rc;
	/*
	 * attach binds its loops with autoclear; one without it (or no
	 * longer bound) is someone else's: leave it alone.
	 */
	if (ioctl(h->lo.fd, LOOP_GET_STATUS64, &h->info) ||
	    !(h->info.lo_flags & LO_FLAGS_AUTOCLEAR)) {
		close(h->lo.fd);
		return 0;
	}
	st->nr_loops++;
	return 0;
}

static int stack_add_helper(struct stack *st, const char *name)
{
	char (*grown)[DM_NAME_LEN];
	unsigned int max;

	if (st->nr_helpers == st->max_helpers) {
		max = st->max_helpers ? st->max_helpers * 2 : 4;
		grown = realloc(st->helpers, max * sizeof(*grown));
		if (!grown)
			return fail("out of memory");
		st->helpers = grown;
		st->max_helpers = max;
	}
	snprintf(st->helpers[st->nr_helpers++], DM_NAME_LEN, "%s", name);
	return 0;
}

/* Is the device-mapper device under us a helper that attach made? */
static bool helper_of(const struct stack *st, const struct dm_table *tbl)
{
	size_t len = strlen(st->name);

	return table_is_ours(tbl) && !strncmp(tbl->name, st->name, len) &&
	       !strncmp(tbl->name + len, "-image", 6);
}

/* A helper device and the loops under it; foreign devices are left. */
static int stack_add_dm(struct stack *st, dev_t dev)
{
	struct dm_table tbl;
	unsigned int i;
	int rc;

	rc = dm_read_table(NULL, dev, &tbl);
	if (rc || !helper_of(st, &tbl))
		goto out;
	rc = stack_add_helper(st, tbl.name);
	for (i = 0; !rc && i < tbl.nr_devs; i++)
		if (major(tbl.devs[i]) == LOOP_MAJOR)
			rc = stack_add_loop(st, tbl.devs[i]);
out:
	free(tbl.devs);
	return rc;
}

static int stack_collect(struct stack *st, const struct dm_table *top)
{
	unsigned int i;
	dev_t dev;
	int rc = 0;

	for (i = 0; !rc && i < top->nr_devs; i++) {
		dev = top->devs[i];
		if (major(dev) == LOOP_MAJOR)
			rc = stack_add_loop(st, dev);
		else if (dm_is_dm_major(major(dev)))
			rc = stack_add_dm(st, dev);
	}
	return rc;
}

static void stack_free(struct stack *st)
{
	unsigned int i;

	for (i = 0; i < st->nr_loops; i++)
		close(st->loops[i].lo.fd);
	free(st->loops);
	free(st->helpers);
	free(st->parts);
}

/* Is name "DISKpN", N from 1 to PART_NO_MAX without leading zeroes? */
static bool part_name_of(const char *disk, const char *name)
{
	size_t len = strlen(disk);
	unsigned long n;
	char *end;

	if (strncmp(name, disk, len) || name[len] != 'p' ||
	    name[len + 1] < '1' || name[len + 1] > '9')
		return false;
	n = strtoul(name + len + 1, &end, 10);
	return !*end && n <= PART_NO_MAX;
}

/* Is tbl a partition attach mapped over the disk disk_devt? */
static bool part_of(const struct dm_table *tbl, const char *disk,
		    dev_t disk_devt)
{
	return table_is_ours(tbl) && part_name_of(disk, tbl->name) &&
	       tbl->nr_devs == 1 && tbl->devs[0] == disk_devt;
}

static int stack_add_part(struct stack *st, const char *name)
{
	char (*grown)[DM_NAME_LEN];
	unsigned int max;

	if (st->nr_parts == st->max_parts) {
		max = st->max_parts ? st->max_parts * 2 : 8;
		grown = realloc(st->parts, max * sizeof(*grown));
		if (!grown)
			return fail("out of memory");
		st->parts = grown;
		st->max_parts = max;
	}
	snprintf(st->parts[st->nr_parts++], DM_NAME_LEN, "%s", name);
	return 0;
}

/* Add name if it is one of the partitions attach mapped over top. */
static int stack_try_part(struct stack *st, const struct dm_table *top,
			  const char *name)
{
	struct dm_table tbl;
	int rc;

	if (!part_name_of(top->name, name))
		return 0;
	rc = dm_read_table(name, 0, &tbl);
	/* Gone meanwhile, or not ours: not a partition to remove. */
	if (rc || !part_of(&tbl, top->name, top->devt))
		rc = 0;
	else
		rc = stack_add_part(st, name);
	free(tbl.devs);
	return rc;
}

/* The partitions of top: every device-mapper device is looked at. */
static int stack_find_parts(struct stack *st, const struct dm_table *top)
{
	struct dm_names *names;
	struct dm_task *dmt;
	unsigned int next;
	int rc = 0;

	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_LIST);
	names = dmt && dm_task_run(dmt) ? dm_task_get_names(dmt) : NULL;
	if (!names) {
		rc = fail("cannot list device-mapper devices: %s",
			  dm_error_text());
		goto out;
	}
	if (!names->dev)	/* no devices at all */
		goto out;
	do {
		rc = stack_try_part(st, top, names->name);
		next = names->next;
		names = (struct dm_names *)((char *)names + next);
	} while (!rc && next);
out:
	if (dmt)
		dm_task_destroy(dmt);
	return rc;
}

/* How many opens device-mapper counts for the device name now. */
static int dm_open_count(const char *name, int *count)
{
	struct dm_info info;
	int rc;

	*count = 0;
	rc = dm_query_info(name, &info);
	if (rc > 0)
		return fail("cannot query device-mapper device '%s': %s",
			    name, dm_error_text());
	if (!rc)
		*count = info.open_count;
	return rc;
}

/* The first of the partitions and the disk that is open, or NULL. */
static int stack_busy(const struct stack *st, const char **busy)
{
	unsigned int i;
	int count, rc;

	*busy = NULL;
	for (i = 0; i < st->nr_parts; i++) {
		rc = dm_open_count(st->parts[i], &count);
		if (rc)
			return rc;
		if (count > 0) {
			*busy = st->parts[i];
			return 0;
		}
	}
	rc = dm_open_count(st->name, &count);
	/* Each partition holds the disk open once; anything more is a user. */
	if (!rc && count > (int)st->nr_parts)
		*busy = st->name;
	return rc;
}

/*
 * Nothing is removed while the disk or a partition is open: removing the
 * partitions of a mounted disk would leave half a stack.  A short-lived
 * opener (udev's probe after a change) is waited for, as dm_remove() does.
 */
static int stack_check_idle(const struct stack *st)
{
	const char *busy = NULL;
	int i, rc;

	for (i = 0; i < REMOVE_TRIES; i++) {
		if (i)
			sleep_ms(REMOVE_WAIT_MS);
		rc = stack_busy(st, &busy);
		if (rc || !busy)
			return rc;
	}
	return fail("cannot remove '%s': it is in use (mounted or open)",
		    busy);
}

/* The partitions go first: they hold the disk. */
static int stack_remove_parts(const struct stack *st)
{
	unsigned int i;
	int rc = 0;

	for (i = 0; !rc && i < st->nr_parts; i++)
		rc = dm_remove(st->parts[i]);
	return rc;
}

/* Is top itself a partition attach mapped?  Then its disk is detached. */
static int refuse_partition(const struct dm_table *top)
{
	struct dm_table disk;
	const char *p;
	bool is_part;

	if (top->nr_devs != 1 || !dm_is_dm_major(major(top->devs[0])))
		return 0;
	if (dm_read_table(NULL, top->devs[0], &disk))
		return 0;
	is_part = table_is_ours(&disk) && part_of(top, disk.name, disk.devt);
	free(disk.devs);
	if (!is_part)
		return 0;
	p = top->name + strlen(disk.name);
	return usage_fail("'%s' is partition %s of '%s': detach '%s'",
			  top->name, p + 1, disk.name, disk.name);
}

/* Remove the tail file of a helper if one of our loops still reads it. */
static void remove_tail(const struct stack *st, const char *helper)
{
	char tail[PATH_MAX];
	struct stat sb;
	unsigned int i;

	snprintf(tail, sizeof(tail), "%s/%s.tail", TAIL_DIR, helper);
	if (lstat(tail, &sb) || !S_ISREG(sb.st_mode))
		return;
	for (i = 0; i < st->nr_loops; i++) {
		if (st->loops[i].info.lo_inode == sb.st_ino &&
		    st->loops[i].info.lo_device == sb.st_dev) {
			unlink(tail);
			return;
		}
	}
}

/*
 * Remove the helper devices under the top one, which is gone, and their
 * tail files; the loops clear themselves once stack_free() closes them.
 */
static int stack_remove(struct stack *st)
{
	unsigned int i;
	int rc = 0, r;

	for (i = 0; i < st->nr_helpers; i++) {
		r = dm_remove(st->helpers[i]);
		if (!rc)
			rc = r;
		remove_tail(st, st->helpers[i]);
	}
	return rc;
}

/* The file a loop device reads, from sysfs, open read-write. */
static int loop_open_file(const struct held_loop *h, char *file, size_t size)
{
	char link[96], shown[IMGFMT_SHOWN_MAX];
	struct stat st;
	size_t len;
	FILE *f;
	int fd;

	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u/loop/backing_file",
		 major(h->lo.devt), minor(h->lo.devt));
	f = fopen(link, "re");
	if (!f)
		return fail("cannot find the file of %s: %s", h->lo.path,
			    strerror(errno));
	if (!fgets(file, (int)size, f))
		file[0] = '\0';
	fclose(f);
	len = strlen(file);
	if (len && file[len - 1] == '\n')
		file[--len] = '\0';
	fd = len ? open(file, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) : -1;
	if (fd < 0)
		return fail("cannot open %s, the file of %s: %s",
			    shown_name(&shown, file), h->lo.path,
			    len ? strerror(errno) : "no file name");
	/* The very file the loop holds, not one renamed over it. */
	if (fstat(fd, &st) || st.st_ino != h->info.lo_inode ||
	    st.st_dev != h->info.lo_device) {
		close(fd);
		return fail("%s is no longer the file of %s",
			    shown_name(&shown, file), h->lo.path);
	}
	return fd;
}

/*
 * The device-mapper devices are gone, and with them the writer, whose
 * last commit ran at removal: cut each file attach made writable (the
 * loops without the read-only flag) back to its image's end while the
 * loop still holds it, and its write lock with it.
 */
static int stack_trim(const struct stack *st)
{
	char file[PATH_MAX], shown[IMGFMT_SHOWN_MAX];
	unsigned int i;
	int fd, rc = 0, r;

	for (i = 0; i < st->nr_loops; i++) {
		if (st->loops[i].info.lo_flags & LO_FLAGS_READ_ONLY)
			continue;
		fd = loop_open_file(&st->loops[i], file, sizeof(file));
		if (fd < 0) {
			r = fd;
		} else {
			r = rw_trim_file(fd, shown_name(&shown, file));
			close(fd);
		}
		if (!rc)
			rc = r;
	}
	return rc;
}

static int detach(const char *name)
{
	struct stack st = { .name = name };
	struct dm_table top;
	int rc;

	rc = dm_read_table(name, 0, &top);
	if (rc)
		return rc;
	/* Only what attach made: never a device or loop set up by hand. */
	if (!table_is_ours(&top))
		rc = fail("'%s' was not made by imgfmt attach; remove it with dmsetup remove",
			  name);
	if (!rc)
		rc = refuse_partition(&top);
	if (!rc)
		rc = stack_find_parts(&st, &top);
	if (!rc)
		rc = stack_check_idle(&st);
	if (!rc)
		rc = stack_collect(&st, &top);
	if (!rc)
		rc = stack_remove_parts(&st);
	if (!rc)
		rc = dm_remove(name);
	if (!rc)
		rc = stack_remove(&st);
	if (!rc)
		rc = stack_trim(&st);
	stack_free(&st);
	free(top.devs);
	return rc;
}

int dm_detach_device(const char *arg)
{
	const char *name = dm_strip_dir(arg);
	char shown[IMGFMT_SHOWN_MAX];
	int rc;

	if (strchr(name, '/'))
		return usage_fail("'%s' is neither a device name nor under %s",
				  shown_name(&shown, arg), dm_dir());
	rc = check_dm_name(name);
	if (rc)
		return rc;
	dm_log_with_errno_init(dm_log);
	rc = dm_device_exists(name);
	if (!rc)
		rc = fail("no device-mapper device named '%s'", name);
	if (rc > 0)
		rc = detach(name);
	dm_lib_release();
	return rc;
}
