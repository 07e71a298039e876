// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt info: what an image (or a VMDK descriptor and its extents) is,
 * as "key: value" lines or, with --output=json, as one JSON object whose
 * fields are named as qemu-img info names them where the concept is the
 * same.  Both describe refused images too, with an "error" field.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "backing.h"
#include "disk.h"
#include "imgfmt.h"
#include "json.h"
#include "snapshot.h"

static const char *compression_name(enum imgfmt_compression c)
{
	switch (c) {
	case IMGFMT_COMP_NONE:
		return "none";
	case IMGFMT_COMP_DEFLATE:
		return "deflate";
	case IMGFMT_COMP_ZLIB:
		return "zlib";
	case IMGFMT_COMP_ZSTD:
		return "zstd";
	}
	return "unknown";
}

/* "64 MiB", "1.5 GiB": binary units, one decimal when it is not zero. */
static void human_size(u64 bytes, char *buf, size_t size)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	unsigned int i = 0;
	u64 unit = 1, whole, tenths;

	while (i + 1 < ARRAY_SIZE(units) && bytes / 1024 >= unit) {
		unit *= 1024;
		i++;
	}
	whole = bytes / unit;
	tenths = ((bytes % unit) * 10 + unit / 2) / unit;
	if (tenths == 10) {
		whole++;
		tenths = 0;
	}
	if (tenths)
		snprintf(buf, size, "%llu.%llu %s", (unsigned long long)whole,
			 (unsigned long long)tenths, units[i]);
	else
		snprintf(buf, size, "%llu %s", (unsigned long long)whole,
			 units[i]);
}

static void print_u64(const char *key, u64 v)
{
	printf("%s: %llu\n", key, (unsigned long long)v);
}

static void print_hex(const char *key, u64 v)
{
	printf("%s: 0x%llx\n", key, (unsigned long long)v);
}

static void print_bool(const char *key, bool v)
{
	printf("%s: %s\n", key, v ? "yes" : "no");
}

/* A value that is already one safe line: ours, or escaped. */
static void print_text(const char *key, const char *s)
{
	printf("%s:%s%s\n", key, *s ? " " : "", s);
}

/*
 * Strings read from the image may hold anything: escaped and cut, so that
 * every key stays on one line of bounded length.
 */
static void print_str(const char *key, const char *s)
{
	char shown[IMGFMT_SHOWN_MAX];

	print_text(key, shown_name(&shown, s));
}

static void print_size(u64 bytes)
{
	char human[64];

	human_size(bytes, human, sizeof(human));
	print_u64("virtual-size", bytes);
	print_str("virtual-size-human", human);
}

static void print_info(const struct imgfmt_info *info)
{
	print_str("format", info->format);
	print_u64("version", info->version);
	print_size(info->virtual_size);
	print_u64("cluster-size", info->cluster_size);
	print_u64("refcount-bits", info->refcount_bits);
	print_bool("dirty", info->dirty);
	print_bool("corrupt", info->corrupt);
	print_bool("lazy-refcounts", info->lazy_refcounts);
	print_bool("extended-l2", info->extended_l2);
	print_str("compression-type", compression_name(info->compression));
	print_hex("incompatible-features", info->incompatible_features);
	print_hex("compatible-features", info->compatible_features);
	print_hex("autoclear-features", info->autoclear_features);
	print_u64("snapshots", info->nb_snapshots);
	print_u64("l1-entries", info->l1_entries);
	print_u64("l1-offset", info->l1_offset);
	print_str("backing-file", info->backing_file);
	print_str("backing-format", info->backing_format);
	print_str("data-file", info->data_file);
	print_bool("encrypted", info->encrypted);
}

/*
 * A loop device ends at the last whole sector of its file: the kernel
 * cannot see the tail of an image whose size is not a multiple of 512.
 */
static void print_file_size(u64 size)
{
	print_u64("file-size", size);
	if (size % SECTOR_SIZE)
		printf("note: the file size is not a multiple of 512: a loop device hides its last %llu bytes; imgfmt attach maps them\n",
		       (unsigned long long)(size % SECTOR_SIZE));
}

/* The createType of the descriptor a hosted sparse image embeds. */
static void print_embedded_create_type(struct image *im)
{
	char ct[64], why[320];

	if (strcmp(im->ops->name, "vmdk"))
		return;
	if (vmdk_embedded_create_type(im, ct, sizeof(ct), why, sizeof(why)))
		print_str("note", why);
	else if (ct[0])
		print_str("create-type", ct);
}

