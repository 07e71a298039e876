/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the userspace host (uport.c) offers beyond imgfmt_port.h: image files
 * and block devices opened read-only as a struct imgfmt_dev, and control
 * over the corruption reports, for the helper, unit tests and fuzzers.
 */
#ifndef IMGFMT_UHOST_H
#define IMGFMT_UHOST_H

#include "imgfmt_port.h"

/*
 * Open path read-only and fill in dev (size and a pread-based read
 * callback).  Returns 0, or -errno; -ENOTBLK means path is neither a
 * regular file nor a block device.
 */
int uport_dev_open(struct imgfmt_dev *dev, const char *path);

/*
 * The same for a file or block device already open for reading.  On
 * success dev owns fd (uport_dev_close() closes it); on failure the caller
 * still does.
 */
int uport_dev_open_fd(struct imgfmt_dev *dev, int fd);

/*
 * Let the format code write to a device whose fd is open read-write
 * (pwrite, and fdatasync for flush); -EBADF when it is not.
 */
int uport_dev_make_writable(struct imgfmt_dev *dev);

/* Close a device opened with uport_dev_open(); safe to call twice. */
void uport_dev_close(struct imgfmt_dev *dev);

/* The open file descriptor behind dev, or -1. */
int uport_dev_fd(const struct imgfmt_dev *dev);

/*
 * imgfmt_report_corruption() prints each distinct report once to stderr
 * unless turned off here (a caller that turns the failing map() into its
 * own error message, or a fuzzer).  On by default.
 */
void uport_set_corruption_reports(bool on);

#endif /* IMGFMT_UHOST_H */
