#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# make bench: fio in the test VM over three paths to the same data --
# dm-linear over a loop device on the raw file, dm-imgfmt over a loop device
# on a qcow2 copy, and qemu-nbd (in the guest) serving that qcow2 through
# nbd.ko -- in alternating rounds, once under -icount (deterministic:
# instruction cost) and once in real time.  Writes bench/results/<kver>.txt
# (<kver>-quick.txt with BENCH_QUICK=1).
#
# Environment:
#   BENCH_KERNELS="6.1 6.12"  kernels to run (prefixes of the versions that
#                             selftests/vm/kernels.sh prints)
#   BENCH_MODES="icount realtime parallel"
#   BENCH_ROUNDS=N            rounds per mode (default 3 icount, 15 realtime;
#                             BENCH_QUICK: 1 and 4)
#   BENCH_QUICK=1             short run: fewer rounds, shorter fio runs
#   BENCH_RUNTIME_MS=N        fio runtime per run in ms of guest time
#                             (default 400 icount, 300 realtime; quick 200, 300)
#   BENCH_RAMP_MS=N           ramp-up before it, not measured
#                             (default 100 icount, 50 realtime; quick 50, 50)
#   BENCH_DATA_MB=256         size of the data set
#   BENCH_WORKLOADS="..."     subset of: rand4k-qd1 rand4k-qd32 seq1m-qd4
#                             cold-rand4k sparse-rand4k-qd1
#                             sparse-rand4k-qd32 comp-seq64k compz-seq64k
#                             chainN-rand4k chainN-seq1m (N: 10 100 1000)
#                             w-rand4k-qd1 w-rand4k-qd32 w-seq1m w-sync4k
#                             f-seq64k f-rand4k (writes; see README)
#   BENCH_OUT=bench/results   where the reports go
#   BENCH_RT_SMP=1            vCPUs of the real-time run (2: see README)
#   BENCH_PAR_SMP=2           vCPUs of the parallel run (compressed workloads)
#   BENCH_SPARSE_CACHE=BYTES  cache_size of the sparse dm-imgfmt device
#                             (default: the module's, 16 MiB)
#   BENCH_NBD_L2_CACHE=BYTES  qemu-nbd's qcow2 l2-cache-size (default: QEMU's)
#   BENCH_MODPARAMS="P=V ..." dm-imgfmt module parameters (decompress_lanes=1)
#   BENCH_APPEND="ARGS"       extra guest kernel arguments (experiments, e.g.
#                             init_on_alloc=0)
#   BENCH_PERF="WORKLOAD..."  after the rounds, profile one more run of each
#                             path of these workloads with perf (cpu-clock);
#                             the profiles go to the report
#   BENCH_PERF_OPTS="-e cpu-clock -a"  perf record options (add -g for call
#                             chains); BENCH_PERF_LIMIT=1 (percent),
#                             BENCH_PERF_LINES=40 lines per profile
#   BENCH_REV=<git rev>       benchmark that commit (module and helper built
#                             from `git archive`) instead of the working tree
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$HERE/../common.sh"

BENCH_KERNELS=${BENCH_KERNELS:-"6.1 6.12"}
BENCH_MODES=${BENCH_MODES:-"icount realtime parallel"}
BENCH_QUICK=${BENCH_QUICK:-0}
# Per mode: rounds, fio runtime and ramp (ms of guest time).  Under -icount
# the numbers do not vary from run to run, so short runs and few rounds do;
# the real-time run needs more of both to see through the host's noise.
# On a shared 2-core host the real-time numbers of one 1 s run swing by
# 2x and more; many short rounds give the median something to work with.
if [ "$BENCH_QUICK" = 1 ]; then
	def_icount="1 200 50" def_realtime="4 300 50" def_parallel="4 300 50"
else
	def_icount="3 400 100" def_realtime="15 300 50" def_parallel="9 300 50"
