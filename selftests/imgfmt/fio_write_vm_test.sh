#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# fio write verification of read-write QCOW2 tables in the guest.  Every
# case is a fresh image made by qemu-img (64 KiB clusters, 4 KiB clusters
# with 64-bit refcounts, extended L2, version 2, over a qcow2 and over a
# raw backing file, 1 KiB clusters under a 64 KiB cache_size), on a
# read-write loop device over its file grown sparsely (one case on a zram
# device instead: below), and fio writes it in three regions of the disk:
#
#   0-6M    "same": writes of every size from 512 B to 1 MiB (bsrange, so
#           odd sectors and lengths), random and sequential with holes,
#           overwrites of what was written; fio with a fixed seed writes
#           the same bytes through dm-linear over a raw copy of the
#           image's first contents (backing file included), and QEMU's
#           reading of the image after removal must equal it there.
#   6-12M   "verify": three writers at once (random 512 B-1 MiB, random
#           512 B-16 KiB, sequential 512 B-1 MiB), crc32c headers, each
#           followed by fio's verify pass (verify_fatal).
#   12-16M  "shared clusters": 4 jobs, each writing a quarter of every
#           cluster (offset_increment a quarter cluster), and 8 jobs, each
#           writing every 8th sector, all at once into unallocated
#           clusters: verified like the region above.
#
# When a case's writers are done, its whole device is read once; after
# the table is removed and the file cut back to the image's end (status
# field 16), `qemu-img convert -O raw`'s output must hold the same bytes,
# and fio --verify_only checks regions 2 and 3 there; qemu-img check must
# find no error and no leak.  All the cases run at once (one device each,
# its fio jobs and then its judgement in the background), so that their
# writers also run side by side; the status fields must show mode rw, no
# I/O error, commits made (many for the small cache) and the cache's peak
# within its bound.
#
# The zram case: a loop device completes writes in a softirq when two
# CPUs submit to it, zram in the submitting task.  There a write into a
# new cluster finishes its plan where it completes (imgfmt_finish_here()),
# alongside the writer on the other CPU, which a loop never shows on a
# guest of two CPUs.  The image is copied onto /dev/zram0 and back.
# zram takes whole 4 KiB blocks only: that case's jobs write multiples
# of 4 KiB (same4k.fio, and its own reference).
#
#   fio_write_vm_test.sh DIR	(DIR unused: the images are made here)

here=$(cd "$(dirname "$0")" && pwd)
SUITE=fio_write
. "$here/vmlib.sh"

W=${TMPDIR:-/tmp}/imgfmt-fio
rm -rf "$W"
mkdir -p "$W"
LIN=imgfmt_fio_lin
SIZE=$((16 * 1048576))

if ! command -v fio >/dev/null 2>&1; then
	not_ok "fio is in the guest" "fio not found on PATH"
	echo "# fio_write_vm_test.sh: $n tests, $failed failed"
	exit 1
fi

# The job files.  fio expands ${FIO_*} from the environment: the file,
# and the engine (libaio, direct, on devices; psync, buffered, on QEMU's
# raw output, which lies in a file system without O_DIRECT on 6.1).
# disk_util=0: fio would otherwise find its device's disk statistics
# by walking /sys/block, and read them (and every layer's) 4 times a
# second; nothing here uses them.
cat >"$W/same.fio" <<'EOF'
[global]
filename=${FIO_DEV}
ioengine=${FIO_ENGINE}
direct=${FIO_DIRECT}
iodepth=8
thread=1
gtod_reduce=1
disk_util=0
clocksource=clock_gettime
randrepeat=1
randseed=4242
refill_buffers=1
size=6M

[same-rand]
rw=randwrite
bsrange=512-1M
io_size=2M

[same-small]
stonewall
rw=randwrite
bsrange=512-8k
io_size=256k

[same-seq-holes]
stonewall
rw=write:40k
bsrange=512-1M
offset=512k
size=5632k
EOF

