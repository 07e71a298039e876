// SPDX-License-Identifier: GPL-2.0-only
/*
 * Image locks that QEMU honours (lock.h).
 *
 * The protocol, as QEMU 7.2's file driver speaks it: permission i is one
 * bit of a mask (consistent read, write, write of unchanged data, resize);
 * a user read-locks byte PERM_BASE + i for each permission it holds and
 * byte UNSHARED_BASE + i for each one it does not let others hold.  Read
 * locks never block each other, so taking them always succeeds; conflicts
 * are found by asking (F_OFD_GETLK) whether some other open file holds a
 * byte: one of our permissions on someone's "not shared" byte, or someone
 * holding a permission on the byte of one we do not share.
 *
 * The bytes are taken first and checked after, as QEMU does: of two users
 * opening at once, at least the second to check sees the first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>

#include "failure.h"
#include "lock.h"

/* QEMU's permission bits (BLK_PERM_* in its block layer). */
#define PERM_CONSISTENT_READ	0x1U
#define PERM_WRITE		0x2U
#define PERM_WRITE_UNCHANGED	0x4U
#define PERM_RESIZE		0x8U
#define NR_PERMS		4
#define PERM_ALL		((1U << NR_PERMS) - 1)

/* Byte PERM_BASE + i: "I hold i"; UNSHARED_BASE + i: "nobody else may". */
#define PERM_BASE		100
#define UNSHARED_BASE		200

struct lock_set {
	unsigned int perm;	/* what we hold */
	unsigned int shared;	/* what others may hold meanwhile */
};

/*
 * Each mode is what QEMU 7.2 itself locks in the same place (read from
 * /proc/locks while qemu-io held an image): -r, read-write, -r -U.
 */
static const struct lock_set lock_sets[] = {
	[IMAGE_LOCK_READ] = {
		.perm = PERM_CONSISTENT_READ,
		.shared = PERM_ALL & ~(PERM_WRITE | PERM_RESIZE),
	},
	[IMAGE_LOCK_WRITE] = {
		.perm = PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE,
		.shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED,
	},
	[IMAGE_LOCK_SHARED] = {
		.perm = PERM_CONSISTENT_READ,
		.shared = PERM_ALL,
	},
};

static int lock_bytes(int fd, short type, off_t start, off_t len)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/*
 * Does another open file hold a lock on byte off?  Asking for a write
 * lock finds every read lock but our own.  1, 0 or -errno.
 */
static int byte_taken(int fd, off_t off)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = off;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl))
		return -errno;
	return fl.l_type != F_UNLCK;
}

/* Read-lock byte base + i for every bit i of mask. */
static int lock_mask(int fd, off_t base, unsigned int mask)
{
	unsigned int i;
	int rc;

	for (i = 0; i < NR_PERMS; i++) {
		if (!(mask & (1U << i)))
			continue;
		rc = lock_bytes(fd, F_RDLCK, base + i, 1);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * *bit: the first bit i of mask whose byte base + i another open file
 * holds, or -1 when none.  0 or -errno.
 */
static int find_taken(int fd, off_t base, unsigned int mask, int *bit)
{
	unsigned int i;
	int rc;

	*bit = -1;
	for (i = 0; i < NR_PERMS; i++) {
		if (!(mask & (1U << i)))
			continue;
		rc = byte_taken(fd, base + i);
		if (rc < 0)
			return rc;
		if (rc) {
			*bit = (int)i;
			return 0;
		}
	}
	return 0;
}

/* What permission bit stands for, in words: resizing is writing too. */
static bool perm_reads(int bit)
{
	return (1U << bit) == PERM_CONSISTENT_READ;
}

/*
 * Refuse when another file holds what we do not share, or does not share
 * what we hold.  --force-share is offered only where it applies: it reads.
 */
static int check_conflicts(int fd, const char *name, enum image_lock_mode mode)
{
	const struct lock_set *ls = &lock_sets[mode];
	const char *hint = mode == IMAGE_LOCK_READ ?
		" (use --force-share to attach anyway)" : "";
	int bit, rc;

	rc = find_taken(fd, PERM_BASE, PERM_ALL & ~ls->shared, &bit);
	if (!rc && bit >= 0)
		return fail("%s: is in use by another process for %s%s", name,
			    perm_reads(bit) ? "reading" : "writing", hint);
	if (!rc)
		rc = find_taken(fd, UNSHARED_BASE, ls->perm, &bit);
	if (!rc && bit >= 0)
		return fail("%s: is in use by another process that does not let others %s it%s",
			    name, perm_reads(bit) ? "read" : "write", hint);
	if (rc)
		return fail("cannot check the locks of %s: %s", name,
			    strerror(-rc));
	return 0;
}

int image_lock(int fd, const char *name, enum image_lock_mode mode)
{
	const struct lock_set *ls = &lock_sets[mode];
	int rc;

	rc = lock_mask(fd, PERM_BASE, ls->perm);
	if (!rc)
		rc = lock_mask(fd, UNSHARED_BASE, PERM_ALL & ~ls->shared);
	if (rc) {
		image_unlock(fd);
		/* Only a write lock (not QEMU's) blocks a read lock. */
		if (rc == -EAGAIN || rc == -EACCES)
			return fail("%s: is locked by another process", name);
		return fail("cannot lock %s: %s", name, strerror(-rc));
	}
	if (mode == IMAGE_LOCK_SHARED)
		return 0;
	rc = check_conflicts(fd, name, mode);
	if (rc)
		image_unlock(fd);
	return rc;
}

void image_unlock(int fd)
{
	/* Unlocking what is not locked is no error: errors are ignored. */
	(void)lock_bytes(fd, F_UNLCK, PERM_BASE, NR_PERMS);
	(void)lock_bytes(fd, F_UNLCK, UNSHARED_BASE, NR_PERMS);
}
