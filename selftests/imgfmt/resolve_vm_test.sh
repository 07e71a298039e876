#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of what the backing-chain work changed in the kernel: VMDK
# deltas (the embedded descriptor read with formats/vmdk_keys.c) and a UML
# COW file read through chain tables written by hand, md5 against QEMU's
# (COW: mkcow.py's); VMDK files refused by name at table load, and
# `imgfmt info` saying the same words.
#
#   resolve_vm_test.sh [IMAGEDIR]
#
# IMAGEDIR (default $IMGFMT_IMAGES/resolve) is what mkimages-resolve.sh
# made.  Prints TAP lines without a plan; exits non-zero when anything
# failed.  Plain POSIX sh (busybox).

DIR=${1:-${IMGFMT_IMAGES:-/payload/images}/resolve}
export DM_DISABLE_UDEV=1
SUITE=resolve
. "$(dirname "$0")/vmlib.sh"

cd "$DIR" 2>/dev/null || { echo "not ok 1 resolve: no image directory $DIR"; exit 1; }

reads()			# NAME SIZE MD5 LAYERS...
{
	name=$1 size=$2 md5=$3
	shift 3
	make_table "$@" || return 1
	table_reads "r_$name" "$size" "$md5"
}

while read -r name size md5 layers; do
	# shellcheck disable=SC2086
	check "$name reads as expected" reads "$name" "$size" "$md5" $layers
done <resolve.list

# FILE over NR_LOWER layers of base.raw: the table load fails naming
# the problem, and with INFO yes the helper's info prints the same words
# (an overlay without its layers is no error to info).
refused()		# FILE NR_LOWER INFO MESSAGE
{
	file=$1 nr=$2 info=$3 msg=$4
	set -- "$file"
	[ "$nr" -eq 0 ] || set -- "$file" base.raw:raw
	make_table "$@" || return 1
	dmesg -c >/dev/null 2>&1
	if dmsetup create --readonly r_bad --table "0 8192 imgfmt $TABLE" \
		2>/dev/null; then
		dmsetup remove r_bad
		free_loops
		why="loaded"
		return 1
	fi
	free_loops
	dmesg | grep -qF "$msg" || { why="dmesg lacks '$msg': $(dmesg | tail -2)"; return 1; }
	[ "$info" = yes ] || return 0
	imgfmt info "$file" 2>/dev/null | grep -qxF "error: $msg" ||
		{ why="imgfmt info does not say 'error: $msg'"; return 1; }
}

while read -r name file nr info msg; do
	check "$name refused" refused "$file" "$nr" "$info" "$msg"
done <refused.list

echo "# resolve_vm_test.sh: $n tests, $failed failed"
[ $failed -eq 0 ]
