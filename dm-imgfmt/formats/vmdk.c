// SPDX-License-Identifier: GPL-2.0-only
/*
 * VMDK sparse extents: hosted sparse ("KDMV", versions 1 to 3, including
 * streamOptimized extents of compressed grains) and ESX VMFS sparse
 * ("COWD"); seSparse is in sesparse.c.  The kernel sees one extent file per
 * table segment; descriptors that join several extents are userspace's.
 *
 * Layout facts come from VMware's Virtual Disk Format 1.1 and 5.0 technical
 * notes, and the limits from what QEMU's block/vmdk.c accepts.  Every field
 * read from the image is treated as hostile: the header is checked
 * completely at open, and each grain directory and grain table entry when a
 * lookup meets it, so that a corrupt entry fails only the reads that touch
 * it.
 */
#include "../imgfmt_format.h"
#include "../mcache.h"
#include "runs.h"
#include "vmdk_keys.h"

#define VMDK4_MAGIC			0x564d444bU	/* "KDMV" */
#define VMDK3_MAGIC			0x44574f43U	/* "COWD" */

#define VMDK_SECTOR			512
#define VMDK4_MAX_VERSION		3
#define VMDK4_FLAG_NL_TEST		BIT(0)
#define VMDK4_FLAG_ZERO_GRAIN		BIT(2)
#define VMDK4_FLAG_MARKERS		BIT(17)
#define VMDK4_COMPRESS_NONE		0
#define VMDK4_COMPRESS_DEFLATE		1
#define VMDK4_GD_AT_END			U64_MAX
#define VMDK4_MAX_GTES			512
#define VMDK3_GTES			4096
#define VMDK_GTE_ZEROED			1
#define VMDK_GTE_BYTES			4	/* GD and GT entries: sectors */

/* QEMU's bounds: 1 GiB grains and 32M grain directory entries. */
#define VMDK_MAX_GRAIN_SECTORS		0x200000ULL
#define VMDK_MAX_GD_ENTRIES		(32ULL << 20)
/* Our own: compressed grains are inflated in one buffer. */
#define VMDK_MAX_COMP_GRAIN		(2U << 20)
#define VMDK_MAX_CAPACITY		BIT_ULL(53)	/* sectors: 2^62 bytes */
#define VMDK_MAX_DESC_BYTES		(64U << 10)

/* streamOptimized markers. */
#define VMDK_MARKER_HEADER_LEN		12	/* u64 value, u32 size */
#define VMDK_MARKER_EOS			0
#define VMDK_MARKER_FOOTER		3

struct vmdk4_header {
	__le32 magic;
	__le32 version;
	__le32 flags;
	__le64 capacity;		/* sectors */
	__le64 grain_size;		/* sectors */
	__le64 desc_offset;		/* sectors */
	__le64 desc_size;		/* sectors */
	__le32 num_gtes_per_gt;
	__le64 rgd_offset;		/* sectors */
	__le64 gd_offset;		/* sectors */
	__le64 overhead;		/* sectors */
	u8 unclean_shutdown;
	u8 nl_test[4];			/* '\n', ' ', '\r', '\n' */
	__le16 compress_algorithm;
	u8 pad[433];
} __packed;

struct vmdk_marker {
	__le64 value;
	__le32 size;
	__le32 type;
	u8 pad[496];
} __packed;

/* The last three sectors of a stream whose header says GD_AT_END. */
struct vmdk4_footer {
	struct vmdk_marker footer_marker;
	struct vmdk4_header header;
	struct vmdk_marker eos_marker;
} __packed;

struct vmdk3_header {
	__le32 magic;
	__le32 version;
	__le32 flags;
	__le32 capacity;		/* sectors */
	__le32 grain_size;		/* sectors */
	__le32 gd_offset;		/* sectors */
	__le32 gd_entries;
	__le32 free_sector;
	u8 pad[480];
} __packed;

enum vmdk_kind {
	VMDK_HOSTED,		/* KDMV */
	VMDK_VMFS,		/* COWD */
};

