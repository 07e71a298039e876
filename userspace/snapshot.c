// SPDX-License-Identifier: GPL-2.0-only
/*
 * Listing the internal snapshots of a QCOW2 image in qemu-img's words, so
 * that its output and ours can be compared line by line: the columns of
 * `qemu-img snapshot -l` (QEMU 7.2) and the field names of `qemu-img info
 * --output=json`.  Names and IDs come from the image and are escaped
 * (\xNN) in the text forms, like every string `imgfmt info` prints.
 */
#include <stdio.h>
#include <time.h>

#include "disk.h"
#include "formats/qcow2.h"
#include "imgfmt.h"
#include "json.h"
#include "snapshot.h"

/*
 * A size as qemu-img prints it: three significant digits in the largest
 * binary unit that keeps the number below 1000 ("0 B", "1.5 KiB",
 * "0.98 KiB" for 1000 bytes, "64 MiB").
 */
static void qemu_size(u64 v, char *buf, size_t size)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	unsigned int i = 0;

	while (i + 1 < ARRAY_SIZE(units) && v / 1000 >= 1ULL << (10 * i))
		i++;
	snprintf(buf, size, "%0.3g %s", (double)v / (double)(1ULL << (10 * i)),
		 units[i]);
}

/* Local time, as qemu-img shows the date a snapshot was taken. */
static void qemu_date(u32 sec, char *buf, size_t size)
{
	time_t t = sec;
	struct tm tm;

	if (!localtime_r(&t, &tm) ||
	    !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, size, "%u", sec);
}

/* The guest's running time, hours:minutes:seconds.milliseconds. */
static void qemu_clock(u64 nsec, char *buf, size_t size)
{
	u64 secs = nsec / 1000000000;

	snprintf(buf, size, "%02llu:%02llu:%02llu.%03llu",
		 (unsigned long long)(secs / 3600),
		 (unsigned long long)(secs / 60 % 60),
		 (unsigned long long)(secs % 60),
		 (unsigned long long)(nsec / 1000000 % 1000));
}

/* The columns of a row, each a string. */
struct snapshot_cols {
	char id[IMGFMT_SHOWN_MAX];
	char name[IMGFMT_SHOWN_MAX];
	char vm_size[32];
	char date[64];
	char clock[64];
	char icount[24];
};

static void snapshot_cols(const struct imgfmt_qcow2_snapshot *sn,
			  struct snapshot_cols *c)
{
	shown_name(&c->id, sn->id);
	shown_name(&c->name, sn->name);
	qemu_size(sn->vm_state_size, c->vm_size, sizeof(c->vm_size));
	qemu_date(sn->date_sec, c->date, sizeof(c->date));
	qemu_clock(sn->vm_clock_nsec, c->clock, sizeof(c->clock));
	c->icount[0] = '\0';
	if (sn->has_icount)
		snprintf(c->icount, sizeof(c->icount), "%llu",
			 (unsigned long long)sn->icount);
}

/* snapshot -l */

static int print_row(void *ctx, const struct imgfmt_qcow2_snapshot *sn)
{
	struct snapshot_cols c;
	bool *first = ctx;

	if (*first) {
		printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID",
		       "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
		*first = false;
	}
	snapshot_cols(sn, &c);
	printf("%-9s %-16s %8s%20s%13s%11s\n", c.id, c.name, c.vm_size,
	       c.date, c.clock, c.icount);
	return 0;
}

/* The walk's error, as the helper reports it. */
static int walk_failed(struct image *im, int rc, const char *err)
{
	if (rc > 0)
		return rc;
	return fail("%s: %s", im->name, err ? err : strerror(-rc));
}

static int for_each_snapshot(struct image *im,
			     int (*fn)(void *ctx,
				       const struct imgfmt_qcow2_snapshot *sn),
			     void *ctx)
{
	const char *err = NULL;
	int rc;

	rc = imgfmt_qcow2_for_each_snapshot(im->img, fn, ctx, &err);
	return rc ? walk_failed(im, rc, err) : 0;
}

int snapshot_list_run(const char *path, const char *format)
{
	bool first = true;
	struct disk d;
	int rc;

	rc = disk_open(&d, path, format, 0);
	if (!rc && (d.is_desc || d.segs[0].im.ops != &imgfmt_qcow2_ops))
		rc = fail("%s: only QCOW2 images have internal snapshots",
			  d.name);
	if (!rc)
		rc = for_each_snapshot(&d.segs[0].im, print_row, &first);
	disk_close(&d);
	return rc;
}

/* info */

static int info_line(void *ctx, const struct imgfmt_qcow2_snapshot *sn)
{
	struct snapshot_cols c;

	(void)ctx;
	snapshot_cols(sn, &c);
	printf("snapshot-%u: id %s, name %s, vm-state-size %s, date %s, vm-clock %s",
	       sn->index + 1, c.id, c.name, c.vm_size, c.date, c.clock);
	if (sn->has_icount)
		printf(", icount %s", c.icount);
	if (sn->has_disk_size)
		printf(", virtual-size %llu", (unsigned long long)sn->disk_size);
	putchar('\n');
	return 0;
}

int snapshot_info_text(struct image *im)
{
	return for_each_snapshot(im, info_line, NULL);
}

/* qemu-img info's SnapshotInfo: icount only when the image records it. */
static int json_entry(void *ctx, const struct imgfmt_qcow2_snapshot *sn)
{
	struct json *j = ctx;

	json_object(j, NULL);
	json_str(j, "id", sn->id);
	json_str(j, "name", sn->name);
	json_u64(j, "vm-state-size", sn->vm_state_size);
	json_u64(j, "date-sec", sn->date_sec);
	json_u64(j, "date-nsec", sn->date_nsec);
	json_u64(j, "vm-clock-sec", sn->vm_clock_nsec / 1000000000);
	json_u64(j, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000);
	if (sn->has_icount)
		json_u64(j, "icount", sn->icount);
	json_close(j);
	return 0;
}

int snapshot_info_json(struct json *j, struct image *im)
{
	int rc;

	if (im->ops != &imgfmt_qcow2_ops || !im->info.nb_snapshots)
		return 0;
	json_array(j, "snapshots");
	rc = for_each_snapshot(im, json_entry, j);
	json_close(j);
	return rc;
}
