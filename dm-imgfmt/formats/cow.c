// SPDX-License-Identifier: GPL-2.0-only
/*
 * UML COW: user-mode Linux copy-on-write files (arch/um/drivers/cow_user.c
 * in Linux, and QEMU's block/cow.c until 2014).
 *
 * A COW file is a header naming a backing file, a bitmap with one bit per
 * 512-byte sector of the virtual disk (least significant bit first in each
 * byte), and a data area.  A set bit means the sector lives in the data
 * area at data_offset + sector * 512; a clear bit means the backing file
 * holds it.  There are no tables: the bitmap alone maps the disk, so it is
 * read through the metadata cache in pieces, never held whole (a 1 TiB disk
 * has a 256 MiB bitmap).
 *
 * Five header layouts exist, all starting with the magic and the version:
 *
 *   layout         order    header  backing name  bitmap at   data aligned
 *   v1             host     280     8, 256        280         512
 *   v2             big      4120    8, 4096       4120        512
 *   v2 (QEMU)      big      1056    8, 1024       1056        512
 *   v3             big      4128    32, 4096      align(4128) alignment
 *   v3 (64-bit)    big      4136    36, 4096      align(4136) alignment
 *
 * v1 was written in the writer's byte order: the magic tells which.  v3 is
 * what UML and uml_mkcow write today; its 64-bit variant is the unpacked
 * struct that UML built for 64-bit hosts until 2005, with 4 bytes of
 * padding after mtime, recognised as UML does by the zero cow_format field
 * where the packed layout has the name's first bytes.  QEMU's version 2
 * shares the number but not the layout with UML's; it is told apart by the
 * sector size and the zeroed padding at its own offsets.
 *
 * Every field is treated as hostile: the header is checked completely at
 * open, and the bitmap is read only where lookups need it.
 */
#include "../imgfmt_format.h"
#include "../mcache.h"
#include "runs.h"

#define COW_MAGIC			0x4f4f4f4dU	/* "OOOM" big-endian */

#define COW_V1_HEADER_LEN		280
#define COW_V2_HEADER_LEN		4120
#define COW_V2_QEMU_HEADER_LEN		1056
#define COW_V3_HEADER_LEN		4128
#define COW_V3_64_HEADER_LEN		4136
#define COW_MAX_HEADER_LEN		COW_V3_64_HEADER_LEN

/* UML and QEMU index the bitmap by 512-byte sector, whatever the field. */
#define COW_SECTOR_SIZE			512
/*
 * v3 alignment: UML and uml_mkcow write the page size.  Data must start on
 * a sector for the block layer, and no page size exceeds 1 MiB.
 */
#define COW_MIN_ALIGNMENT		512
#define COW_MAX_ALIGNMENT		BIT(20)
/* v3 cow_format: the only one ever defined is the plain bitmap. */
#define COW_FORMAT_BITMAP		0
/* As for QCOW2: every offset derived from it fits in 64 bits. */
#define COW_MAX_VIRTUAL_SIZE		BIT_ULL(62)

/*
 * The bitmap is cached in pieces of this many bytes (16 MiB of disk each),
 * keyed by their device offset.  Pieces are filled by cow_fill_piece(),
 * not plain device reads, because the last one may run past the end of the
 * device; the tag keeps them apart from tables of other origins.
 */
#define COW_PIECE_BYTES			4096
#define COW_PIECE_TAG			0x636f77	/* "cow" */
/* Bitmap bytes copied out of the cache per lookup: 512 sectors. */

struct cow_header_v1_le {
	__le32 magic;
	__le32 version;
	char backing_file[256];
	__le32 mtime;
	__le64 size;
	__le32 sectorsize;
} __packed;

struct cow_header_v1_be {
	__be32 magic;
	__be32 version;
	char backing_file[256];
	__be32 mtime;
	__be64 size;
	__be32 sectorsize;
} __packed;

struct cow_header_v2 {
	__be32 magic;
	__be32 version;
	char backing_file[4096];
	__be32 mtime;
	__be64 size;
	__be32 sectorsize;
} __packed;

