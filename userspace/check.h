/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * imgfmt check: the QCOW2 consistency check, reported as `qemu-img check`
 * (QEMU 7.2) reports it.
 */
#ifndef IMGFMT_CHECK_H
#define IMGFMT_CHECK_H

#include <stdbool.h>

/*
 * Check the QCOW2 image path: the findings on stderr, the summary on
 * stdout (qemu-img's text, or with json its JSON object).  Exits itself
 * with qemu-img check's status when the check ran: 0 clean, 2 corruption,
 * 3 leaks only, 1 when refcounts could not be read; returns FAIL (status
 * 1, the message recorded) when the check could not be done.
 */
int check_run(const char *path, bool json);

#endif /* IMGFMT_CHECK_H */
