#!/bin/bash
# make profile: where the guest kernel spends the instructions of a 4 KiB
# random read through dm-imgfmt that dm-linear does not (README here).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
WANT=${PROF_KERNEL:-6.12}
IOS=${PROF_IOS:-100000}
OUT=$TOP/build/insnprof
log() { printf '# insnprof: %s\n' "$*"; }
die() { printf 'insnprof: %s\n' "$*" >&2; exit 1; }

kline=$("$TOP/selftests/vm/kernels.sh" --print-only | awk -v w="$WANT" 'index($1, w) == 1' | head -1)
[ -n "$kline" ] || die "no installed kernel matches PROF_KERNEL=$WANT"
read -r kver vmlinuz _ kdir <<<"$kline"
mkdir -p "$OUT"
rm -rf "$OUT/tree" "$OUT/payload" "$OUT"/phase.*
mkdir -p "$OUT/tree" "$OUT/payload"
cp -r "$TOP/Kbuild" "$TOP/dm-imgfmt" "$TOP/scripts" "$OUT/tree/"
"$OUT/tree/scripts/compat-probe.sh" "$kdir" "$OUT/tree/dm-imgfmt/compat-probes" \
	"$OUT/tree/dm-imgfmt/compat-probed.h" >/dev/null
log "$kver: building the module, the helper and the plugin"
make -s -C "$kdir" M="$OUT/tree" modules >"$OUT/build.log" 2>&1 ||
	{ tail -20 "$OUT/build.log"; die "module build failed"; }
make -s -C "$TOP/userspace" >>"$OUT/build.log" 2>&1 || die "helper build failed"
cc -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden \
	-o "$OUT/insnprof.so" "$HERE/insnprof.c"
cp "$HERE/guest.sh" "$OUT/payload/run.sh"

boot() {		# boot PHASE [QEMU-ARG...]
	local phase=$1
	shift
	printf 'PHASE=%s\nNIOS=%s\nIMGFMT=%s\n' "$phase" "$IOS" \
		"$TOP/userspace/imgfmt" >"$OUT/payload/conf"
	"$TOP/selftests/vm/mkinitramfs.sh" --kver "$kver" --out "$OUT/initrd.gz" \
		--module loop --module dm-mod --ko "$OUT/tree/dm-imgfmt.ko" \
		--bin /usr/sbin/dmsetup --bin "$TOP/userspace/imgfmt" \
		--bin /usr/bin/fio --bin /usr/bin/qemu-img --bin /usr/sbin/losetup \
		--payload "$OUT/payload" --init-cmd /payload/run.sh >>"$OUT/build.log" 2>&1
	rm -f "$OUT/syms.img"
	truncate -s 64M "$OUT/syms.img"
	local args=() a
	for a in "$@"; do args+=(--qemu-arg "$a"); done
	"$TOP/selftests/vm/run-vm.sh" --kernel "$vmlinuz" --initrd "$OUT/initrd.gz" \
		--mem 3072 --icount --append nokaslr --disk "$OUT/syms.img" \
		--timeout 3000 --log "$OUT/console-$phase.log" "${args[@]}" >/dev/null 2>&1 ||
		die "$phase boot failed, see $OUT/console-$phase.log"
	tr -d '\0' <"$OUT/syms.img" >"$OUT/kallsyms-$phase"
}

# nokaslr: the first boot's kallsyms names the marker of the second.
log "$kver: boot 1, the kernel's symbols"
boot syms
marker=$(awk '$3 == "ksys_sync" { print $1 }' "$OUT/kallsyms-syms")
[ -n "$marker" ] || die "no ksys_sync in kallsyms"
log "$kver: boot 2, $IOS reads each through dm-linear and dm-imgfmt"
boot prof -plugin "$OUT/insnprof.so,marker=$marker,out=$OUT/phase"
grep '^INSNPROF-IOPS' "$OUT/console-prof.log" || die "no fio results"
# phase.0: boot and setup; phase.1: dm-linear; phase.2: dm-imgfmt.
[ -f "$OUT/phase.2" ] || die "the guest did not reach the last sync"
python3 "$HERE/analyse.py" "$OUT/kallsyms-prof" "$OUT/phase.1" "$OUT/phase.2" \
	"$IOS" "${PROF_LINES:-40}" | tee "$OUT/report.txt"
