# SPDX-License-Identifier: GPL-2.0-only
#
# Crash replay for the in-VM suites (sourced; plain POSIX sh, busybox):
# record every write a workload makes with dm-log-writes, then replay the
# log onto a fresh copy of the device's first contents and look at it at
# chosen entries, each one a power cut just there.
#
#   crash_setup                   tmpfs on CRASH_DIR for every file below
#   crash_record INITIAL WORKLOAD [ARGS...]
#                                 the data device starts as a copy of the
#                                 file INITIAL; runs WORKLOAD DEV ARGS...
#                                 with DEV the log-writes device over it
#   crash_mark NAME               (in WORKLOAD) a mark in the log
#   crash_points [FROM]           the replay points: FROM, every flush
#                                 point after it, CRASH_RANDOM indexes in
#                                 between, and the log's end
#   crash_replay_points CALLBACK [FROM]
#                                 replays a copy of INITIAL to each point in
#                                 turn (replay-log --start), and runs
#                                 CALLBACK DEV POINT at each
#   crash_replay_equals_data      after it: the replay is the data device
#   crash_ext4_clean FILE         the ext4 in FILE, mounted and unmounted
#                                 (journal recovery), is clean for e2fsck
#   crash_cleanup                 removes all of it
#
# The stack is WORKLOAD's device -> log-writes -> loop(data file): for an
# image test, WORKLOAD puts its imgfmt table over DEV, so that the writes
# the target makes to the image are what the log holds, and CALLBACK gets
# the replayed device holding the image as it was at POINT.  CALLBACK must
# not write to DEV (the next step continues from it): to change it, copy
# it first (crash_scratch).  Functions set $why when they fail, as
# vmlib.sh's check wants.  REPLAY_LOG is the replay tool (from PATH).

CRASH_DIR=${CRASH_DIR:-/tmp/crash}
CRASH_NAME=${CRASH_NAME:-crash_lw}
# The log file is sparse: only what is logged takes memory.
CRASH_LOG_MB=${CRASH_LOG_MB:-512}
CRASH_RANDOM=${CRASH_RANDOM:-6}
CRASH_SEED=${CRASH_SEED:-$(date +%s)}
REPLAY_LOG=${REPLAY_LOG:-replay-log}
CRASH_LOOPS=
CRASH_LOG=
CRASH_REPLAY_DEV=

crash_setup()
{
	mkdir -p "$CRASH_DIR" &&
	mount -t tmpfs -o size=512m tmpfs "$CRASH_DIR" ||
		{ why="cannot mount a tmpfs on $CRASH_DIR"; return 1; }
	# The data device's loop passes discards to tmpfs, which punches
	# holes: discarded sectors then read zeroes, as replay-log writes.
	dmsetup targets | grep -q '^log-writes ' ||
		{ why="no log-writes target (module dm-log-writes)"; return 1; }
}

# A read-write loop device over FILE, in $_loop (not printed: a command
# substitution's subshell would lose CRASH_LOOPS).
crash_loop()		# crash_loop FILE
{
	_loop=$(losetup -f) && losetup "$_loop" "$1" || return 1
	CRASH_LOOPS="$CRASH_LOOPS $_loop"
}

crash_unloop()		# crash_unloop DEV
{
	losetup -d "$1" || return 1
	_l=
	for _d in $CRASH_LOOPS; do
		[ "$_d" = "$1" ] || _l="$_l $_d"
	done
	CRASH_LOOPS=$_l
}

crash_mark()		# crash_mark NAME
{
	dmsetup message "$CRASH_NAME" 0 mark "$1" ||
		{ why="mark $1 failed"; return 1; }
}

# Runs WORKLOAD over the log-writes device; the log is CRASH_LOG (a loop
# device), the data device's file stays as CRASH_DIR/data.
crash_record()		# crash_record INITIAL WORKLOAD [ARGS...]
{
	_init=$1
	shift
	cp "$_init" "$CRASH_DIR/initial" && cp "$_init" "$CRASH_DIR/data" &&
	truncate -s "${CRASH_LOG_MB}M" "$CRASH_DIR/log" ||
		{ why="cannot copy $_init to $CRASH_DIR"; return 1; }
	crash_loop "$CRASH_DIR/data" && _data=$_loop &&
	crash_loop "$CRASH_DIR/log" && CRASH_LOG=$_loop ||
		{ why="losetup failed"; return 1; }
	_sz=$(blockdev --getsz "$_data")
	dmsetup create "$CRASH_NAME" \
		--table "0 $_sz log-writes $_data $CRASH_LOG" 2>"$CRASH_DIR/err" ||
		{ why="log-writes: $(cat "$CRASH_DIR/err") $(dmesg | tail -n 2)"
		  return 1; }
	_rc=0
	_wl=$1
	shift
	"$_wl" "/dev/mapper/$CRASH_NAME" "$@" || _rc=1
	_w=$why
	# The target disables logging when the log is full: the log would
	# then not hold every write, and replays would not mean anything.
	if dmsetup status "$CRASH_NAME" | grep -q logging_disabled; then
		_w="$_w; the log filled up (raise CRASH_LOG_MB)"
		_rc=1
	fi
	# Removal logs the writes not flushed yet, and the end mark.
	dmsetup remove "$CRASH_NAME" || { _w="$_w; remove failed"; _rc=1; }
	crash_unloop "$_data" || _rc=1
	why=$_w
	[ $_rc -eq 0 ] || return 1
	CRASH_ENTRIES=$("$REPLAY_LOG" --log "$CRASH_LOG" --info 2>"$CRASH_DIR/err" |
		sed -n 's/^entries //p')
	[ -n "$CRASH_ENTRIES" ] ||
		{ why="replay-log --info: $(cat "$CRASH_DIR/err")"; return 1; }
}

