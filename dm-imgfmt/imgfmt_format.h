/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One interface for every image format.
 *
 * A format parses and validates its header when an image is opened, and
 * afterwards answers one question: where does the virtual range starting at
 * a given offset live?  The answer is a run: a prefix of the range that is
 * all of one kind (on the device and physically contiguous, zeroes,
 * unallocated, compressed).  The caller (the dm target or the userspace
 * helper) moves the bytes.
 */
#ifndef IMGFMT_FORMAT_H
#define IMGFMT_FORMAT_H

#include "imgfmt_port.h"

struct imgfmt_mcache;
struct imgfmt_mgroup;

enum imgfmt_run_kind {
	/* Stored on the image device at dev_offset, contiguous for length. */
	IMGFMT_RUN_DATA,
	/* Reads as zeroes: a zero cluster, or past the virtual size. */
	IMGFMT_RUN_ZERO,
	/* Not allocated in this image: zeroes, or the backing image's data. */
	IMGFMT_RUN_UNALLOCATED,
	/* Inside a compressed cluster (see the comp_* fields). */
	IMGFMT_RUN_COMPRESSED,
};

struct imgfmt_run {
	enum imgfmt_run_kind kind;
	/* Bytes of virtual space covered, from the queried offset; > 0. */
	u64 length;
	/* DATA: device byte offset holding the queried virtual offset. */
	u64 dev_offset;
	/* COMPRESSED: where the stream starts and its maximal length. */
	u64 comp_offset;
	u32 comp_length;
	/*
	 * DATA: dev_offset is on the layer's external data file (QCOW2
	 * data_file), not on the device holding the image.
	 */
	bool on_data_dev;
	/* COMPRESSED: offset of the queried byte inside the cluster. */
	u32 comp_skip;
	/* COMPRESSED: bytes of the decompressed cluster. */
	u32 comp_cluster_size;
	enum imgfmt_compression comp_type;
	/*
	 * DATA and COMPRESSED: bytes at the end of the run that read as
	 * zeroes although the image holds something there.  Non-zero only
	 * for the disk's last sector when the virtual size is not a multiple
	 * of 512: the device shows whole sectors, zeroes past the end.
	 */
	u32 tail_zero;
	/*
	 * Which layer of a chain holds the run, 0 for the top (set by
	 * imgfmt_chain_map(); a single image's map() leaves it 0).
	 */
	u32 layer;
	/*
	 * DATA of an image open for writing: a write may go to dev_offset
	 * as it is, with no metadata change (QCOW2: a normal cluster, or an
	 * allocated subcluster, whose refcount is exactly 1).
	 */
	bool in_place;
};

/* map() flags */
#define IMGFMT_MAP_NOWAIT	0x1	/* fail with -EWOULDBLOCK, never read */

/* What `imgfmt info` and the status line show. */
struct imgfmt_info {
	const char *format;	/* "qcow2" */
	u32 version;
	u64 virtual_size;	/* bytes */
	u32 cluster_size;	/* bytes */
	u32 refcount_bits;
	u64 incompatible_features;
	u64 compatible_features;
	u64 autoclear_features;
	bool dirty;
	bool corrupt;
	bool extended_l2;
	bool lazy_refcounts;
	enum imgfmt_compression compression;
	u32 nb_snapshots;
	u32 l1_entries;
	u64 l1_offset;
	/* The features this build does not handle yet; NUL-terminated. */
	char backing_file[1024];
	char backing_format[64];
	char data_file[1024];
	bool data_file_raw;	/* QCOW2 data_file_raw autoclear bit */
	bool encrypted;
	/* VMDK: the extent's CID and parentCID (ffffffff: no parent). */
	bool has_cid;
	u32 cid;
	u32 parent_cid;
	/*
	 * UML COW: the backing file's size and mtime the header recorded,
	 * which the backing file must still have.
	 */
	bool has_backing_stamp;
	u64 backing_size;
	u32 backing_mtime;
};

struct imgfmt_format_ops;
struct imgfmt_batch;
struct imgfmt_unit;

/*
 * What opening an image needs.  An argument struct, so that what layers
 * and writes add (the layer's role, a snapshot to map, a data file's
 * device, a key) does not change every format's signature.
 */
struct imgfmt_open_args {
	struct imgfmt_dev *dev;		/* the device holding the image */
	u64 cache_bytes;		/* bound of its metadata cache */
	/*
	 * When set, the image's caches draw on this budget, shared with
	 * the other layers of a chain, and cache_bytes is ignored.
	 */
	struct imgfmt_mgroup *mgroup;
	/*
	 * The caller reads what the image leaves unallocated from a layer
	 * below it.  Without one, an image that needs its backing file is
	 * refused by name (its reads would be wrong).
	 */
	bool has_lower;
	/* QCOW2: the internal snapshot to map (id or name); NULL: active. */
	const char *snapshot;
	/* QCOW2: the device holding the external data file; NULL: none. */
	struct imgfmt_dev *data_dev;
	/*
	 * Open for writing (dev has write and flush).  A format without a
	 * write path, or an image it cannot write, is refused by name.
	 */
	bool writable;
};