fi
DATA_MB=${BENCH_DATA_MB:-256}
WORKLOADS=${BENCH_WORKLOADS:-"rand4k-qd1 rand4k-qd32 seq1m-qd4 cold-rand4k sparse-rand4k-qd1 sparse-rand4k-qd32 comp-seq64k compz-seq64k chain10-rand4k chain10-seq1m chain100-rand4k chain100-seq1m chain1000-rand4k chain1000-seq1m w-rand4k-qd1 w-rand4k-qd32 w-seq1m w-sync4k f-seq64k f-rand4k"}
# The chain depths the images hold (CHAIN_DEPTHS: empty overlays over
# data.qcow2, the bottom layer holding all the data).
CHAIN_DEPTHS="10 100 1000"
OUT=${BENCH_OUT:-$TOP/bench/results}
RT_SMP=${BENCH_RT_SMP:-1}
PAR_SMP=${BENCH_PAR_SMP:-2}
# The parallel run: the workloads where CPU work, not I/O, sets the pace.
PAR_WORKLOADS="comp-seq64k compz-seq64k"
# A quick run does not replace the full run's report.
SUFFIX=
[ "$BENCH_QUICK" != 1 ] || SUFFIX=-quick
SPARSE_CACHE=${BENCH_SPARSE_CACHE:-}
NBD_L2_CACHE=${BENCH_NBD_L2_CACHE:-}
PERF=${BENCH_PERF:-}
APPEND=${BENCH_APPEND:-}
MODPARAMS=${BENCH_MODPARAMS:-}
PERF_OPTS=${BENCH_PERF_OPTS:-"-e cpu-clock -a"}
BENCH=$BUILD/bench
GUEST_MEM=3072
COMP_MB=64
SPARSE_WRITES=2048		# one 64 KiB cluster in each 512 MiB of 1 TiB
# The write workloads (made in the guest): WRITE_MB of data.raw as raw
# and as two qcow2 copies (imgfmt's and qemu-nbd's) to overwrite, and
# fresh devices of FRESH_MB (sparse raw, empty qcow2) for allocating writes.
WRITE_MB=64
FRESH_MB=512

log() { echo "# bench: $*"; }
die() { echo "bench: error: $*" >&2; exit 1; }

for w in $WORKLOADS; do
	case $w in
	rand4k-qd1 | rand4k-qd32 | seq1m-qd4 | cold-rand4k | sparse-rand4k-qd1 | \
		sparse-rand4k-qd32 | comp-seq64k | compz-seq64k) ;;
	chain10-rand4k | chain10-seq1m | chain100-rand4k | chain100-seq1m | \
		chain1000-rand4k | chain1000-seq1m) ;;
	w-rand4k-qd1 | w-rand4k-qd32 | w-seq1m | w-sync4k | f-seq64k | f-rand4k) ;;
	*) die "unknown workload $w" ;;
	esac
done
for m in $BENCH_MODES; do
	case $m in
	icount | realtime | parallel) ;;
	*) die "unknown mode $m (icount, realtime, parallel)" ;;
	esac
done

T_START=$(date +%s)
need_packages gcc make pkg-config cpio xz-utils kmod busybox-static dmsetup \
	libdevmapper-dev qemu-system-x86 qemu-utils e2fsprogs fio
mkdir -p "$BENCH" "$OUT"

mapfile -t ALL_KERNELS < <("$TOP/selftests/vm/kernels.sh")
KERNELS=()
for k in "${ALL_KERNELS[@]}"; do
	read -r kver _ <<<"$k"
	for want in $BENCH_KERNELS; do
		case $kver in "$want" | "$want".* | "$want"-*) KERNELS+=("$k") ;; esac
	done