# verify_job CLUSTER OUT: the verified writers; the shared-cluster jobs
# write quarters of clusters (at least a sector), at most 256 writes each.
verify_job()
{
	piece=$(($1 / 4)) qsize=$(($1 * 256))
	[ $piece -ge 512 ] || piece=512
	[ $qsize -le 2097152 ] || qsize=2097152
	cat >"$2" <<EOF
[global]
filename=\${FIO_DEV}
ioengine=\${FIO_ENGINE}
direct=\${FIO_DIRECT}
iodepth=8
thread=1
gtod_reduce=1
disk_util=0
clocksource=clock_gettime
randrepeat=1
randseed=777
verify=crc32c
verify_fatal=1
do_verify=1

[verify-rand]
rw=randwrite
bsrange=512-1M
offset=6M
size=2M

[verify-small]
rw=randwrite
bsrange=512-16k
offset=8M
size=512k

[verify-seq]
rw=write
bsrange=512-1M
offset=8704k
size=3584k

[shared-quarters]
numjobs=4
offset=12M
offset_increment=$piece
rw=write:$((3 * piece))
bs=$piece
size=$qsize

[shared-sectors]
numjobs=8
offset=14M
offset_increment=512
rw=write:3584
bs=512
size=512k
EOF
}

# run_fio NAME WHAT JOBFILE DEV [ARGS...]: fio on a device (libaio,
# direct) or a file (psync, buffered); on failure appends the reason and
# the end of fio's output to $W/NAME.why, else the time to $W/NAME.times.
run_fio()
{
	_n=$1 _what=$2 _job=$3 _dev=$4 _t=$(date +%s)
	shift 4
	case $_dev in
	/dev/*) _eng=libaio _dir=1 ;;
	*) _eng=psync _dir=0 ;;
	esac
	if ! FIO_DEV=$_dev FIO_ENGINE=$_eng FIO_DIRECT=$_dir \
		fio --output="$W/$_n.fio.out" "$@" "$_job" >/dev/null 2>"$W/$_n.fio.err"; then
		echo "$_what: fio failed: $(grep -iE 'verify|error|bad|fail' \
			"$W/$_n.fio.out" "$W/$_n.fio.err" | head -n 4 | tr '\n' ' ')" >>"$W/$_n.why"
		return 1
	fi
	echo "$_what $(($(date +%s) - _t)) s;" >>"$W/$_n.times"
}

# fail NAME REASON: the case's first failure is kept.
fail()
{
	[ -s "$W/$1.why" ] || echo "$2" >"$W/$1.why"
}

# The same writes in whole 4 KiB blocks, for a device of 4 KiB blocks.
sed 's/^bsrange=512-/bsrange=4k-/' "$W/same.fio" >"$W/same4k.fio"

# same_job KIND: the "same" job file of images of KIND.
same_job()
{
	if [ "$1" = zero4k ]; then echo "$W/same4k.fio"; else echo "$W/same.fio"; fi
}

# reference KIND: $W/ref.KIND, the "same" writes through dm-linear over a
# raw file holding what every image of KIND reads at first: zeroes
# (KIND zero, and zero4k in 4 KiB blocks) or the backing file's bytes
# (KIND backing).
reference()
{
	ref=$W/ref.$1
	if [ "$1" = backing ]; then
		cp "$W/backing.raw" "$ref"
	else
		truncate -s "$SIZE" "$ref"
	fi
	_l=$(losetup -f) || bail "losetup -f"
	losetup "$_l" "$ref" || bail "losetup $ref"
	dmsetup create "$LIN" --table "0 $((SIZE / 512)) linear $_l 0" ||
		bail "dm-linear over $ref"
	run_fio "ref-$1" "dm-linear" "$(same_job "$1")" "/dev/mapper/$LIN" ||
		bail "the writes through dm-linear: $(cat "$W/ref-$1.why")"
	dmsetup remove "$LIN" || bail "remove dm-linear"
	losetup -d "$_l"
}

# The backing files, of known content: random bytes with two holes of
# zeroes (that the qcow2 copy leaves unallocated), as a raw file and as
# a qcow2 image of 32 KiB clusters.  And the reference contents.
head -c "$SIZE" /dev/urandom >"$W/backing.raw"
dd if=/dev/zero of="$W/backing.raw" bs=1M seek=3 count=1 conv=notrunc 2>/dev/null
dd if=/dev/zero of="$W/backing.raw" bs=1M seek=13 count=1 conv=notrunc 2>/dev/null
qemu-img convert -f raw -O qcow2 -o cluster_size=32k "$W/backing.raw" \
	"$W/backing.qcow2" || bail "qemu-img convert of the backing file"
reference zero
reference zero4k
reference backing
echo "# references: $(cat "$W/ref-zero.times" "$W/ref-zero4k.times" "$W/ref-backing.times" | tr '\n' ' ')"

# setup NAME CLUSTER CREATE-OPTS [TABLE-OPTS [BACKING-FORMAT [MIN-COMMITS]]]:
# the image, its job file and the device fio_NAME over a read-write loop
# of the file grown sparsely (the lower layer on a read-only loop).  The
# loops are listed in $W/NAME.loops.
CASES=""
setup()
{
	name=$1 cl=$2 opts=$3 topt=${4:-} bk=${5:-} mincommits=${6:-1}
	CASES="$CASES $name"
	img=$W/$name.qcow2
	kind=${bk:+backing}
	[ "$name" != "$ZRAM_CASE" ] || kind=zero4k
	echo "$mincommits $(date +%s) $kind" >"$W/$name.conf"
	: >"$W/$name.loops"
	if [ -n "$bk" ]; then
		qemu-img create -q -f qcow2 -o "$opts" -b "$W/backing.$bk" -F "$bk" \
			"$img" "$SIZE" || { fail "$name" "qemu-img create"; return; }
	else
		qemu-img create -q -f qcow2 -o "$opts" "$img" "$SIZE" ||
			{ fail "$name" "qemu-img create"; return; }
	fi
	verify_job "$cl" "$W/$name.verify.fio"
	[ "$kind" != zero4k ] ||
		sed -i 's/^bsrange=512-/bsrange=4k-/; s/^bs=512$/bs=4k/
			s/^offset_increment=512$/offset_increment=4096/
			s/^rw=write:3584$/rw=write:28672/' "$W/$name.verify.fio"
	truncate -s $((4 * SIZE + 64 * 1048576)) "$img"
	if [ "$name" = "$ZRAM_CASE" ]; then
		on_zram "$img" || { fail "$name" "$why"; return; }
		loop=$ZRAM
	else
		loop=$(losetup -f) || { fail "$name" "losetup -f"; return; }
		losetup "$loop" "$img" || { fail "$name" "losetup"; return; }
		echo "$loop" >>"$W/$name.loops"
	fi
	t="0 $((SIZE / 512)) imgfmt $loop"
	if [ -n "$topt" ]; then t="$t 1 $topt"; else t="$t 0"; fi
	if [ -n "$bk" ]; then
		ll=$(loop_ro "$W/backing.$bk") || { fail "$name" "losetup"; return; }
		echo "$ll" >>"$W/$name.loops"
		t="$t 1 $ll 1 format=$bk"
	fi
	dmsetup create "fio_$name" --table "$t" ||
		fail "$name" "table load: $(dmesg | tail -n 2 | tr '\n' ' ')"
}

# zram_reset: $ZRAM empty and unsized.  A device sized once (an earlier
# run in this boot) takes no size again before a reset.
zram_reset()
{
	echo 1 >/sys/block/zram0/reset 2>/dev/null
}

# on_zram FILE: FILE's bytes on a zram device as large ($ZRAM).
ZRAM_CASE=on_zram
ZRAM=/dev/zram0
on_zram()
{
	why="no zram device (module zram)"
	[ -b "$ZRAM" ] || return 1
	zram_reset
	why="cannot size $ZRAM"
	echo "$(stat -c %s "$1")" >/sys/block/zram0/disksize || return 1
	why="cannot copy the image onto $ZRAM"
	dd if="$1" of="$ZRAM" bs=1M conv=notrunc 2>/dev/null
}

# writers NAME: every fio write on fio_NAME.
writers()
{
	[ -s "$W/$1.why" ] && return
	d=/dev/mapper/fio_$1
	read -r _ _ _kind <"$W/$1.conf"
	run_fio "$1" "same" "$(same_job "$_kind")" "$d" &&
		run_fio "$1" "verify" "$W/$1.verify.fio" "$d"
}

# judge NAME: status fields, the device's bytes, removal, QEMU's
# judgement; the commits and the status go to $W/NAME.stat for verdict.
judge()
{
	name=$1 dev=fio_$1 img=$W/$1.qcow2
	read -r mincommits t0 kind <"$W/$name.conf"
	kind=${kind:-zero}
	cstat=""
	c=0
	devsum=""
	if dmsetup status "$dev" >/dev/null 2>&1; then
		# What the device reads when every writer is done, to be
		# what QEMU reads of the image (all of it, bytes).
		devsum=$(dd if="/dev/mapper/$dev" bs=1M iflag=direct 2>/dev/null | md5_of)
		c=$(status_field "$dev" 17)
		cstat="cache used/limit $(status_field "$dev" 4), misses $(status_field "$dev" 6), peak $(status_field "$dev" 8)"
		m=$(status_field "$dev" 14)
		[ "$m" = rw ] || fail "$name" "mode $m, not rw"
		e=$(status_field "$dev" 7)
		[ "$e" = 0 ] || fail "$name" "io errors $e"
		[ "$c" -ge "$mincommits" ] || fail "$name" "$c commits, fewer than $mincommits"
		lim=$(status_field "$dev" 4)
		lim=${lim#*/}
		[ "$(status_field "$dev" 8)" -le "$lim" ] ||
			fail "$name" "cache peak $(status_field "$dev" 8) over its limit $lim"
		end=$(status_field "$dev" 16)
		if dmsetup remove "$dev"; then
			if [ "$name" = "$ZRAM_CASE" ]; then
				dd if="$ZRAM" of="$img" bs=1M 2>/dev/null ||
					fail "$name" "cannot copy the image back from $ZRAM"
				zram_reset
			fi
			[ -n "$end" ] && [ "$end" -gt 0 ] && truncate -s "$end" "$img"
		else
			fail "$name" "dmsetup remove"
		fi
	fi
	while read -r l; do losetup -d "$l"; done <"$W/$name.loops"
	if [ ! -s "$W/$name.why" ]; then
		out=$(qemu-img check "$img" 2>&1)
		case $out in
		*"No errors were found"*)
			case $out in
			*leak*) fail "$name" "qemu-img check: $(echo "$out" | tr '\n' ' ')" ;;
			esac ;;
		*) fail "$name" "qemu-img check: $(echo "$out" | tr '\n' ' ')" ;;
		esac
	fi
	dump=$W/$name.dump
	[ -s "$W/$name.why" ] || qemu-img convert -O raw "$img" "$dump" ||
		fail "$name" "qemu-img convert"
	if [ ! -s "$W/$name.why" ] &&
		! cmp -s -n $((6 * 1048576)) "$dump" "$W/ref.$kind"; then
		fail "$name" "QEMU's reading differs from dm-linear's: $(cmp -n $((6 * 1048576)) "$dump" "$W/ref.$kind" | head -n 1)"
	fi
	if [ ! -s "$W/$name.why" ]; then
		qsum=$(md5_of <"$dump")
		[ "$qsum" = "$devsum" ] ||
			fail "$name" "QEMU reads the image as md5 $qsum, the device read $devsum"
	fi
	[ -s "$W/$name.why" ] ||
		run_fio "$name" "verify_only on QEMU's reading" "$W/$name.verify.fio" "$dump" --verify_only
	echo "$c $(($(date +%s) - t0)) $cstat" >"$W/$name.stat"
	rm -f "$img" "$dump"
}

