#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# replay-log against synthetic logs, in userspace (no VM, no root):
#
#   replay-log-test.sh [REPLAY-LOG]
#
# mklog.py writes a small log by its own reading of the format (writes,
# a FLUSH, a FUA, a FLUSH|FUA write, a discard, two marks) and the device
# each prefix of it must leave.  Checked: --list and --flush-points print
# what the model says; --limit, --end-mark and --start replay to the
# model's device, with 512- and 4096-byte log sectors; and each defect a
# hostile log may have is refused with exit status 1 and one line naming
# it, the replay device left as it was.  The real kernel's logs are
# replayed in the VM (selftests/imgfmt/crash_vm_test.sh).  Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
R=${1:-$BUILD/crash/replay-log}
MKLOG=$TOP/selftests/crash/mklog.py
[ -x "$R" ] || tap_bail "replay-log $R not built (make -C selftests/crash)"
command -v python3 >/dev/null || tap_bail "python3 is needed for the logs"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || tap_bail "cannot enter $TMP"

# A replay device of SIZE bytes, 0x55 each, as mklog.py's expect starts.
fresh()			# fresh FILE SIZE
{
	python3 -c "open('$1', 'wb').write(b'\x55' * $2)"
}

listing_matches()
{
	"$MKLOG" list >want
	"$R" --log good.log --list >got 2>err ||
		{ why="exit $?: $(cat err)"; return 1; }
	diff want got >d || { why=$(cat d); return 1; }
}

flush_points_match()
{
	got=$("$R" --log good.log --flush-points 2>&1 | tr '\n' ' ')
	# After the FLUSH (2), the FUA write (5) and the FLUSH|FUA write (6).
	[ "$got" = "3 6 7 " ] || { why="got '$got'"; return 1; }
}

# Replay in steps with --start, each step against the model.
replay_steps()		# replay_steps SECTOR
{
	local ss=$1 size=$((128 * $1)) prev=0 n
	"$MKLOG" log good.log "$ss"
	fresh dev "$size"
	for n in 1 3 4 5 7 8; do
		"$R" --log good.log --replay dev --start $prev --limit $n 2>err ||
			{ why="--start $prev --limit $n: $(cat err)"; return 1; }
		"$MKLOG" expect want $n "$size" "$ss"
		cmp -s dev want || { why="after entry $n: $(cmp dev want)"; return 1; }
		prev=$n
	done
}

end_mark_replay()
{
	"$MKLOG" log good.log
	fresh dev 65536
	"$R" --log good.log --replay dev --end-mark mkfs 2>err ||
		{ why=$(cat err); return 1; }
	# The mark is entry 3: entries [0, 4).
	"$MKLOG" expect want 4 65536
	cmp -s dev want || { why=$(cmp dev want); return 1; }
}

# Refused: status 1, one line on stderr matching PATTERN, DEV untouched.
refused()		# refused PATTERN ARGS...
{
	local pat=$1 rc
	shift
	fresh dev 65536
	cp dev before
	case $1 in
	timeout) "$@" >out 2>err ;;
	*) "$R" "$@" >out 2>err ;;
	esac
	rc=$?
	[ $rc -eq 1 ] || { why="exit status $rc: $(cat err)"; return 1; }
	[ "$(wc -l <err)" -eq 1 ] || { why="stderr: $(cat err)"; return 1; }
	grep -qE -- "$pat" err || { why="stderr: $(cat err)"; return 1; }
	[ ! -s out ] || { why="printed: $(head -3 out)"; return 1; }
	cmp -s dev before || { why="the replay device was written"; return 1; }
}

hostile()		# hostile BREAK PATTERN [ARGS...]
{
	local brk=$1 pat=$2
	shift 2
	"$MKLOG" log bad.log 512 "$brk"
	refused "$pat" --log bad.log --replay dev "$@"
}

"$MKLOG" log good.log
tap_check "replay-log: --list prints every entry" listing_matches
tap_check "replay-log: --flush-points after FLUSH and FUA" flush_points_match
tap_check "replay-log: --start/--limit steps, 512-byte sectors" replay_steps 512
tap_check "replay-log: --start/--limit steps, 4096-byte sectors" replay_steps 4096
tap_check "replay-log: --end-mark replays through the mark" end_mark_replay

while read -r brk pat; do
	tap_check "replay-log: refuses $brk" hostile "$brk" "$pat"
	# Listing reads the same fields: refused too, before printing.
	tap_check "replay-log: --list refuses $brk" hostile "$brk" "$pat" --list
done <<'EOF'
magic bad magic 0x6a736677736873
version log version 2, only 1
sector1000 sector size 1000 is not a power of two
sector128k sector size 131072 is not a power of two
entries 1000000 entries cannot fit in a log of 8704 bytes
shortsuper log of 100 bytes is shorter than its super block
truncated entry 5: 2 sectors of data run past the end of the log
hugenr entry 5: 9223372036854775808 sectors of data run past the end
beyond entry 1: sectors 200\+1 lie past the end of dev \(128 sectors
wrap entry 1: sectors 18446744073709551615\+1 lie past the end
flags entry 1: unknown flags 0x50
inline entry 1: data_len 5 on an entry that is not a mark
markdata entry 3: a mark with 1 sectors of data
marklen entry 3: mark of 481 bytes does not fit in its sector
EOF

"$MKLOG" log good.log
tap_check "replay-log: --limit past the log" refused \
	"--limit 9: the log has 8 entries" --log good.log --replay dev --limit 9
tap_check "replay-log: --end-mark of no mark" refused \
	'no mark "nope" in its 8 entries' --log good.log --replay dev --end-mark nope
tap_check "replay-log: --start after the end" refused \
	"--start 5 lies after the end, entry 3" --log good.log --replay dev \
	--start 5 --limit 3
tap_check "replay-log: --start that is no number" refused \
	"--start: not an entry index: -1" --log good.log --replay dev --start -1
# A FIFO must not block the open (no one is at its other end).
mkfifo fifo
tap_check "replay-log: a FIFO as the log" refused \
	"fifo: not a block device or regular file" timeout 10 "$R" \
	--log fifo --replay dev
tap_check "replay-log: a FIFO to list against" refused \
	"fifo: not a block device or regular file" timeout 10 "$R" \
	--log good.log --replay fifo --list
tap_check "replay-log: a directory to replay onto" refused \
	"\\.: Is a directory" --log good.log --replay .

tap_summary
[ "$TAP_FAIL" -eq 0 ]
