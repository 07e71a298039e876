#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# QCOW2 internal snapshots and external data files, made with QEMU's
# tools, and their manifest, for qcow2-layers.sh (the helper, on the host)
# and qcow2_layers_vm_test.sh (the kernel target, tables by hand).
#
#   mkimages-layers.sh OUTDIR
#
# layers.list, one case a line, fields separated by one space:
#   <name> <virtual_size> <md5> <image> <snapshot> <data_file> [<lower>:<fmt>...]
# relative to OUTDIR; <snapshot> is the ID or name to map ("-": the
# active state), <data_file> the image's external data file ("-": none),
# <lower> the backing files, top-down.  A blank in a snapshot name is
# written %20.  md5 and size are QEMU's, of the
# disk the case shows: for a snapshot, of `qemu-img snapshot -a` applied
# to a copy and converted (the snapshot at its own size, as loadvm has
# it); otherwise of `qemu-img convert -O raw`.  qemu-img runs from OUTDIR,
# where QEMU 7.2 looks for relative data file names.
#
# snapshots.list, one snapshot a line: <image> <snapshot>; the images whose
# `snapshot -l` and `info --output=json` qcow2-layers.sh compares with
# qemu-img's, and whose snapshots it also reads against `qemu-img convert
# -l` (which keeps the active size).

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"

