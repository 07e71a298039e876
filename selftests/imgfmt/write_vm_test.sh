#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Read-write QCOW2 tables in the guest.  Each image is made by qemu-img
# (and qemu-io), put on a read-write loop device over its file grown
# sparsely (the target allocates only inside the device), written
# through an imgfmt device and, with the same writes, a plain raw shadow
# file; after the device is removed the file is cut back to the image's
# end (status field 16) and QEMU judges it: qemu-img check finds no error
# and no leak, qemu-img convert -O raw equals the shadow.  Also ext4 on an
# image (e2fsck clean, and again through QEMU's reading), the status
# fields, and the refusals of what cannot be written yet.
#
#   write_vm_test.sh DIR	(DIR unused: the images are made here)

here=$(cd "$(dirname "$0")" && pwd)
SUITE=write
. "$here/vmlib.sh"

# verdict NAME: ok when $why is empty, else not ok with it.
verdict()
{
	if [ -z "$why" ]; then
		ok "$1"
	else
		not_ok "$1" "$why"
	fi
}

W=${TMPDIR:-/tmp}/imgfmt-write
rm -rf "$W"
mkdir -p "$W"
DEV=imgfmt_w

# The writes every case makes: offset:bytes:tag, some within a cluster,
# some across clusters and L2 tables, one at the very end.
WRITES="0:4096:1 65536:65536:2 70000:1024:3 1048576:1048576:4
	33554432:12288:5 33558016:512:6 67108352:512:7 100000:300000:8
	4194304:2097152:9 4195328:4096:10"

