// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only: take the helper's image locks (userspace/lock.c) on a file
 * and hold them, for lock.sh to run QEMU against.
 *
 *   lock_hold read|write|shared FILE
 *
 * Prints "locked" once the locks are held, then holds them until standard
 * input reaches its end.  On a refusal prints the helper's error line on
 * stderr and exits 1; on a usage error exits 2.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "failure.h"
#include "lock.h"

static int parse_mode(const char *s, enum image_lock_mode *mode)
{
	if (!strcmp(s, "read"))
		*mode = IMAGE_LOCK_READ;
	else if (!strcmp(s, "write"))
		*mode = IMAGE_LOCK_WRITE;
	else if (!strcmp(s, "shared"))
		*mode = IMAGE_LOCK_SHARED;
	else
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	enum image_lock_mode mode;
	char buf[256];
	int fd;

	if (argc != 3 || parse_mode(argv[1], &mode)) {
		fprintf(stderr, "usage: lock_hold read|write|shared FILE\n");
		return 2;
	}
	/* As the helper opens images: read-only, whatever the mode. */
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (image_lock(fd, argv[2], mode)) {
		fprintf(stderr, "imgfmt: %s\n", failure_text());
		return 1;
	}
	printf("locked\n");
	fflush(stdout);
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
	close(fd);
	return 0;
}