/* What a header says, in CPU order and bytes, for the common checks. */
struct vmdk_layout {
	enum vmdk_kind kind;
	u32 version;
	u64 capacity;		/* sectors */
	u64 grain_sectors;
	u32 gt_entries;		/* entries per grain table */
	u64 gd_sector;		/* grain directory */
	u64 gd_entries;		/* declared; 0: as many as the capacity needs */
	bool zero_grain;
	bool compressed;
	bool markers;
	bool dirty;
};

struct vmdk_image {
	struct imgfmt_image img;	/* first: the shared part */
	struct imgfmt_mcache *markers;	/* sectors holding grain markers */
	__le32 *gd;		/* as on disk */
	u64 gd_entries;
	u32 grain_bits;
	u32 grain_size;		/* bytes */
	u32 gt_entries;
	u32 gt_bytes;		/* on disk */
	u32 gt_table_size;	/* in the cache: gt_bytes rounded to sectors */
	bool zero_grain;
	bool compressed;
	bool has_markers;
};

static bool vmdk_probe(const void *head, size_t len)
{
	const u8 *p = head;
	u32 magic;

	if (len < 4)
		return false;
	magic = p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24;
	return magic == VMDK4_MAGIC || magic == VMDK3_MAGIC;
}

/* Byte offset of a sector number, false on overflow. */
static bool sectors_to_bytes(u64 sectors, u64 *bytes)
{
	if (sectors > U64_MAX >> 9)
		return false;
	*bytes = sectors << 9;
	return true;
}

/* --- The embedded descriptor of a hosted sparse extent. --- */

/*
 * A delta disk's descriptor names its parent: the helper finds the file
 * from the hint (relative to this one's directory, as QEMU resolves it) and
 * checks that the parent's CID is the parentCID recorded here.
 */
static int vmdk4_take_parent(const struct vmdk_header *h, bool has_lower,
			     struct imgfmt_info *info, const char **err)
{
	/* Half a link is a broken image, with or without a layer below. */
	if (!h->parent_hint.len) {
		*err = "VMDK delta disk without a parentFileNameHint";
		return -EINVAL;
	}
	if (!h->has_parent_cid || h->parent_cid == VMDK_CID_NONE) {
		*err = "VMDK delta disk without a parentCID";
		return -EINVAL;
	}
	/* Without its parent, unallocated grains would read wrong. */
	if (!has_lower) {
		*err = "VMDK parent disk not given as a lower layer";
		return -EINVAL;
	}
	if (h->parent_hint.len >= sizeof(info->backing_file)) {
		*err = "VMDK parentFileNameHint too long";
		return -EINVAL;
	}
	memcpy(info->backing_file, h->parent_hint.s, h->parent_hint.len);
	info->backing_file[h->parent_hint.len] = '\0';
	memcpy(info->backing_format, "vmdk", sizeof("vmdk"));
	return 0;
}

/* The header keys of the descriptor text (NUL-padded, len bytes). */
static int vmdk4_take_descriptor(const char *text, size_t len, bool has_lower,
				 struct imgfmt_info *info, const char **err)
{
	struct vmdk_header h;
	unsigned int line;
	int r;

	r = vmdk_header_parse(text, len, &h, &line, err);
	if (r)
		return r;
	if (h.has_cid) {
		info->has_cid = true;
		info->cid = h.cid;
		info->parent_cid = h.has_parent_cid ? h.parent_cid :
				   VMDK_CID_NONE;
	}
	if (!vmdk_header_names_parent(&h))
		return 0;
	return vmdk4_take_parent(&h, has_lower, info, err);
}

static int vmdk4_read_descriptor(struct imgfmt_dev *dev,
				 const struct vmdk4_header *h, bool has_lower,
				 struct imgfmt_info *info, const char **err)
{
	u64 sector = le64_to_cpu(h->desc_offset);
	u64 sectors = le64_to_cpu(h->desc_size);
	u64 off, len;
	char *buf;
	int r;

