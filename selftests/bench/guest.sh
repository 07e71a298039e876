#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# make bench, inside the guest (busybox sh): copy the images from the
# virtio disk into tmpfs, set up the three paths to the same data and run
# fio over them in alternating rounds.  Prints machine-readable lines that
# selftests/bench/run.sh turns into the report:
#
#   BENCH <round> <workload> <path> <iops> <KiB/s> <runtime_ms>
#   IMGSTAT <round> <workload> <device> before|after <dmsetup status fields>
#   NOTYET <workload> <reason>
#   INFO <key> <value...>
#
# Settings come from /payload/bench.conf (written by run.sh).

# Word splitting of $(wl_args ...) and option lists is intended throughout.
# shellcheck disable=SC2046,SC2086
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1
# shellcheck disable=SC1091 # written by run.sh
. /payload/bench.conf
# mkinitramfs.sh --bin keeps the helper at its host path.
PATH=$(dirname "$IMGFMT_BIN"):$PATH
export PATH

die() {
	echo "BENCH-ERROR $*"
	dmesg | tail -n 30 | sed 's/^/# dmesg: /'
	exit 1
}
note() { echo "# $*"; }

[ -z "${IMGFMT_KO_FAILED:-}" ] || die "module load failed: $IMGFMT_KO_FAILED"

