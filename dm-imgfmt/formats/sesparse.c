// SPDX-License-Identifier: GPL-2.0-only
/*
 * VMDK seSparse extents (ESXi's space-efficient sparse format), read-only:
 * header validation and grain mapping.
 *
 * VMware does not document the format; the facts here are those QEMU's
 * block/vmdk.c relies on, and its strict checks are kept: a constant header
 * and a volatile header (whose journal must not need replaying), a grain
 * directory of 64-bit entries naming grain tables by index, and grain
 * tables of 4096 64-bit entries whose top nibble gives the grain's state.
 * Grains are 4 KiB, so one grain table covers 16 MiB.  As everywhere in
 * this code, fields read from the image are hostile: the headers are
 * checked at open, each directory and table entry when a lookup meets it.
 */
#include "../imgfmt_format.h"
#include "../mcache.h"
#include "runs.h"

#define SESPARSE_MAGIC			0x00000000cafebabeULL
#define SESPARSE_VOLATILE_MAGIC		0x00000000cafecafeULL
#define SESPARSE_VERSION		0x0000000200000001ULL

#define SESPARSE_SECTOR			512
#define SESPARSE_GRAIN_SECTORS		8
#define SESPARSE_GRAIN_BITS		12
#define SESPARSE_GRAIN_SIZE		4096U
#define SESPARSE_GT_SECTORS		64
#define SESPARSE_GT_BYTES		(SESPARSE_GT_SECTORS * SESPARSE_SECTOR)
#define SESPARSE_GT_BITS		12
#define SESPARSE_GT_ENTRIES		4096U	/* of 8 bytes */
#define SESPARSE_SPAN_BITS		(SESPARSE_GRAIN_BITS + SESPARSE_GT_BITS)

/* QEMU's bound on directory entries; ours on the capacity (2^62 bytes). */
#define SESPARSE_MAX_GD_ENTRIES		(32ULL << 20)
#define SESPARSE_MAX_CAPACITY		BIT_ULL(53)

/* Grain directory entries: zero, or an allocated table's index. */
#define SESPARSE_GDE_TYPE_MASK		0xffffffff00000000ULL
#define SESPARSE_GDE_ALLOCATED		0x1000000000000000ULL
#define SESPARSE_GDE_INDEX_MASK		0x00000000ffffffffULL

/* Grain table entries: the top nibble. */
#define SESPARSE_GTE_UNALLOCATED	0x0
#define SESPARSE_GTE_UNMAPPED		0x1	/* SCSI unmapped: reads zeroes */
#define SESPARSE_GTE_ZERO		0x2
#define SESPARSE_GTE_ALLOCATED		0x3

struct sesparse_const_header {
	__le64 magic;
	__le64 version;
	__le64 capacity;		/* sectors, as all sizes below */
	__le64 grain_size;
	__le64 grain_table_size;
	__le64 flags;
	__le64 reserved[4];
	__le64 volatile_header_offset;
	__le64 volatile_header_size;
	__le64 journal_header_offset;
	__le64 journal_header_size;
	__le64 journal_offset;
	__le64 journal_size;
	__le64 grain_dir_offset;
	__le64 grain_dir_size;
	__le64 grain_tables_offset;
	__le64 grain_tables_size;
	__le64 free_bitmap_offset;
	__le64 free_bitmap_size;
	__le64 backmap_offset;
	__le64 backmap_size;
	__le64 grains_offset;
	__le64 grains_size;
	u8 pad[304];
} __packed;

struct sesparse_volatile_header {
	__le64 magic;
	__le64 free_gt_number;
	__le64 next_txn_seq_number;
	__le64 replay_journal;
	u8 pad[480];
} __packed;

struct sesparse_image {
	struct imgfmt_image img;	/* first: the shared part */
	__le64 *gd;		/* as on disk */
	u64 gd_entries;
	u64 tables;		/* device offsets of the table and grain areas */
	u64 grains;
};

static bool sesparse_probe(const void *head, size_t len)
{
	const u8 *p = head;
	u64 magic = 0;
	int i;

	if (len < 8)
		return false;
	for (i = 7; i >= 0; i--)
		magic = magic << 8 | p[i];
	return magic == SESPARSE_MAGIC;
}

static bool buffer_is_zero(const u8 *p, size_t len)
{
	while (len--)
		if (*p++)
			return false;
	return true;
}

