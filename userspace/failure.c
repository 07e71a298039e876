// SPDX-License-Identifier: GPL-2.0-only
/*
 * The helper's one error line: the first failure recorded wins, every
 * caller passes FAIL or FAIL_USAGE up, and main() prints it (failure.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "failure.h"

static char error_line[1024];

static int record_failure(int status, const char *fmt, va_list ap)
{
	if (!error_line[0])
		vsnprintf(error_line, sizeof(error_line), fmt, ap);
	return status;
}

int fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record_failure(FAIL, fmt, ap);
	va_end(ap);
	return rc;
}

const char *failure_text(void)
{
	return error_line;
}

int usage_fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record_failure(FAIL_USAGE, fmt, ap);
	va_end(ap);
	return rc;
}
