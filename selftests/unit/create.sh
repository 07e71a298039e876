#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# imgfmt create -f qcow2 against QEMU, without a VM and without root:
#
#   create.sh [IMGFMT]
#
# For a matrix of cluster sizes, refcount widths, compat levels, extended
# L2, preallocation, backing files (raw and qcow2, relative names) and odd
# sizes, each image imgfmt creates must be one QEMU calls clean and reads
# as asked: `qemu-img check` exits 0 with "No errors"; `qemu-img info
# --output=json` gives the sizes, compat, refcount bits, extended L2 and
# backing file asked for, and the same fields as for the image qemu-img
# creates with the same command line; the file is no larger than qemu-img's
# (rounded up to a whole cluster); `qemu-img convert -O raw` gives zeroes
# or the backing file's contents; a qemu-io write then reads back, and the
# image is still clean and converts to what was written.  Refusals exit
# non-zero with one line naming the problem, create no file, and are
# refused by qemu-img too.  Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
IMGFMT=${1:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v qemu-img >/dev/null || tap_bail "qemu-img not installed (qemu-utils)"
command -v python3 >/dev/null || tap_bail "python3 not installed"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || tap_bail "cannot enter $TMP"

echo "TAP version 13"

q() { "$@" >/dev/null 2>"$TMP/q.err" || tap_bail "$* failed: $(cat "$TMP/q.err")"; }

# The fields of qemu-img info --output=json that create decides, one
# "key=value" per line.
info_fields()		# info_fields IMAGE
{
	qemu-img info --output=json "$1" | python3 -c '
import json, sys
i = json.load(sys.stdin)
d = i.get("format-specific", {}).get("data", {})
for k in ("format", "virtual-size", "cluster-size", "backing-filename",
          "backing-filename-format", "dirty-flag"):
    print("%s=%s" % (k, i.get(k)))
for k in ("compat", "refcount-bits", "extended-l2", "compression-type",
          "lazy-refcounts", "corrupt"):
    print("%s=%s" % (k, d.get(k)))
'
}

# qemu-img check must exit 0 and find no errors (nor leaks).
check_clean()		# check_clean IMAGE WHEN
{
	local out

	if ! out=$(qemu-img check "$1" 2>&1); then
		why="qemu-img check $2 failed: $out"
		return 1
	fi
	if ! grep -q "^No errors were found on the image" <<<"$out"; then
		why="qemu-img check $2: $out"
		return 1
	fi
}

# Does FILE hold only zeroes?  Only its data extents are read (holes read
# as zeroes), so a sparse file of any size is quick.
sparse_zero()		# sparse_zero FILE
{
	python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.fstat(fd).st_size
off = 0
while off < end:
    try:
        off = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, off, os.SEEK_HOLE)
    while off < hole:
        buf = os.pread(fd, min(hole - off, 1 << 20), off)
        if not buf or buf.count(0) != len(buf):
            sys.exit(1)
        off += len(buf)
EOF
}

# qemu-img convert -O raw of IMAGE must be the file EXPECTED.  A disk
# larger than BIG that should read as zeroes is not compared byte by byte
# (that takes minutes): convert writes sparse files, so its output must
# have the right size and hold zeroes in its data extents.
BIG=$((256 * 1024 * 1024))
converts_to()		# converts_to IMAGE EXPECTED WHEN [zero]
{
	local size

	rm -f "$TMP/conv.raw"
	if ! qemu-img convert -O raw "$1" "$TMP/conv.raw" 2>"$TMP/conv.err"; then
		why="qemu-img convert $3 failed: $(cat "$TMP/conv.err")"
		return 1
	fi
	size=$(stat -c %s "$2")
	if [ "${4:-}" = zero ] && [ "$size" -gt "$BIG" ]; then
		if [ "$(stat -c %s "$TMP/conv.raw")" != "$size" ] ||
		   ! sparse_zero "$TMP/conv.raw"; then
			why="qemu-img convert $3: $(stat -c '%s bytes' "$TMP/conv.raw"), not $size bytes of zeroes"
			return 1
		fi
		return 0
	fi
	if ! cmp -s "$TMP/conv.raw" "$2"; then
		why="qemu-img convert $3: the disk differs from what it should be ($(cmp "$TMP/conv.raw" "$2" 2>&1 | head -1))"
		return 1
	fi
}