static int sesparse_check_const(const struct sesparse_const_header *h,
				const char **err)
{
	unsigned int i;

	if (le64_to_cpu(h->version) != SESPARSE_VERSION) {
		*err = "VMDK seSparse version not supported";
		return -EOPNOTSUPP;
	}
	if (le64_to_cpu(h->grain_size) != SESPARSE_GRAIN_SECTORS ||
	    le64_to_cpu(h->grain_table_size) != SESPARSE_GT_SECTORS) {
		*err = "VMDK seSparse grain or grain table size not supported";
		return -EOPNOTSUPP;
	}
	for (i = 0; i < ARRAY_SIZE(h->reserved); i++)
		if (h->reserved[i])
			break;
	if (h->flags || i < ARRAY_SIZE(h->reserved) ||
	    !buffer_is_zero(h->pad, sizeof(h->pad))) {
		*err = "VMDK seSparse header has unknown flags or fields set";
		return -EOPNOTSUPP;
	}
	return 0;
}

static int sesparse_check_volatile(struct imgfmt_dev *dev,
				   const struct sesparse_const_header *h,
				   const char **err)
{
	struct sesparse_volatile_header *v;
	u64 sector = le64_to_cpu(h->volatile_header_offset);
	int r;

	if (sector > U64_MAX >> 9 ||
	    !imgfmt_dev_has(dev, sector << 9, sizeof(*v))) {
		*err = "VMDK seSparse volatile header beyond end of file";
		return -EINVAL;
	}
	v = kmalloc(sizeof(*v), GFP_KERNEL);
	if (!v) {
		*err = "cannot allocate memory for the VMDK header";
		return -ENOMEM;
	}
	r = imgfmt_dev_read(dev, sector << 9, v, sizeof(*v));
	if (r) {
		*err = "cannot read the VMDK seSparse volatile header";
	} else if (le64_to_cpu(v->magic) != SESPARSE_VOLATILE_MAGIC) {
		*err = "VMDK seSparse volatile header invalid";
		r = -EINVAL;
	} else if (v->replay_journal) {
		*err = "VMDK seSparse journal needs replaying (image is dirty)";
		r = -EOPNOTSUPP;
	} else if (!buffer_is_zero(v->pad, sizeof(v->pad))) {
		*err = "VMDK seSparse header has unknown flags or fields set";
		r = -EOPNOTSUPP;
	}
	kfree(v);
	return r;
}

/* The directory and the areas it points into; sets *needed. */
static int sesparse_check_layout(struct imgfmt_dev *dev,
				 const struct sesparse_const_header *h,
				 u64 *needed, const char **err)
{
	u64 capacity = le64_to_cpu(h->capacity);
	u64 gd_sectors = le64_to_cpu(h->grain_dir_size);
	u64 gd_sector = le64_to_cpu(h->grain_dir_offset);
	u64 span = (u64)SESPARSE_GRAIN_SECTORS * SESPARSE_GT_ENTRIES;

	if (capacity > SESPARSE_MAX_CAPACITY) {
		*err = "VMDK virtual size too large";
		return -EINVAL;
	}
	*needed = DIV_ROUND_UP_ULL(capacity, span);
	if (gd_sectors > SESPARSE_MAX_GD_ENTRIES / (SESPARSE_SECTOR / 8) ||
	    *needed > SESPARSE_MAX_GD_ENTRIES) {
		*err = "VMDK grain directory too large";
		return -EINVAL;
	}
	/* Ours: the directory is kept in memory whole. */
	if (*needed > IMGFMT_MAX_TOP_TABLE_BYTES / 8) {
		*err = "VMDK grain directory larger than 32 MiB";
		return -EINVAL;
	}
	if (gd_sectors * (SESPARSE_SECTOR / 8) < *needed) {
		*err = "VMDK grain directory too small for the capacity";
		return -EINVAL;
	}
	if (le64_to_cpu(h->grain_tables_offset) > U64_MAX >> 9 ||
	    le64_to_cpu(h->grains_offset) > U64_MAX >> 9) {
		*err = "VMDK seSparse grain area offset invalid";
		return -EINVAL;
	}
	if (!*needed)
		return 0;
	if (!gd_sector) {
		*err = "VMDK grain directory offset invalid";
		return -EINVAL;
	}
	if (gd_sector > U64_MAX >> 9 ||
	    !imgfmt_dev_has(dev, gd_sector << 9, *needed * 8)) {
		imgfmt_log("vmdk-sesparse: %llu-byte grain directory at sector %llu past EOF",
			   (unsigned long long)(*needed * 8),
			   (unsigned long long)gd_sector);
		*err = "VMDK file truncated: grain directory beyond end of file";
		return -EINVAL;
	}
	return 0;
}

