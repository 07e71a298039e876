#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of `imgfmt attach` and `imgfmt detach` with VMDK descriptors
# (one loop per extent file, one target per extent) and with images whose
# size is not a multiple of 512 (a NAME-image helper device joining the
# loop and a one-sector tail loop over /run/imgfmt/NAME-image.tail).
#
#   desc_vm_test.sh [IMAGEDIR]
#
# IMAGEDIR (default $IMGFMT_IMAGES/desc, else /payload/images/desc) is what
# mkimages-vmdk-desc.sh --vm made: good.list, windows.list and
# hostile.list.  The imgfmt helper is $IMGFMT, else the one in PATH.  Needs
# root, the loop, dm-mod, dm-zero and dm-imgfmt modules and dmsetup.
# Prints TAP lines ("ok N desc: ...") without a plan; exits non-zero when
# anything failed.  Plain POSIX sh (busybox).

DIR=${1:-${IMGFMT_IMAGES:-/payload/images}/desc}
I=${IMGFMT:-imgfmt}
export DM_DISABLE_UDEV=1
SUITE=desc
. "$(dirname "$0")/vmlib.sh"

cd "$DIR" 2>/dev/null || bail "no image directory $DIR"
for l in good windows hostile; do
	[ -s "$l.list" ] || bail "$DIR/$l.list missing or empty"
done
command -v "$I" >/dev/null 2>&1 || bail "imgfmt helper '$I' not found"
T=$(mktemp -d /tmp/desc.XXXXXX) || bail "mktemp failed"
trap 'rm -rf "$T"' EXIT


targets()
{
	dmsetup table "$1" 2>/dev/null | awk '{ printf "%s%s", s, $3; s = " " }'
}

# What each disk of good.list must be mapped as, for some of them; and the
# helper devices (NAME-image, NAME-imageN) stacked under it.
want_targets()
{
	case $1 in
	mix_all) echo "linear zero imgfmt linear" ;;
	mix_crlf | mix_lf) echo "linear imgfmt linear imgfmt imgfmt" ;;
	q_small_monolithicFlat | q_small_twoGbMaxExtentFlat) echo linear ;;
	corpus_vmfs_thick) echo linear ;;
	q_small_twoGbMaxExtentSparse | q_small_monolithicSparse) echo imgfmt ;;
	corpus_twoGbMaxExtentSparse | odd_qcow2 | odd_vmdk) echo imgfmt ;;
	corpus_sesparse) echo imgfmt ;;
	q_twoGbMaxExtentSparse) echo "imgfmt imgfmt imgfmt" ;;
	embdesc) echo linear ;;	# a sparse file naming a VMFS extent
	esac
}
want_helpers()
{
	case $1 in
	mix_crlf | mix_lf) echo "$1-image5" ;;
	odd_qcow2 | odd_vmdk) echo "$1-image" ;;
	esac
}

# attach, then read the whole device: size, md5, read-only, targets.
attach_reads()		# NAME FILE SIZE MD5
{
	dev=$("$I" attach --name "$1" "$2" 2>"$T/err") ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	[ "$dev" = "/dev/mapper/$1" ] ||
		{ why="attach printed '$dev'"; return 1; }
	size=$(blockdev --getsize64 "$dev")
	[ "$size" = "$3" ] || { why="$size bytes, QEMU: $3"; return 1; }
	[ "$(blockdev --getro "$dev")" = 1 ] ||
		{ why="$dev is not read-only"; return 1; }
	md5=$(md5_of <"$dev")
	[ "$md5" = "$4" ] || { why="md5 $md5, QEMU: $4"; return 1; }
	want=$(want_targets "$1")
	got=$(targets "$1")
	[ -z "$want" ] || [ "$got" = "$want" ] ||
		{ why="targets '$got', expected '$want'"; return 1; }
	for h in $(want_helpers "$1"); do
		dmsetup info "$h" >/dev/null 2>&1 ||
			{ why="no helper device $h"; return 1; }
		[ -f "/run/imgfmt/$h.tail" ] ||
			{ why="no tail file /run/imgfmt/$h.tail"; return 1; }
	done
}

