/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The layers of one dm-imgfmt device: the table that names them, their
 * devices and open images, and the chain that reads them as one disk
 * (kernel only; layers.c).
 *
 * Table: <image_dev> [<#opts> <opt>...] [<#lower> <layer>...]
 *   layer: <dev> <#lopts> [<lopt>...], top-down (the top's backing first)
 *   opts (the top layer, and the device): format=NAME cache_size=BYTES
 *     snapshot=ID|NAME data_dev=DEV low_water=BYTES error_if_no_space
 *     (the last two for a read-write table only)
 *   lopts (a lower layer): format=NAME data_dev=DEV
 */
#ifndef IMGFMT_LAYERS_H
#define IMGFMT_LAYERS_H

#include <linux/device-mapper.h>

#include "ccache.h"
#include "formats/chain.h"
#include "kport.h"
#include "mcache.h"

struct imgfmt_layer {
	struct dm_dev *dev;		/* holds the image */
	struct dm_dev *data;		/* its external data file, or NULL */
	struct imgfmt_kdev kdev;
	struct imgfmt_kdev kdata;
	struct imgfmt_image *img;
	/* Decompressed clusters; NULL when the image has no compression. */
	struct imgfmt_ccache *ccache;
	/* Logical block sizes: what a remap to each device must align to. */
	u32 lbs;
	u32 data_lbs;
	/* Decompression workspaces reserved for the image (kport.c). */
	enum imgfmt_compression reserved_comp;
	/* Its options, as given, to print the table back. */
	char **opts;
	unsigned int nr_opts;
	/* What they say: pointers into opts, but the snapshot's name, decoded. */
	const char *format_pin;
	char *snapshot;
	const char *data_path;
};

struct imgfmt_layers {
	struct imgfmt_layer *l;
	u32 nr;				/* top included */
	/* The table is read-write: the top is opened for writing. */
	bool writable;
	struct imgfmt_chain *chain;
	/* The metadata budget of every layer and the owner sets. */
	struct imgfmt_mgroup *mgroup;
	/* The decompressed clusters of every layer. */
	struct imgfmt_mgroup *cgroup;
	u64 cache_size;
	bool cache_size_set;
	/* An event when the device's free space falls below it. */
	u64 low_water;
	bool low_water_set;
	/* A write that finds the device full fails at once, no wait. */
	bool error_if_no_space;
	u32 max_lbs;			/* of every device */
	u32 max_comp_cluster;		/* 0: nothing compressed */
};

/*
 * Parse the table, open every device and image, and stack them.  On
 * failure *error is a static message (the layer's index is logged) and
 * imgfmt_layers_exit() undoes what was done.
 */
int imgfmt_layers_init(struct imgfmt_layers *ls, struct dm_target *ti,
		       unsigned int argc, char **argv, u64 default_cache,
		       char **error);
void imgfmt_layers_exit(struct imgfmt_layers *ls, struct dm_target *ti);

/* The table line, as dmsetup table prints it. */
void imgfmt_layers_emit(struct imgfmt_layers *ls, char *result,
			unsigned int maxlen);

/* Metadata cache statistics of the whole chain. */
void imgfmt_layers_stats(struct imgfmt_layers *ls,
			 struct imgfmt_mcache_stats *st);

/* Bytes of decompressed clusters held, and clusters decompressed. */
u64 imgfmt_layers_ccache_bytes(struct imgfmt_layers *ls);
u64 imgfmt_layers_decompressed(struct imgfmt_layers *ls);

int imgfmt_layers_iterate(struct imgfmt_layers *ls, struct dm_target *ti,
			  iterate_devices_callout_fn fn, void *data);

#endif /* IMGFMT_LAYERS_H */
