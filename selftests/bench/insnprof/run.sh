#!/bin/bash
# make profile: where the guest kernel spends the instructions of a 4 KiB
# random read through dm-imgfmt that dm-linear does not (README here).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
WANT=${PROF_KERNEL:-6.12}
IOS=${PROF_IOS:-100000}
CHAIN=${PROF_CHAIN:-}
REPEAT=${PROF_REPEAT:-1}
FIO_ARGS=${PROF_FIO_ARGS:-}
OUT=$TOP/build/insnprof
log() { printf '# insnprof: %s\n' "$*"; }
die() { printf 'insnprof: %s\n' "$*" >&2; exit 1; }
case $CHAIN in *[!0-9]* | 0*) die "PROF_CHAIN=$CHAIN: a depth, 1 or more" ;; esac
case $REPEAT in '' | *[!0-9]* | 0*) die "PROF_REPEAT=$REPEAT: a count, 1 or more" ;; esac
case $FIO_ARGS in *"'"*) die "PROF_FIO_ARGS: no single quotes" ;; esac

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

# PROF_CHAIN=N: N-1 empty overlays (4 KiB clusters, as make bench's
# make_chain) over the guest's ../data.qcow2, made here (999 take the
# host seconds, the plugin guest a quarter of an hour) and kept in
# $OUT/chainN; -u: qemu-img would open the chain below each new one.
if [ -n "$CHAIN" ] && [ "$CHAIN" -gt 1 ]; then
	key="$CHAIN 512M $(qemu-img --version | head -1)"
	cdir=$OUT/chain$CHAIN
	if [ "$(cat "$cdir.key" 2>/dev/null)" != "$key" ]; then
		log "building a chain of $CHAIN (the overlays, on the host)"
		rm -rf "$cdir" "$cdir.key"
		mkdir -p "$cdir"
		below=../data.qcow2
		for ((i = 1; i < CHAIN; i++)); do
			qemu-img create -q -u -f qcow2 -o cluster_size=4096 \
				-b "$below" -F qcow2 "$cdir/l$i.qcow2" 512M
			below=l$i.qcow2
		done
		echo "$key" >"$cdir.key"
	fi
fi

boot() {		# boot PHASE [QEMU-ARG...]
	local phase=$1
	shift
	printf 'PHASE=%s\nNIOS=%s\nIMGFMT=%s\n' "$phase" "$IOS" \
		"$TOP/userspace/imgfmt" >"$OUT/payload/conf"
	[ "$REPEAT" = 1 ] || printf 'REPEAT=%s\n' "$REPEAT" >>"$OUT/payload/conf"
	[ -z "$CHAIN" ] || printf 'CHAIN=%s\n' "$CHAIN" >>"$OUT/payload/conf"
	[ -z "$FIO_ARGS" ] || printf "FIO_ARGS='%s'\n" "$FIO_ARGS" >>"$OUT/payload/conf"
	# The overlays ride in the initramfs (about 14 KiB each), for the
	# profiled boot only.
	rm -rf "$OUT/payload/chain$CHAIN"
	if [ "$phase" = prof ] && [ -n "$CHAIN" ] && [ "$CHAIN" -gt 1 ]; then
		cp -a "$OUT/chain$CHAIN" "$OUT/payload/"
	fi
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
what="$IOS reads each through dm-linear and dm-imgfmt"
[ -z "$CHAIN" ] || what="$what (a chain of $CHAIN)"
[ "$REPEAT" = 1 ] || what="$what, $REPEAT rounds"
[ -z "$FIO_ARGS" ] || what="$what, fio $FIO_ARGS"
log "$kver: boot 2, $what"
boot prof -plugin "$OUT/insnprof.so,marker=$marker,out=$OUT/phase"
grep '^INSNPROF-' "$OUT/console-prof.log" || die "no fio results"
# phase.0: boot and setup; round r: phase.2r-1 dm-linear, phase.2r dm-imgfmt.
[ -f "$OUT/phase.$((2 * REPEAT))" ] || die "the guest did not reach the last sync"
if [ "$REPEAT" = 1 ]; then
	python3 "$HERE/analyse.py" "$OUT/kallsyms-prof" "$OUT/phase.1" "$OUT/phase.2" \
		"$IOS" "${PROF_LINES:-40}" | tee "$OUT/report.txt"
else
	python3 "$HERE/analyse.py" --rounds "$OUT/kallsyms-prof" "$OUT/phase" \
		"$REPEAT" "$IOS" "${PROF_LINES:-40}" "$OUT/console-prof.log" |
		tee "$OUT/report.txt"
fi