detach_clean()		# NAME
{
	"$I" detach "$1" >"$T/out" 2>"$T/err" ||
		{ why="detach failed: $(cat "$T/err")"; return 1; }
	[ ! -e "/dev/mapper/$1" ] || { why="/dev/mapper/$1 still there"; return 1; }
	nothing_left
}

while read -r name file size md5; do
	if [ ! -f "$file" ]; then
		not_ok "attach $name" "$file is missing from the payload"
		continue
	fi
	check "attach $name: size, md5, read-only, targets" \
		attach_reads "$name" "$file" "$size" "$md5"
	# After a failed attach there may be nothing to detach.
	if dmsetup info "$name" >/dev/null 2>&1; then
		check "detach $name leaves nothing" detach_clean "$name"
	else
		check "failed attach of $name leaves nothing" nothing_left
	fi
done <good.list

# Windows of the disks too big to read whole: the 5 GiB split sparse disk
# (three extents of ~1.4 MB) and the 512 MiB seSparse one.
windows_read()		# NAME FILE
{
	dev=$("$I" attach --name win "$2" 2>"$T/err") ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	rc=0
	want=$(want_targets "$1")
	got=$(targets win)
	[ -z "$want" ] || [ "$got" = "$want" ] ||
		{ why="targets '$got', expected '$want'"; rc=1; }
	[ $rc -ne 0 ] || while read -r _ f off len md5 vs; do
		[ "$f" = "$2" ] || continue
		size=$(blockdev --getsize64 "$dev")
		[ "$size" = "$vs" ] ||
			{ why="$size bytes, QEMU: $vs"; rc=1; break; }
		got=$(dd if="$dev" bs=512 skip=$((off / 512)) \
			count=$((len / 512)) 2>/dev/null | md5_of)
		[ "$got" = "$md5" ] ||
			{ why="window $off+$len: md5 $got, QEMU: $md5"; rc=1; break; }
	done <windows.list
	"$I" detach win 2>"$T/err" ||
		{ why="${why:+$why; }detach failed: $(cat "$T/err")"; return 1; }
	[ $rc -eq 0 ] && nothing_left
}

for name in $(cut -d' ' -f1 windows.list | uniq); do
	file=$(grep -m1 "^$name " windows.list | cut -d' ' -f2)
	if [ -f "$file" ]; then
		check "windows of $name, then detach leaves nothing" \
			windows_read "$name" "$file"
	else
		not_ok "windows of $name" "$file is missing from the payload"
	fi
done

# Hostile descriptors: attach fails with the message of `imgfmt info`,
# exit status 1, and leaves nothing behind.
refused()		# FILE MESSAGE
{
	"$I" attach --name hostile "$1" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	grep -qF -- "$2" "$T/err" || { why="stderr: $(cat "$T/err")"; return 1; }
	[ ! -s "$T/out" ] || { why="stdout: $(cat "$T/out")"; return 1; }
	nothing_left
}

while read -r name file msg; do
	if [ -e "$file" ] || [ -p "$file" ]; then
		check "refuse $name" refused "$file" "$msg"
	else
		not_ok "refuse $name" "$file is missing from the payload"
	fi
done <hostile.list

# A failure once loop devices exist undoes them.  Here the name of the
# helper device is taken: for an odd-sized image (its one loop), and for
# the fifth extent of mix_crlf (after four loops).
undone()		# NAME FILE TAKEN
{
	dmsetup create "$3" --table "0 1 zero" >/dev/null 2>&1 ||
		{ why="cannot create $3"; return 1; }
	BASE=$(state)
	"$I" attach --name "$1" "$2" >"$T/out" 2>"$T/err"
	rc=$?
	nothing_left
	left=$?
	dmsetup remove "$3" >/dev/null 2>&1
	BASE=$(state)
	[ $left -eq 0 ] || return 1
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	grep -qF "a device-mapper device named '$3' already exists" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
}
check "a failed attach of an odd-sized image undoes its loop" \
	undone odd odd_qcow2.qcow2 odd-image
