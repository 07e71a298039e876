// SPDX-License-Identifier: GPL-2.0-only
/*
 * Backing chains (backing.h).
 *
 * The chain is walked twice.  The first walk opens one layer at a time,
 * decides its format, checks it against the layer above (loops, VMDK CIDs,
 * UML COW stamps, the recorded format) and learns the name of the next
 * one; the second opens every layer for good into one allocation that
 * also holds their paths, since struct image keeps only a pointer to its
 * path and the chain code frees the array alone.  An image cannot be moved
 * once open (its format state points at its device), so the array cannot
 * grow while the layers are open in it.
 */
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>

#include "backing.h"
#include "formats/chain.h"
#include "imgfmt.h"
#include "uhost.h"
#include "vmdk_desc.h"

#ifndef IMGFMT_MAX_LAYERS
#define IMGFMT_MAX_LAYERS	1024
#endif

/* Bytes of a file's start that tell a VMDK descriptor from an image. */
#define DESC_PROBE_BYTES	4096

/* What the first walk learnt of one layer. */
struct layer_plan {
	char *path;
	char pin[32];		/* the format it is opened as */
};

/* The layers found so far and the files they are, to catch loops. */
struct walk {
	const struct image *top;
	struct layer_plan *plan;
	unsigned int nr, cap;
	struct file_id {
		dev_t dev;
		ino_t ino;
	} *ids;			/* top first, then each layer */
};

char *backing_full_name(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
	size_t len;
	char *full;

	if (name[0] == '/')
		dir_len = 0;
	len = dir_len + strlen(name);
	full = malloc(len + 1);
	if (full)
		snprintf(full, len + 1, "%.*s%s", (int)dir_len, path, name);
	return full;
}

bool backing_probed_raw(const struct image *parent, const struct image *layer)
{
	return !parent->info.backing_format[0] && layer->ops &&
	       !strcmp(layer->ops->name, "raw");
}

void backing_close(struct image *lower, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		image_close(&lower[i]);
	free(lower);
}

static void walk_free(struct walk *w)
{
	unsigned int i;

	for (i = 0; i < w->nr; i++)
		free(w->plan[i].path);
	free(w->plan);
	free(w->ids);
}

/* Room for one more layer, and the depth limit: top included. */
static int walk_grow(struct walk *w)
{
	struct layer_plan *plan;
	struct file_id *ids;
	unsigned int cap;

	if (w->nr + 1 >= IMGFMT_MAX_LAYERS)
		return fail("%s: backing chain deeper than %u layers",
			    w->top->name, IMGFMT_MAX_LAYERS);
	if (w->nr < w->cap)
		return 0;
	cap = w->cap ? w->cap * 2 : 8;
	plan = realloc(w->plan, cap * sizeof(*plan));
	if (plan)
		w->plan = plan;
	ids = realloc(w->ids, (cap + 1) * sizeof(*ids));
	if (ids)
		w->ids = ids;
	if (!plan || !ids)
		return fail("out of memory");
	w->cap = cap;
	return 0;
}

/*
 * The same file met twice (hard links and symlinks included) is a loop.
 * Layer w->nr is being planned: ids[0] is the top, ids[1..nr-1] the
 * layers above it.
 */
static int check_loop(struct walk *w, const struct stat *st,
		      const char *name, const char *parent)
{
	unsigned int i;

	for (i = 0; i < w->nr; i++)
		if (w->ids[i].dev == st->st_dev && w->ids[i].ino == st->st_ino)
			return fail("%s: the backing file of %s is already in its chain (a loop)",
				    name, parent);
	w->ids[w->nr].dev = st->st_dev;
	w->ids[w->nr].ino = st->st_ino;
	return 0;
}

/* Open the backing file path of parent: a regular file or block device. */
static int open_layer_file(struct walk *w, const char *path, const char *name,
			   const struct image *parent, int *fdp)
{
	struct stat st;
	int fd;

	fd = file_open_nonblock(path, &st);
	if (fd < 0)
		return fail("%s: cannot open the backing file of %s: %s", name,
			    parent->name, strerror(-fd));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return fail("%s: the backing file of %s is not a regular file or block device",
			    name, parent->name);
	}
	if (check_loop(w, &st, name, parent->name)) {
		close(fd);
		return FAIL;
	}
	*fdp = fd;
	return 0;
}

