#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# imgfmt check against qemu-img check (QEMU 7.2), without a VM:
#
#   check.sh [IMGFMT]
#
# Images made by qemu-img and qemu-io in every layout the check must know
# (compressed and zero clusters, snapshots, extended L2, refcount widths,
# cluster sizes, backing and data files, v2, LUKS, bitmaps) must be clean
# for both.  Then each is damaged with qcow2poke.py (leaks, refcounts too
# low, shared clusters, reserved bits, tables past the end of the file,
# COPIED flags wrong, stale bitmaps): our exit status must be qemu-img's,
# which must be the one the damage calls for (so a poke that missed
# fails), and the JSON fields (check-errors, corruptions, leaks, the
# cluster counts, image-end-offset) and the text summary the same.
# Prints TAP.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
IMGFMT=${1:-${IMGFMT:-$TOP/userspace/imgfmt}}
POKE=$TOP/selftests/unit/qcow2poke.py

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v qemu-img >/dev/null || tap_bail "qemu-img not installed (qemu-utils)"
command -v python3 >/dev/null || tap_bail "python3 not installed"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# QEMU finds relative backing and data file names from here too.
cd "$TMP" || tap_bail "cannot enter $TMP"

echo "TAP version 13"

FIELDS=(check-errors corruptions leaks image-end-offset total-clusters
	allocated-clusters fragmented-clusters compressed-clusters)

# The fields of a check's JSON object as "key=value" words, 0 when absent.
fields() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s=%s" % (k, d.get(k, 0)) for k in sys.argv[2:]))
' "$1" "${FIELDS[@]}"
}

# compare NAME WANT IMAGE [QEMU-IMG ARGS...]: both checks of IMAGE exit
# with status WANT and agree on every field and on the text summary.
# qemu-img is given $QIMG instead of IMAGE when it is set.
compare() {
	local name=$1 want=$2 img=$3 qrc orc
	shift 3

	qemu-img check "$@" --output=json "${QIMG:-$img}" >"$TMP/q.json" 2>"$TMP/q.err"
	qrc=$?
	"$IMGFMT" check --output=json "$img" >"$TMP/o.json" 2>"$TMP/o.err"
	orc=$?
	qemu-img check "$@" "${QIMG:-$img}" >"$TMP/q.txt" 2>/dev/null
	"$IMGFMT" check "$img" >"$TMP/o.txt" 2>/dev/null
	if [ "$qrc" != "$want" ]; then
		tap_fail "$name" "qemu-img check exits $qrc, not $want: the test image is not what it should be" \
			"$(head -c 600 "$TMP/q.err")"
	elif [ "$orc" != "$qrc" ]; then
		tap_fail "$name" "imgfmt check exits $orc, qemu-img check $qrc" \
			"ours: $(head -c 600 "$TMP/o.err")" "qemu: $(head -c 600 "$TMP/q.err")"
	elif [ "$(fields "$TMP/o.json")" != "$(fields "$TMP/q.json")" ]; then
		tap_fail "$name" "ours: $(fields "$TMP/o.json")" \
			"qemu: $(fields "$TMP/q.json")" \
			"ours: $(head -c 600 "$TMP/o.err")" "qemu: $(head -c 600 "$TMP/q.err")"
	elif ! cmp -s "$TMP/o.txt" "$TMP/q.txt"; then
		tap_fail "$name" "the text summaries differ" \
			"$(diff "$TMP/q.txt" "$TMP/o.txt" | head -20)"
	else
		tap_result ok "$name"
	fi
}

mk() {			# mk NAME SIZE [OPTIONS]
	qemu-img create -q -f qcow2 ${3:+-o "$3"} "$1.qcow2" "$2"
}

io() {			# io IMAGE COMMAND...
	local img=$1 args=()
	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	qemu-io -f qcow2 "${args[@]}" "$img" >/dev/null
}

# Clean images: status 0 from both.
mk plain 1G
io plain.qcow2 "write -P 1 0 1M" "write -P 2 5M 192k" "write -P 3 600M 4k"
compare "clean: plain" 0 plain.qcow2

mk comp 64M
io comp.qcow2 "write -c -P 4 0 64k" "write -c -P 5 128k 128k" "write -P 6 1M 64k"
compare "clean: compressed clusters" 0 comp.qcow2

mk zstd 16M compression_type=zstd
io zstd.qcow2 "write -c -P 7 0 192k"
compare "clean: zstd compressed clusters" 0 zstd.qcow2

mk zero 16M
io zero.qcow2 "write -P 8 0 256k" "write -z 64k 64k" "write -z 1M 128k"
compare "clean: zero clusters, plain and preallocated" 0 zero.qcow2

mk snap 16M
io snap.qcow2 "write -P 9 0 256k"
qemu-img snapshot -c s1 snap.qcow2
io snap.qcow2 "write -P 10 64k 64k" "write -c -P 11 2M 64k"
qemu-img snapshot -c s2 snap.qcow2
io snap.qcow2 "write -P 12 0 64k"
compare "clean: internal snapshots" 0 snap.qcow2