# verdict NAME: the case's TAP line.
verdict()
{
	read -r c t cstat <"$W/$1.stat" || c="?" t="?" cstat=""
	if [ -s "$W/$1.why" ]; then
		not_ok "$1" "$(cat "$W/$1.why")" "$cstat"
	else
		ok "$1 ($c commits, $t s)"
		echo "# $1: fio: $(tr '\n' ' ' <"$W/$1.times")$cstat"
	fi
}

setup clusters_64k 65536 cluster_size=64k
setup clusters_4k_refcount64 4096 cluster_size=4k,refcount_bits=64
setup extended_l2 65536 cluster_size=64k,extended_l2=on
setup v2 65536 compat=0.10
setup over_qcow2 65536 cluster_size=64k "" qcow2
setup over_raw 65536 cluster_size=64k "" raw
# 64 KiB of cache for 1 KiB clusters (168 KiB of tables): dirty tables
# reach half of it and are committed, and evicted, again and again.
setup cache_64k 1024 cluster_size=1k cache_size=65536 "" 5
setup "$ZRAM_CASE" 65536 cluster_size=64k

# Every case at once: the devices' writers run side by side, and a case
# done writing is judged while the others still write.
pids=""
for k in $CASES; do
	{ writers "$k"; judge "$k"; } &
	pids="$pids $!"
done
for p in $pids; do wait "$p"; done
for k in $CASES; do verdict "$k"; done

rm -rf "$W"
why=""
nothing_left
if [ -z "$why" ]; then ok "no device and no loop left behind"; else not_ok "no device and no loop left behind" "$why"; fi
echo "# fio_write_vm_test.sh: $n tests, $failed failed"
[ "$failed" -eq 0 ]