check "a failed attach of a descriptor undoes its four loops" \
	undone mixfail mix_crlf.vmdk mixfail-image5

# The stack of an odd-sized image: NAME-image is the file's whole sectors,
# then the tail file (the last 44 bytes, zero-padded) on a loop of its own.
odd_stack()
{
	"$I" attach --name odd odd_qcow2.qcow2 >/dev/null 2>"$T/err" ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	got=$(targets odd-image)
	[ "$got" = "linear linear" ] ||
		{ why="odd-image targets '$got'"; return 1; }
	[ "$(blockdev --getsize64 /dev/mapper/odd-image)" = 20992 ] ||
		{ why="odd-image is not 41 sectors"; return 1; }
	[ "$(wc -c </run/imgfmt/odd-image.tail)" -eq 512 ] ||
		{ why="the tail file is not one sector"; return 1; }
	want=$(tail -c 44 odd_qcow2.qcow2 | md5_of)
	got=$(head -c 44 /run/imgfmt/odd-image.tail | md5_of)
	[ "$got" = "$want" ] || { why="the tail file does not end the image"; return 1; }
	got=$(dd if=/run/imgfmt/odd-image.tail bs=1 skip=44 2>/dev/null | md5_of)
	want=$(head -c 468 /dev/zero | md5_of)
	[ "$got" = "$want" ] || { why="the tail file is not zero-padded"; return 1; }
	want=$(dd if=odd_qcow2.qcow2 bs=512 count=40 2>/dev/null | md5_of)
	got=$(dd if=/dev/mapper/odd-image bs=512 count=40 2>/dev/null | md5_of)
	[ "$got" = "$want" ] || { why="odd-image does not start as the file"; return 1; }
}
check "odd-sized image: helper device and tail file" odd_stack

# Detaching a device in use fails and keeps the whole stack.
busy()
{
	before=$(state)
	exec 3</dev/mapper/odd
	"$I" detach odd >"$T/out" 2>"$T/err"
	rc=$?
	exec 3<&-
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	grep -qF "cannot remove 'odd': it is in use" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
	[ "$(state)" = "$before" ] || { why="the stack changed: $(state)"; return 1; }
	[ -e /dev/mapper/odd ] && [ -e /dev/mapper/odd-image ] &&
		[ -e /run/imgfmt/odd-image.tail ] ||
		{ why="devices or tail file gone"; return 1; }
}
check "detach of a busy device is refused and changes nothing" busy

detach_path()
{
	"$I" detach /dev/mapper/odd 2>"$T/err" ||
		{ why="detach failed: $(cat "$T/err")"; return 1; }
	nothing_left
}
check "detach /dev/mapper/NAME once closed leaves nothing" detach_path

# detach refuses what attach did not make.
foreign()
{
	dmsetup create foreign --table "0 8 zero" >/dev/null 2>&1 ||
		{ why="cannot create foreign"; return 1; }
	"$I" detach foreign >"$T/out" 2>"$T/err"
	rc=$?
	dmsetup info foreign >/dev/null 2>&1
	kept=$?
	dmsetup remove foreign >/dev/null 2>&1
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	grep -qxF "imgfmt: 'foreign' was not made by imgfmt attach; remove it with dmsetup remove" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
	[ $kept -eq 0 ] || { why="the device was removed"; return 1; }
	nothing_left
}
check "detach refuses a device attach did not make" foreign