# Each case: IMAGE [SIZE] with OPTS (an -o list, or "") over BACKING of
# format FMT ("" for none), whose virtual size is to be VSIZE bytes and
# whose info fields EXPECT lists (k=v words); RAW is the disk QEMU must
# read (a file; "" for zeroes of VSIZE bytes).
create_case()		# create_case NAME IMAGE SIZE OPTS BACKING FMT VSIZE RAW EXPECT
{
	local name=$1 img=$2 size=$3 opts=$4 back=$5 fmt=$6 vsize=$7 raw=$8
	local expect=$9 args=(-f qcow2) twin=${2%.qcow2}-qemu.qcow2 kv ours theirs
	local cs wlen zero=

	[ -n "$opts" ] && args+=(-o "$opts")
	[ -n "$back" ] && args+=(-b "$back" -F "$fmt")
	why=
	if ! "$IMGFMT" create "${args[@]}" "$img" ${size:+"$size"} 2>"$TMP/err"; then
		tap_fail "create $name" "imgfmt create ${args[*]} $img $size failed: $(cat "$TMP/err")"
		return
	fi
	if [ -s "$TMP/err" ]; then
		tap_fail "create $name" "imgfmt create printed: $(cat "$TMP/err")"
		return
	fi
	q qemu-img create -q "${args[@]}" "$twin" ${size:+"$size"}
	check_clean "$img" "after create" || { tap_fail "create $name" "$why"; return; }
	ours=$(info_fields "$img")
	theirs=$(info_fields "$twin")
	if [ "$ours" != "$theirs" ]; then
		tap_fail "create $name" "qemu-img info differs from qemu-img's image:" \
			"$(diff <(echo "$theirs") <(echo "$ours") | grep '^[<>]')"
		return
	fi
	for kv in virtual-size="$vsize" $expect; do
		if ! grep -qxF -- "$kv" <<<"$ours"; then
			tap_fail "create $name" "qemu-img info has not $kv:" "$ours"
			return
		fi
	done
	cs=$(sed -n 's/^cluster-size=//p' <<<"$ours")
	if [ "$(stat -c %s "$img")" -gt $((($(stat -c %s "$twin") + cs - 1) / cs * cs)) ]; then
		tap_fail "create $name" "$(stat -c %s "$img") bytes, qemu-img's image $(stat -c %s "$twin")"
		return
	fi
	if [ -z "$raw" ]; then
		raw=$TMP/zero.raw
		rm -f "$raw"
		truncate -s "$vsize" "$raw"
		zero=zero
	fi
	converts_to "$img" "$raw" "after create" $zero ||
		{ tap_fail "create $name" "$why"; return; }
	[ "$vsize" -gt 0 ] || { tap_result ok "create $name"; return; }
	# Write 64 KiB (the whole disk when smaller) and read it back.
	wlen=$((vsize < 65536 ? vsize : 65536))
	if ! qemu-io -f qcow2 -c "write -P 0xab 0 $wlen" -c "read -P 0xab 0 $wlen" \
		"$img" >"$TMP/io.out" 2>&1; then
		tap_fail "create $name" "qemu-io write and read failed: $(cat "$TMP/io.out")"
		return
	fi
	check_clean "$img" "after a write" || { tap_fail "create $name" "$why"; return; }
	# The read above checked the data; a byte for byte copy would be slow.
	[ "$vsize" -le "$BIG" ] || { tap_result ok "create $name"; return; }
	cp "$raw" "$TMP/written.raw"
	head -c "$wlen" /dev/zero | tr '\0' '\253' |
		dd of="$TMP/written.raw" conv=notrunc status=none
	converts_to "$img" "$TMP/written.raw" "after a write" ||
		{ tap_fail "create $name" "$why"; return; }
	tap_result ok "create $name"
}

# --- No backing file: every cluster size with three refcount widths,
# compat 1.1 and (16-bit refcounts only) 0.10, preallocated or not.  The
# size ends in half a cluster of the smallest clusters and needs several
# L2 tables of 512-byte clusters. ---
size=$((3 * 1024 * 1024 + 256 * 1024 + 512))
for cs in 512 4k 64k 2M; do
	csb=$(numfmt --from=iec "${cs^^}")
	for rb in 1 16 64; do
		for compat in 1.1 0.10; do
			[ "$compat" = 0.10 ] && [ "$rb" != 16 ] && continue
			# Version 2 has no extended L2 field at all.
			l2=extended-l2=False
			[ "$compat" = 0.10 ] && l2=extended-l2=None
			for pre in off metadata; do
				create_case "cluster_size=$cs refcount_bits=$rb compat=$compat preallocation=$pre" \
					"m-$cs-$rb-$compat-$pre.qcow2" "$size" \
					"cluster_size=$cs,refcount_bits=$rb,compat=$compat,preallocation=$pre" \
					"" "" "$size" "" \
					"cluster-size=$csb refcount-bits=$rb compat=$compat $l2"
			done
		done
	done
done

