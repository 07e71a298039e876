// SPDX-License-Identifier: GPL-2.0-only
/*
 * QCOW2 (versions 2 and 3): header validation and cluster mapping.
 *
 * Layout facts come from QEMU's docs/interop/qcow2.txt.  Every field read
 * from the image is treated as hostile: the header is checked completely at
 * open, and each L1/L2 entry is checked when a lookup meets it, so that a
 * corrupt entry fails only the reads that touch it.
 */
#include "../imgfmt_format.h"
#include "../escape.h"
#include "../mcache.h"
#include "qcow2.h"
#include "qcow2_int.h"
#include "runs.h"

static bool qcow2_probe(const void *head, size_t len)
{
	const struct qcow2_header *h = head;

	/* Version 1 shares the magic and is formats/qcow.c's. */
	return len >= 8 && be32_to_cpu(h->magic) == QCOW_MAGIC &&
	       be32_to_cpu(h->version) != 1;
}

enum qcow2_table_shape {
	QCOW2_TABLE_OK,
	QCOW2_TABLE_TOO_LARGE,
	QCOW2_TABLE_OFFSET_INVALID,
};

/*
 * A table of n entries of entsize bytes at off, by QEMU's rule for the
 * tables its header points to: at most max_bytes long, cluster aligned
 * (even when empty) and ending at or below QCOW2_MAX_OFFSET.  Whether it
 * lies inside the file is not part of the rule.
 */
static enum qcow2_table_shape qcow2_table_shape(u64 off, u64 n, u32 entsize,
						u64 max_bytes,
						u32 cluster_size)
{
	u64 bytes = n * entsize;	/* no overflow once n is bounded */

	if (n > max_bytes / entsize)
		return QCOW2_TABLE_TOO_LARGE;
	if (bytes > QCOW2_MAX_OFFSET || off > QCOW2_MAX_OFFSET - bytes ||
	    !IS_ALIGNED(off, cluster_size))
		return QCOW2_TABLE_OFFSET_INVALID;
	return QCOW2_TABLE_OK;
}

/* 0 for a table of good shape, else -EINVAL with the message for why. */
static int qcow2_table_refusal(enum qcow2_table_shape shape,
			       const char *too_large,
			       const char *offset_invalid, const char **err)
{
	if (shape == QCOW2_TABLE_OK)
		return 0;
	*err = shape == QCOW2_TABLE_TOO_LARGE ? too_large : offset_invalid;
	return -EINVAL;
}