# ------------------------------------------------------------------ images
# tmpfs: the image files live in guest RAM, so the three paths read the same
# pages the same way (loop and qemu-nbd both do buffered reads of tmpfs
# pages) and no I/O waits on the host, which keeps -icount runs exact.
mkdir -p /src /bench
mount -t ext4 -o ro /dev/vda /src || die "cannot mount the image disk"
mount -t tmpfs -o "size=${TMPFS_MB}m" tmpfs /bench || die "cannot mount tmpfs"
t0=$(date +%s)
for f in /src/*.raw /src/*.qcow2; do
	dd if="$f" of="/bench/${f#/src/}" bs=4M iflag=direct 2>/dev/null ||
		die "cannot copy $f"
done
for d in /src/chain*; do
	[ -d "$d" ] && { cp -a "$d" /bench/ || die "cannot copy $d"; }
done
umount /src
echo 3 >/proc/sys/vm/drop_caches
note "images copied to tmpfs in $(($(date +%s) - t0)) s (guest clock)"
# shellcheck disable=SC2012
ls -l /bench | sed 's/^/# /'

echo "INFO guest_kernel $(uname -r)"
echo "INFO guest_cpus $(nproc)"
echo "INFO guest_mem $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
echo "INFO fio $(fio --version)"
echo "INFO qemu_nbd $(qemu-nbd --version | head -n 1)"

# ------------------------------------------------------------------ devices
LOOP_RAW=/dev/loop0
LOOP_QCOW=/dev/loop1
LOOP_SPARSE=/dev/loop2
losetup -r $LOOP_RAW /bench/data.raw || die "losetup data.raw"
losetup -r $LOOP_QCOW /bench/data.qcow2 || die "losetup data.qcow2"
losetup -r $LOOP_SPARSE /bench/sparse.qcow2 || die "losetup sparse.qcow2"
for l in loop0 loop1; do
	echo "INFO ${l}_dio $(cat /sys/block/$l/loop/dio 2>/dev/null || echo ?)"
done

mk_linear() {
	dmsetup create b-linear --readonly \
		--table "0 $(blockdev --getsz $LOOP_RAW) linear $LOOP_RAW 0" ||
		die "dmsetup create b-linear"
}
mk_imgfmt() {		# mk_imgfmt NAME IMAGE LOOP [imgfmt table options]
	n=$1 i=$2 l=$3
	shift 3
	dmsetup create "$n" --readonly --table "$(imgfmt table "$@" "$i" "$l")" ||
		die "dmsetup create $n ($(imgfmt table "$@" "$i" "$l"))"
}
# qemu-nbd as a user would run it: read-only, the page cache of the file
# system (tmpfs has no O_DIRECT on 6.1, and loop reads through it too),
# thread-pool AIO, QEMU's default qcow2 caches.
start_nbd() {		# start_nbd /dev/nbdN IMAGE
	if [ -n "$NBD_L2_CACHE" ]; then
		qemu-nbd --connect="$1" --read-only --cache=writeback \
			--aio=threads --image-opts \
			"driver=qcow2,l2-cache-size=$NBD_L2_CACHE,file.driver=file,file.filename=$2" ||
			die "qemu-nbd --connect $1 $2"
	else
		qemu-nbd --connect="$1" --read-only --format=qcow2 \
			--cache=writeback --aio=threads "$2" ||
			die "qemu-nbd --connect $1 $2"
	fi
	n=0
	while [ "$(cat "/sys/block/${1#/dev/}/size")" = 0 ]; do
		n=$((n + 1))
		[ $n -lt 100 ] || die "$1 never got a size"
		sleep 0.1
	done
}
stop_nbd() {		# stop_nbd /dev/nbdN
	qemu-nbd --disconnect "$1" >/dev/null || die "qemu-nbd --disconnect $1"
	n=0
	while [ -e "/sys/block/${1#/dev/}/pid" ] ||
		[ -e "/var/lock/qemu-nbd-${1#/dev/}" ]; do
		n=$((n + 1))
		[ $n -lt 100 ] || die "$1 does not go away"
		sleep 0.1
	done
}

# qemu-nbd --connect puts its socket in /var/lock.
mkdir -p /var/lock
mk_linear
mk_imgfmt b-imgfmt /bench/data.qcow2 $LOOP_QCOW
mk_imgfmt b-sparse /bench/sparse.qcow2 $LOOP_SPARSE \
	${SPARSE_CACHE:+--cache-size "$SPARSE_CACHE"}
start_nbd /dev/nbd0 /bench/data.qcow2
start_nbd /dev/nbd1 /bench/sparse.qcow2

for d in /dev/mapper/b-linear /dev/mapper/b-imgfmt /dev/nbd0; do
	echo "INFO size_$(basename $d) $(blockdev --getsize64 $d)"
done
echo "INFO table_imgfmt $(dmsetup table b-imgfmt)"
echo "INFO table_sparse $(dmsetup table b-sparse)"
echo "INFO status_sparse_start $(dmsetup status b-sparse)"

# Compressed clusters (zlib and zstd images): the workload is reported as
# "not yet" when dm-imgfmt cannot read them (table load or read fails).
COMP=
setup_comp() {		# setup_comp KIND LOOP /dev/nbdN
	img=/bench/$1.qcow2
	[ -f "$img" ] || return 0
	losetup -r "$2" "$img" || die "losetup $img"
	if ! dmsetup create "b-$1" --readonly \
		--table "$(imgfmt table "$img" "$2")" 2>/tmp/comp.err; then
		echo "NOTYET $1-seq64k table load fails: $(tail -n 1 /tmp/comp.err)"
		return 0
	fi
	if ! dd if="/dev/mapper/b-$1" of=/dev/null bs=65536 count=64 \
		iflag=direct 2>/tmp/comp.err; then
		echo "NOTYET $1-seq64k reading compressed clusters fails:" \
			"$(tail -n 1 /tmp/comp.err)"
		dmsetup remove "b-$1"
		return 0
	fi
	start_nbd "$3" "$img"
	COMP="$COMP $1"
}
setup_comp comp /dev/loop3 /dev/nbd2
setup_comp compz /dev/loop4 /dev/nbd3
echo "INFO comp_ready$COMP"

# Backing chains, after the fixed loop devices above: imgfmt attach of
# the top of chainN (N-1 empty overlays over data.qcow2) finds the layers,
# puts each on a loop and makes one device; how long that takes (guest
# time, /proc/uptime) is reported.
CHAINS=
for d in /bench/chain*; do
	[ -d "$d" ] || continue
	depth=${d#/bench/chain}
	case " $WORKLOADS " in *" chain$depth-"*) ;; *) continue ;; esac
	t0=$(cut -d' ' -f1 /proc/uptime)
	imgfmt attach --name "b-chain$depth" "$d/l$((depth - 1)).qcow2" \
		>/dev/null || die "imgfmt attach chain$depth"
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "INFO attach_chain$depth $(echo "$t0 $t1" | awk '{ printf "%.2f s", $2 - $1 }')"
	echo "INFO status_chain${depth}_start $(dmsetup status "b-chain$depth")"
	CHAINS="$CHAINS $depth"
done

# The write paths.  w-*: WRITE_MB of data.raw as a raw file (dm-linear rw)
# and as two qcow2 copies, every cluster allocated, one for dm-imgfmt rw,
# one for qemu-nbd rw (QEMU's recommended cache=none,aio=native where
# O_DIRECT works on tmpfs, else cache=writeback,aio=threads; reported).
# Where both work, one more copy for qemu-nbd with cache=writeback (the
# nbdwb paths: what a qemu-nbd started with its defaults writes through).
# f-*: fresh devices made before each run (recreate_fresh).
WPATHS=
case " $WORKLOADS " in *" w-"* | *" f-"*) WPATHS=yes ;; esac
NBD_WCACHE="--cache=none --aio=native"
NBD_WB_CACHE="--cache=writeback --aio=threads"
NBD_WB=
# busybox's losetup -f finds no free loop device once 1024 are bound (the
# chains hold 1110); util-linux's asks the kernel for one.
LOSETUP=/usr/sbin/losetup
[ -x "$LOSETUP" ] || LOSETUP=losetup
mk_wimgfmt() {		# mk_wimgfmt NAME IMAGE: a read-write table, loop grown
	truncate -s "$((2 * FRESH_MB + 64))M" "$2" || die "truncate $2"
	l=$($LOSETUP -f) || die "losetup -f"
	$LOSETUP "$l" "$2" || die "losetup $2"
	dmsetup create "$1" --table "$(imgfmt table "$2" "$l")" ||
		die "dmsetup create $1 ($(imgfmt table "$2" "$l"))"
}
rm_wimgfmt() {		# rm_wimgfmt NAME IMAGE: remove, cut the file back
	l=$(dmsetup deps -o devname "$1" | sed -n 's/.*(\(loop[0-9]*\)).*/\1/p')
	end=$(dmsetup status "$1" | cut -d' ' -f19)
	dmsetup remove "$1" || die "dmsetup remove $1"
	losetup -d "/dev/$l"
	truncate -s "$end" "$2"
}
mk_wlinear() {		# mk_wlinear NAME FILE
	l=$($LOSETUP -f) || die "losetup -f"
	$LOSETUP "$l" "$2" || die "losetup $2"
	dmsetup create "$1" --table "0 $(blockdev --getsz "$l") linear $l 0" ||
		die "dmsetup create $1"
}
rm_wlinear() {		# rm_wlinear NAME
	l=$(dmsetup deps -o devname "$1" | sed -n 's/.*(\(loop[0-9]*\)).*/\1/p')
	dmsetup remove "$1" || die "dmsetup remove $1"
	losetup -d "/dev/$l"
}
start_wnbd() {		# start_wnbd /dev/nbdN IMAGE [CACHE-ARGS]
	c=${3:-$NBD_WCACHE}
	# shellcheck disable=SC2086
	qemu-nbd --connect="$1" --format=qcow2 $c "$2" ||
		die "qemu-nbd --connect $1 $2 $c"
	n=0
	while [ "$(cat "/sys/block/${1#/dev/}/size")" = 0 ]; do
		n=$((n + 1))
		[ $n -lt 100 ] || die "$1 never got a size"
		sleep 0.1
	done
}
if [ -n "$WPATHS" ]; then
	dd if=/bench/data.raw of=/bench/w.raw bs=1M count="$WRITE_MB" 2>/dev/null ||
		die "cannot make w.raw"
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 /bench/w.raw \
		/bench/w-imgfmt.qcow2 || die "qemu-img convert w.raw"
	cp /bench/w-imgfmt.qcow2 /bench/w-nbd.qcow2
	# O_DIRECT on tmpfs (6.6 and later), else the page cache.
	if dd if=/bench/w.raw of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
		NBD_WB=yes
		cp /bench/w-imgfmt.qcow2 /bench/w-nbdwb.qcow2
		start_wnbd /dev/nbd6 /bench/w-nbdwb.qcow2 "$NBD_WB_CACHE"
		echo "INFO nbd_wb_cache qemu-nbd $NBD_WB_CACHE"
	else
		NBD_WCACHE=$NBD_WB_CACHE
	fi
	echo "INFO nbd_write_cache qemu-nbd $NBD_WCACHE"
	mk_wlinear b-wlinear /bench/w.raw
	mk_wimgfmt b-wimgfmt /bench/w-imgfmt.qcow2
	start_wnbd /dev/nbd4 /bench/w-nbd.qcow2
	echo "INFO table_wimgfmt $(dmsetup table b-wimgfmt)"
fi

# recreate_fresh PATH: a fresh device for an f- path (a sparse raw file
# for dm-linear, an empty qcow2 of 64 KiB clusters for dm-imgfmt and
# qemu-nbd); destroy_fresh PATH frees it and its memory.
recreate_fresh() {
	case $1 in
	f-linear)
		rm -f /bench/f.raw
		truncate -s "${FRESH_MB}M" /bench/f.raw
		mk_wlinear b-flinear /bench/f.raw ;;
	f-imgfmt)
		qemu-img create -q -f qcow2 -o cluster_size=65536 /bench/f-imgfmt.qcow2 \
			"${FRESH_MB}M" || die "qemu-img create"
		mk_wimgfmt b-fimgfmt /bench/f-imgfmt.qcow2 ;;
	f-nbd)
		qemu-img create -q -f qcow2 -o cluster_size=65536 /bench/f-nbd.qcow2 \
			"${FRESH_MB}M" || die "qemu-img create"
		start_wnbd /dev/nbd5 /bench/f-nbd.qcow2 ;;
	f-nbdwb)
		qemu-img create -q -f qcow2 -o cluster_size=65536 /bench/f-nbdwb.qcow2 \
			"${FRESH_MB}M" || die "qemu-img create"
		start_wnbd /dev/nbd7 /bench/f-nbdwb.qcow2 "$NBD_WB_CACHE" ;;
	esac
}
destroy_fresh() {
	case $1 in
	f-linear) rm_wlinear b-flinear; rm -f /bench/f.raw ;;
	f-imgfmt)
		rm_wimgfmt b-fimgfmt /bench/f-imgfmt.qcow2
		echo "INFO fresh_image_end_$2 $(stat -c %s /bench/f-imgfmt.qcow2)"
		qemu-img check -q /bench/f-imgfmt.qcow2 ||
			die "$2: qemu-img check of the fresh dm-imgfmt image fails"
		rm -f /bench/f-imgfmt.qcow2 ;;
	f-nbd) stop_nbd /dev/nbd5; rm -f /bench/f-nbd.qcow2 ;;
	f-nbdwb) stop_nbd /dev/nbd7; rm -f /bench/f-nbdwb.qcow2 ;;
	esac
}

