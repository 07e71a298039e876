// SPDX-License-Identifier: GPL-2.0-only
/*
 * QCOW (version 1): header validation and cluster mapping.
 *
 * The format is QEMU's original copy-on-write image (block/qcow.c there): a
 * 48-byte big-endian header, a flat L1 table of L2 table offsets and L2
 * tables of cluster offsets.  There are no refcounts, snapshots or header
 * extensions.  An L2 entry is 0 (unallocated), a data cluster's byte offset,
 * or, with bit 63 set, a compressed cluster: a raw deflate stream whose
 * offset sits in the low 63 - cluster_bits bits and whose length in bytes
 * in the bits above it.
 *
 * Every field read from the image is treated as hostile: the header is
 * checked completely at open, and each L1/L2 entry is checked when a lookup
 * meets it, so that a corrupt entry fails only the reads that touch it.
 */
#include "../imgfmt_format.h"
#include "../mcache.h"
#include "runs.h"

#define QCOW_MAGIC			0x514649fbU	/* "QFI\xfb" */
#define QCOW_VERSION			1

#define QCOW_HEADER_LEN			48
/* QEMU's limits: clusters and L2 tables (in bytes) of 512 to 64 KiB. */
#define QCOW_MIN_CLUSTER_BITS		9
#define QCOW_MAX_CLUSTER_BITS		16
#define QCOW_MIN_L2_BITS		(9 - 3)
#define QCOW_MAX_L2_BITS		(16 - 3)
#define QCOW_MAX_BACKING_NAME		1023
/*
 * The L1 table stays in memory while the image is open.  QEMU allows up to
 * 2 GiB of it for QCOW; this reader takes QEMU's QCOW2 bound instead, which
 * still covers 128 GiB with the smallest clusters and L2 tables, and 8 TiB
 * with the ones qemu-img creates.
 */
#define QCOW_MAX_L1_BYTES		(32ULL << 20)
/* QEMU refuses a virtual size below 2 bytes. */
#define QCOW_MIN_VIRTUAL_SIZE		2

#define QCOW_CRYPT_NONE			0
#define QCOW_CRYPT_AES			1

#define QCOW_L2E_COMPRESSED		BIT_ULL(63)

struct qcow_header {
	__be32 magic;
	__be32 version;
	__be64 backing_file_offset;
	__be32 backing_file_size;
	__be32 mtime;
	__be64 size;
	u8 cluster_bits;
	u8 l2_bits;
	__be16 padding;
	__be32 crypt_method;
	__be64 l1_table_offset;
} __packed;

struct qcow_image {
	struct imgfmt_image img;	/* first: the shared part */
	u64 *l1;		/* CPU byte order */
	u32 l1_size;
	u32 cluster_bits;
	u32 cluster_size;
	u32 l2_bits;		/* log2 of entries per L2 table */
	u32 l2_bytes;		/* bytes per L2 table */
};

/* Header fields in CPU order. */
struct qcow_fields {
	u32 version;
	u64 backing_offset;
	u32 backing_size;
	u64 size;
	u32 cluster_bits;
	u32 l2_bits;
	u32 crypt_method;
	u64 l1_offset;
	u32 l1_size;		/* derived from size, as QEMU does */
};

/*
 * QCOW2 shares the magic; version 1 is this format's.  A header too short
 * for the version field is not claimed.
 */
static bool qcow_probe(const void *head, size_t len)
{
	const struct qcow_header *h = head;

	return len >= 8 && be32_to_cpu(h->magic) == QCOW_MAGIC &&
	       be32_to_cpu(h->version) == QCOW_VERSION;
}

static void qcow_read_fields(const struct qcow_header *h,
			     struct qcow_fields *f)
{
	memset(f, 0, sizeof(*f));
	f->version = be32_to_cpu(h->version);
	f->backing_offset = be64_to_cpu(h->backing_file_offset);
	f->backing_size = be32_to_cpu(h->backing_file_size);
	f->size = be64_to_cpu(h->size);
	f->cluster_bits = h->cluster_bits;
	f->l2_bits = h->l2_bits;
	f->crypt_method = be32_to_cpu(h->crypt_method);
	f->l1_offset = be64_to_cpu(h->l1_table_offset);
}

