#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of partitions through `imgfmt attach` (NAMEpN devices over
# the disk), `imgfmt detach` (partitions first; refused while anything is
# open or mounted), `imgfmt list` and automatic names.
#
#   part_vm_test.sh [IMAGEDIR]
#
# IMAGEDIR (default $IMGFMT_IMAGES/part, else /payload/images/part) is what
# mkimages-part.sh made: part.list and the qcow2 images it names.  The
# imgfmt helper is $IMGFMT, else the one in PATH.  Needs root, the loop,
# dm-mod, dm-imgfmt and ext4 modules, dmsetup and busybox (blockdev,
# losetup, mount, md5sum).  Prints TAP lines ("ok N part: ...") without a
# plan; exits non-zero when anything failed.  Plain POSIX sh (busybox).

DIR=${1:-${IMGFMT_IMAGES:-/payload/images}/part}
I=${IMGFMT:-imgfmt}
export DM_DISABLE_UDEV=1
SUITE=part
. "$(dirname "$0")/vmlib.sh"

cd "$DIR" 2>/dev/null || bail "no image directory $DIR"
# Loop devices show the absolute path of their file.
DIR=$(pwd -P)
[ -s part.list ] || bail "$DIR/part.list missing or empty"
command -v "$I" >/dev/null 2>&1 || bail "imgfmt helper '$I' not found"
T=$(mktemp -d /tmp/part.XXXXXX) || bail "mktemp failed"
MNT=$T/mnt
mkdir -p "$MNT"
trap 'umount "$MNT" 2>/dev/null; rm -rf "$T"' EXIT

# The device name of an image: its file name without .qcow2, prefixed.
dname()			# IMAGE
{
	echo "pt_${1%.qcow2}"
}

# The partition devices IMAGE must get, in order.
want_parts()		# IMAGE
{
	awk -v img="$1" -v d="$(dname "$1")" \
		'$1 == "part" && $2 == img { print d "p" $3 }' part.list
}