dev_of() {
	case $1 in
	linear) echo /dev/mapper/b-linear ;;
	imgfmt) echo /dev/mapper/b-imgfmt ;;
	nbd) echo /dev/nbd0 ;;
	sparse-imgfmt) echo /dev/mapper/b-sparse ;;
	sparse-nbd) echo /dev/nbd1 ;;
	comp-imgfmt) echo /dev/mapper/b-comp ;;
	comp-nbd) echo /dev/nbd2 ;;
	compz-imgfmt) echo /dev/mapper/b-compz ;;
	compz-nbd) echo /dev/nbd3 ;;
	chain*-imgfmt) echo "/dev/mapper/b-${1%-imgfmt}" ;;
	w-linear) echo /dev/mapper/b-wlinear ;;
	w-imgfmt) echo /dev/mapper/b-wimgfmt ;;
	w-nbd) echo /dev/nbd4 ;;
	w-nbdwb) echo /dev/nbd6 ;;
	f-linear) echo /dev/mapper/b-flinear ;;
	f-imgfmt) echo /dev/mapper/b-fimgfmt ;;
	f-nbd) echo /dev/nbd5 ;;
	f-nbdwb) echo /dev/nbd7 ;;
	esac
}

# Recreate a path's device: a freshly loaded target (empty metadata cache)
# or a freshly started qemu-nbd.
recreate() {
	case $1 in
	linear) dmsetup remove b-linear || die "remove b-linear"; mk_linear ;;
	imgfmt)
		dmsetup remove b-imgfmt || die "remove b-imgfmt"
		mk_imgfmt b-imgfmt /bench/data.qcow2 $LOOP_QCOW ;;
	nbd) stop_nbd /dev/nbd0; start_nbd /dev/nbd0 /bench/data.qcow2 ;;
	esac
}