/* Is the file a VMDK descriptor (text joining extent files)? */
static bool is_vmdk_descriptor(int fd)
{
	char head[DESC_PROBE_BYTES];
	ssize_t n;

	n = pread(fd, head, sizeof(head), 0);
	return n > 0 && vmdk_desc_probe(head, (size_t)n);
}

/* The format the magic shows, or NULL; *failed when it cannot be read. */
static const struct imgfmt_format_ops *probe_format(int fd, bool *failed)
{
	const struct imgfmt_format_ops *ops;
	struct imgfmt_dev dev;
	const char *err = NULL;
	int dfd = dup(fd);

	*failed = dfd < 0 || uport_dev_open_fd(&dev, dfd);
	if (*failed) {
		if (dfd >= 0)
			close(dfd);
		return NULL;
	}
	ops = imgfmt_detect(&dev, NULL, &err);
	*failed = !ops && err && strcmp(err, "unknown image format");
	uport_dev_close(&dev);
	return ops;
}

/* QEMU's vmdk driver reads seSparse too: our two names are its one. */
static bool format_matches(const char *recorded, const char *found)
{
	if (!strcmp(recorded, "vmdk"))
		return !strncmp(found, "vmdk", 4);
	return !strcmp(recorded, found);
}

static bool known_format(const char *name)
{
	unsigned int i;

	for (i = 0; imgfmt_formats[i]; i++)
		if (!strcmp(imgfmt_formats[i]->name, name))
			return true;
	return !strcmp(name, "vmdk");
}

/*
 * The format to open the backing file of parent as: the one parent
 * records (raw takes any bytes), else the probed one, else raw.
 */
static int choose_format(int fd, const char *name, const struct image *parent,
			 char *pin, size_t pin_size)
{
	const char *recorded = parent->info.backing_format;
	const struct imgfmt_format_ops *ops;
	char shown[IMGFMT_SHOWN_MAX];
	bool failed;

	if (!strcmp(recorded, "raw")) {
		snprintf(pin, pin_size, "raw");
		return 0;
	}
	if (recorded[0] && !known_format(recorded))
		return fail("%s: backing format '%s' recorded in %s is not supported",
			    name, shown_name(&shown, recorded), parent->name);
	if (is_vmdk_descriptor(fd))
		return fail("%s: backing chains through split VMDK descriptors are not supported yet",
			    name);
	ops = probe_format(fd, &failed);
	if (failed)
		return fail("%s: cannot read the header of the backing file",
			    name);
	if (recorded[0] && (!ops || !format_matches(recorded, ops->name)))
		return fail("%s: the backing file is %s, %s records its format as %s",
			    name, ops ? ops->name : "of no known format",
			    parent->name, shown_name(&shown, recorded));
	snprintf(pin, pin_size, "%s", ops ? ops->name : "raw");
	return 0;
}

/* A VMDK delta's parentCID must be its parent's CID (QEMU's CID check). */
static int check_cid(const struct image *parent, const struct image *layer)
{
	const struct imgfmt_info *p = &parent->info, *l = &layer->info;

	if (strncmp(p->format, "vmdk", 4) || !p->has_cid ||
	    !p->backing_file[0])
		return 0;
	if (strncmp(l->format, "vmdk", 4) || !l->has_cid)
		return fail("%s: the parent of VMDK delta %s has no CID (a %s image)",
			    layer->name, parent->name, l->format);
	if (l->cid != p->parent_cid)
		return fail("%s: CID %08x does not match the parentCID %08x of %s",
			    layer->name, l->cid, p->parent_cid, parent->name);
	return 0;
}

/* UML's rule: the backing file still has the size and mtime it had. */
static int check_stamp(const struct image *parent, const struct image *layer)
{
	const struct imgfmt_info *p = &parent->info;
	struct stat st;

	if (!p->has_backing_stamp)
		return 0;
	if (fstat(image_fd(layer), &st))
		return fail("%s: cannot stat the backing file: %s", layer->name,
			    strerror(errno));
	if (layer->dev.size != p->backing_size)
		return fail("%s: backing file size %llu differs from %llu in the UML COW header of %s",
			    layer->name, (unsigned long long)layer->dev.size,
			    (unsigned long long)p->backing_size, parent->name);
	if ((long long)st.st_mtime != (long long)p->backing_mtime)
		return fail("%s: backing file mtime %lld differs from %lld in the UML COW header of %s",
			    layer->name, (long long)st.st_mtime,
			    (long long)p->backing_mtime, parent->name);
	return 0;
}

