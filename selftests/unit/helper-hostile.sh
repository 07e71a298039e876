#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Hostile input to the imgfmt helper, in userspace (no VM; some checks
# need root and say so when skipped):
#
#   helper-hostile.sh [IMAGEDIR [IMGFMT]]
#
# - FIFOs (with no writer) as images and as extent files: refused at once,
#   in one line naming the file;
# - device names for attach that are too long, with the derived names
#   (NAME-imageN, NAMEpN) in mind;
# - image-derived text (extent file names, descriptor lines) in `info`
#   output and in error lines: escaped, capped, one line;
# - a 4096-extent descriptor under a lowered open file limit;
# - `info --output=json` and text `info` over every test image under
#   IMAGEDIR (default: build/images) and every fuzz corpus and seed file
#   (build/fuzz/*-corpus, *-seeds): JSON must parse (python3), text lines
#   must be "key: value".
#
# Prints TAP.  IMGFMT defaults to this tree's userspace/imgfmt.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${IMGFMT_BUILD:-$TOP/build}
DIR=${1:-$BUILD/images}
IMGFMT=${2:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")
# How long a command may take before it counts as hanging.
WAIT=${WAIT:-10}

bail()
{
	echo "Bail out! $*"
	exit 1
}

[ -x "$IMGFMT" ] || bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v python3 >/dev/null || bail "python3 is needed to check JSON"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || bail "cannot enter $TMP"

n=0
failed=0
ok()
{
	n=$((n + 1))
	echo "ok $n $1"
}
skip()
{
	n=$((n + 1))
	echo "ok $n $1 # SKIP $2"
}
not_ok()
{
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n $1"
	shift
	for line in "$@"; do
		printf '%s\n' "$line" | head -c 2000 | sed 's/^/# /'
	done
}
check()			# check NAME CONDITION-COMMAND... (diagnostics: $why)
{
	local name=$1

	shift
	why=
	if "$@"; then
		ok "$name"
	else
		not_ok "$name" "$why"
	fi
}

# Run imgfmt with a time limit; stdout to out, stderr to err, status in rc.
run()
{
	timeout "$WAIT" "$IMGFMT" "$@" >out 2>err
	rc=$?
}

# The command failed with status $1, one line on stderr matching $2.
one_line_error()	# STATUS PATTERN
{
	if [ $rc -eq 124 ]; then
		why="hung for ${WAIT}s"
		return 1
	fi
	[ $rc -eq "$1" ] || { why="exit status $rc: $(cat err)"; return 1; }
	[ "$(wc -l <err)" -eq 1 ] || { why="stderr: $(cat err)"; return 1; }
	grep -qE -- "$2" err || { why="stderr: $(cat err)"; return 1; }
}

# --- FIFOs ---------------------------------------------------------------

mkfifo fifo
fifo_refused()		# COMMAND ARGS...
{
	run "$@"
	one_line_error 1 "^imgfmt: fifo: a FIFO, not a regular file or block device$"
}
check "info of a FIFO is refused at once" fifo_refused info fifo
check "table of a FIFO is refused at once" fifo_refused table fifo /dev/loop0
check "read of a FIFO is refused at once" fifo_refused read fifo /dev/null
# Refused before any device is set up: no root or device-mapper needed.
check "attach of a FIFO is refused at once" fifo_refused attach --name t fifo

printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "fifo" 0\n' >fifo.vmdk
fifo_extent()
{
	run info fifo.vmdk
	one_line_error 1 "^imgfmt: fifo.vmdk:3: extent file fifo is not a regular file$"
}
check "a FIFO as extent file is refused at once" fifo_extent

# --- Device names ---------------------------------------------------------

# A string of LEN letters n.
letters()		# LEN
{
	printf "%${1}s" "" | tr ' ' n
}

# NAME-image4096 with the uuid prefix IMGFMT- must fit in a dm uuid (128):
# NAME may have 111 characters.  The image does not exist: the name is
# checked first, nothing is set up on the host.
name_too_long()
{
	run attach --name "$(letters 112)" /nonexistent.qcow2
	one_line_error 2 "^imgfmt: device name 'n{112}' is too long: 112 characters, at most 111 "
}
check "attach refuses a 112-character --name in one line" name_too_long
name_longest()
{
	run attach --name "$(letters 111)" /nonexistent.qcow2
	one_line_error 1 "^imgfmt: cannot open /nonexistent.qcow2: "
}
check "attach takes a 111-character --name" name_longest
name_escaped()
{
	run attach --name "$(printf 'a\nb')" /nonexistent.qcow2
	one_line_error 2 '^imgfmt: bad device name .a\\x0ab.: '
}
check "a bad --name is shown escaped, on one line" name_escaped
# A file name too long for a device name gets a shortened one (the VM test
# checks which): attach goes on to open the file.
auto_name_long()
{
	run attach "/nonexistent/$(letters 200).qcow2"
	one_line_error 1 "^imgfmt: cannot open /nonexistent/n{200}.qcow2: "
}
check "attach makes a name from a 200-character file name" auto_name_long

# --- Image-derived text in output and errors -------------------------------

# Every line of info's text output: "key: value" (or "key:" when empty),
# printable ASCII, at most 512 bytes (keys are short, values cut at 255).
text_lines_ok()		# FILE
{
	local bad

	bad=$(LC_ALL=C grep -nvE '^[a-z0-9-]+:( [ -~]*)?$' "$1" | head -3)
	[ -z "$bad" ] || { why="bad lines: $bad"; return 1; }
	bad=$(awk 'length($0) > 512 { print NR ": " length($0) " bytes"; exit }' "$1")
	[ -z "$bad" ] || { why="line too long: $bad"; return 1; }
}

# Extent files whose names hold bytes that are not ASCII (the parser
# refuses control characters there), a backslash
# and 200 more characters: info lists them on one line each, escaped and
# cut; a missing one is named in a one-line error.
long=$(letters 240)
nl_name=$(printf 'nl\377x\200\\%s.raw' "$long")
head -c 512 /dev/zero >"$nl_name"
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "%s" 0\n' \
	"$nl_name" >nl.vmdk
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "%s-gone" 0\n' \
	"$nl_name" >nl-gone.vmdk
escaped_extent()
{
	run info nl.vmdk
	[ $rc -eq 0 ] || { why="exit status $rc: $(cat err)"; return 1; }
	text_lines_ok out || return 1
	grep -qE '^extent-1: RW 1 FLAT "nl\\xffx\\x80\\x5cn{10}.*\.\.\." 0$' out ||
		{ why="extent line: $(grep extent-1 out)"; return 1; }
}
check "info shows an odd extent file name escaped and cut" escaped_extent
escaped_extent_error()
{
	run info nl-gone.vmdk
	one_line_error 1 '^imgfmt: nl-gone.vmdk:3: cannot open extent file nl\\xffx\\x80\\x5cn{10}'
	[ $? -eq 0 ] || return 1
	[ "$(wc -c <err)" -lt 600 ] || { why="$(wc -c <err) bytes"; return 1; }
	grep -qx 'error: .*' out && text_lines_ok out
}
check "an error naming an odd extent file is one escaped line" \
	escaped_extent_error
# A descriptor line quoted in an error: control bytes escaped.
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "x" 0 \033]0;pwned\007\n' \
	>esc-line.vmdk