/* QEMU's struct as its x86-64 builds laid it out: size 8-byte aligned. */
struct cow_header_v2_qemu {
	__be32 magic;
	__be32 version;
	char backing_file[1024];
	__be32 mtime;
	__be32 pad_size;
	__be64 size;
	__be32 sectorsize;
	__be32 pad_end;
} __packed;

struct cow_header_v3 {
	__be32 magic;
	__be32 version;
	__be32 mtime;
	__be64 size;
	__be32 sectorsize;
	__be32 alignment;
	__be32 cow_format;
	char backing_file[4096];
} __packed;

/* The unpacked 64-bit v3; the padding was never initialised. */
struct cow_header_v3_64 {
	__be32 magic;
	__be32 version;
	__be32 mtime;
	__be32 pad_mtime;
	__be64 size;
	__be32 sectorsize;
	__be32 alignment;
	__be32 cow_format;
	char backing_file[4096];
	__be32 pad_end;
} __packed;

_Static_assert(sizeof(struct cow_header_v1_le) == COW_V1_HEADER_LEN, "v1");
_Static_assert(sizeof(struct cow_header_v1_be) == COW_V1_HEADER_LEN, "v1");
_Static_assert(sizeof(struct cow_header_v2) == COW_V2_HEADER_LEN, "v2");
_Static_assert(sizeof(struct cow_header_v2_qemu) == COW_V2_QEMU_HEADER_LEN,
	       "v2 QEMU");
_Static_assert(sizeof(struct cow_header_v3) == COW_V3_HEADER_LEN, "v3");
_Static_assert(sizeof(struct cow_header_v3_64) == COW_V3_64_HEADER_LEN,
	       "v3 64-bit");

/* Header fields in CPU order, whatever the layout. */
struct cow_fields {
	u32 version;
	u32 header_len;
	u64 size;
	u32 mtime;		/* the backing file's, when the file was made */
	u32 sectorsize;
	u32 alignment;		/* v3 only; 0 elsewhere */
	u32 cow_format;		/* v3 only */
	u64 bitmap_offset;
	u64 data_offset;
	const char *backing;	/* in the header buffer, maybe unterminated */
	u32 backing_len;	/* bytes of its field */
};

struct cow_image {
	struct imgfmt_image img;	/* first: the shared part */
	u64 sectors;		/* bits of the bitmap in use */
	u64 bitmap_offset;
	u64 data_offset;
	/* Sectors of the data area the device holds whole. */
	u64 data_sectors;
};

/* Either byte order: version 1 files from x86 hosts read "MOOO". */
static bool cow_probe(const void *head, size_t len)
{
	__be32 be;
	__le32 le;

	if (len < 8)
		return false;
	memcpy(&be, head, sizeof(be));
	memcpy(&le, head, sizeof(le));
	return be32_to_cpu(be) == COW_MAGIC || le32_to_cpu(le) == COW_MAGIC;
}

static bool is_pow2(u32 x)
{
	return x && !(x & (x - 1));
}

static void cow_read_v1(const void *buf, bool big, struct cow_fields *f)
{
	const struct cow_header_v1_be *b = buf;
	const struct cow_header_v1_le *l = buf;

	f->header_len = COW_V1_HEADER_LEN;
	f->size = big ? be64_to_cpu(b->size) : le64_to_cpu(l->size);
	f->mtime = big ? be32_to_cpu(b->mtime) : le32_to_cpu(l->mtime);
	f->sectorsize = big ? be32_to_cpu(b->sectorsize) :
			      le32_to_cpu(l->sectorsize);
	f->backing = b->backing_file;
	f->backing_len = sizeof(b->backing_file);
}

/*
 * QEMU zeroes its header before filling it and always writes a sector
 * size of 512; in UML's layout these bytes lie inside the 4096-byte name,
 * after its end, where UML leaves zeroes or heap contents.
 */
static bool cow_is_qemu_v2(const void *buf, size_t len)
{
	const struct cow_header_v2_qemu *q = buf;

	return len >= sizeof(*q) &&
	       memchr(q->backing_file, 0, sizeof(q->backing_file)) &&
	       !q->pad_size && !q->pad_end &&
	       be32_to_cpu(q->sectorsize) == COW_SECTOR_SIZE;
}