	if (!sector || !sectors)
		return 0;
	if (!sectors_to_bytes(sector, &off) ||
	    !sectors_to_bytes(sectors, &len) || !imgfmt_dev_has(dev, off, len)) {
		*err = "VMDK embedded descriptor beyond end of file";
		return -EINVAL;
	}
	len = min_t(u64, len, VMDK_MAX_DESC_BYTES);
	buf = imgfmt_alloc_large(len);
	if (!buf) {
		*err = "cannot allocate memory for the VMDK descriptor";
		return -ENOMEM;
	}
	r = imgfmt_dev_read(dev, off, buf, len);
	if (r)
		*err = "cannot read the VMDK embedded descriptor";
	else
		r = vmdk4_take_descriptor(buf, len, has_lower, info, err);
	imgfmt_free_large(buf);
	return r;
}

/* --- Headers. --- */

/* streamOptimized: the header that counts is in the footer. */
static int vmdk4_read_footer(struct imgfmt_dev *dev, struct vmdk4_header *h,
			     const char **err)
{
	struct vmdk4_footer *f;
	u64 end = ALIGN(dev->size, VMDK_SECTOR), off;
	int r;

	if (end < sizeof(*f) + VMDK_SECTOR) {
		*err = "VMDK invalid footer";
		return -EINVAL;
	}
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
		*err = "cannot allocate memory for the VMDK footer";
		return -ENOMEM;
	}
	/* A last partial sector reads as zeroes past the end, as in QEMU. */
	off = end - sizeof(*f);
	r = imgfmt_dev_read(dev, off, f, min_t(u64, sizeof(*f), dev->size - off));
	if (r) {
		*err = "cannot read the VMDK footer";
		goto out;
	}
	if (le32_to_cpu(f->footer_marker.size) ||
	    le32_to_cpu(f->footer_marker.type) != VMDK_MARKER_FOOTER ||
	    le32_to_cpu(f->header.magic) != VMDK4_MAGIC ||
	    le64_to_cpu(f->eos_marker.value) ||
	    le32_to_cpu(f->eos_marker.size) ||
	    le32_to_cpu(f->eos_marker.type) != VMDK_MARKER_EOS) {
		*err = "VMDK invalid footer";
		r = -EINVAL;
		goto out;
	}
	*h = f->header;
out:
	kfree(f);
	return r;
}

/* sector0 holds the header, replaced by the footer's when that counts. */
static int vmdk4_parse(struct imgfmt_dev *dev, void *sector0,
		       const struct imgfmt_open_args *args,
		       struct imgfmt_info *info, struct vmdk_layout *l,
		       const char **err)
{
	struct vmdk4_header *h = sector0;
	u32 flags, gtes;
	u16 algo;
	int r;

	if (!h->capacity && h->desc_offset) {
		/* QEMU reads such a file as a descriptor naming other files. */
		*err = "VMDK extent of capacity 0 naming other extents is not supported";
		return -EOPNOTSUPP;
	}
	if (le64_to_cpu(h->gd_offset) == VMDK4_GD_AT_END) {
		r = vmdk4_read_footer(dev, h, err);
		if (r)
			return r;
	}
	l->kind = VMDK_HOSTED;
	l->version = le32_to_cpu(h->version);
	if (l->version > VMDK4_MAX_VERSION) {
		*err = "VMDK version not supported";
		return -EOPNOTSUPP;
	}
	flags = le32_to_cpu(h->flags);
	if ((flags & VMDK4_FLAG_NL_TEST) &&
	    memcmp(h->nl_test, "\n \r\n", sizeof(h->nl_test))) {
		*err = "VMDK newline test bytes damaged (file transferred as text?)";
		return -EINVAL;
	}
	algo = le16_to_cpu(h->compress_algorithm);
	if (algo != VMDK4_COMPRESS_NONE && algo != VMDK4_COMPRESS_DEFLATE) {
		*err = "VMDK unknown compression algorithm";
		return -EINVAL;
	}
	gtes = le32_to_cpu(h->num_gtes_per_gt);
	if (gtes > VMDK4_MAX_GTES) {
		*err = "VMDK grain table too large (more than 512 entries)";
		return -EINVAL;
	}
	l->capacity = le64_to_cpu(h->capacity);
	l->grain_sectors = le64_to_cpu(h->grain_size);
	l->gt_entries = gtes;
	l->gd_sector = le64_to_cpu(h->gd_offset);
	l->zero_grain = flags & VMDK4_FLAG_ZERO_GRAIN;
	l->compressed = algo == VMDK4_COMPRESS_DEFLATE;
	l->markers = flags & VMDK4_FLAG_MARKERS;
	l->dirty = h->unclean_shutdown;
	if (le64_to_cpu(h->overhead) > DIV_ROUND_UP_ULL(dev->size, VMDK_SECTOR)) {
		imgfmt_log("vmdk: file truncated, expecting at least %llu sectors",
			   (unsigned long long)le64_to_cpu(h->overhead));
		*err = "VMDK file truncated: shorter than the metadata overhead";
		return -EINVAL;
	}
	return vmdk4_read_descriptor(dev, h, args->has_lower, info, err);
}