# attach prints the disk's path alone (scripts use it as it is); the
# partitions are there as well, and no other NAMEpN.
attach_parts()		# IMAGE
{
	name=$(dname "$1")
	out=$("$I" attach --name "$name" "$1" 2>"$T/err") ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	[ "$out" = "/dev/mapper/$name" ] ||
		{ why="attach printed '$out'"; return 1; }
	want=$(want_parts "$1")
	got=$(dmsetup ls | awk -v d="${name}p" '
		substr($1, 1, length(d)) == d {
			s = substr($1, length(d) + 1)
			if (s ~ /^[0-9]+$/) print s, $1
		}' | sort -n | cut -d' ' -f2)
	[ "$got" = "$want" ] ||
		{ why="partitions '$got', expected '$want'"; return 1; }
	for p in $want; do
		[ -b "/dev/mapper/$p" ] || { why="no /dev/mapper/$p"; return 1; }
	done
}

# Each partition: the size sfdisk gave it, read-only, QEMU's bytes.
part_ok()		# IMAGE PARTNO START SECTORS MD5
{
	dev=/dev/mapper/$(dname "$1")p$2
	[ -b "$dev" ] || { why="no $dev"; return 1; }
	got=$(blockdev --getsz "$dev")
	[ "$got" = "$4" ] || { why="$dev: $got sectors, sfdisk: $4"; return 1; }
	[ "$(blockdev --getro "$dev")" = 1 ] ||
		{ why="$dev is not read-only"; return 1; }
	got=$(dmsetup table "$(dname "$1")p$2" | awk '{ print $3, $5 }')
	[ "$got" = "linear $3" ] ||
		{ why="table '$got', expected 'linear $3'"; return 1; }
	got=$(md5_of <"$dev")
	[ "$got" = "$5" ] || { why="md5 $got, QEMU: $5"; return 1; }
}

part_absent()		# IMAGE PARTNO
{
	[ ! -e "/dev/mapper/$(dname "$1")p$2" ] &&
		! dmsetup info "$(dname "$1")p$2" >/dev/null 2>&1 ||
		{ why="partition $2 is mapped"; return 1; }
}

# The ext4 mounts read-only without replaying a journal; the file is
# the one mkfs.ext4 -d put there.
file_ok()		# IMAGE PARTNO PATH MD5
{
	if [ "$2" = 0 ]; then
		dev=/dev/mapper/$(dname "$1")
	else
		dev=/dev/mapper/$(dname "$1")p$2
	fi
	mount -t ext4 -o ro,noload "$dev" "$MNT" 2>"$T/err" ||
		{ why="mount failed: $(cat "$T/err")"; return 1; }
	got=$(md5_of <"$MNT$3")
	[ "$got" = "$4" ] || why="md5 of $3: $got, expected $4"
	# Keep it mounted for the next check when it passed.
	[ -z "$why" ] || { umount "$MNT"; return 1; }
}

# detach refuses in one line naming the busy device, and changes nothing.
refused_busy()		# NAME BUSY
{
	before=$(state)
	"$I" detach "$1" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	[ "$(wc -l <"$T/err")" -eq 1 ] &&
		grep -qxF "imgfmt: cannot remove '$2': it is in use (mounted or open)" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
	[ "$(state)" = "$before" ] || { why="the stack changed: $(state)"; return 1; }
}

mounted_refused()	# NAME BUSY
{
	refused_busy "$@"
	rc=$?
	umount "$MNT" || { why="${why:+$why; }umount failed"; return 1; }
	return $rc
}

held_refused()		# NAME DEVICE-NAME
{
	exec 3<"/dev/mapper/$2"
	refused_busy "$@"
	rc=$?
	exec 3<&-
	return $rc
}

detach_clean()		# NAME
{
	"$I" detach "$1" >"$T/out" 2>"$T/err" ||
		{ why="detach failed: $(cat "$T/err")"; return 1; }
	[ ! -s "$T/out" ] || { why="stdout: $(cat "$T/out")"; return 1; }
	nothing_left
}

# `imgfmt list`: one entry per disk (no helper or partition of its own),
# its image file and its partitions.
list_ok()		# IMAGE
{
	name=$(dname "$1")
	"$I" list >"$T/list" 2>"$T/err" ||
		{ why="list failed: $(cat "$T/err")"; return 1; }
	[ "$(grep -c '^name: ' "$T/list")" -eq 1 ] &&
		grep -qxF "name: $name" "$T/list" ||
		{ why="list: $(cat "$T/list")"; return 1; }
	grep -qxF "file: $DIR/$1" "$T/list" ||
		{ why="no file line for $DIR/$1: $(cat "$T/list")"; return 1; }
	want=$(awk -v img="$1" -v d="$name" '$1 == "part" && $2 == img {
		print "partition: " d "p" $3 " /dev/mapper/" d "p" $3 " " $4 " " $5 }' part.list)
	got=$(grep '^partition: ' "$T/list")
	[ "$got" = "$want" ] ||
		{ why="partitions '$got', expected '$want'"; return 1; }
	"$I" list --output=json >"$T/json" 2>"$T/err" ||
		{ why="list --output=json failed: $(cat "$T/err")"; return 1; }
	grep -qF "\"file\": \"$DIR/$1\"" "$T/json" &&
		grep -qF "\"name\": \"$name\"" "$T/json" ||
		{ why="json: $(cat "$T/json")"; return 1; }
	# The host checks that this parses (run by hand; see the commit).
	sed 's/^/# list-json: /' "$T/json"
}

while read -r kind image _ <&4; do
	[ "$kind" = disk ] || continue
	name=$(dname "$image")
	check "attach $image: prints the disk, makes its partitions" \
		attach_parts "$image"
	if ! dmsetup info "$name" >/dev/null 2>&1; then
		check "failed attach of $image leaves nothing" nothing_left
		continue
	fi
	while read -r k img p start sectors md5; do
		[ "$k" = part ] && [ "$img" = "$image" ] || continue
		check "$image partition $p: size, table, read-only, md5" \
			part_ok "$image" "$p" "$start" "$sectors" "$md5"
	done <part.list
	while read -r k img p; do
		[ "$k" = skip ] && [ "$img" = "$image" ] || continue
		check "$image partition $p is not mapped" part_absent "$image" "$p"
	done <part.list
	if ! grep -q "^part $image " part.list; then
		check "$image has no partition devices" part_absent "$image" 1
	fi
	check "list shows $image with its file and partitions" list_ok "$image"
	first=
	while read -r k img p path md5; do
		[ "$k" = file ] && [ "$img" = "$image" ] || continue
		check "$image partition $p: ext4 mounts ro,noload, md5 of $path" \
			file_ok "$image" "$p" "$path" "$md5" || continue
		busy=$name
		[ "$p" = 0 ] || busy=${name}p$p
		check "$image: detach refused while $busy is mounted" \
			mounted_refused "$name" "$busy"
		[ -n "$first" ] || first=$p
	done <part.list
	if [ -n "$first" ] && [ "$first" != 0 ]; then
		check "$image: detach refused while partition $first is held open" \
			held_refused "$name" "${name}p$first"
	fi
	check "$image: detach refused while the disk is held open" \
		held_refused "$name" "$name"
	check "detach $image leaves no device, node or loop" detach_clean "$name"
done 4<part.list

# The note for a partition past the end of the disk.
past_note()
{
	"$I" attach --name pt_note past.qcow2 >"$T/out" 2>"$T/err" ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	grep -q "^imgfmt: note: .*partition 2 .* is not mapped: extends past the end of the disk$" "$T/err" ||
		why="stderr: $(cat "$T/err")"
	"$I" detach pt_note 2>>"$T/err" || why="${why:+$why; }detach failed"
	[ -z "$why" ] && nothing_left
}
check "a partition past the end of the disk is noted, not mapped" past_note

# detach of a partition names the disk instead, and removes nothing.
detach_part()
{
	"$I" attach --name pt_dp gpt.qcow2 >/dev/null 2>"$T/err" ||
		{ why="attach failed: $(cat "$T/err")"; return 1; }
	before=$(state)
	"$I" detach pt_dpp2 >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 2 ] && grep -qxF "imgfmt: 'pt_dpp2' is partition 2 of 'pt_dp': detach 'pt_dp'" "$T/err" ||
		why="exit status $rc: $(cat "$T/err")"
	[ "$(state)" = "$before" ] || why="${why:+$why; }the stack changed"
	"$I" detach pt_dp 2>"$T/err" ||
		why="${why:+$why; }detach failed: $(cat "$T/err")"
	[ -z "$why" ] && nothing_left
}
check "detach of a partition is refused, naming its disk" detach_part