# ------------------------------------------------------------------ fio
# run_fio ROUND WORKLOAD RAMP_MS "PATHS" FIO-ARGS...: one fio process, one
# job per path, run one after the other (stonewall) in the order given.
# --disk_util=0: fio's disk statistics would read /sys/block/X/stat of
# the device and of every slave 4 times a second, in the guest: through a
# chain of 1000 layers that is 1001 files a pass, and a round of
# chain1000 lost up to a quarter of its reads to the passes that fell in
# its window (make profile, PROF_CHAIN=1000).
run_fio() {
	r=$1 w=$2 ramp=$3 paths=$4
	shift 4
	jobs=
	for p in $paths; do
		jobs="$jobs --name=$p --filename=$(dev_of "$p")${jobs:+ --stonewall}"
	done
	imgs=
	for p in $paths; do
		case $p in *imgfmt) imgs="$imgs $p" ;; esac
	done
	for p in $imgs; do
		echo "IMGSTAT $r $w $p before $(dmsetup status "$(dm_of "$p")" | cut -d' ' -f4-)"
	done
	out=$($FIO_WRAP fio --ioengine=libaio --direct=1 --time_based \
		--runtime="${RUNTIME_MS}ms" ${ramp:+--ramp_time="${ramp}ms"} \
		--norandommap --randrepeat=0 --randseed="$SEED" \
		--random_generator=tausworthe64 \
		--clocksource=clock_gettime --invalidate=0 --disk_util=0 \
		--minimal "$@" \
		$jobs 2>/tmp/fio.err)
	rc=$?
	[ $rc -eq 0 ] || { cat /tmp/fio.err; die "fio $w on $paths exited $rc"; }
	# terse v3: 3 job name, 5 error, 6 read KiB, 7 read KiB/s, 8 read
	# IOPS, 9 read runtime (ms); 47-50 the same for writes
	echo "$out" | awk -F';' -v r="$r" -v w="$w" -v tag="$TAG" \
		'$1 == 3 { if ($5 != 0) print "BENCH-ERROR fio error " $5 " on " $3;
			   if ($6 == 0 && $47 > 0) print tag, r, w, $3, $49, $48, $50
			   else print tag, r, w, $3, $8, $7, $9 }'
	for p in $imgs; do
		echo "IMGSTAT $r $w $p after $(dmsetup status "$(dm_of "$p")" | cut -d' ' -f4-)"
	done
}

