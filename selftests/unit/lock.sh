#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The helper's image locks against QEMU's, without a VM:
#
#   lock.sh [IMGFMT]
#
# lock_hold (selftests/unit/lock_hold.c, built here with userspace/lock.c)
# takes the locks of each mode on an image and holds them; the bytes it
# holds (/proc/locks) must be the bytes qemu-io holds in the same role,
# and qemu-io and qemu-img must refuse or accept the image as they would
# for each other.  The other way round, qemu-io holds an image and the
# locks must be refused or taken; `imgfmt attach` must refuse an image,
# a backing file or a data file qemu-io writes, in one line, and with
# --force-share get past the locks.  Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
IMGFMT=${1:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")
CC=${CC:-cc}

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v qemu-io >/dev/null || tap_bail "qemu-io not installed"
[ -r /proc/locks ] || tap_bail "no /proc/locks"
TMP=$(mktemp -d)
HOLDER=
cleanup() {
	exec 3>&- 2>/dev/null
	[ -z "$HOLDER" ] || wait "$HOLDER" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || tap_bail "cannot enter $TMP"

HOLD=$TMP/lock_hold
$CC -O2 -g -D_GNU_SOURCE -Wall -Wextra -Werror -I"$TOP/userspace" \
	-o "$HOLD" "$TOP/selftests/unit/lock_hold.c" "$TOP/userspace/lock.c" \
	"$TOP/userspace/failure.c" 2>"$TMP/cc.err" ||
	tap_bail "cannot build lock_hold: $(cat "$TMP/cc.err")"

q() { "$@" >/dev/null 2>"$TMP/q.err" || tap_bail "$* failed: $(cat "$TMP/q.err")"; }
q qemu-img create -q -f qcow2 img.qcow2 1M
q qemu-img create -q -f qcow2 base.qcow2 1M
q qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 1M
q qemu-img create -q -f qcow2 -o data_file=dat.raw data.qcow2 1M

# The bytes in /proc/locks on FILE, one a line, sorted ("100", "201").
locks_of() {		# locks_of FILE
	local id
	id=$(stat -c '%Hd %Ld %i' "$1" | awk '{ printf "%02x:%02x:%s", $1, $2, $3 }')
	awk -v id="$id" '$2 == "OFDLCK" && $6 == id {
		for (b = $7; b <= $8; b++) print b }' /proc/locks | sort -n
}

# Wait until FILE shows lock byte BYTE, or until the holder is gone.
wait_byte() {		# wait_byte FILE BYTE
	local _
	for _ in $(seq 100); do
		locks_of "$1" | grep -qx "$2" && return 0
		kill -0 "$HOLDER" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# Start a holder of FILE that runs until release closes its input: its
# standard input is a FIFO held open on fd 3.  Sets $why on failure.
start_holder() {	# start_holder FILE COMMAND...
	local file=$1
	shift
	rm -f "$TMP/fifo"
	mkfifo "$TMP/fifo"
	"$@" <"$TMP/fifo" >"$TMP/holder.out" 2>"$TMP/holder.err" &
	HOLDER=$!
	exec 3>"$TMP/fifo"
	wait_byte "$file" 100 && return 0
	why="holder did not lock $file: $(cat "$TMP/holder.err")"
	release
	return 1
}
hold() { start_holder "$2" "$HOLD" "$1" "$2"; }	# hold MODE FILE
qemu_hold() { start_holder "${*: -1}" qemu-io "$@"; }	# qemu_hold ARGS FILE
release() {
	exec 3>&-
	wait "$HOLDER" 2>/dev/null
	HOLDER=
}

# Run COMMAND; it must fail and its stderr hold TEXT.
refused() {		# refused TEXT COMMAND...
	local text=$1
	shift
	if "$@" >/dev/null 2>"$TMP/err"; then
		why="$* worked"
		return 1
	fi
	grep -qF -- "$text" "$TMP/err" && return 0
	why="$* failed otherwise: $(cat "$TMP/err")"
	return 1
}
works() {		# works COMMAND...
	"$@" >/dev/null 2>"$TMP/err" && return 0
	why="$* failed: $(cat "$TMP/err")"
	return 1
}

# --- Our bytes are QEMU's. ---

# MODE holds on FILE the bytes that `qemu-io ARGS` holds on it.
same_bytes() {		# same_bytes MODE FILE ARGS...
	local mode=$1 file=$2 ours theirs
	shift 2
	hold "$mode" "$file" || return 1
	ours=$(locks_of "$file" | tr '\n' ' ')
	release
	start_holder "$file" qemu-io "$@" || return 1
	theirs=$(locks_of "$file" | tr '\n' ' ')
	release
	[ -n "$ours" ] && [ "$ours" = "$theirs" ] && return 0
	why="lock_hold $mode: $ours; qemu-io $*: $theirs"
	return 1
}
tap_check "read locks the bytes qemu-io -r does" \
	same_bytes read img.qcow2 -r img.qcow2
tap_check "write locks the bytes a writing qemu-io does" \
	same_bytes write img.qcow2 img.qcow2
tap_check "shared locks the bytes qemu-io -r -U does" \
	same_bytes shared img.qcow2 -r -U img.qcow2
tap_check "read locks the bytes QEMU takes on a QCOW2 backing file" \
	same_bytes read base.qcow2 top.qcow2
tap_check "read locks the bytes QEMU takes on the top of a chain it reads" \
	same_bytes read top.qcow2 -r top.qcow2

# --- QEMU against our locks. ---

W='Failed to get "write" lock'
SW='Failed to get shared "write" lock'

# With MODE held on img.qcow2, each CHECK (a function) must pass.
while_held() {		# while_held MODE CHECK...
	local mode=$1 rc=0 c
	shift
	hold "$mode" img.qcow2 || return 1
	for c in "$@"; do
		$c || { rc=1; break; }
	done
	release
	return $rc
}
qemu_write() { qemu-io -f qcow2 -c 'write 0 512' img.qcow2; }
qemu_read() { qemu-io -f qcow2 -r -c 'read 0 512' img.qcow2; }
qemu_read_u() { qemu-io -f qcow2 -r -U -c 'read 0 512' img.qcow2; }
no_write() { refused "$W" qemu_write; }
no_resize() { refused "$W" qemu-img resize -q img.qcow2 2M; }
no_info() { refused "$SW" qemu-img info img.qcow2; }
no_read() { refused "$SW" qemu_read; }
info() { works qemu-img info img.qcow2; }
info_u() { works qemu-img info -U img.qcow2; }
reads() { works qemu_read; }
reads_u() { works qemu_read_u; }
writes() { works qemu_write; }

tap_check "read: qemu-io cannot write the image, qemu-img cannot resize it" \
	while_held read no_write no_resize
tap_check "read: qemu-img info and qemu-io -r still work" \
	while_held read info reads
tap_check "write: qemu-img info fails as for a running VM's image; -U works" \
	while_held write no_info info_u
tap_check "write: qemu-io -r fails, -r -U reads; qemu-io cannot write" \
	while_held write no_read reads_u no_write
tap_check "shared: qemu-io can still write the image" \
	while_held shared writes info

# The locks belong to the open file: gone once lock_hold has closed it.
gone_after_exit() {
	local left
	hold read img.qcow2 || return 1
	release
	left=$(locks_of img.qcow2 | tr '\n' ' ')
	[ -z "$left" ] || { why="still locked: $left"; return 1; }
	writes
}
tap_check "the locks go with the file: qemu-io writes once the holder exits" \
	gone_after_exit

# --- Our locks against QEMU. ---

# With `qemu-io ARGS img.qcow2` running, each CHECK must pass.
while_qemu() {		# while_qemu "ARGS" CHECK...
	local args=$1 rc=0 c
	shift
	# shellcheck disable=SC2086
	start_holder img.qcow2 qemu-io -f qcow2 $args img.qcow2 || return 1
	for c in "$@"; do
		$c || { rc=1; break; }
	done
	release
	return $rc
}
IN_USE="imgfmt: img.qcow2: is in use by another process"
take() { "$HOLD" "$1" img.qcow2 </dev/null; }
take_read() { take read; }
take_write() { take write; }
take_shared() { take shared; }
read_refused() {
	refused "$IN_USE for writing (use --force-share to attach anyway)" take_read
}
write_refused() { refused "$IN_USE for writing" take_write; }
write_unshared() {
	refused "$IN_USE that does not let others write it" take_write
}
read_taken() { works take_read; }
shared_taken() { works take_shared; }

tap_check "a writing qemu-io: read is refused, naming --force-share" \
	while_qemu "" read_refused
tap_check "a writing qemu-io: write is refused, shared is taken" \
	while_qemu "" write_refused shared_taken
tap_check "a reading qemu-io: read is taken, write refused (it does not share writes)" \
	while_qemu "-r" read_taken write_unshared
tap_check "a qemu-io -r -U: read and write are taken" \
	while_qemu "-r -U" read_taken "works take_write"

# --- imgfmt attach refuses what QEMU writes. ---

# With `qemu-io -f FMT WRITTEN` running, `imgfmt attach [OPT] IMAGE` must
# fail with exactly LINE.
attach_refused() {	# attach_refused FMT WRITTEN IMAGE LINE
	local got
	start_holder "$2" qemu-io -f "$1" "$2" || return 1
	"$IMGFMT" attach "$3" >/dev/null 2>"$TMP/err"
	rc=$?
	release
	got=$(cat "$TMP/err")
	[ $rc -eq 1 ] && [ "$got" = "$4" ] && return 0
	why="exit $rc, stderr: $got"
	return 1
}
tap_check "attach of an image qemu-io writes is refused" \
	attach_refused qcow2 img.qcow2 img.qcow2 \
	"imgfmt: img.qcow2: is in use by another process for writing (use --force-share to attach anyway)"
tap_check "attach of an overlay whose backing file qemu-io writes names the backing file" \
	attach_refused qcow2 base.qcow2 top.qcow2 \
	"imgfmt: base.qcow2: is in use by another process for writing (use --force-share to attach anyway)"
tap_check "attach of an image whose data file qemu-io writes names the data file" \
	attach_refused raw dat.raw data.qcow2 \
	"imgfmt: dat.raw: is in use by another process for writing (use --force-share to attach anyway)"

# --force-share gets past the locks: whatever attach meets next (no
# device-mapper here, or a device made and detached again), it is not
# the lock, and the file's locks are qemu-io's alone afterwards.
force_share() {
	local before after rc
	start_holder img.qcow2 qemu-io -f qcow2 img.qcow2 || return 1
	before=$(locks_of img.qcow2 | tr '\n' ' ')
	"$IMGFMT" attach --force-share --name lock_sh_test img.qcow2 \
		>/dev/null 2>"$TMP/err"
	rc=$?
	[ $rc -ne 0 ] || "$IMGFMT" detach lock_sh_test >/dev/null 2>&1
	after=$(locks_of img.qcow2 | tr '\n' ' ')
	release
	if grep -q "in use\|lock" "$TMP/err"; then
		why="the lock refused it: $(cat "$TMP/err")"
		return 1
	fi
	[ "$before" = "$after" ] && return 0
	why="locks before $before, after $after"
	return 1
}
tap_check "attach --force-share of an image qemu-io writes passes the locks" \
	force_share

usage() {		# usage LINE ARGS...
	local line=$1 rc got
	shift
	"$IMGFMT" attach "$@" >/dev/null 2>"$TMP/err"
	rc=$?
	got=$(cat "$TMP/err")
	[ $rc -eq 2 ] && [ "$got" = "$line" ] && return 0
	why="exit $rc, stderr: $got"
	return 1
}
# attach --rw locks for writing: refused by a reader that does not share
# writes (qemu-io -r), before the file is touched.
rw_refused() {		# rw_refused LINE QEMU-IO-ARGS... FILE
	local line=$1 got rc size
	shift
	size=$(stat -c %s img.qcow2)
	start_holder img.qcow2 qemu-io "$@" || return 1
	"$IMGFMT" attach --rw img.qcow2 >/dev/null 2>"$TMP/err"
	rc=$?
	release
	got=$(cat "$TMP/err")
	[ "$(stat -c %s img.qcow2)" = "$size" ] ||
		{ why="the file changed size"; return 1; }
	[ $rc -eq 1 ] && [ "$got" = "$line" ] && return 0
	why="exit $rc, stderr: $got"
	return 1
}
tap_check "attach --rw of an image qemu-io -r reads is refused, the file untouched" \
	rw_refused "imgfmt: img.qcow2: is in use by another process that does not let others write it" \
	-r -f qcow2 img.qcow2
tap_check "attach --rw -U is refused, as qemu-img refuses it" \
	usage "imgfmt: attach: --force-share is for read-only attach, not with --rw" \
	--rw -U img.qcow2

tap_summary
[ "$TAP_FAIL" -eq 0 ]
