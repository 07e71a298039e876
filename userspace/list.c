// SPDX-License-Identifier: GPL-2.0-only
/*
 * imgfmt list: the disks attach made, read back from device-mapper.
 *
 * Nothing is remembered between runs: every device-mapper device whose
 * uuid is IMGFMT-<its name> is read, and its table says what it is.  A
 * partition is one linear target over another of ours, named after it
 * with pN; a helper (NAME-image...) is a device another of ours (not a
 * partition) maps; the rest are the attached disks.  Each disk's imgfmt
 * targets name their layers' devices (the table syntax of target.c, with
 * or without lower layers), and a loop device names its file through
 * sysfs.  Anyone may create a device with such a uuid, so tables are
 * parsed as untrusted text: counts are checked against what is there.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <linux/major.h>
#include <libdevmapper.h>

#include "imgfmt.h"
#include "json.h"
#include "table_args.h"
#include "partitions.h"

#define UUID_PREFIX	IMGFMT_UUID_PREFIX
#define TAIL_DIR	"/run/imgfmt/"
/* Tokens of one imgfmt target's arguments that are looked at. */
/* Helpers map loops; a deeper stack is not one attach made. */
#define MAX_DEPTH	4

struct dm_target_line {
	unsigned long long start, sectors;
	char *type;
	char *params;
};

struct dm_dev {
	char name[IMGFMT_DM_NAME_LEN];
	dev_t devt;
	int open_count;
	bool read_only;
	bool ours;
	bool is_part, is_helper;
	unsigned int partno;
	struct dm_dev *disk;		/* a partition's disk */
	struct dm_target_line *targets;
	unsigned int nr_targets;
};

struct dm_all {
	struct dm_dev *devs;
	unsigned int nr;
};

__printf(5, 6)
static void quiet_log(int level, const char *file, int line, int dm_errno,
		      const char *f, ...);

/* The error line comes from our own message; libdevmapper's are dropped. */
static void quiet_log(int level, const char *file, int line, int dm_errno,
		      const char *f, ...)
{
	(void)level;
	(void)file;
	(void)line;
	(void)dm_errno;
	(void)f;
}

static void dev_free(struct dm_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nr_targets; i++) {
		free(d->targets[i].type);
		free(d->targets[i].params);
	}
	free(d->targets);
}

static void all_free(struct dm_all *all)
{
	unsigned int i;

	for (i = 0; i < all->nr; i++)
		dev_free(&all->devs[i]);
	free(all->devs);
}

static int dev_add_target(struct dm_dev *d, uint64_t start, uint64_t len,
			  const char *type, const char *params)
{
	struct dm_target_line *grown, *t;

	grown = realloc(d->targets, (d->nr_targets + 1) * sizeof(*grown));
	if (!grown)
		return fail("out of memory");
	d->targets = grown;
	t = &d->targets[d->nr_targets];
	t->start = start;
	t->sectors = len;
	t->type = strdup(type ? type : "");
	t->params = strdup(params ? params : "");
	if (!t->type || !t->params) {
		free(t->type);
		free(t->params);
		return fail("out of memory");
	}
	d->nr_targets++;
	return 0;
}

/* Read the table of name; a device that vanished meanwhile is skipped. */
static int dev_read(const char *name, struct dm_dev *d, bool *exists)
{
	char *type = NULL, *params = NULL;
	uint64_t start, length;
	struct dm_task *dmt;
	struct dm_info info;
	void *next = NULL;
	const char *uuid;
	int rc = 0;

	memset(d, 0, sizeof(*d));
	*exists = false;
	dmt = dm_task_create(DM_DEVICE_TABLE);
	if (!dmt)
		return fail("cannot talk to device-mapper");
	if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt) ||
	    !dm_task_get_info(dmt, &info) || !info.exists)
		goto out;
	*exists = true;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->devt = makedev(info.major, info.minor);
	d->open_count = info.open_count;
	d->read_only = info.read_only;
	uuid = dm_task_get_uuid(dmt);
	d->ours = uuid && !strncmp(uuid, UUID_PREFIX, strlen(UUID_PREFIX)) &&
		  !strcmp(uuid + strlen(UUID_PREFIX), name);
	if (!d->ours)
		goto out;
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type,
					  &params);
		if (type)
			rc = dev_add_target(d, start, length, type, params);
	} while (!rc && next);
out:
	dm_task_destroy(dmt);
	return rc;
}