/* The file QEMU opens for the backing file, as qemu-img info shows it. */
static void print_full_backing(const struct image *im)
{
	char *full;

	if (!im->info.backing_file[0])
		return;
	full = backing_full_name(im->path, im->info.backing_file);
	if (full)
		print_str("full-backing-file", full);
	free(full);
}

static void print_layer_info(struct image *im, u64 file_size)
{
	print_info(&im->info);
	print_full_backing(im);
	if (im->info.data_file_raw)
		print_bool("data-file-raw", true);
	if (im->data_path)
		print_str("data-file-path", im->data_path);
	print_embedded_create_type(im);
	print_file_size(file_size);
}

static int print_image_info(struct disk *d)
{
	print_layer_info(&d->segs[0].im, d->file_size);
	return snapshot_info_text(&d->segs[0].im);
}

/* ACCESS SECTORS TYPE ["FILE" [OFFSET]], as the descriptor has it. */
static void print_extent(unsigned int i, const struct vmdk_extent *e)
{
	char shown[IMGFMT_SHOWN_MAX];

	printf("extent-%u: %s %llu %s", i + 1, vmdk_access_name(e->access),
	       (unsigned long long)e->sectors,
	       vmdk_extent_type_name(e->type));
	if (e->file)
		printf(" \"%s\"", shown_name(&shown, e->file));
	if (vmdk_extent_is_flat(e->type))
		printf(" %llu", (unsigned long long)e->offset);
	putchar('\n');
}

static void print_desc_info(const struct disk *d)
{
	const struct vmdk_desc *desc = &d->desc;
	unsigned int i;

	print_str("create-type", desc->create_type);
	print_u64("version", desc->version);
	if (desc->has_cid)
		printf("cid: %08x\n", desc->cid);
	if (desc->has_parent_cid)
		printf("parent-cid: %08x\n", desc->parent_cid);
	if (desc->parent_hint)
		print_str("parent-file-name-hint", desc->parent_hint);
	print_size(desc->sectors * SECTOR_SIZE);
	print_u64("extents", desc->nr_extents);
	for (i = 0; i < desc->nr_extents; i++)
		print_extent(i, &desc->extents[i]);
	print_u64("file-size", d->file_size);
}

/* The error of a failed open, as info shows it. */
static const char *info_error(const struct disk *d)
{
	/* A refused image: the format's words, as the kernel logs them. */
	if (!d->is_desc && d->nr_segs && d->segs[0].im.err)
		return d->segs[0].im.err;
	return failure_text();
}

static int text_info(struct disk *d, int rc)
{
	struct image *refused;

	if (d->is_desc) {
		print_str("format", "vmdk");
		if (d->desc_parsed)
			print_desc_info(d);
	} else if (!rc) {
		rc = print_image_info(d);
	} else if (d->nr_segs && d->segs[0].im.ops) {
		refused = &d->segs[0].im;
		print_str("format", refused->ops->name);
	}
	if (rc)
		print_text("error", info_error(d));
	return rc;
}

/* JSON */

/* Bytes the file takes on its file system; 0 when unknown. */
static unsigned long long allocated_bytes(int fd)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode))
		return 0;
	return (unsigned long long)st.st_blocks * 512;
}

/* QCOW2 compression types as QEMU names them (type 0 is raw deflate). */
static const char *qemu_compression_name(enum imgfmt_compression c)
{
	return c == IMGFMT_COMP_DEFLATE ? "zlib" : compression_name(c);
}

static void json_qcow2_specific(struct json *j, const struct imgfmt_info *info)
{
	json_object(j, "format-specific");
	json_str(j, "type", "qcow2");
	json_object(j, "data");
	json_str(j, "compat", info->version >= 3 ? "1.1" : "0.10");
	json_str(j, "compression-type",
		 qemu_compression_name(info->compression));
	json_bool(j, "lazy-refcounts", info->lazy_refcounts);
	json_u64(j, "refcount-bits", info->refcount_bits);
	json_bool(j, "corrupt", info->corrupt);
	json_bool(j, "extended-l2", info->extended_l2);
	if (info->data_file[0])
		json_str(j, "data-file", info->data_file);
	if (info->incompatible_features & BIT_ULL(2))
		json_bool(j, "data-file-raw", info->data_file_raw);
	json_close(j);
	json_close(j);
}

