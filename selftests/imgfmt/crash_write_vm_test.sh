#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The write guarantee under power cuts: ext4 on a QCOW2 image through a
# read-write imgfmt table, with every write the target makes to the
# image's device recorded by dm-log-writes (imgfmt -> log-writes ->
# loop(image file)).  The log is then replayed onto a copy of the image
# as it was before, to every flush point and random entries between, and
# at each point, as after a crash there:
# - qemu-img check finds no corruption (exit 0, or 3: leaks only);
# - the disk QEMU reads (qemu-img convert) holds an ext4 that mounts (its
#   journal recovered) and is then clean for e2fsck -fn, which needs
#   every write flushed before the point and no sector showing data it
#   never held.
# ext4 is mounted with -o discard, so freed clusters are in the log too.
# QEMU's check alone also runs after every single entry of the log.  At
# the end of the log the image must be clean without leaks.
#
#   crash_write_vm_test.sh [IGNORED]
#
# Prints TAP lines ("ok N crash-write: ...") without a plan; exits
# non-zero when anything failed.  Plain POSIX sh (busybox).

export DM_DISABLE_UDEV=1
SUITE=crash-write
here=$(dirname "$0")
. "$here/vmlib.sh"
CRASH_NAME=crash_lw_img
. "$here/crashlib.sh"

for t in mkfs.ext4 e2fsck qemu-img "$REPLAY_LOG"; do
	command -v "$t" >/dev/null 2>&1 || bail "$t not found"
done
check "setup: tmpfs and the log-writes target" crash_setup || exit 1
MNT=$CRASH_DIR/mnt
mkdir -p "$MNT"
IMG_DEV=crash_img
VSIZE=$((32 * 1048576))

# Files written, renamed, unlinked and appended to, with fsyncs between.
fs_ops()		# fs_ops DIR
{
	_i=0
	while [ $_i -lt 5 ]; do
		_d=$1/d$((_i % 3))
		mkdir -p "$_d" &&
		dd if=/dev/urandom of="$1/f$_i" bs=4k count=$((_i * 3 + 1)) \
			conv=fsync 2>/dev/null &&
		mv "$1/f$_i" "$_d/g$_i" &&
		echo "step $_i" >>"$1/journal.txt" || return 1
		case $((_i % 3)) in
		1) sync ;;
		2) rm -f "$1"/d*/g$((_i - 2)) && sync ;;
		esac
		# A file of whole clusters, deleted two steps later: its
		# discards free clusters of the image.
		case $_i in
		0) dd if=/dev/urandom of="$1/big" bs=64k count=16 conv=fsync \
			2>/dev/null || return 1 ;;
		2) rm -f "$1/big" && sync ;;
		esac
		_i=$((_i + 1))
	done
	sync
}

# WORKLOAD: the imgfmt table over the log-writes device, ext4 on it.
workload()		# workload DEV
{
	dmsetup create "$IMG_DEV" \
		--table "0 $((VSIZE / 512)) imgfmt $1" 2>"$CRASH_DIR/err" ||
		{ why="imgfmt table: $(cat "$CRASH_DIR/err") $(dmesg | tail -n 1)"
		  return 1; }
	_r=0
	if mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 \
		"/dev/mapper/$IMG_DEV" >"$CRASH_DIR/mkfs.out" 2>&1 &&
	   crash_mark mkfs &&
	   mount -t ext4 -o discard "/dev/mapper/$IMG_DEV" "$MNT"; then
		fs_ops "$MNT" || { why="file operations failed"; _r=1; }
		umount "$MNT" || { why="$why; umount failed"; _r=1; }
	else
		why="mkfs or mount: $(cat "$CRASH_DIR/mkfs.out") $(dmesg | tail -n 1)"
		_r=1
	fi
	[ "$(status_field "$IMG_DEV" 14)" = rw ] ||
		{ why="$why; mode $(status_field "$IMG_DEV" 14)"; _r=1; }
	dmsetup remove "$IMG_DEV" || { why="$why; imgfmt remove"; _r=1; }
	return $_r
}

