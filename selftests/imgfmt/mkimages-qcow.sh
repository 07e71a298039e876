#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the QCOW (version 1) test images for the dm-imgfmt selftests, with
# QEMU's own tools, and append their records to the manifests in OUTDIR.
#
#   mkimages-qcow.sh OUTDIR
#
# The manifests and their record formats are those described at the top of
# mkimages.sh (good.list, windows.list, hostile.list, corrupt.list); this
# script only appends.  Its images are OUTDIR/qcow1_*.qcow and its record
# names start with qcow1_.  Running it again first removes its own images
# and records, so it may run before or after mkimages.sh (which rewrites
# the manifests from scratch: run this one after it, then regenerate
# variants.h).
#
# QEMU is the oracle: every expected checksum comes from `qemu-img convert`
# or `qemu-img dd`.  qemu-img creates QCOW images with one geometry only
# (4 KiB clusters, 512-entry L2 tables; 512-byte clusters, 4096-entry L2
# tables with a backing file), so other geometries are made by patching a
# freshly created image, whose L1 table is still all zeroes, before QEMU
# writes anything: the image stays one that QEMU reads and writes.
#
# Every image is padded with zeroes to whole sectors: QEMU leaves files that
# end mid-sector (after the L1 table, after a compressed cluster), and a
# loop device drops a partial last sector.  Padding changes nothing QEMU
# reads.  Everything is deterministic.

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"
IMG_FMT=qcow
IMG_EXT=qcow

[ $# -eq 1 ] || die "usage: mkimages-qcow.sh OUTDIR"

need_tools "qemu-utils, coreutils, gzip, gawk/mawk, sed" qemu-img qemu-io \
	md5sum od dd gzip seq head tr stat truncate grep awk sed

setup_out "$1"
# Only remove what this script makes.
rm -f "$OUT"/qcow1_*.qcow
for l in "$GOOD" "$WINDOWS" "$HOSTILE" "$CORRUPT"; do
	touch "$l"
	sed -i '/^qcow1_/d' "$l"
done
make_tmp qcow1

# Data: four 1 MiB files of incompressible-looking bytes, and text that
# compresses well, for compressed clusters.
make_random_files imgfmt-qcow1-seed 4
make_text "$TMP/text" "qcow1 compressible line" $MiB

# ---------------------------------------------------------------------------
# QCOW metadata (big-endian fields, read and written with rd_be and wr_be).
# ---------------------------------------------------------------------------
# QCOW header fields: offset and size.
H_BACKING_OFF="8 8"
H_BACKING_LEN="16 4"
H_SIZE="24 8"
H_CBITS="32 1"
H_L2BITS="33 1"
H_CRYPT="36 4"
H_L1OFF="40 8"

field()	# FILE FIELD
{
	# shellcheck disable=SC2086
	rd_be "$1" $2
}

setf()	# FILE FIELD VALUE
{
	# shellcheck disable=SC2086
	wr_be "$1" $2 "$3"
}

# Offset in FILE of the L1 or L2 entry for virtual offset VOFF.
l1_entry_pos()	# FILE VOFF
{
	local cb l2

	cb=$(field "$1" "$H_CBITS")
	l2=$(field "$1" "$H_L2BITS")
	echo $(($(field "$1" "$H_L1OFF") + 8 * ($2 >> (cb + l2))))
}

l2_entry_pos()	# FILE VOFF
{
	local cb l2 l2off

	cb=$(field "$1" "$H_CBITS")
	l2=$(field "$1" "$H_L2BITS")
	l2off=$(rd_be "$1" "$(l1_entry_pos "$1" "$2")" 8)
	[ "$l2off" -ne 0 ] || die "no L2 table for $2 in $1"
	echo $((l2off + 8 * (($2 >> cb) & ((1 << l2) - 1))))
}

# ---------------------------------------------------------------------------
# Image construction.
# ---------------------------------------------------------------------------
create()	# NAME SIZE [qemu-img create options...]
{
	local name=$1 size=$2

	shift 2
	qemu-img create -q -f qcow "$@" "$(img "$name")" "$size" ||
		die "qemu-img create $name failed"
	[ "$(field "$(img "$name")" "4 4")" -eq 1 ] || die "$name is not version 1"
}

#
# A fresh image of virtual size SIZE with clusters of 2^CBITS bytes and L2
# tables of 2^L2BITS entries: created small, then the size and geometry
# patched while the L1 table is all zeroes, and the file extended with
# zeroes over the whole new L1 table (QEMU allocates after the file's end).
#
create_geom()	# NAME SIZE CBITS L2BITS
{
	local f span l1

	create "$1" 1M
	f=$(img "$1")
	setf "$f" "$H_SIZE" "$2"
	setf "$f" "$H_CBITS" "$3"
	setf "$f" "$H_L2BITS" "$4"
	span=$((1 << ($3 + $4)))
	l1=$((($2 + span - 1) / span))
	truncate -s $(((48 + 8 * l1 + 511) / 512 * 512)) "$f"
	[ "$(field "$f" "$H_L1OFF")" -eq 48 ] || die "$1: L1 table not at 48"
}

# fill() of imglib.sh: QCOW has no zero clusters (QEMU writes zeroes), and
# one piece in four is a zero write.
FILL_CYCLE=4

#
# Compressed clusters.  QEMU compresses one whole cluster per write (or the
# last, partial cluster of the disk), and only into a cluster never written
# before: over an allocated one it would write the stream in place, so every
# cluster here is written once.  Clusters that do not compress are written
# plain by QEMU.
#
fill_compressed()	# NAME V C SEED
{
	local name=$1 V=$2 C=$3 seed=$4 i n k
	local -a c=()
	local -A used=([2]=1 [3]=1 [4]=1 [5]=1)

	RNG=$seed
	n=$((V / C))
	for ((i = 0; i < 24; i++)); do
		rnd
		k=$((R % n))
		[ -z "${used[$k]:-}" ] || continue
		used[$k]=1
		case $((i % 3)) in
		0 | 1)
			c+=(-c "write -q -c -s $TMP/text $((k * C)) $C") ;;
		2)
			c+=(-c "write -q -c -P $((i + 1)) $((k * C)) $C") ;;
		esac
	done
	# Neighbours: a run of compressed clusters, then plain data.
	c+=(-c "write -q -c -s $TMP/text $((2 * C)) $C")
	c+=(-c "write -q -c -s $TMP/text $((3 * C)) $C")
	c+=(-c "write -q -s $TMP/r$((seed % 4)) $((4 * C)) $((2 * C))")
	qio "$name" "${c[@]}"
}

