#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Userspace checks of VMDK descriptors (and of images whose size is not a
# multiple of 512) against QEMU, without a VM and without root:
#
#   vmdk-desc.sh [IMAGEDIR [IMGFMT]]
#
# IMAGEDIR is what selftests/imgfmt/mkimages-vmdk-desc.sh made; without it
# the images are built in a temporary directory.  Every disk of good.list
# must read (`imgfmt read`) exactly as QEMU reads it, every window of
# windows.list likewise, every descriptor of hostile.list must make
# `imgfmt info` fail with its message; then `table` and `info` output is
# checked for a few disks.  Prints TAP.  IMGFMT defaults to this tree's
# userspace/imgfmt.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
DIR=${1:-}
IMGFMT=${2:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$DIR" ]; then
	DIR=$TMP/images
	"$TOP/selftests/imgfmt/mkimages-vmdk-desc.sh" "$DIR" >"$TMP/mk.log" 2>&1 ||
		tap_bail "mkimages-vmdk-desc.sh failed: $(tail -1 "$TMP/mk.log")"
fi
for l in good windows hostile; do
	[ -s "$DIR/$l.list" ] || tap_bail "$DIR/$l.list missing (run mkimages-vmdk-desc.sh)"
done
# Error messages name files as the descriptors do, relative to DIR.
cd "$DIR" || tap_bail "cannot enter $DIR"

# good: the whole virtual disk, byte for byte.
read_good()		# FILE SIZE MD5
{
	local size md5

	"$IMGFMT" read "$1" "$TMP/out.raw" 2>"$TMP/err" ||
		{ why="read failed: $(cat "$TMP/err")"; return 1; }
	size=$(stat -c %s "$TMP/out.raw")
	md5=$(md5sum <"$TMP/out.raw" | cut -d' ' -f1)
	[ "$size" = "$2" ] || { why="$size bytes, QEMU: $2"; return 1; }
	[ "$md5" = "$3" ] || { why="md5 $md5, QEMU: $3"; return 1; }
	"$IMGFMT" info "$1" | grep -qx "virtual-size: $2" ||
		{ why="info does not say virtual-size: $2"; return 1; }
}

while read -r name file size md5; do
	tap_check "read $name" read_good "$file" "$size" "$md5"
done <good.list

# windows: read each big disk once, compare its windows.
read_windows()		# FILE
{
	local off len md5 vs got

	"$IMGFMT" read "$1" "$TMP/big.raw" 2>"$TMP/err" ||
		{ why="read failed: $(cat "$TMP/err")"; return 1; }
	while read -r _ f off len md5 vs; do
		[ "$f" = "$1" ] || continue
		[ "$(stat -c %s "$TMP/big.raw")" = "$vs" ] ||
			{ why="size is not $vs"; return 1; }
		got=$(dd if="$TMP/big.raw" bs=512 skip=$((off / 512)) \
			count=$((len / 512)) status=none | md5sum | cut -d' ' -f1)
		[ "$got" = "$md5" ] ||
			{ why="window $off+$len: md5 $got, QEMU: $md5"; return 1; }
	done <windows.list
	rm -f "$TMP/big.raw"
}

for file in $(cut -d' ' -f2 windows.list | uniq); do
	tap_check "read windows of $file" read_windows "$file"
done

# hostile: one error line, on stderr and as info's "error:" line.
refused()		# FILE MESSAGE
{
	local rc

	"$IMGFMT" info "$1" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	[ $rc -eq 1 ] || { why="exit status $rc"; return 1; }
	[ "$(wc -l <"$TMP/err")" -eq 1 ] ||
		{ why="stderr: $(cat "$TMP/err")"; return 1; }
	grep -qF -- "$2" "$TMP/err" ||
		{ why="stderr: $(cat "$TMP/err")"; return 1; }
	grep -q '^error: ' "$TMP/out" ||
		{ why="no error: line in info's output"; return 1; }
}

while read -r name file message; do
	tap_check "refuse $name" refused "$file" "$message"
done <hostile.list

# table
table_is()		# EXPECTED-FILE IMAGE DEV...
{
	local want=$1

	shift
	"$IMGFMT" table "$@" >"$TMP/out" 2>"$TMP/err" ||
		{ why="table failed: $(cat "$TMP/err")"; return 1; }
	cmp -s "$want" "$TMP/out" ||
		{ why="got: $(tr '\n' '|' <"$TMP/out")"; return 1; }
}

table_usage_error()	# IMAGE DEV...
{
	"$IMGFMT" table "$@" >/dev/null 2>"$TMP/err"
	[ $? -eq 2 ] || { why="exit status is not 2"; return 1; }
	grep -q 'give one DEV' "$TMP/err" ||
		{ why="stderr: $(cat "$TMP/err")"; return 1; }
}

printf '%s\n' "0 4194304 imgfmt /dev/loop1 1 format=vmdk" \
	"4194304 4194304 imgfmt /dev/loop2 1 format=vmdk" \
	"8388608 2097152 imgfmt /dev/loop3 1 format=vmdk" >"$TMP/t1"
tap_check "table of a split sparse disk" table_is "$TMP/t1" \
	q_twoGbMaxExtentSparse.vmdk /dev/loop1 /dev/loop2 /dev/loop3
printf '%s\n' "0 4194304 linear 7:1 0" "4194304 4194304 linear 7:2 0" \
	"8388608 2097152 linear 7:3 0" >"$TMP/t2"
tap_check "table of a split flat disk" table_is "$TMP/t2" \
	q_twoGbMaxExtentFlat.vmdk 7:1 7:2 7:3
printf '%s\n' "0 2048 linear 7:1 16" "2048 100 zero" \
	"2148 4096 imgfmt 7:2 2 format=vmdk cache_size=1048576" \
	"6244 1024 linear 7:3 0" >"$TMP/t3"
tap_check "table with ZERO, RDONLY and --cache-size" table_is "$TMP/t3" \
	--cache-size 1M mix_all.vmdk 7:1 7:2 7:3
tap_check "table wants one DEV per extent file" table_usage_error \
	q_twoGbMaxExtentSparse.vmdk /dev/loop1
tap_check "table wants one DEV for one image" table_usage_error \
	odd_qcow2.qcow2 /dev/loop1 /dev/loop2

table_notes_tail()
{
	"$IMGFMT" table odd_qcow2.qcow2 /dev/loop0 >"$TMP/out" 2>"$TMP/err" ||
		{ why="table failed"; return 1; }
	grep -qx '0 32768 imgfmt /dev/loop0' "$TMP/out" &&
	grep -q 'note: odd_qcow2.qcow2 is 20524 bytes, not a multiple of 512' \
		"$TMP/err" || { why="stderr: $(cat "$TMP/err")"; return 1; }
}
tap_check "table notes a partial last sector" table_notes_tail

# info
info_has()		# IMAGE LINE...
{
	local img=$1 line

	shift
	"$IMGFMT" info "$img" >"$TMP/out" 2>"$TMP/err" ||
		{ why="info failed: $(cat "$TMP/err")"; return 1; }
	for line in "$@"; do
		grep -qxF -- "$line" "$TMP/out" ||
			{ why="no line '$line'"; return 1; }
	done
}

tap_check "info of a CRLF windows-1252 descriptor" info_has mix_crlf.vmdk \
	"format: vmdk" "create-type: twoGbMaxExtentSparse" "cid: fffffffe" \
	"extents: 5" 'extent-1: RW 2048 FLAT "mix-f1.raw" 16' \
	'extent-3: RW 1024 VMFS "mix-f3.raw" 0' "virtual-size: 6815744"
tap_check "info of a descriptor with ZERO and RDONLY" info_has mix_all.vmdk \
	"extent-2: RW 100 ZERO" 'extent-3: RDONLY 4096 SPARSE "mix-s2.vmdk"'
tap_check "info of an embedded descriptor" info_has \
	q_small_monolithicSparse.vmdk "create-type: monolithicSparse"
tap_check "info of an odd-sized image" info_has odd_qcow2.qcow2 \
	"file-size: 20524" \
	"note: the file size is not a multiple of 512: a loop device hides its last 44 bytes; imgfmt attach maps them"

refuses_overwrite()
{
	cp mix-f3.raw "$TMP/f3.before"
	"$IMGFMT" read mix_lf.vmdk mix-f3.raw 2>"$TMP/err" &&
		{ why="read wrote over an extent"; return 1; }
	grep -q 'refusing to write over the image being read' "$TMP/err" &&
	cmp -s mix-f3.raw "$TMP/f3.before" ||
		{ why="stderr: $(cat "$TMP/err")"; return 1; }
}
tap_check "read refuses to write over an extent file" refuses_overwrite

echo "1..$TAP_N"
echo "# $TAP_PASS passed, $TAP_FAIL failed"
[ "$TAP_FAIL" -eq 0 ]