# The index of the first mark NAME in the log, from --list.
crash_mark_index()	# crash_mark_index NAME
{
	"$REPLAY_LOG" --log "$CRASH_LOG" --list |
		awk -v m="$1" '$4 == "MARK" && $5 == m { print $1; exit }'
}

crash_points()		# crash_points [FROM]
{
	_from=${1:-0}
	{
		echo "$_from"
		"$REPLAY_LOG" --log "$CRASH_LOG" --flush-points --start "$_from"
		awk -v seed="$CRASH_SEED" -v from="$_from" \
			-v to="$CRASH_ENTRIES" -v n="$CRASH_RANDOM" 'BEGIN {
			srand(seed)
			for (i = 0; i < n && to > from; i++)
				print from + 1 + int(rand() * (to - from))
		}'
		echo "$CRASH_ENTRIES"
	} | sort -n | uniq
}

# CRASH_REPLAY_DEV: a loop device over a fresh copy of INITIAL.
crash_replay_dev()
{
	if [ -n "$CRASH_REPLAY_DEV" ]; then
		crash_unloop "$CRASH_REPLAY_DEV" || return 1
	fi
	cp "$CRASH_DIR/initial" "$CRASH_DIR/replay" &&
	crash_loop "$CRASH_DIR/replay" && CRASH_REPLAY_DEV=$_loop ||
		{ why="cannot make the replay device"; CRASH_REPLAY_DEV=; return 1; }
}

# Sets CRASH_BAD to the points where CALLBACK failed, $why to the first
# one's reason; false if there is any.  CRASH_NPOINTS: how many ran.
crash_replay_points()	# crash_replay_points CALLBACK [FROM]
{
	_cb=$1
	crash_replay_dev || return 1
	echo "# crash: seed $CRASH_SEED (CRASH_SEED), $CRASH_ENTRIES entries"
	_prev=0
	CRASH_BAD=
	CRASH_NPOINTS=0
	_first=
	for _p in $(crash_points "${2:-0}"); do
		"$REPLAY_LOG" --log "$CRASH_LOG" --replay "$CRASH_REPLAY_DEV" \
			--start "$_prev" --limit "$_p" 2>"$CRASH_DIR/err" ||
			{ why="replay to $_p: $(cat "$CRASH_DIR/err")"; return 1; }
		_prev=$_p
		CRASH_NPOINTS=$((CRASH_NPOINTS + 1))
		why=
		"$_cb" "$CRASH_REPLAY_DEV" "$_p" && continue
		CRASH_BAD="$CRASH_BAD $_p"
		[ -n "$_first" ] || _first="at entry $_p: $why"
	done
	why="failed at$CRASH_BAD of $CRASH_NPOINTS points; first $_first"
	[ -z "$CRASH_BAD" ]
}

crash_replay_equals_data()
{
	[ -n "$CRASH_REPLAY_DEV" ] || { why="nothing replayed"; return 1; }
	cmp "$CRASH_REPLAY_DEV" "$CRASH_DIR/data" >"$CRASH_DIR/err" 2>&1 ||
		{ why="replay and data device differ: $(cat "$CRASH_DIR/err")"
		  return 1; }
}

# The ext4 in FILE after a crash: mounted through a loop (journal
# recovery and the orphan list, as after a reboot: it changes FILE) and
# unmounted, it must be clean for e2fsck -fn.  e2fsck -n alone does not
# replay the journal, and a commit that is in the journal but not yet
# written back is not an error.  Mounts on CRASH_DIR/mnt.
crash_ext4_clean()	# crash_ext4_clean FILE
{
	mkdir -p "$CRASH_DIR/mnt"
	crash_loop "$1" || { why="losetup failed"; return 1; }
	_fl=$_loop
	if ! mount -t ext4 "$_fl" "$CRASH_DIR/mnt" 2>/dev/null; then
		why="mount failed: $(dmesg | tail -n 1)"
		crash_unloop "$_fl"
		return 1
	fi
	umount "$CRASH_DIR/mnt" && crash_unloop "$_fl" ||
		{ why="umount failed"; return 1; }
	e2fsck -fn "$1" >"$CRASH_DIR/fsck.out" 2>&1 && return 0
	why="e2fsck -fn: exit $?: $(grep -v '^Pass\|^e2fsck\|^$' \
		"$CRASH_DIR/fsck.out" | head -n 6)"
	return 1
}

# A writable copy of DEV (CRASH_DIR/scratch), for a callback; prints it.
crash_scratch()		# crash_scratch DEV
{
	dd if="$1" of="$CRASH_DIR/scratch" bs=1M 2>/dev/null &&
		echo "$CRASH_DIR/scratch"
}

crash_cleanup()
{
	dmsetup remove "$CRASH_NAME" 2>/dev/null
	for _d in $CRASH_LOOPS; do
		losetup -d "$_d" 2>/dev/null
	done
	CRASH_LOOPS=
	CRASH_LOG=
	CRASH_REPLAY_DEV=
	umount "$CRASH_DIR" 2>/dev/null
	rmdir "$CRASH_DIR" 2>/dev/null
	return 0
}
