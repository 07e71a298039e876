#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the VMDK test images (hosted sparse, streamOptimized, VMFS sparse
# "COWD", seSparse) for the dm-imgfmt selftests, with QEMU's own tools, and
# APPEND their records to the manifests that mkimages.sh describes:
#
#   mkimages-vmdk.sh OUTDIR
#
#   good.list     <name> <file> <virtual_size> <md5> <grain_size> <format>
#   windows.list  <name> <file> <offset> <length> <md5> <virtual_size>
#   hostile.list  <name> <file> <expected error message...>
#   corrupt.list  <name> <file> <bad_offset> <good_offset> <good_md5>
#
# Every file is one extent file, as the kernel sees it (a descriptor joining
# several extents is split into table segments by userspace).  QEMU is the
# oracle: every checksum comes from `qemu-img convert -O raw` or `qemu-img
# dd`, never from code of this project; images that QEMU cannot make
# (COWD, a stream with its header in the footer) are written here byte by
# byte and still checked by reading them back with QEMU.  Names start with
# vmdk_, files are OUTDIR/vmdk_*.vmdk; running again replaces them (and
# appends their records again: run it on a fresh manifest set, as
# mkimages.sh does).

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"
IMG_FMT=vmdk
IMG_EXT=vmdk
FIELD_WRITER=wr_le