pad()	# NAME: whole sectors (see the top)
{
	truncate -s %512 "$(img "$1")"
}

add_good()	# NAME [VIRTUAL_SIZE MD5]
{
	local f vs sum cs

	pad "$1"
	f=$(img "$1")
	cs=$((1 << $(field "$f" "$H_CBITS")))
	if [ $# -ge 3 ]; then
		vs=$2
		sum=$3
	else
		vs=$(info_field "$f" virtual-size)
		[ "$vs" = "$(field "$f" "$H_SIZE")" ] || die "$1: QEMU sees size $vs"
		sum=$(raw_md5 "$f")
	fi
	[ -n "$vs" ] || die "qemu-img info $f failed"
	echo "$1 $1.qcow $vs $sum $cs qcow" >>"$GOOD"
}

good()	# NAME SIZE SEED: default geometry
{
	create "$1" "$2"
	fill "$1" "$2" 4096 "$3"
	add_good "$1"
}

good_geom()	# NAME SIZE CBITS L2BITS SEED
{
	create_geom "$1" "$2" "$3" "$4"
	fill "$1" "$2" $((1 << $3)) "$5"
	add_good "$1"
}

# ---------------------------------------------------------------------------
# Good images.
# ---------------------------------------------------------------------------
good qcow1_default_8m $((8 * MiB)) 11
good qcow1_odd_5m_3s $((5 * MiB + 3 * 512)) 12
good qcow1_odd_2m_1s $((2 * MiB + 512)) 13
create qcow1_tiny_1536 1536
qio qcow1_tiny_1536 -c "write -q -P 0x5a 0 512" -c "write -q -s $TMP/r1 1024 512"
add_good qcow1_tiny_1536

# Fresh from qemu-img create, never written.
create qcow1_fresh_empty $((16 * MiB))
add_good qcow1_fresh_empty

# Geometries qemu-img does not make, over the whole range QEMU accepts:
# clusters of 512 bytes to 64 KiB, L2 tables of 512 bytes to 64 KiB, each
# independent of the other (an L2 table need not fill its cluster).
good_geom qcow1_c512_l2e64 $((4 * MiB)) 9 6 21
good_geom qcow1_c512_l2e8192 $((8 * MiB)) 9 13 22
good_geom qcow1_c2k_l2e256 $((6 * MiB + 512)) 11 8 23
good_geom qcow1_c16k_l2e1024 $((16 * MiB)) 14 10 24
good_geom qcow1_c64k_l2e64 $((16 * MiB)) 16 6 25
good_geom qcow1_c64k_l2e8192 $((16 * MiB)) 16 13 26

# 512-byte clusters with 32 KiB L2 tables, as qemu-img makes them for an
# image with a backing file; the backing file reference removed before any
# write, so it is a standalone image that QEMU made.
create qcow1_c512_native $((4 * MiB)) -b qcow1_none.qcow -F raw -u
f=$(img qcow1_c512_native)
if [ "$(field "$f" "$H_CBITS")" -ne 9 ] || [ "$(field "$f" "$H_L2BITS")" -ne 12 ]; then
	die "unexpected geometry for an image with a backing file"
fi
setf "$f" "$H_BACKING_OFF" 0
setf "$f" "$H_BACKING_LEN" 0
fill qcow1_c512_native $((4 * MiB)) 512 27
add_good qcow1_c512_native

# Compressed clusters: default geometry, and the extremes of the offset
# and length fields (63 - cluster_bits bits of offset).
create qcow1_compressed_c4k $((8 * MiB + 1536))
fill_compressed qcow1_compressed_c4k $((8 * MiB)) 4096 31
# The last, partial cluster compressed (QEMU pads it to a whole cluster).
qio qcow1_compressed_c4k -c "write -q -c -s $TMP/text $((8 * MiB)) 1536"
add_good qcow1_compressed_c4k
create_geom qcow1_compressed_c512 $((2 * MiB)) 9 7
fill_compressed qcow1_compressed_c512 $((2 * MiB)) 512 32
add_good qcow1_compressed_c512
create_geom qcow1_compressed_c64k $((8 * MiB)) 16 9
fill_compressed qcow1_compressed_c64k $((8 * MiB)) 65536 33
add_good qcow1_compressed_c64k

# Made by qemu-img convert from a raw file.  (qemu-img 7.2 fails, without
# a message, to convert -c to QCOW; compressed clusters come from qemu-io.)
make_raw_source "$TMP/src.raw" $((6 * MiB)) 19
dd if="$TMP/text" of="$TMP/src.raw" bs=64K seek=70 conv=notrunc status=none
src_md5=$(md5_of "$TMP/src.raw")
qemu-img convert -f raw -O qcow "$TMP/src.raw" "$(img qcow1_converted)" ||
	die "convert to qcow"
add_good qcow1_converted
[ "$src_md5" = "$(good_md5 qcow1_converted)" ] ||
	die "qcow1_converted: qemu-img convert round trip mismatch"
rm -f "$TMP/src.raw"

# An L2 table for every 32 KiB (64-entry tables, 512-byte clusters): 256
# tables, more than a 64 KiB metadata cache holds.
create_geom qcow1_many_l2 $((8 * MiB)) 9 6
write_every_32k qcow1_many_l2
add_good qcow1_many_l2

# Virtual size not a multiple of 512: QEMU reads the size rounded down to
# sectors, this reader serves every byte below the size (the rest of the
# last sector reads as zeroes).  Build the image 512-aligned, take QEMU's
# output cut to the odd size, then patch the odd size in (the L1 table
# keeps its length: the size stays within the same L1 span).
ODD=$((3 * MiB + 777))
create qcow1_odd_unaligned $(((ODD + 511) / 512 * 512))
fill qcow1_odd_unaligned $(((ODD + 511) / 512 * 512)) 4096 41
qio qcow1_odd_unaligned -c "write -q -s $TMP/r2 $((ODD / 512 * 512 - 4096)) 4608"
sum=$(raw_md5 "$(img qcow1_odd_unaligned)" 0 $ODD)
setf "$(img qcow1_odd_unaligned)" "$H_SIZE" $ODD
add_good qcow1_odd_unaligned $ODD "$sum"

# ---------------------------------------------------------------------------
# Huge sparse images, by windows (md5 of [offset, offset + length)).
# ---------------------------------------------------------------------------
# 3 TiB + 5 sectors with 64 KiB clusters and L2 tables (512 MiB per L1
# entry): writes across 4 GiB, 2 TiB (2^32 sectors) and the very end.
HUGE=$((3 * TiB + 5 * 512))
create_geom qcow1_huge_3t $HUGE 16 13
qio qcow1_huge_3t \
	-c "write -q -s $TMP/r0 0 $((192 * KiB))" \
	-c "write -q -s $TMP/r1 $((512 * MiB - 96 * KiB)) $((192 * KiB))" \
	-c "write -q -s $TMP/r2 $((4 * GiB - 4 * KiB)) $((260 * KiB))" \
	-c "write -q -P 0x22 $((2 * TiB - 64 * KiB)) $((128 * KiB))" \
	-c "write -q -c -s $TMP/text $((2 * TiB + 2 * MiB)) 65536" \
	-c "write -q -s $TMP/r3 $((3 * TiB - 128 * KiB)) $((128 * KiB + 5 * 512))"
pad qcow1_huge_3t
for w in 0 $((512 * MiB - MiB)) $((4 * GiB - MiB)) $((2 * TiB - MiB)) \
	 $((2 * TiB + 2 * MiB)) $((3 * TiB - MiB)) $((TiB + 7 * 512)); do
	# The size in the header (create_geom's), not qemu-img info's.
	window qcow1_huge_3t $w $MiB $HUGE
done
window qcow1_huge_3t $((HUGE - 64 * KiB)) $((64 * KiB)) $HUGE

# ---------------------------------------------------------------------------
# Hostile images: table loads that must fail, with the reason.  (A header
# cut short, "image is smaller than a QCOW header", needs a file under 48
# bytes, which a loop device cannot hold: that case is left to unit tests.)
# ---------------------------------------------------------------------------
create qcow1_hbase $((4 * MiB))
qio qcow1_hbase -c "write -q -P 0x3c 0 64K"
pad qcow1_hbase
BASE=$(img qcow1_hbase)

hostile qcow1_size_zero "QCOW virtual size too small" 24:8:0
hostile qcow1_size_one "QCOW virtual size too small" 24:8:1
hostile qcow1_cluster_bits_8 "QCOW cluster size out of range" 32:1:8
hostile qcow1_cluster_bits_17 "QCOW cluster size out of range" 32:1:17
hostile qcow1_cluster_bits_255 "QCOW cluster size out of range" 32:1:255
hostile qcow1_l2_bits_5 "QCOW L2 table size out of range" 33:1:5
hostile qcow1_l2_bits_14 "QCOW L2 table size out of range" 33:1:14
hostile qcow1_crypt_method_2 "QCOW unknown encryption method" 36:4:2
hostile qcow1_crypt_method_huge "QCOW unknown encryption method" 36:4:$((0xffffffff))
hostile qcow1_backing_name_too_long "QCOW backing file name too long" \
	8:8:48 16:4:1024
# 32 MiB of L1 table at most: 8 TiB with the default geometry.
hostile qcow1_size_huge "QCOW virtual size too large" 24:8:$((8 * TiB + 512))
hostile qcow1_size_max "QCOW virtual size too large" 24:8:-1
hostile qcow1_size_2p63 "QCOW virtual size too large" 24:8:$((1 << 63))
hostile qcow1_hdr_l1_past_eof "QCOW L1 table offset beyond end of device" \
	40:8:$((TiB))
hostile qcow1_hdr_l1_offset_max "QCOW L1 table offset beyond end of device" \
	40:8:-8
# A virtual size whose L1 table (at 48, 2 MiB per entry) needs one entry
# more than the device holds.
n=$((($(stat -c %s "$BASE") - 48) / 8 + 1))
hostile qcow1_hdr_l1_cut_short "QCOW L1 table offset beyond end of device" \
	24:8:$((n * 2 * MiB))

# Real features, made by qemu-img.
create qcow1_encrypted_aes $((MiB)) --object secret,id=s0,data=imgfmt-test \
	-o encrypt.format=aes,encrypt.key-secret=s0
[ "$(field "$(img qcow1_encrypted_aes)" "$H_CRYPT")" -eq 1 ] ||
	die "AES image not crypt_method 1"
pad qcow1_encrypted_aes
echo "qcow1_encrypted_aes qcow1_encrypted_aes.qcow QCOW encrypted images are not supported yet" >>"$HOSTILE"
(cd "$OUT" && qemu-img create -q -f qcow -b qcow1_hbase.qcow -F qcow \
	qcow1_backing_overlay.qcow) || die "cannot create overlay"
[ "$(field "$(img qcow1_backing_overlay)" "$H_BACKING_OFF")" -ne 0 ] ||
	die "overlay has no backing file"
pad qcow1_backing_overlay
# An overlay is not hostile: selftests/unit/chain-resolve.sh reads chains.

# The base must itself be fine, or the patched copies prove nothing.
add_good qcow1_hbase
# QEMU refuses these headers too.
for n in qcow1_size_zero qcow1_size_one qcow1_cluster_bits_8 \
	 qcow1_cluster_bits_17 qcow1_l2_bits_5 qcow1_l2_bits_14 \
	 qcow1_crypt_method_2 qcow1_size_max qcow1_backing_name_too_long; do
	if qemu-img info -f qcow "$(img $n)" >/dev/null 2>&1; then
		die "QEMU opens the supposedly hostile $n"
	fi
done

# ---------------------------------------------------------------------------
# Runtime corruption: valid headers, bad L1 or L2 entries; a read of the bad
# cluster fails, a read elsewhere works.
# ---------------------------------------------------------------------------
# 4 KiB clusters, 8 MiB: four L1 entries of 2 MiB; data in each, and one
# compressed cluster in each.
M2=$((2 * MiB))
C4=4096
create qcow1_cbase $((8 * MiB))
c=()
for ((i = 0; i < 4; i++)); do
	c+=(-c "write -q -s $TMP/r$i $((i * M2)) $((32 * C4))")
	c+=(-c "write -q -c -s $TMP/text $((i * M2 + 40 * C4)) $C4")
done
qio qcow1_cbase "${c[@]}"
pad qcow1_cbase
CBASE=$(img qcow1_cbase)

# corrupt NAME WHICH VOFF NEWVALUE-EXPR BAD GOOD
#   WHICH: l1 or l2 (the entry for VOFF); NEWVALUE-EXPR is evaluated with E
#   set to the old value.
corrupt()
{
	local name=$1 which=$2 voff=$3 expr=$4 bad=$5 good=$6
	local f pos E new sum

	f=$(img "$name")
	cp "$CBASE" "$f"
	sum=$(sector_md5 "$f" "$good")
	case $which in
	l1) pos=$(l1_entry_pos "$f" "$voff") ;;
	l2) pos=$(l2_entry_pos "$f" "$voff") ;;
	*) die "corrupt: bad WHICH $which" ;;
	esac
	E=$(rd_be "$f" "$pos" 8)
	[ "$E" -ne 0 ] || die "$name: entry at $pos unallocated"
	new=$((expr))
	[ "$new" != "$E" ] || die "$name: patch changes nothing"
	wr_be "$f" "$pos" 8 "$new"
	echo "$name $name.qcow $bad $good $sum" >>"$CORRUPT"
}

