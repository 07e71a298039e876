// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt attach and detach: a read-only loop device over the image file and
 * a read-only device-mapper device with the imgfmt target over the loop.
 *
 * Device nodes: when udev runs, its rules create /dev/mapper/NAME and we
 * wait for them through a libdevmapper cookie.  Without udev (a minimal VM,
 * DM_DISABLE_UDEV=1) libdevmapper creates and removes the nodes itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <linux/major.h>
#include <libdevmapper.h>

#include "imgfmt.h"

_Static_assert(IMGFMT_DM_NAME_LEN == DM_NAME_LEN, "DM_NAME_LEN changed");

#define TARGET_TYPE		"imgfmt"
/* Other processes may grab the free loop device we were offered. */
#define LOOP_TRIES		16
/* How long to wait for a new /dev/loopN node to appear. */
#define LOOP_NODE_TRIES		50
#define LOOP_NODE_WAIT_MS	20
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

/* Open the loop device node at lo->path, waiting for it to appear. */
static int loop_open_node(struct loop *lo, bool wait)
{
	struct stat st;
	int i;

	for (i = 0; i < LOOP_NODE_TRIES; i++) {
		lo->fd = open(lo->path, O_RDONLY | O_CLOEXEC);
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

static int loop_configure(int lfd, int image_fd, const char *file)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (__u32)image_fd;
	loop_fill_info(&cfg.info, file,
		       LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
	return ioctl(lfd, LOOP_CONFIGURE, &cfg) ? -errno : 0;
}

/* Kernels before 5.8: the image fd is read-only, so is the loop. */
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

static int loop_bind(int lfd, int image_fd, const char *file)
{
	struct loop_info64 info;
	int rc;

	rc = loop_configure(lfd, image_fd, file);
	if (rc == -EINVAL || rc == -ENOTTY)
		rc = loop_set_fd(lfd, image_fd, file);
	if (rc)
		return rc;
	if (!ioctl(lfd, LOOP_GET_STATUS64, &info) &&
	    (info.lo_flags & LO_FLAGS_READ_ONLY))
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
			   struct loop *lo)
{
	int nr, rc;

	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	if (nr < 0)
		return fail("cannot get a free loop device: %s",
			    strerror(errno));
	snprintf(lo->path, sizeof(lo->path), "/dev/loop%d", nr);
	rc = loop_open_node(lo, true);
	if (rc)
		return rc;
	rc = loop_bind(lo->fd, image_fd, file);
	if (!rc)
		return 0;
	close(lo->fd);
	lo->fd = -1;
	if (rc == -EBUSY)
		return rc;
	if (rc == -EROFS)
		return fail("%s did not become read-only", lo->path);
	return fail("cannot set up %s: %s", lo->path, strerror(-rc));
}

/*
 * Attach the image read-only to a free loop device that clears itself once
 * its last user (the device-mapper device) closes it.  lo->fd stays open:
 * closing it before device-mapper opens the loop would clear it.
 */
static int loop_attach(int image_fd, const char *file, struct loop *lo)
{
	int ctl, i, rc = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return fail("cannot open /dev/loop-control: %s",
			    strerror(errno));
	for (i = 0; i < LOOP_TRIES && rc == -EBUSY; i++)
		rc = loop_try_attach(ctl, image_fd, file, lo);
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
	if (loop_open_node(lo, false))
		return FAIL;
	if (lo->devt != dev) {
		close(lo->fd);
		lo->fd = -1;
		return fail("%s is not loop device %u:%u", lo->path,
			    major(dev), minor(dev));
	}
	return 0;
}

/* attach */

static int dm_create_failed(const char *name)
{
	char why[sizeof(dm_error)];
	int has;

	snprintf(why, sizeof(why), "%s", dm_error_text());
	if (dm_device_exists(name) > 0)
		return fail("a device-mapper device named '%s' appeared meanwhile: %s",
			    name, why);
	has = dm_has_target(TARGET_TYPE);
	if (!has)
		return fail("the kernel has no %s target (is dm-imgfmt available?): %s",
			    TARGET_TYPE, why);
	return fail("device-mapper refused the table (see dmesg): %s", why);
}

static int dm_create(const char *name, unsigned long long sectors,
		     const char *params)
{
	struct dm_task *dmt;
	int ok;

	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_CREATE);
	if (!dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	ok = dm_task_set_name(dmt, name) && dm_task_set_ro(dmt) &&
	     dm_task_add_target(dmt, 0, sectors, TARGET_TYPE, params) &&
	     dm_run_with_cookie(dmt);
	dm_task_destroy(dmt);
	return ok ? 0 : dm_create_failed(name);
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

int dm_attach_image(int image_fd, const char *image_path, const char *name,
		    unsigned long long sectors, const char *target_opts)
{
	struct loop lo = { .fd = -1 };
	char params[512], path[PATH_MAX];
	int rc, n;

	dm_log_with_errno_init(dm_log);
	rc = dm_device_exists(name);
	if (rc > 0)
		rc = fail("a device-mapper device named '%s' already exists",
			  name);
	if (rc)
		goto out;
	rc = loop_attach(image_fd, image_path, &lo);
	if (rc)
		goto out;
	n = snprintf(params, sizeof(params), "%u:%u%s", major(lo.devt),
		     minor(lo.devt), target_opts);
	if (n < 0 || (size_t)n >= sizeof(params))
		rc = fail("the table arguments are too long");
	else
		rc = dm_create(name, sectors, params);
	if (rc) {
		loop_detach(&lo);
		goto out;
	}
	/* The device-mapper device holds the loop open now. */
	close(lo.fd);
	rc = dm_node_path(name, path, sizeof(path));
	if (!rc)
		printf("%s\n", path);
out:
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

/* The device under an imgfmt table: "MAJ:MIN" or, in principle, a path. */
static int parse_table_dev(const char *name, const char *params, dev_t *dev)
{
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
		    params);
}

/* Check that name is an imgfmt device and find the device it maps. */
static int dm_imgfmt_backing(const char *name, dev_t *dev)
{
	char *type = NULL, *params = NULL;
	uint64_t start, length;
	struct dm_task *dmt;
	struct dm_info info;
	void *next;
	int rc;

	rc = dm_device_exists(name);
	if (rc <= 0)
		return rc ? rc : fail("no device-mapper device named '%s'",
				      name);
	dm_error_reset();
	dmt = dm_task_create(DM_DEVICE_TABLE);
	if (!dmt)
		return fail("cannot talk to device-mapper: %s",
			    dm_error_text());
	if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt) ||
	    !dm_task_get_info(dmt, &info)) {
		rc = fail("cannot query device-mapper device '%s': %s", name,
			  dm_error_text());
		goto out;
	}
	if (!info.exists) {
		rc = fail("no device-mapper device named '%s'", name);
		goto out;
	}
	next = dm_get_next_target(dmt, NULL, &start, &length, &type, &params);
	if (next || !type || strcmp(type, TARGET_TYPE) || !params)
		rc = fail("'%s' is not an %s device", name, TARGET_TYPE);
	else
		rc = parse_table_dev(name, params, dev);
out:
	dm_task_destroy(dmt);
	return rc;
}

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

/*
 * The loop's status before the removal, when it must be detached by hand:
 * 1 when it must, 0 when it is not bound or clears itself, or FAIL.
 */
static int loop_needs_clear(struct loop *lo, struct loop_info64 *info)
{
	if (ioctl(lo->fd, LOOP_GET_STATUS64, info))
		return errno == ENXIO ? 0 :
		       fail("cannot get the status of %s: %s", lo->path,
			    strerror(errno));
	return !(info->lo_flags & LO_FLAGS_AUTOCLEAR);
}

/* Detach the loop unless someone rebound it in the meantime. */
static int loop_clear(struct loop *lo, const struct loop_info64 *before,
		      const char *name)
{
	struct loop_info64 now;

	if (ioctl(lo->fd, LOOP_GET_STATUS64, &now))
		return 0;
	if (now.lo_device != before->lo_device ||
	    now.lo_inode != before->lo_inode)
		return 0;
	if (ioctl(lo->fd, LOOP_CLR_FD, 0))
		return fail("removed '%s', but cannot detach %s: %s", name,
			    lo->path, strerror(errno));
	return 0;
}

static int detach_with_loop(const char *name, dev_t dev)
{
	struct loop lo = { .fd = -1 };
	struct loop_info64 info;
	int rc, clear;

	/* Holding the loop open keeps it bound until we are done. */
	rc = loop_open_devt(dev, &lo);
	if (rc)
		return rc;
	clear = loop_needs_clear(&lo, &info);
	rc = clear < 0 ? clear : dm_remove(name);
	if (!rc && clear > 0)
		rc = loop_clear(&lo, &info, name);
	close(lo.fd);
	return rc;
}

int dm_detach_device(const char *arg)
{
	const char *name = dm_strip_dir(arg);
	dev_t dev;
	int rc;

	if (strchr(name, '/'))
		return usage_fail("'%s' is neither a device name nor under %s",
				  arg, dm_dir());
	rc = check_dm_name(name);
	if (rc)
		return rc;
	dm_log_with_errno_init(dm_log);
	rc = dm_imgfmt_backing(name, &dev);
	if (!rc && major(dev) == LOOP_MAJOR)
		rc = detach_with_loop(name, dev);
	else if (!rc)
		rc = dm_remove(name);
	dm_lib_release();
	return rc;
}