static void cow_read_v2(const void *buf, size_t len, struct cow_fields *f)
{
	const struct cow_header_v2_qemu *q = buf;
	const struct cow_header_v2 *h = buf;

	if (cow_is_qemu_v2(buf, len)) {
		f->header_len = COW_V2_QEMU_HEADER_LEN;
		f->size = be64_to_cpu(q->size);
		f->mtime = be32_to_cpu(q->mtime);
		f->sectorsize = be32_to_cpu(q->sectorsize);
		f->backing = q->backing_file;
		f->backing_len = sizeof(q->backing_file);
		return;
	}
	f->header_len = COW_V2_HEADER_LEN;
	f->size = be64_to_cpu(h->size);
	f->mtime = be32_to_cpu(h->mtime);
	f->sectorsize = be32_to_cpu(h->sectorsize);
	f->backing = h->backing_file;
	f->backing_len = sizeof(h->backing_file);
}

/*
 * The packed layout starts the name (an absolute path, never empty) where
 * the 64-bit one has cow_format, which is zero: four zero bytes there mean
 * the 64-bit layout, as UML decides.
 */
static void cow_read_v3(const void *buf, struct cow_fields *f)
{
	const struct cow_header_v3_64 *w = buf;
	const struct cow_header_v3 *h = buf;

	if (memcmp(h->backing_file, "\0\0\0\0", 4)) {
		f->header_len = COW_V3_HEADER_LEN;
		f->size = be64_to_cpu(h->size);
		f->mtime = be32_to_cpu(h->mtime);
		f->sectorsize = be32_to_cpu(h->sectorsize);
		f->alignment = be32_to_cpu(h->alignment);
		f->cow_format = be32_to_cpu(h->cow_format);
		f->backing = h->backing_file;
		f->backing_len = sizeof(h->backing_file);
		return;
	}
	f->header_len = COW_V3_64_HEADER_LEN;
	f->size = be64_to_cpu(w->size);
	f->mtime = be32_to_cpu(w->mtime);
	f->sectorsize = be32_to_cpu(w->sectorsize);
	f->alignment = be32_to_cpu(w->alignment);
	f->cow_format = be32_to_cpu(w->cow_format);
	f->backing = w->backing_file;
	f->backing_len = sizeof(w->backing_file);
}

/*
 * Magic and version, then the layout's fields.  len is how much of the
 * header the device holds (at most COW_MAX_HEADER_LEN); a layout needs
 * all of its header, as UML refuses a short one.
 */
static int cow_read_fields(const void *buf, size_t len, struct cow_fields *f,
			   const char **err)
{
	const __be32 *w = buf;
	bool big;

	memset(f, 0, sizeof(*f));
	if (be32_to_cpu(w[0]) == COW_MAGIC) {
		big = true;
		f->version = be32_to_cpu(w[1]);
	} else if (le32_to_cpu(((const __le32 *)buf)[0]) == COW_MAGIC) {
		big = false;
		f->version = le32_to_cpu(((const __le32 *)buf)[1]);
	} else {
		*err = "UML COW bad magic number";
		return -EINVAL;
	}
	if (f->version < 1 || f->version > 3) {
		*err = "UML COW unsupported version";
		return -EINVAL;
	}
	/* Only version 1 was written in host order; 2 and 3 always htonl. */
	if (f->version > 1 && !big) {
		*err = "UML COW version 2 or 3 header not big-endian";
		return -EINVAL;
	}
	if (f->version == 1)
		cow_read_v1(buf, big, f);
	else if (f->version == 2)
		cow_read_v2(buf, len, f);
	else
		cow_read_v3(buf, f);
	if (len < f->header_len) {
		*err = "UML COW image is smaller than its header";
		return -EINVAL;
	}
	return 0;
}

