#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# imgfmt attach --rw and detach of read-write disks, judged by QEMU.  Each
# image is made by qemu-img, attached read-write, written with dd (and a
# raw shadow file the same way), detached; then qemu-img check finds no
# error and no leak, the file ends at qemu-img check's image end,
# qemu-img convert -O raw equals the shadow, and the file stays sparse.
# While attached, the file is as large as qemu-img measure says a fully
# allocated image is (a little more), and uses no more space than before.
# Also ext4 on an image, partitions mapped read-write, a "crash" (the
# devices removed without detach) and the next attach that trims it, and
# the refusals, each with its message and the file left as it was.
#
#   attach_rw_vm_test.sh [WORKDIR]	(default /tmp/attach-rw)

DIR=${1:-/tmp/attach-rw}
export DM_DISABLE_UDEV=1
SUITE=attach_rw
. "$(dirname "$0")/vmlib.sh"

if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1; then
	n=$((n + 1))
	echo "ok $n $SUITE: attach --rw # SKIP no qemu-img or qemu-io in the guest"
	exit 0
fi
# Under the suite's argument, which run.sh gives as an image directory.
W=$DIR/attach-rw
rm -rf "$W"
mkdir -p "$W" || bail "cannot make $W"
NAME=imgfmt_rw
SIZE=$((64 * 1048576))

verdict()
{
	if [ -z "$why" ]; then
		ok "$1"
	else
		not_ok "$1" "$why"
	fi
}

size_of() { stat -c %s "$1"; }
# KiB the file uses.
used_of() { du -k "$1" | cut -f1; }

# The writes of every case: offset:bytes, within and across clusters and
# L2 tables, one at the very end.
WRITES="0:4096 65536:65536 70000:1024 1048576:1048576 33554432:12288
	33558016:512 67108352:512 100000:300000 4194304:2097152 4195328:4096"

# write_both DEV SHADOW: the same random bytes into both; the device's
# with fsync, which sends the flush that commits.
write_both()
{
	for w in $WRITES; do
		off=${w%%:*} len=${w#*:}
		head -c "$len" /dev/urandom >"$W/pat"
		dd if="$W/pat" of="$1" bs=512 seek=$((off / 512)) \
			conv=notrunc,fsync 2>/dev/null || return 1
		dd if="$W/pat" of="$2" bs=512 seek=$((off / 512)) \
			conv=notrunc 2>/dev/null || return 1
	done
	rm -f "$W/pat"
}

# attach IMG [ARGS...]: imgfmt attach --rw; DEVPATH is its device.
attach()
{
	_img=$1
	shift
	DEVPATH=$(imgfmt attach --rw --name "$NAME" "$@" "$_img" 2>"$W/err") && return 0
	why="attach --rw failed: $(cat "$W/err")"
	return 1
}

detach()
{
	imgfmt detach "$NAME" 2>"$W/err" && return 0
	why="detach failed: $(cat "$W/err")"
	return 1
}

# qemu_judges IMG SHADOW: no error, no leak, the file ends at the image's
# end, the same bytes as SHADOW.
qemu_judges()
{
	out=$(qemu-img check "$1" 2>&1)
	case $out in
	*"No errors were found"*) ;;
	*) why="qemu-img check: $(echo "$out" | tr '\n' ' ')"; return 1 ;;
	esac
	end=$(echo "$out" | sed -n 's/^Image end offset: //p')
	[ "$end" = "$(size_of "$1")" ] ||
		{ why="file is $(size_of "$1") bytes, image end $end"; return 1; }
	qemu-img convert -O raw "$1" "$W/conv.raw" || { why="convert failed"; return 1; }
	cmp -s "$W/conv.raw" "$2" ||
		{ why="contents differ: $(cmp "$W/conv.raw" "$2" | head -1)"; return 1; }
	rm -f "$W/conv.raw"
}

# grown_ok IMG OPTS USED: while attached, IMG is at least QEMU's fully
# allocated size (at most 1/500 and 4 MiB more) and uses no more space
# than USED KiB (the file before attach) and a cluster.
grown_ok()
{
	full=$(qemu-img measure -O qcow2 -o "$2" --size "$SIZE" |
		sed -n 's/^fully allocated size: //p')
	s=$(size_of "$1")
	if [ -z "$full" ] || [ "$s" -lt "$full" ] ||
		[ "$s" -gt $((full + full / 500 + 4194304)) ]; then
		why="grown to $s bytes, qemu-img measure says $full"
		return 1
	fi
	u=$(used_of "$1")
	[ "$u" -le $(($3 + 2048)) ] ||
		{ why="uses $u KiB after attach, $3 before"; return 1; }
}