# write_both DEV SHADOW: the same patterns into both, direct I/O.
write_both()
{
	for w in $WRITES; do
		off=${w%%:*} rest=${w#*:}
		len=${rest%%:*} seed=${rest#*:}
		[ "$((off + len))" -le "$SIZE" ] || continue
		head -c "$len" /dev/urandom >"$W/pat.$len"
		# dd with 512-byte blocks keeps odd offsets exact.
		dd if="$W/pat.$len" of="$1" bs=512 seek=$((off / 512)) \
			oflag=direct conv=notrunc 2>/dev/null || return 1
		dd if="$W/pat.$len" of="$2" bs=512 seek=$((off / 512)) \
			conv=notrunc 2>/dev/null || return 1
		rm -f "$W/pat.$len"
	done
}

# Then zeroes over some of it: offset:bytes:how, d a discard, z a
# write-zeroes (BLKZEROOUT); whole clusters, parts of clusters, unaligned.
ZEROES="65536:131072:d 69632:8192:d 1048576:1048576:z 4194816:2096128:d
	0:512:z 33554432:4096:z 8388608:16777216:d"

# util-linux's, by path: busybox sh runs its own applets before PATH's,
# and busybox's blkdiscard has no -z.
BLKDISCARD=/usr/sbin/blkdiscard
FSTRIM=/usr/sbin/fstrim

# zero_both DEV SHADOW: the same ranges read as zeroes in both.
zero_both()
{
	for z in $ZEROES; do
		off=${z%%:*} rest=${z#*:}
		len=${rest%%:*} how=${rest#*:}
		[ "$((off + len))" -le "$SIZE" ] || continue
		if [ "$how" = z ]; then
			"$BLKDISCARD" -z -o "$off" -l "$len" "$1" || return 1
		else
			"$BLKDISCARD" -o "$off" -l "$len" "$1" || return 1
		fi
		dd if=/dev/zero of="$2" bs=512 seek=$((off / 512)) \
			count=$((len / 512)) conv=notrunc 2>/dev/null || return 1
	done
}

# attach_rw IMG [LOWER...]: grow IMG sparsely, loop it read-write, make
# $DEV over it (lower layers read-only).  Sets LOOP.
attach_rw()
{
	img=$1
	shift
	truncate -s $((4 * SIZE + 64 * 1048576)) "$img" || return 1
	LOOP=$(losetup -f) && losetup "$LOOP" "$img" || return 1
	lower=""
	nl=0
	for l in "$@"; do
		ll=$(loop_ro "$l") || return 1
		LOWERS="$LOWERS $ll"
		# Raw is never detected, only named.
		lower="$lower $ll 1 format=raw"
		nl=$((nl + 1))
	done
	if [ "$nl" -gt 0 ]; then
		t="0 $((SIZE / 512)) imgfmt $LOOP 0 $nl$lower"
	else
		t="0 $((SIZE / 512)) imgfmt $LOOP"
	fi
	dmsetup create "$DEV" --table "$t" && return 0
	losetup -d "$LOOP"
	for ll in $LOWERS; do losetup -d "$ll"; done
	LOWERS=""
	return 1
}

# detach_rw IMG: remove $DEV and the loops, cut IMG back to its end.
detach_rw()
{
	end=$(status_field "$DEV" 16)
	dmsetup remove "$DEV" || return 1
	losetup -d "$LOOP"
	for ll in $LOWERS; do losetup -d "$ll"; done
	LOWERS=""
	[ -n "$end" ] && [ "$end" -gt 0 ] && truncate -s "$end" "$1"
}

# qemu_judges IMG SHADOW: no error, no leak, the same bytes.
qemu_judges()
{
	out=$(qemu-img check "$1" 2>&1)
	case $out in
	*"No errors were found"*) ;;
	*) why="qemu-img check: $(echo "$out" | tr '\n' ' ')"; return 1 ;;
	esac
	qemu-img convert -O raw "$1" "$W/conv.raw" || { why="convert failed"; return 1; }
	cmp -s "$W/conv.raw" "$2" || { why="contents differ: $(cmp "$W/conv.raw" "$2" | head -1)"; return 1; }
	rm -f "$W/conv.raw"
}

# qemu_fs_judges IMG: no error and no leak, and the disk QEMU reads
# ($W/qfs.raw, left for the caller to mount) holds an e2fsck-clean ext4.
# Called with $why empty.
qemu_fs_judges()
{
	out=$(qemu-img check "$1" 2>&1)
	case $out in
	*"No errors were found"*) ;;
	*) why="qemu-img check: $(echo "$out" | tr '\n' ' ')"; return 1 ;;
	esac
	qemu-img convert -O raw "$1" "$W/qfs.raw" || { why="convert failed"; return 1; }
	e2fsck -fn "$W/qfs.raw" >/dev/null 2>&1 || { why="e2fsck on QEMU's reading"; return 1; }
}

# case_writes NAME CREATE-OPTS [PREP [BACKING]]: the whole round trip.
case_writes()
{
	name=$1 opts=$2 prep=${3:-} backing=${4:-}
	why=""
	img=$W/$name.qcow2 shadow=$W/$name.raw
	rm -f "$img" "$shadow"
	if [ -n "$backing" ]; then
		head -c "$SIZE" /dev/urandom >"$W/$name.base"
		qemu-img create -q -f qcow2 -o "$opts" -b "$W/$name.base" -F raw \
			"$img" "$SIZE" || { not_ok "$name" "create"; return; }
	else
		qemu-img create -q -f qcow2 -o "$opts" "$img" "$SIZE" ||
			{ not_ok "$name" "create"; return; }
	fi
	if [ -n "$prep" ]; then
		eval "qemu-io -f qcow2 $prep \"$img\"" >/dev/null ||
			{ not_ok "$name" "qemu-io"; return; }
	fi
	qemu-img convert -O raw "$img" "$shadow"
	if [ -n "$backing" ]; then
		attach_rw "$img" "$W/$name.base"
	else
		attach_rw "$img"
	fi || { not_ok "$name" "attach failed"; free_loops; return; }
	write_both "/dev/mapper/$DEV" "$shadow" || why="a write failed"
	[ -z "$why" ] && { zero_both "/dev/mapper/$DEV" "$shadow" || why="a discard failed"; }
	# What the device shows now, before QEMU sees the file.
	if [ -z "$why" ]; then
		dd if="/dev/mapper/$DEV" of="$W/dev.raw" bs=1M iflag=direct 2>/dev/null
		cmp -s "$W/dev.raw" "$shadow" || why="device reads differ: $(cmp "$W/dev.raw" "$shadow" | head -1)"
		rm -f "$W/dev.raw"
	fi
	sync
	[ "$(status_field "$DEV" 14)" = rw ] || why="${why:-mode $(status_field "$DEV" 14), not rw}"
	[ "$(status_field "$DEV" 7)" = 0 ] || why="${why:-io errors $(status_field "$DEV" 7)}"
	detach_rw "$img" || why="${why:-detach failed}"
	[ -z "$why" ] && qemu_judges "$img" "$shadow"
	verdict "$name"
	rm -f "$img" "$shadow" "$W/$name.base"
}