escaped_desc_line()
{
	run info esc-line.vmdk
	one_line_error 1 "^imgfmt: esc-line.vmdk:3: unexpected '\\\\x1b\\]0;pwned\\\\x07' after the extent$" &&
		text_lines_ok out
}
check "a descriptor line quoted in an error is escaped" escaped_desc_line
# A createType of 63 bytes of control characters: escaped and cut.
ct=$(head -c 63 /dev/zero | tr '\0' '\001')
printf 'version=1\ncreateType="%s"\nRW 1 FLAT "x" 0\n' "$ct" >esc-ct.vmdk
escaped_create_type()
{
	run info esc-ct.vmdk
	one_line_error 1 "^imgfmt: esc-ct.vmdk:2: bad value for createType: " &&
		text_lines_ok out
}
check "a createType of control characters is escaped" escaped_create_type

# --- 4096 extents under a lowered open file limit --------------------------

# The documented limit: 4096 extents, each a sector of one flat file, so
# that info and table hold 4096 files open at once.
head -c $((4096 * 512)) /dev/zero >one.raw
{
	printf 'version=1\ncreateType="twoGbMaxExtentFlat"\n'
	seq 0 4095 | sed 's/.*/RW 1 FLAT "one.raw" &/'
} >many.vmdk
seq -f '7:%g' 0 4095 >many.devs
# Can this process raise its hard limit (root with CAP_SYS_RESOURCE)?
can_raise_hard=0
(ulimit -n 256 && ulimit -Hn 512) 2>/dev/null && can_raise_hard=1
many_ok()		# ULIMIT-ARGS...
{
	# shellcheck disable=SC2046 # one DEV per word
	(ulimit "$@" && run info many.vmdk && [ $rc -eq 0 ] &&
		grep -qx 'extents: 4096' out &&
		run table many.vmdk $(cat many.devs) && [ $rc -eq 0 ] &&
		[ "$(wc -l <out)" -eq 4096 ]) ||
		{ why="exit status $rc: $(head -c 300 err)"; return 1; }
}
many_refused()		# ULIMIT-ARGS...
{
	(ulimit "$@" && run info many.vmdk &&
		one_line_error 1 '^imgfmt: many.vmdk needs 4160 open files \(4096 of its own\), but the open file limit \(ulimit -n\) is 256 and cannot be raised') ||
		{ why="exit status $rc: $(head -c 300 err)"; return 1; }
}
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 4160 ]; then
	check "info and table of 4096 extents under a soft ulimit -n 256" \
		many_ok -Sn 256
else
	skip "info and table of 4096 extents under a soft ulimit -n 256" \
		"the hard limit is $hard"
fi
if [ $can_raise_hard = 1 ]; then
	check "info and table of 4096 extents under ulimit -n 256 (root raises the hard limit)" \
		many_ok -n 256
else
	check "info of 4096 extents under a hard ulimit -n 256 fails in one line" \
		many_refused -n 256
fi

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
