#!/bin/bash
# Build a small busybox initramfs (gzip'd newc cpio) that loads kernel
# modules, runs a test command and powers the VM off, printing
#   IMGFMT-VM-EXIT <exit code>
# as the last console line (run-vm.sh turns that into its exit code).
set -euo pipefail

PROG=mkinitramfs.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

usage() {
	cat <<USAGE
usage: $PROG --kver VER --out FILE.cpio.gz [options]

  --kver VER          kernel version (modules from /lib/modules/VER)
  --out FILE          output initramfs (gzip'd newc cpio)
  --module 'NAME [PARAM=VAL...]'
                      in-tree module to load at boot (dm-mod and dm_mod are the
                      same); its modules.dep closure is added, dependencies
                      first.  Built-in modules are skipped silently.  Repeatable.
                      virtio_pci and virtio_blk are always added (for --disk).
  --ko 'PATH.ko [PARAM=VAL...]'
                      out-of-tree module (.ko or .ko.xz/.gz/.zst), copied to
                      /lib/modules/VER/extra/ and loaded after all --module
                      ones, in the order given.  The in-tree modules named in
                      its "depends=" modinfo field are added automatically.
                      Repeatable.
  --bin PATH          executable copied in at the same path (a bare name is
                      looked up in PATH), with every shared library ldd lists
                      and the dynamic loader.  Repeatable.
  --payload DIR       copied to /payload
  --init-cmd 'CMD'    shell command run by /init (busybox sh, cwd /payload) after
                      loading modules;
                      default /payload/run.sh
  -h, --help          this text

The guest's /init mounts proc, sysfs, devtmpfs, devpts, /dev/shm, /run
(tmpfs) and debugfs, exports DM_DISABLE_UDEV=1, loads the modules listed in
/etc/modules.order then /etc/modules.extra with busybox insmod, runs CMD and
prints "IMGFMT-VM-EXIT <rc>" before "poweroff -f".
USAGE
}

KVER='' OUT='' PAYLOAD='' INIT_CMD=/payload/run.sh
MODULES=() KOS=() BINS=()
while [ "$#" -gt 0 ]; do
	case $1 in
	--kver | --out | --module | --ko | --bin | --payload | --init-cmd)
		[ "$#" -ge 2 ] || { vm_log "error: $1 needs an argument"; usage >&2; exit 2; }
		case $1 in
		--kver) KVER=$2 ;;
		--out) OUT=$2 ;;
		--module) MODULES+=("$2") ;;
		--ko) KOS+=("$2") ;;
		--bin) BINS+=("$2") ;;
		--payload) PAYLOAD=$2 ;;
		--init-cmd) INIT_CMD=$2 ;;
		esac
		shift 2
		;;
	-h | --help) usage; exit 0 ;;
	*) vm_log "error: unknown argument: $1"; usage >&2; exit 2 ;;
	esac
done
if [ -z "$KVER" ] || [ -z "$OUT" ]; then
	vm_log "error: --kver and --out are required"
	usage >&2
	exit 2
fi

MODDIR=/lib/modules/$KVER
[ -r "$MODDIR/modules.dep" ] || vm_die "$MODDIR/modules.dep not found (is the kernel installed? see kernels.sh)"
[ -z "$PAYLOAD" ] || [ -d "$PAYLOAD" ] || vm_die "--payload $PAYLOAD is not a directory"

need_cmds cpio:cpio gzip:gzip xz:xz-utils ldd:libc-bin busybox:busybox-static

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/lib,lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,tmp,run,root,mnt,var}
# Libraries live in /lib/x86_64-linux-gnu; /usr/lib/x86_64-linux-gnu aliases it.
ln -s ../../lib/x86_64-linux-gnu "$ROOT/usr/lib/x86_64-linux-gnu"

# ---------------------------------------------------------------- binaries
# copy_file SRC DST-in-root: copy following symlinks, keep mode.
copy_file() {
	mkdir -p "$ROOT$(dirname "$2")"
	cp -L --preserve=mode "$1" "$ROOT$2"
}

# add_bin PATH: copy an executable and its shared libraries.
add_bin() {
	local src=$1 dst=$2 lib
	if [ ! -f "$src" ] || [ ! -x "$src" ]; then
		vm_die "--bin $src: not an executable file"
	fi
	rm -f "$ROOT$dst"
	copy_file "$src" "$dst"
	# ldd fails ("not a dynamic executable") for static binaries and scripts.
	{ ldd "$src" 2>/dev/null || true; } | sed -n 's/.*=> \(\/[^ ]*\) (.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' |
		while read -r lib; do
			[ -e "$ROOT$lib" ] || copy_file "$lib" "$lib"
		done
}

