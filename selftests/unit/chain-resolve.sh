#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Backing chains in the helper, against QEMU, without a VM and without root:
#
#   chain-resolve.sh [IMGFMT]
#
# Chains made with qemu-img create -b/-F and qemu-io writes (and UML COW
# files written by mkcow.py) must read (`imgfmt read`) byte for byte as
# `qemu-img convert -O raw` reads them (COW: as mkcow.py computes, since
# QEMU no longer reads COW); `imgfmt info --backing-chain --output=json`
# must agree with `qemu-img info --backing-chain --output=json` on every
# layer's fields; every refusal (loops, missing files, depth, VMDK CIDs,
# COW stamps, formats) must say its reason in one line.  Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
IMGFMT=${1:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")
MKCOW=$TOP/selftests/unit/mkcow.py

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v qemu-img >/dev/null || tap_bail "qemu-img not installed"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || tap_bail "cannot enter $TMP"

q() { "$@" >/dev/null 2>"$TMP/q.err" || tap_bail "$* failed: $(cat "$TMP/q.err")"; }
qio() { q qemu-io -f "$@"; }

# --- Building the chains (every file relative to $TMP). ---

# A raw base of 4 MiB with a pattern in its first 2 MiB.
q qemu-img create -q -f raw base.raw 4M
qio raw -c "write -P 0x11 0 2M" -c "write -P 0x12 3M 4k" base.raw

# qcow2 over raw, the format recorded.
q qemu-img create -q -f qcow2 -b base.raw -F raw q-raw.qcow2
qio qcow2 -c "write -P 0x21 64k 64k" -c "write -z 1M 64k" q-raw.qcow2

# qcow2 over raw, no format recorded: QEMU 7.2 refuses to make one, so the
# backing format extension's type is overwritten (an unknown extension,
# which QEMU and imgfmt skip) and the base is probed as raw.
cp q-raw.qcow2 q-probed.qcow2
python3 - q-probed.qcow2 <<'EOF' || tap_bail "cannot unrecord the backing format"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    head = f.read(65536)
    off = struct.unpack(">I", head[100:104])[0]
    while True:
        typ, length = struct.unpack(">II", head[off:off + 8])
        if typ == 0:
            sys.exit("no backing format extension")
        if typ == 0xE2792ACA:
            f.seek(off)
            f.write(struct.pack(">I", 0x7E57AB1E))
            break
        off += 8 + (length + 7) // 8 * 8
EOF

# qcow2 over qcow2 over raw; the top is larger than its backing file.
q qemu-img create -q -f qcow2 -b q-raw.qcow2 -F qcow2 q-q-raw.qcow2 6M
qio qcow2 -c "write -P 0x31 96k 8k" -c "write -z 0 4k" -c "write -P 0x32 5M 4k" \
	q-q-raw.qcow2

# Relative names: sub/top names ../mid.qcow2, which names base.raw in its
# own directory; read from another working directory.
mkdir -p rel/sub
q qemu-img create -q -f raw rel/base.raw 2M
qio raw -c "write -P 0x41 0 1M" rel/base.raw
(cd rel && q qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2)
qio qcow2 -c "write -P 0x42 512k 64k" rel/mid.qcow2
(cd rel/sub && q qemu-img create -q -f qcow2 -b ../mid.qcow2 -F qcow2 top.qcow2)
qio qcow2 -c "write -P 0x43 0 4k" rel/sub/top.qcow2

# qcow2 over vmdk; vmdk delta over vmdk; qcow over qcow2.
q qemu-img create -q -f vmdk base.vmdk 4M
qio vmdk -c "write -P 0x51 0 1M" base.vmdk
q qemu-img create -q -f qcow2 -b base.vmdk -F vmdk q-vmdk.qcow2
qio qcow2 -c "write -P 0x52 128k 64k" q-vmdk.qcow2
q qemu-img create -q -f vmdk -b base.vmdk -F vmdk delta.vmdk
qio vmdk -c "write -P 0x53 64k 64k" -c "write -P 0x54 2M 4k" delta.vmdk
q qemu-img create -q -f qcow2 base.qcow2 4M
qio qcow2 -c "write -P 0x61 0 1M" base.qcow2
q qemu-img create -q -f qcow -b base.qcow2 -F qcow2 v1.qcow
qio qcow -c "write -P 0x62 8k 8k" v1.qcow

# VMDK descriptor files of one sparse extent naming a parent (QEMU takes
# the parent from the descriptor): the extent beside it, and in sub/.
make_desc_delta()	# DESCRIPTOR EXTENT
{
	local cid

	q qemu-img create -q -f vmdk "$2" 4M
	qio vmdk -c "write -P 0x55 192k 64k" "$2"
	cid=$(grep -a -m1 '^CID=' base.vmdk | cut -d= -f2)
	printf '%s\n' '# Disk DescriptorFile' version=1 CID=1234abcd "parentCID=$cid" \
		'createType="twoGbMaxExtentSparse"' 'parentFileNameHint="base.vmdk"' \
		"RW 8192 SPARSE \"$2\"" >"$1"
}
mkdir -p dsub
make_desc_delta desc-delta.vmdk desc-delta-s001.vmdk
make_desc_delta desc-sub.vmdk dsub/desc-sub-s001.vmdk

# A vmfsSparse delta: a COWD extent (1 MiB of 512-byte grains, directory
# at sector 1, its table at 2, grain 5 at sector 34) under a descriptor
# naming a hosted sparse parent.
q qemu-img create -q -f vmdk cowd-base.vmdk 1M
qio vmdk -c "write -P 0x61 0 1M" cowd-base.vmdk
python3 - cowd-delta-s.vmdk <<'EOF' || tap_bail "cannot write the COWD extent"
import struct, sys
f = bytearray(35 * 512)
struct.pack_into("<4sIIIIIII", f, 0, b"COWD", 1, 3, 2048, 1, 1, 1, 0)
struct.pack_into("<I", f, 512, 2)
struct.pack_into("<I", f, 1024 + 4 * 5, 34)
f[34 * 512:] = b"\x7c" * 512
open(sys.argv[1], "wb").write(f)
EOF
printf '%s\n' '# Disk DescriptorFile' version=1 CID=abcdef01 \
	"parentCID=$(grep -a -m1 '^CID=' cowd-base.vmdk | cut -d= -f2)" \
	'createType="vmfsSparse"' 'parentFileNameHint="cowd-base.vmdk"' \
	'RW 2048 VMFSSPARSE "cowd-delta-s.vmdk"' >cowd-delta.vmdk

# UML COW over raw, every layout; the expected disk from mkcow.py.
head -c $((1024 * 1024 + 3 * 512)) /dev/urandom >cowbase.raw
for lay in v1 v2 qemu v3 v3-64; do
	python3 "$MKCOW" --over "$lay" cowbase.raw cowbase.raw "cow-$lay.cow" \
		"cow-$lay.expect" || tap_bail "mkcow.py --over $lay failed"
done

# --- Reads against QEMU. ---

read_same()		# TOP [QEMU-FORMAT | EXPECTED-FILE]
{
	local expect=$TMP/expect.raw

	if [ -f "${2:-}" ]; then
		expect=$2
	else
		qemu-img convert ${2:+-f "$2"} -O raw "$1" "$expect" 2>"$TMP/err" ||
			{ why="qemu-img convert failed: $(cat "$TMP/err")"; return 1; }
	fi
	"$IMGFMT" read "$1" "$TMP/out.raw" 2>"$TMP/err" ||
		{ why="read failed: $(cat "$TMP/err")"; return 1; }
	cmp -s "$TMP/out.raw" "$expect" ||
		{ why="differs from QEMU: $(cmp "$TMP/out.raw" "$expect" 2>&1 | head -1)"; return 1; }
}

tap_check "read qcow2 over raw (-F raw)" read_same q-raw.qcow2
tap_check "read qcow2 over raw (format probed)" read_same q-probed.qcow2 qcow2
tap_check "read qcow2 over qcow2 over raw, top larger" read_same q-q-raw.qcow2
tap_check "read qcow2 over vmdk" read_same q-vmdk.qcow2
tap_check "read vmdk delta over vmdk" read_same delta.vmdk
tap_check "read qcow over qcow2" read_same v1.qcow
tap_check "read a VMDK descriptor delta of one extent" read_same desc-delta.vmdk
tap_check "read a VMDK descriptor delta, its extent in another directory" \
	read_same desc-sub.vmdk
tap_check "read a vmfsSparse (COWD) delta" read_same cowd-delta.vmdk
for lay in v1 v2 qemu v3 v3-64; do
	tap_check "read UML COW $lay over raw (mkcow.py's disk)" \
		read_same "cow-$lay.cow" "cow-$lay.expect"
done

read_from_elsewhere()
{
	local expect

	qemu-img convert -O raw rel/sub/top.qcow2 "$TMP/expect.raw" 2>"$TMP/err" ||
		{ why="qemu-img convert failed: $(cat "$TMP/err")"; return 1; }
	expect=$(md5sum <"$TMP/expect.raw")
	(cd / && "$IMGFMT" read "$TMP/rel/sub/top.qcow2" -) >"$TMP/out.raw" 2>"$TMP/err" ||
		{ why="read from / failed: $(cat "$TMP/err")"; return 1; }
	[ "$(md5sum <"$TMP/out.raw")" = "$expect" ] || { why="absolute path: differs"; return 1; }
	mkdir -p "$TMP/else"
	(cd "$TMP/else" && "$IMGFMT" read ../rel/sub/top.qcow2 -) >"$TMP/out.raw" 2>"$TMP/err" ||
		{ why="read from else/ failed: $(cat "$TMP/err")"; return 1; }
	[ "$(md5sum <"$TMP/out.raw")" = "$expect" ] || { why="relative path: differs"; return 1; }
}
tap_check "relative backing names resolve against the naming image's directory" \
	read_from_elsewhere

# --- info --backing-chain against qemu-img's. ---

# Fields qemu-img shows and imgfmt must show the same, per layer.
compare_chain_json()	# TOP
{
	"$IMGFMT" info --backing-chain --output=json "$1" >"$TMP/ours.json" 2>"$TMP/err" ||
		{ why="info failed: $(cat "$TMP/err")"; return 1; }
	qemu-img info --backing-chain --output=json "$1" >"$TMP/qemu.json" 2>"$TMP/err" ||
		{ why="qemu-img info failed: $(cat "$TMP/err")"; return 1; }
	why=$(python3 - "$TMP/ours.json" "$TMP/qemu.json" <<'EOF'
import json, sys
ours, qemu = (json.load(open(p)) for p in sys.argv[1:3])
fields = ["filename", "format", "virtual-size", "cluster-size",
          "backing-filename", "full-backing-filename",
          "backing-filename-format", "dirty-flag"]
if len(ours) != len(qemu):
    sys.exit(f"{len(ours)} layers, qemu-img {len(qemu)}")
for i, (o, q) in enumerate(zip(ours, qemu)):
    for f in fields:
        if o.get(f) != q.get(f):
            sys.exit(f"layer {i} {f}: {o.get(f)!r}, qemu-img {q.get(f)!r}")
    of, qf = o.get("format-specific", {}), q.get("format-specific", {})
    if of.get("type") != qf.get("type"):
        sys.exit(f"layer {i} format-specific type: {of.get('type')!r}, qemu-img {qf.get('type')!r}")
    for f in ("cid", "parent-cid", "create-type", "compat"):
        if f in qf.get("data", {}) and \
           of.get("data", {}).get(f) != qf["data"][f]:
            sys.exit(f"layer {i} format-specific {f}: "
                     f"{of.get('data', {}).get(f)!r}, qemu-img {qf['data'][f]!r}")
EOF
) || return 1
}

for t in q-raw.qcow2 q-probed.qcow2 q-q-raw.qcow2 q-vmdk.qcow2 delta.vmdk \
	v1.qcow rel/sub/top.qcow2 desc-delta.vmdk; do
	tap_check "info --backing-chain $t agrees with qemu-img" compare_chain_json "$t"
done

text_chain()
{
	local out

	out=$("$IMGFMT" info --backing-chain q-probed.qcow2 2>&1) ||
		{ why="info failed: $out"; return 1; }
	[ "$(grep -c '^image: ' <<<"$out")" = 2 ] || { why="not 2 blocks: $out"; return 1; }
	[ "$(grep -c '^$' <<<"$out")" = 1 ] || { why="blocks not separated by one blank line"; return 1; }
	grep -qx "note: backing format probed as raw" <<<"$out" ||
		{ why="no probed-raw note"; return 1; }
	# Recorded raw: no note.
	out=$("$IMGFMT" info --backing-chain q-raw.qcow2 2>&1)
	! grep -q "probed as raw" <<<"$out" || { why="note for a recorded raw format"; return 1; }
}
tap_check "info --backing-chain text: a block per layer, the probed-raw note" text_chain

# Plain info names the backing file without opening it, as qemu-img does.
info_without_backing()
{
	local out

	cp q-q-raw.qcow2 orphan.qcow2
	mkdir -p orphan && mv orphan.qcow2 orphan/
	out=$("$IMGFMT" info orphan/orphan.qcow2 2>&1) ||
		{ why="info failed: $out"; return 1; }
	grep -qx "backing-file: q-raw.qcow2" <<<"$out" || { why="no backing-file line: $out"; return 1; }
	grep -qx "full-backing-file: orphan/q-raw.qcow2" <<<"$out" ||
		{ why="no full-backing-file line"; return 1; }
	out=$("$IMGFMT" info --output=json orphan/orphan.qcow2 2>&1) ||
		{ why="info --output=json failed: $out"; return 1; }
	grep -q '"full-backing-filename": "orphan/q-raw.qcow2"' <<<"$out" ||
		{ why="no full-backing-filename field"; return 1; }
}
tap_check "info of an overlay whose backing file is missing" info_without_backing

# --- Refusals: one line, naming the file and the reason. ---

refused()		# MESSAGE-REGEX IMGFMT-ARGS...
{
	local want=$1 err

	shift
	if "$IMGFMT" "$@" >/dev/null 2>"$TMP/err"; then
		why="imgfmt $* succeeded"
		return 1
	fi
	err=$(cat "$TMP/err")
	[ "$(wc -l <"$TMP/err")" = 1 ] || { why="not one line: $err"; return 1; }
	grep -qE "^imgfmt: $want\$" <<<"$err" || { why="got: $err"; return 1; }
}

# A loop: a over b over a.
q qemu-img create -q -f qcow2 loop-b.qcow2 1M
q qemu-img create -q -f qcow2 -b loop-b.qcow2 -F qcow2 loop-a.qcow2
q qemu-img rebase -u -f qcow2 -b loop-a.qcow2 -F qcow2 loop-b.qcow2
tap_check "a loop is refused" refused \
	"loop-a\\.qcow2: the backing file of loop-b\\.qcow2 is already in its chain \\(a loop\\)" \
	read loop-a.qcow2 /dev/null
ln -s loop-a.qcow2 loop-link.qcow2
q qemu-img rebase -u -f qcow2 -b loop-link.qcow2 -F qcow2 loop-b.qcow2
tap_check "a loop through a symlink is refused" refused \
	"loop-link\\.qcow2: the backing file of loop-b\\.qcow2 is already in its chain \\(a loop\\)" \
	read loop-a.qcow2 /dev/null

# Missing, and not a file.
q qemu-img create -q -f qcow2 -u -b gone.raw -F raw missing.qcow2 1M
tap_check "a missing backing file is refused" refused \
	"gone\\.raw: cannot open the backing file of missing\\.qcow2: No such file or directory" \
	read missing.qcow2 /dev/null
mkdir -p adir
q qemu-img create -q -f qcow2 -u -b adir -F raw dir.qcow2 1M
tap_check "a directory as backing file is refused" refused \
	"adir: the backing file of dir\\.qcow2 is not a regular file or block device" \
	read dir.qcow2 /dev/null
tap_check "info --backing-chain refuses a missing backing file" refused \
	"gone\\.raw: cannot open the backing file of missing\\.qcow2: No such file or directory" \
	info --backing-chain missing.qcow2

# Depth: 1024 layers in all are read; 1025 are refused.  Layer N names
# layer N-1 by a name of fixed length, patched into copies of one overlay.
make_deep()
{
	mkdir -p deep
	q qemu-img create -q -f qcow2 -o cluster_size=512 deep/L0000.qcow2 1M
	qio qcow2 -c "write -P 0x71 0 4k" deep/L0000.qcow2
	q qemu-img create -q -f qcow2 -o cluster_size=512 -u -b L0000.qcow2 \
		-F qcow2 deep/template.qcow2 1M
	python3 - deep <<'EOF' || tap_bail "cannot make the deep chain"
import sys
d = sys.argv[1]
t = open(f"{d}/template.qcow2", "rb").read()
assert t.count(b"L0000.qcow2") == 1
for n in range(1, 1025):
    with open(f"{d}/L{n:04d}.qcow2", "wb") as f:
        f.write(t.replace(b"L0000.qcow2", f"L{n - 1:04d}.qcow2".encode()))
EOF
	# Layer 512 holds data of its own, read through 511 empty overlays.
	qio qcow2 -c "write -P 0x72 64k 4k" deep/L0512.qcow2
}
make_deep
deep_read()
{
	local expect

	"$IMGFMT" read deep/L1023.qcow2 "$TMP/out.raw" 2>"$TMP/err" ||
		{ why="read of 1024 layers failed: $(cat "$TMP/err")"; return 1; }
	expect=$( { head -c 4096 /dev/zero | tr '\0' '\161'; head -c $((60 * 1024)) /dev/zero;
		head -c 4096 /dev/zero | tr '\0' '\162'; head -c $((1024 * 1024 - 68 * 1024)) /dev/zero; } | md5sum)
	[ "$(md5sum <"$TMP/out.raw")" = "$expect" ] || { why="1024 layers read wrong"; return 1; }
}
tap_check "a chain of 1024 layers reads" deep_read
tap_check "a chain of 1025 layers is refused" refused \
	"deep/L1024\\.qcow2: backing chain deeper than 1024 layers" \
	read deep/L1024.qcow2 /dev/null

# VMDK: a parent whose CID is not the delta's parentCID.
cp base.vmdk cid-base.vmdk
q qemu-img create -q -f vmdk -b cid-base.vmdk -F vmdk cid-delta.vmdk
python3 - cid-base.vmdk <<'EOF' || tap_bail "cannot change the CID"
import re, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
# QEMU writes the CID without leading zeroes: keep its length.
m = re.search(rb"\nCID=([0-9a-f]{1,8})\n", b)
digits = m.group(1)
cid = int(digits, 16) ^ 1
b[m.start(1):m.end(1)] = (b"%0*x" % (len(digits), cid))[-len(digits):]
open(p, "wb").write(b)
EOF
tap_check "a VMDK parentCID mismatch is refused" refused \
	"cid-base\\.vmdk: CID [0-9a-f]{8} does not match the parentCID [0-9a-f]{8} of cid-delta\\.vmdk" \
	read cid-delta.vmdk /dev/null
# A delta whose parent became a qcow2 file (qemu-img would not make one).
cp base.vmdk qbase.vmdk
q qemu-img create -q -f vmdk -b qbase.vmdk -F vmdk qparent.vmdk
cp base.qcow2 qbase.vmdk
tap_check "a VMDK delta over a file of another format is refused" refused \
	"qbase\\.vmdk: the backing file is qcow2, qparent\\.vmdk records its format as vmdk" \
	read qparent.vmdk /dev/null

# UML COW: the backing file's size or mtime changed.
cp cowbase.raw cowstamp.raw
python3 "$MKCOW" --over v3 cowstamp.raw cowstamp.raw stamp.cow stamp.expect ||
	tap_bail "mkcow.py failed"
touch -d 2001-02-03 cowstamp.raw
tap_check "a UML COW backing file with another mtime is refused" refused \
	"cowstamp\\.raw: backing file mtime 981158400 differs from [0-9]+ in the UML COW header of stamp\\.cow" \
	read stamp.cow /dev/null
python3 "$MKCOW" --over v2 cowstamp.raw cowstamp.raw stamp.cow stamp.expect ||
	tap_bail "mkcow.py failed"
truncate -s +512 cowstamp.raw
touch -d 2001-02-03 cowstamp.raw
tap_check "a UML COW backing file of another size is refused" refused \
	"cowstamp\\.raw: backing file size 1050624 differs from 1050112 in the UML COW header of stamp\\.cow" \
	read stamp.cow /dev/null

# The recorded format is not the file's.
q qemu-img create -q -f qcow2 -u -b base.vmdk -F qcow2 wrongfmt.qcow2 4M
tap_check "a backing file of another format than recorded is refused" refused \
	"base\\.vmdk: the backing file is vmdk, wrongfmt\\.qcow2 records its format as qcow2" \
	read wrongfmt.qcow2 /dev/null
q qemu-img create -q -f qcow2 -u -b base.raw -F qcow2 rawnotq.qcow2 4M
tap_check "a raw file recorded as qcow2 is refused" refused \
	"base\\.raw: the backing file is of no known format, rawnotq\\.qcow2 records its format as qcow2" \
	read rawnotq.qcow2 /dev/null

# A split VMDK descriptor as a layer.
q qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 4M
q qemu-img create -q -f qcow2 -b split.vmdk -F vmdk q-split.qcow2
tap_check "a chain through a split VMDK descriptor is refused" refused \
	"split\\.vmdk: backing chains through split VMDK descriptors are not supported yet" \
	read q-split.qcow2 /dev/null

# A split descriptor naming a parent: not yet.
{ sed '$d' desc-delta.vmdk; echo 'RW 8192 SPARSE "desc-delta-s001.vmdk"';
	echo 'RW 8192 SPARSE "desc-delta-s001.vmdk"'; } >split-delta.vmdk
tap_check "a split VMDK descriptor naming a parent is refused" refused \
	"split-delta\\.vmdk:6: backing chains through split VMDK descriptors are not supported yet" \
	read split-delta.vmdk /dev/null

tap_summary
[ "$TAP_FAIL" -eq 0 ]
