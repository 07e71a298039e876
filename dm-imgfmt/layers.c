// SPDX-License-Identifier: GPL-2.0-only
/*
 * The table of a dm-imgfmt device and the layers it names; see layers.h.
 */
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/kernel.h>
#include <linux/slab.h>

#include "compat.h"
#include "layers.h"

#define DM_MSG_PREFIX "imgfmt"

/*
 * Options one layer may have: format, cache_size, snapshot, data_dev,
 * low_water, error_if_no_space.
 */
#define IMGFMT_MAX_OPTS		6
#define IMGFMT_FORMAT_NAME_MAX	16

/* Does opt start with name (which ends in '=')?  Then its value. */
static const char *opt_value(const char *opt, const char *name)
{
	size_t n = strlen(name);

	return strncmp(opt, name, n) ? NULL : opt + n;
}

/* Set *slot to a non-empty value given once. */
static int opt_once(const char **slot, const char *val, char **error,
		    char *twice, char *invalid)
{
	if (*slot) {
		*error = twice;
		return -EINVAL;
	}
	if (!*val) {
		*error = invalid;
		return -EINVAL;
	}
	*slot = val;
	return 0;
}

static int opt_cache_size(struct imgfmt_layers *ls, const char *val,
			  char **error)
{
	u64 bytes;

	if (ls->cache_size_set) {
		*error = "cache_size= given twice";
		return -EINVAL;
	}
	if (kstrtoull(val, 0, &bytes) || bytes < IMGFMT_MIN_CACHE_BYTES ||
	    bytes > IMGFMT_MAX_CACHE_BYTES) {
		*error = "invalid cache_size (64 KiB to 1 TiB)";
		return -EINVAL;
	}
	ls->cache_size = bytes;
	ls->cache_size_set = true;
	return 0;
}

static int opt_low_water(struct imgfmt_layers *ls, const char *val,
			 char **error)
{
	if (ls->low_water_set) {
		*error = "low_water= given twice";
		return -EINVAL;
	}
	if (kstrtoull(val, 0, &ls->low_water)) {
		*error = "invalid low_water= option (bytes)";
		return -EINVAL;
	}
	ls->low_water_set = true;
	return 0;
}

/*
 * A snapshot name, with \xNN for the bytes a table word cannot hold
 * (blanks, control characters, backslashes: libdevmapper doubles a
 * backslash, so "\ " never reaches the kernel as an escaped blank).
 */
static int opt_snapshot(struct imgfmt_layer *l, const char *val, char **error)
{
	char *out;
	size_t i, o = 0;
	int hi, lo;

	if (l->snapshot) {
		*error = "snapshot= given twice";
		return -EINVAL;
	}
	out = kmalloc(strlen(val) + 1, GFP_KERNEL);
	if (!out) {
		*error = "cannot allocate the table options";
		return -ENOMEM;
	}
	for (i = 0; val[i]; i++) {
		if (val[i] != '\\') {
			out[o++] = val[i];
			continue;
		}
		hi = val[i + 1] == 'x' ? hex_to_bin((unsigned char)val[i + 2]) : -1;
		lo = hi < 0 ? -1 : hex_to_bin((unsigned char)val[i + 3]);
		if (lo < 0)
			break;
		out[o++] = (char)(hi << 4 | lo);
		i += 3;
	}
	out[o] = '\0';
	/* A NUL ends a QCOW2 snapshot name: \x00 would name another. */
	if (val[i] || !o || strlen(out) != o) {
		kfree(out);
		*error = "invalid snapshot= option";
		return -EINVAL;
	}
	l->snapshot = out;
	return 0;
}