static int cow_check_fields(const struct cow_fields *f, const char **err)
{
	if (f->sectorsize != COW_SECTOR_SIZE) {
		*err = "UML COW sector size is not 512 bytes";
		return -EINVAL;
	}
	if (f->version == 3) {
		if (!is_pow2(f->alignment)) {
			*err = "UML COW alignment is not a power of two";
			return -EINVAL;
		}
		if (f->alignment < COW_MIN_ALIGNMENT ||
		    f->alignment > COW_MAX_ALIGNMENT) {
			*err = "UML COW alignment out of range (512 bytes to 1 MiB)";
			return -EINVAL;
		}
		if (f->cow_format != COW_FORMAT_BITMAP) {
			*err = "UML COW unknown cow_format";
			return -EINVAL;
		}
	}
	if (!f->size) {
		*err = "UML COW virtual size is zero";
		return -EINVAL;
	}
	if (f->size > COW_MAX_VIRTUAL_SIZE) {
		*err = "UML COW virtual size too large";
		return -EINVAL;
	}
	return 0;
}

/* Bytes of bitmap the virtual size needs: one bit per started sector. */
static u64 cow_bitmap_bytes(u64 size)
{
	return DIV_ROUND_UP_ULL(DIV_ROUND_UP_ULL(size, COW_SECTOR_SIZE), 8);
}

/*
 * Where the writers put the bitmap and the data area; size is at most
 * 2^62 and alignments at most 1 MiB, so nothing here overflows.
 *  - UML v1/v2 sized the bitmap as (size + 511) / 4096 bytes, a byte short
 *    when the sector count is not a multiple of 8 (fixed in v3), and put
 *    the data on the next sector after that.
 *  - QEMU counted whole sectors only (size / 512) and rounded correctly.
 *  - v3 rounds both the bitmap's start and the data's to the alignment.
 */
static void cow_place(struct cow_fields *f)
{
	u64 len;

	if (f->version == 3) {
		f->bitmap_offset = ALIGN((u64)f->header_len, f->alignment);
		len = cow_bitmap_bytes(f->size);
		f->data_offset = ALIGN(f->bitmap_offset + len, f->alignment);
		return;
	}
	f->bitmap_offset = f->header_len;
	if (f->header_len == COW_V2_QEMU_HEADER_LEN)
		len = DIV_ROUND_UP_ULL(f->size / COW_SECTOR_SIZE, 8);
	else
		len = (f->size + COW_SECTOR_SIZE - 1) / (8 * COW_SECTOR_SIZE);
	f->data_offset = ALIGN(f->bitmap_offset + len, COW_SECTOR_SIZE);
}

/*
 * The bitmap must fit before the data area and inside the device.  The
 * first fails only for the v1/v2 rounding above, at sizes where UML itself
 * kept the last sectors' bits in the data area's first byte: refused, as
 * there is no telling data from bits there.  The data area may end past
 * the device (QEMU grows the file as sectors are written and reads zeroes
 * past its end), but it must start within the device's last sector: only
 * a truncated file starts it later, and nothing of it would be left.
 */
static int cow_check_placement(const struct cow_fields *f,
			       const struct imgfmt_dev *dev, const char **err)
{
	u64 end = f->bitmap_offset + cow_bitmap_bytes(f->size);

	if (end > f->data_offset) {
		*err = "UML COW bitmap overlaps the data area";
		return -EINVAL;
	}
	if (end > dev->size) {
		*err = "UML COW bitmap beyond end of device";
		return -EINVAL;
	}
	if (f->data_offset > ALIGN(dev->size, COW_SECTOR_SIZE)) {
		*err = "UML COW data area beyond end of device";
		return -EINVAL;
	}
	return 0;
}

/*
 * The name must end within its field, and fit struct imgfmt_info whole: a
 * cut name would name another file.  Copied raw; the helper escapes it.
 */
static int cow_copy_backing(const struct cow_fields *f,
			    struct imgfmt_info *info, const char **err)
{
	size_t n = strnlen(f->backing, f->backing_len);

	if (n == f->backing_len) {
		*err = "UML COW backing file name not terminated";
		return -EINVAL;
	}
	if (n >= sizeof(info->backing_file)) {
		*err = "UML COW backing file name too long";
		return -EINVAL;
	}
	memcpy(info->backing_file, f->backing, n);
	info->backing_file[n] = '\0';
	return 0;
}