/*
 * A write the format has prepared: the virtual range [vstart, vend) is to
 * be written whole at host, the caller's data where it has some and the
 * range's current contents (through the layers below, or zeroes) around
 * it, and only then finished.  The range holds the queried offset.
 */
struct imgfmt_wplan {
	u64 vstart;
	u64 vend;
	u64 host;		/* device offset of vstart */
	/*
	 * Nothing to allocate: write the caller's data at host, no fill,
	 * no finish needed.
	 */
	bool in_place;
	/*
	 * Only with IMGFMT_WRITE_ZEROES: [vstart, vend) is inside the
	 * request and reads as zeroes once finished; no data is written.
	 */
	bool zeroed;
	/*
	 * Not with in_place: the device reads zeroes at [host, host +
	 * (vend - vstart)), so the fill where the range reads zeroes may
	 * be left out (write only what differs from zeroes).
	 */
	bool host_zeroed;
	/*
	 * The finish hands storage the range held back to the format (a
	 * compressed or shared cluster replaced), which has room for one
	 * such plan at a time: finish or drop it before the next prepare.
	 */
	bool releases;
	u64 priv[6];		/* the format's own */
};

/*
 * prepare_write flags.  IMGFMT_WRITE_ZEROES: the caller writes zeroes
 * (a discard or write-zeroes request); the format may answer with a
 * zeroed plan that changes only metadata, else a plan for data as usual.
 */
#define IMGFMT_WRITE_ZEROES	0x1

/*
 * finish_write flags.  IMGFMT_FINISH_NOWAIT: never block, in any task
 * context; -EWOULDBLOCK, with nothing changed, when the finish needs I/O
 * (the metadata to change is not cached) or more than memory changes.
 */
#define IMGFMT_FINISH_NOWAIT	0x1

/* What the status line shows of a writable image. */
struct imgfmt_wstats {
	u64 dirty_bytes;	/* metadata changed in memory, not written */
	u64 image_end;		/* first byte of the device no cluster uses */
	u64 commits;
	u64 allocations;	/* clusters allocated since open */
};

/*
 * An open image: the part every format shares, embedded first in each
 * format's own struct (reached with container_of).
 */
struct imgfmt_image {
	const struct imgfmt_format_ops *ops;
	struct imgfmt_dev *dev;
	/* Its table cache (L2 or grain tables), for statistics. */
	struct imgfmt_mcache *mcache;
	struct imgfmt_info info;	/* info.virtual_size bounds map() */
	bool writable;		/* opened with args->writable */
};

struct imgfmt_format_ops {
	const char *name;
	/*
	 * Does this header (at least 512 bytes) belong to this format?  NULL
	 * for raw, which is never detected, only named.
	 */
	bool (*probe)(const void *head, size_t len);
	/*
	 * Parse and validate the image and fill the shared part (dev,
	 * mcache, info; ops is the caller's).  On failure returns -errno and
	 * sets *err to a static message that names the problem; the same
	 * words appear in the kernel's table-load error and in `imgfmt
	 * info`.
	 */
	int (*open)(const struct imgfmt_open_args *args,
		    struct imgfmt_image **imgp, const char **err);
	void (*close)(struct imgfmt_image *img);
	/*
	 * Describe the unit of the virtual disk holding pos, which is below
	 * the virtual size (formats/runs.h).  limit is where the caller
	 * stops looking, b the table entries copied by earlier lookups of the
	 * same map() call.  0, -EWOULDBLOCK (IMGFMT_MAP_NOWAIT and a table is
	 * not cached) or -EIO with *err set.
	 */
	int (*lookup)(struct imgfmt_image *img, struct imgfmt_batch *b,
		      u64 pos, u64 limit, unsigned int flags,
		      struct imgfmt_unit *u, const char **err);
	/*
	 * The write side, NULL in a format that has none.  Called by one
	 * thread at a time (the host's writer), which may block; map()
	 * runs alongside and sees each change whole.
	 *
	 * prepare_write: allocate what a write at offset (up to len bytes)
	 * needs and describe it in *p.  finish_write: the range p describes
	 * is on the device (written, not necessarily flushed): point the
	 * metadata at it, in memory.  commit: write the changed metadata in
	 * an order that keeps the image consistent at every instant, ending
	 * with a flush that makes every write finished before it durable.
	 * Each returns 0 or -errno with *err naming the problem: -EUCLEAN
	 * for corruption met (nothing changed; fail that write only),
	 * -ENOSPC when the device is full (with *err imgfmt_err_no_room:
	 * a larger device cures it), others from the device.
	 */
	int (*prepare_write)(struct imgfmt_image *img, u64 offset, u64 len,
			     unsigned int flags, struct imgfmt_wplan *p,
			     const char **err);
	int (*finish_write)(struct imgfmt_image *img,
			    const struct imgfmt_wplan *p, unsigned int flags,
			    const char **err);
	int (*commit)(struct imgfmt_image *img, const char **err);
	/*
	 * Optional, for writes the host sends down without its writer.
	 * reserve (the writer): a cluster for prepare_reserved, counted as
	 * used, where the device reads zeroes; -EOPNOTSUPP or -EAGAIN when
	 * the image or the device cannot have one.  unreserve (the writer):
	 * give back one no write used, the last reserved first.
	 * prepare_reserved (any context, never blocks, changes nothing): the
	 * plan of a write at offset that fills reserved cluster host, as
	 * prepare_write would make it, with host_zeroed; -EWOULDBLOCK when
	 * the write needs the writer (metadata not cached, contents to keep).
	 * The caller keeps the writer off that cluster until the plan is
	 * finished.
	 */
	int (*reserve)(struct imgfmt_image *img, u64 *host, const char **err);
	int (*unreserve)(struct imgfmt_image *img, u64 host, const char **err);
	int (*prepare_reserved)(struct imgfmt_image *img, u64 offset, u64 host,
				struct imgfmt_wplan *p);
	void (*get_wstats)(struct imgfmt_image *img, struct imgfmt_wstats *st);
};

