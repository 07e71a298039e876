#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build backing chains with QEMU's tools and write their manifest, for
# chain_vm_test.sh (the kernel target given every layer by hand) and for
# the helper's tests.
#
#   mkimages-chain.sh OUTDIR
#
# chains.list, one chain a line, fields separated by one space:
#   <name> <virtual_size> <md5> <file>:<format> ...
# the files top first (the top's backing file second), relative to OUTDIR;
# format "auto" when the table leaves it to detection, else the name the
# table pins (raw is always pinned).  md5 is of `qemu-img convert -O raw`
# of the top: QEMU is the oracle.  Everything is deterministic.  Chains of
# more than 100 layers and those in odd/ (files not whole sectors) are for
# `imgfmt attach` only.

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"

[ $# -eq 1 ] || die "usage: mkimages-chain.sh OUTDIR"
need_tools "qemu-utils, coreutils" qemu-img qemu-io md5sum dd
rm -rf "$1"
setup_out "$1"
make_tmp chain
cd "$OUT"
: >chains.list
MiB=$((1 << 20))

# A file of pseudo-random bytes, the same every run.
random_file()	# FILE BYTES SEED
{
	local f=$1 bytes=$2 seed=$3
	# sha256 of a counter: deterministic, and compressible only a little
	# (each digest repeats, so deflate still finds something to do).
	python3 - "$f" "$bytes" "$seed" <<'PY'
import hashlib, sys
f, n, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f, 'wb') as out:
    i = 0
    while n > 0:
        b = hashlib.sha256(f'{seed}-{i}'.encode()).digest() * 128
        out.write(b[:min(n, len(b))])
        n -= len(b)
        i += 1
PY
}

# Write with qemu-io: io FORMAT FILE CMD...
io()
{
	local fmt=$1 f=$2 out
	shift 2
	local args=()
	for c in "$@"; do args+=(-c "$c"); done
	out=$(qemu-io -f "$fmt" "${args[@]}" "$f" 2>&1) || die "qemu-io on $f: $out"
	if printf '%s\n' "$out" | grep -qiE 'error|failed'; then
		die "qemu-io on $f: $out"
	fi
}