BUSYBOX=$(command -v busybox)
add_bin "$BUSYBOX" /bin/busybox
"$BUSYBOX" --list-full | while read -r applet; do
	[ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done

for b in "${BINS[@]}"; do
	case $b in
	*/*) src=$b ;;
	*) src=$(command -v "$b") || vm_die "--bin $b: not found in PATH" ;;
	esac
	src_abs=$(cd "$(dirname "$src")" && pwd)/$(basename "$src")
	add_bin "$src_abs" "$src_abs"
done

# ---------------------------------------------------------------- modules
normname() { # /x/y/dm-mod.ko.xz -> dm_mod
	local n=${1##*/}
	n=${n%%.ko*}
	printf '%s' "${n//-/_}"
}

declare -A MODPATH=() MODDEPS=() BUILTIN=() PARAMS=() SEEN=()
while IFS= read -r line; do
	path=${line%%:*}
	MODPATH[$(normname "$path")]=$path
	MODDEPS[$path]=${line#*:}
done <"$MODDIR/modules.dep"
if [ -r "$MODDIR/modules.builtin" ]; then
	while IFS= read -r line; do
		BUILTIN[$(normname "$line")]=1
	done <"$MODDIR/modules.builtin"
fi

ORDER=()
visit() { # visit PATH: add PATH after its dependencies
	local p=$1 d
	[ -z "${SEEN[$p]:-}" ] || return 0
	SEEN[$p]=1
	for d in ${MODDEPS[$p]}; do
		visit "$d"
	done
	ORDER+=("$p")
}

# want_module NAME [PARAMS]: add an in-tree module (closure) unless built in.
want_module() {
	local n
	n=$(normname "$1")
	if [ -n "${MODPATH[$n]:-}" ]; then
		visit "${MODPATH[$n]}"
		[ -z "${2:-}" ] || PARAMS[${MODPATH[$n]}]=$2
	elif [ -n "${BUILTIN[$n]:-}" ]; then
		: # built into the kernel: nothing to load
	else
		vm_die "module $1 is neither in $MODDIR/modules.dep nor built in"
	fi
}

# modinfo_field FILE FIELD (works on uncompressed .ko without kmod)
modinfo_field() {
	tr '\0' '\n' <"$1" | sed -n "s/^$2=//p" | head -1
}

# Out-of-tree modules first (their depends= feed the in-tree list).
KO_LINES=()
mkdir -p "$ROOT$MODDIR/extra"
for spec in "${KOS[@]}"; do
	read -r src params <<<"$spec"
	[ -f "$src" ] || vm_die "--ko $src: no such file"
	base=${src##*/}
	base=${base%%.ko*}.ko
	dst=$MODDIR/extra/$base
	case $src in
	*.ko.xz) xz -dc "$src" >"$ROOT$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$ROOT$dst" ;;
	*.ko.zst) need_cmds zstd:zstd; zstd -qdc "$src" >"$ROOT$dst" ;;
	*) cp "$src" "$ROOT$dst" ;;
	esac
	vermagic=$(modinfo_field "$ROOT$dst" vermagic)
	case $vermagic in
	"$KVER "*) ;;
	*) vm_log "warning: $src has vermagic '$vermagic', not built for $KVER" ;;
	esac
	deps=$(modinfo_field "$ROOT$dst" depends)
	for d in ${deps//,/ }; do
		want_module "$d"
	done
	KO_LINES+=("$dst${params:+ $params}")
done

for spec in virtio_pci virtio_blk "${MODULES[@]}"; do
	read -r name params <<<"$spec"
	want_module "$name" "${params:-}"
done

: >"$ROOT/etc/modules.order"
: >"$ROOT$MODDIR/modules.dep"
for p in "${ORDER[@]}"; do
	src=$MODDIR/$p
	rel=${p%.xz}
	rel=${rel%.gz}
	rel=${rel%.zst}
	mkdir -p "$(dirname "$ROOT$MODDIR/$rel")"
	case $p in
	*.ko.xz) xz -dc "$src" >"$ROOT$MODDIR/$rel" ;;
	*.ko.gz) gzip -dc "$src" >"$ROOT$MODDIR/$rel" ;;
	*.ko.zst) need_cmds zstd:zstd; zstd -qdc "$src" >"$ROOT$MODDIR/$rel" ;;
	*) cp "$src" "$ROOT$MODDIR/$rel" ;;
	esac
	p_params=${PARAMS[$p]:-}
	printf '%s%s\n' "$MODDIR/$rel" "${p_params:+ $p_params}" >>"$ROOT/etc/modules.order"
	# A modules.dep for just these modules, so busybox modprobe/modinfo work.
	deps=
	for d in ${MODDEPS[$p]}; do
		d=${d%.xz}; d=${d%.gz}; d=${d%.zst}
		deps="$deps $d"
	done
	printf '%s:%s\n' "$rel" "$deps" >>"$ROOT$MODDIR/modules.dep"
