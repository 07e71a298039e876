#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The helper against QEMU on QCOW2 internal snapshots and external data
# files, without a VM:
#
#   qcow2-layers.sh [IMAGEDIR [IMGFMT]]
#
# IMAGEDIR (default: a fresh one under build/) is what
# selftests/imgfmt/mkimages-layers.sh makes.  Every case of layers.list:
# `imgfmt read [--snapshot S]` writes QEMU's disk, byte for byte (cases
# with backing files are left to the kernel test: the helper's read does
# not open backing files yet); every snapshot also against `qemu-img
# convert -l`, which keeps the active size (its first bytes are the
# snapshot, the rest zeroes).  `imgfmt snapshot -l` prints what `qemu-img
# snapshot -l` prints, and `info --output=json` has qemu-img's snapshots
# and data file fields.  Then hostile cases: a missing snapshot, a missing
# or short data file, a data file name that is absolute.  Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
DIR=${1:-$BUILD/images/layers}
IMGFMT=${2:-${IMGFMT:-$TOP/userspace/imgfmt}}

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v qemu-img >/dev/null || tap_bail "qemu-img not installed (qemu-utils)"
if [ $# -eq 0 ]; then
	"$TOP/selftests/imgfmt/mkimages-layers.sh" "$DIR" ||
		tap_bail "mkimages-layers.sh failed"
fi
[ -s "$DIR/layers.list" ] || tap_bail "$DIR/layers.list missing (run mkimages-layers.sh)"
# QEMU 7.2 finds relative data file names from its working directory.
cd "$DIR" || tap_bail "cannot enter $DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "TAP version 13"

md5() { md5sum <"$1" | cut -d' ' -f1; }

# read NAME SIZE MD5 IMAGE SNAPSHOT: imgfmt read against QEMU's md5.
read_case()
{
	local name=$1 size=$2 sum=$3 img=$4 sn=$5 out=$TMP/out.raw args=()

	[ "$sn" = - ] || args=(--snapshot "$sn")
	if ! "$IMGFMT" read "${args[@]}" "$img" "$out" 2>"$TMP/err"; then
		tap_fail "read $name" "imgfmt read failed: $(head -c 300 "$TMP/err")"
	elif [ "$(stat -c %s "$out")" != "$size" ]; then
		tap_fail "read $name" "wrote $(stat -c %s "$out") bytes, QEMU's disk has $size"
	elif [ "$(md5 "$out")" != "$sum" ]; then
		tap_fail "read $name" "md5 $(md5 "$out"), QEMU says $sum"
	else
		tap_result ok "read $name"
	fi
}

# convert -l keeps the active size: the snapshot, then zeroes.
convert_case()
{
	local name=$1 size=$2 img=$3 sn=$4 q=$TMP/q.raw out=$TMP/out.raw

	if ! qemu-img convert -l "$sn" -O raw "$img" "$q" 2>"$TMP/err"; then
		tap_fail "convert -l $name" "qemu-img: $(head -c 300 "$TMP/err")"
		return
	fi
	"$IMGFMT" read --snapshot "$sn" "$img" "$out" 2>/dev/null
	if ! cmp -s -n "$size" "$out" "$q"; then
		tap_fail "convert -l $name" "the first $size bytes differ from qemu-img convert -l"
	elif [ "$(stat -c %s "$q")" -gt "$size" ] &&
	     ! cmp -s -i "$size:0" -n $(($(stat -c %s "$q") - size)) "$q" /dev/zero; then
		tap_fail "convert -l $name" "qemu-img convert -l has data past the snapshot's size"
	else
		tap_result ok "convert -l $name"
	fi
}

while read -r name size sum img sn _rest; do
	sn=${sn//%20/ }
	read_case "$name" "$size" "$sum" "$img" "$sn"
	[ "$sn" = - ] || convert_case "$name" "$size" "$img" "$sn"
done <layers.list

# snapshot -l and info, image by image.
json_snapshots()	# FILE: the snapshots array, sorted keys
{
	python3 -c 'import json,sys
print(json.dumps(json.load(open(sys.argv[1])).get("snapshots"), sort_keys=True))' "$1"
}
for img in $(cut -d' ' -f1 snapshots.list | sort -u) ext.qcow2; do
	qemu-img snapshot -l "$img" >"$TMP/q.txt" 2>&1
	"$IMGFMT" snapshot -l "$img" >"$TMP/i.txt" 2>&1
	if cmp -s "$TMP/q.txt" "$TMP/i.txt"; then
		tap_result ok "snapshot -l $img"
	else
		tap_fail "snapshot -l $img" "$(diff "$TMP/q.txt" "$TMP/i.txt" | head -10)"
	fi
	qemu-img info --output=json "$img" >"$TMP/q.json"
	"$IMGFMT" info --output=json "$img" >"$TMP/i.json"
	if [ "$(json_snapshots "$TMP/q.json")" = "$(json_snapshots "$TMP/i.json")" ]; then
		tap_result ok "info snapshots $img"
	else
		tap_fail "info snapshots $img" "qemu-img: $(json_snapshots "$TMP/q.json" | head -c 300)" \
			"imgfmt: $(json_snapshots "$TMP/i.json" | head -c 300)"
	fi
done

data_fields()	# FILE: data-file and data-file-raw of format-specific
{
	python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))["format-specific"]["data"]
print(d.get("data-file"), d.get("data-file-raw"))' "$1"
}
for img in ext.qcow2 extraw.qcow2; do
	qemu-img info --output=json "$img" >"$TMP/q.json"
	"$IMGFMT" info --output=json "$img" >"$TMP/i.json"
	tap_check "info data file $img" \
		test "$(data_fields "$TMP/q.json")" = "$(data_fields "$TMP/i.json")"
