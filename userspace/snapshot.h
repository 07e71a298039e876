/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The internal snapshots of a QCOW2 image, as `qemu-img snapshot -l` and
 * `qemu-img info` show them: `imgfmt snapshot -l`, and the snapshot lines
 * and "snapshots" array of `imgfmt info`.
 */
#ifndef IMGFMT_SNAPSHOT_H
#define IMGFMT_SNAPSHOT_H

#include <stdbool.h>

struct image;
struct json;

/* imgfmt snapshot -l: qemu-img's table, nothing without snapshots. */
int snapshot_list_run(const char *path, const char *format);

/* info: one "snapshot-N: ..." line per snapshot.  0 or FAIL. */
int snapshot_info_text(struct image *im);

/* info --output=json: "snapshots": [...], when there are any.  0 or FAIL. */
int snapshot_info_json(struct json *j, struct image *im);

#endif /* IMGFMT_SNAPSHOT_H */