/* A single VMDK sparse file: one extent, itself. */
static void json_vmdk_specific(struct json *j, struct image *im,
			       const char *path)
{
	char ct[64], why[320];

	json_object(j, "format-specific");
	json_str(j, "type", "vmdk");
	json_object(j, "data");
	if (!strcmp(im->ops->name, "vmdk") &&
	    !vmdk_embedded_create_type(im, ct, sizeof(ct), why, sizeof(why)) &&
	    ct[0])
		json_str(j, "create-type", ct);
	if (im->info.has_cid) {
		json_u64(j, "cid", im->info.cid);
		json_u64(j, "parent-cid", im->info.parent_cid);
	}
	json_array(j, "extents");
	json_object(j, NULL);
	json_str(j, "filename", path);
	json_u64(j, "virtual-size", im->info.virtual_size);
	json_u64(j, "cluster-size", im->info.cluster_size);
	json_close(j);
	json_close(j);
	json_close(j);
	json_close(j);
}

static void json_full_backing(struct json *j, const struct image *im)
{
	char *full;

	if (!im->info.backing_file[0])
		return;
	full = backing_full_name(im->path, im->info.backing_file);
	if (full)
		json_str(j, "full-backing-filename", full);
	free(full);
}

/* One image (the disk's, or a layer of its chain) at path. */
static void json_layer_info(struct json *j, struct image *im, const char *path,
			    u64 file_size)
{
	const struct imgfmt_info *info = &im->info;
	unsigned long long actual = allocated_bytes(image_fd(im));

	json_str(j, "format", info->format);
	json_u64(j, "virtual-size", info->virtual_size);
	if (actual)
		json_u64(j, "actual-size", actual);
	json_u64(j, "file-size", file_size);
	/* qemu-img shows no cluster size for raw. */
	if (info->cluster_size)
		json_u64(j, "cluster-size", info->cluster_size);
	json_bool(j, "dirty-flag", info->dirty);
	json_bool(j, "encrypted", info->encrypted);
	if (info->backing_file[0])
		json_str(j, "backing-filename", info->backing_file);
	json_full_backing(j, im);
	if (info->backing_format[0])
		json_str(j, "backing-filename-format", info->backing_format);
	json_u64(j, "version", info->version);
	json_u64(j, "snapshot-count", info->nb_snapshots);
	json_u64(j, "incompatible-features", info->incompatible_features);
	json_u64(j, "compatible-features", info->compatible_features);
	json_u64(j, "autoclear-features", info->autoclear_features);
	json_u64(j, "l1-entries", info->l1_entries);
	json_u64(j, "l1-offset", info->l1_offset);
	if (!strcmp(info->format, "qcow2"))
		json_qcow2_specific(j, info);
	else if (!strncmp(info->format, "vmdk", 4))
		json_vmdk_specific(j, im, path);
}

static int json_image_info(struct json *j, struct disk *d)
{
	json_layer_info(j, &d->segs[0].im, d->path, d->file_size);
	return snapshot_info_json(j, &d->segs[0].im);
}

/* One extent line; with its opened file's grain size when there is one. */
static void json_extent(struct json *j, const struct disk *d, unsigned int i)
{
	const struct vmdk_extent *e = &d->desc.extents[i];

	json_object(j, NULL);
	json_str(j, "access", vmdk_access_name(e->access));
	json_str(j, "format", vmdk_extent_type_name(e->type));
	json_u64(j, "virtual-size", e->sectors * SECTOR_SIZE);
	if (e->file)
		json_str(j, "filename", e->file);
	if (vmdk_extent_is_flat(e->type))
		json_u64(j, "offset", e->offset);
	if (i < d->nr_segs && d->segs[i].kind == SEG_IMAGE &&
	    d->segs[i].im.img)
		json_u64(j, "cluster-size", d->segs[i].im.info.cluster_size);
	json_close(j);
}

/* A delta descriptor's parent, as qemu-img shows a backing file. */
static void json_desc_backing(struct json *j, const struct disk *d)
{
	const char *hint = d->desc.parent_hint;
	char *full;

	if (!hint)
		return;
	json_str(j, "backing-filename", hint);
	full = backing_full_name(d->path, hint);
	if (full)
		json_str(j, "full-backing-filename", full);
	free(full);
	json_str(j, "backing-filename-format", "vmdk");
}