# case_rw NAME CREATE-OPTS [BACKING-OPTS]: the whole round trip; with
# BACKING-OPTS the image is an overlay of a qcow2 holding data.
case_rw()
{
	name=$1 opts=$2 bopts=${3:-}
	why=""
	img=$W/$name.qcow2 shadow=$W/$name.raw base=$W/$name.base.qcow2
	rm -f "$img" "$shadow" "$base"
	if [ -n "$bopts" ]; then
		qemu-img create -q -f qcow2 -o "$bopts" "$base" "$SIZE" &&
			qemu-io -f qcow2 -c 'write -P 0x5c 0 3M' \
				-c 'write -P 0x6d 30M 5M' -c 'write -z 32M 64k' \
				"$base" >/dev/null &&
			qemu-img create -q -f qcow2 -o "$opts" -b "$base" -F qcow2 \
				"$img" "$SIZE"
	else
		qemu-img create -q -f qcow2 -o "$opts" "$img" "$SIZE"
	fi || { not_ok "$name" "qemu-img create"; return; }
	qemu-img convert -O raw "$img" "$shadow"
	before=$(used_of "$img")
	base_md5=$( [ -n "$bopts" ] && md5sum <"$base")
	if attach "$img"; then
		grown_ok "$img" "$opts" "$before"
		[ -z "$why" ] && { imgfmt list | grep -qx "mode: rw" || why="list shows no mode: rw"; }
		[ -z "$why" ] && { [ "$(status_field "$NAME" 14)" = rw ] || why="status mode $(status_field "$NAME" 14)"; }
		[ -z "$why" ] && { write_both "$DEVPATH" "$shadow" || why="a write failed"; }
		[ -z "$why" ] && { [ "$(status_field "$NAME" 7)" = 0 ] || why="io errors"; }
		detach || true
	fi
	[ -z "$why" ] && qemu_judges "$img" "$shadow"
	[ -z "$why" ] && [ "$(used_of "$img")" -gt $((SIZE / 1024 / 4)) ] &&
		why="uses $(used_of "$img") KiB: not sparse"
	[ -z "$why" ] && [ -n "$bopts" ] && [ "$(md5sum <"$base")" != "$base_md5" ] &&
		why="the backing file changed"
	verdict "$name: written, detached, judged by qemu-img"
	rm -f "$img" "$shadow" "$base"
}

case_rw plain_64k cluster_size=64k
case_rw refcount64_4k cluster_size=4k,refcount_bits=64
case_rw extended_l2 cluster_size=64k,extended_l2=on
case_rw v2 compat=0.10
case_rw overlay cluster_size=64k cluster_size=32k

# ext4 made and checked through the device, then through QEMU's reading.
why=""
img=$W/fs.qcow2
qemu-img create -q -f qcow2 "$img" 128M
if attach "$img"; then
	mkfs.ext4 -q -F "$DEVPATH" >/dev/null 2>&1 || why="mkfs.ext4 failed"
	[ -z "$why" ] && { e2fsck -fn "$DEVPATH" >/dev/null 2>&1 || why="e2fsck on the device"; }
	detach || true
fi
if [ -z "$why" ]; then
	out=$(qemu-img check "$img" 2>&1)
	case $out in
	*"No errors were found"*) ;;
	*) why="qemu-img check: $(echo "$out" | tr '\n' ' ')" ;;
	esac
	end=$(echo "$out" | sed -n 's/^Image end offset: //p')
	[ -z "$why" ] && [ "$end" != "$(size_of "$img")" ] && why="file is not cut to $end"
	qemu-img convert -O raw "$img" "$W/fs.raw"
	[ -z "$why" ] && { e2fsck -fn "$W/fs.raw" >/dev/null 2>&1 || why="e2fsck on QEMU's reading"; }
fi
verdict "ext4: mkfs and e2fsck -fn through the device and through QEMU"
rm -f "$img" "$W/fs.raw"