/* Checks that need only the fixed header, in QEMU's order. */
static int qcow_check_fields(const struct qcow_fields *f, const char **err)
{
	if (f->version != QCOW_VERSION) {
		*err = "unsupported QCOW version";
		return -EINVAL;
	}
	if (f->size < QCOW_MIN_VIRTUAL_SIZE) {
		*err = "QCOW virtual size too small";
		return -EINVAL;
	}
	if (f->cluster_bits < QCOW_MIN_CLUSTER_BITS ||
	    f->cluster_bits > QCOW_MAX_CLUSTER_BITS) {
		*err = "QCOW cluster size out of range";
		return -EINVAL;
	}
	if (f->l2_bits < QCOW_MIN_L2_BITS || f->l2_bits > QCOW_MAX_L2_BITS) {
		*err = "QCOW L2 table size out of range";
		return -EINVAL;
	}
	if (f->crypt_method > QCOW_CRYPT_AES) {
		*err = "QCOW unknown encryption method";
		return -EINVAL;
	}
	/* QEMU looks at the name only when its offset is set. */
	if (f->backing_offset && f->backing_size > QCOW_MAX_BACKING_NAME) {
		*err = "QCOW backing file name too long";
		return -EINVAL;
	}
	return 0;
}

/*
 * The L1 table has exactly as many entries as the virtual size needs (QCOW
 * stores no count) and must lie inside the device.  QEMU places it anywhere,
 * right after the header by default, so it need not be aligned.  Stricter
 * than QEMU, which reads zeroes past the end of the file: the table is read
 * whole at open and kept, so it must be there.
 */
static int qcow_check_l1(struct qcow_fields *f, const struct imgfmt_dev *dev,
			 const char **err)
{
	u32 span_bits = f->cluster_bits + f->l2_bits;
	u64 needed;

	needed = (f->size >> span_bits) +
		 !!(f->size & ((1ULL << span_bits) - 1));
	if (needed > QCOW_MAX_L1_BYTES / 8) {
		*err = "QCOW virtual size too large";
		return -EINVAL;
	}
	f->l1_size = needed;
	if (!imgfmt_dev_has(dev, f->l1_offset, needed * 8)) {
		*err = "QCOW L1 table offset beyond end of device";
		return -EINVAL;
	}
	return 0;
}

/* Features a reader cannot serve yet: refused by name. */
static int qcow_check_supported(const struct imgfmt_open_args *args,
				const struct qcow_fields *f, const char **err)
{
	if (f->crypt_method != QCOW_CRYPT_NONE) {
		*err = "QCOW encrypted images are not supported yet";
		return -EOPNOTSUPP;
	}
	/* An empty name at a set offset means no backing file to QEMU. */
	if (f->backing_offset && f->backing_size && !args->has_lower) {
		*err = "QCOW backing file not given as a lower layer";
		return -EINVAL;
	}
	return 0;
}

static void qcow_fill_info(struct qcow_image *q, const struct qcow_fields *f)
{
	struct imgfmt_info *info = &q->img.info;

	info->format = "qcow";
	info->version = f->version;
	info->virtual_size = f->size;
	info->cluster_size = 1U << f->cluster_bits;
	info->compression = IMGFMT_COMP_DEFLATE;
	info->l1_entries = f->l1_size;
	info->l1_offset = f->l1_offset;
	info->encrypted = f->crypt_method != QCOW_CRYPT_NONE;
}

static int qcow_load_l1(struct qcow_image *q, const struct qcow_fields *f,
			const char **err)
{
	int r;

	q->l1_size = f->l1_size;
	r = imgfmt_load_be64_table(q->img.dev, f->l1_offset, q->l1_size,
				   &q->l1);
	if (r == -ENOMEM)
		*err = "cannot allocate memory for the L1 table";
	else if (r)
		*err = "cannot read the QCOW L1 table";
	return r;
}

/* The backing file's name, which qcow_check_fields() kept short. */
static int qcow_read_backing_name(struct qcow_image *q,
				  const struct qcow_fields *f, const char **err)
{
	char *name = q->img.info.backing_file;
	int r;

	if (!f->backing_offset || !f->backing_size)
		return 0;
	if (f->backing_size >= sizeof(q->img.info.backing_file) ||
	    !imgfmt_dev_has(q->img.dev, f->backing_offset, f->backing_size)) {
		*err = "QCOW backing file name beyond end of device";
		return -EINVAL;
	}
	r = imgfmt_dev_read(q->img.dev, f->backing_offset, name,
			    f->backing_size);
	if (r) {
		*err = "cannot read the QCOW backing file name";
		return r;
	}
	name[f->backing_size] = '\0';
	return 0;
}

