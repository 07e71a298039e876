// SPDX-License-Identifier: GPL-2.0-only
/*
 * The partition table of an attached disk.
 *
 * device-mapper devices do not scan partitions, so attach maps them itself,
 * kpartx style, as linear devices NAMEpN over the disk.  The table is read
 * with libblkid's partition prober, which knows MBR (logical partitions
 * numbered from 5, as the kernel numbers them), GPT and the other tables
 * util-linux reads; this file only decides which of its entries can be
 * mapped.  The table comes from the image, so every entry is checked
 * against the disk before it becomes a device.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <blkid.h>

#include "failure.h"
#include "partitions.h"

#define SECTOR_BYTES	512

/* The disk's size in sectors: a block device's, or a (test) file's. */
static int disk_sectors(int fd, const char *shown, unsigned long long *out)
{
	unsigned long long bytes = 0;
	struct stat st;

	if (fstat(fd, &st))
		return fail("cannot stat %s: %s", shown, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &bytes))
			return fail("cannot get the size of %s: %s", shown,
				    strerror(errno));
	} else {
		bytes = (unsigned long long)st.st_size;
	}
	*out = bytes / SECTOR_BYTES;
	return 0;
}

/* Is partno taken by an entry kept already? */
static bool partno_taken(const struct part_entry *parts, unsigned int nr,
			 unsigned int partno)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		if (parts[i].partno == partno)
			return true;
	return false;
}

/*
 * Why entry par cannot be mapped on a disk of disk sectors, or NULL when
 * it can.  Extended partitions are left out without a word: they only hold
 * the logical ones, which are mapped themselves.
 */
static const char *part_problem(blkid_partition par, unsigned long long disk,
				const struct part_entry *parts,
				unsigned int nr, bool *quiet)
{
	blkid_loff_t start = blkid_partition_get_start(par);
	blkid_loff_t size = blkid_partition_get_size(par);
	int partno = blkid_partition_get_partno(par);

	*quiet = false;
	if (blkid_partition_is_extended(par)) {
		*quiet = true;
		return "an extended partition";
	}
	if (blkid_parttable_get_parent(blkid_partition_get_table(par)))
		return "in a nested partition table";
	if (partno < 1 || partno > PART_NO_MAX)
		return "numbered outside 1 to 999";
	if (partno_taken(parts, nr, (unsigned int)partno))
		return "numbered twice";
	if (start < 0 || size <= 0)
		return "empty";
	if ((unsigned long long)start > disk ||
	    (unsigned long long)size > disk - (unsigned long long)start)
		return "extends past the end of the disk";
	return NULL;
}

/* Keep the mappable entries of the list, noting the others. */
static int parts_collect(blkid_partlist ls, unsigned long long disk,
			 const char *shown, struct part_entry **out,
			 unsigned int *nr)
{
	int i, n = blkid_partlist_numof_partitions(ls);
	struct part_entry *parts;
	blkid_partition par;
	const char *why;
	bool quiet;

	if (n <= 0)
		return 0;
	parts = calloc((size_t)n, sizeof(*parts));
	if (!parts)
		return fail("out of memory");
	for (i = 0; i < n; i++) {
		par = blkid_partlist_get_partition(ls, i);
		if (!par)
			continue;
		why = part_problem(par, disk, parts, *nr, &quiet);
		if (why) {
			if (!quiet)
				fprintf(stderr, "imgfmt: note: %s: partition %d (start %lld, %lld sectors, disk %llu sectors) is not mapped: %s\n",
					shown, blkid_partition_get_partno(par),
					(long long)blkid_partition_get_start(par),
					(long long)blkid_partition_get_size(par),
					disk, why);
			continue;
		}
		parts[*nr].partno = (unsigned int)blkid_partition_get_partno(par);
		parts[*nr].start = (unsigned long long)blkid_partition_get_start(par);
		parts[*nr].sectors = (unsigned long long)blkid_partition_get_size(par);
		(*nr)++;
	}
	*out = parts;
	return 0;
}

static int part_cmp(const void *a, const void *b)
{
	const struct part_entry *x = a, *y = b;

	return (x->partno > y->partno) - (x->partno < y->partno);
}

/* Probe the open device fd; no table is no error. */
static int probe_fd(int fd, const char *shown, struct part_entry **parts,
		    unsigned int *nr)
{
	unsigned long long disk = 0;
	blkid_partlist ls;
	blkid_probe pr;
	int rc;

	rc = disk_sectors(fd, shown, &disk);
	if (rc)
		return rc;
	pr = blkid_new_probe();
	if (!pr)
		return fail("out of memory");
	/* Only the partition chain: a file system is not our business. */
	if (blkid_probe_set_device(pr, fd, 0, 0) ||
	    blkid_probe_enable_superblocks(pr, 0) ||
	    blkid_probe_enable_partitions(pr, 1)) {
		blkid_free_probe(pr);
		return fail("cannot probe %s for partitions", shown);
	}
	ls = blkid_probe_get_partitions(pr);
	rc = ls ? parts_collect(ls, disk, shown, parts, nr) : 0;
	blkid_free_probe(pr);
	if (!rc && *nr > 1)
		qsort(*parts, *nr, sizeof(**parts), part_cmp);
	return rc;
}

int partitions_probe(const char *path, const char *shown,
		     struct part_entry **parts, unsigned int *nr)
{
	int fd, rc;

	*parts = NULL;
	*nr = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("cannot open %s: %s", shown, strerror(errno));
	rc = probe_fd(fd, shown, parts, nr);
	close(fd);
	if (rc) {
		free(*parts);
		*parts = NULL;
		*nr = 0;
	}
	return rc;
}