# An imgfmt device made by hand over the user's own loop (no autoclear):
# detach must leave both alone.
own_loop()
{
	d=$(losetup -f) && losetup -r "$d" mix-s2.vmdk ||
		{ why="losetup failed"; return 1; }
	"$I" table mix-s2.vmdk "$d" 2>"$T/err" |
		dmsetup create mine --readonly 2>>"$T/err" ||
		why="dmsetup create failed: $(cat "$T/err")"
	if [ -z "$why" ]; then
		"$I" detach mine >"$T/out" 2>"$T/err"
		rc=$?
		if [ $rc -ne 1 ]; then
			why="exit status $rc: $(cat "$T/err")"
		elif [ "$(wc -l <"$T/err")" -ne 1 ] ||
		     ! grep -qF "'mine' was not made by imgfmt attach; remove it with dmsetup remove" "$T/err"; then
			why="stderr: $(cat "$T/err")"
		fi
		dmsetup info mine >/dev/null 2>&1 ||
			why="${why:+$why; }the device was removed"
		losetup "$d" 2>/dev/null | grep -q mix-s2.vmdk ||
			why="${why:+$why; }$d was detached"
	fi
	dmsetup remove mine >/dev/null 2>&1
	losetup -d "$d" 2>/dev/null
	[ -z "$why" ] && nothing_left
}
check "detach leaves a hand-made device and the user's loop alone" own_loop

# Names: NAME has at most 111 characters, so that every name derived from
# it (up to NAME-image4096) fits a dm uuid behind the prefix IMGFMT-.
letters()		# LEN: a string of LEN letters n
{
	printf "%${1}s" "" | tr ' ' n
}
# Remove what a wrongly accepted name may have left.
name_cleanup()		# NAME
{
	dmsetup remove "$1" >/dev/null 2>&1
	for h in $(dmsetup ls 2>/dev/null | awk '{ print $1 }'); do
		case $h in "$1"-image*) dmsetup remove "$h" >/dev/null 2>&1 ;; esac
	done
	rm -f /run/imgfmt/"$1"-image*.tail
}
name_longest()
{
	name=$(letters 111)
	"$I" attach --name "$name" mix_crlf.vmdk >"$T/out" 2>"$T/err" ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	dmsetup info "$name-image5" >/dev/null 2>&1 ||
		why="no helper device $name-image5"
	"$I" detach "$name" 2>"$T/err" ||
		{ why="detach failed: $(cat "$T/err")"; name_cleanup "$name"; return 1; }
	[ -z "$why" ] && nothing_left
}
check "a 111-character name with a helper device attaches and detaches" \
	name_longest
