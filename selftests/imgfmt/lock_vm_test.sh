#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of the image locks imgfmt attach leaves on the loop devices'
# files: QEMU must be refused to write an attached image and its backing
# file after attach has exited, and be able to again after detach; an
# image qemu-io writes must be refused by attach, and attached with
# --force-share.
#
#   lock_vm_test.sh [WORKDIR]
#
# WORKDIR (default /tmp/lock) is made and the images written there with
# qemu-img; without qemu-img and qemu-io in the guest the tests skip.
# Prints TAP lines without a plan; exits non-zero when anything failed.
# Plain POSIX sh (busybox).

DIR=${1:-/tmp/lock}
export DM_DISABLE_UDEV=1
SUITE=lock
. "$(dirname "$0")/vmlib.sh"

if ! command -v qemu-io >/dev/null 2>&1 ||
	! command -v qemu-img >/dev/null 2>&1; then
	n=$((n + 1))
	echo "ok $n $SUITE: image locks # SKIP no qemu-io or qemu-img in the guest"
	exit 0
fi
mkdir -p "$DIR" && cd "$DIR" || bail "cannot make $DIR"
rm -f base.qcow2 top.qcow2 fifo
qemu-img create -q -f qcow2 base.qcow2 4M &&
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 4M ||
	bail "qemu-img create failed"

W='Failed to get "write" lock'

# COMMAND must work; its output is kept off the TAP stream.
quiet()			# quiet COMMAND...
{
	"$@" >/tmp/quiet.out 2>&1 && return 0
	why="$*: $(cat /tmp/quiet.out)"
	return 1
}

# qemu-io writes one sector of FILE (format qcow2); QEMU's error in $why.
qwrite()		# qwrite FILE
{
	qemu-io -f qcow2 -c 'write -P 0x5a 0 512' "$1" >/dev/null 2>/tmp/qio.err &&
		return 0
	why="qemu-io: $(cat /tmp/qio.err)"
	return 1
}
# FILE must be refused to writers, with QEMU's lock error.
write_refused()		# write_refused FILE
{
	if qwrite "$1"; then
		why="qemu-io wrote $1"
		return 1
	fi
	grep -qF "$W" /tmp/qio.err && return 0
	why="qemu-io failed otherwise: $(cat /tmp/qio.err)"
	return 1
}
# Loop devices let go of their file when device-mapper lets go of them;
# give that a moment before calling FILE still locked.
writes_soon()		# writes_soon FILE
{
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		qwrite "$1" && return 0
		sleep 0.2
	done
	return 1
}

attach_locks()
{
	dev=$(imgfmt attach --name lk top.qcow2 2>/tmp/attach.err) ||
		{ why="attach failed: $(cat /tmp/attach.err)"; return 1; }
	[ -b "$dev" ] || { why="no device $dev"; return 1; }
}
check "attach of a chain" attach_locks || bail "cannot attach"
check "after attach has exited, qemu-io cannot write the image" \
	write_refused top.qcow2
check "nor its backing file" write_refused base.qcow2
check "qemu-img info still reads it" quiet qemu-img info top.qcow2
check "qemu-io -r still reads it" \
	quiet qemu-io -f qcow2 -r -c 'read 0 512' top.qcow2
check "detach" quiet imgfmt detach lk
check "after detach, qemu-io writes the image" writes_soon top.qcow2
check "and its backing file" writes_soon base.qcow2
check "nothing left" nothing_left

# qemu-io keeps top.qcow2 open for writing until fd 3 closes.
QPID=
qemu_writer()
{
	rm -f fifo
	mkfifo fifo || return 1
	qemu-io -f qcow2 top.qcow2 <fifo >/dev/null 2>&1 &
	QPID=$!
	exec 3>fifo
	ino=$(stat -c %i top.qcow2)
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		# Byte 101: QEMU holds the write permission.
		awk -v ino="$ino" '$2 == "OFDLCK" && $6 ~ (":" ino "$") &&
			$7 <= 101 && $8 >= 101 { found = 1 }
			END { exit !found }' /proc/locks && return 0
		sleep 0.2
	done
	why="qemu-io did not lock top.qcow2"
	return 1
}
qemu_stop()
{
	exec 3>&-
	[ -z "$QPID" ] || wait "$QPID"
	QPID=
}
refused_attach()
{
	want="imgfmt: top.qcow2: is in use by another process for writing (use --force-share to attach anyway)"
	if imgfmt attach --name lk top.qcow2 >/dev/null 2>/tmp/attach.err; then
		imgfmt detach lk >/dev/null 2>&1
		why="attached"
		return 1
	fi
	[ "$(cat /tmp/attach.err)" = "$want" ] && nothing_left && return 0
	why="stderr: $(cat /tmp/attach.err) $why"
	return 1
}
forced_attach()
{
	imgfmt attach --force-share --name lk top.qcow2 >/dev/null \
		2>/tmp/attach.err ||
		{ why="attach failed: $(cat /tmp/attach.err)"; return 1; }
	quiet imgfmt detach lk
}
if check "qemu-io holds the image for writing" qemu_writer; then
	check "attach of an image qemu-io writes is refused, nothing left" \
		refused_attach
	check "attach --force-share of it works" forced_attach
fi
qemu_stop
check "nothing left" nothing_left

echo "# lock_vm_test.sh: $n tests, $failed failed"
[ $failed -eq 0 ]