static void qcow_close(struct imgfmt_image *img)
{
	struct qcow_image *q;

	if (!img)
		return;
	q = container_of(img, struct qcow_image, img);
	imgfmt_mcache_destroy(q->img.mcache);
	imgfmt_free_large(q->l1);
	kfree(q);
}

static int qcow_open(const struct imgfmt_open_args *args,
		     struct imgfmt_image **imgp, const char **err)
{
	struct imgfmt_dev *dev = args->dev;
	struct qcow_header h;
	struct qcow_fields f;
	struct qcow_image *q;
	int r;

	if (dev->size < QCOW_HEADER_LEN) {
		*err = "image is smaller than a QCOW header";
		return -EINVAL;
	}
	r = imgfmt_dev_read(dev, 0, &h, sizeof(h));
	if (r) {
		*err = "cannot read the QCOW header";
		return r;
	}
	if (be32_to_cpu(h.magic) != QCOW_MAGIC) {
		*err = "unknown image format";
		return -EINVAL;
	}
	qcow_read_fields(&h, &f);
	r = qcow_check_fields(&f, err);
	if (!r)
		r = qcow_check_l1(&f, dev, err);
	if (!r)
		r = qcow_check_supported(args, &f, err);
	if (r)
		return r;

	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q) {
		*err = "cannot allocate memory for the image";
		return -ENOMEM;
	}
	q->img.dev = dev;
	qcow_fill_info(q, &f);
	q->img.info.virtual_size = f.size;
	q->cluster_bits = f.cluster_bits;
	q->cluster_size = 1U << f.cluster_bits;
	q->l2_bits = f.l2_bits;
	q->l2_bytes = 8U << f.l2_bits;
	r = qcow_read_backing_name(q, &f, err);
	if (!r)
		r = qcow_load_l1(q, &f, err);
	if (r)
		goto fail;
	/* L2 tables are 512 bytes to 64 KiB, whatever the cluster size. */
	q->img.mcache = imgfmt_mcache_for(args->mgroup, dev, q->l2_bytes,
					  args->cache_bytes);
	if (!q->img.mcache) {
		*err = "cannot allocate the metadata cache";
		r = -ENOMEM;
		goto fail;
	}
	*imgp = &q->img;
	return 0;
fail:
	qcow_close(&q->img);
	return r;
}

/* Copy the L2 entry for cluster index idx of the table at l2_offset. */
static int qcow_get_l2_entry(struct qcow_image *q, u64 l2_offset, u32 idx,
			     u32 wanted, struct imgfmt_batch *b,
			     unsigned int flags, u64 *entry)
{
	const void *e;
	int r;

	r = imgfmt_mcache_entry(b, q->img.mcache, l2_offset, idx * 8, 8,
				wanted * 8, flags & IMGFMT_MAP_NOWAIT, &e);
	if (!r)
		*entry = be64_to_cpu(*(const __be64 *)e);
	return r;
}

/*
 * A compressed cluster: where its stream lies, bounded by the device.  QEMU
 * writes the stream at any byte offset (the file's end) and records its
 * exact length; a length of 0 cannot decompress to a cluster.
 */
static int qcow_classify_compressed(struct qcow_image *q, u64 entry, u64 pos,
				    struct imgfmt_unit *u, const char **err)
{
	u32 offset_bits = 63 - q->cluster_bits;
	u64 off = entry & ((1ULL << offset_bits) - 1);
	u32 len = (entry >> offset_bits) & (q->cluster_size - 1);

	if (!len)
		return imgfmt_corrupt(&q->img,
				      "compressed cluster of length zero", pos,
				      err);
	if (off >= q->img.dev->size)
		return imgfmt_corrupt(&q->img,
				      "compressed cluster beyond end of device",
				      pos, err);
	u->kind = IMGFMT_RUN_COMPRESSED;
	u->start = pos & ~((u64)q->cluster_size - 1);
	u->end = u->start + q->cluster_size;
	u->comp_offset = off;
	u->comp_length = min_t(u64, len, q->img.dev->size - off);
	/* QEMU pads a short last cluster: streams are whole clusters. */
	u->comp_cluster_size = q->cluster_size;
	u->comp_type = IMGFMT_COMP_DEFLATE;
	return 0;
}

