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

die()
{
	echo "mkimages-qcow.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: mkimages-qcow.sh OUTDIR"

for tool in qemu-img qemu-io md5sum od dd gzip seq head tr stat truncate \
	    grep awk sed; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "required tool '$tool' not found (qemu-utils, coreutils, gzip, gawk/mawk, sed)"
done

OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GOOD=$OUT/good.list
WINDOWS=$OUT/windows.list
HOSTILE=$OUT/hostile.list
CORRUPT=$OUT/corrupt.list

# Only remove what this script makes.
rm -f "$OUT"/qcow1_*.qcow
for l in "$GOOD" "$WINDOWS" "$HOSTILE" "$CORRUPT"; do
	touch "$l"
	sed -i '/^qcow1_/d' "$l"
done
TMP=$(mktemp -d "$OUT/.tmp-qcow1.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

KiB=1024
MiB=$((1024 * KiB))
GiB=$((1024 * MiB))
TiB=$((1024 * GiB))

# Data: four 1 MiB files of incompressible-looking bytes (gzip of a counter
# stream), and text that compresses well, for compressed clusters.
for i in 0 1 2 3; do
	{ seq -f "imgfmt-qcow1-seed-$i-%.0f" 1 600000 | gzip -n -1 |
		head -c $MiB >"$TMP/r$i"; } 2>/dev/null || true
	[ "$(stat -c %s "$TMP/r$i")" -eq $MiB ] || die "short random file r$i"
done
{ seq -f "qcow1 compressible line %.0f" 1 100000 | head -c $MiB >"$TMP/text"; } \
	2>/dev/null || true
[ "$(stat -c %s "$TMP/text")" -eq $MiB ] || die "short text file"
ZERO512=$(head -c 512 /dev/zero | md5sum | cut -d' ' -f1)

# ---------------------------------------------------------------------------
# Big-endian field access with od and dd only.
# ---------------------------------------------------------------------------
rd_be()	# FILE OFFSET NBYTES -> value (64-bit, may print negative)
{
	local h

	h=$(od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -d ' \n')
	[ ${#h} -eq $(($3 * 2)) ] || die "short read at $2 in $1"
	echo $((16#$h))
}

wr_be()	# FILE OFFSET NBYTES VALUE
{
	local v=$4 s="" i

	for ((i = $3 - 1; i >= 0; i--)); do
		s+=$(printf '\\%03o' $(((v >> (8 * i)) & 0xff)))
	done
	# shellcheck disable=SC2059 # $s holds only octal escapes
	printf "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
	[ "$(rd_be "$1" "$2" "$3")" = "$(($4 & ($3 == 8 ? -1 : (1 << (8 * $3)) - 1)))" ] ||
		die "patch of $1 at $2 did not stick"
}

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
img()	# NAME -> path
{
	echo "$OUT/$1.qcow"
}

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

qio()	# NAME qemu-io-args...
{
	local f out

	f=$(img "$1")
	shift
	out=$(qemu-io -f qcow "$@" "$f" 2>&1) || die "qemu-io on $f: $out"
	# qemu-io reports failed commands on stdout but still exits 0.
	if echo "$out" | grep -qiE 'error|failed|invalid|cannot'; then
		die "qemu-io on $f: $out"
	fi
}

RNG=1
rnd()	# sets R to a 23-bit pseudo-random number
{
	RNG=$(((RNG * 1103515245 + 12345) & 0x7fffffff))
	R=$((RNG >> 8))
}

#
# Scatter data over an image of virtual size V and cluster size C: a long
# sequential run (contiguous clusters, so mappings merge), pieces at random
# sector offsets in random order, zero writes (QCOW has no zero clusters:
# QEMU writes zeroes), and the first and the last sector.
#
fill()	# NAME V C SEED
{
	local name=$1 V=$2 C=$3 seed=$4 n i len off maxlen sectors long
	local -a c=()

	RNG=$seed
	sectors=$((V / 512))
	n=$((V / (8 * C)))
	[ $n -ge 2 ] || n=2
	[ $n -le 16 ] || n=16
	maxlen=$((3 * C))
	[ $maxlen -le $((192 * KiB)) ] || maxlen=$((192 * KiB))
	[ $maxlen -ge $((2 * KiB)) ] || maxlen=$((2 * KiB))
	long=$((V / 8))
	[ $long -le $((512 * KiB)) ] || long=$((512 * KiB))

	c+=(-c "write -q -s $TMP/r$((seed % 4)) $((C + 1024)) $long")
	for ((i = 1; i <= n; i++)); do
		rnd
		len=$(((R % (maxlen / 512) + 1) * 512))
		rnd
		off=$(((R % (sectors - len / 512)) * 512))
		case $((i % 4)) in
		0 | 1)
			c+=(-c "write -q -s $TMP/r$(((seed + i) % 4)) $off $len") ;;
		2)
			c+=(-c "write -q -P $(((seed * 7 + i * 37) % 254 + 1)) $off $len") ;;
		3)
			c+=(-c "write -q -z $off $len") ;;
		esac
	done
	c+=(-c "write -q -P $((seed % 250 + 3)) 0 512")
	c+=(-c "write -q -s $TMP/r$(((seed + 3) % 4)) $((V / 512 * 512 - 512)) 512")
	qio "$name" "${c[@]}"
}

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

raw_md5()	# FILE [BYTES] -> md5 of qemu-img convert output (first BYTES)
{
	local raw=$TMP/convert.raw sum

	rm -f "$raw"
	qemu-img convert -f qcow -O raw "$1" "$raw" || die "convert $1 failed"
	if [ -n "${2:-}" ]; then
		sum=$(head -c "$2" "$raw" | md5sum | cut -d' ' -f1)
	else
		sum=$(md5sum <"$raw" | cut -d' ' -f1)
	fi
	rm -f "$raw"
	echo "$sum"
}

info_field()	# FILE JSON-KEY
{
	qemu-img info -f qcow --output=json "$1" |
		awk -v k="\"$2\":" '$1 == k { gsub(/[,"]/, "", $2); print $2; exit }'
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
head -c $((6 * MiB)) /dev/zero >"$TMP/src.raw"
for i in 0 1 2 3; do
	dd if="$TMP/r$i" of="$TMP/src.raw" bs=64K seek=$((i * 19 + 3)) \
		conv=notrunc status=none
done
dd if="$TMP/text" of="$TMP/src.raw" bs=64K seek=70 conv=notrunc status=none
src_md5=$(md5sum <"$TMP/src.raw" | cut -d' ' -f1)
qemu-img convert -f raw -O qcow "$TMP/src.raw" "$(img qcow1_converted)" ||
	die "convert to qcow"
add_good qcow1_converted
[ "$src_md5" = "$(awk '$1 == "qcow1_converted" { print $4 }' "$GOOD")" ] ||
	die "qcow1_converted: qemu-img convert round trip mismatch"
rm -f "$TMP/src.raw"

# An L2 table for every 32 KiB (64-entry tables, 512-byte clusters): 256
# tables, more than a 64 KiB metadata cache holds.
create_geom qcow1_many_l2 $((8 * MiB)) 9 6
c=()
for ((i = 0; i < 256; i++)); do
	c+=(-c "write -q -P $((i % 251 + 1)) $((i * 32 * KiB + (i * 37 % 64) * 512)) $((512 * (1 + i % 3)))")
done
qio qcow1_many_l2 "${c[@]}"
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
sum=$(raw_md5 "$(img qcow1_odd_unaligned)" $ODD)
setf "$(img qcow1_odd_unaligned)" "$H_SIZE" $ODD
add_good qcow1_odd_unaligned $ODD "$sum"

# ---------------------------------------------------------------------------
# Huge sparse images, by windows (md5 of [offset, offset + length)).
# ---------------------------------------------------------------------------
window()	# NAME OFFSET LENGTH
{
	local f w=$TMP/window.raw vs sum

	f=$(img "$1")
	vs=$(field "$f" "$H_SIZE")
	rm -f "$w"
	# qemu-img dd counts skipped blocks in count=.
	qemu-img dd -f qcow -O raw bs=512 skip=$(($2 / 512)) \
		count=$((($2 + $3) / 512)) if="$f" of="$w" ||
		die "qemu-img dd $1 $2 $3"
	[ "$(stat -c %s "$w")" -eq "$3" ] || die "qemu-img dd gave a short window"
	sum=$(md5sum <"$w" | cut -d' ' -f1)
	rm -f "$w"
	echo "$1 $1.qcow $2 $3 $sum $vs" >>"$WINDOWS"
}

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
	window qcow1_huge_3t $w $MiB
done
window qcow1_huge_3t $((HUGE - 64 * KiB)) $((64 * KiB))

# ---------------------------------------------------------------------------
# Hostile images: table loads that must fail, with the reason.  (A header
# cut short, "image is smaller than a QCOW header", needs a file under 48
# bytes, which a loop device cannot hold: that case is left to unit tests.)
# ---------------------------------------------------------------------------
create qcow1_hbase $((4 * MiB))
qio qcow1_hbase -c "write -q -P 0x3c 0 64K"
pad qcow1_hbase
BASE=$(img qcow1_hbase)

hostile()	# NAME MESSAGE [FIELD-PATCHES: OFFSET:NBYTES:VALUE ...]
{
	local name=$1 msg=$2 p f

	f=$(img "$name")
	shift 2
	cp "$BASE" "$f"
	for p in "$@"; do
		IFS=: read -r o n v <<<"$p"
		wr_be "$f" "$o" "$n" "$v"
	done
	echo "$name $name.qcow $msg" >>"$HOSTILE"
}

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
echo "qcow1_backing_overlay qcow1_backing_overlay.qcow QCOW backing files are not supported yet" >>"$HOSTILE"

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
sector_md5()	# FILE OFFSET
{
	local w=$TMP/sector.raw sum

	rm -f "$w"
	qemu-img dd -f qcow -O raw bs=512 skip=$(($2 / 512)) \
		count=$(($2 / 512 + 1)) if="$1" of="$w" || die "dd $1 $2"
	sum=$(md5sum <"$w" | cut -d' ' -f1)
	rm -f "$w"
	[ "$sum" != "$ZERO512" ] || die "good sector at $2 of $1 holds zeroes"
	echo "$sum"
}

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
for n in qcow1_l2_entry_unaligned qcow1_comp_length_zero; do
	bad=$(awk -v n=$n '$1 == n { print $3 }' "$CORRUPT")
	out=$(qemu-io -r -f qcow -c "read -q $bad 512" "$(img $n)" 2>&1) || true
	echo "$out" | grep -qiE 'error|fail' ||
		die "QEMU reads the supposedly corrupt $n without complaint"
done
rm -f "$CBASE"

# Names must be unique C identifiers.
cat "$GOOD" "$HOSTILE" "$CORRUPT" | awk '{ print $1 }' | sort | uniq -d |
	grep . && die "duplicate image names"
cat "$GOOD" "$WINDOWS" "$HOSTILE" "$CORRUPT" | awk '$1 ~ /^qcow1_/ { print $1 }' |
	grep -vE '^[a-z][a-z0-9_]*$' && die "image name is not a C identifier"

count()	# LIST
{
	grep -c '^qcow1_' "$1" || true
}
echo "mkimages-qcow.sh: $(count "$GOOD") good, $(count "$WINDOWS") windows," \
	"$(count "$HOSTILE") hostile, $(count "$CORRUPT") corrupt QCOW images in $OUT"
