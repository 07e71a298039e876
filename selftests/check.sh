#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make check: install what is missing, build everything, run the userspace
# tests, the fuzzers briefly and the lint checks, then boot each Debian
# kernel (6.1 and 6.12) in QEMU and run the in-VM suite there.  All results
# come out as one TAP stream ending in "N passed, N failed"; the exit status
# is non-zero when anything failed.
set -uo pipefail
. "$(dirname "$0")/common.sh"

FUZZ_SECONDS=${FUZZ_SECONDS:-15}
# Each guest's bound.  On this 2-core host a guest took 2370 s of 2400
# (2026-12-03, the 6.12 suite) and another run, slowed during
# imgfmt_vm_test, was cut off: an hour leaves room within CI's 90 minutes.
VM_TIMEOUT=${VM_TIMEOUT:-3600}
mkdir -p "$BUILD"
log=$BUILD/logs
rm -rf "$log"
mkdir -p "$log"

# Run a step; its output goes to a log, and its TAP lines (if any) are
# folded into ours.  Without TAP lines the exit status is the result.
step() {		# step NAME COMMAND...
	local name=$1 start=$SECONDS
	shift
	echo "# $name: $*"
	"$@" >"$log/$name.log" 2>&1
	step_result "$name" $? $((SECONDS - start))
}

# Fold a finished step's log into the TAP stream.
step_result() {		# step_result NAME RC SECONDS
	local name=$1 rc=$2
	echo "# $name took $3 s, exit status $rc"
	if grep -qE '^(not )?ok [0-9]+' "$log/$name.log"; then
		tap_import "$name" "$log/$name.log"
		[ "$rc" -eq 0 ] || grep -q '^not ok' "$log/$name.log" ||
			tap_result fail "$name: exited with status $rc"
	elif [ "$rc" -eq 0 ]; then
		tap_result ok "$name"
	else
		tail -30 "$log/$name.log" | sed 's/^/# /'
		tap_result fail "$name (exit status $rc)"
	fi
	return "$rc"
}

# A step in the background: step_start NAME COMMAND... then step_wait NAME.
# The two VMs run side by side: each guest runs its suite on about one
# vCPU at a time, so two of them keep both host cores busy.
step_start() {		# step_start NAME COMMAND...
	echo "# $1 (started): ${*:2}"
	step_run "$@" &
}

# Run a step for step_fold, alone or in a chain of them in the background.
step_run() {		# step_run NAME COMMAND...
	local name=$1 start=$SECONDS
	shift
	"$@" >"$log/$name.log" 2>&1
	echo "$? $((SECONDS - start))" >"$log/$name.rc"
}

# Fold a step that step_run ran (and that has finished) into the stream.
step_fold() {		# step_fold NAME
	local rc=125 took=0
	[ -s "$log/$1.rc" ] && read -r rc took <"$log/$1.rc"
	step_result "$1" "$rc" "$took"
}

step_wait() {		# step_wait NAME
	wait
	step_fold "$1"
}

echo "# dm-imgfmt make check, $(date -u +%Y-%m-%dT%H:%MZ)"
step packages need_packages $CHECK_PACKAGES || { tap_summary; exit 1; }
need_packages $OPTIONAL_PACKAGES >/dev/null 2>&1 ||
	echo "# not installed: $OPTIONAL_PACKAGES (the tests that use them skip)"
step kernels "$TOP/selftests/vm/kernels.sh" || { tap_summary; exit 1; }
mapfile -t KERNELS < <(grep -E '^[0-9]' "$log/kernels.log")
KSFT_DIR=$(linux_src_dir)/tools/testing/selftests