done
[ ${#KERNELS[@]} -gt 0 ] || die "no kernel matches BENCH_KERNELS=$BENCH_KERNELS"

# The sources: the working tree (as make check) or a commit.
SRC=$TOP
if [ -n "${BENCH_REV:-}" ]; then
	SRC=$BENCH/src
	rm -rf "$SRC"
	mkdir -p "$SRC"
	BENCH_REV=$(git -C "$TOP" rev-parse --verify "$BENCH_REV^{commit}") ||
		die "no such commit: $BENCH_REV"
	git -C "$TOP" archive "$BENCH_REV" Kbuild dm-imgfmt scripts userspace |
		tar -x -C "$SRC" || die "cannot export $BENCH_REV"
fi
make -s -C "$SRC/userspace" >/dev/null

# ------------------------------------------------------------------ data
# Generated once and kept (keyed by the parameters) under build/bench/data:
#   data.raw      DATA_MB of random bytes
#   data.qcow2    qemu-img convert -O qcow2 (64 KiB clusters, fully allocated)
#   sparse.qcow2  1 TiB, one 64 KiB cluster written at a random offset in
#                 every 512 MiB (each needs its own L2 table: 128 MiB of L2)
#   comp.qcow2    COMP_MB of compressible data (base64 text), qemu-img
#                 convert -c (zlib); compz.qcow2 the same with zstd
#   chainN/       N-1 empty qcow2 overlays (4 KiB clusters, a few KiB
#                 each) stacked over data.qcow2: l1 over it, lN-1 the top
# all on an ext4 disk image that the guest copies into tmpfs.
DATA=$BENCH/data

# make_chain DIR DEPTH: DEPTH-1 empty overlays over ../data.qcow2.  -u:
# qemu-img would open the whole chain below each new overlay (quadratic).
make_chain() {
	local dir=$1 depth=$2 i below=../data.qcow2
	mkdir -p "$dir"
	for ((i = 1; i < depth; i++)); do
		qemu-img create -q -u -f qcow2 -o cluster_size=4096 \
			-b "$below" -F qcow2 "$dir/l$i.qcow2" "${DATA_MB}M"
		below=l$i.qcow2
	done
}
KEY="v3 chains=$CHAIN_DEPTHS data=$DATA_MB sparse=$SPARSE_WRITES comp=$COMP_MB $(qemu-img --version | head -1)"
if [ "$(cat "$DATA/.key" 2>/dev/null)" != "$KEY" ]; then
	log "generating the images ($DATA_MB MiB)"
	rm -rf "$DATA"
	mkdir -p "$DATA/files"
	head -c "${DATA_MB}M" /dev/urandom >"$DATA/files/data.raw"
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 \
		"$DATA/files/data.raw" "$DATA/files/data.qcow2"
	qemu-img create -q -f qcow2 -o cluster_size=65536 "$DATA/files/sparse.qcow2" 1T
	awk -v n="$SPARSE_WRITES" 'BEGIN {
		srand(4242)
		step = 1099511627776 / n
		for (i = 0; i < n; i++)
			printf "write -q -P %d %.0f 64k\n", i % 255 + 1,
			       i * step + int(rand() * (step / 65536)) * 65536
	}' | qemu-io -t unsafe -f qcow2 "$DATA/files/sparse.qcow2" >/dev/null
	head -c "$((COMP_MB * 3 / 4))M" /dev/urandom | base64 -w 76 >"$DATA/comp.raw"
	truncate -s "${COMP_MB}M" "$DATA/comp.raw"
	qemu-img convert -c -f raw -O qcow2 -o cluster_size=65536 \
		"$DATA/comp.raw" "$DATA/files/comp.qcow2"
	qemu-img convert -c -f raw -O qcow2 \
		-o cluster_size=65536,compression_type=zstd \
		"$DATA/comp.raw" "$DATA/files/compz.qcow2"
	rm -f "$DATA/comp.raw"
	for depth in $CHAIN_DEPTHS; do
		make_chain "$DATA/files/chain$depth" "$depth"
	done
	for f in data.qcow2 sparse.qcow2 comp.qcow2 compz.qcow2; do
		qemu-img check -q "$DATA/files/$f" || die "$f does not check"
	done
	total=$(du -sm --apparent-size "$DATA/files" | cut -f1)
	mke2fs -q -t ext4 -O ^has_journal,^metadata_csum -d "$DATA/files" -L bench \
		"$DATA/disk.img" "$((total + total / 10 + 64))M"
	{
		echo "data_extents $(qemu-img map --output=json "$DATA/files/data.qcow2" | grep -c '"data": true')"
		echo "sparse_allocated $(qemu-img check "$DATA/files/sparse.qcow2" | sed -n 's/ = .*//p')"
		echo "sparse_file $(stat -c %s "$DATA/files/sparse.qcow2")"
		for f in comp compz; do
			echo "${f}_compressed $(qemu-img check "$DATA/files/$f.qcow2" | sed -n 's/.*fragmented, \(.*\) compressed.*/\1/p')" \
				"$(stat -c %s "$DATA/files/$f.qcow2")"
		done
		echo "files_mb $total"
	} >"$DATA/facts"
	rm -f "$DATA/files/data.raw"
	echo "$KEY" >"$DATA/.key"
fi
TOTAL_MB=$(sed -n 's/^files_mb //p' "$DATA/facts")

if [ -n "${BENCH_REV:-}" ]; then
	git_desc="$(git -C "$TOP" rev-parse --short "$BENCH_REV") ($(git -C "$TOP" log -1 --format=%s "$BENCH_REV"))"
	src_desc="module and helper built from that commit (BENCH_REV)"
else
	git_desc=$(git -C "$TOP" describe --always --dirty 2>/dev/null || echo unknown)
	src_desc="module and helper built from the working tree"
fi
host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
qemu_ver=$(qemu-system-x86_64 --version | head -1)

# ------------------------------------------------------------------ per kernel
bench_kernel() {		# bench_kernel KVER VMLINUZ KDIR
	local kver=$1 vmlinuz=$2 kdir=$3 tree payload mode rounds runtime ramp smp icount t0 rc perf_bin
	local workloads w
	local kb=$BENCH/$kver
	mkdir -p "$kb"
	log "$kver: building the module"
	tree=$(TOP=$SRC module_tree "bench-$kver")
	"$tree/scripts/compat-probe.sh" "$kdir" "$tree/dm-imgfmt/compat-probes" \
		"$tree/dm-imgfmt/compat-probed.h" >"$kb/build.log" 2>&1 ||
		{ tail -20 "$kb/build.log"; return 1; }
	make -C "$kdir" M="$tree" modules >>"$kb/build.log" 2>&1 ||
		{ tail -20 "$kb/build.log"; return 1; }

	: >"$kb/times"
	: >"$kb/params"
	rm -f "$kb"/raw-*.txt
	for mode in $BENCH_MODES; do
		case $mode in
		icount) read -r rounds runtime ramp <<<"$def_icount"; smp=1 icount=--icount ;;
		realtime) read -r rounds runtime ramp <<<"$def_realtime"; smp=$RT_SMP icount= ;;
		parallel) read -r rounds runtime ramp <<<"$def_parallel"; smp=$PAR_SMP icount= ;;
		*) die "unknown mode $mode (icount, realtime, parallel)" ;;
		esac
		workloads=$WORKLOADS
		if [ "$mode" = parallel ]; then
			workloads=
			for w in $WORKLOADS; do
				case " $PAR_WORKLOADS " in *" $w "*) workloads+="${workloads:+ }$w" ;; esac
			done
			if [ -z "$workloads" ]; then
				log "$kver: parallel run skipped (none of $PAR_WORKLOADS asked for)"
				continue
			fi
		fi
		rounds=${BENCH_ROUNDS:-$rounds}
		runtime=${BENCH_RUNTIME_MS:-$runtime}
		ramp=${BENCH_RAMP_MS:-$ramp}
		echo "$mode $rounds $runtime $ramp" >>"$kb/params"
		payload=$kb/payload-$mode
		perf_bin=
		[ -z "$PERF" ] || perf_bin=$(command -v perf)
		rm -rf "$payload"
		mkdir -p "$payload"
		cp "$HERE/guest.sh" "$payload/run.sh"
		cat >"$payload/bench.conf" <<-EOF
			MODE=$mode
			ROUNDS=$rounds
			RUNTIME_MS=$runtime
			RAMP_MS=$ramp
			WORKLOADS="$workloads"
			TMPFS_MB=$((TOTAL_MB + 64 + 4 * WRITE_MB + 2 * FRESH_MB))
			WRITE_MB=$WRITE_MB
			FRESH_MB=$FRESH_MB
			IMGFMT_BIN=$SRC/userspace/imgfmt
			SPARSE_CACHE=$SPARSE_CACHE
			NBD_L2_CACHE=$NBD_L2_CACHE
			PERF_WORKLOADS="$PERF"
			PERF_OPTS="$PERF_OPTS"
			PERF_LIMIT=${BENCH_PERF_LIMIT:-1}
			PERF_LINES=${BENCH_PERF_LINES:-40}
		EOF
		"$TOP/selftests/vm/mkinitramfs.sh" --kver "$kver" \
			--out "$kb/initrd-$mode.cpio.gz" \
			--module loop --module dm-mod --module nbd --module ext4 --module crc32c_generic \
			--ko "$tree/dm-imgfmt.ko $MODPARAMS" \
			--bin /usr/sbin/dmsetup --bin "$SRC/userspace/imgfmt" \
			--bin /usr/bin/fio --bin /usr/bin/qemu-nbd --bin /usr/bin/qemu-img \
			--bin /usr/sbin/losetup \
			${perf_bin:+--bin "$perf_bin"} \
			--payload "$payload" --init-cmd /payload/run.sh 2>>"$kb/build.log" ||
			{ tail -20 "$kb/build.log"; return 1; }
		log "$kver: $mode run, $rounds round(s) (console: $kb/console-$mode.log)"
		t0=$(date +%s)
		rc=0
		"$TOP/selftests/vm/run-vm.sh" --kernel "$vmlinuz" \
			--initrd "$kb/initrd-$mode.cpio.gz" --mem "$GUEST_MEM" \
			--smp "$smp" ${icount:+"$icount"} \
			--disk "$DATA/disk.img" --timeout 2400 ${APPEND:+--append "$APPEND"} \
			--log "$kb/console-$mode.log" >/dev/null 2>&1 || rc=$?
		grep -E '^(BENCH|IMGSTAT|NOTYET|INFO|PERF|PERFRUN) ' "$kb/console-$mode.log" \
			>"$kb/raw-$mode.txt" || true
		if [ $rc -ne 0 ] || ! grep -q '^BENCH-DONE' "$kb/console-$mode.log"; then
			grep -E 'BENCH-ERROR|dmesg|ERROR|timed out|IMGFMT-VM' \
				"$kb/console-$mode.log" | tail -30 >&2
			die "$kver: $mode run failed (exit $rc), see $kb/console-$mode.log"
		fi
		echo "$mode $(($(date +%s) - t0))" >>"$kb/times"
		log "$kver: $mode run took $(($(date +%s) - t0)) s"
	done
	write_report "$kver" "$kb"
}