static int cow_parse(struct imgfmt_dev *dev, struct cow_fields *f,
		     struct cow_image *c, const char **err)
{
	size_t len = min_t(u64, dev->size, COW_MAX_HEADER_LEN);
	u8 *buf;
	int r;

	if (dev->size < 8) {
		*err = "UML COW image is smaller than its header";
		return -EINVAL;
	}
	buf = kzalloc(COW_MAX_HEADER_LEN, GFP_KERNEL);
	if (!buf) {
		*err = "cannot allocate memory for the UML COW header";
		return -ENOMEM;
	}
	r = imgfmt_dev_read(dev, 0, buf, len);
	if (r) {
		*err = "cannot read the UML COW header";
		goto out;
	}
	r = cow_read_fields(buf, len, f, err);
	if (!r)
		r = cow_check_fields(f, err);
	if (r)
		goto out;
	cow_place(f);
	r = cow_check_placement(f, dev, err);
	if (!r)
		r = cow_copy_backing(f, &c->img.info, err);
out:
	kfree(buf);
	f->backing = NULL;
	return r;
}

static void cow_fill_info(struct cow_image *c, const struct cow_fields *f)
{
	struct imgfmt_info *info = &c->img.info;

	info->format = "cow";
	info->version = f->version;
	info->virtual_size = f->size;
	info->cluster_size = f->sectorsize;
	/*
	 * The header's size is the backing file's too: UML refuses a backing
	 * file whose size or mtime is no longer what the header recorded.
	 */
	if (info->backing_file[0]) {
		info->has_backing_stamp = true;
		info->backing_size = f->size;
		info->backing_mtime = f->mtime;
	}
}

static void cow_close(struct imgfmt_image *img)
{
	struct cow_image *c;

	if (!img)
		return;
	c = container_of(img, struct cow_image, img);
	imgfmt_mcache_destroy(c->img.mcache);
	kfree(c);
}

static int cow_open(const struct imgfmt_open_args *args,
		    struct imgfmt_image **imgp, const char **err)
{
	struct imgfmt_dev *dev = args->dev;
	struct cow_fields f;
	struct cow_image *c;
	int r;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c) {
		*err = "cannot allocate memory for the image";
		return -ENOMEM;
	}
	r = cow_parse(dev, &f, c, err);
	if (!r && c->img.info.backing_file[0] && !args->has_lower) {
		*err = "UML COW backing file not given as a lower layer";
		r = -EINVAL;
	}
	if (r)
		goto fail;
	c->img.dev = dev;
	cow_fill_info(c, &f);
	c->sectors = DIV_ROUND_UP_ULL(f.size, COW_SECTOR_SIZE);
	c->bitmap_offset = f.bitmap_offset;
	c->data_offset = f.data_offset;
	if (dev->size > f.data_offset)
		c->data_sectors = (dev->size - f.data_offset) / COW_SECTOR_SIZE;
	c->img.mcache = imgfmt_mcache_for(args->mgroup, dev,
					  COW_PIECE_BYTES, args->cache_bytes);
	if (!c->img.mcache) {
		*err = "cannot allocate the metadata cache";
		r = -ENOMEM;
		goto fail;
	}
	*imgp = &c->img;
	return 0;
fail:
	cow_close(&c->img);
	return r;
}

/*
 * Fill a bitmap piece: the device's bytes from key on, up to the piece's
 * size or the device's end.  Only that prefix is valid; open made sure
 * every bitmap byte lies inside the device, so lookups never copy past it.
 */
static int cow_fill_piece(void *ctx, u64 key, void *buf, u32 len)
{
	struct imgfmt_dev *dev = ctx;
	u32 n;
	int r;

	if (key >= dev->size)
		return -EIO;
	n = min_t(u64, len, dev->size - key);
	r = imgfmt_dev_read(dev, key, buf, n);
	return r ? r : (int)n;
}

/* Copy bitmap bytes from index idx on, at most wanted and within a piece. */
/*
 * Copy bitmap bytes from index idx on, at most wanted and within a piece,
 * into b: table_off is the piece, first the byte of it raw[0] holds.
 */