done
for l in "${KO_LINES[@]}"; do
	printf '%s\n' "$l"
	read -r dst _ <<<"$l"
	printf '%s:\n' "${dst#"$MODDIR"/}" >>"$ROOT$MODDIR/modules.dep"
done >"$ROOT/etc/modules.extra"
for f in modules.builtin modules.builtin.modinfo; do
	[ ! -r "$MODDIR/$f" ] || cp "$MODDIR/$f" "$ROOT$MODDIR/$f"
done

# ---------------------------------------------------------------- payload
if [ -n "$PAYLOAD" ]; then
	mkdir -p "$ROOT/payload"
	cp -a "$PAYLOAD/." "$ROOT/payload/"
	[ ! -f "$ROOT/payload/run.sh" ] || chmod a+x "$ROOT/payload/run.sh"
fi
printf '%s\n' "$INIT_CMD" >"$ROOT/etc/imgfmt-init-cmd"

# ---------------------------------------------------------------- /etc
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
ln -s /proc/mounts "$ROOT/etc/mtab"
if [ "$(id -u)" = 0 ]; then
	# The kernel opens /dev/console for init before devtmpfs is mounted.
	mknod -m 600 "$ROOT/dev/console" c 5 1
	mknod -m 666 "$ROOT/dev/null" c 1 3
fi

cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# dm-imgfmt test VM init (generated by selftests/vm/mkinitramfs.sh)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C LC_ALL=C
# No udev in the guest: libdevmapper must not wait for udev cookies.
export DM_DISABLE_UDEV=1

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /sys/kernel/debug
mount -t devpts -o gid=5,mode=620,ptmxmode=000 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
# No tmpfs over /tmp: the root is in RAM already, and binaries kept at
# their host path (--bin) may live under /tmp.
chmod 1777 /tmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname imgfmt-vm
echo 0 >/proc/sys/kernel/printk_ratelimit 2>/dev/null || true

echo "# imgfmt-vm: kernel $(uname -r), $(nproc) cpu(s), $(sed -n 's/^MemTotal: *//p' /proc/meminfo) RAM"

while read -r mod params; do
	[ -n "$mod" ] || continue
	# shellcheck disable=SC2086 # params are word-split on purpose
	insmod "$mod" $params || echo "# insmod $(basename "$mod" .ko) failed"
done </etc/modules.order

IMGFMT_KO_FAILED=
while read -r mod params; do
	[ -n "$mod" ] || continue
	# shellcheck disable=SC2086
	if ! insmod "$mod" $params; then
		echo "###################################################################"
		echo "### ERROR: insmod $mod FAILED -- out-of-tree module NOT loaded"
		echo "###################################################################"
		dmesg | tail -n 20
		IMGFMT_KO_FAILED="$IMGFMT_KO_FAILED $(basename "$mod" .ko)"
	fi
done </etc/modules.extra
export IMGFMT_KO_FAILED

# /dev/mapper/control normally exists once dm-mod is loaded (devtmpfs).
if grep -qw device-mapper /proc/misc 2>/dev/null && [ ! -e /dev/mapper/control ]; then
	mkdir -p /dev/mapper
	minor=$(sed -n 's/^ *\([0-9]*\) device-mapper$/\1/p' /proc/misc)
	mknod /dev/mapper/control c 10 "$minor"
fi

cd /payload 2>/dev/null || cd /
echo "# running: $(cat /etc/imgfmt-init-cmd)"
sh /etc/imgfmt-init-cmd
rc=$?
cd /

# Warnings/BUGs are below the console loglevel: report them here.
if dmesg | grep -qE 'WARNING:|BUG:|Oops|general protection|Call Trace:|UBSAN:|KASAN:|kmemleak:|hung_task|INFO: task'; then
	echo "# IMGFMT-VM-KERNEL-WARNING: kernel log contains warnings:"
	dmesg | grep -A 40 -E 'WARNING:|BUG:|Oops|general protection|UBSAN:|KASAN:|kmemleak:|INFO: task' | head -n 200 | sed 's/^/# dmesg: /'
fi

sync
echo "IMGFMT-VM-EXIT $rc"
# Wait for the serial line to drain (busybox stty sets with TCSADRAIN).
stty -F /dev/console "$(stty -F /dev/console -g)" 2>/dev/null || sleep 1
poweroff -f
# Not reached unless poweroff failed.
echo o >/proc/sysrq-trigger
sleep 10
INIT
chmod 755 "$ROOT/init"

# ---------------------------------------------------------------- archive
OUT_DIR=$(dirname "$OUT")
mkdir -p "$OUT_DIR"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --quiet -R 0:0) | gzip -6 >"$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
vm_log "$OUT: $(du -h "$OUT" | cut -f1), modules: $(
	{ sed 's|.*/||; s| .*||' "$ROOT/etc/modules.order" "$ROOT/etc/modules.extra"; } | tr '\n' ' ')"