# A partition name that is taken fails the attach, which undoes itself.
taken()
{
	dmsetup create pt_takenp5 --table "0 8 zero" >/dev/null 2>&1 ||
		{ why="cannot create pt_takenp5"; return 1; }
	BASE=$(state)
	"$I" attach --name pt_taken mbr.qcow2 >"$T/out" 2>"$T/err"
	rc=$?
	nothing_left
	left=$?
	dmsetup remove pt_takenp5 >/dev/null 2>&1
	BASE=$(state)
	[ $left -eq 0 ] || return 1
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat "$T/err")"; return 1; }
	[ ! -s "$T/out" ] || { why="stdout: $(cat "$T/out")"; return 1; }
	grep -qxF "imgfmt: a device-mapper device named 'pt_takenp5' already exists" "$T/err" ||
		{ why="stderr: $(cat "$T/err")"; return 1; }
}
check "a taken partition name fails attach and undoes it all" taken

# Automatic names: a clean base name is kept; one that had to be changed
# gets a hash, so "a b" and "a_b" no longer collide.
auto_names()
{
	cp plain.qcow2 "$T/a b.qcow2" && cp plain.qcow2 "$T/a_b.qcow2" ||
		{ why="cannot copy plain.qcow2"; return 1; }
	d1=$("$I" attach "$T/a_b.qcow2" 2>"$T/err") ||
		{ why="attach a_b failed: $(cat "$T/err")"; return 1; }
	d2=$("$I" attach "$T/a b.qcow2" 2>"$T/err") ||
		why="attach 'a b' failed: $(cat "$T/err")"
	[ -n "$why" ] || [ "$d1" = /dev/mapper/a_b ] || why="a_b.qcow2 became $d1"
	case ${d2#/dev/mapper/} in
	a_b-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
	*) [ -n "$why" ] || why="'a b.qcow2' became '$d2'" ;;
	esac
	for d in $d1 $d2; do
		"$I" detach "$d" 2>"$T/err" ||
			why="${why:+$why; }detach $d failed: $(cat "$T/err")"
	done
	[ -z "$why" ] || return 1
	d3=$("$I" attach "$T/a b.qcow2" 2>"$T/err") ||
		{ why="attach 'a b' again failed: $(cat "$T/err")"; return 1; }
	"$I" detach "$d3" 2>"$T/err" || why="detach failed: $(cat "$T/err")"
	[ "$d3" = "$d2" ] || why="${why:+$why; }first $d2, then $d3"
	rm -f "$T/a b.qcow2" "$T/a_b.qcow2"
	[ -z "$why" ] && nothing_left
}
check "automatic names: 'a b' and 'a_b' differ, clean names are kept" \
	auto_names

# list with nothing attached: no entries, valid empty output.
list_empty()
{
	"$I" list >"$T/list" 2>"$T/err" ||
		{ why="list failed: $(cat "$T/err")"; return 1; }
	[ ! -s "$T/list" ] || { why="list: $(cat "$T/list")"; return 1; }
	"$I" list --output=json >"$T/json" 2>"$T/err" ||
		{ why="list --output=json failed: $(cat "$T/err")"; return 1; }
	[ "$(tr -d ' \n' <"$T/json")" = '{"devices":[]}' ] ||
		{ why="json: $(cat "$T/json")"; return 1; }
}
check "list with nothing attached is empty" list_empty

echo "# part_vm_test: $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