static int layer_parse_opt(struct imgfmt_layers *ls, struct imgfmt_layer *l,
			   const char *opt, bool top, char **error)
{
	const char *val;

	val = opt_value(opt, "format=");
	if (val) {
		if (strlen(val) >= IMGFMT_FORMAT_NAME_MAX) {
			*error = "invalid format= option";
			return -EINVAL;
		}
		return opt_once(&l->format_pin, val, error,
				"format= given twice", "invalid format= option");
	}
	val = opt_value(opt, "data_dev=");
	if (val)
		return opt_once(&l->data_path, val, error,
				"data_dev= given twice",
				"invalid data_dev= option");
	if (!top) {
		*error = "unknown option for a lower layer";
		return -EINVAL;
	}
	val = opt_value(opt, "cache_size=");
	if (val)
		return opt_cache_size(ls, val, error);
	val = opt_value(opt, "snapshot=");
	if (val)
		return opt_snapshot(l, val, error);
	val = opt_value(opt, "low_water=");
	if (val)
		return opt_low_water(ls, val, error);
	if (!strcmp(opt, "error_if_no_space")) {
		if (ls->error_if_no_space) {
			*error = "error_if_no_space given twice";
			return -EINVAL;
		}
		ls->error_if_no_space = true;
		return 0;
	}
	*error = "unknown option";
	return -EINVAL;
}

/* [<#opts> <opt>...] of one layer, kept as given. */
static int layer_parse_opts(struct imgfmt_layers *ls, struct imgfmt_layer *l,
			    struct dm_arg_set *as, bool top, char **error)
{
	static const struct dm_arg count = {
		0, IMGFMT_MAX_OPTS, "invalid number of optional arguments"
	};
	unsigned int n, i;
	int r;

	r = dm_read_arg_group(&count, as, &n, error);
	if (r)
		return r;
	l->opts = kcalloc(n, sizeof(*l->opts), GFP_KERNEL);
	if (n && !l->opts) {
		*error = "cannot allocate the table options";
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		l->opts[i] = kstrdup(dm_shift_arg(as), GFP_KERNEL);
		if (!l->opts[i]) {
			*error = "cannot allocate the table options";
			return -ENOMEM;
		}
		l->nr_opts++;
		r = layer_parse_opt(ls, l, l->opts[i], top, error);
		if (r)
			return r;
	}
	return 0;
}

static void layer_free_opts(struct imgfmt_layer *l)
{
	unsigned int j;

	for (j = 0; j < l->nr_opts; j++)
		kfree(l->opts[j]);
	kfree(l->opts);
	kfree(l->snapshot);
}

/*
 * Parse the whole table; the device paths in paths[] point into argv,
 * valid while the constructor runs.
 */
static int layers_parse(struct imgfmt_layers *ls, unsigned int argc,
			char **argv, const char ***paths, char **error)
{
	static const struct dm_arg lower_count = {
		0, IMGFMT_MAX_LAYERS - 1, "invalid number of lower layers"
	};
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	unsigned int nr_lower = 0, i;
	struct imgfmt_layer top = { };
	const char *top_path;
	int r;

	if (argc < 1) {
		*error = "invalid number of arguments";
		return -EINVAL;
	}
	top_path = dm_shift_arg(&as);
	r = as.argc ? layer_parse_opts(ls, &top, &as, true, error) : 0;
	if (!r && as.argc)
		r = dm_read_arg(&lower_count, &as, &nr_lower, error);
	ls->l = r ? NULL : kvcalloc(nr_lower + 1, sizeof(*ls->l), GFP_KERNEL);
	*paths = r ? NULL : kvcalloc(nr_lower + 1, sizeof(**paths),
				     GFP_KERNEL);
	if (!r && (!ls->l || !*paths)) {
		*error = "cannot allocate the layers";
		r = -ENOMEM;
	}
	if (r) {
		/* Not in ls yet: free what the top's options took. */
		layer_free_opts(&top);
		return r;
	}
	ls->l[0] = top;
	ls->nr = 1;
	(*paths)[0] = top_path;
	for (i = 1; i <= nr_lower; i++) {
		if (!as.argc) {
			*error = "invalid number of arguments";
			return -EINVAL;
		}
		(*paths)[i] = dm_shift_arg(&as);
		ls->nr++;
		r = layer_parse_opts(ls, &ls->l[i], &as, false, error);
		if (r)
			return r;
	}
	if (as.argc) {
		*error = "invalid number of arguments";
		return -EINVAL;
	}
	return 0;
}

