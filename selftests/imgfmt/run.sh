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

rc=0
start=$(date +%s)
"$here/imgfmt_vm_test" || rc=1
echo "# imgfmt_vm_test took $(($(date +%s) - start)) s, exit $rc"

# VMDK descriptors and odd-sized images through imgfmt attach/detach.
start=$(date +%s)
drc=0
sh "$here/desc_vm_test.sh" "$IMGFMT_IMAGES/desc" || drc=1
echo "# desc_vm_test.sh took $(($(date +%s) - start)) s, exit $drc"
[ $drc -eq 0 ] || rc=1

# Backing chains, tables written by hand.
start=$(date +%s)
crc=0
sh "$here/chain_vm_test.sh" "$IMGFMT_IMAGES/chain" || crc=1
echo "# chain_vm_test.sh took $(($(date +%s) - start)) s, exit $crc"
[ $crc -eq 0 ] || rc=1

# Partitions, detach safety, list and automatic names.
start=$(date +%s)
prc=0
sh "$here/part_vm_test.sh" "$IMGFMT_IMAGES/part" || prc=1
echo "# part_vm_test.sh took $(($(date +%s) - start)) s, exit $prc"
[ $prc -eq 0 ] || rc=1

# VMDK deltas and UML COW over raw, and the refusals of VMDK half links.
start=$(date +%s)
rrc=0
sh "$here/resolve_vm_test.sh" "$IMGFMT_IMAGES/resolve" || rrc=1
echo "# resolve_vm_test.sh took $(($(date +%s) - start)) s, exit $rrc"
[ $rrc -eq 0 ] || rc=1

# Belt and braces: the test's own last check reads the log too, but a
# crash of the test program would skip it.
if dmesg | grep -E 'BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|kernel BUG|Call Trace' |
	sed 's/^/# dmesg: /' | grep .; then
	echo "# kernel log shows warnings or bugs"
	rc=1
fi
exit $rc