step build-helper make -C "$TOP/userspace"
step build-crash make -s -C "$TOP/selftests/crash" OUT="$BUILD/crash"
step unit make -s -C "$TOP/selftests/unit" KSFT_DIR="$KSFT_DIR" run
# The QCOW2 images, then the other formats' records appended to the same
# manifests, then the kselftest variants regenerated from all of them; and
# in desc/ the VMDK descriptors and odd-sized images of desc_vm_test.sh
# (the --vm set: no 5 GiB flat disk, which the initramfs would hold whole);
# in chain/ the backing chains of chain_vm_test.sh; in part/ the
# partitioned disks of part_vm_test.sh; in layers/ the QCOW2 snapshots and
# data files of qcow2-layers.sh and qcow2_layers_vm_test.sh.
make_images() {
	local out=$1 rc=0
	# Two independent halves side by side (each uses one core; together
	# 70 s in turn): the images behind the manifests, and the directories
	# of the shell suites.  The second's output follows the first's.
	mkdir -p "$out"
	(
		"$TOP/selftests/imgfmt/mkimages-vmdk-desc.sh" --vm "$out/desc" &&
		"$TOP/selftests/imgfmt/mkimages-chain.sh" "$out/chain" &&
		"$TOP/selftests/imgfmt/mkimages-resolve.sh" "$out/resolve" &&
		"$TOP/selftests/imgfmt/mkimages-part.sh" "$out/part" &&
		"$TOP/selftests/imgfmt/mkimages-layers.sh" "$out/layers"
	) >"$out/.suites.log" 2>&1 &
	"$TOP/selftests/imgfmt/mkimages.sh" "$out" &&
	"$TOP/selftests/imgfmt/mkimages-qcow.sh" "$out" &&
	"$TOP/selftests/imgfmt/mkimages-vmdk.sh" "$out" &&
	"$TOP/selftests/imgfmt/mkimages.sh" --variants "$out" || rc=1
	wait $! || rc=1
	cat "$out/.suites.log"
	rm -f "$out/.suites.log"
	return $rc
}
step images make_images "$BUILD/images"
# The userspace suites use one core each: two chains of about 60 s side
# by side, their results folded in the order listed.
host_suites=(read-compare chain-resolve create qcow2-layers qcow2-check
	vmdk-desc lock replay-log)
echo "# started: ${host_suites[*]}"
(
	step_run create "$TOP/selftests/unit/create.sh"
	step_run qcow2-check "$TOP/selftests/unit/check.sh"
	step_run replay-log "$TOP/selftests/crash/replay-log-test.sh" \
		"$BUILD/crash/replay-log"
) &
step_run read-compare "$TOP/selftests/unit/read-compare.sh" "$BUILD/images"
step_run chain-resolve "$TOP/selftests/unit/chain-resolve.sh"
step_run qcow2-layers "$TOP/selftests/unit/qcow2-layers.sh" \
	"$BUILD/images/layers"
step_run vmdk-desc "$TOP/selftests/unit/vmdk-desc.sh"
step_run lock "$TOP/selftests/unit/lock.sh"
wait
for s in "${host_suites[@]}"; do
	step_fold "$s"
done
step fuzz env FUZZ_SECONDS="$FUZZ_SECONDS" "$TOP/selftests/fuzz/run.sh" --tap-only
# After the fuzzers: it also reads their corpora.
step helper-hostile "$TOP/selftests/unit/helper-hostile.sh" "$BUILD/images"
step lint "$TOP/selftests/lint.sh" --tap-only
step build-vm-tests make -s -C "$TOP/selftests/imgfmt" KSFT_DIR="$KSFT_DIR" \
	IMAGES="$BUILD/images" OUT="$BUILD/vm-tests"

