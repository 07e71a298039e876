#!/bin/sh
# Guest side of insnprof (run.sh): PHASE=syms writes /proc/kallsyms to
# /dev/vda and stops; PHASE=prof then reads a qcow2 image and the same
# data through dm-linear, each bracketed by sync (the plugin's marker).
# CHAIN=N (N > 0): the imgfmt device is the top of /payload/chainN (N-1
# empty overlays over data.qcow2, built on the host), imgfmt attach'ed.
# REPEAT=K: K rounds of dm-linear then dm-imgfmt, each run a phase.
# FIO_ARGS: more fio options for every run (e.g. --disk_util=0).
# shellcheck source=/dev/null
. /payload/conf
cat /proc/kallsyms >/tmp/kallsyms
dd if=/tmp/kallsyms of=/dev/vda bs=1M conv=notrunc 2>/dev/null
[ "$PHASE" = syms ] && exit 0
CHAIN=${CHAIN:-}
REPEAT=${REPEAT:-1}
FIO_ARGS=${FIO_ARGS:-}
mkdir -p /prof && mount -t tmpfs -o size=1400m tmpfs /prof || exit 1
dd if=/dev/urandom of=/prof/data.raw bs=1M count=512 2>/dev/null
qemu-img convert -f raw -O qcow2 -o cluster_size=65536 /prof/data.raw \
	/prof/data.qcow2 || exit 1
losetup -r /dev/loop0 /prof/data.raw && losetup -r /dev/loop1 /prof/data.qcow2 ||
	exit 1
dmsetup create lin --readonly \
	--table "0 $(blockdev --getsz /dev/loop0) linear /dev/loop0 0" || exit 1
if [ -n "$CHAIN" ]; then
	# The overlays name ../data.qcow2 as their backing file.
	top=/prof/data.qcow2
	if [ "$CHAIN" -gt 1 ]; then
		cp -a "/payload/chain$CHAIN" /prof/ || exit 1
		top=/prof/chain$CHAIN/l$((CHAIN - 1)).qcow2
	fi
	t0=$(cut -d' ' -f1 /proc/uptime)
	"$IMGFMT" attach --name img "$top" >/dev/null || exit 1
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "INSNPROF-INFO attach of a chain of $CHAIN: $t0 .. $t1 s (uptime)"
	echo "INSNPROF-INFO status $(dmsetup status img)"
else
	dmsetup create img --readonly \
		--table "$("$IMGFMT" table /prof/data.qcow2 /dev/loop1)" || exit 1
fi
# stat NAME: the fields of /proc/stat's cpu line and /proc/uptime, read
# by the shell (no fork) into NAME_cpu and NAME_up.
stat() {
	read -r _ u n s i w q sq st _ </proc/stat
	read -r up _ </proc/uptime
	eval "$1_cpu='$u $n $s $i $w $q $sq $st' $1_up=$up"
}
fio_run() {
	# shellcheck disable=SC2086 # FIO_ARGS: words
	fio $FIO_ARGS --name=p --ioengine=psync --direct=1 --rw=randread --bs=4k \
		--size=512m --norandommap --randseed=7 --number_ios="$2" \
		--output-format=terse --filename="/dev/mapper/$1" |
		awk -F';' -v d="$1" -v r="$3" '{
			if (r == "") print "INSNPROF-IOPS", d, $8
			else print "INSNPROF-IOPS", d, $8, "run", r, "runtime_ms", $9 }'
}
# fio_runs DEVICE RUN: fio_run, and with REPEAT > 1 the guest's clock and
# CPU times (USER_HZ: user nice system idle iowait irq softirq steal)
# around it and dm-imgfmt's status after it (a fork of dmsetup inside
# the phase: a few instructions a read, the same in every round).
fio_runs() {
	if [ "$REPEAT" = 1 ]; then
		fio_run "$1" "$NIOS"
		return
	fi
	stat b
	fio_run "$1" "$NIOS" "$2"
	stat a
	# shellcheck disable=SC2154 # set by stat's eval
	echo "INSNPROF-RUN $2 $1 uptime $b_up $a_up cpu $b_cpu / $a_cpu"
	[ "$1" = lin ] || echo "INSNPROF-STATUS $2 $(dmsetup status img)"
}
# Twice through each device: the tables cached, and every page of both
# files active (6.1 would otherwise activate the image's pages, a page
# cache cost of about 400 instructions a read, during the measurement).
for _ in 1 2; do
	for d in lin img; do
		dd if="/dev/mapper/$d" of=/dev/null bs=1M iflag=direct 2>/dev/null ||
			exit 1
	done
done
sync				# phase.0 ends: boot and setup
# Round r: phase.2r-1 dm-linear, phase.2r dm-imgfmt.
r=1
while [ "$r" -le "$REPEAT" ]; do
	fio_runs lin "$r"
	sync
	fio_runs img "$r"
	sync
	r=$((r + 1))
done
