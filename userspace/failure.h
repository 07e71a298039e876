/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Failure handling of the imgfmt helper: the function that finds a problem
 * records one message with fail() or usage_fail() and returns what they
 * return; callers pass it up.  main() prints the first message recorded as
 * the single error line.  Every part of the helper uses this and it uses
 * nothing of theirs.
 */
#ifndef IMGFMT_FAILURE_H
#define IMGFMT_FAILURE_H

#define FAIL		(-1)	/* exit status 1 */
#define FAIL_USAGE	(-2)	/* exit status 2 */

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif

__printf(1, 2) int fail(const char *fmt, ...);
__printf(1, 2) int usage_fail(const char *fmt, ...);

/* The message recorded so far, or "" when there is none. */
const char *failure_text(void);

#endif /* IMGFMT_FAILURE_H */