# dm-dust for KVER (dust_vm_test.sh), built from the 6.12 source against
# KDIR: Debian's kernels leave it out.  6.1 has no module_dm() (6.3 added
# it), so the registration is spelled out.  Prints the module's path.
dust_module() {		# dust_module KVER KDIR
	local dir=$BUILD/dust-$1 src
	src=$(linux_src_dir)/drivers/md/dm-dust.c || return 1
	rm -rf "$dir"
	mkdir -p "$dir"
	grep -v '^module_dm(dust);$' "$src" >"$dir/dm-dust.c"
	cat >>"$dir/dm-dust.c" <<-'EOF'

	static int __init dm_dust_init(void)
	{
		return dm_register_target(&dust_target);
	}
	module_init(dm_dust_init);

	static void __exit dm_dust_exit(void)
	{
		dm_unregister_target(&dust_target);
	}
	module_exit(dm_dust_exit);
	EOF
	echo 'obj-m := dm-dust.o' >"$dir/Kbuild"
	make -C "$2" M="$dir" modules >"$dir/build.log" 2>&1 ||
		{ tail -20 "$dir/build.log" >&2; return 1; }
	echo "$dir/dm-dust.ko"
}

# The in-VM suite, once per kernel.
vm_suite() {		# vm_suite KVER VMLINUZ KDIR
	local kver=$1 vmlinuz=$2 kdir=$3 tree dust payload=$BUILD/payload-$1
	tree=$(module_tree "$kver")
	"$tree/scripts/compat-probe.sh" "$kdir" "$tree/dm-imgfmt/compat-probes" \
		"$tree/dm-imgfmt/compat-probed.h" || return 1
	make -C "$kdir" M="$tree" modules >"$BUILD/kmod-$kver.log" 2>&1 || {
		tail -20 "$BUILD/kmod-$kver.log"
		return 1
	}
	dust=$(dust_module "$kver" "$kdir") || return 1
	rm -rf "$payload"
	mkdir -p "$payload"
	cp -a "$BUILD/vm-tests/." "$payload/"
	# In the payload's bin/ (on the guest's PATH): the host path that
	# --bin keeps may be hidden in the guest, e.g. under its tmpfs /tmp.
	mkdir -p "$payload/bin"
	cp "$TOP/userspace/imgfmt" "$payload/bin/"
	cp "$BUILD/crash/replay-log" "$payload/bin/"
	cp -al "$BUILD/images" "$payload/images"
	# ext4 mounts the partitions of part_vm_test.sh; crc32c_generic is a
	# softdep of it (metadata_csum) that modules.dep does not list.
	# crash_vm_test.sh records through dm-log-writes and makes and checks
	# ext4 with e2fsprogs (busybox has neither mkfs.ext4 nor e2fsck).
	# fault_vm_test.sh puts dm-flakey under a read-write table.
	# fio_write_vm_test.sh writes one image on zram.
	# dust_vm_test.sh puts dm-dust under one.
	"$TOP/selftests/vm/mkinitramfs.sh" --kver "$kver" \
		--out "$BUILD/initrd-$kver.cpio.gz" \
		--module loop --module dm-mod --module dm-bufio --module dm-zero \
		--module crc32c_generic --module ext4 --module dm-log-writes \
		--module dm-flakey --module zram \
		--ko "$tree/dm-imgfmt.ko" --ko "$dust" \
		--bin /usr/sbin/dmsetup --bin "$TOP/userspace/imgfmt" \
		--bin /usr/bin/qemu-img --bin /usr/bin/qemu-io \
		--bin /usr/sbin/mkfs.ext4 --bin /usr/sbin/e2fsck --bin /usr/bin/fio \
		--bin /usr/sbin/blkdiscard --bin /usr/sbin/fstrim \
		--payload "$payload" --init-cmd /payload/run.sh || return 1
	"$TOP/selftests/vm/run-vm.sh" --kernel "$vmlinuz" \
		--initrd "$BUILD/initrd-$kver.cpio.gz" --mem 3072 \
		--timeout "$VM_TIMEOUT" --log "$BUILD/vm-$kver.console"
}

for k in "${KERNELS[@]}"; do
	read -r kver vmlinuz _moddir kdir <<<"$k"
	step_start "vm-$kver" vm_suite "$kver" "$vmlinuz" "$kdir"
done
for k in "${KERNELS[@]}"; do
	read -r kver _ <<<"$k"
	step_wait "vm-$kver"
done

tap_summary
[ "$TAP_FAIL" -eq 0 ]