/* Every device-mapper device with the uuid attach gives. */
static int all_read(struct dm_all *all)
{
	struct dm_names *names;
	struct dm_task *dmt;
	struct dm_dev *grown;
	unsigned int next;
	bool exists;
	int rc = 0;

	memset(all, 0, sizeof(*all));
	dmt = dm_task_create(DM_DEVICE_LIST);
	names = dmt && dm_task_run(dmt) ? dm_task_get_names(dmt) : NULL;
	if (!names) {
		if (dmt)
			dm_task_destroy(dmt);
		return fail("cannot list device-mapper devices (is dm-mod loaded, are you root?)");
	}
	if (!names->dev)
		goto out;
	do {
		grown = realloc(all->devs, (all->nr + 1) * sizeof(*grown));
		if (!grown) {
			rc = fail("out of memory");
			break;
		}
		all->devs = grown;
		rc = dev_read(names->name, &all->devs[all->nr], &exists);
		if (!rc && exists && all->devs[all->nr].ours)
			all->nr++;
		else
			dev_free(&all->devs[all->nr]);
		next = names->next;
		names = (struct dm_names *)((char *)names + next);
	} while (!rc && next);
out:
	dm_task_destroy(dmt);
	return rc;
}

/* Table arguments */

static bool parse_devt(const char *s, dev_t *devt)
{
	unsigned int maj, min;
	char end;

	if (sscanf(s, "%u:%u%c", &maj, &min, &end) != 2)
		return false;
	*devt = makedev(maj, min);
	return true;
}

static struct dm_dev *all_find(const struct dm_all *all, dev_t devt)
{
	unsigned int i;

	for (i = 0; i < all->nr; i++)
		if (all->devs[i].devt == devt)
			return &all->devs[i];
	return NULL;
}

/* A number of entries that must follow in words[*i...]; -1 if bad. */
static int take_count(char **words, unsigned int nr, unsigned int *i)
{
	unsigned long v;
	char *end;

	if (*i >= nr)
		return -1;
	errno = 0;
	v = strtoul(words[*i], &end, 10);
	if (errno || *end || end == words[*i] || v > nr - *i - 1)
		return -1;
	(*i)++;
	return (int)v;
}

/* Partitions and helpers */

/* "DISKpN" with N from 1 to PART_NO_MAX: N, else 0. */
static unsigned int partno_of(const char *disk, const char *name)
{
	size_t len = strlen(disk);
	unsigned long n;
	char *end;

	if (strncmp(name, disk, len) || name[len] != 'p' ||
	    name[len + 1] < '1' || name[len + 1] > '9')
		return 0;
	n = strtoul(name + len + 1, &end, 10);
	return !*end && n <= PART_NO_MAX ? (unsigned int)n : 0;
}

/* One linear target over another of ours, named after it. */
static void mark_part(struct dm_all *all, struct dm_dev *d)
{
	char dev[64];
	struct dm_dev *disk;
	dev_t devt;

	if (d->nr_targets != 1 || strcmp(d->targets[0].type, "linear"))
		return;
	if (sscanf(d->targets[0].params, "%63s", dev) != 1 ||
	    !parse_devt(dev, &devt))
		return;
	disk = all_find(all, devt);
	if (!disk || disk == d)
		return;
	d->partno = partno_of(disk->name, d->name);
	if (d->partno) {
		d->is_part = true;
		d->disk = disk;
	}
}

/* Mark every one of ours that the arguments of a target name. */
static void mark_params(struct dm_all *all, const char *params)
{
	struct table_words tw;
	struct dm_dev *under;
	unsigned int i;
	const char *v;
	dev_t devt;

	if (table_split(params, &tw))
		return;
	for (i = 0; i < tw.nr; i++) {
		v = strncmp(tw.w[i], "data_dev=", 9) ? tw.w[i] : tw.w[i] + 9;
		if (!parse_devt(v, &devt))
			continue;
		under = all_find(all, devt);
		if (under && !under->is_part)
			under->is_helper = true;
	}
	table_words_free(&tw);
}

static void classify(struct dm_all *all)
{
	unsigned int i, t;
	struct dm_dev *d;

	for (i = 0; i < all->nr; i++)
		mark_part(all, &all->devs[i]);
	for (i = 0; i < all->nr; i++) {
		d = &all->devs[i];
		if (d->is_part)
			continue;
		for (t = 0; t < d->nr_targets; t++)
			mark_params(all, d->targets[t].params);
	}
}

/* Files */

