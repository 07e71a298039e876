/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared declarations of the imgfmt command line helper.
 *
 * This header deliberately uses plain C types only: imgfmt_dm.c includes
 * the kernel's uapi headers (loop, device-mapper), whose __be64 and friends
 * clash with the userspace port's definitions, so it cannot see the format
 * headers.
 */
#ifndef IMGFMT_CLI_H
#define IMGFMT_CLI_H

/*
 * Failure handling: the function that finds a problem records one message
 * with fail() or usage_fail() and returns what they return; callers pass it
 * up.  main() prints the first message recorded as the single error line.
 */
#define FAIL		(-1)	/* exit status 1 */
#define FAIL_USAGE	(-2)	/* exit status 2 */

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif

__printf(1, 2) int fail(const char *fmt, ...);
__printf(1, 2) int usage_fail(const char *fmt, ...);

/* Size of a device-mapper name buffer, NUL included (DM_NAME_LEN). */
#define IMGFMT_DM_NAME_LEN	128

/*
 * Put the already validated image open as image_fd on a read-only loop
 * device and create the read-only device-mapper device name over it, of
 * the given length in sectors, with the target arguments that follow the
 * device ("" or " <#opt> <opt>...").  Prints the new device's path.
 * Returns 0, FAIL or FAIL_USAGE.
 */
int dm_attach_image(int image_fd, const char *image_path, const char *name,
		    unsigned long long sectors, const char *target_opts);

/*
 * Remove the imgfmt device name (or a path to it under /dev/mapper) and
 * the loop device under it unless that clears itself.  Returns 0, FAIL or
 * FAIL_USAGE.
 */
int dm_detach_device(const char *name);

/* Is name usable as a device-mapper device name?  0 or FAIL_USAGE. */
int check_dm_name(const char *name);

#endif /* IMGFMT_CLI_H */