static void json_desc_info(struct json *j, const struct disk *d)
{
	const struct vmdk_desc *desc = &d->desc;
	unsigned int i;

	json_u64(j, "virtual-size", desc->sectors * SECTOR_SIZE);
	json_u64(j, "file-size", d->file_size);
	/* qemu-img shows the first extent's grain, when it has one. */
	if (d->nr_segs && d->segs[0].kind == SEG_IMAGE && d->segs[0].im.img)
		json_u64(j, "cluster-size", d->segs[0].im.info.cluster_size);
	/* QEMU keeps no dirty state for a descriptor's disk. */
	json_bool(j, "dirty-flag", false);
	json_desc_backing(j, d);
	json_object(j, "format-specific");
	json_str(j, "type", "vmdk");
	json_object(j, "data");
	json_str(j, "create-type", desc->create_type);
	json_u64(j, "version", desc->version);
	if (desc->has_cid)
		json_u64(j, "cid", desc->cid);
	if (desc->has_parent_cid)
		json_u64(j, "parent-cid", desc->parent_cid);
	if (desc->parent_hint)
		json_str(j, "parent-filename-hint", desc->parent_hint);
	json_array(j, "extents");
	for (i = 0; i < desc->nr_extents; i++)
		json_extent(j, d, i);
	json_close(j);
	json_close(j);
	json_close(j);
}

/* The members of the disk's object. */
static int json_disk_info(struct json *j, struct disk *d, int rc)
{
	json_str(j, "filename", d->path);
	if (d->is_desc) {
		json_str(j, "format", "vmdk");
		if (d->desc_parsed)
			json_desc_info(j, d);
	} else if (!rc) {
		rc = json_image_info(j, d);
	} else if (d->nr_segs && d->segs[0].im.ops) {
		json_str(j, "format", d->segs[0].im.ops->name);
	}
	if (rc)
		json_str(j, "error", info_error(d));
	return rc;
}

static int json_info(struct disk *d, int rc)
{
	struct json j;

	json_begin(&j, stdout);
	rc = json_disk_info(&j, d, rc);
	json_end(&j);
	return rc;
}

int info_run(const char *path, const char *format, bool json)
{
	struct disk d;
	int rc;

	rc = disk_open_top(&d, path, format);
	if (json)
		rc = json_info(&d, rc);
	else
		rc = text_info(&d, rc);
	disk_close(&d);
	return rc;
}

/* info --backing-chain */

/* A lower layer's block; parent is the layer above it. */
static void text_layer(struct image *im, const struct image *parent)
{
	putchar('\n');
	print_str("image", im->path);
	print_layer_info(im, im->dev.size);
	if (parent && backing_probed_raw(parent, im))
		printf("note: backing format probed as raw\n");
}

static void json_layer(struct json *j, struct image *im)
{
	json_object(j, NULL);
	json_str(j, "filename", im->path);
	json_layer_info(j, im, im->path, im->dev.size);
	json_close(j);
}

/*
 * The top is the disk: an image, or a VMDK descriptor (a delta's chain
 * hangs under its one extent's image).
 */
static void chain_info(struct disk *d, bool json)
{
	struct image *top = &d->segs[0].im;
	unsigned int i, nr = d->nr_segs == 1 ? top->nr_lower : 0;
	struct json j;

	if (json) {
		json_begin_array(&j, stdout);
		json_object(&j, NULL);
		json_disk_info(&j, d, 0);
		json_close(&j);
		for (i = 0; i < nr; i++)
			json_layer(&j, &top->lower[i]);
		json_end(&j);
		return;
	}
	print_str("image", d->path);
	text_info(d, 0);
	for (i = 0; i < nr; i++)
		text_layer(&top->lower[i], i ? &top->lower[i - 1] : top);
}

int info_chain_run(const char *path, const char *format, bool json)
{
	struct disk d;
	int rc;

	rc = disk_open(&d, path, format, 0);
	/* A refusal: described as plain info does. */
	if (rc) {
		if (json)
			json_info(&d, rc);
		else
			text_info(&d, rc);
	} else {
		chain_info(&d, json);
	}
	disk_close(&d);
	return rc;
}