SIZE=$((64 * 1048576))
case_writes plain_64k cluster_size=64k
case_writes v2_4k compat=0.10,cluster_size=4k
case_writes refcount1_512 cluster_size=512,refcount_bits=1
case_writes refcount64_512 cluster_size=512,refcount_bits=64
case_writes clusters_2m cluster_size=2M
case_writes extended_l2 cluster_size=64k,extended_l2=on \
	"-c 'write -P 0x11 0 8k' -c 'write -z 1M 64k'"
case_writes compressed cluster_size=64k \
	"-c 'write -c -P 0x22 0 2M' -c 'write -c -P 0x33 4M 1M'"
case_writes zero_clusters cluster_size=4k "-c 'write -z 0 8M'"
case_writes backing_raw cluster_size=64k "-c 'write -z 1M 128k'" yes
case_writes backing_extended_l2 cluster_size=32k,extended_l2=on "" yes

# A flush commits: nothing dirty after it, commits counted.
why=""
SIZE=$((16 * 1048576))
qemu-img create -q -f qcow2 "$W/fl.qcow2" "$SIZE"
if attach_rw "$W/fl.qcow2"; then
	dd if=/dev/zero of="/dev/mapper/$DEV" bs=4k count=4 oflag=direct 2>/dev/null
	d1=$(status_field "$DEV" 15)
	# fsync of the device: a flush bio (sync(2) sends none).
	dd if=/dev/zero of="/dev/mapper/$DEV" bs=4k count=0 conv=fsync 2>/dev/null
	d2=$(status_field "$DEV" 15) c=$(status_field "$DEV" 17)
	[ "$d1" -gt 0 ] || why="nothing dirty after an allocating write ($d1)"
	[ "$d2" = 0 ] || why="${why:-still $d2 dirty bytes after a flush}"
	[ "$c" -ge 1 ] || why="${why:-no commit counted}"
	detach_rw "$W/fl.qcow2"
	qemu-img check -q "$W/fl.qcow2" || why="${why:-qemu-img check}"
else
	why="attach failed"
	free_loops
fi
verdict "a flush commits what writes left dirty"

# ext4 on an image, checked through the device and through QEMU.
why=""
SIZE=$((128 * 1048576))
qemu-img create -q -f qcow2 "$W/fs.qcow2" "$SIZE"
if attach_rw "$W/fs.qcow2"; then
	mkfs.ext4 -q -F "/dev/mapper/$DEV" >/dev/null 2>&1 || why="mkfs failed"
	mkdir -p "$W/mnt"
	if [ -z "$why" ] && mount "/dev/mapper/$DEV" "$W/mnt"; then
		i=0
		while [ $i -lt 40 ]; do
			mkdir -p "$W/mnt/d$((i % 7))"
			head -c $((i * 7919 + 1)) /dev/urandom >"$W/mnt/d$((i % 7))/f$i"
			i=$((i + 1))
		done
		(cd "$W/mnt" && find . -type f -exec md5sum {} + | sort) >"$W/sums"
		umount "$W/mnt"
	else
		why=${why:-mount failed}
	fi
	[ -z "$why" ] && { e2fsck -fn "/dev/mapper/$DEV" >/dev/null 2>&1 || why="e2fsck on the device"; }
	detach_rw "$W/fs.qcow2"
	if [ -z "$why" ] && qemu_fs_judges "$W/fs.qcow2"; then
		mount -o loop,ro "$W/qfs.raw" "$W/mnt" 2>/dev/null &&
			{ (cd "$W/mnt" && find . -type f -exec md5sum {} + | sort) >"$W/sums2"; umount "$W/mnt"; }
		cmp -s "$W/sums" "$W/sums2" || why="${why:-files differ through QEMU}"
	fi