# At a crash point: QEMU finds no corruption, and its reading of the
# disk holds a consistent ext4 (after journal recovery, on a copy);
# POINT "first": before ext4 is complete, QEMU's check alone.
image_sane()		# image_sane DEV [POINT]
{
	qemu-img check -f qcow2 "$1" >"$CRASH_DIR/check.out" 2>&1
	_rc=$?
	case $_rc in
	0 | 3) ;;
	*) why="qemu-img check exit $_rc: $(grep -v '^$' "$CRASH_DIR/check.out" | head -n 4 | tr '\n' ' ')"
	   return 1 ;;
	esac
	rm -f "$CRASH_DIR/scratch"
	qemu-img convert -f qcow2 -O raw "$1" "$CRASH_DIR/scratch" ||
		{ why="qemu-img convert failed"; return 1; }
	# Before mkfs's first flush there may be no file system yet.
	[ "${2:-x}" = first ] && return 0
	crash_ext4_clean "$CRASH_DIR/scratch"
}

# The image before the workload: made by qemu-img, grown sparsely so the
# target has room to allocate.
rm -f "$CRASH_DIR/img0"
qemu-img create -q -f qcow2 -o cluster_size=64k "$CRASH_DIR/img0" "$VSIZE" &&
	truncate -s $((VSIZE + 8 * 1048576)) "$CRASH_DIR/img0" ||
	bail "cannot make the image"
check "record ext4 on a read-write qcow2 through log-writes" \
	crash_record "$CRASH_DIR/img0" workload || { crash_cleanup; exit 1; }
rm -f "$CRASH_DIR/img0"
echo "# crash-write: $CRASH_ENTRIES entries"

# ext4 mounted with -o discard frees clusters as it deletes: the log must
# hold the target's discards of them, so that every point below judges
# freeing too.
log_has_discards()
{
	_nd=$("$REPLAY_LOG" --log "$CRASH_LOG" --list | grep -c DISCARD)
	[ "$_nd" -gt 0 ] || { why="no discard in the log"; return 1; }
	echo "# crash-write: $_nd discards in the log"
}
check "the log holds the discards of freed clusters" log_has_discards

# mkfs.ext4 ends with an fsync, which the target commits before it
# completes: from the mark after it on, every point must hold ext4;
# before it the image only has to pass qemu-img check.
FIRST_FS=$(crash_mark_index mkfs)
[ -n "$FIRST_FS" ] || { crash_cleanup; bail "no mkfs mark in the log"; }
at_point()		# at_point DEV POINT
{
	if [ "$2" -le "$FIRST_FS" ]; then
		image_sane "$1" first
	else
		image_sane "$1" "$2"
	fi
}
check "no corruption at any point; ext4 clean after recovery from the mkfs mark on" \
	crash_replay_points at_point 0
echo "# crash-write: replayed $CRASH_NPOINTS points; ext4 checked from entry $FIRST_FS"

# Metadata order shows between flush points too (a table written before
# what it points at is not caught by a flush): QEMU's check after every
# single entry of the log.
qemu_ok_everywhere()
{
	crash_replay_dev || return 1
	_prev=0 _p=1
	while [ $_p -le "$CRASH_ENTRIES" ]; do
		"$REPLAY_LOG" --log "$CRASH_LOG" --replay "$CRASH_REPLAY_DEV" \
			--start "$_prev" --limit "$_p" 2>"$CRASH_DIR/err" ||
			{ why="replay to $_p: $(cat "$CRASH_DIR/err")"; return 1; }
		qemu-img check -f qcow2 "$CRASH_REPLAY_DEV" >"$CRASH_DIR/check.out" 2>&1
		case $? in
		0 | 3) ;;
		*) why="at entry $_p: $(grep -v '^$' "$CRASH_DIR/check.out" | head -n 3 | tr '\n' ' ')"
		   return 1 ;;
		esac
		_prev=$_p
		_p=$((_p + 1))
	done
}
check "no corruption after any single entry of the log ($CRASH_ENTRIES)" \
	qemu_ok_everywhere

end_clean()
{
	qemu-img check -f qcow2 "$CRASH_REPLAY_DEV" >"$CRASH_DIR/check.out" 2>&1 ||
		{ why="qemu-img check at the end: $(tr '\n' ' ' <"$CRASH_DIR/check.out")"; return 1; }
}
check "the whole log leaves the image clean, without leaks" end_clean
check "the replay to the end equals the image file" crash_replay_equals_data

crash_cleanup
check "nothing left behind" nothing_left
[ $failed -eq 0 ]
