#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Build the libFuzzer target with ASan and UBSan over the shared format code,
# seed it with small images made by qemu-img, and run it for FUZZ_SECONDS.
# Prints one TAP line per target; with --tap-only the summary is the
# caller's.
set -euo pipefail
. "$(dirname "$0")/../common.sh"

summary=1
[ "${1:-}" = "--tap-only" ] && summary=0
seconds=${FUZZ_SECONDS:-30}
out=$BUILD/fuzz
mkdir -p "$out"
need_packages clang libclang-rt-14-dev qemu-utils zstd gzip zlib1g-dev libzstd-dev python3

CLANG=$(command -v clang || command -v clang-14)
shared=("$TOP"/dm-imgfmt/mcache.c "$TOP"/dm-imgfmt/ccache.c "$TOP"/dm-imgfmt/escape.c
	"$TOP"/dm-imgfmt/formats/*.c "$TOP/userspace/uport.c"
	"$TOP/userspace/udecomp.c")

make_seeds() {
	local dir=$1 cs f
	rm -rf "$dir"
	mkdir -p "$dir"
	for cs in 512 4096 65536; do
		qemu-img create -q -f qcow2 -o cluster_size=$cs "$dir/c$cs.qcow2" 4M
		qemu-io -f qcow2 -c "write -P 0x11 0 8k" -c "write -z 64k 64k" \
			"$dir/c$cs.qcow2" >/dev/null
	done
	qemu-img create -q -f qcow2 -o compat=0.10 "$dir/v2.qcow2" 1M
	qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k \
		"$dir/extl2.qcow2" 1M
	qemu-io -f qcow2 -c "write -P 0x22 4k 4k" "$dir/extl2.qcow2" >/dev/null
	# Compressed clusters, deflate and zstd, for the cluster cache.
	qemu-img create -q -f qcow2 "$dir/comp.qcow2" 1M
	qemu-img create -q -f qcow2 -o compression_type=zstd \
		"$dir/compz.qcow2" 1M
	for f in comp compz; do
		qemu-io -f qcow2 -c "write -c -P 0x23 0 64k" \
			-c "write -c -P 0x24 64k 64k" "$dir/$f.qcow2" >/dev/null
	done
	shared_stream_seed "$dir/shared.qcow2"
	# QCOW version 1: data, a compressed cluster, and 512-byte clusters
	# with 64-entry L2 tables (patched in while the L1 table is zeroes).
	qemu-img create -q -f qcow "$dir/v1.qcow" 4M
	qemu-io -f qcow -c "write -P 0x33 0 8k" -c "write -c -P 0x44 64k 4k" \
		-c "write -P 0x55 3M 4k" "$dir/v1.qcow" >/dev/null
	qemu-img create -q -f qcow "$dir/v1-c512.qcow" 4M
	printf '\011\006' | dd of="$dir/v1-c512.qcow" bs=1 seek=32 \
		conv=notrunc status=none
	truncate -s 1536 "$dir/v1-c512.qcow"
	qemu-io -f qcow -c "write -P 0x66 0 2k" -c "write -c -P 0x77 40k 512" \
		-c "write -P 0x88 1M 1536" "$dir/v1-c512.qcow" >/dev/null
	vmdk_seeds "$dir"
	# UML COW: every header layout, small, with bitmaps and data.
	python3 "$TOP/selftests/unit/mkcow.py" --seeds "$dir"
}

put_le() {	# FILE OFFSET NBYTES VALUE: a little-endian field
	local s="" i
	for ((i = 0; i < $3; i++)); do
		s+=$(printf '\\0%03o' $((($4 >> (8 * i)) & 0xff)))
	done
	printf '%b' "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

get_be() {	# FILE OFFSET NBYTES: a big-endian field
	local v=0 b
	for b in $(od -An -v -tu1 -j "$2" -N "$3" "$1"); do
		v=$(((v << 8) | b))
	done
	echo $v
}

put_be() {	# FILE OFFSET NBYTES VALUE: a big-endian field
	local s="" i
	for ((i = $3 - 1; i >= 0; i--)); do
		s+=$(printf '\\0%03o' $((($4 >> (8 * i)) & 0xff)))
	done
	printf '%b' "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Two compressed clusters of 64 KiB whose L2 entries name one stream, the
# second with a length of one sector, too short for it: its reads must
# fail in whatever order the clusters are read (the order check).
shared_stream_seed() {	# FILE
	local f=$1 l1 l2 e0
	seq 1 20000 >"$f.data"
	truncate -s 64K "$f.data"
	qemu-img create -q -f qcow2 "$f" 1M
	qemu-io -f qcow2 -c "write -c -s $f.data 0 64k" \
		-c "write -c -s $f.data 64k 64k" "$f" >/dev/null
	rm -f "$f.data"
	l1=$(get_be "$f" 40 8)
	l2=$(($(get_be "$f" "$l1" 8) & 0x00fffffffffffe00))
	e0=$(get_be "$f" "$l2" 8)
	put_be "$f" $((l2 + 8)) 8 $((e0 & ~(0xff << 54)))
}

# VMDK: hosted sparse with zeroed grains, streamOptimized (header first and
# in a footer), and hand-made VMFS sparse (COWD) and seSparse extents.
vmdk_seeds() {
	local dir=$1 f
	qemu-img create -q -f vmdk -o zeroed_grain=on "$dir/mono.vmdk" 1M
	qemu-io -f vmdk -c "write -P 0x11 0 8k" -c "write -z 64k 64k" \
		-c "write -P 0x22 512k 4k" "$dir/mono.vmdk" >/dev/null
	qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized \
		"$dir/mono.vmdk" "$dir/stream.vmdk"
	f=$dir/stream-footer.vmdk
	cp "$dir/stream.vmdk" "$f"
	head -c 512 /dev/zero >"$f.m"
	put_le "$f.m" 12 4 3
	{ cat "$f.m"; head -c 512 "$dir/stream.vmdk"; head -c 512 /dev/zero; } >>"$f"
	rm -f "$f.m"
	put_le "$f" 56 8 -1
	# COWD: 1 MiB of 512-byte grains; directory at sector 1, table at 2.
	f=$dir/cowd.vmdk
	head -c $((34 * 512)) /dev/zero >"$f"
	printf COWD | dd of="$f" conv=notrunc status=none
	put_le "$f" 4 4 1
	put_le "$f" 12 4 2048
	put_le "$f" 16 4 1
	put_le "$f" 20 4 1
	put_le "$f" 24 4 1
	put_le "$f" 512 4 2
	put_le "$f" 1024 4 34
	put_le "$f" $((1024 + 4 * 9)) 4 35
	head -c 1024 /dev/zero | tr '\0' c >>"$f"
	# seSparse: 32 MiB; volatile header at sector 1, directory at 2,
	# tables from 3, grains from 67.
	f=$dir/sesparse.vmdk
	head -c $((67 * 512)) /dev/zero >"$f"
	put_le "$f" 0 8 0xcafebabe
	put_le "$f" 8 8 0x200000001
	put_le "$f" 16 8 65536
	put_le "$f" 24 8 8
	put_le "$f" 32 8 64
	put_le "$f" 80 8 1
	put_le "$f" 128 8 2
	put_le "$f" 136 8 1
	put_le "$f" 144 8 3
	put_le "$f" 192 8 67
	put_le "$f" 512 8 0xcafecafe
	put_le "$f" 1024 8 0x1000000000000000
	put_le "$f" 1536 8 0x3000000000000000
	put_le "$f" 1544 8 0x2000000000000000
	put_le "$f" 1552 8 0x3001000000000000
	head -c 8192 /dev/zero | tr '\0' s >>"$f"
}

# Stacks of images: a count byte, 16-bit lengths in units of 64 bytes,
# then the layers, top first; an overlay's layers made with qemu-img.
chain_seeds() {
	local dir=$1 t=$1/tmp n i f len
	rm -rf "$dir"
	mkdir -p "$t"
	head -c 65536 /dev/zero | tr '\0' '\125' >"$t/base.raw"
	qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw \
		"$t/mid.qcow2" 64k
	qemu-io -f qcow2 -c "write -P 0x11 4k 1k" -c "write -z 8k 2k" \
		"$t/mid.qcow2" >/dev/null
	qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on \
		-b mid.qcow2 -F qcow2 "$t/top.qcow2" 96k
	qemu-io -f qcow2 -c "write -P 0x22 1k 512" -c "write -z 40k 512" \
		"$t/top.qcow2" >/dev/null
	for n in 3 8; do
		{
			printf "\\$(printf %03o $((n - 1)))"
			for ((i = 0; i < n; i++)); do
				case $i in 0) f=top.qcow2 ;; $((n - 1))) f=base.raw ;; *) f=mid.qcow2 ;; esac
				len=$((($(stat -c %s "$t/$f") + 63) / 64))
				printf "\\$(printf %03o $((len >> 8)))\\$(printf %03o $((len & 255)))"
			done
			for ((i = 0; i < n; i++)); do
				case $i in 0) f=top.qcow2 ;; $((n - 1))) f=base.raw ;; *) f=mid.qcow2 ;; esac
				cat "$t/$f"
				len=$(stat -c %s "$t/$f")
				head -c $(((len + 63) / 64 * 64 - len)) /dev/zero
			done
		} >"$dir/stack$n"
	done
	rm -rf "$t"
}

# Descriptor texts of the kinds QEMU and VMware write, CRLF among them.
desc_seeds() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	printf '%s\n' '# Disk DescriptorFile' 'version=1' 'CID=fffffffe' \
		'parentCID=ffffffff' 'createType="twoGbMaxExtentSparse"' \
		'RW 4192256 SPARSE "d-s001.vmdk"' 'RW 2048 SPARSE "d-s002.vmdk"' \
		'ddb.virtualHWVersion = "4"' >"$dir/twogb.txt"
	printf '%s\r\n' '# Disk DescriptorFile' 'version=1' 'CID=12345678' \
		'parentCID=ffffffff' 'createType="vmfs"' \
		'RW 4096 VMFS "d-flat.vmdk" 0' 'RW 100 ZERO' >"$dir/vmfs-crlf.txt"
	printf '%s\n' 'version=1' 'CID=1' 'parentCID=2' \
		'parentFileNameHint="base.vmdk"' 'createType="monolithicSparse"' \
		'RDONLY 64 FLAT "x" 12' >"$dir/delta.txt"
}

# Streams of every kind the decompressor takes, made with the host's tools.
decomp_seeds() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	seq 1 3000 >"$dir/text"
	# Byte 0 picks the type (deflate, zlib, zstd), byte 1 the output size.
	{ printf '\001\007'; gzip -c "$dir/text" | tail -c +11; } >"$dir/deflate"
	{ printf '\002\007'; zstd -q -c "$dir/text" 2>/dev/null || true; } >"$dir/zstd-as-zlib"
	{ printf '\003\007'; zstd -q -c "$dir/text" 2>/dev/null || true; } >"$dir/zstd"
	rm -f "$dir/text"
}

# run_target NAME SOURCE.c SEED_FUNCTION "EXTRA CFLAGS" SOURCE...: build,
# seed and run one target; the outcome goes to $out/NAME.result (read by
# report_target), the details to $out/NAME.log.
run_target() {
	local name=$1 main=$2 seeds=$3 cflags=$4 bin=$out/$1 log=$out/$1.log
	local res=$out/$1.result
	shift 4
	rm -f "$res"
	# shellcheck disable=SC2086 # cflags holds several words
	if ! "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -D_GNU_SOURCE $cflags \
		-I"$TOP/dm-imgfmt" -I"$TOP/userspace/include" -I"$TOP/userspace" \
		-o "$bin" "$TOP/selftests/fuzz/$main" "$@" \
		>"$log" 2>&1; then
		echo build >"$res"
		return
	fi
	"$seeds" "$out/$name-seeds" >>"$log" 2>&1
	mkdir -p "$out/$name-corpus"
	if "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 \
		-max_len=1048576 -print_final_stats=1 \
		"$out/$name-corpus" "$out/$name-seeds" >>"$log" 2>&1; then
		echo "ok $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')" >"$res"
	else
		echo crash >"$res"
	fi
}

report_target() {	# report_target NAME
	local name=$1 log=$out/$1.log r=missing runs=''
	[ -s "$out/$name.result" ] && read -r r runs <"$out/$name.result"
	case $r in
	ok) tap_result ok "fuzz: $name ran ${seconds}s with no crash ($runs runs)" ;;
	build)
		sed 's/^/# /' "$log" | tail -20
		tap_result fail "fuzz: $name builds" ;;
	crash)
		grep -E "ERROR|SUMMARY|runtime error" "$log" | head -20 | sed 's/^/# /'
		tap_result fail "fuzz: $name found a crash (see $log)" ;;
	*)
		tail -5 "$log" | sed 's/^/# /'
		tap_result fail "fuzz: $name did not finish (see $log)" ;;
	esac
}

# The targets run FUZZ_JOBS at a time (default: one per CPU), each for
# its whole FUZZ_SECONDS on a CPU of its own; the results come in order.
jobs=${FUZZ_JOBS:-$(nproc)}
targets=()
start_target() {	# start_target NAME ARGS...: as run_target
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n || true
	done
	targets+=("$1")
	run_target "$@" &
}

# Every format by detection, then each format pinned, so that each one
# gets the fuzzer's whole attention for a while.
start_target fuzz_image fuzz_image.c make_seeds "-lz -lzstd" "${shared[@]}"
for fmt in qcow2 qcow vmdk vmdk-sesparse cow; do
	start_target "fuzz_image_$fmt" fuzz_image.c make_seeds \
		"-DFUZZ_FORMAT=\"$fmt\" -lz -lzstd" "${shared[@]}"
done
start_target fuzz_chain fuzz_chain.c chain_seeds "-lz -lzstd" "${shared[@]}"
start_target fuzz_vmdk_desc fuzz_vmdk_desc.c desc_seeds "" \
	"$TOP/userspace/vmdk_desc.c" "$TOP/dm-imgfmt/formats/vmdk_keys.c" \
	"$TOP/dm-imgfmt/escape.c"
start_target fuzz_decomp fuzz_decomp.c decomp_seeds "-lz -lzstd" \
	"$TOP/userspace/udecomp.c"
wait
for t in "${targets[@]}"; do
	report_target "$t"
done
[ $summary -eq 1 ] && tap_summary
[ "$TAP_FAIL" -eq 0 ]