mk ext 16M extended_l2=on,cluster_size=64k
io ext.qcow2 "write -P 13 0 4k" "write -P 14 66k 2k" "write -z 8k 4k" "write -c -P 15 1M 64k"
compare "clean: extended L2 with subclusters" 0 ext.qcow2

mk rc1 16M refcount_bits=1
io rc1.qcow2 "write -P 16 0 512k"
compare "clean: refcount_bits=1" 0 rc1.qcow2

mk rc64 16M refcount_bits=64
io rc64.qcow2 "write -P 17 0 512k"
qemu-img snapshot -c s rc64.qcow2
compare "clean: refcount_bits=64 with a snapshot" 0 rc64.qcow2

mk c512 4M cluster_size=512
io c512.qcow2 "write -P 18 0 300k" "write -c -P 19 1M 4k"
compare "clean: 512-byte clusters" 0 c512.qcow2

mk c2m 64M cluster_size=2M
io c2m.qcow2 "write -P 20 0 3M" "write -c -P 21 10M 2M"
compare "clean: 2 MiB clusters" 0 c2m.qcow2

mk v2 16M compat=0.10
io v2.qcow2 "write -P 22 0 256k"
qemu-img snapshot -c s v2.qcow2
compare "clean: version 2" 0 v2.qcow2

mk base 16M
io base.qcow2 "write -P 23 0 1M"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
io top.qcow2 "write -P 24 64k 64k"
compare "clean: backing file" 0 top.qcow2

mk data 16M data_file=data.raw
io data.qcow2 "write -P 25 0 256k" "write -P 26 3M 64k"
compare "clean: external data file (its clusters not counted)" 0 data.qcow2

# shellcheck disable=SC2054 # one option's value, commas and all
SECRET=(--object secret,id=s0,data=imgfmt-check)
if qemu-img create -q -f qcow2 "${SECRET[@]}" -o encrypt.format=luks,encrypt.key-secret=s0 \
	luks.qcow2 16M 2>"$TMP/err"; then
	qemu-io "${SECRET[@]}" --image-opts -c "write -P 27 0 128k" \
		driver=qcow2,file.filename=luks.qcow2,encrypt.key-secret=s0 >/dev/null
	QIMG=driver=qcow2,file.filename=luks.qcow2,encrypt.key-secret=s0 \
		compare "clean: LUKS encrypted (its header counted)" 0 luks.qcow2 \
		"${SECRET[@]}" --image-opts
else
	tap_result skip "clean: LUKS encrypted" \
		"qemu-img cannot create LUKS images: $(head -c 200 "$TMP/err" | tr '\n' ' ')"
fi

mk bitmaps 16M
if qemu-img bitmap --add bitmaps.qcow2 b0 2>/dev/null &&
   qemu-img bitmap --add -g 128k bitmaps.qcow2 b1; then
	io bitmaps.qcow2 "write -P 28 0 1M"
	compare "clean: persistent bitmaps" 0 bitmaps.qcow2
else
	tap_result skip "clean: persistent bitmaps" "qemu-img bitmap failed"
fi

# damaged NAME WANT SOURCE EDIT...: a copy of SOURCE, each EDIT (the
# arguments of one qcow2poke.py call, as one word) applied, compared.
damaged() {
	local name=$1 want=$2 src=$3 img=$TMP/damaged.qcow2 edit
	shift 3
	cp "$src" "$img"
	for edit in "$@"; do
		# shellcheck disable=SC2086
		if ! python3 "$POKE" "$img" $edit; then
			tap_fail "$name" "qcow2poke.py $edit failed"
			return
		fi
	done
	compare "$name" "$want" "$img"
}

get() { python3 "$POKE" "$@"; }
COPIED=$((1 << 63))
read -r CS SIZE < <(get plain.qcow2 info)
L2E0=$(get plain.qcow2 get l2 0)
L2E1=$(get plain.qcow2 get l2 1)
DATA0=$(((L2E0 & ~COPIED) / CS))
L1E0=$(get plain.qcow2 get l1 0)
L2T0=$(((L1E0 & ~COPIED) / CS))

# Leaks only: status 3.
damaged "leak: header refcount 2" 3 plain.qcow2 "set refcount 0 2"
cp plain.qcow2 grown.qcow2
truncate -s $(((SIZE / CS + 2) * CS)) grown.qcow2
damaged "leak: an unused cluster with refcount 1" 3 grown.qcow2 \
	"set refcount $((SIZE / CS)) 1"
damaged "leak: refcount table entry with a reserved bit" 2 plain.qcow2 \
	"set reftable 0 $(($(get plain.qcow2 get reftable 0) | 1))"

# Corruption: status 2.
damaged "corrupt: refcount 0 for a used data cluster" 2 plain.qcow2 \
	"set refcount $DATA0 0"
damaged "corrupt: data cluster refcount 2 (COPIED set)" 2 plain.qcow2 \
	"set refcount $DATA0 2"