static int vmdk3_parse(const void *sector0, struct vmdk_layout *l)
{
	const struct vmdk3_header *h = sector0;

	l->kind = VMDK_VMFS;
	l->version = le32_to_cpu(h->version);
	l->capacity = le32_to_cpu(h->capacity);
	l->grain_sectors = le32_to_cpu(h->grain_size);
	l->gt_entries = VMDK3_GTES;
	l->gd_sector = le32_to_cpu(h->gd_offset);
	l->gd_entries = le32_to_cpu(h->gd_entries);
	return 0;
}

/* Checks common to every kind; sets *needed to the directory's length. */
static int vmdk_check_layout(const struct imgfmt_dev *dev,
			     const struct vmdk_layout *l, u64 *needed,
			     const char **err)
{
	u64 grains, gd_off;

	if (!l->grain_sectors || (l->grain_sectors & (l->grain_sectors - 1)) ||
	    l->grain_sectors > VMDK_MAX_GRAIN_SECTORS) {
		*err = "VMDK invalid granularity";
		return -EINVAL;
	}
	if (l->compressed &&
	    l->grain_sectors * VMDK_SECTOR > VMDK_MAX_COMP_GRAIN) {
		*err = "VMDK compressed grains larger than 2 MiB are not supported";
		return -EOPNOTSUPP;
	}
	if (!l->gt_entries) {
		*err = "VMDK grain table size is zero";
		return -EINVAL;
	}
	if (l->capacity > VMDK_MAX_CAPACITY) {
		*err = "VMDK virtual size too large";
		return -EINVAL;
	}
	grains = DIV_ROUND_UP_ULL(l->capacity, l->grain_sectors);
	*needed = DIV_ROUND_UP_ULL(grains, l->gt_entries);
	if (*needed > VMDK_MAX_GD_ENTRIES ||
	    (l->gd_entries && l->gd_entries > VMDK_MAX_GD_ENTRIES)) {
		*err = "VMDK grain directory too large";
		return -EINVAL;
	}
	/* Ours: the directory is kept in memory whole. */
	if (*needed > IMGFMT_MAX_TOP_TABLE_BYTES / VMDK_GTE_BYTES) {
		*err = "VMDK grain directory larger than 32 MiB";
		return -EINVAL;
	}
	if (l->kind != VMDK_HOSTED && l->gd_entries < *needed) {
		*err = "VMDK grain directory too small for the capacity";
		return -EINVAL;
	}
	if (!*needed)
		return 0;
	if (!l->gd_sector) {
		*err = "VMDK grain directory offset invalid";
		return -EINVAL;
	}
	if (!sectors_to_bytes(l->gd_sector, &gd_off) ||
	    !imgfmt_dev_has(dev, gd_off, *needed * VMDK_GTE_BYTES)) {
		imgfmt_log("vmdk: file truncated, grain directory needs %llu bytes at %llu",
			   (unsigned long long)(*needed * VMDK_GTE_BYTES),
			   (unsigned long long)l->gd_sector * VMDK_SECTOR);
		*err = "VMDK file truncated: grain directory beyond end of file";
		return -EINVAL;
	}
	return 0;
}

