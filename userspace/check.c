// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt check IMAGE: the shared QCOW2 check (formats/qcow2_check.c) with
 * qemu-img check's output and exit status, so that an initramfs without
 * QEMU can check an image and scripts can read the answer as they read
 * qemu-img's.  The image file is only read.
 */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "formats/qcow2_check.h"
#include "imgfmt_format.h"
#include "imgfmt.h"
#include "json.h"
#include "uhost.h"

/* qemu-img check's exit statuses. */
#define CHECK_EXIT_CORRUPT	2
#define CHECK_EXIT_LEAKS	3

typedef unsigned long long ull;

/* Each finding as one stderr line, in qemu-img's words where it has them. */
static void check_report(void *ctx, enum imgfmt_qcow2_finding what, u64 a,
			 u64 b, u64 c)
{
	(void)ctx;
	switch (what) {
	case IMGFMT_QCOW2_REFCOUNT_LOW:
		fprintf(stderr, "ERROR cluster %llu refcount=%llu reference=%llu\n",
			(ull)a, (ull)b, (ull)c);
		break;
	case IMGFMT_QCOW2_LEAK:
		fprintf(stderr, "Leaked cluster %llu refcount=%llu reference=%llu\n",
			(ull)a, (ull)b, (ull)c);
		break;
	case IMGFMT_QCOW2_REFCOUNT_UNREADABLE:
		fprintf(stderr, "Can't get refcount for cluster %llu\n", (ull)a);
		break;
	case IMGFMT_QCOW2_PAST_EOF:
		fprintf(stderr, "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x%llx size 0x%llx\n",
			(ull)a, (ull)b);
		break;
	case IMGFMT_QCOW2_OVERFLOW:
		fprintf(stderr, "ERROR: overflow cluster offset=0x%llx\n", (ull)a);
		break;
	case IMGFMT_QCOW2_L1_RESERVED:
		fprintf(stderr, "ERROR found L1 entry with reserved bits set: %llx\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_L2_UNALIGNED:
		fprintf(stderr, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry corrupted\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_L2_RESERVED:
		fprintf(stderr, "ERROR found l2 entry with reserved bits set: %llx\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_COMPRESSED_COPIED:
		fprintf(stderr, "ERROR: coffset=0x%llx: copied flag must never be set for compressed clusters\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_COMPRESSED_DATA_FILE:
		fprintf(stderr, "ERROR compressed cluster with data file, entry=0x%llx\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_COMPRESSED_BITMAP:
		fprintf(stderr, "ERROR compressed cluster with non-zero subcluster allocation bitmap, entry=0x%llx\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_SUBCLUSTER_BITMAP:
		fprintf(stderr, "ERROR offset=%llx: Allocated cluster has corrupted subcluster allocation bitmap\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_DATA_UNALIGNED:
		fprintf(stderr, "ERROR offset=%llx: Data cluster is not properly aligned; L2 entry corrupted.\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_ZERO_UNALIGNED:
		fprintf(stderr, "ERROR offset=%llx: Preallocated cluster is not properly aligned; L2 entry corrupted.\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_UNALLOCATED_BITMAP:
		fprintf(stderr, "ERROR: Unallocated cluster has non-zero subcluster allocation map\n");
		break;
	case IMGFMT_QCOW2_SNAPSHOTS_DATA_FILE:
		fprintf(stderr, "ERROR %llu snapshots in image with data file\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_SNAPSHOT_L1_UNALIGNED:
		fprintf(stderr, "ERROR snapshot table entry %llu l1_offset=%#llx: L1 table is not cluster aligned; snapshot table entry corrupted\n",
			(ull)a, (ull)b);
		break;
	case IMGFMT_QCOW2_SNAPSHOT_L1_TOO_LARGE:
		fprintf(stderr, "ERROR snapshot table entry %llu l1_size=%#llx: L1 table is too large; snapshot table entry corrupted\n",
			(ull)a, (ull)b);
		break;
	case IMGFMT_QCOW2_SNAPSHOT_INCOMPLETE:
		fprintf(stderr, "ERROR snapshot table entry %llu is incomplete\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_REFTABLE_RESERVED:
		fprintf(stderr, "ERROR refcount table entry %llu has reserved bits set\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_REFBLOCK_UNALIGNED:
		fprintf(stderr, "ERROR refcount block %llu is not cluster aligned; refcount table entry corrupted\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_REFBLOCK_OUTSIDE:
		fprintf(stderr, "ERROR refcount block %llu is outside image\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_REFBLOCK_SHARED:
		fprintf(stderr, "ERROR refcount block %llu refcount=%llu\n",
			(ull)a, (ull)b);
		break;
	case IMGFMT_QCOW2_COPIED_L2:
		fprintf(stderr, "ERROR OFLAG_COPIED L2 cluster: l1_index=%llu l1_entry=%llx refcount=%llu\n",
			(ull)a, (ull)b, (ull)c);
		break;
	case IMGFMT_QCOW2_COPIED_DATA:
		fprintf(stderr, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu\n",
			(ull)a, (ull)b);
		break;
	case IMGFMT_QCOW2_BITMAP_ENTRY:
		fprintf(stderr, "ERROR bitmap table entry %llx is invalid\n",
			(ull)a);
		break;
	case IMGFMT_QCOW2_BITMAPS_IGNORED:
		fprintf(stderr, "Note: the bitmaps extension is stale (autoclear bit clear): bitmaps not counted\n");
		break;
	}
}

static void check_print_text(const struct imgfmt_qcow2_check *res)
{
	if (!res->corruptions && !res->leaks && !res->check_errors)
		printf("No errors were found on the image.\n");
	if (res->corruptions)
		printf("\n%llu errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n",
		       (ull)res->corruptions);
	if (res->leaks)
		printf("\n%llu leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
		       (ull)res->leaks);
	if (res->check_errors)
		printf("\n%llu internal errors have occurred during the check.\n",
		       (ull)res->check_errors);
	if (res->total_clusters && res->allocated_clusters)
		printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
		       (ull)res->allocated_clusters, (ull)res->total_clusters,
		       100.0 * (double)res->allocated_clusters /
		       (double)res->total_clusters,
		       100.0 * (double)res->fragmented_clusters /
		       (double)res->allocated_clusters,
		       100.0 * (double)res->compressed_clusters /
		       (double)res->allocated_clusters);
	printf("Image end offset: %llu\n", (ull)res->image_end_offset);
}

/* qemu-img's field names; like it, the counts that are 0 are left out. */
static void check_print_json(const struct imgfmt_qcow2_check *res,
			     const char *path)
{
	const struct {
		const char *key;
		u64 v;
	} opt[] = {
		{ "image-end-offset", res->image_end_offset },
		{ "corruptions", res->corruptions },
		{ "leaks", res->leaks },
		{ "total-clusters", res->total_clusters },
		{ "allocated-clusters", res->allocated_clusters },
		{ "fragmented-clusters", res->fragmented_clusters },
		{ "compressed-clusters", res->compressed_clusters },
	};
	struct json j;
	size_t i;

	json_begin(&j, stdout);
	json_str(&j, "filename", path);
	json_str(&j, "format", "qcow2");
	json_u64(&j, "check-errors", res->check_errors);
	for (i = 0; i < ARRAY_SIZE(opt); i++)
		if (opt[i].v)
			json_u64(&j, opt[i].key, opt[i].v);
	json_end(&j);
}

/* Version 1 shares the magic; the check is for versions 2 and 3. */
static bool check_is_qcow2(struct imgfmt_dev *dev)
{
	u8 head[8];

	return dev->size >= sizeof(head) &&
	       !imgfmt_dev_read(dev, 0, head, sizeof(head)) &&
	       imgfmt_qcow2_ops.probe(head, sizeof(head));
}

int check_run(const char *path, bool json)
{
	char shown[IMGFMT_SHOWN_MAX];
	struct imgfmt_qcow2_check res;
	struct imgfmt_dev dev;
	const char *err = "check failed";
	int r;

	r = uport_dev_open(&dev, path);
	if (r)
		return fail("cannot open %s: %s", shown_name(&shown, path),
			    strerror(-r));
	if (!check_is_qcow2(&dev)) {
		uport_dev_close(&dev);
		return fail("%s: check is available only for qcow2 images",
			    shown_name(&shown, path));
	}
	r = imgfmt_qcow2_check(&dev, check_report, NULL, &res, &err);
	uport_dev_close(&dev);
	if (r)
		return fail("%s: cannot check: %s", shown_name(&shown, path),
			    err);
	if (json)
		check_print_json(&res, path);
	else
		check_print_text(&res);
	if (fflush(stdout) || ferror(stdout))
		return fail("write error on standard output");
	/*
	 * qemu-img's statuses 2 and 3 are not the helper's usage and failure
	 * statuses that main() knows: leave from here.
	 */
	if (res.check_errors) {
		fprintf(stderr, "imgfmt: %s: check failed\n",
			shown_name(&shown, path));
		exit(1);
	}
	if (res.corruptions)
		exit(CHECK_EXIT_CORRUPT);
	exit(res.leaks ? CHECK_EXIT_LEAKS : 0);
}