damaged "corrupt: two L2 entries at one cluster" 2 plain.qcow2 \
	"set l2 1 $L2E0"
damaged "corrupt: L2 entry reserved bit" 2 plain.qcow2 \
	"set l2 0 $((L2E0 | 2))"
damaged "corrupt: L1 entry reserved bit" 2 plain.qcow2 \
	"set l1 0 $((L1E0 | 2))"
damaged "corrupt: data cluster not aligned" 2 plain.qcow2 \
	"set l2 0 $((L2E0 + 512))"
damaged "corrupt: data cluster past the end of the file" 2 plain.qcow2 \
	"set l2 1 $((COPIED | (SIZE / CS + 100) * CS))"
damaged "corrupt: L2 table past the end of the file" 2 plain.qcow2 \
	"set l1 1 $((COPIED | (SIZE / CS + 100) * CS))"
damaged "corrupt: L2 table not aligned" 2 plain.qcow2 \
	"set l1 0 $((L1E0 + 512))"
damaged "corrupt: COPIED clear on a data cluster with refcount 1" 2 plain.qcow2 \
	"set l2 0 $((L2E0 & ~COPIED))"
damaged "corrupt: COPIED clear on an L2 table with refcount 1" 2 plain.qcow2 \
	"set l1 0 $((L1E0 & ~COPIED))"
damaged "corrupt: L2 table refcount 2 (COPIED set)" 2 plain.qcow2 \
	"set refcount $L2T0 2"
damaged "corrupt: COPIED set on a compressed cluster" 2 comp.qcow2 \
	"set l2 0 $(($(get comp.qcow2 get l2 0) | COPIED))"
damaged "corrupt: compressed cluster's refcount 0" 2 comp.qcow2 \
	"set refcount $((($(get comp.qcow2 get l2 0) & ((1 << 54) - 1)) / CS)) 0"
damaged "corrupt: two entries at one cluster, refcount_bits=1 (overflow)" 2 \
	rc1.qcow2 "set l2 1 $(get rc1.qcow2 get l2 0)"
damaged "corrupt: leak and error together" 2 plain.qcow2 \
	"set refcount 0 2" "set refcount $DATA0 0"
L2E_SNAP=$(get snap.qcow2 get l2 2)
damaged "corrupt: shared snapshot cluster's refcount 1" 2 snap.qcow2 \
	"set refcount $(((L2E_SNAP & ~COPIED) / CS)) 1"
if [ -s bitmaps.qcow2 ]; then
	damaged "leak: stale bitmaps (autoclear bit clear) are not counted" 3 \
		bitmaps.qcow2 "set autoclear 0"
fi
[ "$L2E1" != 0 ] || tap_fail "test images" "plain.qcow2 has no second L2 entry"

# refused RC QRC PATTERN: our status 1 with PATTERN in the message, and
# qemu-img's 1 too unless QRC is "-".
refused() {
	why="imgfmt exits $1, qemu-img $2: $(head -c 300 "$TMP/err")"
	[ "$1" = 1 ] && { [ "$2" = - ] || [ "$2" = 1 ]; } &&
		grep -q "$3" "$TMP/err"
}

# Not a check at all: status 1 with a message.
qemu-img create -q -f raw raw.img 1M
"$IMGFMT" check raw.img >/dev/null 2>"$TMP/err"
rc=$?
qemu-img check raw.img >/dev/null 2>&1
qrc=$?
tap_check "raw image: exit 1, check only for qcow2" \
	refused "$rc" - "check is available only for qcow2 images"
"$IMGFMT" check "$TMP/missing.qcow2" >/dev/null 2>"$TMP/err"
rc=$?
qemu-img check "$TMP/missing.qcow2" >/dev/null 2>&1
tap_check "missing image: exit 1 like qemu-img" refused "$rc" $? "cannot open"
cp plain.qcow2 far.qcow2
python3 - far.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(48)
    f.write(struct.pack('>Q', 1 << 62))  # the refcount table far away
PY
compare "corrupt: refcount table past the end of the file" 2 far.qcow2
python3 - far.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(48)
    f.write(struct.pack('>Q', 0x30200))  # not cluster aligned
PY
"$IMGFMT" check far.qcow2 >/dev/null 2>"$TMP/err"
rc=$?
qemu-img check far.qcow2 >/dev/null 2>&1
qrc=$?
tap_check "refcount table offset not aligned: exit 1 like qemu-img" \
	refused "$rc" "$qrc" "refcount table invalid"
truncate -s $(((1 << 28) * 512 + 512)) "$TMP/big.qcow2"
dd if=c512.qcow2 of=big.qcow2 conv=notrunc status=none bs=64k count=1
"$IMGFMT" check big.qcow2 >/dev/null 2>"$TMP/err"
tap_check "more than 2^28 clusters: refused with a message" \
	refused $? - "too many clusters"

tap_summary
[ "$TAP_FAIL" -eq 0 ]