dm_of() {
	case $1 in
	imgfmt) echo b-imgfmt ;;
	sparse-imgfmt) echo b-sparse ;;
	comp-imgfmt) echo b-comp ;;
	compz-imgfmt) echo b-compz ;;
	chain*-imgfmt) echo "b-${1%-imgfmt}" ;;
	w-imgfmt) echo b-wimgfmt ;;
	f-imgfmt) echo b-fimgfmt ;;
	esac
}

# rotate N WORDS...: the words rotated left by N (mod their count).
rotate() {
	n=$1
	shift
	k=$((n % $#))
	while [ $k -gt 0 ]; do
		a=$1
		shift
		set -- "$@" "$a"
		k=$((k - 1))
	done
	echo "$@"
}

# wl_args WORKLOAD: its fio arguments
wl_args() {
	case $1 in
	rand4k-qd1 | sparse-rand4k-qd1 | cold-rand4k) echo --rw=randread --bs=4k --iodepth=1 ;;
	rand4k-qd32 | sparse-rand4k-qd32) echo --rw=randread --bs=4k --iodepth=32 ;;
	seq1m-qd4 | chain*-seq1m) echo --rw=read --bs=1M --iodepth=4 ;;
	chain*-rand4k) echo --rw=randread --bs=4k --iodepth=1 ;;
	comp-seq64k | compz-seq64k) echo --rw=read --bs=64k --iodepth=1 ;;
	w-rand4k-qd1) echo --rw=randwrite --bs=4k --iodepth=1 ;;
	w-rand4k-qd32) echo --rw=randwrite --bs=4k --iodepth=32 ;;
	w-seq1m) echo --rw=write --bs=1M --iodepth=4 ;;
	w-sync4k) echo --rw=randwrite --bs=4k --iodepth=1 --fdatasync=1 ;;
	f-seq64k) echo --rw=write --bs=64k --iodepth=4 ;;
	f-rand4k) echo --rw=randwrite --bs=4k --iodepth=1 ;;
	*) die "unknown workload $1" ;;
	esac
}