static void layer_log(struct imgfmt_layers *ls, u32 i, const char *what)
{
	if (ls->nr > 1)
		DMERR("layer %u of %u: %s", i, ls->nr, what);
}

static int layer_open_devs(struct imgfmt_layers *ls, struct dm_target *ti,
			   u32 i, const char *path, char **error)
{
	struct imgfmt_layer *l = &ls->l[i];
	IMGFMT_MODE_T mode = dm_table_get_mode(ti->table);

	/* Only the top is written; the layers below it are read-only. */
	if (i)
		mode = IMGFMT_MODE_READ;
	if (dm_get_device(ti, path, mode, &l->dev)) {
		*error = i ? "cannot open a lower layer's device" :
			     "cannot open image device";
		return -EINVAL;
	}
	imgfmt_kdev_init(&l->kdev, l->dev->bdev);
	if (mode & IMGFMT_MODE_WRITE) {
		/*
		 * 6.12 refuses to open a read-only device for writing; 6.1
		 * opens it, and every write would fail later.
		 */
		if (bdev_read_only(l->dev->bdev)) {
			*error = "cannot open image device: it is read-only";
			return -EROFS;
		}
		imgfmt_kdev_make_writable(&l->kdev);
	}
	l->lbs = bdev_logical_block_size(l->dev->bdev);
	ls->max_lbs = max(ls->max_lbs, l->lbs);
	if (!l->data_path)
		return 0;
	if (dm_get_device(ti, l->data_path, mode, &l->data)) {
		*error = "cannot open the data file device";
		return -EINVAL;
	}
	imgfmt_kdev_init(&l->kdata, l->data->bdev);
	l->data_lbs = bdev_logical_block_size(l->data->bdev);
	ls->max_lbs = max(ls->max_lbs, l->data_lbs);
	return 0;
}

static int layer_open_image(struct imgfmt_layers *ls, u32 i, char **error)
{
	struct imgfmt_layer *l = &ls->l[i];
	struct imgfmt_open_args args = {
		.dev = &l->kdev.dev,
		.cache_bytes = ls->cache_size,
		.mgroup = ls->mgroup,
		.has_lower = i + 1 < ls->nr,
		.snapshot = l->snapshot,
		.data_dev = l->data ? &l->kdata.dev : NULL,
		.writable = !i && ls->writable,
	};
	const struct imgfmt_format_ops *ops;
	const char *err = NULL;
	int r;

	/*
	 * A device that cannot be read fails the load with EIO, a bad image
	 * with EINVAL; *error names the problem either way.
	 */
	ops = imgfmt_detect(&l->kdev.dev, l->format_pin, &err);
	if (!ops) {
		*error = (char *)err;
		return err == imgfmt_err_unreadable ? -EIO : -EINVAL;
	}
	r = imgfmt_open(ops, &args, &l->img, &err);
	if (r) {
		l->img = NULL;
		*error = (char *)err;
		return r == -ENOMEM || r == -EIO ? r : -EINVAL;
	}
	if (args.writable && !l->img->writable) {
		*error = "this image format cannot be written yet: load the table read-only";
		return -EROFS;
	}
	if (l->img->info.cluster_size && l->img->info.cluster_size < l->lbs) {
		*error = "cluster size smaller than the device's logical block size";
		return -EINVAL;
	}
	if (imgfmt_decomp_reserve(l->img->info.compression)) {
		*error = "cannot allocate the decompression workspaces";
		return -ENOMEM;
	}
	l->reserved_comp = l->img->info.compression;
	if (l->reserved_comp != IMGFMT_COMP_NONE)
		ls->max_comp_cluster = max(ls->max_comp_cluster,
					   l->img->info.cluster_size);
	return 0;
}

