// SPDX-License-Identifier: GPL-2.0-only
/*
 * Run building shared by the formats; see runs.h.
 */
#include "runs.h"

static bool run_continues(const struct imgfmt_run *run,
			  const struct imgfmt_unit *u, u64 pos)
{
	if (u->kind != run->kind || u->kind == IMGFMT_RUN_COMPRESSED)
		return false;
	if (u->kind != IMGFMT_RUN_DATA)
		return true;
	return u->host + (pos - u->start) == run->dev_offset + run->length;
}

static void run_start(struct imgfmt_run *run, const struct imgfmt_unit *u,
		      u64 pos)
{
	memset(run, 0, sizeof(*run));
	run->kind = u->kind;
	if (u->kind == IMGFMT_RUN_DATA)
		run->dev_offset = u->host + (pos - u->start);
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
static void run_cut_at_last_sector(struct imgfmt_run *run, u64 offset,
				   u64 virtual_size)
{
	u64 last = virtual_size & ~511ULL;

	if (virtual_size == last || offset + run->length <= last ||
	    (run->kind != IMGFMT_RUN_DATA &&
	     run->kind != IMGFMT_RUN_COMPRESSED))
		return;
	if (offset < last) {
		run->length = last - offset;
		return;
	}
	run->length = 512;
	run->tail_zero = 512 - (virtual_size - last);
}

int imgfmt_map_runs(u64 virtual_size, u64 offset, u64 length,
		    unsigned int flags, imgfmt_lookup_fn lookup, void *ctx,
		    struct imgfmt_run *run, const char **err)
{
	struct imgfmt_unit u;
	u64 pos = offset, end, stop;
	int r;

	if (!length || offset % 512 || length % 512 ||
	    check_add_overflow(offset, length, &end) ||
	    end > ALIGN(virtual_size, 512)) {
		*err = "request outside the virtual disk";
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
		r = lookup(ctx, pos, end, flags, &u, err);
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
	/* A zero or unallocated run reaching the virtual size covers the tail. */
	if (pos >= virtual_size && pos < end &&
	    (run->kind == IMGFMT_RUN_ZERO ||
	     run->kind == IMGFMT_RUN_UNALLOCATED))
		run->length = end - offset;
	run_cut_at_last_sector(run, offset, virtual_size);
	return 0;
}
