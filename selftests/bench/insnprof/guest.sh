#!/bin/sh
# Guest side of insnprof (run.sh): PHASE=syms writes /proc/kallsyms to
# /dev/vda and stops; PHASE=prof then reads a qcow2 image and the same
# data through dm-linear, each bracketed by sync (the plugin's marker).
# shellcheck source=/dev/null
. /payload/conf
cat /proc/kallsyms >/tmp/kallsyms
dd if=/tmp/kallsyms of=/dev/vda bs=1M conv=notrunc 2>/dev/null
[ "$PHASE" = syms ] && exit 0
mkdir -p /prof && mount -t tmpfs -o size=1400m tmpfs /prof || exit 1
dd if=/dev/urandom of=/prof/data.raw bs=1M count=512 2>/dev/null
qemu-img convert -f raw -O qcow2 -o cluster_size=65536 /prof/data.raw \
	/prof/data.qcow2 || exit 1
losetup -r /dev/loop0 /prof/data.raw && losetup -r /dev/loop1 /prof/data.qcow2 ||
	exit 1
dmsetup create lin --readonly \
	--table "0 $(blockdev --getsz /dev/loop0) linear /dev/loop0 0" || exit 1
dmsetup create img --readonly \
	--table "$("$IMGFMT" table /prof/data.qcow2 /dev/loop1)" || exit 1
fio_run() {
	fio --name=p --ioengine=psync --direct=1 --rw=randread --bs=4k \
		--size=512m --norandommap --randseed=7 --number_ios="$2" \
		--output-format=terse --filename="/dev/mapper/$1" |
		awk -F';' -v d="$1" '{ print "INSNPROF-IOPS", d, $8 }'
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
fio_run lin "$NIOS"
sync				# phase.1: dm-linear
fio_run img "$NIOS"
sync				# phase.2: dm-imgfmt