done

# Hostile cases.
expect_error()	# NAME WORDS COMMAND...: fails, saying WORDS
{
	local name=$1 words=$2
	shift 2
	if "$@" >/dev/null 2>"$TMP/err"; then
		tap_fail "$name" "succeeded; expected '$words'"
	elif ! grep -qF -- "$words" "$TMP/err"; then
		tap_fail "$name" "expected '$words', got: $(head -c 300 "$TMP/err")"
	else
		tap_result ok "$name"
	fi
}
expect_error "missing snapshot refused" "QCOW2 snapshot not found" \
	"$IMGFMT" read --snapshot nosuch v3.qcow2 "$TMP/x.raw"
expect_error "a trailing blank makes another name" "QCOW2 snapshot not found" \
	"$IMGFMT" read --snapshot "first " v3.qcow2 "$TMP/x.raw"
expect_error "snapshot -l of a non-QCOW2 file refused" \
	"only QCOW2 images have internal snapshots" \
	"$IMGFMT" snapshot -l --format raw base.raw

# The data file, from another directory, and missing, and cut short.
mkdir -p "$TMP/img"
cp ext.qcow2 "$TMP/img/"
expect_error "missing data file named" "cannot open its external data file $TMP/img/ext.data" \
	"$IMGFMT" read "$TMP/img/ext.qcow2" "$TMP/x.raw"
cp ext.data "$TMP/img/"
(cd / && "$IMGFMT" read "$TMP/img/ext.qcow2" "$TMP/x.raw" 2>"$TMP/err")
tap_check "data file relative to the image's directory" \
	test "$(md5 "$TMP/x.raw")" = "$(awk '$1 == "ext_data" { print $3 }' layers.list)"
truncate -s $((3 << 20)) "$TMP/img/ext.data"
expect_error "short data file fails the read" \
	"data cluster beyond end of the external data file" \
	"$IMGFMT" read "$TMP/img/ext.qcow2" "$TMP/x.raw"
truncate -s $(((3 << 20) + (64 << 10) + 4096)) "$TMP/img/ext.data"
"$IMGFMT" read "$TMP/img/ext.qcow2" "$TMP/x.raw" 2>"$TMP/err"
# (From the image's directory: QEMU would find $DIR's ext.data.)
(cd "$TMP/img" && qemu-img convert -O raw ext.qcow2 "$TMP/q.raw")
tap_check "data file cut inside a cluster reads zeroes past its end, as QEMU" \
	cmp -s "$TMP/x.raw" "$TMP/q.raw"
# An absolute name, as qemu-img create -o data_file=/... records it.
mkdir -p "$TMP/abs"
qemu-img create -q -f qcow2 -o data_file="$TMP/abs/abs.data" "$TMP/img/abs.qcow2" 4M
qemu-io -f qcow2 -c "write -P 0xc1 0 64k" -c "write -P 0xc2 2M 4k" \
	"$TMP/img/abs.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/img/abs.qcow2" "$TMP/q.raw"
"$IMGFMT" read "$TMP/img/abs.qcow2" "$TMP/x.raw" 2>"$TMP/err"
tap_check "absolute data file name" cmp -s "$TMP/x.raw" "$TMP/q.raw"

tap_summary
