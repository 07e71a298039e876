#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The quality bar, as TAP: for each test kernel the module builds with no
# warning at W=1 and is sparse clean with endian checks (C=2); the kernel
# and shared sources are checkpatch --strict clean.
# With --tap-only the summary line is left to the caller (make check).
set -euo pipefail
. "$(dirname "$0")/common.sh"

summary=1
[ "${1:-}" = "--tap-only" ] && summary=0

need_packages sparse perl linux-source-6.12
src=$(linux_src_dir)
mkdir -p "$BUILD"

while read -r kver _vmlinuz _moddir kdir; do
	tree=$(module_tree "lint-$kver")
	log=$BUILD/lint-$kver.log
	if "$tree/scripts/compat-probe.sh" "$kdir" "$tree/dm-imgfmt/compat-probes" \
		"$tree/dm-imgfmt/compat-probed.h" &&
	   make -j"$(nproc)" -C "$kdir" M="$tree" W=1 C=2 CF=-D__CHECK_ENDIAN__ modules >"$log" 2>&1 &&
	   ! grep -E "warning:|error:" "$log" | grep -v "Skipping BTF"; then
		tap_result ok "lint: W=1 and sparse clean on $kver"
	else
		sed 's/^/# /' "$log" | grep -E "warning|error" | head -40 || true
		tap_result fail "lint: W=1 and sparse clean on $kver"
	fi
done < <("$TOP/selftests/vm/kernels.sh" --print-only)

mapfile -t files < <(cd "$TOP" && git ls-files 'dm-imgfmt/*.c' 'dm-imgfmt/*.h' 2>/dev/null ||
	find dm-imgfmt -name '*.[ch]')
log=$BUILD/checkpatch.log
# CAMELCASE is ignored: the kernel's own zlib API is CamelCase
# (zlib_inflateInit2) and checkpatch cannot know that without a kernel tree.
if (cd "$TOP" && perl "$src/scripts/checkpatch.pl" --strict --no-tree --terse \
	--show-types --ignore CAMELCASE -f "${files[@]}") >"$log" 2>&1 &&
   ! grep -qE "(WARNING|ERROR|CHECK):" "$log"; then
	tap_result ok "lint: checkpatch --strict clean (${#files[@]} files)"
else
	sed 's/^/# /' "$log" | grep -E "WARNING|ERROR|CHECK" | head -40 || true
	tap_result fail "lint: checkpatch --strict clean"
fi

[ $summary -eq 1 ] && tap_summary
[ "$TAP_FAIL" -eq 0 ]
