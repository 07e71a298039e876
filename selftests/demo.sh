#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make demo: build a qcow2 image holding an ext4 file system with qemu-img,
# boot Debian's kernel in QEMU, attach the image with `imgfmt attach`, mount
# it read-only and show its files.
set -euo pipefail
. "$(dirname "$0")/common.sh"

need_packages $CHECK_PACKAGES
read -r kver vmlinuz _moddir kdir < <("$TOP/selftests/vm/kernels.sh" | tail -1)
make -s -C "$TOP/userspace"

demo=$BUILD/demo
rm -rf "$demo"
mkdir -p "$demo/files/docs" "$demo/payload"
echo "Hello from inside a qcow2 image." >"$demo/files/hello.txt"
seq 1 100000 >"$demo/files/docs/numbers.txt"
head -c 3M /dev/urandom >"$demo/files/random.bin"
(cd "$demo/files" && md5sum hello.txt docs/numbers.txt random.bin) \
	>"$demo/payload/expected.md5"
mke2fs -q -t ext4 -d "$demo/files" -L demo "$demo/fs.raw" 64M
qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$demo/fs.raw" \
	"$demo/payload/demo.qcow2"
rm -f "$demo/fs.raw"

cat >"$demo/payload/run.sh" <<'EOS'
#!/bin/sh
set -e
export DM_DISABLE_UDEV=1
cd /payload
echo "\$ imgfmt info demo.qcow2"
imgfmt info demo.qcow2
echo "\$ imgfmt attach demo.qcow2"
dev=$(imgfmt attach demo.qcow2)
echo "$dev"
mkdir -p /mnt
mount -t ext4 -o ro "$dev" /mnt
echo "\$ ls -lR /mnt"
ls -lR /mnt
echo "\$ cat /mnt/hello.txt"
cat /mnt/hello.txt
echo "\$ (cd /mnt && md5sum -c /payload/expected.md5)"
(cd /mnt && md5sum -c /payload/expected.md5)
echo "\$ dmsetup table demo; dmsetup status demo"
dmsetup table demo
dmsetup status demo
umount /mnt
imgfmt detach demo
echo "demo: done"
EOS
# The helper rides in the payload: the host path that mkinitramfs.sh --bin
# keeps (for its libraries) may be hidden in the guest, under its tmpfs /tmp.
cp "$TOP/userspace/imgfmt" "$demo/payload/"
sed -i '2i export PATH="/payload:$PATH"' "$demo/payload/run.sh"
chmod +x "$demo/payload/run.sh"

tree=$(module_tree "$kver")
"$tree/scripts/compat-probe.sh" "$kdir" "$tree/dm-imgfmt/compat-probes" \
	"$tree/dm-imgfmt/compat-probed.h"
make -s -C "$kdir" M="$tree" modules
"$TOP/selftests/vm/mkinitramfs.sh" --kver "$kver" --out "$demo/initrd.cpio.gz" \
	--module loop --module dm-mod --module ext4 --module crc32c_generic --ko "$tree/dm-imgfmt.ko" \
	--bin /usr/sbin/dmsetup --bin "$TOP/userspace/imgfmt" \
	--payload "$demo/payload" --init-cmd /payload/run.sh
"$TOP/selftests/vm/run-vm.sh" --kernel "$vmlinuz" --initrd "$demo/initrd.cpio.gz" \
	--timeout 600
