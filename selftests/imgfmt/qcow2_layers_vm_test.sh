#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# In-VM tests of QCOW2 internal snapshots (snapshot=) and external data
# files (data_dev=) in the kernel target, tables written by hand: every
# file on a read-only loop device, the device's md5 against QEMU's.
#
#   qcow2_layers_vm_test.sh [IMAGEDIR]
#
# IMAGEDIR (default $IMGFMT_IMAGES/layers) is what mkimages-layers.sh made
# (layers.list: name size md5 image snapshot data_file lower:fmt...).
# Prints TAP lines ("ok N layers: ...") without a plan; exits non-zero when
# anything failed.  Plain POSIX sh (busybox).

DIR=${1:-${IMGFMT_IMAGES:-/payload/images}/layers}
export DM_DISABLE_UDEV=1
SUITE=layers
. "$(dirname "$0")/vmlib.sh"

cd "$DIR" 2>/dev/null || { not_ok "no image directory $DIR"; exit 1; }
[ -s layers.list ] || { not_ok "layers.list missing"; exit 1; }

# TABLE: the arguments after "imgfmt" for IMAGE SNAPSHOT DATA LOWER...;
# a snapshot name's blanks (%20 in the manifest) as the target's \x20
# (libdevmapper doubles backslashes: "\ " would reach it as two words).
layers_table()
{
	_img=$1 _sn=$2 _data=$3
	shift 3
	_d=$(loop_ro "$_img") || { why="losetup $_img failed"; return 1; }
	LOOPS="$_d"
	_nopt=0 _opts=
	if [ "$_sn" != - ]; then
		_nopt=1
		_opts=" snapshot=$(printf '%s' "$_sn" | sed 's/%20/\\x20/g')"
	fi
	if [ "$_data" != - ]; then
		_dd=$(loop_ro "$_data") || { why="losetup $_data failed"; return 1; }
		LOOPS="$LOOPS $_dd"
		_nopt=$((_nopt + 1))
		_opts="$_opts data_dev=$_dd"
	fi
	TABLE="$_d $_nopt$_opts"
	[ $# -gt 0 ] && TABLE="$TABLE $#"
	for _l in "$@"; do
		_ld=$(loop_ro "${_l%:*}") || { why="losetup ${_l%:*} failed"; return 1; }
		LOOPS="$LOOPS $_ld"
		TABLE="$TABLE $_ld 1 format=${_l##*:}"
	done
}

# The whole disk, then again in 4 KiB direct reads, against QEMU's md5;
# the virtual size in status (field 2), no io errors.
layer_reads()		# NAME SIZE MD5 IMAGE SNAPSHOT DATA LOWER...
{
	name=$1 size=$2 md5=$3
	shift 3
	layers_table "$@" || { free_loops; return 1; }
	table_reads "l_$name" "$size" "$md5" 2 "$size"
}

while read -r name size md5 img sn data lower; do
	# shellcheck disable=SC2086
	check "$name reads as QEMU's" layer_reads "$name" "$size" "$md5" \
		"$img" "$sn" "$data" $lower
done <layers.list

# The table prints back as loaded, the encoded blank included.
table_echo()
{
	layers_table v3.qcow2 two%20words - || { free_loops; return 1; }
	dmsetup create --readonly l_echo --table "0 8192 imgfmt $TABLE" ||
		{ why="create failed: $(dmesg | tail -2)"; free_loops; return 1; }
	got=$(dmsetup table l_echo | cut -d' ' -f4-)
	exp=$(echo "$TABLE" | sed 's|/dev/loop\([0-9]*\)|7:\1|g')
	rc=0
	[ "$got" = "$exp" ] || { why="table '$got', loaded '$exp'"; rc=1; }
	dmsetup remove l_echo
	free_loops
	return $rc
}
check "dmsetup table prints snapshot= back" table_echo

# A table the target must refuse, with MESSAGE in the kernel log.
refused()		# MESSAGE SECTORS IMAGE SNAPSHOT DATA
{
	msg=$1 sectors=$2
	shift 2
	layers_table "$@" || { free_loops; return 1; }
	table_refused "$sectors" "$TABLE" "$msg"
}
check "missing snapshot refused" refused "QCOW2 snapshot not found" \
	8192 v3.qcow2 nosuch -
check "a table longer than the snapshot refused" refused \
	"table length exceeds the image's virtual size" \
	8192 grown.qcow2 small -
check "data file image without data_dev refused" refused \
	"QCOW2 external data file not given" 8192 ext.qcow2 - -
check "data_dev for an image without a data file refused" refused \
	"QCOW2 data file given for an image without an external data file" \
	8192 v3.qcow2 - ext.data

# A data file shorter than its clusters: reads of the missing clusters
# fail with EIO and are counted, the rest of the disk reads, no oops.
short_data()
{
	head -c $((3 << 20)) ext.data >/tmp/short.data
	layers_table ext.qcow2 - /tmp/short.data || { free_loops; return 1; }
	dmsetup create --readonly l_short --table "0 8192 imgfmt $TABLE" ||
		{ why="create failed: $(dmesg | tail -2)"; free_loops; return 1; }
	rc=0
	if dd if=/dev/mapper/l_short of=/dev/null bs=64k skip=49 count=1 \
		iflag=direct 2>/dev/null; then
		why="read past the data file's end succeeded"
		rc=1
	fi
	dd if=/dev/mapper/l_short of=/dev/null bs=64k count=1 iflag=direct \
		2>/dev/null || { why="$why; read of cluster 0 failed"; rc=1; }
	errs=$(status_field l_short 7)
	[ "$errs" -gt 0 ] 2>/dev/null || { why="$why; io_errors $errs"; rc=1; }
	dmesg | tail -20 | grep -q "beyond end of the external data file" ||
		{ why="$why; dmesg lacks the corruption report"; rc=1; }
	dmsetup remove l_short || { why="$why; remove failed"; rc=1; }
	free_loops
	rm -f /tmp/short.data
	return $rc
}
check "short data file fails only its clusters" short_data

# imgfmt attach finds the data file and the backing file itself, and
# maps a snapshot named with a blank.
attach_reads()		# NAME SIZE MD5 IMAGE SNAPSHOT
{
	name=$1 size=$2 md5=$3 img=$4 sn=$5
	if [ "$sn" = - ]; then
		dev=$(imgfmt attach --name "a_$name" "$img" 2>/tmp/attach.err)
	else
		dev=$(imgfmt attach --name "a_$name" \
			--snapshot "$(printf '%s' "$sn" | sed 's/%20/ /g')" \
			"$img" 2>/tmp/attach.err)
	fi || { why="attach failed: $(cat /tmp/attach.err)"; return 1; }
	rc=0
	got=$(md5_of <"$dev")
	[ "$got" = "$md5" ] || { why="md5 $got, QEMU $md5"; rc=1; }
	imgfmt detach "a_$name" 2>/tmp/attach.err ||
		{ why="$why; detach failed: $(cat /tmp/attach.err)"; rc=1; }
	_w=$why
	nothing_left || { why="$_w; $why"; rc=1; }
	return $rc
}
while read -r name size md5 img sn _rest; do
	case $name in v3_two_words | ext_data | ext_data_backing | v2_old) ;;
	*) continue ;;
	esac
	check "attach $name reads as QEMU's" attach_reads "$name" "$size" \
		"$md5" "$img" "$sn"
done <layers.list

echo "# qcow2_layers_vm_test.sh: $n tests, $failed failed"
[ $failed -eq 0 ]
