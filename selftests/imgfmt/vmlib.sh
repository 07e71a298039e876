# SPDX-License-Identifier: GPL-2.0-only
#
# Shared by the in-VM shell suites (sourced; plain POSIX sh, busybox):
# TAP lines without a plan, what attach leaves in the system, and tables
# written by hand over read-only loop devices.  Set SUITE (the word after
# "ok N") before sourcing.

n=0
failed=0
ok()
{
	n=$((n + 1))
	echo "ok $n $SUITE: $1"
}
not_ok()		# not_ok NAME [DIAGNOSTIC...]
{
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n $SUITE: $1"
	shift
	for l in "$@"; do
		printf '%s\n' "$l" | sed 's/^/# /'
	done
}
# check NAME COMMAND...: the command sets $why when it fails.
check()
{
	_name=$1
	shift
	why=
	if "$@"; then
		ok "$_name"
	else
		not_ok "$_name" "$why"
		return 1
	fi
}
bail()
{
	not_ok "$1"
	exit 1
}

# What attach leaves in the system: dm devices and their nodes, loop
# devices, tail files.  Compared with the state at the start (BASE), so
# that whatever an earlier suite left does not fail every test here.
state()
{
	dmsetup ls 2>/dev/null | grep -v 'No devices found' | sort
	losetup -a 2>/dev/null | sort
	for f in /dev/mapper/*; do
		[ -e "$f" ] && [ "$f" != /dev/mapper/control ] && echo "$f"
	done
	ls /run/imgfmt 2>/dev/null | sed 's|^|/run/imgfmt/|'
}
BASE=$(state)
[ -z "$BASE" ] ||
	echo "# present before the tests: $(printf '%s' "$BASE" | tr '\n' ' ')"
# Sets $why to what is there and was not at the start; false if anything.
nothing_left()
{
	now=$(state)
	[ "$now" = "$BASE" ] && return 0
	why="left behind: $(printf '%s\n' "$now" | while read -r l; do
		printf '%s\n' "$BASE" | grep -qxF -e "$l" || printf '%s ' "$l"
	done)"
	return 1
}

# The md5 of standard input, alone.
md5_of()
{
	md5sum | cut -d' ' -f1
}

LOOPS=
# Put FILE on a read-only loop device; prints it.
loop_ro()
{
	_d=$(losetup -f) && losetup -r "$_d" "$1" && echo "$_d"
}
free_loops()
{
	for _d in $LOOPS; do
		losetup -d "$_d" 2>/dev/null
	done
	LOOPS=
}

# make_table FILE[:FORMAT]...: TABLE is the arguments after "imgfmt" for
# these layers, top first, each on a loop device of its own (LOOPS);
# FORMAT "auto" or none leaves the format to detection.
make_table()
{
	TABLE=
	_i=0
	for _l in "$@"; do
		_f=${_l%%:*}
		_fmt=
		[ "$_f" = "$_l" ] || _fmt=${_l#*:}
		[ "$_fmt" != auto ] || _fmt=
		_d=$(loop_ro "$_f") || { why="losetup $_f failed"; return 1; }
		LOOPS="$LOOPS $_d"
		if [ -n "$_fmt" ]; then _o="1 format=$_fmt"; else _o="0"; fi
		if [ $_i -eq 0 ]; then
			TABLE="$_d $_o $(($# - 1))"
		else
			TABLE="$TABLE $_d $_o"
		fi
		_i=$((_i + 1))
	done
}

status_field()		# status_field DEV N: field N of dmsetup status
{
	dmsetup status "$1" | awk -v n="$2" '{ print $(n + 3) }'
}

# table_reads DEV SIZE MD5 [FIELD VALUE]...: create DEV read-only over
# "imgfmt $TABLE" (SIZE bytes), read it whole and again in 4 KiB direct
# reads (each its own bio through map(), the caches warm) against MD5;
# status fields FIELD must be VALUE and io_errors 0; remove DEV and free
# the loops.  Sets $why when anything is wrong.
table_reads()
{
	_dev=$1 _size=$2 _md5=$3
	shift 3
	if ! dmsetup create --readonly "$_dev" \
		--table "0 $(((_size + 511) / 512)) imgfmt $TABLE" \
		2>/tmp/table_reads.err; then
		why="create failed: $(cat /tmp/table_reads.err) $(dmesg | tail -n 3)"
		free_loops
		return 1
	fi
	_rc=0
	_got=$(md5_of <"/dev/mapper/$_dev")
	[ "$_got" = "$_md5" ] || { why="md5 $_got, QEMU $_md5"; _rc=1; }
	if [ $_rc -eq 0 ]; then
		_got=$(dd if="/dev/mapper/$_dev" bs=4096 iflag=direct \
			2>/dev/null | md5_of)
		[ "$_got" = "$_md5" ] ||
			{ why="4 KiB direct reads: md5 $_got, QEMU $_md5"; _rc=1; }
	fi
	set -- 7 0 "$@"
	while [ $# -ge 2 ]; do
		_v=$(status_field "$_dev" "$1")
		[ "$_v" = "$2" ] ||
			{ why="$why; status field $1 is $_v, not $2"; _rc=1; }
		shift 2
	done
	dmsetup remove "$_dev" || { why="$why; remove failed"; _rc=1; }
	free_loops
	return $_rc
}

# table_refused SECTORS ARGS MESSAGE: a table "imgfmt ARGS" must not load,
# and the kernel log must say MESSAGE; frees the loops.
table_refused()
{
	if dmsetup create --readonly t_bad --table "0 $1 imgfmt $2" \
		2>/dev/null; then
		dmsetup remove t_bad
		why="loaded"
		free_loops
		return 1
	fi
	free_loops
	dmesg | tail -n 5 | grep -q "$3" || { why="dmesg lacks '$3'"; return 1; }
}