COMP=$((1 << 63))
corrupt qcow1_l1_entry_unaligned l1 0 'E + 256' $((5 * C4)) $((M2 + C4))
corrupt qcow1_l1_entry_past_eof l1 $M2 "$TiB" $((M2 + 512)) 512
corrupt qcow1_l1_entry_offset_max l1 $((3 * M2)) -512 $((3 * M2 + 7 * C4)) \
	$((2 * M2 + 3 * C4))
corrupt qcow1_l2_entry_unaligned l2 $((3 * C4)) 'E + 256' $((3 * C4 + 1024)) \
	$((4 * C4))
corrupt qcow1_l2_entry_past_eof l2 $((M2 + 9 * C4)) "$TiB" $((M2 + 9 * C4)) \
	$((M2 + 10 * C4))
corrupt qcow1_l2_entry_max l2 $((2 * M2 + 4 * C4)) $(((1 << 63) - 512)) \
	$((2 * M2 + 4 * C4 + 3584)) $((2 * M2 + 5 * C4))
# Compressed: a stream of length 0, and one past the end of the device
# (length kept: 4095 bytes at 1 TiB).
corrupt qcow1_comp_length_zero l2 $((40 * C4)) 'E & ~(0xfff << 51)' \
	$((40 * C4 + 512)) $((3 * C4))
corrupt qcow1_comp_past_eof l2 $((3 * M2 + 40 * C4)) \
	"$COMP | (4095 << 51) | $TiB" $((3 * M2 + 40 * C4)) $((3 * M2 + C4))

# Sanity: QEMU itself fails the reads that it checks (data clusters off a
# sector boundary, compressed streams that do not inflate).
qemu_rejects_corrupt qcow1_l2_entry_unaligned qcow1_comp_length_zero
rm -f "$CBASE"

check_names "$OUT" qcow1_

count()	# LIST
{
	grep -c '^qcow1_' "$1" || true
}
echo "mkimages-qcow.sh: $(count "$GOOD") good, $(count "$WINDOWS") windows," \
	"$(count "$HOSTILE") hostile, $(count "$CORRUPT") corrupt QCOW images in $OUT"
