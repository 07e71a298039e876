/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QCOW2 consistency check: every host cluster's reference count as the
 * metadata implies it, compared with the stored refcounts, and the
 * COPIED flags, with the classification of `qemu-img check` (QEMU 7.2):
 * a stored refcount below the references is corruption, one above them
 * a leak.  It reads the image file only, never writes it, and needs
 * neither the backing file nor the external data file.
 */
#ifndef IMGFMT_QCOW2_CHECK_H
#define IMGFMT_QCOW2_CHECK_H

#include "../imgfmt_port.h"

/* More host clusters than this, and the check refuses the image. */
#define IMGFMT_QCOW2_CHECK_MAX_CLUSTERS	BIT_ULL(28)

/*
 * What the check found, one report each.  The comment gives the meaning
 * of the report's values a, b, c; each counts as a corruption but where
 * it says otherwise.
 */
enum imgfmt_qcow2_finding {
	/* Cluster a has refcount b, below its c references. */
	IMGFMT_QCOW2_REFCOUNT_LOW,
	/* Cluster a has refcount b, above its c references: a leak. */
	IMGFMT_QCOW2_LEAK,
	/* Cannot read cluster a's refcount (check error, not corruption). */
	IMGFMT_QCOW2_REFCOUNT_UNREADABLE,
	/* A table or cluster of b bytes at a ends past the end of the file. */
	IMGFMT_QCOW2_PAST_EOF,
	/* The cluster at a has more references than a refcount can hold. */
	IMGFMT_QCOW2_OVERFLOW,
	/* L1 entry a has reserved bits set. */
	IMGFMT_QCOW2_L1_RESERVED,
	/* L2 table at a is not cluster aligned. */
	IMGFMT_QCOW2_L2_UNALIGNED,
	/* L2 entry a has reserved bits set. */
	IMGFMT_QCOW2_L2_RESERVED,
	/* Compressed cluster at a has the COPIED flag. */
	IMGFMT_QCOW2_COMPRESSED_COPIED,
	/* L2 entry a is compressed in an image with an external data file. */
	IMGFMT_QCOW2_COMPRESSED_DATA_FILE,
	/* Compressed L2 entry a has a subcluster bitmap. */
	IMGFMT_QCOW2_COMPRESSED_BITMAP,
	/* Cluster at a has subclusters both allocated and zero. */
	IMGFMT_QCOW2_SUBCLUSTER_BITMAP,
	/* Data cluster at a is not cluster aligned. */
	IMGFMT_QCOW2_DATA_UNALIGNED,
	/* Preallocated zero cluster at a is not cluster aligned. */
	IMGFMT_QCOW2_ZERO_UNALIGNED,
	/* An unallocated cluster has allocated subclusters. */
	IMGFMT_QCOW2_UNALLOCATED_BITMAP,
	/* a internal snapshots in an image with an external data file. */
	IMGFMT_QCOW2_SNAPSHOTS_DATA_FILE,
	/* Snapshot a's L1 table offset b is not cluster aligned. */
	IMGFMT_QCOW2_SNAPSHOT_L1_UNALIGNED,
	/* Snapshot a's L1 table of b entries is too large. */
	IMGFMT_QCOW2_SNAPSHOT_L1_TOO_LARGE,
	/* Snapshot a has less extra data (b bytes) than version 3 needs. */
	IMGFMT_QCOW2_SNAPSHOT_INCOMPLETE,
	/* Refcount table entry a has reserved bits set. */
	IMGFMT_QCOW2_REFTABLE_RESERVED,
	/* Refcount block a is not cluster aligned. */
	IMGFMT_QCOW2_REFBLOCK_UNALIGNED,
	/* Refcount block a is outside the file. */
	IMGFMT_QCOW2_REFBLOCK_OUTSIDE,
	/* Refcount block a's cluster has b references, not 1. */
	IMGFMT_QCOW2_REFBLOCK_SHARED,
	/* L1 entry a (value b) has COPIED wrong: its L2 table's refcount is c. */
	IMGFMT_QCOW2_COPIED_L2,
	/* L2 entry a has COPIED wrong: its cluster's refcount is b. */
	IMGFMT_QCOW2_COPIED_DATA,
	/* Bitmap table entry a is invalid. */
	IMGFMT_QCOW2_BITMAP_ENTRY,
	/* Bitmaps not counted: the autoclear bit says they are stale (note). */
	IMGFMT_QCOW2_BITMAPS_IGNORED,
};

/* The counts, with qemu-img check's names and meaning. */
struct imgfmt_qcow2_check {
	u64 corruptions;
	u64 leaks;
	u64 check_errors;
	u64 image_end_offset;	/* past the last referenced or counted cluster */
	u64 total_clusters;	/* of the virtual disk */
	u64 allocated_clusters;	/* in the active state */
	u64 fragmented_clusters;
	u64 compressed_clusters;
};

/* Called once per finding; ctx is the caller's. */
typedef void (*imgfmt_qcow2_report_fn)(void *ctx,
				       enum imgfmt_qcow2_finding what, u64 a,
				       u64 b, u64 c);

/*
 * Check the QCOW2 image on dev.  Returns 0 when the check ran to its end
 * (res holds the counts; check_errors counts refcounts it could not
 * read), or -errno with *err set when it could not be done: not QCOW2, a
 * header or table layout QEMU refuses to open, more than
 * IMGFMT_QCOW2_CHECK_MAX_CLUSTERS clusters, no memory, a read error.
 * report may be NULL.  Memory: one counter of at most 16 bits per host
 * cluster, the refcount table, and a few clusters' worth of buffers.
 */
int imgfmt_qcow2_check(struct imgfmt_dev *dev, imgfmt_qcow2_report_fn report,
		       void *ctx, struct imgfmt_qcow2_check *res,
		       const char **err);

/*
 * The image end of the QCOW2 image on dev, into *end: the offset just
 * past the last cluster whose stored refcount is not zero (0 when there is
 * none), read from the refcount table and blocks only, which is where a
 * file can be cut without losing anything a refcount protects.  Only the
 * clusters the file holds are looked at (so *end <= the file size rounded
 * up to a cluster), from the last one down.  Refcount blocks past the end
 * of the file read as zeroes.  0, or -errno with *err
 * set (not QCOW2, a refcount table QEMU refuses, an unaligned refcount
 * block, a read error).
 */
int imgfmt_qcow2_image_end(struct imgfmt_dev *dev, u64 *end,
			   const char **err);

#endif /* IMGFMT_QCOW2_CHECK_H */