[ $# -eq 1 ] || die "usage: mkimages-vmdk.sh OUTDIR"

need_tools "qemu-utils, coreutils, gzip, gawk/mawk" qemu-img qemu-io md5sum \
	od dd gzip seq head tr stat truncate grep awk cmp
need_corpus

setup_out "$1"
rm -f "$OUT"/vmdk_*.vmdk
make_tmp vmdk
touch "$GOOD" "$WINDOWS" "$HOSTILE" "$CORRUPT"

# Incompressible-looking data, deterministic (as in mkimages.sh).
make_random_files imgfmt-vmdk-seed 4

# ---------------------------------------------------------------------------
# Little-endian fields with od and dd.
# ---------------------------------------------------------------------------
rd_le()	# FILE OFFSET NBYTES -> value (64-bit, may print negative)
{
	local h r="" i

	h=$(od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -d ' \n')
	[ ${#h} -eq $(($3 * 2)) ] || die "short read at $2 in $1"
	for ((i = $3 - 1; i >= 0; i--)); do
		r+=${h:$((2 * i)):2}
	done
	echo $((16#$r))
}

wr_le()	# FILE OFFSET NBYTES VALUE
{
	local v=$4 s="" i

	for ((i = 0; i < $3; i++)); do
		s+=$(printf '\\0%03o' $(((v >> (8 * i)) & 0xff)))
	done
	printf '%b' "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
	[ "$(rd_le "$1" "$2" "$3")" = "$(($4 & ($3 == 8 ? -1 : (1 << (8 * $3)) - 1)))" ] ||
		die "patch of $1 at $2 did not stick"
}

# Hosted sparse header fields (byte offsets in sector 0).
H_CAPACITY=12
H_GRAIN=20
H_DESC_OFF=28
H_GTES=44
H_GD=56
H_NL_TEST=73
H_COMPRESS=77

# Device offset of the grain table entry for virtual offset VOFF.
gte_pos()	# FILE VOFF
{
	local f=$1 grain gtes gd gt

	grain=$(($(rd_le "$f" $H_GRAIN 8) * 512))
	gtes=$(rd_le "$f" $H_GTES 4)
	gd=$(($(rd_le "$f" $H_GD 8) * 512))
	gt=$(($(rd_le "$f" $((gd + 4 * ($2 / grain / gtes))) 4) * 512))
	[ "$gt" -ne 0 ] || die "no grain table for $2 in $f"
	echo $((gt + 4 * ($2 / grain % gtes)))
}

gd_entry_pos()	# FILE VOFF
{
	local f=$1 grain gtes

	grain=$(($(rd_le "$f" $H_GRAIN 8) * 512))
	gtes=$(rd_le "$f" $H_GTES 4)
	echo $(($(rd_le "$f" $H_GD 8) * 512 + 4 * ($2 / grain / gtes)))
}

# Record OUT/NAME.vmdk; QEMU reads SRC (default: the file itself).
add_good()	# NAME GRAIN_BYTES [SRC]
{
	local f=$OUT/$1.vmdk src=${3:-$OUT/$1.vmdk} vs sum fmt=vmdk

	case $1 in *sesparse*) fmt=vmdk-sesparse ;; esac
	vs=$(info_field "$src" virtual-size)
	[ -n "$vs" ] || die "qemu-img info $src failed"
	sum=$(raw_md5 "$src")
	echo "$1 $1.vmdk $vs $sum $2 $fmt" >>"$GOOD"
	[ -f "$f" ] || die "$f missing"
}

# Compare a recorded md5 with the corpus README's.
check_readme()	# NAME CORPUS-PATH
{
	local ref got

	ref=$(readme_md5 "$2")
	got=$(good_md5 "$1")
	[ -z "$ref" ] || [ "$ref" = "$got" ] ||
		die "corpus $2: md5 $got, README says $ref"
}

# Scatter writes over a hosted sparse image of virtual size V: a long
# sequential run (grains contiguous on the file, so mappings merge), pieces
# out of order, patterns, zero writes over data and holes, first and last
# sector.
fill_vmdk()	# FILE V SEED
{
	local f=$1 V=$2 s=$3 long
	local -a c=()

	long=$((V / 8))
	[ $long -le $((512 * KiB)) ] || long=$((512 * KiB))
	c+=(-c "write -q -s $TMP/r$((s % 4)) $((64 * KiB + 1024)) $long")
	c+=(-c "write -q -P $((s % 200 + 7)) $((V / 2 + 3 * 512)) $((70 * KiB))")
	c+=(-c "write -q -s $TMP/r$(((s + 1) % 4)) $((V / 3 / 512 * 512)) $((5 * 512))")
	c+=(-c "write -q -P $((s % 200 + 31)) $((V / 5 / 512 * 512)) $((130 * KiB))")
	c+=(-c "write -q -z $((64 * KiB + 1024 + long / 2)) $((long / 4 / 512 * 512 + 512))")
	c+=(-c "write -q -P $((s % 250 + 3)) 0 512")
	c+=(-c "write -q -s $TMP/r$(((s + 2) % 4)) $((V - 512)) 512")
	qio "$f" "${c[@]}"
}

mono()	# NAME SIZE SEED [OPTIONS]
{
	local f=$OUT/$1.vmdk

	qemu-img create -q -f vmdk ${4:+-o "$4"} "$f" "$2" ||
		die "qemu-img create $1 ($4) failed"
	fill_vmdk "$f" "$(info_field "$f" virtual-size)" "$3"
	add_good "$1" 65536
}

# ---------------------------------------------------------------------------
# Hosted sparse extents made by qemu-img.
# ---------------------------------------------------------------------------
mono vmdk_mono_8m 8M 1
mono vmdk_mono_compat6 4M 2 "compat6=on"
mono vmdk_mono_hwv4_ide 4M 3 "hwversion=4,adapter_type=ide"
mono vmdk_mono_lsilogic 4M 4 "adapter_type=lsilogic,toolsversion=2147483647"
mono vmdk_mono_buslogic 4M 5 "adapter_type=buslogic"
mono vmdk_mono_legacyesx 4M 6 "adapter_type=legacyESX"
mono vmdk_mono_64m 64M 7
# Size not a multiple of the grain: the last grain is cut by the disk's end.
mono vmdk_mono_odd 5124608 8

# Preallocated: every grain allocated in order, one long run.
qemu-img create -q -f vmdk -o preallocation=full "$OUT/vmdk_mono_prealloc.vmdk" 4M ||
	die "qemu-img create vmdk_mono_prealloc"
fill_vmdk "$OUT/vmdk_mono_prealloc.vmdk" $((4 * MiB)) 9
add_good vmdk_mono_prealloc 65536

# Zeroed-grain GTEs (version 2, flag bit 2): whole-grain zero writes over
# data and over holes become GTE 1.
f=$OUT/vmdk_mono_zeroed_grain.vmdk
qemu-img create -q -f vmdk -o zeroed_grain=on "$f" 8M ||
	die "qemu-img create zeroed_grain"
fill_vmdk "$f" $((8 * MiB)) 10
qio "$f" -c "write -q -s $TMP/r3 $((2 * MiB)) $((256 * KiB))" \
	-c "write -q -z $((2 * MiB + 64 * KiB)) $((128 * KiB))" \
	-c "write -q -z $((6 * MiB)) $((192 * KiB))"
[ "$(rd_le "$f" "$(gte_pos "$f" $((2 * MiB + 64 * KiB)))" 4)" -eq 1 ] ||
	die "qemu-io did not write a zeroed-grain GTE"
add_good vmdk_mono_zeroed_grain 65536

# twoGbMaxExtentSparse: the extent file alone (one extent: the whole disk).
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse \
	"$TMP/twogb.vmdk" 16M || die "qemu-img create twoGbMaxExtentSparse"
fill_vmdk "$TMP/twogb.vmdk" $((16 * MiB)) 11
cp "$TMP/twogb-s001.vmdk" "$OUT/vmdk_twogb_s001.vmdk"
add_good vmdk_twogb_s001 65536 "$TMP/twogb.vmdk"

# ---------------------------------------------------------------------------
# streamOptimized (compressed grains, grain markers) by qemu-img convert.
# ---------------------------------------------------------------------------
stream()	# NAME SOURCE-NAME
{
	qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized \
		"$OUT/$2.vmdk" "$OUT/$1.vmdk" || die "convert $1"
	add_good "$1" 65536
	[ "$(good_md5 "$1")" = "$(good_md5 "$2")" ] ||
		die "streamOptimized round trip of $2 differs"
}
stream vmdk_stream_8m vmdk_mono_8m
stream vmdk_stream_64m vmdk_mono_64m
stream vmdk_stream_zeroed vmdk_mono_zeroed_grain
# The last grain's stream holds only what the disk has left.
stream vmdk_stream_odd vmdk_mono_odd

# The same stream with its header in the footer (gdOffset = GD_AT_END in
# sector 0): footer marker, footer header, end-of-stream marker, as VMware's
# stream writers lay it out.
f=$OUT/vmdk_stream_footer.vmdk
cp "$OUT/vmdk_stream_8m.vmdk" "$f"
[ $(($(stat -c %s "$f") % 512)) -eq 0 ] || die "stream not sector aligned"
head -c 512 /dev/zero >"$TMP/marker"
wr_le "$TMP/marker" 0 8 1
wr_le "$TMP/marker" 12 4 3
{ cat "$TMP/marker"; head -c 512 "$OUT/vmdk_stream_8m.vmdk"; head -c 512 /dev/zero; } >>"$f"
wr_le "$f" $H_GD 8 -1
add_good vmdk_stream_footer 65536
[ "$(good_md5 vmdk_stream_footer)" = "$(good_md5 vmdk_stream_8m)" ] ||
	die "QEMU reads the footer stream differently"

# ---------------------------------------------------------------------------
# VMFS sparse ("COWD"), written here: header, a text sector with the CIDs
# QEMU insists on finding at byte 512, the grain directory, grain tables of
# 4096 entries, grains.  Grain tables and grains out of virtual order.
# ---------------------------------------------------------------------------
cowd()	# NAME CAPACITY_SECTORS GRAIN_SECTORS GD_ENTRIES GT:GRAIN:SRC...
{
	local name=$1 f=$OUT/$1.vmdk cap=$2 gs=$3 gde=$4 next gdoff=24 spec gt g src
	local -A gtsec=()

	shift 4
	head -c $((24 * 512)) /dev/zero >"$f"
	printf 'COWD' | dd of="$f" conv=notrunc status=none
	wr_le "$f" 4 4 1
	wr_le "$f" 8 4 3
	wr_le "$f" 12 4 "$cap"
	wr_le "$f" 16 4 "$gs"
	wr_le "$f" 20 4 $gdoff
	wr_le "$f" 24 4 "$gde"
	printf 'CID=1234abcd\nparentCID=ffffffff\n' |
		dd of="$f" bs=512 seek=1 conv=notrunc status=none
	next=$((gdoff + (gde * 4 + 511) / 512))
	for spec in "$@"; do
		IFS=: read -r gt g src <<<"$spec"
		if [ -z "${gtsec[$gt]:-}" ]; then
			gtsec[$gt]=$next
			next=$((next + 32))
			truncate -s $((next * 512)) "$f"
			wr_le "$f" $((gdoff * 512 + 4 * gt)) 4 "${gtsec[$gt]}"
		fi
		wr_le "$f" $((gtsec[$gt] * 512 + 4 * g)) 4 $next
		case $src in
		r*) dd if="$TMP/${src%@*}" bs=512 skip="${src#*@}" count="$gs" \
			of="$f" seek=$next conv=notrunc status=none ;;
		*) head -c $((gs * 512)) /dev/zero | tr '\0' "\\$(printf '%03o' "$src")" |
			dd of="$f" bs=512 seek=$next conv=notrunc status=none ;;
		esac
		next=$((next + gs))
	done
	truncate -s $((next * 512)) "$f"
	wr_le "$f" 28 4 $next
	add_good "$name" $((gs * 512))
}
# 512-byte grains: a table covers 2 MiB; 8 MiB + 3 sectors need 5 tables.
cowd vmdk_cowd_g512 $((16 * 1024 + 3)) 1 5 \
	0:0:r0@0 0:1:r0@1 0:2:r0@2 0:7:65 1:4095:r1@9 3:17:r2@3 3:16:r2@2 \
	0:3:r0@3 4:2:66 4:1:r3@0 1:0:67
# 8 KiB grains: a table covers 32 MiB.
cowd vmdk_cowd_g8k $((80 * 2048)) 16 3 \
	2:100:r1@64 0:0:r0@0 0:1:r0@16 1:4095:r2@32 2:101:r1@80 0:2:r0@32

# ---------------------------------------------------------------------------
# Images made elsewhere (see the corpus README).
# ---------------------------------------------------------------------------
corpus()	# NAME CORPUS-PATH GRAIN_BYTES [QEMU-SOURCE README-ROW]
{
	cp "$CORPUS/$2" "$OUT/$1.vmdk"
	chmod 644 "$OUT/$1.vmdk"
	add_good "$1" "$3" "${4:-$OUT/$1.vmdk}"
	check_readme "$1" "${5:-$2}"
}
corpus vmdk_corpus_mono vmware/monolithicSparse.vmdk 65536
corpus vmdk_corpus_stream vmware/streamOptimized.vmdk 65536
corpus vmdk_corpus_stream_markers vmware/streamOptimizedWithMarkers.vmdk 65536
corpus vmdk_corpus_ext2 qemu-made-elsewhere/ext2.vmdk 65536
# The extent alone; QEMU reads it through its descriptor.
corpus vmdk_corpus_twogb_s001 vmware/twoGbMaxExtentSparse-s001.vmdk 65536 \
	"$CORPUS/vmware/twoGbMaxExtentSparse.vmdk" vmware/twoGbMaxExtentSparse.vmdk
# seSparse: QEMU only opens it through a descriptor.
gzip -dc "$CORPUS/sesparse/sesparse.vmdk.gz" >"$OUT/vmdk_sesparse.vmdk"
gzip -dc "$CORPUS/sesparse/sesparse.vmdk.gz" >"$TMP/sesparse.vmdk"
cp "$CORPUS/sesparse/sesparse-desc.vmdk" "$TMP/"
add_good vmdk_sesparse 4096 "$TMP/sesparse-desc.vmdk"

# ---------------------------------------------------------------------------
# A huge sparse disk, checked by windows: grain table boundaries (32 MiB),
# 2^32 bytes, the end; also as a stream.
# ---------------------------------------------------------------------------
H=$((64 * GiB))
qemu-img create -q -f vmdk "$OUT/vmdk_huge_64g.vmdk" $H || die "create huge"
qio "$OUT/vmdk_huge_64g.vmdk" \
	-c "write -q -s $TMP/r0 0 $((192 * KiB))" \
	-c "write -q -P 0x11 $((32 * MiB - 512)) 1024" \
	-c "write -q -s $TMP/r1 $((4 * GiB - 4 * KiB)) $((260 * KiB))" \
	-c "write -q -P 0x22 $((40 * GiB + 12345 * 512)) $((100 * KiB))" \
	-c "write -q -s $TMP/r2 $((H - 2 * MiB)) $((MiB + 512))" \
	-c "write -q -P 0x33 $((H - 64 * KiB)) $((64 * KiB))"
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized \
	"$OUT/vmdk_huge_64g.vmdk" "$OUT/vmdk_huge_64g_stream.vmdk" ||
	die "convert huge stream"
for n in vmdk_huge_64g vmdk_huge_64g_stream; do
	for w in 0 $((32 * MiB - MiB)) $((4 * GiB - MiB)) $((40 * GiB)) \
		 $((H - 2 * MiB)) $((H - MiB)) $((GiB + 7 * 512)); do
		window $n $w $MiB
	done
done

# ---------------------------------------------------------------------------
# Hostile headers: table loads that must fail, with the reason.
# ---------------------------------------------------------------------------
BASE=$TMP/base.vmdk
qemu-img create -q -f vmdk "$BASE" 1M || die "create base"
qio "$BASE" -c "write -q -P 0x5a 0 64k"
[ "$(rd_le "$BASE" $H_GD 8)" -ne 0 ] || die "base has no grain directory"

hostile vmdk_grain_zero "VMDK invalid granularity" $H_GRAIN:8:0
hostile vmdk_grain_not_pow2 "VMDK invalid granularity" $H_GRAIN:8:96
hostile vmdk_grain_2g "VMDK invalid granularity" $H_GRAIN:8:$((0x400000))
hostile vmdk_gtes_513 "VMDK grain table too large (more than 512 entries)" \
	$H_GTES:4:513
hostile vmdk_gtes_huge "VMDK grain table too large (more than 512 entries)" \
	$H_GTES:4:$((0xffffffff))
hostile vmdk_gtes_zero "VMDK grain table size is zero" $H_GTES:4:0
hostile vmdk_capacity_huge "VMDK virtual size too large" \
	$H_CAPACITY:8:$((1 << 60))
hostile vmdk_gd_huge "VMDK grain directory too large" \
	$H_CAPACITY:8:$((1 << 40)) $H_GRAIN:8:1
# 16M directory entries: within QEMU's bound, over our 32 MiB in memory.
hostile vmdk_gd_over_32m "VMDK grain directory larger than 32 MiB" \
	$H_CAPACITY:8:$((1 << 40))
hostile vmdk_gd_past_eof \
	"VMDK file truncated: grain directory beyond end of file" \
	$H_CAPACITY:8:$((1 << 36))
hostile vmdk_gd_offset_huge \
	"VMDK file truncated: grain directory beyond end of file" \
	$H_GD:8:$((1 << 40))
hostile vmdk_gd_offset_zero "VMDK grain directory offset invalid" $H_GD:8:0
hostile vmdk_version_4 "VMDK version not supported" 4:4:4
hostile vmdk_compress_algo_2 "VMDK unknown compression algorithm" \
	$H_COMPRESS:2:2
# "\r\n" turned into "\n\n" by a text-mode transfer.
hostile vmdk_newline_damaged \
	"VMDK newline test bytes damaged (file transferred as text?)" \
	$((H_NL_TEST + 2)):1:10
hostile vmdk_footer_missing "VMDK invalid footer" $H_GD:8:-1
hostile vmdk_desc_past_eof "VMDK embedded descriptor beyond end of file" \
	$H_DESC_OFF:8:$((1 << 40))
# (Capacity 0 with an embedded descriptor is not here: the helper reads such
# a file as a descriptor naming other extents, as QEMU does; the kernel
# refuses it with "VMDK extent of capacity 0 naming other extents is not
# supported".)
head -c 300 "$BASE" >"$TMP/short.vmdk"
hostile_from "$TMP/short.vmdk" vmdk_short \
	"image is smaller than a VMDK header"
head -c $((16 * KiB)) "$BASE" >"$TMP/trunc.vmdk"
hostile_from "$TMP/trunc.vmdk" vmdk_truncated \
	"VMDK file truncated: shorter than the metadata overhead"
hostile_from "$OUT/vmdk_stream_8m.vmdk" vmdk_stream_grain_4m \
	"VMDK compressed grains larger than 2 MiB are not supported" \
	$H_GRAIN:8:8192

# Delta disks: a parent named in the embedded descriptor.
qemu-img create -q -f vmdk -b "$BASE" -F vmdk "$OUT/vmdk_delta.vmdk" ||
	die "create delta"
grep -aq parentFileNameHint "$OUT/vmdk_delta.vmdk" || die "delta names no parent"
# A delta is not hostile: selftests/unit/chain-resolve.sh reads chains.
o=$(grep -abo 'parentCID=ffffffff' "$BASE" | head -n 1 | cut -d: -f1)
[ -n "$o" ] || die "no parentCID in the base descriptor"
cp "$BASE" "$TMP/cid.vmdk"
printf 'parentCID=1234abcd' | dd of="$TMP/cid.vmdk" bs=1 seek="$o" \
	conv=notrunc status=none
hostile_from "$TMP/cid.vmdk" vmdk_parent_cid \
	"VMDK delta disk without a parentFileNameHint"

# COWD.
hostile_from "$OUT/vmdk_cowd_g512.vmdk" vmdk_cowd_gd_small \
	"VMDK grain directory too small for the capacity" 24:4:4
hostile_from "$OUT/vmdk_cowd_g512.vmdk" vmdk_cowd_grain_3 \
	"VMDK invalid granularity" 16:4:3

# seSparse: the headers and the grain directory of a truncated copy.
SE=$TMP/se-base.vmdk
head -c $((3 * MiB)) "$TMP/sesparse.vmdk" >"$SE"
hostile_from "$SE" vmdk_sesparse_version "VMDK seSparse version not supported" \
	8:8:$((0x200000002))
hostile_from "$SE" vmdk_sesparse_grain_8k \
	"VMDK seSparse grain or grain table size not supported" 24:8:16
hostile_from "$SE" vmdk_sesparse_flags \
	"VMDK seSparse header has unknown flags or fields set" 40:8:1
hostile_from "$SE" vmdk_sesparse_volatile_magic \
	"VMDK seSparse volatile header invalid" 512:8:0
hostile_from "$SE" vmdk_sesparse_dirty \
	"VMDK seSparse journal needs replaying (image is dirty)" 536:8:1
hostile_from "$SE" vmdk_sesparse_capacity_huge "VMDK virtual size too large" \
	16:8:$((1 << 60))
hostile_from "$SE" vmdk_sesparse_gd_small \
	"VMDK grain directory too small for the capacity" 136:8:0
# 8M directory entries of 8 bytes, declared and needed: over 32 MiB.
hostile_from "$SE" vmdk_sesparse_gd_over_32m \
	"VMDK grain directory larger than 32 MiB" \
	16:8:$((1 << 38)) 136:8:$((1 << 17))
hostile_from "$SE" vmdk_sesparse_gd_huge "VMDK grain directory too large" \
	136:8:$((1 << 40))
hostile_from "$SE" vmdk_sesparse_gd_past_eof \
	"VMDK file truncated: grain directory beyond end of file" \
	128:8:$((1 << 40))

# ---------------------------------------------------------------------------
# Runtime corruption: a valid header, one bad entry; reads that touch it
# fail with EIO, the rest of the disk reads.
# ---------------------------------------------------------------------------
corrupt()	# NAME SOURCE BAD GOOD OFFSET:NBYTES:VALUE...
{
	local name=$1 src=$2 bad=$3 good=$4 f=$OUT/$1.vmdk qsrc sum

	qsrc=$src
	[ "${src##*/}" != vmdk_sesparse.vmdk ] || qsrc=$TMP/sesparse-desc.vmdk
	sum=$(raw_md5 "$qsrc" "$good" 512)
	cp "$src" "$f"
	patch_fields "$f" "${@:5}"
	echo "$name $name.vmdk $bad $good $sum" >>"$CORRUPT"
}

M64=$OUT/vmdk_mono_64m.vmdk
# fill() wrote a pattern at V / 2 + 3 * 512, in the second grain table.
GOOD64=$((32 * MiB + 3 * 512))
corrupt vmdk_gt_past_eof "$M64" 0 $GOOD64 \
	"$(gd_entry_pos "$M64" 0)":4:$((0x7fffffff))
corrupt vmdk_grain_past_eof "$M64" $((64 * KiB + 1024)) $GOOD64 \
	"$(gte_pos "$M64" $((64 * KiB)))":4:$((0x7ffffff0))
S8=$OUT/vmdk_stream_8m.vmdk
p=$(rd_le "$S8" "$(gte_pos "$S8" $((64 * KiB)))" 4)
[ "$p" -gt 1 ] || die "stream grain 1 not allocated"
corrupt vmdk_stream_marker_size "$S8" $((64 * KiB)) 0 $((p * 512 + 8)):4:0

# A zlib stream of BYTES zeroes (header, gzip's raw deflate, Adler-32).
zlib_zeros()	# BYTES > stream
{
	local n=$1 b
	b=$((n % 65521))
	printf '\170\234'
	head -c "$n" /dev/zero | gzip -n -c | tail -c +11 | head -c -8
	printf "\\$(printf %03o $((b >> 8)))\\$(printf %03o $((b & 255)))\\000\\001"
}
# Grain 1's stream inflates to two grains: QEMU fails the read (output
# larger than the grain is corruption), and so must we.
zlib_zeros $((128 * KiB)) >"$TMP/zeros-128k.zlib"
corrupt vmdk_stream_grain_too_big "$S8" $((64 * KiB)) 0 \
	$((p * 512 + 8)):4:"$(stat -c %s "$TMP/zeros-128k.zlib")"
dd if="$TMP/zeros-128k.zlib" of="$OUT/vmdk_stream_grain_too_big.vmdk" \
	bs=1 seek=$((p * 512 + 12)) conv=notrunc status=none
qemu_rejects_corrupt vmdk_stream_grain_too_big
SEF=$OUT/vmdk_sesparse.vmdk
gd=$(($(rd_le "$SEF" 128 8) * 512))
gt=$(($(rd_le "$SEF" 144 8) * 512 + ($(rd_le "$SEF" "$gd" 8) & 0xffffffff) * 32768))
corrupt vmdk_sesparse_gte_type "$SEF" $((8 * KiB)) $((12 * KiB)) \
	$((gt + 2 * 8)):8:$((0x4 << 60))

echo "mkimages-vmdk.sh: $(grep -c '^vmdk_' "$GOOD") good," \
	"$(awk '/^vmdk_/ { print $1 }' "$WINDOWS" | sort -u | wc -l) windows," \
	"$(grep -c '^vmdk_' "$HOSTILE") hostile, $(grep -c '^vmdk_' "$CORRUPT") corrupt"