static int cow_load_batch(struct cow_image *c, u64 idx, u64 wanted,
			  unsigned int flags, struct imgfmt_batch *b)
{
	u64 off = c->bitmap_offset + idx;
	struct imgfmt_mkey k = {
		.key = off & ~(u64)(COW_PIECE_BYTES - 1),
		.tag = COW_PIECE_TAG,
	};
	u32 pos = off - k.key;
	u32 n;
	int r;

	n = min3((u64)IMGFMT_BATCH_BYTES, (u64)(COW_PIECE_BYTES - pos),
		 max_t(u64, wanted, 1));
	if (flags & IMGFMT_MAP_NOWAIT)
		r = imgfmt_mcache_lookup(c->img.mcache, &k, pos, b->raw, n);
	else
		r = imgfmt_mcache_read_fill(c->img.mcache, &k, pos, b->raw, n,
					    cow_fill_piece, c->img.dev);
	if (r)
		return r;
	b->table_off = k.key;
	b->first = pos;
	b->count = n;
	return 0;
}

/* The bitmap byte that the batch's first byte is. */
static u64 cow_batch_start(const struct cow_image *c,
			   const struct imgfmt_batch *b)
{
	return b->table_off + b->first - c->bitmap_offset;
}

static u8 cow_byte(const struct cow_image *c, const struct imgfmt_batch *b,
		   u64 idx)
{
	return ((const u8 *)b->raw)[idx - cow_batch_start(c, b)];
}

static bool cow_bit(const struct cow_image *c, const struct imgfmt_batch *b,
		    u64 sector)
{
	return cow_byte(c, b, sector / 8) & (1U << (sector % 8));
}

/*
 * The unit at sector s: the sectors from s on whose bits equal s's, up to
 * the end of the batch, the bitmap, or (for set bits) the part of the data
 * area the device holds.  Set bits past that read as zeroes.
 */
static void cow_classify(struct cow_image *c, const struct imgfmt_batch *b,
			 u64 s, struct imgfmt_unit *u)
{
	u64 stop = min(c->sectors, (cow_batch_start(c, b) + b->count) * 8);
	bool set = cow_bit(c, b, s);
	u8 same = set ? 0xff : 0;
	u64 e = s + 1;

	if (set && s < c->data_sectors)
		stop = min(stop, c->data_sectors);
	while (e < stop) {
		if (!(e % 8) && e + 8 <= stop && cow_byte(c, b, e / 8) == same) {
			e += 8;
			continue;
		}
		if (cow_bit(c, b, e) != set)
			break;
		e++;
	}
	u->start = s * COW_SECTOR_SIZE;
	u->end = e * COW_SECTOR_SIZE;
	if (!set) {
		u->kind = IMGFMT_RUN_UNALLOCATED;
	} else if (s < c->data_sectors) {
		u->kind = IMGFMT_RUN_DATA;
		u->host = c->data_offset + u->start;
	} else {
		u->kind = IMGFMT_RUN_ZERO;
	}
}

static int cow_lookup(struct imgfmt_image *img, struct imgfmt_batch *b,
		      u64 pos, u64 limit, unsigned int flags,
		      struct imgfmt_unit *u, const char **err)
{
	struct cow_image *c = container_of(img, struct cow_image, img);
	u64 s = pos / COW_SECTOR_SIZE, idx = s / 8, wanted;
	int r;

	if (s >= c->sectors)
		return imgfmt_corrupt(img, "offset beyond the UML COW bitmap",
				      pos, err);
	if (!b->count || idx < cow_batch_start(c, b) ||
	    idx >= cow_batch_start(c, b) + b->count) {
		wanted = DIV_ROUND_UP_ULL(min(limit, img->info.virtual_size),
					  8 * COW_SECTOR_SIZE) - idx;
		r = cow_load_batch(c, idx, wanted, flags, b);
		if (r == -EIO)
			return imgfmt_corrupt(img, "cannot read the UML COW bitmap",
					      pos, err);
		if (r)
			return r;
	}
	cow_classify(c, b, s, u);
	return 0;
}

const struct imgfmt_format_ops imgfmt_cow_ops = {
	.name = "cow",
	.probe = cow_probe,
	.open = cow_open,
	.close = cow_close,
	.lookup = cow_lookup,
};
