/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The partition table of an attached disk, found with libblkid, for the
 * NAMEpN devices attach maps over it.  Plain C types only (imgfmt.h).
 */
#ifndef IMGFMT_PARTITIONS_H
#define IMGFMT_PARTITIONS_H

/* NAMEp1 to NAMEp999 are the names kept for partitions (imgfmt.h). */
#define PART_NO_MAX	999

/* One partition to map, in 512-byte sectors of the disk. */
struct part_entry {
	unsigned int partno;	/* as the kernel numbers it: logical from 5 */
	unsigned long long start;
	unsigned long long sectors;
};

/*
 * Probe the partition table of the block device (or file) at path, shown
 * in notes as shown (an escaped name).  *parts gets the partitions to map,
 * in ascending partno order, *nr how many (0 without a partition table:
 * not an error); free(*parts) afterwards.  Partitions that cannot be
 * mapped (past the end of the disk, empty, numbered above PART_NO_MAX,
 * numbered twice, inside a nested table) and extended partitions (the
 * container of the logical ones) are left out; each of the first kind
 * gets a note on stderr.  Returns 0 or FAIL.
 */
int partitions_probe(const char *path, const char *shown,
		     struct part_entry **parts, unsigned int *nr);

#endif /* IMGFMT_PARTITIONS_H */