static void vmdk_close(struct imgfmt_image *img)
{
	struct vmdk_image *v;

	if (!img)
		return;
	v = container_of(img, struct vmdk_image, img);
	imgfmt_mcache_destroy(v->img.mcache);
	imgfmt_mcache_destroy(v->markers);
	imgfmt_free_large(v->gd);
	kfree(v);
}

static void vmdk_fill_info(struct vmdk_image *v, const struct vmdk_layout *l)
{
	struct imgfmt_info *info = &v->img.info;

	info->format = "vmdk";
	info->version = l->version;
	info->virtual_size = v->img.info.virtual_size;
	info->cluster_size = v->grain_size;
	info->dirty = l->dirty;
	info->compression = l->compressed ? IMGFMT_COMP_ZLIB : IMGFMT_COMP_NONE;
	info->l1_entries = v->gd_entries;
	info->l1_offset = l->gd_sector * VMDK_SECTOR;
}

static int vmdk_setup(struct vmdk_image *v, const struct vmdk_layout *l,
		      u64 needed, const struct imgfmt_open_args *args,
		      const char **err)
{
	size_t gd_bytes = needed * VMDK_GTE_BYTES;
	u64 cache_bytes = args->cache_bytes;
	int r;

	v->img.info.virtual_size = l->capacity * VMDK_SECTOR;
	v->grain_size = l->grain_sectors * VMDK_SECTOR;
	while (BIT_ULL(v->grain_bits) < v->grain_size)
		v->grain_bits++;
	v->gt_entries = l->gt_entries;
	v->gt_bytes = l->gt_entries * VMDK_GTE_BYTES;
	v->gt_table_size = ALIGN(v->gt_bytes, VMDK_SECTOR);
	v->gd_entries = needed;
	v->zero_grain = l->zero_grain;
	v->compressed = l->compressed;
	v->has_markers = l->compressed && l->markers;
	vmdk_fill_info(v, l);

	if (gd_bytes) {
		v->gd = imgfmt_alloc_large(gd_bytes);
		if (!v->gd) {
			*err = "cannot allocate memory for the VMDK grain directory";
			return -ENOMEM;
		}
		r = imgfmt_dev_read(v->img.dev, l->gd_sector * VMDK_SECTOR, v->gd,
				    gd_bytes);
		if (r) {
			*err = "cannot read the VMDK grain directory";
			return r;
		}
	}
	/* Grain markers get an eighth of the bound. */
	if (v->has_markers) {
		v->markers = imgfmt_mcache_for(args->mgroup, v->img.dev,
					       VMDK_SECTOR, cache_bytes / 8);
		cache_bytes -= cache_bytes / 8;
	}
	v->img.mcache = imgfmt_mcache_for(args->mgroup, v->img.dev,
					  v->gt_table_size, cache_bytes);
	if (!v->img.mcache || (v->has_markers && !v->markers)) {
		*err = "cannot allocate the metadata cache";
		return -ENOMEM;
	}
	return 0;
}

static int vmdk_open(const struct imgfmt_open_args *args,
		     struct imgfmt_image **imgp, const char **err)
{
	struct imgfmt_dev *dev = args->dev;
	struct vmdk_layout l;
	struct vmdk_image *v;
	u64 needed;
	u8 *sector0;
	int r;