static void sesparse_close(struct imgfmt_image *img)
{
	struct sesparse_image *s;

	if (!img)
		return;
	s = container_of(img, struct sesparse_image, img);
	imgfmt_mcache_destroy(s->img.mcache);
	imgfmt_free_large(s->gd);
	kfree(s);
}

static int sesparse_setup(struct sesparse_image *s,
			  const struct sesparse_const_header *h, u64 needed,
			  const struct imgfmt_open_args *args, const char **err)
{
	u64 gd_offset = le64_to_cpu(h->grain_dir_offset) << 9;
	struct imgfmt_info *info = &s->img.info;
	int r;

	s->img.info.virtual_size = le64_to_cpu(h->capacity) * SESPARSE_SECTOR;
	s->gd_entries = needed;
	s->tables = le64_to_cpu(h->grain_tables_offset) << 9;
	s->grains = le64_to_cpu(h->grains_offset) << 9;
	info->format = "vmdk-sesparse";
	info->version = le64_to_cpu(h->version) >> 32;
	info->virtual_size = s->img.info.virtual_size;
	info->cluster_size = SESPARSE_GRAIN_SIZE;
	info->l1_entries = needed;
	info->l1_offset = gd_offset;

	if (needed) {
		s->gd = imgfmt_alloc_large(needed * 8);
		if (!s->gd) {
			*err = "cannot allocate memory for the VMDK grain directory";
			return -ENOMEM;
		}
		r = imgfmt_dev_read(s->img.dev, gd_offset, s->gd, needed * 8);
		if (r) {
			*err = "cannot read the VMDK grain directory";
			return r;
		}
	}
	s->img.mcache = imgfmt_mcache_for(args->mgroup, s->img.dev,
					  SESPARSE_GT_BYTES, args->cache_bytes);
	if (!s->img.mcache) {
		*err = "cannot allocate the metadata cache";
		return -ENOMEM;
	}
	return 0;
}

static int sesparse_open(const struct imgfmt_open_args *args,
			 struct imgfmt_image **imgp, const char **err)
{
	struct imgfmt_dev *dev = args->dev;
	struct sesparse_const_header *h;
	struct sesparse_image *s;
	u64 needed;
	int r;

	if (dev->size < sizeof(*h)) {
		*err = "image is smaller than a VMDK seSparse header";
		return -EINVAL;
	}
	h = kmalloc(sizeof(*h), GFP_KERNEL);
	if (!h) {
		*err = "cannot allocate memory for the VMDK header";
		return -ENOMEM;
	}
	r = imgfmt_dev_read(dev, 0, h, sizeof(*h));
	if (r) {
		*err = "cannot read the VMDK seSparse header";
		goto out;
	}
	if (le64_to_cpu(h->magic) != SESPARSE_MAGIC) {
		*err = "unknown image format";
		r = -EINVAL;
		goto out;
	}
	r = sesparse_check_const(h, err);
	if (!r)
		r = sesparse_check_volatile(dev, h, err);
	if (!r)
		r = sesparse_check_layout(dev, h, &needed, err);
	if (r)
		goto out;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s) {
		*err = "cannot allocate memory for the image";
		r = -ENOMEM;
		goto out;
	}
	s->img.dev = dev;
	r = sesparse_setup(s, h, needed, args, err);
	if (r)
		sesparse_close(&s->img);
	else
		*imgp = &s->img;
out:
	kfree(h);
	return r;
}

/* Device offset of the grain table of directory entry i; 0: none. */
static int sesparse_gt_offset(struct sesparse_image *s, u64 i, u64 pos,
			      u64 *gt, const char **err)
{
	u64 e = le64_to_cpu(s->gd[i]);

	*gt = 0;
	if (!e)
		return 0;
	if ((e & SESPARSE_GDE_TYPE_MASK) != SESPARSE_GDE_ALLOCATED)
		return imgfmt_corrupt(&s->img, "grain directory entry invalid",
				      pos, err);
	/* The index is below 2^32 and a table 2^15 bytes: no overflow. */
	if (check_add_overflow(s->tables,
			       (e & SESPARSE_GDE_INDEX_MASK) * SESPARSE_GT_BYTES,
			       gt) ||
	    !imgfmt_dev_has(s->img.dev, *gt, SESPARSE_GT_BYTES))
		return imgfmt_corrupt(&s->img,
				      "grain table beyond end of device", pos,
				      err);
	return 0;
}