# Record a chain: add NAME TOPFILE TOPFMT FILE:FMT...
add()
{
	local name=$1 top=$2 fmt=$3 size md5
	shift 3
	size=$(qemu-img info --output=json "$top" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
	qemu-img convert -f "$fmt" -O raw "$top" "$TMP/$name.raw"
	md5=$(md5sum <"$TMP/$name.raw" | cut -d' ' -f1)
	rm -f "$TMP/$name.raw"
	echo "$name $size $md5 $*" >>chains.list
}

q2()	# FILE SIZE [qemu-img create options...]
{
	local f=$1 size=$2
	shift 2
	qemu-img create -q -f qcow2 "$@" "$f" "$size"
}

# 1. qcow2 over raw, with the backing format recorded and without it.
random_file base.raw $((8 * MiB)) base
q2 q2raw.qcow2 8M -b base.raw -F raw
io qcow2 q2raw.qcow2 "write -P 0x11 0 64k" "write -P 0x22 1M 4k" \
	"write -z 2M 128k" "write -P 0x33 7M 1M"
add q2_over_raw q2raw.qcow2 qcow2 q2raw.qcow2:auto base.raw:raw

# 2. qcow2 over qcow2 over raw, mixed cluster sizes (512 B, 2 MiB, raw).
q2 mid.qcow2 8M -o cluster_size=2M -b base.raw -F raw
io qcow2 mid.qcow2 "write -P 0x44 0 3M" "write -z 5M 1M"
q2 top512.qcow2 8M -o cluster_size=512 -b mid.qcow2 -F qcow2
io qcow2 top512.qcow2 "write -P 0x55 512 1k" "write -P 0x66 4M 8k" \
	"write -z 6M 512"
add q2_q2_raw top512.qcow2 qcow2 top512.qcow2:auto mid.qcow2:auto base.raw:raw

# 3. extended L2 overlay written in subclusters (allocated, zero and
#    unallocated subclusters in one cluster) over a compressed base.
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=64k base.raw comp.qcow2
q2 xl2.qcow2 8M -o cluster_size=64k,extended_l2=on -b comp.qcow2 -F qcow2
io qcow2 xl2.qcow2 "write -P 0x77 4k 2k" "write -z 8k 2k" \
	"write -P 0x78 130k 6k" "write -z 1M 64k" "write -P 0x79 3M 512"
add xl2_over_compressed xl2.qcow2 qcow2 xl2.qcow2:auto comp.qcow2:auto

# 4. an overlay larger than its backing file: past the backing's end the
#    disk reads zeroes (and the overlay's own writes there).
random_file small.raw $((2 * MiB)) small
q2 big.qcow2 16M -o cluster_size=4k -b small.raw -F raw
io qcow2 big.qcow2 "write -P 0x88 1M 4k" "write -P 0x89 12M 64k"
add overlay_larger big.qcow2 qcow2 big.qcow2:auto small.raw:raw

# 5. qcow2 over vmdk (monolithicSparse, streamOptimized).
qemu-img convert -q -f raw -O vmdk base.raw sparse.vmdk
q2 q2vmdk.qcow2 8M -b sparse.vmdk -F vmdk
io qcow2 q2vmdk.qcow2 "write -P 0x99 2M 64k"
add q2_over_vmdk q2vmdk.qcow2 qcow2 q2vmdk.qcow2:auto sparse.vmdk:auto
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized base.raw \
	stream.vmdk
q2 q2stream.qcow2 8M -b stream.vmdk -F vmdk
io qcow2 q2stream.qcow2 "write -P 0x9a 5M 4k"
add q2_over_stream q2stream.qcow2 qcow2 q2stream.qcow2:auto stream.vmdk:auto

# 6. qcow (version 1) over qcow2.
qemu-img create -q -f qcow -b mid.qcow2 -F qcow2 q1.qcow 8M
io qcow q1.qcow "write -P 0xaa 64k 4k" "write -P 0xab 6M 512k"
add qcow_over_qcow2 q1.qcow qcow q1.qcow:auto mid.qcow2:auto base.raw:raw

# 7. zero writes over backing data, three levels of zero and data.
q2 z1.qcow2 8M -b base.raw -F raw
io qcow2 z1.qcow2 "write -z 0 4M"
q2 z2.qcow2 8M -b z1.qcow2 -F qcow2
io qcow2 z2.qcow2 "write -P 0xbb 1M 64k" "write -z 6M 64k"
add zero_over_backing z2.qcow2 qcow2 z2.qcow2:auto z1.qcow2:auto base.raw:raw

# 8. deep chains of empty overlays, data in the bottom (4 KiB clusters
#    keep each overlay a few KiB): depth 10 and 100 (walk and owner sets),
#    with writes scattered in a few layers.
deep()	# NAME DEPTH
{
	local name=$1 depth=$2 i below below_fmt layers=()
	mkdir -p "$name"
	below=../base.raw
	below_fmt=raw
	layers=("base.raw:raw")
	for ((i = 1; i < depth; i++)); do
		# -b is relative to the new image's directory; -u: do not
		# open the whole chain below each new overlay (quadratic,
		# and past 1000 files qemu runs out of descriptors).
		q2 "$name/l$i.qcow2" 8M -u -o cluster_size=4k -b "$below" \
			-F "$below_fmt"
		if ((i % 7 == 3 && i < 100)); then
			io qcow2 "$name/l$i.qcow2" \
				"write -P $((i % 250)) $((i * 12288)) 4k"
		fi
		below=l$i.qcow2
		below_fmt=qcow2
		layers=("$name/$below:auto" "${layers[@]}")
	done
	add "$name" "$name/$below" qcow2 "${layers[@]}"
}
deep deep10 10
deep deep100 100
# Attached only through the helper (1000 loop devices).
deep deep1000 1000

# A hostile lower layer: mid.qcow2 with its L1 table (offset at byte 40)
# moved past the end of the file.  Not in chains.list: chain_vm_test.sh
# loads it under q2raw.qcow2's place by hand and expects the refusal.
cp mid.qcow2 bad_l1.qcow2
wr_be bad_l1.qcow2 40 8 $((1 << 40))

# A loop device ends at the last whole sector: files written by hand into
# tables must be whole sectors (the helper joins a tail device instead).
# The zeroes added change nothing QEMU reads.  odd/ keeps its files as
# qemu-img wrote them, for the helper.
mkdir -p odd
qemu-img convert -q -c -f raw -O qcow2 base.raw odd/comp.qcow2
# Bytes past the last sector: the loop would hide them.
head -c 100 /dev/zero >>odd/comp.qcow2
qemu-img create -q -f qcow2 -b comp.qcow2 -F qcow2 odd/top.qcow2 8M
io qcow2 odd/top.qcow2 "write -P 0xcc 3M 64k"
add odd_sizes odd/top.qcow2 qcow2 odd/top.qcow2:auto odd/comp.qcow2:auto
find . -path ./odd -prune -o -type f ! -name '*.list' -exec sh -c \
	'for f; do s=$(stat -c %s "$f"); truncate -s $(((s + 511) / 512 * 512)) "$f"; done' \
	sh {} +
