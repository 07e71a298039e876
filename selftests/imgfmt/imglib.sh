# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Helpers shared by the image builders of the dm-imgfmt selftests
# (mkimages.sh, mkimages-qcow.sh, mkimages-vmdk.sh, mkimages-vmdk-desc.sh).
# Sourced, not executed; the scripts run with set -euo pipefail.
#
# A script sets what its format needs before it uses the helpers:
#   IMG_FMT	the format as qemu-img and qemu-io name it (-f)
#   IMG_EXT	the extension of its image files: img NAME is OUT/NAME.IMG_EXT
#   BASE	the image that hostile NAME ... copies
#   FIELD_WRITER	how hostile patches fields: wr_be (the default) or a
#		writer of the script's own with the same arguments
#   FILL_CYCLE, FILL_EXTRA	see fill()
# and calls setup_out OUTDIR, then make_tmp TAG before anything that needs
# TMP.  Manifest records are those described at the top of mkimages.sh.

PROG=${0##*/}

# shellcheck disable=SC2034 # not every script uses every unit
KiB=1024 MiB=$((1 << 20)) GiB=$((1 << 30)) TiB=$((1 << 40))
ZERO512=bf619eac0cdf3f68d496ea9344137e8b	# md5 of 512 zero bytes
FIELD_WRITER=wr_be
FILL_CYCLE=5
FILL_EXTRA=
IMGLIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die()
{
	echo "$PROG: $*" >&2
	exit 1
}

need_tools()	# PACKAGES-HINT TOOL...
{
	local hint=$1 tool

	shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 ||
			die "required tool '$tool' not found ($hint)"
	done
}

# The corpus of images made elsewhere: next to the repository (as in
# /work/main and /work/shared), else /work/shared/corpus.  Sets CORPUS, to
# "" (and fails) when neither holds SUBDIR.
CORPUS_PLACES=("$(cd "$IMGLIB_DIR/../.." && pwd)/../shared/corpus"
	       /work/shared/corpus)
find_corpus()	# [SUBDIR]
{
	local c

	CORPUS=
	for c in "${CORPUS_PLACES[@]}"; do
		if [ -d "$c/${1:-.}" ]; then
			CORPUS=$(cd "$c" && pwd)
			return 0
		fi
	done
	return 1
}

need_corpus()	# find_corpus, or die
{
	find_corpus . || die "corpus not found at ${CORPUS_PLACES[*]}"
}

# OUT (absolute, created) and the manifests' paths in it.
setup_out()	# OUTDIR
{
	mkdir -p "$1"
	OUT=$(cd "$1" && pwd)
	GOOD=$OUT/good.list
	WINDOWS=$OUT/windows.list
	HOSTILE=$OUT/hostile.list
	CORRUPT=$OUT/corrupt.list
}

# TMP: a scratch directory in OUT, removed when the script exits.
make_tmp()	# TAG
{
	TMP=$(mktemp -d "$OUT/.tmp-$1.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
}

md5_of()	# [FILE] -> md5 of FILE, or of standard input
{
	if [ $# -ge 1 ]; then
		md5sum <"$1"
	else
		md5sum
	fi | cut -d' ' -f1
}

# ---------------------------------------------------------------------------
# Data sources.
# ---------------------------------------------------------------------------

# TMP/r0 ... TMP/r<COUNT-1>: 1 MiB each of incompressible-looking bytes,
# each from its own seed (gzip of a counter stream is deterministic and has
# no long repeats, so a sector read from the wrong place never matches).
# Sets NRAND to COUNT.
make_random_files()	# SEED-PREFIX COUNT
{
	local i

	NRAND=$2
	for ((i = 0; i < NRAND; i++)); do
		# head closes the pipe early; the writers' SIGPIPE is expected.
		{ seq -f "$1-$i-%.0f" 1 600000 | gzip -n -1 |
			head -c $MiB >"$TMP/r$i"; } 2>/dev/null || true
		[ "$(stat -c %s "$TMP/r$i")" -eq $MiB ] || die "short random file r$i"
	done
}

# BYTES of numbered text lines, which compress well.
make_text()	# FILE LINE-PREFIX BYTES
{
	{ seq -f "$2 %.0f" 1 100000 | head -c "$3" >"$1"; } 2>/dev/null || true
	[ "$(stat -c %s "$1")" -eq "$3" ] || die "short text file"
}

# A raw disk of BYTES for qemu-img convert: zeroes, with TMP/r0 ... TMP/r3
# at the 64 KiB blocks 3, STRIDE + 3, 2 * STRIDE + 3 and 3 * STRIDE + 3.
make_raw_source()	# FILE BYTES STRIDE
{
	local i

	head -c "$2" /dev/zero >"$1"
	for i in 0 1 2 3; do
		dd if="$TMP/r$i" of="$1" bs=64K seek=$((i * $3 + 3)) \
			conv=notrunc status=none
	done
}

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

# Write each OFFSET:NBYTES:VALUE into FILE with FIELD_WRITER.
patch_fields()	# FILE OFFSET:NBYTES:VALUE...
{
	local f=$1 p o n v

	shift
	for p in "$@"; do
		IFS=: read -r o n v <<<"$p"
		"$FIELD_WRITER" "$f" "$o" "$n" "$v"
	done
}

# ---------------------------------------------------------------------------
# QEMU as the oracle.
# ---------------------------------------------------------------------------
img()	# NAME -> path of the image file
{
	echo "$OUT/$1.$IMG_EXT"
}

qemu_io()	# FORMAT FILE qemu-io-args...
{
	local fmt=$1 f=$2 out

	shift 2
	out=$(qemu-io -f "$fmt" "$@" "$f" 2>&1) || die "qemu-io on $f: $out"
	# qemu-io reports failed commands on stdout but still exits 0.
	if echo "$out" | grep -qiE 'error|failed|invalid|cannot'; then
		die "qemu-io on $f: $out"
	fi
}

qio()	# NAME|FILE qemu-io-args...: a FILE has a slash, a NAME is img NAME
{
	local f=$1

	shift
	case $f in
	*/*) ;;
	*) f=$(img "$f") ;;
	esac
	qemu_io "$IMG_FMT" "$f" "$@"
}

# md5 of the raw virtual disk QEMU reads from FILE, or of BYTES bytes of it
# at OFFSET.
raw_md5()	# FILE [OFFSET BYTES]
{
	local raw=$TMP/convert.raw sum

	rm -f "$raw"
	qemu-img convert -f "$IMG_FMT" -O raw "$1" "$raw" || die "convert $1 failed"
	if [ $# -ge 3 ]; then
		sum=$(dd if="$raw" bs=64K iflag=skip_bytes,count_bytes skip="$2" \
			count="$3" status=none | md5_of)
	else
		sum=$(md5_of "$raw")
	fi
	rm -f "$raw"
	echo "$sum"
}

info_field()	# FILE JSON-KEY
{
	qemu-img info -f "$IMG_FMT" --output=json "$1" |
		awk -v k="\"$2\":" '$1 == k { gsub(/[,"]/, "", $2); print $2; exit }'
}

# md5 of the 512 bytes at OFFSET (which must not be all zeroes).
sector_md5()	# FILE OFFSET
{
	local w=$TMP/sector.raw sum

	rm -f "$w"
	qemu-img dd -f "$IMG_FMT" -O raw bs=512 skip=$(($2 / 512)) \
		count=$(($2 / 512 + 1)) if="$1" of="$w" || die "dd $1 $2"
	sum=$(md5_of "$w")
	rm -f "$w"
	[ "$sum" != "$ZERO512" ] || die "good sector at $2 of $1 holds zeroes"
	echo "$sum"
}

# ---------------------------------------------------------------------------
# Pseudo-random scattered data.
# ---------------------------------------------------------------------------
RNG=1
rnd()	# sets R to a 23-bit pseudo-random number
{
	RNG=$(((RNG * 1103515245 + 12345) & 0x7fffffff))
	R=$((RNG >> 8))
}

#
# Scatter data over image NAME of virtual size V and cluster size C: one
# long sequential run (host clusters contiguous, so mappings merge), then
# pieces at random sector offsets in random order (host clusters out of
# virtual order), from the random files, from distinct byte patterns and
# zero writes over data and over holes, and the first and the last sector.
# Most of the disk stays unallocated.
#
# Piece i is random data when i % FILL_CYCLE is 0 or 1, a zero write when
# it is FILL_CYCLE - 1, a pattern otherwise.  FILL_EXTRA, when set, names a
# function called with V, C and the length of the long run after the
# pieces; it may append qemu-io commands (-c CMD) of its own to FILL_CMDS.
#
fill()	# NAME V C SEED
{
	local name=$1 V=$2 C=$3 seed=$4 n i k len off maxlen sectors long

	FILL_CMDS=()
	RNG=$seed
	sectors=$((V / 512))
	# Fewer pieces on big clusters: each piece allocates whole clusters.
	n=$((V / (8 * C)))
	[ $n -ge 2 ] || n=2
	[ $n -le 16 ] || n=16
	maxlen=$((3 * C))
	[ $maxlen -le $((192 * KiB)) ] || maxlen=$((192 * KiB))
	[ $maxlen -ge $((2 * KiB)) ] || maxlen=$((2 * KiB))
	long=$((V / 8))
	[ $long -le $((512 * KiB)) ] || long=$((512 * KiB))

	FILL_CMDS+=(-c "write -q -s $TMP/r$((seed % NRAND)) $((C + 1024)) $long")
	for ((i = 1; i <= n; i++)); do
		rnd
		len=$(((R % (maxlen / 512) + 1) * 512))
		rnd
		off=$(((R % (sectors - len / 512)) * 512))
		k=$((i % FILL_CYCLE))
		if [ $k -le 1 ]; then
			FILL_CMDS+=(-c "write -q -s $TMP/r$(((seed + i) % NRAND)) $off $len")
		elif [ $k -eq $((FILL_CYCLE - 1)) ]; then
			FILL_CMDS+=(-c "write -q -z $off $len")
		else
			FILL_CMDS+=(-c "write -q -P $(((seed * 7 + i * 37) % 254 + 1)) $off $len")
		fi
	done
	[ -z "$FILL_EXTRA" ] || "$FILL_EXTRA" "$V" "$C" "$long"
	FILL_CMDS+=(-c "write -q -P $((seed % 250 + 3)) 0 512")
	FILL_CMDS+=(-c "write -q -s $TMP/r$(((seed + 3) % NRAND)) $((V / 512 * 512 - 512)) 512")
	qio "$name" "${FILL_CMDS[@]}"
}

# 256 small writes, one in each 32 KiB, each with its own pattern, at
# varying sector offsets and of varying lengths: with small clusters, a
# table for each, more tables than a 64 KiB metadata cache holds.
write_every_32k()	# NAME|FILE
{
	local i
	local -a c=()

	for ((i = 0; i < 256; i++)); do
		c+=(-c "write -q -P $((i % 251 + 1)) $((i * 32 * KiB + (i * 37 % 64) * 512)) $((512 * (1 + i % 3)))")
	done
	qio "$1" "${c[@]}"
}

# ---------------------------------------------------------------------------
# Manifest records.  Files are recorded relative to OUT.
# ---------------------------------------------------------------------------

# The md5 good.list records for NAME.
good_md5()	# NAME
{
	awk -v n="$1" '$1 == n { print $4 }' "$GOOD"
}

# The md5 the corpus README gives for CORPUS-PATH (empty if none).
readme_md5()	# CORPUS-PATH
{
	{ grep -F "| $1 " "$CORPUS/README.md" || true; } |
		{ grep -oE '[0-9a-f]{32}' || true; } | head -n 1
}

# md5 of [OFFSET, +LENGTH) of FILE's virtual disk, by qemu-img dd; VSIZE
# defaults to what qemu-img info says.
add_window()	# NAME FILE OFFSET LENGTH [VSIZE]
{
	local w=$TMP/window.raw vs=${5:-} sum

	[ -n "$vs" ] || vs=$(info_field "$2" virtual-size)
	rm -f "$w"
	# qemu-img dd counts skipped blocks in count=.
	qemu-img dd -f "$IMG_FMT" -O raw bs=512 skip=$(($3 / 512)) \
		count=$((($3 + $4) / 512)) if="$2" of="$w" ||
		die "qemu-img dd $2 $3 $4"
	[ "$(stat -c %s "$w")" -eq "$4" ] || die "qemu-img dd gave a short window of $2"
	sum=$(md5_of "$w")
	rm -f "$w"
	echo "$1 ${2#"$OUT"/} $3 $4 $sum $vs" >>"$WINDOWS"
}

window()	# NAME OFFSET LENGTH [VSIZE]: a window of img NAME
{
	add_window "$1" "$(img "$1")" "$2" "$3" "${4:-}"
}

add_hostile()	# NAME FILE MESSAGE...
{
	local name=$1 file=$2

	shift 2
	echo "$name ${file#"$OUT"/} $*" >>"$HOSTILE"
}

# img NAME: a copy of SOURCE with fields patched by FIELD_WRITER, whose
# table load must fail with MESSAGE.
hostile_from()	# SOURCE NAME MESSAGE [OFFSET:NBYTES:VALUE...]
{
	local f

	f=$(img "$2")
	cp "$1" "$f"
	patch_fields "$f" "${@:4}"
	add_hostile "$2" "$f" "$3"
}

hostile()	# NAME MESSAGE [OFFSET:NBYTES:VALUE...]: a patched copy of BASE
{
	hostile_from "$BASE" "$@"
}

# Sanity check of corrupt.list records: QEMU itself fails a read of the
# bad offset (for the corruptions that it checks).
qemu_rejects_corrupt()	# NAME...
{
	local n bad out

	for n in "$@"; do
		bad=$(awk -v n="$n" '$1 == n { print $3 }' "$CORRUPT")
		out=$(qemu-io -r -f "$IMG_FMT" -c "read -q $bad 512" "$(img "$n")" 2>&1) ||
			true
		echo "$out" | grep -qiE 'error|fail|corrupt' ||
			die "QEMU reads the supposedly corrupt $n without complaint"
	done
}

# Sanity check of hostile.list records: QEMU itself refuses to open each
# image for reading (for the checks that QEMU makes at open).  qemu-io, not
# qemu-img info, which skips some (an external data file is not opened).
qemu_rejects_open()	# NAME...
{
	local n

	for n in "$@"; do
		if qemu-io -r -f "$IMG_FMT" -c "read -q 0 512" "$(img "$n")" \
			>/dev/null 2>&1; then
			die "QEMU opens the supposedly hostile $n"
		fi
	done
}

# Names must be unique C identifiers (they become variant names); only
# those starting with PREFIX are checked for the latter.
check_names()	# DIR [PREFIX]
{
	local d=$1

	if cat "$d/good.list" "$d/hostile.list" "$d/corrupt.list" |
	   awk '{ print $1 }' | sort | uniq -d | grep .; then
		die "duplicate image names"
	fi
	if cat "$d"/{good,windows,hostile,corrupt}.list |
	   awk -v p="^${2:-}" '$1 ~ p { print $1 }' |
	   grep -vE '^[a-z][a-z0-9_]*$'; then
		die "image name is not a C identifier"
	fi
}