/* Open the image on args->dev as format ops; see imgfmt_format_ops.open. */
int imgfmt_open(const struct imgfmt_format_ops *ops,
		const struct imgfmt_open_args *args,
		struct imgfmt_image **imgp, const char **err);
void imgfmt_close(struct imgfmt_image *img);

/*
 * Describe where [offset, offset + length) starts to live.  offset and
 * length are multiples of 512.  Returns 0 and fills *run (with
 * 0 < run->length <= length; past the virtual size a ZERO run),
 * -EWOULDBLOCK when IMGFMT_MAP_NOWAIT is set and metadata must be read
 * first, -EINVAL for a request that is not whole sectors, or -EIO on
 * corruption (*err then names it).
 */
int imgfmt_map(struct imgfmt_image *img, u64 offset, u64 length,
	       unsigned int flags, struct imgfmt_run *run, const char **err);

/*
 * Writes (see imgfmt_format_ops): offset and len are whole sectors below
 * the virtual size.  -EROFS for an image not open for writing.
 */
int imgfmt_prepare_write(struct imgfmt_image *img, u64 offset, u64 len,
			 unsigned int flags, struct imgfmt_wplan *p,
			 const char **err);
int imgfmt_finish_write(struct imgfmt_image *img,
			const struct imgfmt_wplan *p, unsigned int flags,
			const char **err);
int imgfmt_commit(struct imgfmt_image *img, const char **err);
/* Reserved clusters (see imgfmt_format_ops.reserve). */
int imgfmt_reserve(struct imgfmt_image *img, u64 *host, const char **err);
int imgfmt_unreserve(struct imgfmt_image *img, u64 host, const char **err);
int imgfmt_prepare_reserved(struct imgfmt_image *img, u64 offset, u64 len,
			    u64 host, struct imgfmt_wplan *p);
/*
 * *err of the -ENOSPC a write gets when the image has reached the end of
 * its device: not an error the device gave, so growing the device cures it.
 */
extern const char *const imgfmt_err_no_room;
/* Zeroes for an image that is not writable. */
void imgfmt_get_wstats(struct imgfmt_image *img, struct imgfmt_wstats *st);

/* The formats, each in formats/<name>.c. */
extern const struct imgfmt_format_ops imgfmt_qcow2_ops;
extern const struct imgfmt_format_ops imgfmt_vmdk_ops;
extern const struct imgfmt_format_ops imgfmt_vmdk_sesparse_ops;
extern const struct imgfmt_format_ops imgfmt_qcow_ops;
extern const struct imgfmt_format_ops imgfmt_cow_ops;
/* Raw data: only ever chosen by name, never detected. */
extern const struct imgfmt_format_ops imgfmt_raw_ops;

/* Every format this build knows, NULL-terminated. */
extern const struct imgfmt_format_ops *const imgfmt_formats[];

/*
 * Find the format of the image on dev: by name when pin is non-NULL, else by
 * magic.  NULL with *err set when none matches, or *err
 * imgfmt_err_unreadable when the device could not be read.
 */
extern const char *const imgfmt_err_unreadable;
const struct imgfmt_format_ops *imgfmt_detect(struct imgfmt_dev *dev,
					      const char *pin,
					      const char **err);

/*
 * The most memory an image keeps for its top-level table (QCOW L1 table,
 * VMDK grain directory) for the device's lifetime, outside cache_size:
 * QEMU's own limit for a QCOW2 L1 table.  A larger one is refused.
 */
#define IMGFMT_MAX_TOP_TABLE_BYTES	(32ULL << 20)

/* Default metadata cache bound when the table does not give one. */
#define IMGFMT_DEFAULT_CACHE_BYTES	(16ULL << 20)
#define IMGFMT_MIN_CACHE_BYTES		(64ULL << 10)
#define IMGFMT_MAX_CACHE_BYTES		BIT_ULL(40)

#endif /* IMGFMT_FORMAT_H */
