/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Image locks that QEMU honours.
 *
 * QEMU's file driver announces what it does with an image, and what it
 * lets others do, with open file description (OFD) read locks on single
 * bytes of the file: byte 100 + i while it holds permission i, byte
 * 200 + i while it refuses to share permission i.  Before it opens an
 * image it asks whether anyone holds a byte that conflicts with its own
 * plan, and refuses ("Failed to get "write" lock") when someone does.
 * Taking the same bytes makes QEMU refuse to write an image we serve,
 * and lets us refuse an image QEMU writes.
 *
 * OFD locks belong to the open file description, not to the process: a
 * lock taken on the descriptor handed to a loop device lasts until the
 * loop device lets go of the file, whatever happens to this process.
 */
#ifndef IMGFMT_LOCK_H
#define IMGFMT_LOCK_H

/* What we do with a file, and so which bytes we lock. */
enum image_lock_mode {
	/*
	 * Read it, and refuse writers and resizers (they would change
	 * metadata under the kernel's caches): what `qemu-io -r` takes.
	 * Other readers are welcome.
	 */
	IMAGE_LOCK_READ,
	/*
	 * Read, write and grow it; refuse other writers and readers who do
	 * not let others write (`qemu-img info` among them): what a QEMU
	 * that writes an image takes.
	 */
	IMAGE_LOCK_WRITE,
	/*
	 * --force-share: say that we read it and refuse no one, without
	 * checking for others (`qemu-io -r -U`).
	 */
	IMAGE_LOCK_SHARED,
};

/*
 * Lock the open file fd (name: its escaped name, for messages) for mode.
 * Fails with one line when another open file holds a conflicting lock
 * ("NAME: is in use by another process for writing ...") or the file
 * system refuses locks, and then holds none of them.  0 or FAIL.
 */
int image_lock(int fd, const char *name, enum image_lock_mode mode);

/* Drop every lock image_lock() took on fd. */
void image_unlock(int fd);

#endif /* IMGFMT_LOCK_H */