	if (dev->size < VMDK_SECTOR) {
		*err = "image is smaller than a VMDK header";
		return -EINVAL;
	}
	sector0 = kmalloc(VMDK_SECTOR, GFP_KERNEL);
	/* First: the descriptor fills in the parent's name and CIDs. */
	v = kzalloc(sizeof(*v), GFP_KERNEL);
	if (!sector0 || !v) {
		*err = "cannot allocate memory for the image";
		r = -ENOMEM;
		goto out;
	}
	r = imgfmt_dev_read(dev, 0, sector0, VMDK_SECTOR);
	if (r) {
		*err = "cannot read the VMDK header";
		goto out;
	}
	memset(&l, 0, sizeof(l));
	if (!vmdk_probe(sector0, VMDK_SECTOR)) {
		*err = "unknown image format";
		r = -EINVAL;
	} else if (le32_to_cpu(*(__le32 *)sector0) == VMDK4_MAGIC) {
		r = vmdk4_parse(dev, sector0, args, &v->img.info, &l, err);
	} else {
		r = vmdk3_parse(sector0, &l);
	}
	if (!r)
		r = vmdk_check_layout(dev, &l, &needed, err);
	if (r)
		goto out;

	v->img.dev = dev;
	r = vmdk_setup(v, &l, needed, args, err);
	if (!r) {
		*imgp = &v->img;
		v = NULL;
	}
out:
	if (v)
		vmdk_close(&v->img);
	kfree(sector0);
	return r;
}

/* --- Mapping. --- */

/* Device offset of the grain table of directory entry i; 0: none. */
static int vmdk_gt_offset(struct vmdk_image *v, u64 i, u64 pos, u64 *gt,
			  const char **err)
{
	*gt = (u64)le32_to_cpu(v->gd[i]) << 9;
	if (*gt && !imgfmt_dev_has(v->img.dev, *gt, v->gt_table_size))
		return imgfmt_corrupt(&v->img,
				      "grain table beyond end of device", pos,
				      err);
	return 0;
}

/* Copy entry idx of the grain table at gt (CPU order). */
static int vmdk_get_gte(struct vmdk_image *v, u64 gt, u32 idx, u32 wanted,
			struct imgfmt_batch *b, unsigned int flags, u32 *gte)
{
	u32 span = min(wanted, v->gt_entries - idx) * VMDK_GTE_BYTES;
	const void *e;
	int r;

	r = imgfmt_mcache_entry(b, v->img.mcache, gt, idx * VMDK_GTE_BYTES,
				VMDK_GTE_BYTES, span, flags & IMGFMT_MAP_NOWAIT,
				&e);
	if (!r)
		*gte = le32_to_cpu(*(const __le32 *)e);
	return r;
}

/*
 * A compressed grain at host: its stream starts there, or after the marker
 * header, whose size field then bounds it.
 */
static int vmdk_classify_compressed(struct vmdk_image *v, u64 host, u64 pos,
				    unsigned int flags, struct imgfmt_unit *u,
				    const char **err)
{
	struct {
		__le64 lba;
		__le32 size;
	} __packed m;
	u64 len;
	int r;

	if (host >= v->img.dev->size)
		return imgfmt_corrupt(&v->img,
				      "compressed grain beyond end of device",
				      pos, err);
	u->kind = IMGFMT_RUN_COMPRESSED;
	if (!v->has_markers) {
		/* QEMU gives such a stream at most a grain of input. */
		u->comp_offset = host;
		u->comp_length = min_t(u64, v->grain_size, v->img.dev->size - host);
		return 0;
	}
	if (!imgfmt_dev_has(v->img.dev, host, VMDK_SECTOR))
		return imgfmt_corrupt(&v->img,
				      "compressed grain beyond end of device",
				      pos, err);
	r = imgfmt_mcache_read(v->markers, host, 0, &m, sizeof(m),
			       flags & IMGFMT_MAP_NOWAIT);
	if (r == -EIO)
		return imgfmt_corrupt(&v->img, "cannot read grain marker", pos,
				      err);
	if (r)
		return r;
	len = le32_to_cpu(m.size);
	u->comp_offset = host + VMDK_MARKER_HEADER_LEN;
	if (!len || len > 2ULL * v->grain_size ||
	    len > v->img.dev->size - u->comp_offset)
		return imgfmt_corrupt(&v->img, "grain marker size invalid", pos,
				      err);
	u->comp_length = len;
	return 0;
}