info() {		# info RAWFILE KEY
	sed -n "s/^INFO $2 //p" "$1" | head -1
}

write_report() {		# write_report KVER DIR
	local kver=$1 kb=$2 mode raw first out=$OUT/$1$SUFFIX.txt
	first=$kb/raw-${BENCH_MODES%% *}.txt
	{
		echo "dm-imgfmt benchmark (make bench) on $kver"
		echo "date:    $(date -u +%Y-%m-%dT%H:%MZ); whole make bench run so far $(( ($(date +%s) - T_START) / 60 )) min"
		echo "run:     $([ "$BENCH_QUICK" = 1 ] && echo "QUICK (BENCH_QUICK=1)" || echo full); modes: $BENCH_MODES"
		echo "tree:    $git_desc; $src_desc"
		echo "host:    $host_cpu, $(nproc) cores, shared; $qemu_ver, TCG (no KVM)"
		echo "guest:   Debian $(info "$first" guest_kernel), $GUEST_MEM MiB, busybox initramfs;${APPEND:+ kernel args: $APPEND;}${MODPARAMS:+ dm-imgfmt parameters: $MODPARAMS;}" \
			"$(info "$first" fio), $(info "$first" qemu_nbd)"
		echo "data:    $DATA_MB MiB of random bytes, as a raw file and as a qcow2 copy" \
			"(qemu-img convert, 64 KiB clusters, $(sed -n 's/^data_extents //p' "$DATA/facts") contiguous extent(s))"
		echo "         held in a tmpfs in the guest; loop devices read it buffered" \
			"(loop dio=$(info "$first" loop0_dio)), qemu-nbd with --cache=writeback --aio=threads"
		echo "paths:   linear = dm-linear on loop(raw); imgfmt = dm-imgfmt on loop(qcow2), default cache_size;"
		echo "         qemu-nbd = qemu-nbd --connect=/dev/nbdN -r in the guest, $([ -n "$NBD_L2_CACHE" ] && echo "l2-cache-size=$NBD_L2_CACHE" || echo "QEMU's default qcow2 caches (L2: 32 MiB)")"
		echo "sparse:  1 TiB qcow2, $(sed -n 's/^sparse_allocated //p' "$DATA/facts") clusters of 64 KiB written by qemu-io," \
			"one at a random offset per 512 MiB: every read needs one of 2048 L2 tables (128 MiB of L2)"
		echo "         sparse dm-imgfmt table: $(info "$first" table_sparse)"
		echo "comp:    $COMP_MB MiB of base64 text (compresses to ~75%) as qcow2 with every cluster compressed:" \
			"comp = zlib ($(sed -n 's/^comp_compressed //p' "$DATA/facts" | cut -d' ' -f1) compressed), compz = zstd;" \
			"64 KiB sequential reads, QD1"
		echo "writes:  w-* = $WRITE_MB MiB of the data overwritten (every cluster allocated): dm-linear rw on loop(raw)," \
			"dm-imgfmt rw on loop(qcow2), qemu-nbd rw on another qcow2 copy with $(info "$first" nbd_write_cache)$(
			wb=$(info "$first" nbd_wb_cache) && [ -n "$wb" ] && echo ", nbdwb = on a third with $wb");" \
			"w-sync4k = 4 KiB random writes, fdatasync after each, QD1"
		echo "         f-* = allocating writes into a fresh $FRESH_MB MiB device made just before each run (no ramp):" \
			"sparse raw file (dm-linear), empty qcow2 of 64 KiB clusters (dm-imgfmt, qemu-nbd)"
		echo "fio:     libaio, direct=1, time_based, norandommap, tausworthe64, one random seed per round and workload;" \
			"4k random = whole device; cold = device recreated (qemu-nbd restarted) just before, no ramp"
		echo "rounds:  every round runs each workload on every path, path order rotated per round;" \
			"values are medians over rounds, ratios medians of per-round ratios"
		for mode in $BENCH_MODES; do
			raw=$kb/raw-$mode.txt
			[ -f "$raw" ] || continue
			echo
			case $mode in
			icount) echo "=== deterministic run: -icount shift=0, 1 vCPU, $(sed -n 's/^icount //p' "$kb/times") s wall" ;;
			realtime) echo "=== real-time run: $RT_SMP vCPU(s)$([ "$RT_SMP" -gt 1 ] && echo " (MTTCG)"), $(sed -n 's/^realtime //p' "$kb/times") s wall" ;;
			parallel) echo "=== parallel run: real time, $PAR_SMP vCPUs (MTTCG), compressed workloads only, $(sed -n 's/^parallel //p' "$kb/times") s wall" ;;
			esac
			read -r _ rounds runtime ramp < <(grep "^$mode " "$kb/params")
			echo "    $rounds round(s); each fio run measures $runtime ms after a $ramp ms ramp (guest clock)"
			case $mode in
			icount) echo "    (guest clock = instructions executed: IOPS measure instructions per I/O, not host speed)" ;;
			realtime) echo "    (wall clock: host noise shows in the spread column$([ "$RT_SMP" -gt 1 ] && echo "; contention between vCPUs shows here only"))" ;;
			parallel) echo "    (wall clock: what using more than one CPU buys; the vCPUs share this host's cores)" ;;
			esac
			awk -v mode="$mode" -f "$HERE/report.awk" "$raw"
			if grep -q '^PERF ' "$raw"; then
				echo
				echo "profiles (perf record $PERF_OPTS, one extra run per path; dso symbol):"
				sed -n 's/^PERF \([^ ]*\) \([^ ]*\) /  \1 \2: /p' "$raw"
			fi
		done
	} >"$out"
	for mode in $BENCH_MODES; do
		[ ! -f "$kb/raw-$mode.txt" ] ||
			cp "$kb/raw-$mode.txt" "$OUT/$kver$SUFFIX.$mode.raw"
	done
	log "$kver: report in $out"
}

for k in "${KERNELS[@]}"; do
	read -r kver vmlinuz _moddir kdir <<<"$k"
	bench_kernel "$kver" "$vmlinuz" "$kdir"
	cat "$OUT/$kver$SUFFIX.txt"
done
log "done in $(($(date +%s) - T_START)) s"