/*
 * An allocated data cluster at host: the unit is the cluster holding pos,
 * or its part that the device holds; a cluster cut short by the end of the
 * device reads as zeroes past it, as QEMU reads past the end of a file.
 * QEMU itself fails reads of a cluster whose offset is not a multiple of
 * 512, though it never checks for cluster alignment.
 */
static int qcow_classify_data(struct qcow_image *q, u64 host, u64 pos,
			      struct imgfmt_unit *u, const char **err)
{
	u64 start = pos & ~((u64)q->cluster_size - 1);
	u64 avail;

	if (!IS_ALIGNED(host, 512))
		return imgfmt_corrupt(&q->img,
				      "data cluster offset not aligned to 512 bytes",
				      pos, err);
	if (host >= q->img.dev->size)
		return imgfmt_corrupt(&q->img,
				      "data cluster beyond end of device", pos,
				      err);
	u->kind = IMGFMT_RUN_DATA;
	u->start = start;
	u->end = start + q->cluster_size;
	u->host = host;
	avail = (q->img.dev->size - host) & ~511ULL;
	if (avail < q->cluster_size) {
		if (pos - start >= avail) {
			u->kind = IMGFMT_RUN_ZERO;
			u->start = start + avail;
		} else {
			u->end = start + avail;
		}
	}
	return 0;
}

static int qcow_classify(struct qcow_image *q, u64 entry, u64 pos,
			 struct imgfmt_unit *u, const char **err)
{
	if (entry & QCOW_L2E_COMPRESSED)
		return qcow_classify_compressed(q, entry, pos, u, err);
	if (!entry) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		u->start = pos & ~((u64)q->cluster_size - 1);
		u->end = u->start + q->cluster_size;
		return 0;
	}
	return qcow_classify_data(q, entry, pos, u, err);
}

/* What lives at virtual offset pos; end bounds how far the caller looks. */
static int qcow_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
		       u64 pos, u64 end, unsigned int flags,
		       struct imgfmt_unit *u, const char **err)
{
	struct qcow_image *q = container_of(img, struct qcow_image, img);
	u32 span_bits = q->cluster_bits + q->l2_bits;
	u64 l1_index = pos >> span_bits;
	u64 l2_offset, entry;
	u32 idx, wanted;
	int r;

	if (l1_index >= q->l1_size)
		return imgfmt_corrupt(&q->img, "offset beyond the L1 table",
				      pos, err);
	/* QCOW L1 entries are plain offsets: no flags, no reserved bits. */
	l2_offset = q->l1[l1_index];
	if (!l2_offset) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		u->start = l1_index << span_bits;
		u->end = (l1_index + 1) << span_bits;
		return 0;
	}
	/*
	 * QEMU reads an L2 table at any offset but only ever writes one at a
	 * cluster boundary; the metadata cache needs 512-byte alignment.
	 */
	if (!IS_ALIGNED(l2_offset, 512))
		return imgfmt_corrupt(&q->img,
				      "L2 table offset not aligned to 512 bytes",
				      pos, err);
	if (!imgfmt_dev_has(q->img.dev, l2_offset, q->l2_bytes))
		return imgfmt_corrupt(&q->img, "L2 table beyond end of device",
				      pos, err);
	idx = (pos >> q->cluster_bits) & ((1U << q->l2_bits) - 1);
	wanted = imgfmt_units_wanted(pos, end, q->cluster_bits,
				     IMGFMT_BATCH_BYTES / 8);
	r = qcow_get_l2_entry(q, l2_offset, idx, wanted, b, flags, &entry);
	if (r == -EIO)
		return imgfmt_corrupt(&q->img, "cannot read L2 table", pos,
				      err);
	if (r)
		return r;
	return qcow_classify(q, entry, pos, u, err);
}

const struct imgfmt_format_ops imgfmt_qcow_ops = {
	.name = "qcow",
	.probe = qcow_probe,
	.open = qcow_open,
	.close = qcow_close,
	.lookup = qcow_lookup,
};
