// SPDX-License-Identifier: GPL-2.0-only
/*
 * Run building shared by the formats; see runs.h.
 */
#include "runs.h"
#include "../mcache.h"

static bool run_continues(const struct imgfmt_run *run,
			  const struct imgfmt_unit *u, u64 pos)
{
	if (u->kind != run->kind || u->kind == IMGFMT_RUN_COMPRESSED)
		return false;
	if (u->kind != IMGFMT_RUN_DATA)
		return true;
	return u->on_data_dev == run->on_data_dev &&
	       u->in_place == run->in_place &&
	       u->host + (pos - u->start) == run->dev_offset + run->length;
}

/* The first unit of run, which imgfmt_map() zeroed. */
static void run_start(struct imgfmt_run *run, const struct imgfmt_unit *u,
		      u64 pos)
{
	run->kind = u->kind;
	if (u->kind == IMGFMT_RUN_DATA) {
		run->dev_offset = u->host + (pos - u->start);
		run->on_data_dev = u->on_data_dev;
		run->in_place = u->in_place;
	}
	if (u->kind == IMGFMT_RUN_COMPRESSED) {
		run->comp_offset = u->comp_offset;
		run->comp_length = u->comp_length;
		run->comp_skip = pos - u->start;
		run->comp_cluster_size = u->comp_cluster_size;
		run->comp_type = u->comp_type;
	}
}

/*
 * When the virtual size ends inside a sector, that sector's bytes past the
 * end must read as zeroes whatever the image holds there: a run of data
 * stops before that sector, and the sector is a run of its own that says
 * how much of it to zero.
 */
void imgfmt_run_cut_at_last_sector(struct imgfmt_run *run, u64 offset,
				   u64 virtual_size)
{
	u64 last = virtual_size & ~511ULL;
	u32 tail;

	if (virtual_size == last || offset + run->length <= last ||
	    (run->kind != IMGFMT_RUN_DATA &&
	     run->kind != IMGFMT_RUN_COMPRESSED))
		return;
	if (offset < last) {
		run->length = last - offset;
		return;
	}
	/* A lower layer may end in this sector too, before the top. */
	tail = 512 - (u32)(virtual_size - last);
	run->length = 512;
	run->tail_zero = max(run->tail_zero, tail);
}

/*
 * Check the request, then merge units from offset on into *run.  A lookup
 * failure after the first unit ends the run early instead, so that only a
 * request that starts at the bad unit fails.  Past the virtual size (a
 * backing layer smaller than the layer above it) the disk reads zeroes.
 */
int imgfmt_map(struct imgfmt_image *img, u64 offset, u64 length,
	       unsigned int flags, struct imgfmt_run *run, const char **err)
{
	u64 virtual_size = img->info.virtual_size;
	u64 vend = ALIGN(virtual_size, 512);
	/*
	 * Not zeroed on entry (CONFIG_INIT_STACK_ALL_ZERO would, 200 bytes
	 * a call): the batch is empty, its entries not read until filled,
	 * and u is cleared before each lookup.
	 */
	struct imgfmt_batch batch __uninitialized;
	struct imgfmt_unit u __uninitialized;
	u64 pos = offset, end, stop;
	int r;

	batch.count = 0;

	if (!length || offset % 512 || length % 512 ||
	    check_add_overflow(offset, length, &end)) {
		*err = "request not in whole sectors of the virtual disk";
		return -EINVAL;
	}
	memset(run, 0, sizeof(*run));
	if (offset >= virtual_size) {
		run->kind = IMGFMT_RUN_ZERO;
		run->length = length;
		return 0;
	}
	while (pos < end && pos < virtual_size) {
		memset(&u, 0, sizeof(u));
		r = img->ops->lookup(img, &batch, pos, end, flags, &u, err);
		if (r) {
			if (run->length)
				break;
			return r;
		}
		if (u.start > pos || u.end <= pos) {
			*err = "format lookup returned a unit not holding the offset";
			return run->length ? 0 : -EIO;
		}
		if (!run->length)
			run_start(run, &u, pos);
		else if (!run_continues(run, &u, pos))
			break;
		stop = min(u.end, end);
		run->length += stop - pos;
		pos = stop;
		if (u.kind == IMGFMT_RUN_COMPRESSED)
			break;
	}
	/*
	 * Only a zero run goes past the virtual size, and then to the end of
	 * the request (past the end the disk reads zeroes).  Any other ends
	 * with the last sector: no data from past the end, and no layer below
	 * asked for what lies past this layer's end (zeroes, not its data).
	 */
	if (run->kind == IMGFMT_RUN_ZERO) {
		if (offset + run->length >= virtual_size)
			run->length = end - offset;
	} else if (offset + run->length > vend) {
		run->length = vend - offset;
	}
	if (virtual_size % 512)
		imgfmt_run_cut_at_last_sector(run, offset, virtual_size);
	return 0;
}

int imgfmt_corrupt(struct imgfmt_image *img, const char *what, u64 where,
		   const char **err)
{
	imgfmt_report_corruption(img->info.format, what, where);
	*err = what;
	return -EIO;
}

int imgfmt_load_be64_table(struct imgfmt_dev *dev, u64 off, u32 n,
			   u64 **table)
{
	__be64 *raw;
	u32 i;
	int r;

	*table = NULL;
	if (!n)
		return 0;
	raw = imgfmt_alloc_large((size_t)n * 8);
	if (!raw)
		return -ENOMEM;
	r = imgfmt_dev_read(dev, off, raw, (size_t)n * 8);
	if (r) {
		imgfmt_free_large(raw);
		return r;
	}
	/* Converted in place: the table is kept in CPU order. */
	*table = (u64 *)raw;
	for (i = 0; i < n; i++)
		(*table)[i] = be64_to_cpu(raw[i]);
	return 0;
}