/* The file behind a loop device, from sysfs; "" when not a bound loop. */
static void loop_file(dev_t devt, char *buf, size_t size)
{
	char path[96];
	size_t len;
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/loop/backing_file",
		 major(devt), minor(devt));
	f = fopen(path, "re");
	if (!f)
		return;
	if (!fgets(buf, (int)size, f))
		buf[0] = '\0';
	fclose(f);
	len = strlen(buf);
	if (len && buf[len - 1] == '\n')
		buf[len - 1] = '\0';
}

/*
 * The image file a device of a disk reads: a loop's file, or for a
 * helper the first file of its linear targets that is not a tail file.
 */
static void dev_file(const struct dm_all *all, dev_t devt, char *buf,
		     size_t size, unsigned int depth)
{
	const struct dm_dev *h;
	char dev[64];
	unsigned int t;
	dev_t under;

	buf[0] = '\0';
	if (major(devt) == LOOP_MAJOR) {
		loop_file(devt, buf, size);
		return;
	}
	h = all_find(all, devt);
	if (!h || !h->is_helper || depth >= MAX_DEPTH)
		return;
	for (t = 0; t < h->nr_targets; t++) {
		if (strcmp(h->targets[t].type, "linear") ||
		    sscanf(h->targets[t].params, "%63s", dev) != 1 ||
		    !parse_devt(dev, &under))
			continue;
		dev_file(all, under, buf, size, depth + 1);
		if (buf[0] && strncmp(buf, TAIL_DIR, strlen(TAIL_DIR)))
			return;
	}
}

/* Output */

struct out {
	bool json;
	struct json j;
};

static void out_str(struct out *o, const char *key, const char *v)
{
	char shown[IMGFMT_SHOWN_MAX];

	if (o->json)
		json_str(&o->j, key, v);
	else
		printf("%s: %s\n", key, shown_name(&shown, v));
}

static void out_u64(struct out *o, const char *key, unsigned long long v)
{
	if (o->json)
		json_u64(&o->j, key, v);
	else
		printf("%s: %llu\n", key, v);
}

/* One layer of an imgfmt target: its device, file and options. */
static void print_layer(struct out *o, const struct dm_all *all,
			unsigned int nr, const char *dev, char **opts,
			int nr_opts)
{
	char file[4096], buf[96];
	dev_t devt = 0;
	int k;

	if (o->json)
		json_object(&o->j, NULL);
	else
		printf("layer: %u\n", nr);
	out_str(o, "device", dev);
	if (parse_devt(dev, &devt)) {
		dev_file(all, devt, file, sizeof(file), 0);
		if (file[0])
			out_str(o, "file", file);
	}
	for (k = 0; k < nr_opts; k++) {
		if (!strncmp(opts[k], "format=", 7)) {
			out_str(o, "format", opts[k] + 7);
		} else if (!strncmp(opts[k], "snapshot=", 9)) {
			out_str(o, "snapshot", opts[k] + 9);
		} else if (!strncmp(opts[k], "data_dev=", 9)) {
			out_str(o, "data-device", opts[k] + 9);
			if (parse_devt(opts[k] + 9, &devt)) {
				dev_file(all, devt, file, sizeof(file), 0);
				if (file[0])
					out_str(o, "data-file", file);
			}
		} else if (!strncmp(opts[k], "cache_size=", 11)) {
			snprintf(buf, sizeof(buf), "%s", opts[k] + 11);
			out_str(o, "cache-size", buf);
		}
	}
	if (o->json)
		json_close(&o->j);
}

/*
 * imgfmt <dev> [<#opts> <opt>...] [<#lower> (<dev> <#lopts> <lopt>...)...]:
 * the top layer, then each lower one, top-down.  Arguments that do not
 * parse end the list: what was read is shown.
 */
static void print_layers(struct out *o, const struct dm_all *all,
			 const char *params)
{
	unsigned int i = 1, nr, layer;
	int nr_opts = 0, nr_lower, l;
	struct table_words tw;
	char **words;

	if (table_split(params, &tw))
		return;
	words = tw.w;
	nr = tw.nr;
	if (nr && i < nr)
		nr_opts = take_count(words, nr, &i);
	if (!nr || nr_opts < 0) {
		table_words_free(&tw);
		return;
	}
	if (o->json)
		json_array(&o->j, "layers");
	print_layer(o, all, 0, words[0], words + i, nr_opts);
	i += (unsigned int)nr_opts;
	nr_lower = i < nr ? take_count(words, nr, &i) : 0;
	for (l = 0, layer = 1; l < nr_lower && i < nr; l++, layer++) {
		const char *dev = words[i++];

		nr_opts = take_count(words, nr, &i);
		if (nr_opts < 0)
			break;
		print_layer(o, all, layer, dev, words + i, nr_opts);
		i += (unsigned int)nr_opts;
	}
	if (o->json)
		json_close(&o->j);
	table_words_free(&tw);
}