static void copy_name(char *dst, size_t dstlen, const u8 *src, size_t len)
{
	size_t n = min_t(size_t, len, dstlen - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void log_unknown_features(u64 unknown, const u8 *cluster, u64 ext_off,
				 u32 ext_len)
{
	const struct qcow2_feature_name *f;
	unsigned int bit, i, n = ext_len / sizeof(*f);
	/* Each byte of a name may take four to escape. */
	char name[4 * QCOW2_FEATURE_NAME_LEN + 1];

	for (bit = 0; bit < 64; bit++) {
		if (!(unknown & BIT_ULL(bit)))
			continue;
		imgfmt_escape(name, sizeof(name), "unnamed", 7);
		for (i = 0; i < n; i++) {
			f = (const void *)(cluster + ext_off + i * sizeof(*f));
			if (f->type == 0 && f->bit == bit)
				imgfmt_escape(name, sizeof(name), f->name,
					      sizeof(f->name));
		}
		imgfmt_log("qcow2: unknown incompatible feature bit %u (%s)",
			   bit, name);
	}
}

static int qcow2_read_fields(const struct qcow2_header *h,
			     struct qcow2_fields *f, const char **err)
{
	memset(f, 0, sizeof(*f));
	f->version = be32_to_cpu(h->version);
	if (f->version != 2 && f->version != 3) {
		*err = "unsupported QCOW2 version";
		return -EINVAL;
	}
	f->header_length = QCOW2_V2_HEADER_LEN;
	f->refcount_order = 4;
	if (f->version == 3) {
		f->header_length = be32_to_cpu(h->header_length);
		f->incompatible = be64_to_cpu(h->incompatible_features);
		f->compatible = be64_to_cpu(h->compatible_features);
		f->autoclear = be64_to_cpu(h->autoclear_features);
		f->refcount_order = be32_to_cpu(h->refcount_order);
		if (f->header_length > offsetof(struct qcow2_header,
						compression_type))
			f->compression_type = h->compression_type;
	}
	f->backing_offset = be64_to_cpu(h->backing_file_offset);
	f->backing_size = be32_to_cpu(h->backing_file_size);
	f->cluster_bits = be32_to_cpu(h->cluster_bits);
	f->size = be64_to_cpu(h->size);
	f->crypt_method = be32_to_cpu(h->crypt_method);
	f->l1_size = be32_to_cpu(h->l1_size);
	f->l1_offset = be64_to_cpu(h->l1_table_offset);
	f->reftable_offset = be64_to_cpu(h->refcount_table_offset);
	f->reftable_clusters = be32_to_cpu(h->refcount_table_clusters);
	f->nb_snapshots = be32_to_cpu(h->nb_snapshots);
	f->snapshots_offset = be64_to_cpu(h->snapshots_offset);
	return 0;
}

/* Checks that need only the fixed header. */
static int qcow2_check_fields(const struct qcow2_fields *f, const char **err)
{
	bool has_bit, not_zlib;
	u32 cluster_size;

	if (f->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    f->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		*err = "QCOW2 cluster size out of range";
		return -EINVAL;
	}
	cluster_size = 1U << f->cluster_bits;
	/*
	 * The specification wants a multiple of 8, which QEMU does not check:
	 * stricter, as extensions start at the header's end and are 8-byte
	 * aligned.
	 */
	if (f->version == 3 &&
	    (f->header_length < QCOW2_V3_HEADER_LEN ||
	     f->header_length % 8 || f->header_length > cluster_size)) {
		*err = "QCOW2 header length invalid";
		return -EINVAL;
	}
	if (f->refcount_order > QCOW2_MAX_REFCOUNT_ORDER) {
		*err = "QCOW2 refcount order out of range";
		return -EINVAL;
	}
	if (f->crypt_method > QCOW2_CRYPT_LUKS) {
		*err = "QCOW2 unknown encryption method";
		return -EINVAL;
	}
	/* Without an offset there is no name, whatever its size says. */
	if (f->backing_offset && f->backing_size > QCOW2_MAX_BACKING_NAME) {
		*err = "QCOW2 backing file name too long";
		return -EINVAL;
	}
	if (f->backing_offset &&
	    (f->backing_offset > cluster_size ||
	     f->backing_size > cluster_size - f->backing_offset)) {
		*err = "QCOW2 backing file name offset invalid";
		return -EINVAL;
	}
	if ((f->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) &&
	    !(f->incompatible & QCOW2_INCOMPAT_DATA_FILE)) {
		*err = "QCOW2 raw external data bit without an external data file";
		return -EINVAL;
	}
	if (f->compression_type > QCOW2_COMPRESSION_ZSTD) {
		*err = "QCOW2 unknown compression type";
		return -EINVAL;
	}
	has_bit = f->incompatible & QCOW2_INCOMPAT_COMPRESSION;
	not_zlib = f->compression_type != QCOW2_COMPRESSION_ZLIB;
	if (has_bit != not_zlib) {
		*err = "QCOW2 compression type does not match its feature bit";
		return -EINVAL;
	}
	if ((f->incompatible & QCOW2_INCOMPAT_EXTL2) &&
	    f->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
		*err = "QCOW2 extended L2 entries need clusters of 16 KiB or more";
		return -EINVAL;
	}
	return 0;
}

/*
 * Refcount and snapshot tables: a reader needs neither, but QEMU refuses an
 * image whose header points at them out of its bounds, and so do we.
 */
static int qcow2_check_tables(const struct qcow2_fields *f, const char **err)
{
	u32 cluster_size = 1U << f->cluster_bits;
	int r;

	if (!f->reftable_clusters) {
		*err = "QCOW2 image has no refcount table";
		return -EINVAL;
	}
	r = qcow2_table_refusal(qcow2_table_shape(f->reftable_offset,
						  f->reftable_clusters,
						  cluster_size,
						  QCOW2_MAX_REFTABLE_BYTES,
						  cluster_size),
				"QCOW2 refcount table too large",
				"QCOW2 refcount table offset invalid", err);
	if (r)
		return r;
	/* The offset counts even when there are no snapshots. */
	return qcow2_table_refusal(qcow2_table_shape(f->snapshots_offset,
						     f->nb_snapshots,
						     QCOW2_SNAPSHOT_HEADER_LEN,
						     (u64)QCOW2_SNAPSHOT_HEADER_LEN *
						     QCOW2_MAX_SNAPSHOTS,
						     cluster_size),
				   "QCOW2 too many snapshots",
				   "QCOW2 snapshot table offset invalid", err);
}

static u32 qcow2_l2_bits(u32 cluster_bits, bool extended_l2)
{
	/* An L2 table is one cluster of 8-byte (16 with subclusters) entries. */
	return cluster_bits - (extended_l2 ? 4 : 3);
}

/*
 * The L1 entries a virtual size needs, into *needed; false when the size
 * is beyond what QEMU maps (2^62 bytes, or an L1 table over 32 MiB).
 */
static bool qcow2_l1_needed(u64 size, u32 cluster_bits, bool ext,
			    u64 *needed)
{
	u32 span_bits = cluster_bits + qcow2_l2_bits(cluster_bits, ext);

	if (size > QCOW2_MAX_VIRTUAL_SIZE)
		return false;
	*needed = (size >> span_bits) + !!(size & ((1ULL << span_bits) - 1));
	return *needed <= QCOW2_MAX_L1_BYTES / 8;
}

static int qcow2_check_l1(const struct qcow2_fields *f,
			  const struct imgfmt_dev *dev, const char **err)
{
	bool ext = f->incompatible & QCOW2_INCOMPAT_EXTL2;
	u64 needed;

	if (!qcow2_l1_needed(f->size, f->cluster_bits, ext, &needed)) {
		*err = "QCOW2 virtual size too large";
		return -EINVAL;
	}
	if ((u64)f->l1_size > QCOW2_MAX_L1_BYTES / 8) {
		*err = "QCOW2 L1 table too large";
		return -EINVAL;
	}
	if (f->l1_size < needed) {
		*err = "QCOW2 L1 table too small for the virtual size";
		return -EINVAL;
	}
	/* Even an empty table's offset must be aligned, as QEMU has it. */
	if (!IS_ALIGNED(f->l1_offset, 1U << f->cluster_bits)) {
		*err = "QCOW2 L1 table offset not aligned to a cluster";
		return -EINVAL;
	}
	if (f->l1_offset > QCOW2_MAX_OFFSET - (u64)f->l1_size * 8) {
		*err = "QCOW2 L1 table offset invalid";
		return -EINVAL;
	}
	/*
	 * Stricter than QEMU, which reads zeroes past the end of the file:
	 * the table is read whole at open and kept, so it must be there.
	 */
	if (f->l1_size &&
	    !imgfmt_dev_has(dev, f->l1_offset, (u64)f->l1_size * 8)) {
		*err = "QCOW2 L1 table offset beyond end of device";
		return -EINVAL;
	}
	return 0;
}

/*
 * The bitmaps extension (persistent dirty bitmaps): its length always
 * counts; its fields only when the autoclear bit says a program that knew
 * bitmaps wrote the image last (otherwise the bitmaps are stale and QEMU
 * ignores them).  The directory is walked later (qcow2_check_bitmaps()).
 */
static int qcow2_check_bitmaps_ext(struct qcow2_image *q,
				   const struct qcow2_fields *f,
				   const u8 *data, u32 len, const char **err)
{
	const struct qcow2_bitmaps_ext *b = (const void *)data;
	u32 nb;

	if (len != sizeof(*b)) {
		*err = "QCOW2 bitmaps extension length invalid";
		return -EINVAL;
	}
	if (!(f->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	nb = be32_to_cpu(b->nb_bitmaps);
	if (b->reserved) {
		*err = "QCOW2 bitmaps extension reserved field not zero";
		return -EINVAL;
	}
	if (!nb || nb > QCOW2_MAX_BITMAPS) {
		*err = "QCOW2 bitmap count out of range";
		return -EINVAL;
	}
	if (!IS_ALIGNED(be64_to_cpu(b->directory_offset),
			1U << f->cluster_bits)) {
		*err = "QCOW2 bitmap directory offset not aligned to a cluster";
		return -EINVAL;
	}
	if (be64_to_cpu(b->directory_size) > QCOW2_MAX_BITMAP_DIRECTORY) {
		*err = "QCOW2 bitmap directory too large";
		return -EINVAL;
	}
	q->nb_bitmaps = nb;
	q->bitmap_dir_offset = be64_to_cpu(b->directory_offset);
	q->bitmap_dir_size = be64_to_cpu(b->directory_size);
	return 0;
}

/* The LUKS header's place: only in LUKS images, and cluster aligned. */
static int qcow2_check_crypto_ext(const struct qcow2_fields *f,
				  const u8 *data, u32 len, const char **err)
{
	const struct qcow2_crypto_ext *c = (const void *)data;

	if (f->crypt_method != QCOW2_CRYPT_LUKS) {
		*err = "QCOW2 encryption header extension without LUKS encryption";
		return -EINVAL;
	}
	if (len != sizeof(*c)) {
		*err = "QCOW2 encryption header extension length invalid";
		return -EINVAL;
	}
	if (!IS_ALIGNED(be64_to_cpu(c->offset), 1U << f->cluster_bits)) {
		*err = "QCOW2 encryption header offset not aligned to a cluster";
		return -EINVAL;
	}
	return 0;
}

/* One extension of a type this code knows, its len bytes at data. */
static int qcow2_parse_extension(struct qcow2_image *q,
				 const struct qcow2_fields *f, u32 type,
				 const u8 *data, u32 len, const char **err)
{
	switch (type) {
	case QCOW2_EXT_BACKING_FORMAT:
		/* QEMU keeps the format name in 16 bytes, NUL included. */
		if (len > QCOW2_MAX_BACKING_FORMAT) {
			*err = "QCOW2 backing format name too long";
			return -EINVAL;
		}
		copy_name(q->img.info.backing_format,
			  sizeof(q->img.info.backing_format), data, len);
		return 0;
	case QCOW2_EXT_DATA_FILE:
		/* Cut short, the name would lead the helper to another file. */
		if (len >= sizeof(q->img.info.data_file)) {
			*err = "QCOW2 external data file name too long";
			return -EINVAL;
		}
		copy_name(q->img.info.data_file, sizeof(q->img.info.data_file), data,
			  len);
		return 0;
	case QCOW2_EXT_BITMAPS:
		return qcow2_check_bitmaps_ext(q, f, data, len, err);
	case QCOW2_EXT_CRYPTO_HEADER:
		return qcow2_check_crypto_ext(f, data, len, err);
	default:
		/* Feature names are looked at only to log unknown bits. */
		return 0;
	}
}

/*
 * Walk the header extensions in the first cluster.  They end at the
 * backing file name, if any, or at the end of the cluster; every one,
 * the end marker included, must fit before that.  Unknown types are
 * skipped, as QEMU does.
 */
static int qcow2_parse_extensions(struct qcow2_image *q,
				  const struct qcow2_fields *f,
				  const u8 *cluster, u32 cluster_len,
				  u64 *names_off, u32 *names_len,
				  const char **err)
{
	u64 pos = f->header_length;
	u64 end = f->backing_offset ? f->backing_offset : cluster_len;
	const struct qcow2_ext_header *eh;
	u32 type, len;
	int r;

	end = min_t(u64, end, cluster_len);
	while (pos < end) {
		if (end - pos < sizeof(*eh)) {
			*err = "QCOW2 header extension invalid";
			return -EINVAL;
		}
		eh = (const void *)(cluster + pos);
		type = be32_to_cpu(eh->type);
		len = be32_to_cpu(eh->length);
		pos += sizeof(*eh);
		/* QEMU checks the length first, the end marker's too. */
		if (len > end - pos) {
			*err = "QCOW2 header extension invalid";
			return -EINVAL;
		}
		if (type == QCOW2_EXT_END)
			return 0;
		r = qcow2_parse_extension(q, f, type, cluster + pos, len, err);
		if (r)
			return r;
		if (type == QCOW2_EXT_FEATURE_NAMES) {
			*names_off = pos;
			*names_len = len;
		}
		pos += ALIGN((u64)len, 8);
	}
	return 0;
}

/*
 * The internal snapshot table: nb_snapshots variable-sized entries from
 * snapshots_offset, each 8-byte aligned: a fixed header, extra data, the
 * ID string and the name.  The walker checks every entry at open, as QEMU
 * does, finds the snapshot a table asks for, and lists them for the
 * helper.
 *
 * It reads the table through one small buffer, so memory stays constant
 * and time is bounded by QEMU's limits (at most 65536 entries, 64 MiB in
 * all): a few thousand reads of QCOW2_SNAPSHOT_CHUNK bytes at worst.
 * Past the end of the device the table reads as zeroes, as QEMU reads past
 * the end of a file (a loop device drops a partial last sector).
 */
struct qcow2_snapshot {
	u64 entry_offset;	/* device offset of the entry's header */
	u64 l1_offset;
	u32 l1_size;
	u32 extra_size;
	u16 id_size;
	u16 name_size;
	u32 date_sec;
	u32 date_nsec;
	u64 vm_clock_nsec;
	u64 vm_state_size;
	/* From the extra data, when it is long enough to hold them. */
	bool has_disk_size;
	u64 disk_size;
	bool has_icount;
	u64 icount;
};

/* The extra data this code knows: its first 24 bytes. */
struct qcow2_snapshot_extra {
	__be64 vm_state_size_large;
	__be64 disk_size;
	__be64 icount;
} __packed;

/* An ID or name has a 16-bit length. */
#define QCOW2_MAX_SNAPSHOT_STR		65535
/* Strings are compared and copied in pieces of at most this many bytes. */
#define QCOW2_SNAPSHOT_PIECE		512

struct qcow2_snapshot_iter {
	struct imgfmt_dev *dev;
	u32 cluster_size;
	u32 left;		/* entries not walked yet */
	u64 start;		/* the table's offset */
	u64 pos;		/* where the next entry starts */
	u8 *buf;		/* QCOW2_SNAPSHOT_CHUNK bytes of the device */
	u64 buf_off;
	bool buf_valid;
	const char *read_err;	/* what a failed read says */
};

static int qcow2_snapshot_iter_init(struct qcow2_snapshot_iter *it,
				    struct imgfmt_dev *dev, u32 cluster_size,
				    u32 nb_snapshots, u64 offset,
				    const char **err)
{
	memset(it, 0, sizeof(*it));
	it->dev = dev;
	it->cluster_size = cluster_size;
	it->left = nb_snapshots;
	it->start = offset;
	it->pos = offset;
	it->read_err = "cannot read the QCOW2 snapshot table";
	if (!it->left)
		return 0;
	it->buf = kmalloc(QCOW2_SNAPSHOT_CHUNK, GFP_KERNEL);
	if (!it->buf) {
		*err = "cannot allocate memory for the QCOW2 snapshot table";
		return -ENOMEM;
	}
	return 0;
}

static void qcow2_snapshot_iter_exit(struct qcow2_snapshot_iter *it)
{
	kfree(it->buf);
	it->buf = NULL;
}

/* Copy len (at most 512) bytes at device offset off out of the buffer. */
static int qcow2_snapshot_read(struct qcow2_snapshot_iter *it, u64 off,
			       void *dst, u32 len, const char **err)
{
	u64 avail;
	int r;

	if (!it->buf_valid || off < it->buf_off ||
	    off + len > it->buf_off + QCOW2_SNAPSHOT_CHUNK) {
		/* Sector aligned, so that the read goes straight through. */
		it->buf_off = off & ~511ULL;
		memset(it->buf, 0, QCOW2_SNAPSHOT_CHUNK);
		avail = it->buf_off < it->dev->size ?
			it->dev->size - it->buf_off : 0;
		r = avail ? imgfmt_dev_read(it->dev, it->buf_off, it->buf,
					    min_t(u64, avail,
						  QCOW2_SNAPSHOT_CHUNK)) : 0;
		if (r) {
			it->buf_valid = false;
			*err = it->read_err;
			return r;
		}
		it->buf_valid = true;
	}
	memcpy(dst, it->buf + (off - it->buf_off), len);
	return 0;
}

/*
 * A snapshot's own L1 table, by the rule for the active one.  QEMU checks
 * it only when a snapshot is loaded or deleted, and `qemu-img check`
 * counts a bad one as corruption; stricter here because reading a
 * snapshot will map it.
 */
static int qcow2_check_snapshot_l1(const struct qcow2_snapshot *sn,
				   u32 cluster_size, const char **err)
{
	return qcow2_table_refusal(qcow2_table_shape(sn->l1_offset,
						     sn->l1_size, 8,
						     QCOW2_MAX_L1_BYTES,
						     cluster_size),
				   "QCOW2 snapshot L1 table too large",
				   "QCOW2 snapshot L1 table offset invalid",
				   err);
}

/*
 * The extra data fields QEMU knows, each present only when the extra data
 * reaches its end: the 64-bit VM state size, the snapshot's virtual disk
 * size and its instruction count.
 */
static int qcow2_snapshot_read_extra(struct qcow2_snapshot_iter *it,
				     struct qcow2_snapshot *sn,
				     const char **err)
{
	struct qcow2_snapshot_extra x;
	u32 n = min_t(u32, sn->extra_size, sizeof(x));
	int r;

	memset(&x, 0, sizeof(x));
	if (n) {
		r = qcow2_snapshot_read(it, sn->entry_offset +
					QCOW2_SNAPSHOT_HEADER_LEN, &x, n, err);
		if (r)
			return r;
	}
	if (n >= 8)
		sn->vm_state_size = be64_to_cpu(x.vm_state_size_large);
	sn->has_disk_size = n >= 16;
	sn->disk_size = be64_to_cpu(x.disk_size);
	/* QEMU's "none" is all ones, also when stored. */
	sn->icount = be64_to_cpu(x.icount);
	sn->has_icount = n >= 24 && sn->icount != U64_MAX;
	return 0;
}

/* The next entry, checked: 1, 0 when there are no more, or -errno. */
static int qcow2_snapshot_next(struct qcow2_snapshot_iter *it,
			       struct qcow2_snapshot *sn, const char **err)
{
	struct qcow2_snapshot_header h;
	u64 next;
	int r;

	if (!it->left)
		return 0;
	/*
	 * pos is at most 64 MiB past start, itself at most 2^63: no sum
	 * below can overflow.
	 */
	memset(sn, 0, sizeof(*sn));
	sn->entry_offset = ALIGN(it->pos, 8);
	r = qcow2_snapshot_read(it, sn->entry_offset, &h, sizeof(h), err);
	if (r)
		return r;
	sn->l1_offset = be64_to_cpu(h.l1_table_offset);
	sn->l1_size = be32_to_cpu(h.l1_size);
	sn->extra_size = be32_to_cpu(h.extra_data_size);
	sn->id_size = be16_to_cpu(h.id_str_size);
	sn->name_size = be16_to_cpu(h.name_size);
	sn->date_sec = be32_to_cpu(h.date_sec);
	sn->date_nsec = be32_to_cpu(h.date_nsec);
	sn->vm_clock_nsec = be64_to_cpu(h.vm_clock_nsec);
	sn->vm_state_size = be32_to_cpu(h.vm_state_size);
	if (sn->extra_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
		*err = "QCOW2 snapshot extra data too large";
		return -EINVAL;
	}
	next = sn->entry_offset + sizeof(h) + sn->extra_size + sn->id_size +
	       sn->name_size;
	if (next - it->start > QCOW2_MAX_SNAPSHOT_TABLE) {
		*err = "QCOW2 snapshot table too large";
		return -EINVAL;
	}
	r = qcow2_check_snapshot_l1(sn, it->cluster_size, err);
	if (!r)
		r = qcow2_snapshot_read_extra(it, sn, err);
	if (r)
		return r;
	it->pos = next;
	it->left--;
	return 1;
}

/* Where the entry's ID string starts, and its name. */
static u64 qcow2_snapshot_id_offset(const struct qcow2_snapshot *sn)
{
	return sn->entry_offset + QCOW2_SNAPSHOT_HEADER_LEN + sn->extra_size;
}

static u64 qcow2_snapshot_name_offset(const struct qcow2_snapshot *sn)
{
	return qcow2_snapshot_id_offset(sn) + sn->id_size;
}

/*
 * Does the string of size bytes at off read as want?  QEMU reads it into a
 * C string, so it ends at its first NUL byte: "ab\0cd" is "ab".
 */
static int qcow2_snapshot_str_is(struct qcow2_snapshot_iter *it, u64 off,
				 u32 size, const char *want, size_t want_len,
				 bool *match, const char **err)
{
	u8 piece[QCOW2_SNAPSHOT_PIECE];
	size_t done = 0, n;
	int r;

	*match = false;
	if (want_len > size)
		return 0;
	while (done < want_len) {
		n = min_t(size_t, want_len - done, sizeof(piece));
		r = qcow2_snapshot_read(it, off + done, piece, n, err);
		if (r)
			return r;
		if (memcmp(piece, want + done, n))
			return 0;
		done += n;
	}
	if (want_len < size) {
		r = qcow2_snapshot_read(it, off + want_len, piece, 1, err);
		if (r)
			return r;
		if (piece[0])
			return 0;
	}
	*match = true;
	return 0;
}

/*
 * The snapshot a table asks for, as QEMU finds it: the first entry whose
 * ID is want, else the first whose name is.
 */
struct qcow2_snapshot_pick {
	const char *want;	/* NULL: none asked for */
	size_t want_len;
	bool by_id, by_name;
	struct qcow2_snapshot id_match, name_match;
};

static int qcow2_snapshot_consider(struct qcow2_snapshot_iter *it,
				   const struct qcow2_snapshot *sn,
				   struct qcow2_snapshot_pick *pick,
				   const char **err)
{
	bool match;
	int r;

	if (!pick->want || pick->by_id)
		return 0;
	r = qcow2_snapshot_str_is(it, qcow2_snapshot_id_offset(sn),
				  sn->id_size, pick->want, pick->want_len,
				  &match, err);
	if (r)
		return r;
	if (match) {
		pick->by_id = true;
		pick->id_match = *sn;
		return 0;
	}
	if (pick->by_name)
		return 0;
	r = qcow2_snapshot_str_is(it, qcow2_snapshot_name_offset(sn),
				  sn->name_size, pick->want, pick->want_len,
				  &match, err);
	if (!r && match) {
		pick->by_name = true;
		pick->name_match = *sn;
	}
	return r;
}

/*
 * Walk the whole snapshot table once, so that a bad entry fails the load,
 * and find the snapshot pick asks for on the way.
 */
static int qcow2_check_snapshots(struct imgfmt_dev *dev,
				 const struct qcow2_fields *f,
				 struct qcow2_snapshot_pick *pick,
				 const char **err)
{
	struct qcow2_snapshot_iter it;
	struct qcow2_snapshot sn;
	int r;

	r = qcow2_snapshot_iter_init(&it, dev, 1U << f->cluster_bits,
				     f->nb_snapshots, f->snapshots_offset,
				     err);
	if (r)
		return r;
	while ((r = qcow2_snapshot_next(&it, &sn, err)) > 0) {
		r = qcow2_snapshot_consider(&it, &sn, pick, err);
		if (r)
			break;
	}
	qcow2_snapshot_iter_exit(&it);
	return r;
}

/*
 * One bitmap directory entry, by QEMU's constraints: a table of 1 to
 * 2^27 entries at a cluster aligned offset, a granularity of 2^9 to 2^31
 * bytes, known flags and type, a name of at most 1023 bytes, at most
 * 512 MiB of bitmap, and one not in use covering the whole disk.
 */
static bool qcow2_bitmap_entry_ok(const struct qcow2_fields *f,
				  const struct qcow2_bitmap_dirent *d)
{
	u64 off = be64_to_cpu(d->table_offset);
	u32 n = be32_to_cpu(d->table_size), flags = be32_to_cpu(d->flags);
	u64 bytes = (u64)n << f->cluster_bits;

	if (!n || n > QCOW2_BITMAP_MAX_TABLE || !off ||
	    !IS_ALIGNED(off, 1ULL << f->cluster_bits) ||
	    d->granularity_bits < QCOW2_BITMAP_MIN_GRANULARITY ||
	    d->granularity_bits > QCOW2_BITMAP_MAX_GRANULARITY ||
	    (flags & ~QCOW2_BITMAP_FLAGS_KNOWN) ||
	    be16_to_cpu(d->name_size) > QCOW2_BITMAP_MAX_NAME ||
	    d->type != QCOW2_BITMAP_DIRTY_TRACKING ||
	    bytes > QCOW2_BITMAP_MAX_BYTES)
		return false;
	/*
	 * At most 2^29 bytes of 2^31-byte bits: within 2^63.  QEMU measures
	 * the disk in whole sectors.
	 */
	return (flags & QCOW2_BITMAP_IN_USE) ||
	       (f->size & ~511ULL) <= (bytes * 8) << d->granularity_bits;
}

/*
 * Whether QEMU loads the bitmap directory entry whose fixed part is d,
 * room bytes before the directory's end: 0 and the bytes to the next
 * entry in *len, or -EINVAL and in *why the first thing QEMU refuses.
 */
static int qcow2_bitmap_entry_load(const struct qcow2_fields *f,
				   const struct qcow2_bitmap_dirent *d,
				   u64 room, u64 *len, const char **why)
{
	*len = qcow2_bitmap_dirent_len(d, room);
	/* QEMU wants the last entry's padding inside the directory too. */
	if (!*len || *len > room) {
		*why = "QCOW2 bitmap directory broken";
		return -EINVAL;
	}
	if (be32_to_cpu(d->extra_size)) {
		*why = "QCOW2 bitmap extra data not supported";
		return -EINVAL;
	}
	if (!qcow2_bitmap_entry_ok(f, d)) {
		*why = "QCOW2 bitmap directory entry invalid";
		return -EINVAL;
	}
	return 0;
}

/*
 * The bitmap directory, when the bitmaps are current: QEMU reads it at
 * open and refuses an image whose directory is broken, and so do we,
 * although nothing here uses a bitmap.  It holds exactly the entries the
 * extension counts, each a fixed part, extra data (which QEMU refuses)
 * and a name, padded to 8 bytes, and nothing else.
 */
static int qcow2_check_bitmaps(struct qcow2_image *q,
			       const struct qcow2_fields *f, const char **err)
{
	u64 pos = q->bitmap_dir_offset, end = pos + q->bitmap_dir_size, len;
	const char *why = "QCOW2 bitmap directory broken";
	struct qcow2_snapshot_iter it;
	struct qcow2_bitmap_dirent d;
	u32 seen = 0;
	int r;

	/*
	 * Nothing here reads a bitmap: a directory past the device's end is
	 * not ours to judge (qemu-img puts a new one at the file's end, whose
	 * last partial sector a loop device hides).  The extension bounded
	 * its size to 64 MiB.
	 */
	if (!q->nb_bitmaps ||
	    !imgfmt_dev_has(q->img.dev, pos, q->bitmap_dir_size))
		return 0;
	r = qcow2_snapshot_iter_init(&it, q->img.dev, 1U << f->cluster_bits,
				     q->nb_bitmaps, pos, err);
	if (r)
		return r;
	it.read_err = "cannot read the QCOW2 bitmap directory";
	r = -EINVAL;
	if (pos == end)
		goto out;
	while (pos < end) {
		if (end - pos < sizeof(d))
			goto out;
		if (++seen > q->nb_bitmaps) {
			why = "QCOW2 bitmap directory holds more bitmaps than its extension counts";
			goto out;
		}
		r = qcow2_snapshot_read(&it, pos, &d, sizeof(d), &why);
		if (r)
			goto out;
		r = qcow2_bitmap_entry_load(f, &d, end - pos, &len, &why);
		if (r)
			goto out;
		r = -EINVAL;
		pos += len;
	}
	if (seen < q->nb_bitmaps)
		why = "QCOW2 bitmap directory holds fewer bitmaps than its extension counts";
	else
		r = 0;
out:
	qcow2_snapshot_iter_exit(&it);
	if (r)
		*err = why;
	return r;
}

/* Copy the string of size bytes at off into dst (size + 1 bytes). */
static int qcow2_snapshot_copy_str(struct qcow2_snapshot_iter *it, u64 off,
				   u32 size, char *dst, const char **err)
{
	u32 done = 0, n;
	int r;

	while (done < size) {
		n = min_t(u32, size - done, QCOW2_SNAPSHOT_PIECE);
		r = qcow2_snapshot_read(it, off + done, dst + done, n, err);
		if (r)
			return r;
		done += n;
	}
	dst[size] = '\0';
	return 0;
}

static int qcow2_snapshot_report(struct qcow2_snapshot_iter *it,
				 const struct qcow2_snapshot *sn, u32 index,
				 char *id, char *name,
				 int (*fn)(void *ctx,
					   const struct imgfmt_qcow2_snapshot *s),
				 void *ctx, const char **err)
{
	struct imgfmt_qcow2_snapshot out = {
		.index = index,
		.l1_offset = sn->l1_offset,
		.l1_size = sn->l1_size,
		.vm_state_size = sn->vm_state_size,
		.date_sec = sn->date_sec,
		.date_nsec = sn->date_nsec,
		.vm_clock_nsec = sn->vm_clock_nsec,
		.has_disk_size = sn->has_disk_size,
		.disk_size = sn->disk_size,
		.has_icount = sn->has_icount,
		.icount = sn->icount,
		.id = id,
		.name = name,
	};
	int r;

	r = qcow2_snapshot_copy_str(it, qcow2_snapshot_id_offset(sn),
				    sn->id_size, id, err);
	if (!r)
		r = qcow2_snapshot_copy_str(it, qcow2_snapshot_name_offset(sn),
					    sn->name_size, name, err);
	return r ? r : fn(ctx, &out);
}

int imgfmt_qcow2_for_each_snapshot(struct imgfmt_image *img,
				   int (*fn)(void *ctx,
					     const struct imgfmt_qcow2_snapshot *sn),
				   void *ctx, const char **err)
{
	struct qcow2_snapshot_iter it;
	struct qcow2_snapshot sn;
	struct qcow2_image *q;
	char *id, *name;
	u32 index = 0;
	int r;

	if (!img || img->ops != &imgfmt_qcow2_ops)
		return 0;
	q = container_of(img, struct qcow2_image, img);
	id = imgfmt_alloc_large(2 * (QCOW2_MAX_SNAPSHOT_STR + 1));
	if (!id) {
		*err = "cannot allocate memory for the QCOW2 snapshot table";
		return -ENOMEM;
	}
	name = id + QCOW2_MAX_SNAPSHOT_STR + 1;
	r = qcow2_snapshot_iter_init(&it, img->dev, q->cluster_size,
				     q->nb_snapshots, q->snapshots_offset, err);
	while (!r && (r = qcow2_snapshot_next(&it, &sn, err)) > 0)
		r = qcow2_snapshot_report(&it, &sn, index++, id, name, fn, ctx,
					  err);
	qcow2_snapshot_iter_exit(&it);
	imgfmt_free_large(id);
	return r;
}

static void qcow2_fill_info(struct qcow2_image *q, const struct qcow2_fields *f)
{
	struct imgfmt_info *info = &q->img.info;

	info->format = "qcow2";
	info->version = f->version;
	info->virtual_size = f->size;
	info->cluster_size = 1U << f->cluster_bits;
	info->refcount_bits = 1U << f->refcount_order;
	info->incompatible_features = f->incompatible;
	info->compatible_features = f->compatible;
	info->autoclear_features = f->autoclear;
	info->dirty = f->incompatible & QCOW2_INCOMPAT_DIRTY;
	info->corrupt = f->incompatible & QCOW2_INCOMPAT_CORRUPT;
	info->extended_l2 = f->incompatible & QCOW2_INCOMPAT_EXTL2;
	info->lazy_refcounts = f->compatible & QCOW2_COMPAT_LAZY_REFCOUNTS;
	info->compression = f->compression_type == QCOW2_COMPRESSION_ZSTD ?
			    IMGFMT_COMP_ZSTD : IMGFMT_COMP_DEFLATE;
	info->nb_snapshots = f->nb_snapshots;
	info->l1_entries = f->l1_size;
	info->l1_offset = f->l1_offset;
	info->encrypted = f->crypt_method != QCOW2_CRYPT_NONE;
	info->data_file_raw = f->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
}

/* Features a reader cannot serve yet: refused by name. */
static int qcow2_check_supported(const struct imgfmt_open_args *args,
				 const struct qcow2_fields *f, const char **err)
{
	if (f->crypt_method != QCOW2_CRYPT_NONE) {
		*err = "QCOW2 encrypted images are not supported yet";
		return -EOPNOTSUPP;
	}
	/* Without its backing file, unallocated clusters would read wrong. */
	if (f->backing_offset && f->backing_size && !args->has_lower) {
		*err = "QCOW2 backing file not given as a lower layer";
		return -EINVAL;
	}
	return 0;
}

/*
 * Incompatible bit 2 puts the guest clusters in an external data file,
 * which the caller must give (QEMU refuses such an image without one);
 * a data file for an image without the bit is refused too, as QEMU
 * does.  Whether the image names the file (the data_file extension) is
 * the helper's concern: it opens the file by that name.
 */
static int qcow2_check_data_file(struct qcow2_image *q,
				 const struct imgfmt_open_args *args,
				 const struct qcow2_fields *f, const char **err)
{
	bool needs = f->incompatible & QCOW2_INCOMPAT_DATA_FILE;

	if (needs && !args->data_dev) {
		*err = "QCOW2 external data file not given";
		return -EINVAL;
	}
	if (!needs && args->data_dev) {
		*err = "QCOW2 data file given for an image without an external data file";
		return -EINVAL;
	}
	q->data_dev = args->data_dev;
	return 0;
}

/*
 * Read the stored entries of an L1 table at off into a table of n >=
 * stored entries (the rest unallocated), kept in CPU order.
 */
static int qcow2_read_l1(struct qcow2_image *q, u64 off, u32 stored, u32 n,
			 const char **err)
{
	__be64 *raw;
	u32 i;
	int r;

	q->l1_size = n;
	if (!n)
		return 0;
	raw = imgfmt_zalloc_large((size_t)n * 8);
	if (!raw) {
		*err = "cannot allocate memory for the L1 table";
		return -ENOMEM;
	}
	r = stored ? imgfmt_dev_read(q->img.dev, off, raw, (size_t)stored * 8) :
		     0;
	if (r) {
		imgfmt_free_large(raw);
		*err = "cannot read the QCOW2 L1 table";
		return r;
	}
	/* Converted in place; zeroes stay zeroes. */
	q->l1 = (u64 *)raw;
	for (i = 0; i < stored; i++)
		q->l1[i] = be64_to_cpu(raw[i]);
	return 0;
}

/*
 * Map the snapshot pick found instead of the active state: its L1 table
 * and its own virtual size, which v3 snapshots record in their extra data
 * (without it QEMU takes the active size).  That is the size QEMU gives
 * the disk when it loads the snapshot (qemu-img snapshot -a, loadvm);
 * what an L1 table shorter than that size leaves out is unallocated, as
 * QEMU reads it.
 */
static int qcow2_load_snapshot(struct qcow2_image *q,
			       const struct qcow2_fields *f,
			       const struct qcow2_snapshot_pick *pick,
			       const char **err)
{
	const struct qcow2_snapshot *sn;
	u64 size, needed;

	if (!pick->by_id && !pick->by_name) {
		*err = "QCOW2 snapshot not found";
		return -ENOENT;
	}
	/* The spec rules them out: data file clusters are not refcounted. */
	if (q->data_dev) {
		*err = "QCOW2 snapshots are not supported with an external data file";
		return -EOPNOTSUPP;
	}
	sn = pick->by_id ? &pick->id_match : &pick->name_match;
	size = sn->has_disk_size ? sn->disk_size : f->size;
	if (!qcow2_l1_needed(size, q->cluster_bits, q->extended_l2, &needed)) {
		*err = "QCOW2 snapshot virtual size too large";
		return -EINVAL;
	}
	/* Stricter than QEMU, as for the active table: it must be there. */
	if (sn->l1_size &&
	    !imgfmt_dev_has(q->img.dev, sn->l1_offset, (u64)sn->l1_size * 8)) {
		*err = "QCOW2 snapshot L1 table offset beyond end of device";
		return -EINVAL;
	}
	q->img.info.virtual_size = size;
	return qcow2_read_l1(q, sn->l1_offset, sn->l1_size,
			     max_t(u64, sn->l1_size, needed), err);
}

static void qcow2_close(struct imgfmt_image *img)
{
	struct qcow2_image *q;

	if (!img)
		return;
	q = container_of(img, struct qcow2_image, img);
	imgfmt_qcow2_writer_close(q);
	imgfmt_mcache_destroy(q->img.mcache);
	imgfmt_free_large(q->l1);
	kfree(q);
}

/*
 * The first cluster, where the extensions and the backing file name live.
 * Past the end of a short device it reads as zeroes, as QEMU reads past
 * the end of a file.
 */
static int qcow2_read_header_cluster(struct imgfmt_dev *dev, u32 cluster_size,
				     u8 **clusterp, const char **err)
{
	u8 *buf = imgfmt_zalloc_large(cluster_size);
	int r;

	if (!buf) {
		*err = "cannot allocate memory for the QCOW2 header";
		return -ENOMEM;
	}
	r = imgfmt_dev_read(dev, 0, buf, min_t(u64, cluster_size, dev->size));
	if (r) {
		imgfmt_free_large(buf);
		*err = "cannot read the QCOW2 header";
		return r;
	}
	*clusterp = buf;
	return 0;
}

/*
 * Everything the header and the first cluster point at: the extensions,
 * the tables and the snapshot table, where pick's snapshot is looked up.
 */
static int qcow2_check_image(struct qcow2_image *q,
			     const struct qcow2_fields *f, const u8 *cluster,
			     u32 cluster_len, struct qcow2_snapshot_pick *pick,
			     const char **err)
{
	u32 names_len = 0;
	u64 names_off = 0;
	int r;

	r = qcow2_parse_extensions(q, f, cluster, cluster_len, &names_off,
				   &names_len, err);
	if (!r && (f->incompatible & ~QCOW2_INCOMPAT_KNOWN)) {
		log_unknown_features(f->incompatible & ~QCOW2_INCOMPAT_KNOWN,
				     cluster, names_off, names_len);
		*err = "QCOW2 unknown incompatible feature";
		r = -EINVAL;
	}
	if (!r)
		r = qcow2_check_tables(f, err);
	if (!r)
		r = qcow2_check_l1(f, q->img.dev, err);
	if (!r)
		r = qcow2_check_snapshots(q->img.dev, f, pick, err);
	if (!r)
		r = qcow2_check_bitmaps(q, f, err);
	return r;
}

/* The geometry of the mapping, and the L1 table it starts from. */
static int qcow2_setup_map(struct qcow2_image *q, const struct qcow2_fields *f,
			   const struct qcow2_snapshot_pick *pick,
			   const char **err)
{
	q->version = f->version;
	q->img.info.virtual_size = f->size;
	q->cluster_bits = f->cluster_bits;
	q->cluster_size = 1U << f->cluster_bits;
	q->extended_l2 = f->incompatible & QCOW2_INCOMPAT_EXTL2;
	q->l2_bits = qcow2_l2_bits(f->cluster_bits, q->extended_l2);
	q->subcluster_bits = q->cluster_bits - (q->extended_l2 ? 5 : 0);
	q->snapshots_offset = f->snapshots_offset;
	q->nb_snapshots = f->nb_snapshots;
	if (pick->want)
		return qcow2_load_snapshot(q, f, pick, err);
	return qcow2_read_l1(q, f->l1_offset, f->l1_size, f->l1_size, err);
}

int imgfmt_qcow2_read_head(struct imgfmt_dev *dev, struct qcow2_fields *f,
			   const char **err)
{
	struct qcow2_header h;
	int r;

	memset(&h, 0, sizeof(h));
	if (dev->size < QCOW2_V2_HEADER_LEN) {
		*err = "image is smaller than a QCOW2 header";
		return -EINVAL;
	}
	r = imgfmt_dev_read(dev, 0, &h, min_t(u64, sizeof(h), dev->size));
	if (r) {
		*err = "cannot read the QCOW2 header";
		return r;
	}
	if (be32_to_cpu(h.magic) != QCOW_MAGIC) {
		*err = "unknown image format";
		return -EINVAL;
	}
	r = qcow2_read_fields(&h, f, err);
	if (!r)
		r = qcow2_check_fields(f, err);
	if (r)
		return r;
	if (f->version == 3 && dev->size < f->header_length) {
		*err = "image is smaller than a QCOW2 header";
		return -EINVAL;
	}
	return 0;
}

int imgfmt_qcow2_data_file(struct imgfmt_dev *dev, bool *needed, char *name,
			   size_t size, const char **err)
{
	struct qcow2_fields f;
	struct qcow2_image *q;
	u8 *cluster = NULL;
	u32 names_len = 0, cluster_len;
	u64 names_off = 0;
	int r;

	r = imgfmt_qcow2_read_head(dev, &f, err);
	if (r)
		return r;
	/* The extension parser fills an image's info: a scratch one. */
	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q) {
		*err = "cannot allocate memory for the image";
		return -ENOMEM;
	}
	cluster_len = 1U << f.cluster_bits;
	r = qcow2_read_header_cluster(dev, cluster_len, &cluster, err);
	if (!r)
		r = qcow2_parse_extensions(q, &f, cluster, cluster_len,
					   &names_off, &names_len, err);
	if (!r) {
		*needed = f.incompatible & QCOW2_INCOMPAT_DATA_FILE;
		copy_name(name, size, (const u8 *)q->img.info.data_file,
			  strlen(q->img.info.data_file));
	}
	imgfmt_free_large(cluster);
	kfree(q);
	return r;
}

static int qcow2_open(const struct imgfmt_open_args *args,
		      struct imgfmt_image **imgp, const char **err)
{
	struct imgfmt_dev *dev = args->dev;
	struct qcow2_fields f;
	struct qcow2_image *q;
	u8 *cluster = NULL;
	u32 cluster_len = 0;
	struct qcow2_snapshot_pick pick = { .want = args->snapshot };
	int r;

	r = imgfmt_qcow2_read_head(dev, &f, err);
	if (r)
		return r;
	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q) {
		*err = "cannot allocate memory for the image";
		return -ENOMEM;
	}
	q->img.dev = dev;
	if (pick.want)
		pick.want_len = strlen(pick.want);
	cluster_len = 1U << f.cluster_bits;
	r = qcow2_read_header_cluster(dev, cluster_len, &cluster, err);
	if (!r)
		r = qcow2_check_image(q, &f, cluster, cluster_len, &pick, err);
	if (r)
		goto fail;
	/* qcow2_check_fields() kept the name inside the first cluster. */
	if (f.backing_offset && f.backing_size)
		copy_name(q->img.info.backing_file, sizeof(q->img.info.backing_file),
			  cluster + f.backing_offset, f.backing_size);
	qcow2_fill_info(q, &f);
	r = qcow2_check_supported(args, &f, err);
	if (!r)
		r = qcow2_check_data_file(q, args, &f, err);
	if (!r)
		r = qcow2_setup_map(q, &f, &pick, err);
	if (r)
		goto fail;
	q->l2_slice_size = min_t(u32, q->cluster_size, QCOW2_L2_SLICE);
	q->img.mcache = imgfmt_mcache_for(args->mgroup, dev,
					  q->l2_slice_size, args->cache_bytes);
	if (!q->img.mcache) {
		*err = "cannot allocate the metadata cache";
		r = -ENOMEM;
		goto fail;
	}
	if (args->writable) {
		r = imgfmt_qcow2_writer_open(q, args, &f, err);
		if (r)
			goto fail;
	}
	imgfmt_free_large(cluster);
	*imgp = &q->img;
	return 0;
fail:
	imgfmt_free_large(cluster);
	qcow2_close(&q->img);
	return r;
}

/*
 * Copy the L2 entry for cluster index idx of the table at l2_offset, with
 * up to wanted following entries of the same slice into the batch.
 */
static int qcow2_get_l2_entry(struct qcow2_image *q, u64 l2_offset, u32 idx,
			      u32 wanted, struct imgfmt_batch *b,
			      unsigned int flags, u64 *entry, u64 *bitmap)
{
	u32 entsize = q->extended_l2 ? 16 : 8;
	u32 byte = idx * entsize;
	u32 in_slice = byte & (q->l2_slice_size - 1);
	const __be64 *e;
	const void *p;
	int r;

	r = imgfmt_mcache_entry(b, q->img.mcache, l2_offset + (byte - in_slice),
				in_slice, entsize, wanted * entsize,
				flags & IMGFMT_MAP_NOWAIT, &p);
	if (r)
		return r;
	e = p;
	*entry = be64_to_cpu(e[0]);
	*bitmap = q->extended_l2 ? be64_to_cpu(e[1]) : 0;
	return 0;
}

/* A compressed cluster: where its stream lies, bounded by the device. */
static int qcow2_classify_compressed(struct qcow2_image *q, u64 entry,
				     u64 bitmap, u64 pos,
				     struct imgfmt_unit *u, const char **err)
{
	u32 offset_bits = 62 - (q->cluster_bits - 8);
	u64 desc = entry & QCOW2_DESCRIPTOR_MASK;
	u64 off = desc & ((1ULL << offset_bits) - 1);
	u64 sectors = (desc >> offset_bits) + 1;
	u64 len = sectors * 512 - (off & 511);

	if (bitmap)
		return imgfmt_corrupt(&q->img,
				      "compressed cluster with a subcluster bitmap",
				      pos, err);
	/* QEMU refuses them too: the data file maps guest offsets 1:1. */
	if (q->data_dev)
		return imgfmt_corrupt(&q->img,
				      "compressed cluster in an image with an external data file",
				      pos, err);
	if (off >= q->img.dev->size)
		return imgfmt_corrupt(&q->img,
				      "compressed cluster beyond end of device",
				      pos, err);
	u->kind = IMGFMT_RUN_COMPRESSED;
	u->start = pos & ~((u64)q->cluster_size - 1);
	u->end = u->start + q->cluster_size;
	u->comp_offset = off;
	u->comp_length = min_t(u64, len, q->img.dev->size - off);
	u->comp_cluster_size = q->cluster_size;
	u->comp_type = q->img.info.compression;
	return 0;
}

/*
 * Allocated data at host (the caller checked the cluster's alignment), on
 * the image's device or its data file's: the unit is the (sub)cluster
 * holding pos, or its part that the device holds; a cluster cut short by
 * the end of the device reads as zeroes past it, as QEMU reads past the
 * end of a file.  One wholly past the end is corrupt (QEMU would read
 * zeroes): stricter, as for the image's own device.
 */
static __always_inline int qcow2_classify_data(struct qcow2_image *q, u64 host,
					       u64 unit_start, u32 unit_size,
					       u64 pos, struct imgfmt_unit *u,
					       const char **err)
{
	const struct imgfmt_dev *dev = q->data_dev ? q->data_dev : q->img.dev;
	u64 avail;

	if (host >= dev->size)
		return imgfmt_corrupt(&q->img, q->data_dev ?
				      "data cluster beyond end of the external data file" :
				      "data cluster beyond end of device", pos,
				      err);
	u->kind = IMGFMT_RUN_DATA;
	u->start = unit_start;
	u->end = unit_start + unit_size;
	u->host = host;
	u->on_data_dev = q->data_dev;
	avail = (dev->size - host) & ~511ULL;
	if (avail < unit_size) {
		if (pos - unit_start >= avail) {
			u->kind = IMGFMT_RUN_ZERO;
			u->start = unit_start + avail;
		} else {
			u->end = unit_start + avail;
		}
	}
	return 0;
}

/*
 * Does a standard entry point at a host cluster?  Offset 0 means none,
 * except in an external data file, where clusters map 1:1 and the first
 * one is at 0: there, as QEMU has it, the COPIED bit (every data file
 * cluster has refcount 1) tells an allocated cluster at 0.
 */
static bool qcow2_entry_allocated(const struct qcow2_image *q, u64 entry)
{
	return (entry & QCOW2_OFFSET_MASK) ||
	       (q->data_dev && (entry & QCOW2_L2E_COPIED));
}

static int qcow2_check_host(struct qcow2_image *q, u64 host, u64 pos,
			    const char **err)
{
	if (!IS_ALIGNED(host, q->cluster_size))
		return imgfmt_corrupt(&q->img,
				      "data cluster offset not aligned to a cluster",
				      pos, err);
	/* The spec's rule, which QEMU enforces on every read. */
	if (q->data_dev && host != (pos & ~((u64)q->cluster_size - 1)))
		return imgfmt_corrupt(&q->img,
				      "external data file cluster offset does not match the guest offset",
				      pos, err);
	return 0;
}

static int qcow2_classify_entry(struct qcow2_image *q, u64 entry, u64 bitmap,
				u64 pos, struct imgfmt_unit *u,
				const char **err);

/*
 * What the entry says of pos; with a writer, whether a write may go in
 * place: data (a whole cluster, or an allocated subcluster) whose
 * refcount is exactly 1, which the COPIED flag tells.
 */
static int qcow2_classify(struct qcow2_image *q, u64 entry, u64 bitmap,
			  u64 pos, struct imgfmt_unit *u, const char **err)
{
	int r = qcow2_classify_entry(q, entry, bitmap, pos, u, err);

	if (!r && q->w && u->kind == IMGFMT_RUN_DATA &&
	    (entry & QCOW2_L2E_COPIED) &&
	    u->end - u->start == 1ULL << q->subcluster_bits)
		u->in_place = true;
	return r;
}

static int qcow2_classify_entry(struct qcow2_image *q, u64 entry, u64 bitmap,
				u64 pos, struct imgfmt_unit *u,
				const char **err)
{
	u64 desc = entry & ~QCOW2_L2E_COPIED;
	u64 host = desc & QCOW2_OFFSET_MASK;
	bool allocated = qcow2_entry_allocated(q, entry);
	u32 unit_size = 1U << q->subcluster_bits;
	u64 unit_start = pos & ~((u64)unit_size - 1);
	u32 sc;
	int r;

	if (desc & QCOW2_L2E_COMPRESSED)
		return qcow2_classify_compressed(q, entry, bitmap, pos, u, err);
	if (desc & QCOW2_L2E_RESERVED)
		return imgfmt_corrupt(&q->img, "L2 entry has reserved bits set",
				      pos, err);
	/*
	 * QEMU checks the host offset of every entry that has one, also
	 * when it reads zeroes (a preallocated zero cluster) or nothing.
	 */
	if ((!q->extended_l2 && (desc & QCOW2_L2E_ZERO)) ? host : allocated) {
		r = qcow2_check_host(q, host, pos, err);
		if (r)
			return r;
	}
	u->start = unit_start;
	u->end = unit_start + unit_size;
	if (!q->extended_l2) {
		if (desc & QCOW2_L2E_ZERO) {
			if (q->version < 3)
				return imgfmt_corrupt(&q->img,
						      "zero cluster in a version 2 image",
						      pos, err);
			u->kind = IMGFMT_RUN_ZERO;
			return 0;
		}
		if (!allocated) {
			u->kind = IMGFMT_RUN_UNALLOCATED;
			return 0;
		}
		return qcow2_classify_data(q, host, unit_start, unit_size, pos,
					   u, err);
	}
	if (desc & QCOW2_L2E_ZERO)
		return imgfmt_corrupt(&q->img, "L2 entry has reserved bits set",
				      pos, err);
	sc = (pos >> q->subcluster_bits) & (QCOW2_SUBCLUSTERS - 1);
	if (!allocated && (bitmap & 0xffffffffULL))
		return imgfmt_corrupt(&q->img,
				      "unallocated cluster with allocated subclusters",
				      pos, err);
	/*
	 * As QEMU: one subcluster both allocated and zero makes the whole
	 * cluster invalid, so every read of it fails alike.
	 */
	if (allocated && ((bitmap >> 32) & bitmap & 0xffffffffULL))
		return imgfmt_corrupt(&q->img,
				      "subcluster both allocated and zero", pos,
				      err);
	if (!(bitmap & BIT_ULL(sc))) {
		u->kind = (bitmap & BIT_ULL(32 + sc)) ? IMGFMT_RUN_ZERO :
							 IMGFMT_RUN_UNALLOCATED;
		return 0;
	}
	return qcow2_classify_data(q, host + ((u64)sc << q->subcluster_bits),
				   unit_start, unit_size, pos, u, err);
}

/* What lives at virtual offset pos; end bounds how far the caller looks. */
static int qcow2_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
			u64 pos, u64 end, unsigned int flags,
			struct imgfmt_unit *u, const char **err)
{
	struct qcow2_image *q = container_of(img, struct qcow2_image, img);
	u32 span_bits = q->cluster_bits + q->l2_bits;
	u64 l1_index = pos >> span_bits;
	u64 l1e, l2_offset, entry, bitmap;
	u32 idx, wanted;
	int r;

	if (l1_index >= q->l1_size)
		return imgfmt_corrupt(&q->img, "offset beyond the L1 table",
				      pos, err);
	/* The writer may be adding an L2 table. */
	l1e = READ_ONCE(q->l1[l1_index]);
	if (l1e & QCOW2_L1E_RESERVED)
		return imgfmt_corrupt(&q->img, "L1 entry has reserved bits set",
				      pos, err);
	l2_offset = l1e & QCOW2_OFFSET_MASK;
	if (!l2_offset) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		u->start = l1_index << span_bits;
		u->end = (l1_index + 1) << span_bits;
		return 0;
	}
	if (!IS_ALIGNED(l2_offset, q->cluster_size))
		return imgfmt_corrupt(&q->img,
				      "L2 table offset not aligned to a cluster",
				      pos, err);
	if (!imgfmt_dev_has(q->img.dev, l2_offset, q->cluster_size))
		return imgfmt_corrupt(&q->img, "L2 table beyond end of device",
				      pos, err);
	idx = (pos >> q->cluster_bits) & ((1U << q->l2_bits) - 1);
	wanted = imgfmt_units_wanted(pos, end, q->cluster_bits,
				     IMGFMT_BATCH_BYTES / 8);
	r = qcow2_get_l2_entry(q, l2_offset, idx, wanted, b, flags, &entry,
			       &bitmap);
	if (r == -EIO)
		return imgfmt_corrupt(&q->img, "cannot read L2 table", pos,
				      err);
	if (r)
		return r;
	return qcow2_classify(q, entry, bitmap, pos, u, err);
}

const struct imgfmt_format_ops imgfmt_qcow2_ops = {
	.name = "qcow2",
	.probe = qcow2_probe,
	.open = qcow2_open,
	.close = qcow2_close,
	.lookup = qcow2_lookup,
	.prepare_write = imgfmt_qcow2_prepare_write,
	.finish_write = imgfmt_qcow2_finish_write,
	.commit = imgfmt_qcow2_commit,
	.reserve = imgfmt_qcow2_reserve,
	.unreserve = imgfmt_qcow2_unreserve,
	.prepare_reserved = imgfmt_qcow2_prepare_reserved,
	.get_wstats = imgfmt_qcow2_get_wstats,
};