[ $# -eq 1 ] || die "usage: mkimages-layers.sh OUTDIR"
need_tools "qemu-utils, coreutils" qemu-img qemu-io md5sum
rm -rf "$1"
setup_out "$1"
make_tmp layers
cd "$OUT"
: >layers.list
: >snapshots.list

io()	# FILE CMD...: qemu-io writes, failing loudly
{
	local f=$1 out c args=()
	shift
	for c in "$@"; do args+=(-c "$c"); done
	out=$(qemu-io -f qcow2 "${args[@]}" "$f" 2>&1) || die "qemu-io on $f: $out"
	if printf '%s\n' "$out" | grep -qiE 'error|failed'; then
		die "qemu-io on $f: $out"
	fi
}

q2()	# FILE SIZE [qemu-img create options...]
{
	local f=$1 size=$2
	shift 2
	qemu-img create -q -f qcow2 "$@" "$f" "$size"
}

vsize()	# IMAGE
{
	qemu-img info --output=json "$1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'
}

# Record the size and md5 of RAW: record NAME RAW IMAGE SNAPSHOT DATA [LOWER...]
record()
{
	local name=$1 raw=$2 md5
	shift 2
	md5=$(md5sum <"$raw" | cut -d' ' -f1)
	echo "$name $(stat -c %s "$raw") $md5 $*" >>layers.list
	rm -f "$raw"
}

add_active()	# NAME IMAGE DATA [LOWER...]
{
	local name=$1 img=$2
	shift 2
	qemu-img convert -O raw "$img" "$TMP/$name.raw"
	record "$name" "$TMP/$name.raw" "$img" - "$@"
}

# A snapshot, by ID or name: the disk `qemu-img snapshot -a` makes of it.
add_snapshot()	# NAME IMAGE SNAPSHOT
{
	local name=$1 img=$2 sn=$3
	cp "$img" "$TMP/$name.qcow2"
	qemu-img snapshot -a "$sn" "$TMP/$name.qcow2"
	qemu-img convert -O raw "$TMP/$name.qcow2" "$TMP/$name.raw"
	rm -f "$TMP/$name.qcow2"
	record "$name" "$TMP/$name.raw" "$img" "${sn// /%20}" -
	echo "$img ${sn// /%20}" >>snapshots.list
}

# 1. Version 3: two snapshots between writes, then more writes; a snapshot
#    with a blank in its name.
q2 v3.qcow2 4M
io v3.qcow2 "write -P 0x11 0 64k" "write -P 0x12 1M 128k"
qemu-img snapshot -c first v3.qcow2
io v3.qcow2 "write -P 0x21 32k 64k" "write -z 1M 64k" "write -P 0x22 3M 4k"
qemu-img snapshot -c "two words" v3.qcow2
io v3.qcow2 "write -P 0x31 0 4k" "write -P 0x32 2M 1M"
add_snapshot v3_first v3.qcow2 first
add_snapshot v3_id2 v3.qcow2 2
add_snapshot v3_two_words v3.qcow2 "two words"
add_active v3_active v3.qcow2 -

# 2. Version 2 (compat=0.10), 512-byte clusters.
q2 v2.qcow2 2M -o compat=0.10,cluster_size=512
io v2.qcow2 "write -P 0x41 512 1k" "write -P 0x42 1M 8k"
qemu-img snapshot -c old v2.qcow2
io v2.qcow2 "write -P 0x43 0 4k" "write -P 0x44 1M 512"
add_snapshot v2_old v2.qcow2 old
add_active v2_active v2.qcow2 -

# 3. Extended L2: subclusters allocated, zeroed and left alone.
q2 xl2.qcow2 4M -o cluster_size=64k,extended_l2=on
io xl2.qcow2 "write -P 0x51 4k 2k" "write -P 0x52 130k 6k"
qemu-img snapshot -c sub xl2.qcow2
io xl2.qcow2 "write -z 4k 2k" "write -P 0x53 8k 2k" "write -P 0x54 130k 2k"
add_snapshot xl2_sub xl2.qcow2 sub
add_active xl2_active xl2.qcow2 -

# 4. A snapshot taken before a resize: its own, smaller size.
q2 grown.qcow2 1M
io grown.qcow2 "write -P 0x61 0 64k" "write -P 0x62 960k 64k"
qemu-img snapshot -c small grown.qcow2
qemu-img resize -q grown.qcow2 3M
io grown.qcow2 "write -P 0x63 0 4k" "write -P 0x64 2M 64k"
qemu-img snapshot -c big grown.qcow2
add_snapshot grown_small grown.qcow2 small
add_snapshot grown_big grown.qcow2 big
add_active grown_active grown.qcow2 -

# 5. Compressed clusters, kept by a snapshot after writes over them.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 8192)' \
	>"$TMP/src.raw"
qemu-img convert -q -c -f raw -O qcow2 "$TMP/src.raw" comp.qcow2
rm -f "$TMP/src.raw"
qemu-img snapshot -c packed comp.qcow2
io comp.qcow2 "write -P 0x71 0 64k" "write -z 1M 64k"
add_snapshot comp_packed comp.qcow2 packed
add_active comp_active comp.qcow2 -

# 6. External data files, raw and not, with a cluster at data offset 0,
#    zero writes, and extended L2.
q2 ext.qcow2 4M -o data_file=ext.data
io ext.qcow2 "write -P 0x81 0 64k" "write -P 0x82 3M 128k" "write -z 3M 64k"
add_active ext_data ext.qcow2 ext.data
q2 extraw.qcow2 4M -o data_file=extraw.data,data_file_raw=on
io extraw.qcow2 "write -P 0x91 64k 64k" "write -z 2M 64k" \
	"write -P 0x92 4032k 64k"
add_active ext_data_raw extraw.qcow2 extraw.data
q2 extxl2.qcow2 4M -o data_file=extxl2.data,extended_l2=on
io extxl2.qcow2 "write -P 0xa1 2k 2k" "write -P 0xa2 1M 6k" "write -z 1M 2k"
add_active ext_data_xl2 extxl2.qcow2 extxl2.data

# 7. A data file under a backing file (the kernel target; the helper's
#    read does not open backing files yet).
python3 -c 'import sys; sys.stdout.buffer.write(b"\x5a" * (4 << 20))' \
	>base.raw
q2 extback.qcow2 4M -o data_file=extback.data -b base.raw -F raw
io extback.qcow2 "write -P 0xb1 64k 64k" "write -z 1M 64k"
add_active ext_data_backing extback.qcow2 extback.data base.raw:raw

# A loop device ends at the last whole sector; zeroes added to the files
# change nothing QEMU reads.
for f in *.qcow2 *.data; do
	s=$(stat -c %s "$f")
	truncate -s $(((s + 511) / 512 * 512)) "$f"
done
