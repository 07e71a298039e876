#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM test of the crash replay harness (crashlib.sh) and of replay-log,
# over ext4 as a workload whose crash behaviour is known: the file system
# is consistent after journal recovery at every entry of its write log.
#
#   crash_vm_test.sh [IGNORED]
#
# mkfs.ext4, a mark, then file operations with fsync (create, write,
# rename, unlink, append; discards on) through dm-log-writes; then a
# fresh device is replayed, step by step with --start, to every flush
# point and a few random entries after the mark, and at each the file
# system must mount (the kernel's journal recovery, on a copy) and then
# pass e2fsck -fn.  At the end the replay must equal the data device byte
# for byte.  Prints TAP lines ("ok N crash: ...") without a plan; exits
# non-zero when anything failed.  Plain POSIX sh (busybox).

export DM_DISABLE_UDEV=1
SUITE=crash
here=$(dirname "$0")
. "$here/vmlib.sh"
. "$here/crashlib.sh"

for t in mkfs.ext4 e2fsck "$REPLAY_LOG"; do
	command -v "$t" >/dev/null 2>&1 || bail "$t not found"
done
check "setup: tmpfs and the log-writes target" crash_setup || exit 1
MNT=$CRASH_DIR/mnt
mkdir -p "$MNT"

# Files made, written, renamed, unlinked and appended to, with fsyncs and
# syncs between, so that the log has flushes from every kind of commit.
fs_ops()		# fs_ops DIR
{
	_i=0
	while [ $_i -lt 4 ]; do
		_d=$1/d$((_i % 3))
		mkdir -p "$_d" &&
		dd if=/dev/urandom of="$1/f$_i" bs=4k count=$((_i % 5 + 1)) \
			conv=fsync 2>/dev/null &&
		mv "$1/f$_i" "$_d/g$_i" &&
		echo "step $_i" >>"$1/journal.txt" || return 1
		case $((_i % 4)) in
		1) sync "$_d/g$_i" ;;
		2) rm -f "$1"/d*/g$((_i - 2)) && sync ;;
		3) dd if=/dev/urandom of="$_d/g$_i" bs=1k count=3 seek=2 \
			conv=notrunc,fsync 2>/dev/null ;;
		esac
		_i=$((_i + 1))
	done
	sync
}

workload()		# workload DEV
{
	mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 \
		"$1" >"$CRASH_DIR/mkfs.out" 2>&1 ||
		{ why="mkfs.ext4: $(cat "$CRASH_DIR/mkfs.out")"; return 1; }
	crash_mark mkfs || return 1
	mount -t ext4 -o discard "$1" "$MNT" ||
		{ why="mount: $(dmesg | tail -n 2)"; return 1; }
	_r=0
	fs_ops "$MNT" || { why="file operations failed"; _r=1; }
	umount "$MNT" || { why="$why; umount failed"; _r=1; }
	return $_r
}

# The file system on DEV after a crash there, on a copy (the check
# recovers the journal).
fs_clean()		# fs_clean DEV [POINT]
{
	_img=$(crash_scratch "$1") || { why="copy failed"; return 1; }
	crash_ext4_clean "$_img"
}

# At one point in the middle the step-by-step replay must equal a replay
# of entries [0, POINT) at once; MID_RESULT says how that went.
MID=
MID_RESULT="not reached"
at_point()		# at_point DEV POINT
{
	if [ "$2" = "$MID" ]; then
		cp "$CRASH_DIR/initial" "$CRASH_DIR/whole" &&
		"$REPLAY_LOG" --log "$CRASH_LOG" --replay "$CRASH_DIR/whole" \
			--limit "$2" 2>"$CRASH_DIR/err" &&
		cmp "$1" "$CRASH_DIR/whole" >"$CRASH_DIR/err" 2>&1 &&
		MID_RESULT=ok || MID_RESULT="at $2: $(cat "$CRASH_DIR/err")"
		rm -f "$CRASH_DIR/whole"
	fi
	fs_clean "$1"
}

truncate -s 32M "$CRASH_DIR/zero32" || bail "truncate failed"
check "record mkfs.ext4 and file operations through log-writes" \
	crash_record "$CRASH_DIR/zero32" workload || { crash_cleanup; exit 1; }
echo "# crash: $CRASH_ENTRIES entries, $(du -k "$CRASH_DIR/log" | cut -f1) KiB of log"

"$REPLAY_LOG" --log "$CRASH_LOG" --list >"$CRASH_DIR/list"
# What the log must show of the workload: the mark after mkfs, the end
# mark last, flushes and FUA writes (ext4's commits) and discards.
log_shows_workload()
{
	_last=$(tail -n 1 "$CRASH_DIR/list")
	case $_last in
	"$((CRASH_ENTRIES - 1)) "*" MARK dm-log-writes-end") ;;
	*) why="last entry: $_last"; return 1 ;;
	esac
	[ "$(wc -l <"$CRASH_DIR/list")" -eq "$CRASH_ENTRIES" ] ||
		{ why="--list has $(wc -l <"$CRASH_DIR/list") lines"; return 1; }
	MARK=$(crash_mark_index mkfs)
	[ -n "$MARK" ] || { why="no mkfs mark"; return 1; }
	for _f in FLUSH FUA DISCARD; do
		awk -v f="$_f" -v m="$MARK" '$1 > m && $4 ~ f { n++ }
			END { exit !n }' "$CRASH_DIR/list" ||
			{ why="no $_f entry after the mark"; return 1; }
	done
}
check "--list shows the marks, flushes, FUA writes and discards" \
	log_shows_workload || MARK=$(crash_mark_index mkfs)
[ -n "$MARK" ] || { crash_cleanup; bail "no mkfs mark"; }

# The checker can fail: before any entry there is no file system.
no_fs_at_zero()
{
	crash_replay_dev || return 1
	! fs_clean "$CRASH_REPLAY_DEV" || { why="clean without mkfs"; return 1; }
}
check "the check fails with nothing replayed (entry 0)" no_fs_at_zero

# --end-mark replays entries [0, MARK]: the file system mkfs made.
end_mark_fs()
{
	crash_replay_dev &&
	"$REPLAY_LOG" --log "$CRASH_LOG" --replay "$CRASH_REPLAY_DEV" \
		--end-mark mkfs 2>"$CRASH_DIR/err" ||
		{ why="replay: $(cat "$CRASH_DIR/err")"; return 1; }
	fs_clean "$CRASH_REPLAY_DEV"
}
check "--end-mark mkfs replays a clean file system" end_mark_fs

# Every point from just after the mark: the flush points, random ones.
FROM=$((MARK + 1))
# shellcheck disable=SC2046 # one word per point
set -- $(crash_points "$FROM")
MID=$(eval "echo \${$((($# + 1) / 2))}")
nflush=$("$REPLAY_LOG" --log "$CRASH_LOG" --flush-points --start "$FROM" | wc -l)
check "clean after recovery at every flush point and random entries ($# points, $nflush after flushes)" \
	crash_replay_points at_point "$FROM"
echo "# crash: replayed $CRASH_NPOINTS points from entry $FROM"
mid_matches()
{
	[ "$MID_RESULT" = ok ] || { why=$MID_RESULT; return 1; }
}
check "replay in --start steps equals one replay to entry $MID" mid_matches
check "the replay to the end equals the data device" crash_replay_equals_data

crash_cleanup
check "nothing left behind" nothing_left
[ $failed -eq 0 ]