/* One cache of decompressed clusters per compressed layer, one bound. */
static int layers_init_ccaches(struct imgfmt_layers *ls, char **error)
{
	struct imgfmt_layer *l;
	u32 i;

	if (!ls->max_comp_cluster)
		return 0;
	ls->cgroup = imgfmt_mgroup_create(imgfmt_ccache_bound(ls->max_comp_cluster));
	if (!ls->cgroup)
		goto nomem;
	for (i = 0; i < ls->nr; i++) {
		l = &ls->l[i];
		if (l->reserved_comp == IMGFMT_COMP_NONE)
			continue;
		l->ccache = imgfmt_ccache_create_in(ls->cgroup, &l->kdev.dev,
						    l->img->info.cluster_size);
		if (!l->ccache)
			goto nomem;
	}
	return 0;
nomem:
	*error = "cannot allocate the decompressed-cluster cache";
	return -ENOMEM;
}

static int layers_init_chain(struct imgfmt_layers *ls, char **error)
{
	struct imgfmt_image **imgs;
	const char *err = NULL;
	u32 i;
	int r;

	imgs = kvcalloc(ls->nr, sizeof(*imgs), GFP_KERNEL);
	if (!imgs) {
		*error = "cannot allocate memory for the chain";
		return -ENOMEM;
	}
	for (i = 0; i < ls->nr; i++)
		imgs[i] = ls->l[i].img;
	r = imgfmt_chain_create(imgs, ls->nr, ls->cache_size, &ls->chain,
				&err);
	kvfree(imgs);
	if (r) {
		*error = (char *)err;
		return r;
	}
	/* The owner sets count against cache_size too. */
	imgfmt_mgroup_reserve(ls->mgroup, imgfmt_chain_sets_bytes(ls->chain));
	return 0;
}

int imgfmt_layers_init(struct imgfmt_layers *ls, struct dm_target *ti,
		       unsigned int argc, char **argv, u64 default_cache,
		       char **error)
{
	const char **paths = NULL;
	u32 i;
	int r;

	memset(ls, 0, sizeof(*ls));
	ls->writable = dm_table_get_mode(ti->table) & IMGFMT_MODE_WRITE;
	r = layers_parse(ls, argc, argv, &paths, error);
	for (i = 0; !r && i < ls->nr; i++) {
		r = layer_open_devs(ls, ti, i, paths[i], error);
		if (r)
			layer_log(ls, i, *error);
	}
	kvfree(paths);
	if (r)
		return r;
	/* They are about writes: on a read-only table they would be ignored. */
	if (!ls->writable && (ls->low_water_set || ls->error_if_no_space)) {
		*error = ls->low_water_set ? "low_water= needs a read-write table" :
					     "error_if_no_space needs a read-write table";
		return -EINVAL;
	}
	if (!ls->cache_size_set)
		ls->cache_size = clamp_t(u64, default_cache,
					 IMGFMT_MIN_CACHE_BYTES,
					 IMGFMT_MAX_CACHE_BYTES);
	ls->mgroup = imgfmt_mgroup_create(ls->cache_size);
	if (!ls->mgroup) {
		*error = "cannot allocate the metadata cache";
		return -ENOMEM;
	}
	for (i = 0; i < ls->nr; i++) {
		r = layer_open_image(ls, i, error);
		if (r) {
			layer_log(ls, i, *error);
			return r;
		}
	}
	return layers_init_ccaches(ls, error) ?:
	       layers_init_chain(ls, error);
}

