#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The guest's /payload/run.sh: runs the in-VM suite and prints its TAP.
# Exits non-zero when anything failed.  Plain POSIX sh (busybox).

here=$(cd "$(dirname "$0")" && pwd)
PATH=$here/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1
IMGFMT_IMAGES=${IMGFMT_IMAGES:-"$here/images"}
export IMGFMT_IMAGES

# mkinitramfs.sh --bin keeps the helper at its host path.
if [ -f "$here/helper-path" ]; then
	d=$(dirname "$(cat "$here/helper-path")")
	PATH=$d:$PATH
fi
if ! command -v imgfmt >/dev/null 2>&1; then
	h=$(find / -xdev -type f -name imgfmt 2>/dev/null | head -n 1)
	[ -n "$h" ] && PATH=$(dirname "$h"):$PATH
fi
export PATH

echo "# kernel $(uname -r); imgfmt: $(command -v imgfmt || echo missing);" \
	"dmsetup: $(command -v dmsetup || echo missing)"
if [ -n "${IMGFMT_KO_FAILED:-}" ]; then
	echo "# module load failed: $IMGFMT_KO_FAILED"
fi

# No address space randomisation: QEMU's TCG finds translated code by
# its virtual address too, so with it every program a test starts
# (dmsetup, imgfmt, qemu-img, losetup: thousands of them) had its
# loader and libraries translated anew.  Without it imgfmt_vm_test's
# hostile images took 59 s, not 166 s, and its table tests 16 s, not 43.
echo 0 >/proc/sys/kernel/randomize_va_space ||
	echo "# cannot turn address space randomisation off"

rc=0
start=$(date +%s)
# Every good image is read whole twice: through a table loaded with
# dmsetup (O_DIRECT) and through imgfmt attach (buffered); the two are
# 80% of this program's time.  make check boots both kernels side by
# side, so the attach reads run on one: what they add is the helper's
# table and the page cache path, not the kernel's mapping, which the
# dmsetup reads check on both (concurrent.attached reads through attach
# on both too).
case $(uname -r) in
6.1.*) "$here/imgfmt_vm_test" -T attach || rc=1 ;;
*) "$here/imgfmt_vm_test" || rc=1 ;;
esac
echo "# imgfmt_vm_test took $(($(date +%s) - start)) s, exit $rc"

# Loop devices outlive their files: a suite that attached a chain of 1000
# layers leaves 1000 idle ones, and every later walk of /sys/block (fio
# finding its device's statistics, losetup -a in each suite's leftover
# check) reads them all; behind chain_vm_test.sh fio_write_vm_test.sh's
# dm-linear reference runs took 8-10 s instead of 2.  With none bound,
# reloading the module removes them.
loop_count()
{
	set -- /sys/block/loop*
	[ -e "$1" ] && echo $# || echo 0
}
forget_idle_loops()
{
	[ "$(loop_count)" -gt 16 ] || return 0
	[ -z "$(losetup -a 2>/dev/null)" ] || return 0
	modprobe -r loop && modprobe loop ||
		echo "# cannot reload loop: $(loop_count) loop devices stay"
}

# The shell suites, each over its image directory (vmlib.sh beside them).
suite()			# suite SCRIPT DIR: what it is about
{
	start=$(date +%s)
	src=0
	sh "$here/$1" "$IMGFMT_IMAGES/$2" || src=1
	echo "# $1 took $(($(date +%s) - start)) s, exit $src"
	[ $src -eq 0 ] || rc=1
	forget_idle_loops
}
# VMDK descriptors and odd-sized images through imgfmt attach/detach.
suite desc_vm_test.sh desc
# Backing chains: tables written by hand, and imgfmt attach.
suite chain_vm_test.sh chain
# Partitions, detach safety, list and automatic names.
suite part_vm_test.sh part
# VMDK deltas and UML COW over raw, and the refusals of VMDK half links.
suite resolve_vm_test.sh resolve
# QCOW2 internal snapshots and external data files.
suite qcow2_layers_vm_test.sh layers
# Read-write QCOW2: writes judged by qemu-img check and convert.
suite write_vm_test.sh write
# fio --verify over every write size, concurrent writers in shared clusters.
suite fio_write_vm_test.sh .
# QEMU's image locks through attach and detach (makes its own images).
suite lock_vm_test.sh lock
# Faults under read-write QCOW2: dm-flakey failing writes and flushes.
suite fault_vm_test.sh .
# Faults at chosen blocks: dm-dust failing metadata reads and writes.
suite dust_vm_test.sh .
# imgfmt attach --rw and detach, judged by qemu-img (makes its own images).
suite attach_rw_vm_test.sh attach-rw
# The two crash replay suites split across the kernels (make check
# boots both side by side, and these are the longest): what they judge
# is the order of writes the shared format code makes, and the replay
# tool; the bio flags both kernels see are in write_vm_test.sh above.
case $(uname -r) in
6.1.*)
	# Crash replay: ext4 through dm-log-writes, replayed with replay-log.
	suite crash_vm_test.sh . ;;
*)
	# The write guarantee: ext4 on a read-write qcow2, every crash point.
	suite crash_write_vm_test.sh . ;;
esac

# Belt and braces: the test's own last check reads the log too, but a
# crash of the test program would skip it.
if dmesg | grep -E 'BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|kernel BUG|Call Trace' |
	sed 's/^/# dmesg: /' | grep .; then
	echo "# kernel log shows warnings or bugs"
	rc=1
fi
exit $rc
