# SPDX-License-Identifier: GPL-2.0-only
#
# Shared by the in-VM suites that put a faulty device under a read-write
# table (fault_vm_test.sh: dm-flakey; dust_vm_test.sh: dm-dust), sourced
# after vmlib.sh.  suite_begin makes W, a work directory; the caller sets
# DEV (the imgfmt table's name) and, for judge, the image.  The helpers
# keep a shadow file that takes every write the device acknowledged
# ($W/shadow) and a copy of it as the last acknowledged flush left it
# ($W/flushed), and set $err or $why when something fails.
BAD='BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|kernel BUG|Call Trace|hung_task|blocked for more than'
# The suites bound removals with it.
TO=
# shellcheck disable=SC2034
command -v timeout >/dev/null 2>&1 && TO="timeout 60"

# suite_begin TARGET MODULE: skip the suite (one ok line) without qemu-io
# and qemu-img, or without the dm target TARGET once MODULE is loaded;
# else an empty work directory W.
suite_begin()
{
	if ! command -v qemu-io >/dev/null 2>&1 ||
		! command -v qemu-img >/dev/null 2>&1; then
		echo "ok 1 $SUITE: faults # SKIP no qemu-io or qemu-img in the guest"
		exit 0
	fi
	dmsetup targets | grep -q "^$1 " || modprobe "$2" 2>/dev/null
	if ! dmsetup targets | grep -q "^$1 "; then
		echo "ok 1 $SUITE: faults # SKIP no $2 in the guest"
		exit 0
	fi
	W=${TMPDIR:-/tmp}/imgfmt-$SUITE
	rm -rf "$W"
	mkdir -p "$W"
}

# suite_end: nothing may be left behind; the summary; false if any failed.
suite_end()
{
	rm -rf "$W"
	why=""
	nothing_left
	verdict "no device and no loop left behind"
	# shellcheck disable=SC2154 # vmlib.sh's counters
	echo "# ${SUITE}_vm_test.sh: $n tests, $failed failed"
	[ "$failed" -eq 0 ]
}

# verdict NAME: ok when $why is empty, else not ok with it.
verdict()
{
	if [ -z "$why" ]; then
		ok "$1"
	else
		not_ok "$1" "$why"
	fi
}

# What the kernel log says that it must not, since the case began.
bad_count()
{
	dmesg | grep -cE "$BAD"
}

# case_verdict NAME: verdict, failing also when the kernel log has a
# warning it had not when the case began (b0=$(bad_count)).
case_verdict()
{
	# shellcheck disable=SC2154 # b0: set by the caller
	[ "$(bad_count)" = "$b0" ] ||
		why="${why:-kernel warnings: $(dmesg | grep -E "$BAD" | tail -2)}"
	verdict "$1"
}

# pattern LEN: a random pattern file of LEN bytes, $W/pat.
pattern()
{
	head -c "$1" /dev/urandom >"$W/pat"
}
# dev_write OFF LEN: $W/pat to the device, direct; dd's error in $err.
dev_write()
{
	err=$(dd if="$W/pat" of="/dev/mapper/$DEV" bs="$2" count=1 seek="$1" \
		oflag=seek_bytes,direct conv=notrunc 2>&1 >/dev/null) &&
		return 0
	err=$(echo "$err" | grep -v records | head -1)
	return 1
}
# shadow_write OFF LEN: $W/pat to the shadow.
shadow_write()
{
	dd if="$W/pat" of="$W/shadow" bs="$2" count=1 seek="$1" \
		oflag=seek_bytes conv=notrunc 2>/dev/null
}
# write_acked OFF LEN: a new pattern to the device; into the shadow only
# when the device acknowledged it.
write_acked()
{
	pattern "$2"
	dev_write "$1" "$2" || return 1
	shadow_write "$1" "$2"
}
# dev_flush: a flush bio (fsync of the device; sync(2) sends none).
dev_flush()
{
	err=$(dd if=/dev/zero of="/dev/mapper/$DEV" bs=4096 count=0 \
		conv=fsync 2>&1 >/dev/null) && return 0
	err=$(echo "$err" | grep -v records | head -1)
	return 1
}
# flushed: the shadow as the last acknowledged flush left it.
flushed()
{
	cp "$W/shadow" "$W/flushed"
}
events()
{
	dmsetup info -c --noheadings -o events "$DEV"
}

md5_range()		# md5_range FILE OFF LEN
{
	dd if="$1" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) \
		2>/dev/null | md5_of
}

# same_but FILE [OFF:LEN:KIND]...: FILE must read as $W/flushed outside
# the ranges.  KIND acked: a write acknowledged after the last flush;
# each piece of it in one 64 KiB cluster reads as $W/flushed or as
# $W/shadow (as before or as written).  KIND failed: a write that failed,
# anything.  Sets $why.
same_but()
{
	f=$1
	shift
	cp "$f" "$W/masked"
	for r in "$@"; do
		off=${r%%:*} rest=${r#*:}
		len=${rest%%:*} kind=${rest#*:}
		p=$off
		# Whole as before or as written, else piece by piece.
		if [ "$kind" = acked ]; then
			m=$(md5_range "$f" "$off" "$len")
			if [ "$m" = "$(md5_range "$W/flushed" "$off" "$len")" ] ||
				[ "$m" = "$(md5_range "$W/shadow" "$off" "$len")" ]; then
				p=$((off + len))
			fi
		fi
		while [ "$kind" = acked ] && [ "$p" -lt $((off + len)) ]; do
			q=$(((p / 65536 + 1) * 65536))
			[ $q -le $((off + len)) ] || q=$((off + len))
			m=$(md5_range "$f" "$p" $((q - p)))
			[ "$m" = "$(md5_range "$W/flushed" "$p" $((q - p)))" ] ||
				[ "$m" = "$(md5_range "$W/shadow" "$p" $((q - p)))" ] ||
				why="${why:-$p+$((q - p)) reads neither as before nor as written}"
			p=$q
		done
		dd if="$W/flushed" of="$W/masked" bs=4096 skip=$((off / 4096)) \
			seek=$((off / 4096)) count=$((len / 4096)) conv=notrunc 2>/dev/null
	done
	cmp -s "$W/masked" "$W/flushed" ||
		why="${why:-a write acknowledged before the last flush is lost: $(cmp "$W/masked" "$W/flushed" | head -1)}"
	rm -f "$W/masked"
	[ -z "$why" ]
}

# judge IMG LEAKS [RANGE...]: qemu-img check finds no corruption (and no
# leak unless LEAKS is "leaks"); QEMU's reading, left in $W/conv.raw, is
# same_but RANGE....
judge()
{
	img=$1 leaks=$2
	shift 2
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	case $rc:$leaks in
	0:*|3:leaks) ;;
	*) why="${why:-qemu-img check ($rc): $(echo "$out" | tr '\n' ' ')}"; return 1 ;;
	esac
	[ $rc -eq 3 ] && echo "# $(echo "$out" | grep -i 'leaked clusters were found')"
	qemu-img convert -O raw "$img" "$W/conv.raw" ||
		{ why="${why:-qemu-img convert failed}"; return 1; }
	same_but "$W/conv.raw" "$@"
}
