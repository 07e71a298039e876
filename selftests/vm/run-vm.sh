#!/bin/bash
# Boot a kernel + initramfs (see mkinitramfs.sh) under QEMU/TCG, stream the
# serial console, and exit with the guest's exit code (IMGFMT-VM-EXIT line).
set -euo pipefail

PROG=run-vm.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

usage() {
	cat <<USAGE
usage: $PROG --kernel VMLINUZ --initrd FILE [options]

  --kernel VMLINUZ    kernel image (e.g. /boot/vmlinuz-6.1.0-56-amd64)
  --initrd FILE       initramfs built by mkinitramfs.sh
  --mem MiB           guest memory (default 2048)
  --smp N             guest CPUs (default 2; multi-threaded TCG when > 1)
  --timeout SECONDS   kill the VM after this long (default 1200) -> exit 124
  --disk FILE         raw image attached as virtio-blk (/dev/vda, /dev/vdb, ...
                      in order).  Repeatable.
  --icount            deterministic-ish execution: -icount shift=0, 1 CPU
  --log FILE          also write the console output (CRs stripped) to FILE
  --append 'ARGS'     extra kernel command line arguments
  --qemu-arg ARG      extra raw QEMU argument (one argv word).  Repeatable.
  --tcg-thread multi|single
                      TCG mode when --smp > 1 (default multi, or
                      \$IMGFMT_VM_TCG_THREAD).  single runs all vCPUs on one
                      host thread: slower for parallel guest work, but the
                      rare MTTCG "int3" oops of QEMU 7.2 never happened with
                      it (0 in 300 boots; multi: 2 in ~370).
  -h, --help          this text

A VM that dies with an "int3" oops before /init started (QEMU MTTCG flake,
seen about once in 150 boots here) is booted once more automatically.

Exit status: the guest's (from its "IMGFMT-VM-EXIT <rc>" console line);
124 on timeout; 125 if the VM stopped without that line (panic, init crash);
2 on bad usage.
USAGE
}

KERNEL='' INITRD='' MEM=2048 SMP=2 TIMEOUT=1200 ICOUNT=0 LOG='' APPEND=''
TCG_THREAD=${IMGFMT_VM_TCG_THREAD:-multi}
DISKS=() EXTRA=()
while [ "$#" -gt 0 ]; do
	case $1 in
	--kernel | --initrd | --mem | --smp | --timeout | --disk | --log | --append | --qemu-arg | --tcg-thread)
		[ "$#" -ge 2 ] || { vm_log "error: $1 needs an argument"; usage >&2; exit 2; }
		case $1 in
		--kernel) KERNEL=$2 ;;
		--initrd) INITRD=$2 ;;
		--mem) MEM=$2 ;;
		--smp) SMP=$2 ;;
		--timeout) TIMEOUT=$2 ;;
		--disk) DISKS+=("$2") ;;
		--log) LOG=$2 ;;
		--append) APPEND=$2 ;;
		--qemu-arg) EXTRA+=("$2") ;;
		--tcg-thread) TCG_THREAD=$2 ;;
		esac
		shift 2
		;;
	--icount) ICOUNT=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) vm_log "error: unknown argument: $1"; usage >&2; exit 2 ;;
	esac
done
if [ -z "$KERNEL" ] || [ -z "$INITRD" ]; then
	vm_log "error: --kernel and --initrd are required"
	usage >&2
	exit 2
fi
case $TCG_THREAD in
multi | single) ;;
*) vm_log "error: --tcg-thread must be multi or single"; exit 2 ;;
esac
for n in MEM SMP TIMEOUT; do
	case ${!n} in
	'' | *[!0-9]*) vm_log "error: --${n,,} must be a positive integer"; exit 2 ;;
	esac
	[ "${!n}" -gt 0 ] || { vm_log "error: --${n,,} must be > 0"; exit 2; }
