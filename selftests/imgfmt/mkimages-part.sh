#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the partitioned disks of part_vm_test.sh: partition tables written
# with sfdisk, ext4 file systems made with mkfs.ext4 -d holding a file of
# known md5, the raw disk converted to qcow2 with qemu-img.
#
#   mkimages-part.sh OUTDIR
#
#   mbr.qcow2    64 MiB, MBR: a primary partition (ext4), an extended one
#                holding two logical ones (5: ext4, 6: no file system)
#   gpt.qcow2    64 MiB, GPT: two partitions (ext4, ext4)
#   past.qcow2   32 MiB, MBR written for 64 MiB: partition 1 (ext4) fits,
#                partition 2 extends past the end of the disk
#   plain.qcow2  16 MiB of ext4 with no partition table
#
# Manifest OUTDIR/part.list, one record a line, fields separated by one
# space; sectors are 512 bytes, numbers as sfdisk --dump printed them:
#   disk IMAGE SECTORS                   every image: its virtual size
#   part IMAGE PARTNO START SECTORS MD5  a partition attach must map; MD5
#                                        of its bytes in qemu-img's raw disk
#   file IMAGE PARTNO PATH MD5           a file of the ext4 in the partition
#   skip IMAGE PARTNO                    a partition attach must not map
# An image with no "part" record must get no partition devices.
#
# Files are relative to OUTDIR.  Running the script again rebuilds OUTDIR.

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"

[ $# -eq 1 ] || die "usage: mkimages-part.sh OUTDIR"
need_tools "qemu-utils, fdisk, e2fsprogs, coreutils" qemu-img sfdisk \
	mkfs.ext4 md5sum dd truncate
PATH=$PATH:/usr/sbin:/sbin

rm -rf "$1"
setup_out "$1"
make_tmp part
cd "$OUT"
LIST=$OUT/part.list
: >"$LIST"
# Fixed file system times and uuids (sfdisk still picks random disk ids).
export E2FSPROGS_FAKE_TIME=1700000000

# A file of BYTES pseudo-random bytes from SEED, the same on every run.
seeded_bytes()		# SEED BYTES
{
	python3 -c 'import random, sys
r = random.Random(sys.argv[1])
sys.stdout.buffer.write(r.randbytes(int(sys.argv[2])))' "$1" "$2"
}

# ext4 of SECTORS sectors in FILE holding data.bin (SEED), recorded as
# "file IMAGE PARTNO /data.bin MD5".
make_ext4()		# FILE SECTORS SEED IMAGE PARTNO
{
	local root=$TMP/root-$3

	mkdir -p "$root"
	seeded_bytes "$3" $((300 * 1024 + 17)) >"$root/data.bin"
	truncate -s $(($2 * 512)) "$1"
	mkfs.ext4 -q -F -b 1024 -U clear -E root_owner=0:0 -d "$root" \
		-L "part$5" "$1" >/dev/null
	echo "file $4 $5 /data.bin $(md5_of "$root/data.bin")" >>"$LIST"
}

# Partition PARTNO of RAW (sfdisk --dump's start and size): sets START
# and SIZE.
part_geometry()		# RAW PARTNO
{
	local line

	line=$(sfdisk --dump "$1" | grep -E "^[^ ]*[^0-9]$2 : ") ||
		die "$1 has no partition $2"
	START=$(echo "$line" | sed -E 's/.*start= *([0-9]+).*/\1/')
	SIZE=$(echo "$line" | sed -E 's/.*size= *([0-9]+).*/\1/')
}

# Write an ext4 into partition PARTNO of RAW.
fill_part()		# RAW PARTNO SEED IMAGE
{
	part_geometry "$1" "$2"
	make_ext4 "$TMP/fs" "$SIZE" "$3" "$4" "$2"
	dd if="$TMP/fs" of="$1" bs=512 seek="$START" conv=notrunc,sparse \
		status=none
	rm -f "$TMP/fs"
}

# Convert RAW to IMAGE (qcow2); record the disk and the partitions listed.
finish()		# RAW IMAGE PARTNO...
{
	local raw=$1 image=$2 p

	shift 2
	qemu-img convert -f raw -O qcow2 "$raw" "$image"
	qemu-img convert -f qcow2 -O raw "$image" "$TMP/check.raw"
	echo "disk $image $(($(stat -c %s "$TMP/check.raw") / 512))" >>"$LIST"
	for p in "$@"; do
		part_geometry "$raw" "$p"
		echo "part $image $p $START $SIZE $(dd if="$TMP/check.raw" bs=512 \
			skip="$START" count="$SIZE" status=none | md5_of)" >>"$LIST"
	done
	rm -f "$TMP/check.raw" "$raw"
}

raw=$TMP/mbr.raw
truncate -s 64M "$raw"
sfdisk -q --label dos "$raw" <<'END'
start=2048, size=40960, type=83
start=43008, type=5
start=45056, size=40960, type=83
size=8192, type=83
END
fill_part "$raw" 1 mbr-1 mbr.qcow2
fill_part "$raw" 5 mbr-5 mbr.qcow2
finish "$raw" mbr.qcow2 1 5 6
echo "skip mbr.qcow2 2" >>"$LIST"

raw=$TMP/gpt.raw
truncate -s 64M "$raw"
sfdisk -q --label gpt "$raw" <<'END'
start=2048, size=40960, name=one
size=40960, name=two
END
fill_part "$raw" 1 gpt-1 gpt.qcow2
fill_part "$raw" 2 gpt-2 gpt.qcow2
finish "$raw" gpt.qcow2 1 2

# The table is written for 64 MiB; the disk is cut to 32 MiB after it.
raw=$TMP/past.raw
truncate -s 64M "$raw"
sfdisk -q --label dos "$raw" <<'END'
start=2048, size=20480, type=83
start=32768, size=65536, type=83
END
fill_part "$raw" 1 past-1 past.qcow2
truncate -s 32M "$raw"
finish "$raw" past.qcow2 1
echo "skip past.qcow2 2" >>"$LIST"

raw=$TMP/plain.raw
make_ext4 "$raw" 32768 plain plain.qcow2 0
finish "$raw" plain.qcow2

echo "$PROG: $(grep -c '^part ' "$LIST") partitions in $(grep -c '^disk ' "$LIST") images in $OUT"
