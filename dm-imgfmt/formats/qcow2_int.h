/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QCOW2 internals shared by the files of the format: the reader
 * (qcow2.c), the write side (qcow2_write.c) and the consistency check
 * (qcow2_check.c).  Layout facts come from QEMU's docs/interop/qcow2.txt.
 */
#ifndef IMGFMT_QCOW2_INT_H
#define IMGFMT_QCOW2_INT_H

#include "../imgfmt_format.h"

#define QCOW_MAGIC			0x514649fbU	/* "QFI\xfb" */

#define QCOW2_V2_HEADER_LEN		72
#define QCOW2_V3_HEADER_LEN		104
#define QCOW2_MIN_CLUSTER_BITS		9
#define QCOW2_MAX_CLUSTER_BITS		21
#define QCOW2_EXTL2_MIN_CLUSTER_BITS	14
#define QCOW2_MAX_BACKING_NAME		1023
#define QCOW2_MAX_REFTABLE_BYTES	(8ULL << 20)
#define QCOW2_MAX_L1_BYTES		(32ULL << 20)
#define QCOW2_MAX_SNAPSHOTS		65536
#define QCOW2_SNAPSHOT_HEADER_LEN	40
/* QEMU's bounds on a snapshot table: all entries, and one's extra data. */
#define QCOW2_MAX_SNAPSHOT_TABLE	(64ULL << 20)
#define QCOW2_MAX_SNAPSHOT_EXTRA	1024
/* Snapshot table entries are read through a buffer of this size. */
#define QCOW2_SNAPSHOT_CHUNK		4096
/*
 * QEMU hands offsets to functions taking signed 64-bit values, so a table
 * must end at or below this, whatever the file size.
 */
#define QCOW2_MAX_OFFSET		(U64_MAX >> 1)
#define QCOW2_MAX_BACKING_FORMAT	15
#define QCOW2_MAX_BITMAPS		65535
#define QCOW2_MAX_BITMAP_DIRECTORY	(1024ULL * QCOW2_MAX_BITMAPS)
/* Bitmap table entries: bits 9-55 the cluster, bit 0 "all ones". */
#define QCOW2_BME_OFFSET_MASK		0x00fffffffffffe00ULL
#define QCOW2_BME_RESERVED		0xff000000000001feULL
#define QCOW2_BME_ALL_ONES		BIT_ULL(0)
/* QEMU's bounds on one bitmap: its table (entries) and its bytes. */
#define QCOW2_BITMAP_MAX_TABLE		0x8000000U
#define QCOW2_BITMAP_MAX_BYTES		0x20000000ULL
#define QCOW2_BITMAP_MAX_NAME		1023
#define QCOW2_BITMAP_MIN_GRANULARITY	9
#define QCOW2_BITMAP_MAX_GRANULARITY	31
/* Bitmap directory entry flags: in use (not saved whole), auto. */
#define QCOW2_BITMAP_IN_USE		BIT(0)
#define QCOW2_BITMAP_FLAGS_KNOWN	0x3U
#define QCOW2_BITMAP_DIRTY_TRACKING	1
#define QCOW2_MAX_VIRTUAL_SIZE		BIT_ULL(62)
#define QCOW2_MAX_REFCOUNT_ORDER	6
#define QCOW2_SUBCLUSTERS		32
/*
 * L2 tables are cached in slices of this size (or whole, when smaller): a
 * random read then costs one 4 KiB read, not a whole cluster's, and the
 * cache holds 16 times as many tables' worth of hot entries.
 */
#define QCOW2_L2_SLICE			4096

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY		BIT_ULL(0)
#define QCOW2_INCOMPAT_CORRUPT		BIT_ULL(1)
#define QCOW2_INCOMPAT_DATA_FILE	BIT_ULL(2)
#define QCOW2_INCOMPAT_COMPRESSION	BIT_ULL(3)
#define QCOW2_INCOMPAT_EXTL2		BIT_ULL(4)
#define QCOW2_INCOMPAT_KNOWN		(BIT_ULL(5) - 1)
#define QCOW2_COMPAT_LAZY_REFCOUNTS	BIT_ULL(0)
#define QCOW2_AUTOCLEAR_BITMAPS		BIT_ULL(0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW	BIT_ULL(1)

#define QCOW2_CRYPT_NONE		0
#define QCOW2_CRYPT_LUKS		2

#define QCOW2_COMPRESSION_ZLIB		0
#define QCOW2_COMPRESSION_ZSTD		1