done
[ -r "$KERNEL" ] || vm_die "kernel $KERNEL not readable"
[ -r "$INITRD" ] || vm_die "initrd $INITRD not readable"
for d in "${DISKS[@]}"; do
	[ -f "$d" ] || [ -b "$d" ] || vm_die "disk $d not found"
done

need_cmds qemu-system-x86_64:qemu-system-x86 timeout:coreutils

# QEMU -drive/-option values: a ',' in a file name must be doubled.
qesc() { printf '%s' "${1//,/,,}"; }

CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4 oops=panic panic_on_warn=0${APPEND:+ $APPEND}"
# shellcheck disable=SC2054 # commas are QEMU option syntax
if [ "$ICOUNT" = 1 ]; then
	SMP=1
	ACCEL=(-accel tcg,thread=single -icount shift=0)
elif [ "$SMP" -gt 1 ]; then
	ACCEL=(-accel "tcg,thread=$TCG_THREAD")
else
	ACCEL=(-accel tcg)
fi
# shellcheck disable=SC2054 # commas are QEMU option syntax
QEMU=(qemu-system-x86_64
	-machine q35 -cpu max "${ACCEL[@]}" -smp "$SMP" -m "$MEM"
	-nodefaults -no-user-config -display none -vga none -nic none
	-serial stdio -monitor none -no-reboot
	-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE")
for d in "${DISKS[@]}"; do
	QEMU+=(-drive "file=$(qesc "$d"),format=raw,if=virtio,cache=writeback,discard=unmap")
done
QEMU+=("${EXTRA[@]}")

TMP=$(mktemp -d)
QPID=''
# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	if [ -n "$QPID" ]; then kill -TERM "$QPID" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LOGFILE=${LOG:-/dev/null}
[ -z "$LOG" ] || : >"$LOG"
CONSOLE=$TMP/console.log
mkfifo "$TMP/fifo"
say() { printf '%s\n' "$*" | tee -a "$CONSOLE" "$LOGFILE"; }

START=$(date +%s)
START_NS=$(date +%s.%N)
attempt=1
while :; do
	left=$((TIMEOUT - ($(date +%s) - START)))
	[ "$left" -gt 0 ] || left=1
	: >"$CONSOLE"
	# timeout(1) puts qemu in its own process group; on timeout it sends
	# TERM, then KILL 10 s later.
	timeout -k 10 "$left" "${QEMU[@]}" </dev/null >"$TMP/fifo" 2>&1 &
	QPID=$!
	# Reader in the background too, so that a TERM/INT trap runs at once.
	sed -u 's/\r//g' <"$TMP/fifo" | tee -a "$CONSOLE" "$LOGFILE" &
	RPID=$!
	qrc=0
	wait "$QPID" || qrc=$?
	QPID=''
	wait "$RPID" || true
	ELAPSED=$(awk -v s="$START_NS" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		say "# VM timed out after $TIMEOUT s"
		exit 124
	fi
	line=$(grep -aoE 'IMGFMT-VM-EXIT [0-9]+[[:space:]]*$' "$CONSOLE" | tail -n 1 || true)
	[ -z "$line" ] || break
	# QEMU 7.2's multi-threaded TCG occasionally runs a stale translation of
	# kernel code the kernel is live-patching (static keys) on another vCPU:
	# an "int3" oops.  If that happened before /init started (no banner),
	# nothing of the test ran yet, so boot once more.
	if [ "$attempt" = 1 ] && ! grep -q '^# imgfmt-vm: ' "$CONSOLE" &&
		grep -qE 'int3: 0000 \[#' "$CONSOLE"; then
		say "# VM crashed during boot (int3 oops, known QEMU TCG flake); booting again"
		attempt=2
		continue
	fi
	say "# VM stopped without an IMGFMT-VM-EXIT line (kernel panic or init failure?); qemu exit code $qrc, ${ELAPSED}s"
	exit 125
done
rc=${line#IMGFMT-VM-EXIT }
rc=${rc%%[!0-9]*}
vm_log "guest exit code $rc after ${ELAPSED}s (qemu exit code $qrc)"
exit "$rc"