# wl_paths WORKLOAD ROUND: its paths, rotated by ROUND; empty to skip it
wl_paths() {
	case $1 in
	sparse-*) rotate "$2" sparse-imgfmt sparse-nbd ;;
	chain*) rotate "$2" linear "${1%%-*}-imgfmt" ;;
	w-* | f-*)
		k=${1%%-*}
		rotate "$2" "$k-linear" "$k-imgfmt" "$k-nbd" ${NBD_WB:+"$k-nbdwb"} ;;
	comp-* | compz-*)
		k=${1%%-*}
		case " $COMP " in *" $k "*) rotate "$2" "$k-imgfmt" "$k-nbd" ;; esac ;;
	*) rotate "$2" linear imgfmt nbd ;;
	esac
}

# run_workload ROUND WORKLOAD
run_workload() {
	paths=$(wl_paths "$2" "$1")
	[ -n "$paths" ] || return 0
	case $2 in
	cold-rand4k)
		# Each path freshly set up just before its pass, no ramp: the
		# pass starts on an empty metadata cache.
		for p in $paths; do
			recreate "$p"
			run_fio "$1" "$2" "" "$p" $(wl_args "$2")
		done ;;
	f-*)
		# A fresh device for every run, no ramp: every write allocates.
		for p in $paths; do
			recreate_fresh "$p"
			run_fio "$1" "$2" "" "$p" $(wl_args "$2")
			destroy_fresh "$p" "$1-$2"
		done ;;
	*) run_fio "$1" "$2" "$RAMP_MS" "$paths" $(wl_args "$2") ;;
	esac
}