/* Copy entry idx of the grain table at gt (CPU order). */
static int sesparse_get_gte(struct sesparse_image *s, u64 gt, u32 idx,
			    u32 wanted, struct imgfmt_batch *b,
			    unsigned int flags, u64 *gte)
{
	const void *e;
	int r;

	r = imgfmt_mcache_entry(b, s->img.mcache, gt, idx * 8, 8, wanted * 8,
				flags & IMGFMT_MAP_NOWAIT, &e);
	if (!r)
		*gte = le64_to_cpu(*(const __le64 *)e);
	return r;
}

/*
 * An allocated grain: the unit is the grain holding pos, or its part that
 * the device holds; a grain cut short by the end of the device reads as
 * zeroes past it, as QEMU reads past the end of a file.
 */
static int sesparse_classify_data(struct sesparse_image *s, u64 gte, u64 pos,
				  struct imgfmt_unit *u, const char **err)
{
	u64 grain = (gte >> 48 & 0xfff) | (gte & 0xffffffffffffULL) << 12;
	u64 host, avail;

	if (check_mul_overflow(grain, (u64)SESPARSE_GRAIN_SIZE, &host) ||
	    check_add_overflow(host, s->grains, &host) ||
	    host >= s->img.dev->size)
		return imgfmt_corrupt(&s->img, "grain beyond end of device",
				      pos, err);
	u->kind = IMGFMT_RUN_DATA;
	u->host = host;
	avail = (s->img.dev->size - host) & ~511ULL;
	if (avail < SESPARSE_GRAIN_SIZE) {
		if (pos - u->start >= avail) {
			u->kind = IMGFMT_RUN_ZERO;
			u->start += avail;
		} else {
			u->end = u->start + avail;
		}
	}
	return 0;
}

static int sesparse_classify(struct sesparse_image *s, u64 gte, u64 pos,
			     struct imgfmt_unit *u, const char **err)
{
	u->start = pos & ~((u64)SESPARSE_GRAIN_SIZE - 1);
	u->end = u->start + SESPARSE_GRAIN_SIZE;
	switch (gte >> 60) {
	case SESPARSE_GTE_UNALLOCATED:
		if (gte)
			break;
		u->kind = IMGFMT_RUN_UNALLOCATED;
		return 0;
	case SESPARSE_GTE_UNMAPPED:
	case SESPARSE_GTE_ZERO:
		u->kind = IMGFMT_RUN_ZERO;
		return 0;
	case SESPARSE_GTE_ALLOCATED:
		return sesparse_classify_data(s, gte, pos, u, err);
	}
	return imgfmt_corrupt(&s->img, "grain table entry invalid", pos, err);
}

/* What lives at virtual offset pos; end bounds how far the caller looks. */
static int sesparse_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
			   u64 pos, u64 end, unsigned int flags,
			   struct imgfmt_unit *u, const char **err)
{
	struct sesparse_image *s = container_of(img, struct sesparse_image, img);
	u64 gdi = pos >> SESPARSE_SPAN_BITS, gt, gte;
	u32 idx = (pos >> SESPARSE_GRAIN_BITS) & (SESPARSE_GT_ENTRIES - 1);
	u32 wanted;
	int r;

	if (gdi >= s->gd_entries)
		return imgfmt_corrupt(&s->img,
				      "offset beyond the grain directory", pos,
				      err);
	r = sesparse_gt_offset(s, gdi, pos, &gt, err);
	if (r)
		return r;
	if (!gt) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		u->start = gdi << SESPARSE_SPAN_BITS;
		u->end = (gdi + 1) << SESPARSE_SPAN_BITS;
		return 0;
	}
	wanted = imgfmt_units_wanted(pos, end, SESPARSE_GRAIN_BITS,
				     IMGFMT_BATCH_BYTES / 8);
	r = sesparse_get_gte(s, gt, idx, wanted, b, flags, &gte);
	if (r == -EIO)
		return imgfmt_corrupt(&s->img, "cannot read grain table", pos,
				      err);
	if (r)
		return r;
	return sesparse_classify(s, gte, pos, u, err);
}

const struct imgfmt_format_ops imgfmt_vmdk_sesparse_ops = {
	.name = "vmdk-sesparse",
	.probe = sesparse_probe,
	.open = sesparse_open,
	.close = sesparse_close,
	.lookup = sesparse_lookup,
};