else
	why="attach failed"
	free_loops
fi
verdict "ext4 on a qcow2 image: e2fsck clean, files the same through QEMU"
rm -f "$W/fs.qcow2" "$W/qfs.raw"

# fstrim: deleted files hand their clusters back, down to the file.
why=""
SIZE=$((128 * 1048576))
qemu-img create -q -f qcow2 "$W/trim.qcow2" "$SIZE"
if attach_rw "$W/trim.qcow2"; then
	mkfs.ext4 -q -F -E nodiscard "/dev/mapper/$DEV" >/dev/null 2>&1 || why="mkfs failed"
	mkdir -p "$W/mnt"
	if [ -z "$why" ] && mount "/dev/mapper/$DEV" "$W/mnt"; then
		head -c $((48 * 1048576)) /dev/urandom >"$W/mnt/big"
		head -c 100000 /dev/urandom >"$W/mnt/keep"
		md5sum <"$W/mnt/keep" >"$W/keep.sum"
		umount "$W/mnt" && mount "/dev/mapper/$DEV" "$W/mnt"
		full=$(du -k "$W/trim.qcow2" | cut -f1)
		rm "$W/mnt/big"
		# ext4 frees the blocks at its journal commit, trims after.
		sync
		"$FSTRIM" "$W/mnt" || why="fstrim failed"
		umount "$W/mnt"
	else
		why=${why:-mount failed}
	fi
	[ -z "$why" ] && { e2fsck -fn "/dev/mapper/$DEV" >/dev/null 2>&1 || why="e2fsck on the device"; }
	detach_rw "$W/trim.qcow2"
	trimmed=$(du -k "$W/trim.qcow2" | cut -f1)
	if [ -z "$why" ]; then
		[ "$((full - trimmed))" -gt $((40 * 1024)) ] ||
			why="the file kept its space: $full KiB before, $trimmed KiB after"
		qemu_fs_judges "$W/trim.qcow2" &&
			mount -o loop,ro "$W/qfs.raw" "$W/mnt" 2>/dev/null &&
			{ md5sum <"$W/mnt/keep" >"$W/keep.sum2"; umount "$W/mnt"; }
		cmp -s "$W/keep.sum" "$W/keep.sum2" || why="${why:-a kept file differs through QEMU}"
	fi
else
	why="attach failed"
	free_loops
fi
verdict "fstrim hands deleted files' clusters back to the image file"
rm -f "$W/trim.qcow2" "$W/qfs.raw"