/* Header extension types. */
#define QCOW2_EXT_END			0x00000000U
#define QCOW2_EXT_BACKING_FORMAT	0xe2792acaU
#define QCOW2_EXT_FEATURE_NAMES		0x6803f857U
#define QCOW2_EXT_DATA_FILE		0x44415441U
#define QCOW2_EXT_CRYPTO_HEADER		0x0537be77U
#define QCOW2_EXT_BITMAPS		0x23852875U
#define QCOW2_FEATURE_NAME_LEN		46

/* L1 and L2 entry bits. */
#define QCOW2_OFFSET_MASK		0x00fffffffffffe00ULL	/* bits 9-55 */
#define QCOW2_L1E_RESERVED		0x7f000000000001ffULL	/* 0-8, 56-62 */
#define QCOW2_L2E_COPIED		BIT_ULL(63)
#define QCOW2_L2E_COMPRESSED		BIT_ULL(62)
#define QCOW2_L2E_ZERO			BIT_ULL(0)
#define QCOW2_L2E_RESERVED		0x3f000000000001feULL	/* 1-8, 56-61 */
#define QCOW2_DESCRIPTOR_MASK		(BIT_ULL(62) - 1)

struct qcow2_header {
	__be32 magic;
	__be32 version;
	__be64 backing_file_offset;
	__be32 backing_file_size;
	__be32 cluster_bits;
	__be64 size;
	__be32 crypt_method;
	__be32 l1_size;
	__be64 l1_table_offset;
	__be64 refcount_table_offset;
	__be32 refcount_table_clusters;
	__be32 nb_snapshots;
	__be64 snapshots_offset;
	/* Version 3 only from here on. */
	__be64 incompatible_features;
	__be64 compatible_features;
	__be64 autoclear_features;
	__be32 refcount_order;
	__be32 header_length;
	u8 compression_type;
	u8 padding[7];
} __packed;

struct qcow2_ext_header {
	__be32 type;
	__be32 length;
} __packed;

/* Where a LUKS image keeps its LUKS header. */
struct qcow2_crypto_ext {
	__be64 offset;
	__be64 length;
} __packed;

struct qcow2_bitmaps_ext {
	__be32 nb_bitmaps;
	__be32 reserved;
	__be64 directory_size;
	__be64 directory_offset;
} __packed;

/* A bitmap directory entry; its extra data and name follow. */
struct qcow2_bitmap_dirent {
	__be64 table_offset;
	__be32 table_size;
	__be32 flags;
	u8 type;
	u8 granularity_bits;
	__be16 name_size;
	__be32 extra_size;
} __packed;

/*
 * The bytes from the start of the bitmap directory entry whose fixed part
 * is d (room >= sizeof(*d) bytes before the directory's end) to the start
 * of the next one: the fixed part, the extra data and the name, padded to
 * 8.  0 when the extra data and name run past the directory's end: a
 * broken directory, to the open walk and to the check alike.  Whether the
 * padding may run past it is the caller's rule: the open walk refuses
 * that, as QEMU does; the check lets it by.
 */
static inline u64 qcow2_bitmap_dirent_len(const struct qcow2_bitmap_dirent *d,
					  u64 room)
{
	u64 len = sizeof(*d) + (u64)be32_to_cpu(d->extra_size) +
		  be16_to_cpu(d->name_size);

	return len > room ? 0 : ALIGN(len, 8);
}

struct qcow2_snapshot_header {
	__be64 l1_table_offset;
	__be32 l1_size;
	__be16 id_str_size;
	__be16 name_size;
	__be32 date_sec;
	__be32 date_nsec;
	__be64 vm_clock_nsec;
	__be32 vm_state_size;
	__be32 extra_data_size;
} __packed;

struct qcow2_feature_name {
	u8 type;
	u8 bit;
	char name[QCOW2_FEATURE_NAME_LEN];
} __packed;

struct qcow2_image {
	struct imgfmt_image img;	/* first: the shared part */
	u64 *l1;		/* CPU byte order */
	u32 l1_size;
	u32 cluster_bits;
	u32 cluster_size;
	u32 l2_bits;		/* log2 of entries per L2 table */
	u32 subcluster_bits;	/* == cluster_bits without extended L2 */
	u32 l2_slice_size;	/* bytes of L2 table per cache entry */
	bool extended_l2;
	u32 version;
	/* The external data file's device, when the image has one. */
	struct imgfmt_dev *data_dev;
	/* The snapshot table, for imgfmt_qcow2_for_each_snapshot(). */
	u64 snapshots_offset;
	u32 nb_snapshots;
	/* The bitmap directory, when the bitmaps are current (else 0). */
	u32 nb_bitmaps;
	u64 bitmap_dir_offset;
	u64 bitmap_dir_size;
	/* Open for writing: the write side's state (qcow2_write.c). */
	struct qcow2_writer *w;
};