TAG=BENCH FIO_WRAP=
# The sparse devices' caches (dm-imgfmt's and qemu-nbd's) take longer to
# fill than a ramp: fill them once before the rounds, unmeasured.
case " $WORKLOADS " in
*" sparse-"*)
	TAG=WARMUP SEED=1
	run_fio 0 sparse-warmup "" "sparse-imgfmt sparse-nbd" $(wl_args sparse-rand4k-qd32)
	TAG=BENCH ;;
esac
START=$(date +%s)
round=1
while [ $round -le "$ROUNDS" ]; do
	note "round $round of $ROUNDS ($(($(date +%s) - START)) s guest time so far)"
	wi=0
	for w in $WORKLOADS; do
		# A new random sequence for every round and workload, so that
		# no cache learns it (fio derives each job's sequence from the
		# seed and the job's position: the paths of a round read
		# statistically equal, not identical, offsets).
		wi=$((wi + 1))
		SEED=$((round * 100 + wi))
		run_workload "$round" "$w"
	done
	round=$((round + 1))
done
note "all rounds took $(($(date +%s) - START)) s guest time"

# Profiles (BENCH_PERF): one more fio run per path of each named workload
# under perf record (PERF_OPTS, default cpu-clock on all CPUs), outside the
# measured rounds.
if [ -n "${PERF_WORKLOADS:-}" ]; then
	echo 0 >/proc/sys/kernel/kptr_restrict
	echo -1 >/proc/sys/kernel/perf_event_paranoid
	for w in $PERF_WORKLOADS; do
		for p in $(wl_paths "$w" 0); do
			TAG=PERFRUN SEED=999
			FIO_WRAP="perf record -q $PERF_OPTS -o /tmp/perf.data --"
			case $w in cold-*) recreate "$p" ;; esac
			run_fio 0 "$w" "$RAMP_MS" "$p" $(wl_args "$w")
			perf report -i /tmp/perf.data --stdio --no-children \
				--sort dso,sym --percent-limit "$PERF_LIMIT" 2>/dev/null |
				grep -v '^#' | grep . | head -n "$PERF_LINES" |
				sed "s/^/PERF $w $p /"
		done
	done
	TAG=BENCH FIO_WRAP=
fi

echo "INFO status_imgfmt_end $(dmsetup status b-imgfmt)"
if [ -n "$WPATHS" ]; then
	echo "INFO status_wimgfmt_end $(dmsetup status b-wimgfmt)"
	stop_nbd /dev/nbd4
	[ -z "$NBD_WB" ] || stop_nbd /dev/nbd6
	rm_wlinear b-wlinear
	rm_wimgfmt b-wimgfmt /bench/w-imgfmt.qcow2
	for f in w-imgfmt w-nbd ${NBD_WB:+w-nbdwb}; do
		qemu-img check -q "/bench/$f.qcow2" ||
			die "qemu-img check of $f.qcow2 fails after the writes"
	done
fi
echo "INFO status_sparse_end $(dmsetup status b-sparse)"
for depth in $CHAINS; do
	echo "INFO status_chain${depth}_end $(dmsetup status "b-chain$depth")"
	imgfmt detach "b-chain$depth" || die "imgfmt detach b-chain$depth"
done
grep -E 'Slab|Vmalloc' /proc/meminfo | sed 's/^/# meminfo: /'

stop_nbd /dev/nbd0
stop_nbd /dev/nbd1
for k in $COMP; do
	case $k in comp) stop_nbd /dev/nbd2 ;; compz) stop_nbd /dev/nbd3 ;; esac
	dmsetup remove "b-$k"
done
for d in b-sparse b-imgfmt b-linear; do
	dmsetup remove "$d" || die "dmsetup remove $d"
done
for l in $LOOP_RAW $LOOP_QCOW $LOOP_SPARSE; do losetup -d "$l"; done
for l in /dev/loop3 /dev/loop4; do
	losetup -d $l 2>/dev/null
done
echo "BENCH-DONE"
