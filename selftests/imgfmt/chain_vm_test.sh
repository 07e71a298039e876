#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of backing chains in the kernel target, tables written by
# hand (no helper): every layer on a read-only loop device, one imgfmt
# target naming them all, the device's md5 against QEMU's.
#
#   chain_vm_test.sh [IMAGEDIR]
#
# IMAGEDIR (default $IMGFMT_IMAGES/chain) is what mkimages-chain.sh made.
# Prints TAP lines ("ok N chain: ...") without a plan; exits non-zero when
# anything failed.  Plain POSIX sh (busybox).

DIR=${1:-${IMGFMT_IMAGES:-/payload/images}/chain}
export DM_DISABLE_UDEV=1
SUITE=chain
. "$(dirname "$0")/vmlib.sh"

cd "$DIR" 2>/dev/null || { not_ok "no image directory $DIR"; exit 1; }
[ -s chains.list ] || { not_ok "chains.list missing"; exit 1; }

# Whole-disk md5, again in 4 KiB direct reads (caches and owner sets
# warm), the layer count in status (field 13) and io errors 0.
chain_reads()		# NAME SIZE MD5 LAYERS...
{
	name=$1 size=$2 md5=$3
	shift 3
	make_table "$@" || return 1
	table_reads "c_$name" "$size" "$md5" 13 "$#"
}

by_hand()		# by_hand NAME LAYERS...: tables written by hand
{
	case $1 in deep1000 | odd_*) return 1 ;; esac
}

while read -r name size md5 layers; do
	by_hand "$name" || continue
	# shellcheck disable=SC2086
	check "$name reads as QEMU's" chain_reads "$name" "$size" "$md5" $layers
done <chains.list

# imgfmt attach of the top finds the whole chain by itself.
attach_reads()		# NAME SIZE MD5 TOP
{
	name=$1 size=$2 md5=$3 top=$4
	t0=$(cut -d' ' -f1 /proc/uptime)
	dev=$(imgfmt attach --name "a_$name" "$top" 2>/tmp/attach.err) ||
		{ why="attach failed: $(cat /tmp/attach.err)"; return 1; }
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "# attach of $name took $(echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }') s"
	rc=0
	got=$(md5sum <"$dev" | cut -d' ' -f1)
	[ "$got" = "$md5" ] || { why="md5 $got, QEMU $md5"; rc=1; }
	imgfmt detach "a_$name" 2>/tmp/attach.err ||
		{ why="$why; detach failed: $(cat /tmp/attach.err)"; rc=1; }
	_w=$why
	nothing_left || { why="$_w; $why"; rc=1; }
	return $rc
}

if command -v imgfmt >/dev/null 2>&1; then
	while read -r name size md5 top rest; do
		check "attach $name reads as QEMU's" attach_reads "$name" \
			"$size" "$md5" "${top%:*}"
	done <chains.list
else
	not_ok "imgfmt helper not found"
fi

# The table prints back as loaded, and a reload of what it prints works.
table_echo()
{
	make_table q2raw.qcow2:auto base.raw:raw || return 1
	want="$TABLE"
	dmsetup create --readonly c_echo --table "0 16384 imgfmt $TABLE" ||
		{ why="create failed"; free_loops; return 1; }
	got=$(dmsetup table c_echo | cut -d' ' -f4-)
	rc=0
	# dmsetup shows major:minor where the table had paths.
	exp=$(echo "$want" | sed 's|/dev/loop\([0-9]*\)|7:\1|g')
	[ "$got" = "$exp" ] || { why="table '$got', loaded '$exp'"; rc=1; }
	dmsetup remove c_echo
	free_loops
	return $rc
}
check "dmsetup table prints the chain back" table_echo

# An overlay without its backing layer is refused by name.
refused()		# MESSAGE TABLE-ARGS-AFTER-LOOP FILE...
{
	msg=$1 rest=$2
	shift 2
	make_table "$@:auto" || return 1
	set -- $TABLE
	table_refused 16384 "$1 $rest" "$msg"
}
check "overlay without its backing refused" refused \
	"QCOW2 backing file not given as a lower layer" "" q2raw.qcow2
check "lower layer option cache_size refused" refused \
	"unknown option for a lower layer" "0 1 /dev/null 1 cache_size=65536" q2raw.qcow2
# A hostile lower layer fails the load with its own error, and the log
# names the layer.
bad_lower()
{
	make_table top512.qcow2:auto bad_l1.qcow2:auto base.raw:raw || return 1
	table_refused 16384 "$TABLE" "QCOW2 L1 table offset beyond end of device" ||
		return 1
	dmesg | tail -n 5 | grep -q "layer 1 of 3" ||
		{ why="dmesg does not name layer 1 of 3"; return 1; }
}
check "a hostile lower layer refused by name and layer" bad_lower
check "missing lower layers refused" refused \
	"invalid number of arguments" "0 2 /dev/null 0" q2raw.qcow2

echo "# chain_vm_test.sh: $n tests, $failed failed"
[ $failed -eq 0 ]