# 120 characters fit a dm name, and NAME-image5 still does (127), but
# its uuid would be cut: detach would not know it as its own.
name_too_long()
{
	name=$(letters 120)
	"$I" attach --name "$name" mix_crlf.vmdk >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 0 ] && "$I" detach "$name" >/dev/null 2>&1
	name_cleanup "$name"
	[ $rc -eq 2 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	[ "$(wc -l <"$T/err")" -eq 1 ] &&
		grep -q "is too long: 120 characters, at most 111" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
	nothing_left
}
check "attach refuses a 120-character name and sets nothing up" name_too_long
# Names made from long file names are cut and end in a hash of the whole
# file name: at most 111 characters, the same for the same file, and
# different for files whose names differ only at the end.
auto_names()
{
	long=$(letters 200)
	cp odd_qcow2.qcow2 "$T/${long}a.qcow2" &&
		cp odd_qcow2.qcow2 "$T/${long}b.qcow2" ||
		{ why="cannot copy odd_qcow2.qcow2"; return 1; }
	d1=$("$I" attach "$T/${long}a.qcow2" 2>"$T/err") ||
		{ why="attach a failed: $(cat "$T/err")"; return 1; }
	d2=$("$I" attach "$T/${long}b.qcow2" 2>"$T/err") ||
		why="attach b failed: $(cat "$T/err")"
	n1=${d1#/dev/mapper/}
	n2=${d2#/dev/mapper/}
	[ -n "$why" ] || [ "$n1" != "$n2" ] || why="both are named $n1"
	[ -n "$why" ] || [ ${#n1} -le 111 ] || why="$n1 is ${#n1} characters"
	for d in $n1 $n2; do
		"$I" detach "$d" 2>"$T/err" ||
			{ why="${why:+$why; }detach $d failed: $(cat "$T/err")"; }
	done
	[ -z "$why" ] || return 1
	d3=$("$I" attach "$T/${long}a.qcow2" 2>"$T/err") ||
		{ why="attach a again failed: $(cat "$T/err")"; return 1; }
	"$I" detach "$d3" 2>"$T/err" || why="detach failed: $(cat "$T/err")"
	rm -f "$T/${long}a.qcow2" "$T/${long}b.qcow2"
	[ "$d3" = "$d1" ] || why="${why:+$why; }first $d1, then $d3"
	[ -z "$why" ] && nothing_left
}
check "names made from long file names fit, differ and stay the same" \
	auto_names

# The documented limit, 4096 extents, under ulimit -n 256: attach holds a
# file and a loop device open per extent and raises the limit, the hard
# one too (root); then the device must read as the file.
many_extents()
{
	read -r _ file size md5 <many.list ||
		{ why="many.list missing"; return 1; }
	# shellcheck disable=SC3045 # busybox sh has ulimit -n
	dev=$( (ulimit -n 256 && "$I" attach --name many "$file") 2>"$T/err") ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	got=$(dmsetup table many | wc -l)
	[ "$got" -eq 4096 ] || why="$got targets"
	[ "$(blockdev --getsize64 "$dev")" = "$size" ] ||
		why="${why:+$why; }size $(blockdev --getsize64 "$dev")"
	got=$(md5_of <"$dev")
	[ "$got" = "$md5" ] || why="${why:+$why; }md5 $got, expected $md5"
	# shellcheck disable=SC3045
	(ulimit -n 256 && "$I" detach many) 2>"$T/err" ||
		{ why="${why:+$why; }detach failed: $(cat "$T/err")"; return 1; }
	[ -z "$why" ] && nothing_left
}
start=$(date +%s)
check "4096 extents attach and detach under ulimit -n 256" many_extents
echo "# 4096 extents took $(($(date +%s) - start)) s"

# The table by hand: loop devices from losetup, the table from imgfmt table.
by_hand()
{
	devs=
	for f in mix-f1.raw mix-s2.vmdk mix-f3.raw; do
		d=$(losetup -f) && losetup -r "$d" "$f" ||
			{ why="losetup $f failed"; break; }
		devs="$devs $d"
	done
	rc=1
	if [ -z "$why" ]; then
		# shellcheck disable=SC2086
		"$I" table mix_all.vmdk $devs >"$T/table" 2>"$T/err" &&
		dmsetup create manual --readonly <"$T/table" 2>>"$T/err" ||
			why="table or create failed: $(cat "$T/err")"
	fi
	if [ -z "$why" ]; then
		want=$(grep '^mix_all ' good.list | cut -d' ' -f4)
		got=$(md5_of </dev/mapper/manual)
		[ "$got" = "$want" ] && rc=0 || why="md5 $got, QEMU: $want"
		dmsetup remove manual
	fi
	for d in $devs; do
		losetup -d "$d"
	done
	[ $rc -eq 0 ] && nothing_left
}
check "imgfmt table | dmsetup create over losetup devices" by_hand

# Control: without the tail device, the compressed last cluster of
# odd_qcow2 (it ends in the partial sector) cannot be read.
control()
{
	d=$(losetup -f) && losetup -r "$d" odd_qcow2.qcow2 ||
		{ why="losetup failed"; return 1; }
	"$I" table odd_qcow2.qcow2 "$d" 2>/dev/null |
		dmsetup create ctl --readonly 2>"$T/err"
	if dmsetup info ctl >/dev/null 2>&1; then
		if dd if=/dev/mapper/ctl of=/dev/null bs=4096 skip=2 count=1 \
			2>/dev/null; then
			why="the last cluster read without the tail"
		fi
		dmsetup remove ctl
	else
		why="dmsetup create failed: $(cat "$T/err")"
	fi
	losetup -d "$d"
	[ -z "$why" ] && nothing_left
}
check "control: a bare loop hides the compressed tail" control

echo "# desc_vm_test: $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