# A fixed device that fills up, as an LV would: a dm-linear "LV" of
# 6 MiB over a loop of a larger file stands for it, under a 32 MiB disk
# (room for the tables and about 5 MiB of data).  A write that finds no
# room waits for the device to grow (parked, status fields 18-19) or
# fails with ENOSPC: with error_if_no_space at once, after
# no_space_timeout, or at a plain suspend of a device still full; a
# noflush suspend hands it back to dm core, which sends it again after
# the resume.  Overwrites and flushes go on meanwhile, an event fires when
# the wait begins and at low_water, and the grown device is used after a
# resume, with no reload.
TO=
command -v timeout >/dev/null 2>&1 && TO="timeout 60"
NST=/sys/module/dm_imgfmt/parameters/no_space_timeout
SIZE=$((32 * 1048576))
ev() { dmsetup info "$DEV" | sed -n 's/^Event number: *//p'; }
# full_up [OPT...]: the image, the "LV" over it, $DEV over that with OPTs.
full_up()
{
	why=""
	rm -f "$W/full.qcow2" "$W/full.raw" "$W/dd.rc"
	qemu-img create -q -f qcow2 "$W/full.qcow2" "$SIZE"
	qemu-img convert -O raw "$W/full.qcow2" "$W/full.raw"
	truncate -s $((4 * SIZE)) "$W/full.qcow2"
	if ! FL=$(losetup -f) || ! losetup "$FL" "$W/full.qcow2"; then
		why="losetup failed"
		return 1
	fi
	_o=""
	[ $# -gt 0 ] && _o=" $# $*"
	dmsetup create imgfmt_lv --table "0 $((6 * 2048)) linear $FL 0" &&
		dmsetup create "$DEV" --table "0 $((SIZE / 512)) imgfmt /dev/mapper/imgfmt_lv$_o" &&
		return 0
	why="setup failed: $(dmesg | tail -1)"
	dmsetup remove "$DEV" 2>/dev/null
	dmsetup remove imgfmt_lv 2>/dev/null
	losetup -d "$FL"
	return 1
}
# full_grow [MIB]: the "LV" grows under the live disk (to the whole file).
full_grow()
{
	dmsetup suspend imgfmt_lv &&
		dmsetup reload imgfmt_lv --table "0 $((${1:-128} * 2048)) linear $FL 0" &&
		dmsetup resume imgfmt_lv || why="${why:-growing the LV failed}"
}
# put FILE OFF_MIB [fsync]: FILE to the disk (and a flush after it) and
# the shadow, direct I/O.
put()
{
	dd if="$1" of="/dev/mapper/$DEV" bs=1M seek="$2" oflag=direct \
		conv=notrunc${3:+,$3} 2>"$W/put.err" || return 1
	dd if="$1" of="$W/full.raw" bs=1M seek="$2" conv=notrunc 2>/dev/null
}
# put_bg FILE OFF_MIB: the same, in the background: $W/dd.rc when done.
put_bg()
{
	rm -f "$W/dd.rc"
	(dd if="$1" of="/dev/mapper/$DEV" bs=1M seek="$2" oflag=direct conv=notrunc 2>"$W/dd.err"
	 echo $? >"$W/dd.rc") &
}
# wait_for SECS TEST...: poll once a second until TEST holds.
wait_for()
{
	_s=$1
	shift
	while [ "$_s" -gt 0 ]; do
		"$@" && return 0
		sleep 1
		_s=$((_s - 1))
	done
	"$@"
}
parked() { [ "$(status_field "$DEV" 19)" -ge 1 ] 2>/dev/null; }
# A dd that never ends is reported, not waited for ("dd_done && wait").
dd_done() { [ -s "$W/dd.rc" ]; }
# full_down check|judge: remove it all, cut the file to the image's end;
# QEMU checks it (and with judge compares it with the shadow).
full_down()
{
	end=$(status_field "$DEV" 16)
	$TO dmsetup remove "$DEV" || why="${why:-removal failed}"
	dmsetup remove imgfmt_lv
	losetup -d "$FL"
	[ -n "$end" ] && [ "$end" -gt 0 ] && truncate -s "$end" "$W/full.qcow2"
	if [ -z "$why" ] && [ "$1" = judge ]; then
		qemu_judges "$W/full.qcow2" "$W/full.raw"
	elif [ -z "$why" ]; then
		qemu-img check -q "$W/full.qcow2" || why="qemu-img check"
	fi
	rm -f "$W/full.qcow2" "$W/full.raw"
}
head -c 1048576 /dev/urandom >"$W/one"
head -c $((8 * 1048576)) /dev/urandom >"$W/more"
echo 60 >"$NST"

# error_if_no_space: ENOSPC at once, as dm-thin's.
if full_up error_if_no_space; then
	put "$W/one" 0 fsync || why="the first MiB failed"
	dmsetup table "$DEV" | grep -q " 1 error_if_no_space\$" ||
		why="${why:-table: $(dmsetup table "$DEV")}"
	e0=$(ev) t0=$(date +%s)
	put "$W/more" 8 && why="${why:-8 MiB more fit into 6 MiB}"
	grep -q "No space left" "$W/put.err" || why="${why:-not ENOSPC: $(cat "$W/put.err")}"
	[ $(($(date +%s) - t0)) -lt 20 ] || why="${why:-ENOSPC came late}"
	[ "$(ev)" -gt "$e0" ] || why="${why:-no event when the device filled up}"
	[ "$(status_field "$DEV" 18):$(status_field "$DEV" 19)" = full:0 ] ||
		why="${why:-status $(status_field "$DEV" 18) $(status_field "$DEV" 19), not full 0}"
	head -c 1048576 /dev/urandom >"$W/one"
	put "$W/one" 0 fsync || why="${why:-an overwrite failed on the full device}"
	full_grow
	dmsetup suspend "$DEV" && dmsetup resume "$DEV" || why="${why:-suspend/resume failed}"
	[ "$(status_field "$DEV" 18)" = ok ] || why="${why:-status $(status_field "$DEV" 18) after growth}"
	put "$W/more" 8 fsync || why="${why:-no write after the device grew}"
	full_down judge
fi
verdict "full device, error_if_no_space: ENOSPC at once, an event, overwrites go on, growth used after resume"

# A write that waits: flushes and overwrites go on; a noflush suspend,
# the growth and the resume, and it completes with its data.
if full_up; then
	put "$W/one" 0 fsync || why="the first MiB failed"
	e0=$(ev)
	put_bg "$W/more" 8
	wait_for 20 parked || why="${why:-no write parked}"
	[ "$(status_field "$DEV" 18)" = waiting ] || why="${why:-status $(status_field "$DEV" 18), not waiting}"
	[ "$(ev)" -gt "$e0" ] || why="${why:-no event when the wait began}"
	head -c 1048576 /dev/urandom >"$W/one"
	$TO dd if="$W/one" of="/dev/mapper/$DEV" bs=64k oflag=direct conv=notrunc,fsync 2>/dev/null ||
		why="${why:-an overwrite and flush failed while a write waited}"
	dd if="$W/one" of="$W/full.raw" bs=64k conv=notrunc 2>/dev/null
	dd_done && why="${why:-the waiting write ended: $(cat "$W/dd.err")}"
	$TO dmsetup suspend --noflush "$DEV" || why="${why:-noflush suspend failed}"
	full_grow
	$TO dmsetup resume "$DEV" || why="${why:-resume failed}"
	wait_for 30 dd_done || why="${why:-the waiting write did not end after growth}"
	[ "$(cat "$W/dd.rc" 2>/dev/null)" = 0 ] || why="${why:-the waiting write failed: $(cat "$W/dd.err")}"
	dd if="$W/more" of="$W/full.raw" bs=1M seek=8 conv=notrunc 2>/dev/null
	[ "$(status_field "$DEV" 18):$(status_field "$DEV" 19)" = ok:0 ] ||
		why="${why:-status $(status_field "$DEV" 18) $(status_field "$DEV" 19), not ok 0}"
	dd_done && wait
	full_down judge
fi
verdict "full device: a write waits, overwrites and flushes go on, it completes after noflush suspend, growth, resume"

# Grown before a plain suspend: the suspend's last look lets it through.
if full_up; then
	put "$W/one" 0 fsync || why="the first MiB failed"
	put_bg "$W/more" 8
	wait_for 20 parked || why="${why:-no write parked}"
	full_grow
	parked || why="${why:-the parked write went on before a suspend}"
	$TO dmsetup suspend "$DEV" || why="${why:-suspend failed}"
	# dd's next writes wait for the resume: the parked one is through.
	[ "$(status_field "$DEV" 19)" = 0 ] || why="${why:-still parked after suspend}"
	dmsetup resume "$DEV" || why="${why:-resume failed}"
	wait_for 30 dd_done
	[ "$(cat "$W/dd.rc" 2>/dev/null)" = 0 ] || why="${why:-the waiting write failed: $(cat "$W/dd.err" 2>/dev/null)}"
	dd if="$W/more" of="$W/full.raw" bs=1M seek=8 conv=notrunc 2>/dev/null
	dd_done && wait
	full_down judge
fi
verdict "full device: grown, then a plain suspend completes the waiting write"

# no_space_timeout: the wait ends with ENOSPC.
echo 3 >"$NST"
if full_up; then
	put "$W/one" 0 fsync || why="the first MiB failed"
	t0=$(date +%s)
	$TO dd if="$W/more" of="/dev/mapper/$DEV" bs=1M seek=8 oflag=direct conv=notrunc 2>"$W/put.err" &&
		why="${why:-8 MiB more fit into 6 MiB}"
	t=$(($(date +%s) - t0))
	grep -q "No space left" "$W/put.err" || why="${why:-not ENOSPC: $(cat "$W/put.err")}"
	[ "$t" -ge 2 ] && [ "$t" -lt 30 ] || why="${why:-ENOSPC after $t s, not 3}"
	[ "$(status_field "$DEV" 18):$(status_field "$DEV" 19)" = full:0 ] ||
		why="${why:-status $(status_field "$DEV" 18) $(status_field "$DEV" 19), not full 0}"
	put "$W/one" 0 fsync || why="${why:-an overwrite failed on the full device}"
	full_down check
fi
echo 60 >"$NST"
verdict "full device: no_space_timeout ends the wait with ENOSPC"

# Still full at a plain suspend: the waiting write fails, nothing hangs;
# then removal (--force: an error table first) with a write waiting.
if full_up; then
	put "$W/one" 0 fsync || why="the first MiB failed"
	put_bg "$W/more" 8
	wait_for 20 parked || why="${why:-no write parked}"
	$TO dmsetup suspend "$DEV" || why="${why:-suspend hung or failed}"
	wait_for 10 dd_done || why="${why:-the waiting write did not end at suspend}"
	grep -q "No space left" "$W/dd.err" || why="${why:-not ENOSPC at suspend: $(cat "$W/dd.err")}"
	dmsetup resume "$DEV" || why="${why:-resume failed}"
	dd_done && wait
	put_bg "$W/more" 8
	wait_for 20 parked || why="${why:-no write parked again}"
	$TO dmsetup remove --force "$DEV" >/dev/null 2>&1
	wait_for 10 dd_done || why="${why:-the waiting write did not end at removal}"
	dd_done && wait
	dmsetup info "$DEV" >/dev/null 2>&1 && { $TO dmsetup remove "$DEV" || why="${why:-removal failed}"; }
	dmsetup remove imgfmt_lv
	losetup -d "$FL"
	rm -f "$W/full.qcow2" "$W/full.raw"
fi
verdict "full device: suspend and removal with a waiting write do not hang"

# low_water: one event when the free space falls below it, again after
# growth rearmed it.
if full_up low_water=3145728; then
	dmsetup table "$DEV" | grep -q " 1 low_water=3145728\$" ||
		why="table: $(dmsetup table "$DEV")"
	e0=$(ev)
	put "$W/one" 0 fsync || why="${why:-the first MiB failed}"
	[ "$(ev)" = "$e0" ] || why="${why:-an event with room above low_water}"
	head -c $((2 * 1048576)) /dev/urandom >"$W/two"
	put "$W/two" 1 fsync || why="${why:-writing 2 MiB failed}"
	[ "$(ev)" = $((e0 + 1)) ] || why="${why:-events $e0 -> $(ev) at low_water, not one}"
	[ "$(status_field "$DEV" 20)" -lt 3145728 ] || why="${why:-free $(status_field "$DEV" 20)}"
	put "$W/one" 3 fsync || why="${why:-writing 1 MiB more failed}"
	[ "$(ev)" = $((e0 + 1)) ] || why="${why:-a second event below low_water}"
	full_grow 12
	dmsetup suspend "$DEV" && dmsetup resume "$DEV" || why="${why:-suspend/resume failed}"
	[ "$(status_field "$DEV" 20)" -ge 3145728 ] || why="${why:-free $(status_field "$DEV" 20) after growth}"
	e1=$(ev)
	head -c $((5 * 1048576)) /dev/urandom >"$W/two"
	put "$W/two" 4 fsync || why="${why:-writing 5 MiB after growth failed}"
	[ "$(ev)" = $((e1 + 1)) ] || why="${why:-events $e1 -> $(ev) after growth, not one}"
	full_down judge
fi
verdict "low_water: an event when free space falls below it, rearmed by growth"
rm -f "$W/one" "$W/more" "$W/two" "$W/put.err" "$W/dd.err" "$W/dd.rc"

# Refused read-write, by name.
SIZE=$((16 * 1048576))
refused_rw()		# refused_rw NAME IMG WORDS
{
	name=$1 img=$2 words=$3
	truncate -s "$SIZE" "$img"
	loop=$(losetup -f) && losetup "$loop" "$img"
	out=$(dmsetup create "$DEV" --table "0 $((SIZE / 512)) imgfmt $loop" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && dmsetup remove "$DEV" 2>/dev/null
	losetup -d "$loop"
	log=$(dmesg | tail -5)
	case "$rc:$log" in
	0:*) why="the table loaded" ;;
	*"$words"*) why="" ;;
	*) why="not the message expected: $log" ;;
	esac
	verdict "refused: $name"
}
qemu-img create -q -f vmdk "$W/r.vmdk" "$SIZE"
refused_rw "a vmdk" "$W/r.vmdk" "cannot be written yet"
qemu-img create -q -f qcow2 "$W/r.qcow2" "$SIZE"
qemu-img snapshot -c s1 "$W/r.qcow2"
refused_rw "internal snapshots" "$W/r.qcow2" "internal snapshots are not supported yet"
qemu-img create -q -f qcow2 "$W/d.qcow2" "$SIZE"
# The dirty bit (incompatible feature bit 0), set by hand.
printf '\001' | dd of="$W/d.qcow2" bs=1 seek=79 conv=notrunc 2>/dev/null
refused_rw "the dirty bit" "$W/d.qcow2" "qemu-img check -r all"