/* Everything one layer must be to sit under parent. */
static int check_layer(const struct image *parent, const struct image *layer)
{
	return check_cid(parent, layer) ?: check_stamp(parent, layer);
}

static struct image_opts layer_opts(const struct image_opts *o,
				    const char *pin)
{
	/*
	 * A layer's backing file is known only once it is open; a layer
	 * below is always offered, and the bottom simply has none.
	 */
	return (struct image_opts){
		.pin = pin,
		.cache_bytes = o->cache_bytes,
		.has_lower = true,
	};
}

/* First walk: find, check and plan the layer under parent. */
static int plan_layer(struct walk *w, const struct image *parent,
		      const struct image_opts *o, struct image *layer)
{
	struct layer_plan *p;
	char name[IMGFMT_SHOWN_MAX];
	struct image_opts lo;
	int fd = -1, rc;

	rc = walk_grow(w);
	if (rc)
		return rc;
	p = &w->plan[w->nr];
	memset(p, 0, sizeof(*p));
	p->path = backing_full_name(parent->path, parent->info.backing_file);
	if (!p->path)
		return fail("out of memory");
	w->nr++;
	shown_name(&name, p->path);
	rc = open_layer_file(w, p->path, name, parent, &fd);
	if (rc)
		return rc;
	rc = choose_format(fd, name, parent, p->pin, sizeof(p->pin));
	if (rc) {
		close(fd);
		return rc;
	}
	lo = layer_opts(o, p->pin);
	rc = image_open_fd(layer, fd, p->path, &lo);
	return rc ?: check_layer(parent, layer);
}

static int walk_chain(struct walk *w, const struct image_opts *o)
{
	struct image cur[2];
	const struct image *parent = w->top;
	unsigned int i = 0;
	struct stat st;
	int rc = 0;

	if (fstat(image_fd(w->top), &st))
		return fail("%s: cannot stat: %s", w->top->name,
			    strerror(errno));
	w->ids = calloc(1, sizeof(*w->ids));
	if (!w->ids)
		return fail("out of memory");
	w->ids[0].dev = st.st_dev;
	w->ids[0].ino = st.st_ino;
	memset(cur, 0, sizeof(cur));
	/* Two images in turn: the parent stays open while its layer opens. */
	while (parent->info.backing_file[0]) {
		rc = plan_layer(w, parent, o, &cur[i]);
		if (parent != w->top)
			image_close(&cur[i ^ 1]);
		if (rc) {
			image_close(&cur[i]);
			return rc;
		}
		parent = &cur[i];
		i ^= 1;
	}
	if (parent != w->top)
		image_close((struct image *)parent);
	return 0;
}

/* Second walk: every layer open in one block that holds their paths. */
static int open_planned(const struct walk *w, const struct image_opts *o,
			struct image **lowerp)
{
	size_t bytes = w->nr * sizeof(struct image), off;
	struct image_opts lo;
	struct image *lower;
	unsigned int i;
	char *paths;

	for (i = 0; i < w->nr; i++)
		bytes += strlen(w->plan[i].path) + 1;
	lower = calloc(1, bytes);
	if (!lower)
		return fail("out of memory");
	paths = (char *)(lower + w->nr);
	for (i = 0, off = 0; i < w->nr; i++) {
		strcpy(paths + off, w->plan[i].path);
		lo = layer_opts(o, w->plan[i].pin);
		if (image_open(&lower[i], paths + off, &lo) ||
		    check_layer(i ? &lower[i - 1] : w->top, &lower[i])) {
			backing_close(lower, i + 1);
			return FAIL;
		}
		off += strlen(paths + off) + 1;
	}
	*lowerp = lower;
	return 0;
}

int backing_open(const struct image *top, const struct image_opts *o,
		 struct image **lower, unsigned int *nr)
{
	struct walk w = { .top = top };
	int rc;

	*lower = NULL;
	*nr = 0;
	rc = walk_chain(&w, o);
	if (!rc && w.nr)
		rc = open_planned(&w, o, lower);
	if (!rc)
		*nr = w.nr;
	walk_free(&w);
	return rc;
}