/* Header fields in CPU order, with the version 2 defaults filled in. */
struct qcow2_fields {
	u32 version;
	u32 header_length;
	u64 backing_offset;
	u32 backing_size;
	u32 cluster_bits;
	u64 size;
	u32 crypt_method;
	u32 l1_size;
	u64 l1_offset;
	u64 reftable_offset;
	u32 reftable_clusters;
	u32 nb_snapshots;
	u64 snapshots_offset;
	u64 incompatible;
	u64 compatible;
	u64 autoclear;
	u32 refcount_order;
	u8 compression_type;
};

/*
 * Refcount entries of 2^order bits (order 0..6), as QEMU stores them:
 * below a byte, packed with the first entry in the least significant
 * bits; from a byte up, big-endian.  index is the entry's place in its
 * refcount block.
 */
static inline u64 qcow2_refcount_get(const void *block, u64 index, u32 order)
{
	const u8 *b = block;
	u32 bits, shift;

	switch (order) {
	case 3:
		return b[index];
	case 4:
		return be16_to_cpu(((const __be16 *)block)[index]);
	case 5:
		return be32_to_cpu(((const __be32 *)block)[index]);
	case 6:
		return be64_to_cpu(((const __be64 *)block)[index]);
	default:
		bits = 1U << order;
		shift = (index & ((8U >> order) - 1)) * bits;
		return (b[index >> (3 - order)] >> shift) & ((1U << bits) - 1);
	}
}

/* Store value, which the caller checked fits in 2^order bits. */
static inline void qcow2_refcount_set(void *block, u64 index, u32 order,
				      u64 value)
{
	u8 *b = block;
	u32 bits, shift, mask;

	switch (order) {
	case 3:
		b[index] = (u8)value;
		return;
	case 4:
		((__be16 *)block)[index] = cpu_to_be16((u16)value);
		return;
	case 5:
		((__be32 *)block)[index] = cpu_to_be32((u32)value);
		return;
	case 6:
		((__be64 *)block)[index] = cpu_to_be64(value);
		return;
	default:
		bits = 1U << order;
		shift = (index & ((8U >> order) - 1)) * bits;
		mask = ((1U << bits) - 1) << shift;
		b[index >> (3 - order)] = (u8)((b[index >> (3 - order)] & ~mask) |
					       ((value << shift) & mask));
		return;
	}
}

/* The fixed header of the image on dev, read and checked. */
int imgfmt_qcow2_read_head(struct imgfmt_dev *dev, struct qcow2_fields *f,
			   const char **err);

/*
 * The write side (qcow2_write.c).  writer_open checks that the image may
 * be written and loads what writes need (refcount table, the image's
 * end); the rest are the format's write ops (imgfmt_format.h).
 */
int imgfmt_qcow2_writer_open(struct qcow2_image *q,
			     const struct imgfmt_open_args *args,
			     const struct qcow2_fields *f, const char **err);
void imgfmt_qcow2_writer_close(struct qcow2_image *q);
int imgfmt_qcow2_prepare_write(struct imgfmt_image *img, u64 offset, u64 len,
			       unsigned int flags, struct imgfmt_wplan *p,
			       const char **err);
int imgfmt_qcow2_finish_write(struct imgfmt_image *img,
			      const struct imgfmt_wplan *p, unsigned int flags,
			      const char **err);
int imgfmt_qcow2_commit(struct imgfmt_image *img, const char **err);
int imgfmt_qcow2_reserve(struct imgfmt_image *img, u64 *host,
			 const char **err);
int imgfmt_qcow2_unreserve(struct imgfmt_image *img, u64 host,
			   const char **err);
int imgfmt_qcow2_prepare_reserved(struct imgfmt_image *img, u64 offset,
				  u64 host, struct imgfmt_wplan *p);
void imgfmt_qcow2_get_wstats(struct imgfmt_image *img,
			     struct imgfmt_wstats *st);

#endif /* IMGFMT_QCOW2_INT_H */