# Options about writes on a read-only table.
why=""
qemu-img create -q -f qcow2 "$W/ro.qcow2" "$SIZE"
loop=$(loop_ro "$W/ro.qcow2")
for o in low_water=1048576 error_if_no_space; do
	dmsetup create --readonly "$DEV" --table "0 $((SIZE / 512)) imgfmt $loop 1 $o" 2>/dev/null &&
		{ dmsetup remove "$DEV"; why="${why:-$o loaded read-only}"; }
	dmesg | tail -2 | grep -q "${o%%=*}.* needs a read-write table" || why="${why:-no message for $o}"
done
losetup -d "$loop"
verdict "refused: low_water= and error_if_no_space on a read-only table"

# A second read-write table over the same image.
why=""
qemu-img create -q -f qcow2 "$W/two.qcow2" "$SIZE"
if attach_rw "$W/two.qcow2"; then
	out=$(dmsetup create "${DEV}2" --table "0 $((SIZE / 512)) imgfmt $LOOP" 2>&1) &&
		{ dmsetup remove "${DEV}2"; why="a second table loaded"; }
	dmesg | tail -3 | grep -q "open read-write by another" || why="${why:-no message}"
	detach_rw "$W/two.qcow2"
else
	why="attach failed"
	free_loops
fi
verdict "refused: a second read-write table over one image"

rm -rf "$W"
why=""
nothing_left
verdict "no device and no loop left behind"
echo "# write_vm_test.sh: $n tests, $failed failed"
[ $failed -eq 0 ]
