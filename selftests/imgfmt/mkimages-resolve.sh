#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Images for resolve_vm_test.sh: VMDK deltas and a UML COW file over raw,
# read by the kernel through hand-written chain tables, and VMDK files
# whose embedded descriptor the kernel must refuse by name.
#
#   mkimages-resolve.sh OUTDIR
#
# OUTDIR/resolve.list, one line per chain:
#     NAME SIZE MD5 FILE[:FORMAT]...      (top first; the disk QEMU reads)
# OUTDIR/refused.list, one line per refused table:
#     NAME FILE NR_LOWER INFO MESSAGE     (NR_LOWER layers of base.raw;
#                                         INFO yes: info fails alike)
set -euo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: mkimages-resolve.sh OUTDIR}
mkdir -p "$OUT"
cd "$OUT"
rm -f resolve.list refused.list

md5() { md5sum <"$1" | cut -d' ' -f1; }
add() {		# NAME FILE-FOR-QEMU LAYERS...
	local name=$1 top=$2
	shift 2
	qemu-img convert -O raw "$top" "$name.expect"
	echo "$name $(stat -c %s "$name.expect") $(md5 "$name.expect") $*" >>resolve.list
	rm -f "$name.expect"
}

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c "write -P 0x11 0 2M" base.raw >/dev/null

# A VMDK delta over a VMDK over raw data (converted), two levels.
qemu-img convert -q -f raw -O vmdk base.raw base.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk delta.vmdk
qemu-io -f vmdk -c "write -P 0x22 64k 64k" -c "write -P 0x23 3M 4k" delta.vmdk >/dev/null
qemu-img create -q -f vmdk -b delta.vmdk -F vmdk delta2.vmdk
qemu-io -f vmdk -c "write -P 0x24 96k 4k" delta2.vmdk >/dev/null
add vmdk_delta delta.vmdk delta.vmdk base.vmdk
add vmdk_delta2 delta2.vmdk delta2.vmdk delta.vmdk base.vmdk

# qcow2 over a VMDK delta.
qemu-img create -q -f qcow2 -b delta.vmdk -F vmdk q-delta.qcow2
qemu-io -f qcow2 -c "write -P 0x25 1M 64k" q-delta.qcow2 >/dev/null
add qcow2_over_delta q-delta.qcow2 q-delta.qcow2 delta.vmdk base.vmdk

# UML COW (v3) over raw: QEMU no longer reads COW, mkcow.py computes it.
python3 "$TOP/selftests/unit/mkcow.py" --over v3 base.raw base.raw cow.cow cow.expect
echo "cow_over_raw $(stat -c %s cow.expect) $(md5 cow.expect) cow.cow base.raw:raw" >>resolve.list
rm -f cow.expect

# Refusals: a delta without its parent, and half links.
echo "vmdk_no_parent delta.vmdk 0 no VMDK parent disk not given as a lower layer" >>refused.list
cp base.vmdk cidonly.vmdk
o=$(grep -abo 'parentCID=ffffffff' cidonly.vmdk | head -n 1 | cut -d: -f1)
printf 'parentCID=1234abcd' | dd of=cidonly.vmdk bs=1 seek="$o" conv=notrunc status=none
echo "vmdk_cid_only cidonly.vmdk 1 yes VMDK delta disk without a parentFileNameHint" >>refused.list
cp delta.vmdk hintonly.vmdk
# QEMU writes the parent's CID without leading zeroes: the line may be
# shorter than its replacement, which takes room from the NULs after the
# embedded descriptor's text.
python3 - hintonly.vmdk <<'EOF'
import re, sys
f = sys.argv[1]
d = bytearray(open(f, 'rb').read())
m = re.search(rb'parentCID=[0-9a-f]*', d)
new = b'parentCID=ffffffff'
grow = len(new) - (m.end() - m.start())
end = d.index(b'\0', m.end())
assert grow >= 0 and d[end:end + grow] == b'\0' * grow
d[m.start():end + grow] = new + d[m.end():end]
open(f, 'wb').write(d)
EOF
echo "vmdk_hint_only hintonly.vmdk 1 yes VMDK delta disk without a parentCID" >>refused.list
cp base.vmdk badcid.vmdk
o=$(grep -abo '^CID=' badcid.vmdk | head -n 1 | cut -d: -f1)
printf 'CID=xyz' | dd of=badcid.vmdk bs=1 seek="$o" conv=notrunc status=none
echo "vmdk_bad_cid badcid.vmdk 0 yes VMDK descriptor: bad CID" >>refused.list
echo "made $(wc -l <resolve.list) chains, $(wc -l <refused.list) refusals in $OUT"