# Partitions are mapped read-write: an MBR with one partition at 1 MiB.
why=""
img=$W/part.qcow2
qemu-img create -q -f qcow2 "$img" "$SIZE"
mbr()
{
	# Entry 1: type 0x83, LBA 2048, 16384 sectors; then 0x55 0xaa.
	printf '\000\000\000\000\203\000\000\000\000\010\000\000\000\100\000\000' |
		dd of="$1" bs=1 seek=446 conv=notrunc,fsync 2>/dev/null &&
		printf '\125\252' | dd of="$1" bs=1 seek=510 conv=notrunc,fsync 2>/dev/null
}
if attach "$img"; then
	mbr "$DEVPATH" || why="cannot write the MBR"
	detach || true
fi
if [ -z "$why" ] && attach "$img"; then
	if [ -b "/dev/mapper/${NAME}p1" ]; then
		head -c 65536 /dev/urandom >"$W/pat"
		dd if="$W/pat" of="/dev/mapper/${NAME}p1" bs=64k seek=1 \
			conv=notrunc,fsync 2>/dev/null || why="cannot write the partition"
	else
		why="no partition mapped"
	fi
	detach || true
	if [ -z "$why" ]; then
		qemu-img check -q "$img" || why="qemu-img check"
		qemu-img convert -O raw "$img" "$W/part.raw"
		dd if="$W/part.raw" bs=64k skip=17 count=1 2>/dev/null | cmp -s - "$W/pat" ||
			why="the partition's write is not in the image"
	fi
fi
verdict "partitions of a read-write disk are read-write"
rm -f "$img" "$W/part.raw" "$W/pat"

# A "crash": the devices removed without detach, the file left large and
# sparse.  QEMU accepts it; the next attach --rw drops what lies past the
# image's end (it reads as zeroes) and detach cuts the file.
why=""
img=$W/crash.qcow2 shadow=$W/crash.raw
qemu-img create -q -f qcow2 "$img" "$SIZE"
qemu-img convert -O raw "$img" "$shadow"
if attach "$img"; then
	write_both "$DEVPATH" "$shadow" || why="a write failed"
	big=$(size_of "$img")
	dmsetup remove "$NAME" || why="${why:-dmsetup remove failed}"
fi
if [ -z "$why" ]; then
	out=$(qemu-img check "$img" 2>&1)
	case $out in
	*"No errors were found"*) ;;
	*) why="qemu-img check after the crash: $(echo "$out" | tr '\n' ' ')" ;;
	esac
	end=$(echo "$out" | sed -n 's/^Image end offset: //p')
	[ -z "$why" ] && [ "$(size_of "$img")" -le "$end" ] &&
		why="the file is $(size_of "$img") bytes after the crash, image end $end"
	[ -z "$why" ] && [ "$(size_of "$img")" != "$big" ] && why="the file changed size"
	# What a crash leaves past the end: clusters no refcount covers.
	head -c 65536 /dev/urandom | dd of="$img" bs=64k seek=$((end / 65536 + 3)) \
		conv=notrunc 2>/dev/null
fi
if [ -z "$why" ] && attach "$img"; then
	[ "$(dd if="$img" bs=64k skip=$((end / 65536 + 3)) count=1 2>/dev/null |
		tr -d '\000' | wc -c)" -eq 0 ] || why="the tail past the image's end was kept"
	detach || true
	[ -z "$why" ] && qemu_judges "$img" "$shadow"
fi
verdict "a crash leaves a larger file QEMU accepts; the next attach and detach cut it"
rm -f "$img" "$shadow"

# An image on a block device: not resized, it grows up to the device's end.
why=""
img=$W/blk.qcow2 shadow=$W/blk.raw
qemu-img create -q -f qcow2 "$img" "$SIZE"
qemu-img convert -O raw "$img" "$shadow"
truncate -s $((SIZE + 16 * 1048576)) "$img"
blk=$(losetup -f) && losetup "$blk" "$img" || why="losetup failed"
if [ -z "$why" ] && attach "$blk"; then
	write_both "$DEVPATH" "$shadow" ||
		why="a write failed"
	detach || true
	[ "$(size_of "$img")" = $((SIZE + 16 * 1048576)) ] ||
		why="${why:-the file under the block device changed size}"