# Extended L2 entries (16k and 64k clusters); preallocated ones have
# every subcluster allocated.
for cs in 16k 64k; do
	csb=$(numfmt --from=iec "${cs^^}")
	for pre in off metadata; do
		create_case "extended_l2 cluster_size=$cs preallocation=$pre" \
			"x-$cs-$pre.qcow2" "$size" \
			"extended_l2=on,cluster_size=$cs,preallocation=$pre" "" "" \
			"$size" "" "cluster-size=$csb extended-l2=True compat=1.1"
	done
done

# Odd and empty sizes (QEMU rounds up to whole sectors), qemu-img's
# suffixes, and the defaults.
create_case "size 1 byte" one.qcow2 1 "" "" "" 512 "" "cluster-size=65536"
create_case "size 1M+512" odd.qcow2 1049088 "preallocation=metadata" "" "" \
	1049088 "" "cluster-size=65536"
create_case "size 1M+512, 2M clusters" odd2m.qcow2 1049088 \
	"cluster_size=2M,preallocation=metadata" "" "" 1049088 "" \
	"cluster-size=2097152"
create_case "size 0" zero.qcow2 0 "" "" "" 0 "" "cluster-size=65536"
create_case "size 0 preallocated" zero-pre.qcow2 0 "preallocation=metadata" \
	"" "" 0 "" "cluster-size=65536"
create_case "size 1.5G, defaults" big.qcow2 1.5G "" "" "" 1610612736 "" \
	"cluster-size=65536 refcount-bits=16 compat=1.1 extended-l2=False compression-type=zlib"
create_case "size 0x10k, compression_type=zstd" hex.qcow2 0x10k \
	"compression_type=zstd" "" "" 16384 "" "compression-type=zstd"
# The largest disk of 512-byte clusters: an L1 table of 32 MiB.
create_case "size 128G, 512-byte clusters" l1max.qcow2 128G "cluster_size=512" \
	"" "" 137438953472 "" "cluster-size=512"

# --- Backing files: raw and qcow2, named relative to the new image's
# directory (the working directory is not theirs: sub/ holds the images). ---
mkdir -p sub/deeper
q qemu-img create -q -f raw sub/base.raw 3M
q qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0x5b 2M 4k" sub/base.raw
q qemu-img create -q -f qcow2 sub/base.qcow2 2M
q qemu-io -f qcow2 -c "write -P 0x6c 64k 128k" sub/base.qcow2
q qemu-img convert -O raw sub/base.qcow2 base-qcow2.raw
head -c 1000 /dev/urandom >sub/odd.raw
cp sub/odd.raw odd.raw
truncate -s 1024 odd.raw
# The qcow2 base, seen through a 5 MiB overlay: zeroes past its end.
cp base-qcow2.raw base-qcow2-5m.raw
truncate -s 5M base-qcow2-5m.raw

create_case "raw backing, size taken from it" sub/over-raw.qcow2 "" "" \
	base.raw raw 3145728 sub/base.raw \
	"backing-filename=base.raw backing-filename-format=raw"
create_case "qcow2 backing, larger overlay" sub/over-q.qcow2 5M "" \
	base.qcow2 qcow2 5242880 base-qcow2-5m.raw \
	"backing-filename=base.qcow2 backing-filename-format=qcow2"
create_case "qcow2 backing in the parent directory" sub/deeper/top.qcow2 "" \
	"cluster_size=4k" ../base.qcow2 qcow2 2097152 base-qcow2.raw \
	"backing-filename=../base.qcow2 cluster-size=4096"
create_case "raw backing, compat=0.10" sub/over-v2.qcow2 "" "compat=0.10" \
	base.raw raw 3145728 sub/base.raw "compat=0.10 backing-filename=base.raw"
create_case "raw backing, 512-byte clusters" sub/over-512.qcow2 "" \
	"cluster_size=512,refcount_bits=1" base.raw raw 3145728 sub/base.raw \
	"cluster-size=512 refcount-bits=1 backing-filename=base.raw"
create_case "raw backing, extended_l2 and preallocation=metadata" \
	sub/over-pre.qcow2 "" "extended_l2=on,preallocation=metadata" \
	base.raw raw 3145728 sub/base.raw "extended-l2=True"
create_case "raw backing of 1000 bytes" sub/over-odd.qcow2 "" "" odd.raw raw \
	1024 odd.raw "virtual-size=1024"

# Overwriting: an existing file becomes the new image, as with qemu-img.
head -c 300000 /dev/urandom >old.qcow2
create_case "over an existing file" old.qcow2 1M "" "" "" 1048576 "" \
	"cluster-size=65536"

