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