/*
 * Allocated data at host: the unit is the grain holding pos, or its part
 * that the device holds; a grain cut short by the end of the device reads
 * as zeroes past it, as QEMU reads past the end of a file.
 */
static int vmdk_classify_data(struct vmdk_image *v, u64 host, u64 pos,
			      struct imgfmt_unit *u, const char **err)
{
	u64 avail;

	if (host >= v->img.dev->size)
		return imgfmt_corrupt(&v->img, "grain beyond end of device",
				      pos, err);
	u->kind = IMGFMT_RUN_DATA;
	u->host = host;
	avail = (v->img.dev->size - host) & ~511ULL;
	if (avail < v->grain_size) {
		if (pos - u->start >= avail) {
			u->kind = IMGFMT_RUN_ZERO;
			u->start += avail;
		} else {
			u->end = u->start + avail;
		}
	}
	return 0;
}

static int vmdk_classify(struct vmdk_image *v, u32 gte, u64 pos,
			 unsigned int flags, struct imgfmt_unit *u,
			 const char **err)
{
	u64 host;

	u->start = pos & ~((u64)v->grain_size - 1);
	u->end = u->start + v->grain_size;
	if (!gte) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		return 0;
	}
	if (gte == VMDK_GTE_ZEROED && v->zero_grain) {
		u->kind = IMGFMT_RUN_ZERO;
		return 0;
	}
	host = (u64)gte << 9;
	if (v->compressed) {
		/*
		 * A grain's stream must end within the grain; reads past
		 * what it produced fail (ccache.c).  The last grain of a
		 * disk that ends inside it: QEMU writes its stream with only
		 * what the disk has left, VMware with the whole grain; both
		 * read right.
		 */
		u->comp_cluster_size = v->grain_size;
		u->comp_type = IMGFMT_COMP_ZLIB;
		return vmdk_classify_compressed(v, host, pos, flags, u, err);
	}
	return vmdk_classify_data(v, host, pos, u, err);
}

/* What lives at virtual offset pos; end bounds how far the caller looks. */
static int vmdk_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
		       u64 pos, u64 end, unsigned int flags,
		       struct imgfmt_unit *u, const char **err)
{
	struct vmdk_image *v = container_of(img, struct vmdk_image, img);
	u64 grain = pos >> v->grain_bits;
	u64 gdi = div_u64(grain, v->gt_entries);
	u32 idx = grain - gdi * v->gt_entries, wanted;
	u64 gt;
	u32 gte;
	int r;

	if (gdi >= v->gd_entries)
		return imgfmt_corrupt(&v->img,
				      "offset beyond the grain directory", pos,
				      err);
	r = vmdk_gt_offset(v, gdi, pos, &gt, err);
	if (r)
		return r;
	if (!gt) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
		u->start = (gdi * v->gt_entries) << v->grain_bits;
		u->end = u->start + ((u64)v->gt_entries << v->grain_bits);
		return 0;
	}
	wanted = imgfmt_units_wanted(pos, end, v->grain_bits,
				     IMGFMT_BATCH_BYTES / VMDK_GTE_BYTES);
	r = vmdk_get_gte(v, gt, idx, wanted, b, flags, &gte);
	if (r == -EIO)
		return imgfmt_corrupt(&v->img, "cannot read grain table", pos,
				      err);
	if (r)
		return r;
	return vmdk_classify(v, gte, pos, flags, u, err);
}

const struct imgfmt_format_ops imgfmt_vmdk_ops = {
	.name = "vmdk",
	.probe = vmdk_probe,
	.open = vmdk_open,
	.close = vmdk_close,
	.lookup = vmdk_lookup,
};