fi
[ -n "$blk" ] && losetup -d "$blk"
if [ -z "$why" ]; then
	qemu-img check -q "$img" || why="qemu-img check"
	qemu-img convert -O raw "$img" "$W/conv.raw"
	cmp -s "$W/conv.raw" "$shadow" || why="contents differ"
fi
verdict "an image on a block device: written in place, not resized"
rm -f "$img" "$shadow" "$W/conv.raw"

# refused NAME WORDS IMG [ARGS...]: attach --rw fails with WORDS, leaves
# nothing behind and the file as it was.
refused()
{
	name=$1 words=$2 img=$3
	shift 3
	why=""
	md5=$(md5sum <"$img") sz=$(size_of "$img")
	if out=$(imgfmt attach --rw --name "$NAME" "$@" "$img" 2>&1); then
		imgfmt detach "$NAME" >/dev/null 2>&1
		why="attached: $out"
	else
		[ "$(echo "$out" | wc -l)" -eq 1 ] || why="not one line: $out"
		case $out in
		*"$words"*) ;;
		*) why="${why:-not the message expected: $out}" ;;
		esac
	fi
	[ "$(md5sum <"$img")" = "$md5" ] && [ "$(size_of "$img")" = "$sz" ] ||
		why="${why:-the file changed}"
	[ -z "$why" ] && nothing_left
	verdict "refused: $name"
}
qemu-img create -q -f vmdk "$W/r.vmdk" 16M
refused "a vmdk" "this image format (vmdk) cannot be written yet" "$W/r.vmdk"
qemu-img create -q -f qcow "$W/r.qcow" 16M
refused "a qcow (v1)" "this image format (qcow) cannot be written yet" "$W/r.qcow"
qemu-img create -q -f qcow2 "$W/r.qcow2" 16M
qemu-img snapshot -c s1 "$W/r.qcow2"
refused "--snapshot" "--snapshot maps a snapshot read-only, not with --rw" \
	"$W/r.qcow2" --snapshot s1
refused "internal snapshots" "internal snapshots are not supported yet" "$W/r.qcow2"
refused "--force-share" "--force-share is for read-only attach" "$W/r.qcow2" -U
qemu-img create -q -f qcow2 "$W/d.qcow2" 16M
# The dirty bit (incompatible feature bit 0), set by hand; then corrupt.
printf '\001' | dd of="$W/d.qcow2" bs=1 seek=79 conv=notrunc 2>/dev/null
refused "the dirty bit" "QCOW2 image is dirty: run qemu-img check -r all first" "$W/d.qcow2"
printf '\002' | dd of="$W/d.qcow2" bs=1 seek=79 conv=notrunc 2>/dev/null
refused "the corrupt bit" "QCOW2 image is marked corrupt: run qemu-img check -r all first" "$W/d.qcow2"
# A file on a read-only file system.
mkdir -p "$W/ro"
if mount -t tmpfs tmpfs "$W/ro"; then
	qemu-img create -q -f qcow2 "$W/ro/r.qcow2" 16M
	if mount -o remount,ro "$W/ro"; then
		refused "a read-only file" "cannot open it for writing: Read-only file system" "$W/ro/r.qcow2"
	else
		not_ok "refused: a read-only file" "remount ro failed"
	fi
	umount "$W/ro"
else
	not_ok "refused: a read-only file" "no tmpfs"
fi

# A read-only attach shows its mode too.
why=""
qemu-img create -q -f qcow2 "$W/ro.qcow2" 16M
sz=$(size_of "$W/ro.qcow2")
if imgfmt attach --name "$NAME" "$W/ro.qcow2" >/dev/null 2>"$W/err"; then
	imgfmt list | grep -qx "mode: ro" || why="list shows no mode: ro"
	imgfmt detach "$NAME" || why="${why:-detach failed}"
	[ "$(size_of "$W/ro.qcow2")" = "$sz" ] || why="${why:-a read-only detach changed the file}"
else
	why="attach failed: $(cat "$W/err")"
fi
verdict "a read-only disk is listed as ro and its file left alone"

rm -rf "$W"
why=""
nothing_left
verdict "no device and no loop left behind"
echo "# attach_rw_vm_test.sh: $n tests, $failed failed"
[ "$failed" -eq 0 ]