static void print_target(struct out *o, const struct dm_all *all,
			 const struct dm_target_line *t)
{
	char file[4096], dev[64];
	unsigned long long off;
	dev_t devt;

	if (o->json) {
		json_object(&o->j, NULL);
	} else {
		printf("target: %llu %llu %s\n", t->start, t->sectors,
		       t->type);
	}
	if (o->json) {
		json_u64(&o->j, "start", t->start);
		json_u64(&o->j, "sectors", t->sectors);
		json_str(&o->j, "type", t->type);
	}
	if (!strcmp(t->type, "imgfmt")) {
		print_layers(o, all, t->params);
	} else if (!strcmp(t->type, "linear") &&
		   sscanf(t->params, "%63s %llu", dev, &off) == 2 &&
		   parse_devt(dev, &devt)) {
		out_str(o, "device", dev);
		dev_file(all, devt, file, sizeof(file), 0);
		if (file[0])
			out_str(o, "file", file);
		out_u64(o, "offset", off);
	}
	if (o->json)
		json_close(&o->j);
}

static void print_part(struct out *o, const struct dm_dev *p)
{
	char path[4096], dev[64];
	unsigned long long start = 0;

	snprintf(path, sizeof(path), "%s/%s", dm_dir(), p->name);
	/* mark_part() read the device already: only the offset is left. */
	if (sscanf(p->targets[0].params, "%63s %llu", dev, &start) != 2)
		start = 0;
	if (o->json) {
		json_object(&o->j, NULL);
		json_str(&o->j, "name", p->name);
		json_str(&o->j, "path", path);
		json_u64(&o->j, "number", p->partno);
		json_u64(&o->j, "start", start);
		json_u64(&o->j, "sectors", p->targets[0].sectors);
		json_u64(&o->j, "open-count", (unsigned int)p->open_count);
		json_close(&o->j);
	} else {
		printf("partition: %s %s %llu %llu\n", p->name, path, start,
		       p->targets[0].sectors);
	}
}

static unsigned long long dev_sectors(const struct dm_dev *d)
{
	unsigned long long sum = 0;
	unsigned int t;

	for (t = 0; t < d->nr_targets; t++)
		sum += d->targets[t].sectors;
	return sum;
}

static void print_disk(struct out *o, const struct dm_all *all,
		       const struct dm_dev *d)
{
	char path[4096];
	unsigned int i;

	snprintf(path, sizeof(path), "%s/%s", dm_dir(), d->name);
	if (o->json)
		json_object(&o->j, NULL);
	out_str(o, "name", d->name);
	out_str(o, "path", path);
	out_u64(o, "size", dev_sectors(d) * 512);
	out_u64(o, "open-count", (unsigned int)d->open_count);
	out_str(o, "mode", d->read_only ? "ro" : "rw");
	if (o->json)
		json_array(&o->j, "targets");
	for (i = 0; i < d->nr_targets; i++)
		print_target(o, all, &d->targets[i]);
	if (o->json) {
		json_close(&o->j);
		json_array(&o->j, "partitions");
	}
	for (i = 0; i < all->nr; i++)
		if (all->devs[i].is_part && all->devs[i].disk == d)
			print_part(o, &all->devs[i]);
	if (o->json) {
		json_close(&o->j);
		json_close(&o->j);
	}
}

static int dev_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dm_dev *)a)->name,
		      ((const struct dm_dev *)b)->name);
}

int list_run(bool json)
{
	struct out o = { .json = json };
	struct dm_all all;
	unsigned int i, shown = 0;
	int rc;

	dm_log_with_errno_init(quiet_log);
	rc = all_read(&all);
	if (rc) {
		dm_lib_release();
		return rc;
	}
	/* By name, so that the output does not depend on creation order. */
	if (all.nr > 1)
		qsort(all.devs, all.nr, sizeof(*all.devs), dev_cmp);
	classify(&all);
	if (json) {
		json_begin(&o.j, stdout);
		json_array(&o.j, "devices");
	}
	for (i = 0; i < all.nr; i++) {
		if (all.devs[i].is_part || all.devs[i].is_helper)
			continue;
		if (!json && shown++)
			putchar('\n');
		print_disk(&o, &all, &all.devs[i]);
	}
	if (json)
		json_end(&o.j);
	all_free(&all);
	dm_lib_release();
	return 0;
}
