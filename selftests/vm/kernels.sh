#!/bin/bash
# Ensure the Debian kernels used by the VM tests (and their headers) are
# installed, then print one line per kernel:
#   <version> <vmlinuz path> <modules dir> <headers build dir>
set -euo pipefail

PROG=kernels.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

usage() {
	cat <<USAGE
usage: $PROG [--print-only]

Installs (apt-get) the two kernels the dm-imgfmt VM tests run on:
  - Debian 12's default kernel: linux-image-amd64 + linux-headers-amd64 (6.1)
  - the newest linux-image-6.12.*+deb12-amd64 with its matching headers
and prints one line per kernel:
  <version> <vmlinuz path> <modules dir> <headers build dir>

  --print-only   do not install anything; print what is installed
                 (fails if a kernel is missing)
  -h, --help     this text
USAGE
}

PRINT_ONLY=0
while [ "$#" -gt 0 ]; do
	case $1 in
	--print-only) PRINT_ONLY=1 ;;
	-h | --help) usage; exit 0 ;;
	*) vm_log "error: unknown argument: $1"; usage >&2; exit 2 ;;
	esac
	shift
done

# Version of the 6.1 kernel the meta package linux-image-amd64 points at.
meta_version() {
	local deps
	if pkg_installed linux-image-amd64; then
		deps=$(dpkg-query -W -f='${Depends}' linux-image-amd64)
	else
		deps=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: //p')
	fi
	printf '%s\n' "$deps" | tr ',' '\n' |
		sed -n 's/^ *linux-image-\([^ ]*-amd64\).*/\1/p' | head -1
}

# Newest 6.12 version known to apt that has both image and headers packages.
newest_612_available() {
	local names
	names=$(apt-cache pkgnames 2>/dev/null |
		grep -E '^linux-(image|headers)-6\.12\.[0-9]+\+deb12-amd64$' || true)
	printf '%s\n' "$names" | sed -n 's/^linux-image-//p' | sort -u >"$TMP/img"
	printf '%s\n' "$names" | sed -n 's/^linux-headers-//p' | sort -u >"$TMP/hdr"
	comm -12 "$TMP/img" "$TMP/hdr" | sort -V | tail -1
}

# Newest installed 6.12 kernel (for --print-only).
newest_612_installed() {
	dpkg-query -W -f='${db:Status-Status} ${Package}\n' 'linux-image-6.12.*+deb12-amd64' 2>/dev/null |
		sed -n 's/^installed linux-image-//p' | sort -V | tail -1
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ "$PRINT_ONLY" = 1 ]; then
	v61=$(meta_version)
	v612=$(newest_612_installed)
else
	[ "$(id -u)" = 0 ] || vm_die "must run as root to install kernels (or use --print-only)"
	# 6.1 via the meta packages.
	want=()
	pkg_installed linux-image-amd64 || want+=(linux-image-amd64)
	pkg_installed linux-headers-amd64 || want+=(linux-headers-amd64)
	if [ "${#want[@]}" -gt 0 ]; then
		apt_install "${want[@]}"
	fi
	v61=$(meta_version)
	[ -n "$v61" ] || vm_die "cannot tell which kernel linux-image-amd64 depends on"
	# The meta packages may have been installed while its target's headers
	# were removed by hand: make sure the versioned ones are there too.
	want=()
	pkg_installed "linux-image-$v61" || want+=("linux-image-$v61")
	pkg_installed "linux-headers-$v61" || want+=("linux-headers-$v61")
	if [ "${#want[@]}" -gt 0 ]; then
		apt_install "${want[@]}"
	fi

	# 6.12: newest available.
	v612=$(newest_612_available)
	if [ -z "$v612" ]; then
		apt_update_once
		v612=$(newest_612_available)
	fi
	[ -n "$v612" ] || vm_die "apt knows no linux-image-6.12.*+deb12-amd64 package"
	want=()
	pkg_installed "linux-image-$v612" || want+=("linux-image-$v612")
	pkg_installed "linux-headers-$v612" || want+=("linux-headers-$v612")
	if [ "${#want[@]}" -gt 0 ]; then
		apt_install "${want[@]}"
	fi
fi

[ -n "${v61:-}" ] || vm_die "6.1 kernel (linux-image-amd64) not installed"
[ -n "${v612:-}" ] || vm_die "no linux-image-6.12.*+deb12-amd64 installed"

rc=0
for v in "$v61" "$v612"; do
	vmlinuz=/boot/vmlinuz-$v
	mods=/lib/modules/$v
	build=$mods/build
	for f in "$vmlinuz" "$mods/modules.dep" "$build/Makefile"; do
		if [ ! -e "$f" ]; then
			vm_log "warning: $f is missing"
			rc=1
		fi
	done
	# Debian installs /boot/vmlinuz-* mode 0600; make it readable so the
	# VM can be started by a non-root user too.
	if [ "$PRINT_ONLY" = 0 ] && [ -e "$vmlinuz" ]; then
		chmod a+r "$vmlinuz" 2>/dev/null || true
	fi
	printf '%s %s %s %s\n' "$v" "$vmlinuz" "$mods" "$build"
done
exit "$rc"