# --- Refusals: imgfmt and qemu-img both refuse; imgfmt in one line that
# names the problem, leaving no file. ---
refuse()		# refuse NAME WORD QEMU ARGS...: QEMU is "qemu" when it refuses too
{
	local name=$1 word=$2 qemu=$3 rc

	shift 3
	rm -f bad.qcow2
	"$IMGFMT" create "$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ $rc -eq 0 ]; then
		tap_fail "refuse $name" "imgfmt create $* succeeded"
	elif [ "$(wc -l <"$TMP/err")" != 1 ] || ! grep -qiF -- "$word" "$TMP/err"; then
		tap_fail "refuse $name" "wanted one line naming $word, got:" "$(cat "$TMP/err")"
	elif [ -e bad.qcow2 ]; then
		tap_fail "refuse $name" "bad.qcow2 was left behind"
	elif [ -s "$TMP/out" ]; then
		tap_fail "refuse $name" "printed on stdout: $(cat "$TMP/out")"
	elif [ "$qemu" = qemu ] && qemu-img create "$@" >/dev/null 2>&1; then
		tap_fail "refuse $name" "qemu-img create $* succeeds"
	else
		tap_result ok "refuse $name"
	fi
	rm -f bad.qcow2
}

refuse "cluster_size=1000" cluster_size qemu -f qcow2 -o cluster_size=1000 bad.qcow2 1M
refuse "cluster_size=256" cluster_size qemu -f qcow2 -o cluster_size=256 bad.qcow2 1M
refuse "cluster_size=4M" cluster_size qemu -f qcow2 -o cluster_size=4M bad.qcow2 1M
refuse "extended_l2 with 4k clusters" extended_l2 qemu -f qcow2 \
	-o extended_l2=on,cluster_size=4k bad.qcow2 1M
refuse "refcount_bits=3" refcount_bits qemu -f qcow2 -o refcount_bits=3 bad.qcow2 1M
refuse "refcount_bits=128" refcount_bits qemu -f qcow2 -o refcount_bits=128 bad.qcow2 1M
refuse "compat=0.10 with refcount_bits=64" refcount_bits qemu -f qcow2 \
	-o compat=0.10,refcount_bits=64 bad.qcow2 1M
refuse "compat=0.10 with extended_l2" extended_l2 qemu -f qcow2 \
	-o compat=0.10,extended_l2=on,cluster_size=64k bad.qcow2 1M
refuse "compat=1.2" compat qemu -f qcow2 -o compat=1.2 bad.qcow2 1M
refuse "-b without -F" -F qemu -f qcow2 -b sub/base.raw bad.qcow2
refuse "no size and no backing file" SIZE qemu -f qcow2 bad.qcow2
refuse "a bad size" size qemu -f qcow2 bad.qcow2 1M+512
refuse "128G+512 with 512-byte clusters" clusters qemu -f qcow2 \
	-o cluster_size=512 bad.qcow2 137438953984
refuse "a missing backing file" missing.raw qemu -f qcow2 -b missing.raw -F raw bad.qcow2
refuse "a backing file of another format" sub/base.raw qemu -f qcow2 \
	-b sub/base.raw -F qcow2 bad.qcow2
refuse "preallocation with a backing file, no extended_l2" extended_l2 qemu \
	-f qcow2 -o preallocation=metadata -b sub/base.raw -F raw bad.qcow2
refuse "an unknown option" foo qemu -f qcow2 -o foo=1 bad.qcow2 1M
refuse "its own backing file" backing qemu -f qcow2 -b bad.qcow2 -F qcow2 bad.qcow2 1M

# An existing image named as its own backing file by another path: qemu-img
# compares the names only and would truncate it; imgfmt compares the files
# and leaves it alone.
q qemu-img create -q -f qcow2 sub/self.qcow2 1M
sum=$(md5sum <sub/self.qcow2)
if "$IMGFMT" create -f qcow2 -b ../sub/self.qcow2 -F qcow2 sub/self.qcow2 \
	2>"$TMP/err"; then
	tap_fail "refuse its own backing file, by another name" "imgfmt create succeeded"
elif [ "$(wc -l <"$TMP/err")" != 1 ] || ! grep -q backing "$TMP/err"; then
	tap_fail "refuse its own backing file, by another name" \
		"wanted one line naming the backing file, got:" "$(cat "$TMP/err")"
elif [ "$(md5sum <sub/self.qcow2)" != "$sum" ]; then
	tap_fail "refuse its own backing file, by another name" "the image changed"
else
	tap_result ok "refuse its own backing file, by another name"
fi

# What qemu-img does and imgfmt does not (yet).
refuse "preallocation=full" preallocation - -f qcow2 -o preallocation=full bad.qcow2 1M
refuse "lazy_refcounts=on" lazy_refcounts - -f qcow2 -o lazy_refcounts=on bad.qcow2 1M
refuse "-f raw" raw - -f raw bad.qcow2 1M
refuse "a refcount table over 8 MiB" "refcount table" - -f qcow2 \
	-o cluster_size=512,refcount_bits=64,preallocation=metadata bad.qcow2 64G

tap_summary
[ "$TAP_FAIL" -eq 0 ]
