/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * imgfmt create: new QCOW2 images, with qemu-img create's command line
 * (create.c).
 */
#ifndef IMGFMT_CREATE_H
#define IMGFMT_CREATE_H

/* What create_run() returns when -h or --help asked for the help text. */
#define CREATE_HELP	1

/*
 * Run `imgfmt create` on argv ("create" first, then its options and
 * arguments, NULL-terminated): 0, CREATE_HELP, FAIL or FAIL_USAGE with
 * the error recorded.
 */
int create_run(char **argv);

#endif /* IMGFMT_CREATE_H */
