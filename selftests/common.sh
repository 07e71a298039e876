# SPDX-License-Identifier: GPL-2.0-only
# Shared by the test scripts: packages, paths, the kernel source files the
# tests borrow (kselftest harness, checkpatch), and TAP bookkeeping.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${IMGFMT_BUILD:-$TOP/build}
export DEBIAN_FRONTEND=noninteractive

# The packages make check needs besides the kernels (selftests/vm/kernels.sh).
CHECK_PACKAGES="gcc make perl pkg-config cpio xz-utils kmod busybox-static
dmsetup libdevmapper-dev zlib1g-dev libzstd-dev qemu-system-x86 qemu-utils sparse clang
libclang-rt-14-dev linux-source-6.12 e2fsprogs python3 libblkid-dev fdisk fio"
# Wanted, not needed: a test skips without it (uml_mkcow writes UML COW v3;
# its package also brings a network switch service some machines start).
OPTIONAL_PACKAGES="uml-utilities"

apt_updated=0
need_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "# installing: ${missing[*]}"
	if [ $apt_updated -eq 0 ]; then
		apt-get update -qq >/dev/null
		apt_updated=1
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The few files the tests take from Debian's linux-source package: the
# kselftest harness, checkpatch, and dm-dust (which Debian's kernels do
# not build; dust_module below).  Prints the extracted tree's path.
linux_src_dir() {
	local dir=$BUILD/linux-src tarball
	tarball=$(ls /usr/src/linux-source-6.12.tar.xz 2>/dev/null | head -1)
	if [ ! -f "$dir/.done" ] || [ ! -f "$dir/drivers/md/dm-dust.c" ]; then
		[ -n "$tarball" ] || { echo "linux-source-6.12 is not installed" >&2; return 1; }
		rm -rf "$dir"
		mkdir -p "$dir"
		tar -xJf "$tarball" -C "$dir" --strip-components=1 --wildcards \
			'*/tools/testing/selftests/kselftest_harness.h' \
			'*/tools/testing/selftests/kselftest.h' \
			'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
			'*/scripts/const_structs.checkpatch' \
			'*/drivers/md/dm-dust.c'
		touch "$dir/.done"
	fi
	echo "$dir"
}

# Copy the module sources to a build directory of their own per kernel, so
# that builds for two kernels never share objects.
module_tree() {
	local kver=$1 dir=$BUILD/kmod-$1
	mkdir -p "$dir"
	cp "$TOP/Kbuild" "$dir/"
	rm -rf "$dir/dm-imgfmt" "$dir/scripts"
	cp -r "$TOP/dm-imgfmt" "$TOP/scripts" "$dir/"
	rm -f "$dir/dm-imgfmt/compat-probed.h"
	echo "$dir"
}

# TAP bookkeeping: results from every suite are renumbered into one stream.
TAP_N=0
TAP_PASS=0
TAP_FAIL=0
TAP_SKIP=0
tap_result() {		# tap_result ok|fail|skip DESCRIPTION [SKIP-REASON]
	TAP_N=$((TAP_N + 1))
	case $1 in
	ok) TAP_PASS=$((TAP_PASS + 1)); echo "ok $TAP_N $2" ;;
	skip) TAP_SKIP=$((TAP_SKIP + 1)); echo "ok $TAP_N $2 # SKIP${3:+ $3}" ;;
	*) TAP_FAIL=$((TAP_FAIL + 1)); echo "not ok $TAP_N $2" ;;
	esac
}

# A failed result with diagnostic lines under it, each cut to 2000 bytes.
tap_fail() {		# tap_fail DESCRIPTION [DIAGNOSTIC...]
	local line
	tap_result fail "$1"
	shift
	for line in "$@"; do
		printf '%s\n' "$line" | head -c 2000 | sed 's/^/# /'
	done
}

# Run a condition: ok, or a failure with the diagnostic the condition left
# in $why (reset before each run).
tap_check() {		# tap_check NAME CONDITION-COMMAND...
	local name=$1

	shift
	why=
	if "$@"; then
		tap_result ok "$name"
	else
		tap_fail "$name" "$why"
	fi
}

# Stop a suite that cannot run: TAP's bail-out line, exit status 1.
tap_bail() {		# tap_bail REASON
	echo "Bail out! $*"
	exit 1
}

# Fold a sub-suite's TAP (kselftest output) into ours, prefixing names.
tap_import() {		# tap_import PREFIX FILE
	local prefix=$1 file=$2 line desc
	while IFS= read -r line; do
		case $line in
		"not ok "*)
			desc=$(echo "$line" | sed -E 's/^not ok [0-9]+ ?-? ?//')
			tap_result fail "$prefix: $desc" ;;
		"ok "*)
			desc=$(echo "$line" | sed -E 's/^ok [0-9]+ ?-? ?//')
			case $desc in
			*"# SKIP"*) tap_result skip "$prefix: ${desc%%# SKIP*}" ;;
			*) tap_result ok "$prefix: $desc" ;;
			esac ;;
		esac
	done < <(tr -d '\r' <"$file")
}

tap_summary() {
	echo "1..$TAP_N"
	if [ "$TAP_SKIP" -gt 0 ]; then
		echo "$TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
	else
		echo "$TAP_PASS passed, $TAP_FAIL failed"
	fi
}
