#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Userspace check of the shared format code against QEMU, without a VM:
#
#   read-compare.sh IMAGEDIR [IMGFMT]
#
# IMAGEDIR is what selftests/imgfmt/mkimages.sh made.  For every image of
# good.list, `imgfmt read IMAGE` must produce exactly the virtual disk whose
# md5 QEMU recorded; for every image of windows.list, the virtual size
# `imgfmt info` reports must be QEMU's and each window that
# `imgfmt read --offset OFF --length LEN` writes must match (terabyte
# sparse images too); every image of hostile.list must make
# `imgfmt info` print "error: <the expected message>" and exit 1; every image
# of corrupt.list must make `imgfmt read` fail (it cannot skip the bad
# cluster).  Prints TAP.  IMGFMT defaults to userspace/imgfmt of this tree.

set -uo pipefail
export LC_ALL=C

[ $# -ge 1 ] || { echo "usage: read-compare.sh IMAGEDIR [IMGFMT]" >&2; exit 2; }
DIR=$1
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
IMGFMT=${2:-${IMGFMT:-$TOP/userspace/imgfmt}}


[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
for l in good windows hostile corrupt; do
	[ -s "$DIR/$l.list" ] || tap_bail "$DIR/$l.list missing or empty (run mkimages.sh)"
done


plan=$(($(wc -l <"$DIR/good.list") + $(wc -l <"$DIR/hostile.list") +
	$(wc -l <"$DIR/corrupt.list") +
	$(awk '{ print $1 }' "$DIR/windows.list" | sort -u | wc -l)))
echo "TAP version 13"
echo "1..$plan"

# Whole images.  The helper writes exactly virtual_size bytes, and its
# info agrees with QEMU's sizes.
while read -r name file vsize md5 csize format _rest; do
	format=${format:-qcow2}
	out=$(mktemp)
	info=$("$IMGFMT" info "$DIR/$file" 2>&1)
	ivs=$(echo "$info" | awk -F': ' '$1 == "virtual-size" { print $2 }')
	ics=$(echo "$info" | awk -F': ' '$1 == "cluster-size" { print $2 }')
	ifmt=$(echo "$info" | awk -F': ' '$1 == "format" { print $2 }')
	if [ "$ifmt $ivs $ics" != "$format $vsize $csize" ]; then
		tap_fail "read $name" "imgfmt info says format '$ifmt' virtual-size '$ivs' cluster-size '$ics'," \
			"the manifest says $format $vsize $csize"
	elif ! "$IMGFMT" read "$DIR/$file" "$out" 2>"$out.err"; then
		tap_fail "read $name" "imgfmt read failed: $(head -c 300 "$out.err")"
	elif [ "$(stat -c %s "$out")" != "$vsize" ]; then
		tap_fail "read $name" "wrote $(stat -c %s "$out") bytes, virtual size is $vsize"
	elif [ "$(md5sum <"$out" | cut -d' ' -f1)" != "$md5" ]; then
		tap_fail "read $name" "md5 $(md5sum <"$out" | cut -d' ' -f1), QEMU says $md5"
	else
		tap_result ok "read $name"
	fi
	rm -f "$out" "$out.err"
done <"$DIR/good.list"

# Windowed images, up to terabytes and sparse: the sizes the helper
# reports must be QEMU's, and `imgfmt read --offset --length` of each
# window must give exactly the bytes whose md5 QEMU recorded.
for name in $(awk '{ print $1 }' "$DIR/windows.list" | sort -u); do
	read -r _ file _ _ _ vsize < <(awk -v n="$name" '$1 == n' "$DIR/windows.list" | head -n 1)
	info=$("$IMGFMT" info "$DIR/$file" 2>&1)
	got=$(echo "$info" | awk -F': ' '$1 == "virtual-size" { print $2 }')
	if [ "$got" != "$vsize" ]; then
		tap_fail "windows $name" "virtual-size '$got', QEMU says $vsize"
		continue
	fi
	out=$(mktemp)
	bad=
	while read -r _ _ off len md5 _; do
		if ! "$IMGFMT" read --offset "$off" --length "$len" \
			"$DIR/$file" "$out" 2>"$out.err"; then
			bad="$bad window $off+$len: imgfmt read failed: $(head -c 300 "$out.err");"
		elif [ "$(stat -c %s "$out")" != "$len" ]; then
			bad="$bad window $off+$len: wrote $(stat -c %s "$out") bytes;"
		else
			sum=$(md5sum <"$out" | cut -d' ' -f1)
			[ "$sum" = "$md5" ] || bad="$bad window $off+$len: $sum, QEMU says $md5;"
		fi
	done < <(awk -v n="$name" '$1 == n' "$DIR/windows.list")
	rm -f "$out" "$out.err"
	if [ -n "$bad" ]; then
		tap_fail "windows $name" "$bad"
	else
		tap_result ok "windows $name"
	fi
done

# Hostile images: the exact reason.
while read -r name file msg; do
	out=$("$IMGFMT" info "$DIR/$file" 2>/dev/null)
	rc=$?
	if [ $rc -ne 1 ]; then
		tap_fail "info $name fails" "exit status $rc, expected 1" "$out"
	elif ! echo "$out" | grep -qxF "error: $msg"; then
		tap_fail "info $name fails" "expected 'error: $msg'" "got: $(echo "$out" | head -n 3)"
	else
		tap_result ok "info $name fails"
	fi
done <"$DIR/hostile.list"

# Runtime corruption: the header is fine, so info works, and a whole-disk
# read meets the bad cluster and fails.
while read -r name file bad _; do
	if ! "$IMGFMT" info "$DIR/$file" >/dev/null 2>&1; then
		tap_fail "read $name fails" "imgfmt info refused an image with a valid header"
	elif "$IMGFMT" read "$DIR/$file" /dev/null 2>/dev/null; then
		tap_fail "read $name fails" "imgfmt read succeeded over corruption at $bad"
	else
		tap_result ok "read $name fails"
	fi
done <"$DIR/corrupt.list"

echo "# $TAP_PASS passed, $TAP_FAIL failed"
[ "$TAP_FAIL" -eq 0 ]