void imgfmt_layers_exit(struct imgfmt_layers *ls, struct dm_target *ti)
{
	struct imgfmt_layer *l;
	u32 i;

	imgfmt_chain_destroy(ls->chain);
	for (i = 0; ls->l && i < ls->nr; i++) {
		l = &ls->l[i];
		imgfmt_ccache_destroy(l->ccache);
		imgfmt_close(l->img);
		imgfmt_decomp_unreserve(l->reserved_comp);
		if (l->data)
			dm_put_device(ti, l->data);
		if (l->dev)
			dm_put_device(ti, l->dev);
		layer_free_opts(l);
	}
	kvfree(ls->l);
	imgfmt_mgroup_destroy(ls->mgroup);
	imgfmt_mgroup_destroy(ls->cgroup);
	memset(ls, 0, sizeof(*ls));
}

/*
 * A word of the table as it came in.  Through libdevmapper (which doubles
 * backslashes) no word holds a blank; one loaded with the raw ioctl and
 * "\ " may, and gets its escape back so the line keeps its words.
 */
static unsigned int emit_word(char *result, unsigned int maxlen,
			      unsigned int sz, const char *s)
{
	if (!strpbrk(s, " \t")) {
		DMEMIT(" %s", s);
		return sz;
	}
	DMEMIT(" ");
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t')
			DMEMIT("\\");
		DMEMIT("%c", *s);
	}
	return sz;
}

/* The devices as major:minor (dm's custom), the options as given. */
void imgfmt_layers_emit(struct imgfmt_layers *ls, char *result,
			unsigned int maxlen)
{
	struct imgfmt_layer *l;
	unsigned int sz = 0, j;
	u32 i;

	for (i = 0; i < ls->nr; i++) {
		l = &ls->l[i];
		if (i)
			DMEMIT(" ");
		DMEMIT("%s", l->dev->name);
		/* The lower layers' count needs the top's, even if 0. */
		if (l->nr_opts || i || ls->nr > 1)
			DMEMIT(" %u", l->nr_opts);
		for (j = 0; j < l->nr_opts; j++)
			sz = emit_word(result, maxlen, sz, l->opts[j]);
		if (!i && ls->nr > 1)
			DMEMIT(" %u", ls->nr - 1);
	}
}

void imgfmt_layers_stats(struct imgfmt_layers *ls,
			 struct imgfmt_mcache_stats *st)
{
	struct imgfmt_mcache_stats one;
	struct imgfmt_mcache *mc;
	u32 i;

	u64 sets = imgfmt_chain_sets_bytes(ls->chain);

	memset(st, 0, sizeof(*st));
	for (i = 0; i < ls->nr; i++) {
		mc = ls->l[i].img->mcache;
		if (!mc)
			continue;
		imgfmt_mcache_get_stats(mc, &one);
		st->hits += one.hits;
		st->misses += one.misses;
	}
	imgfmt_mgroup_get_stats(ls->mgroup, st);
	/* The sets are held from table load on, inside cache_size. */
	st->bytes += sets;
	st->peak_bytes += sets;
	st->limit_bytes += sets;
}

u64 imgfmt_layers_ccache_bytes(struct imgfmt_layers *ls)
{
	struct imgfmt_mcache_stats st = { };

	if (ls->cgroup)
		imgfmt_mgroup_get_stats(ls->cgroup, &st);
	return st.bytes;
}

u64 imgfmt_layers_decompressed(struct imgfmt_layers *ls)
{
	u64 n = 0;
	u32 i;

	for (i = 0; i < ls->nr; i++)
		if (ls->l[i].ccache)
			n += imgfmt_ccache_decompressed(ls->l[i].ccache);
	return n;
}

int imgfmt_layers_iterate(struct imgfmt_layers *ls, struct dm_target *ti,
			  iterate_devices_callout_fn fn, void *data)
{
	struct imgfmt_layer *l;
	int r = 0;
	u32 i;

	/* Images are smaller than the virtual disk they describe. */
	for (i = 0; !r && i < ls->nr; i++) {
		l = &ls->l[i];
		r = fn(ti, l->dev, 0, bdev_nr_sectors(l->dev->bdev), data);
		if (!r && l->data)
			r = fn(ti, l->data, 0, bdev_nr_sectors(l->data->bdev),
			       data);
	}
	return r;
}
