#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Faults under a read-write QCOW2 table.  The image file is on a loop
# device, dm-flakey over the loop, the imgfmt table over dm-flakey;
# flakey is switched between healthy and error_writes by table reload.
# A shadow file takes every write the device acknowledged; a copy of it
# is taken at every flush the device acknowledged.  After each case the
# table is removed, the file cut back to the image's end (status field
# 16) and QEMU judges it: qemu-img check finds no corruption (leaks are
# allowed where a commit failed) and qemu-img convert reads what the last
# acknowledged flush made durable; a write acknowledged after it reads
# either as before or as written.  Also a full file system under the
# loop, and the kernel log must show no warning.
#
# drop_writes is not used: it acknowledges writes and flushes that never
# reach the file, so after it the file may hold a table entry whose
# refcount block was dropped, or a cluster without the data written to it;
# neither a clean qemu-img check nor any read back can be asked for, and
# what is left (no oops reading such a file) is the hostile image tests'.
#
#   fault_vm_test.sh DIR	(DIR unused: the images are made here)

here=$(cd "$(dirname "$0")" && pwd)
SUITE=fault
# shellcheck source=selftests/imgfmt/vmlib.sh
. "$here/vmlib.sh"
# shellcheck source=selftests/imgfmt/faultlib.sh
. "$here/faultlib.sh"

suite_begin flakey dm-flakey
DEV=imgfmt_f
FLK=imgfmt_flk

# flakey_table MODE: the table of $FLK over $LOOP; healthy passes
# everything, error fails every write and flush, updown is healthy for a
# second and fails writes for a second, in turn.  Reads always pass.
flakey_table()
{
	s=$(($(blockdev --getsz "$LOOP")))
	case $1 in
	healthy) echo "0 $s flakey $LOOP 0 1 0" ;;
	error) echo "0 $s flakey $LOOP 0 0 1 1 error_writes" ;;
	updown) echo "0 $s flakey $LOOP 0 1 1 1 error_writes" ;;
	esac
}
flakey_set()		# flakey_set MODE: reload $FLK
{
	flakey_load "$1" && dmsetup resume "$FLK"
}
flakey_load()		# flakey_load MODE: the next table, for a resume
{
	dmsetup load "$FLK" --table "$(flakey_table "$1")"
}

# setup IMG [MODE]: grow IMG sparsely, loop it, $FLK (healthy unless
# MODE) over the loop and the read-write $DEV over $FLK.  Sets LOOP.
setup()
{
	truncate -s $((4 * SIZE + 64 * 1048576)) "$1" || return 1
	LOOP=$(losetup -f) && losetup "$LOOP" "$1" || return 1
	if ! dmsetup create "$FLK" --table "$(flakey_table "${2:-healthy}")"; then
		losetup -d "$LOOP"
		return 1
	fi
	dmsetup create "$DEV" --table "0 $((SIZE / 512)) imgfmt /dev/mapper/$FLK" &&
		return 0
	dmsetup remove "$FLK"
	losetup -d "$LOOP"
	return 1
}

# teardown IMG: remove $DEV (bounded in time), $FLK and the loop, and cut
# IMG back to the image's end.  $FLK must be closed once $DEV is gone.
teardown()
{
	end=$(status_field "$DEV" 16)
	if ! $TO dmsetup remove "$DEV"; then
		why="${why:-removing the table failed or hung}"
		return 1
	fi
	open=$(dmsetup info -c --noheadings -o open "$FLK")
	[ "$open" = 0 ] || why="${why:-flakey still open $open times after removal}"
	dmsetup remove "$FLK" || why="${why:-removing flakey failed}"
	losetup -d "$LOOP"
	[ -n "$end" ] && [ "$end" -gt 0 ] && truncate -s "$end" "$1"
}

stamp()			# stamp WHAT: with FAULT_DEBUG set, the time
{
	[ -n "${FAULT_DEBUG:-}" ] && echo "# $(cut -d' ' -f1 /proc/uptime) $1"
	return 0
}

# new_image NAME [QEMU-IO-ARGS]: $W/NAME.qcow2 of SIZE, 64 KiB clusters,
# written by qemu-io; the shadow and flushed copy are QEMU's reading.
new_image()
{
	img=$W/$1.qcow2
	rm -f "$img"
	qemu-img create -q -f qcow2 "$img" "$SIZE" || return 1
	if [ -n "${2:-}" ]; then
		eval "qemu-io -f qcow2 $2 \"$img\"" >/dev/null || return 1
	fi
	qemu-img convert -O raw "$img" "$W/shadow" || return 1
	flushed
}

M=1048576

# 1. Writes into clusters the image owns go straight to the device: when
# it fails them, they fail with EIO, and nothing else changes.
case_hot()
{
	why=""
	SIZE=$((16 * M))
	b0=$(bad_count)
	stamp "case begins"
	if new_image hot "-c 'write -P 0x5a 0 4M'" && setup "$W/hot.qcow2"; then
		write_acked $M 65536 || why="a healthy write failed: $err"
		[ -z "$why" ] && { dev_flush || why="a healthy flush failed: $err"; }
		flushed
		flakey_set error || why="${why:-flakey reload failed}"
		if [ -z "$why" ]; then
			pattern 65536
			if dev_write $((2 * M)) 65536; then
				why="a write the device failed was acknowledged"
			else
				case $err in
				*"I/O error"*|*"Input/output"*) echo "# hot path: $err" ;;
				*) why="not EIO: $err" ;;
				esac
			fi
			pattern 8192
			dev_write $((3 * M + 4096)) 8192 && why="${why:-a second failing write acknowledged}"
		fi
		# Reads go on and see only what was acknowledged; nothing was dirty,
		# so no commit comes to fail the device later.
		[ -z "$why" ] && { dd if="/dev/mapper/$DEV" of="$W/dev.raw" bs=1M iflag=direct 2>/dev/null ||
			why="reads failed"; }
		[ -z "$why" ] && { cmp -s "$W/dev.raw" "$W/shadow" || why="reads differ from the shadow"; }
		sleep 2
		[ "$(status_field "$DEV" 14)" = rw ] || why="${why:-mode $(status_field "$DEV" 14), not rw}"
		[ "$(status_field "$DEV" 15)" = 0 ] || why="${why:-dirty metadata after hot-path writes}"
		# Healthy again, the same device takes writes and flushes.
		flakey_set healthy
		write_acked $((2 * M)) 65536 || why="${why:-a write after healing failed: $err}"
		dev_flush || why="${why:-a flush after healing failed: $err}"
		flushed
		teardown "$W/hot.qcow2"
		[ -z "$why" ] && judge "$W/hot.qcow2" noleaks
	else
		why="setup failed"
	fi
	case_verdict "failed writes to owned clusters: EIO, the device stays read-write"
	rm -f "$W"/*.qcow2
}

# 2. A commit due when the device starts failing writes: the flush
# fails, the device is failed (mode, a dm event), later writes and
# flushes fail even once the device heals, reads go on, and the file
# keeps what the last good flush made durable.
case_commit()
{
	why=""
	SIZE=$((16 * M))
	b0=$(bad_count)
	stamp "case begins"
	ranges=""
	if new_image commit "-c 'write -P 0x5a 0 1M'" && setup "$W/commit.qcow2"; then
		for o in 8 9 10; do
			write_acked $((o * M)) 65536 || why="a healthy write failed: $err"
		done
		dev_flush || why="${why:-a healthy flush failed: $err}"
		flushed
		# An allocating write leaves metadata dirty; flakey must fail
		# writes before the timed commit makes it durable: 10 s later
		# here, not 1, for a guest slowed by a loaded host.
		echo 10 >/sys/module/dm_imgfmt/parameters/commit_seconds
		tries=0
		while [ -z "$why" ] && [ $tries -lt 4 ]; do
			tries=$((tries + 1))
			c0=$(status_field "$DEV" 17)
			ev=$(events)
			o=$((12 * M + tries * 131072))
			# Loaded first: the switch is one resume.
			flakey_load error || { why="flakey load failed"; break; }
			write_acked $o 131072 || { why="a healthy write failed: $err"; break; }
			dmsetup resume "$FLK" || { why="flakey resume failed"; break; }
			ranges="$ranges $o:131072:acked"
			# Not committed yet (the allocation left metadata dirty;
			# the dirty count may be stale, the writer's pass still
			# ending), or the timed commit met the failure: due.
			[ "$(status_field "$DEV" 14)" = failed ] && break
			[ "$(status_field "$DEV" 17)" = "$c0" ] && break
			# A commit ended meanwhile, but it may have begun before
			# the write finished: only a flush makes it durable.
			flakey_set healthy
			dev_flush || { why="a healthy flush failed: $err"; break; }
			flushed
			ranges=""
		done
		[ -z "$ranges" ] && why="${why:-the timed commit always came first}"
		if [ -z "$why" ]; then
			# The timed commit may meet the failure first.
			echo "# mode $(status_field "$DEV" 14) before the flush"
			dev_flush && why="a flush acknowledged with its commit failing"
			echo "# failed flush: $err"
		fi
		[ "$(status_field "$DEV" 14)" = failed ] || why="${why:-mode $(status_field "$DEV" 14), not failed}"
		[ "$(events)" -gt "$ev" ] || why="${why:-no dm event (event $(events), was $ev)}"
		$TO dmsetup wait "$DEV" "$ev" >/dev/null || why="${why:-dmsetup wait did not return}"
		dmesg | tail -20 | grep -q "metadata I/O failed" || why="${why:-no message in the kernel log}"
		check_refused()		# check_refused WHEN
		{
			pattern 65536
			dev_write 0 65536 && why="${why:-$1: a write to an owned cluster acknowledged}"
			ranges="$ranges 0:65536:failed"
			pattern 65536
			dev_write $((14 * M)) 65536 && why="${why:-$1: an allocating write acknowledged}"
			ranges="$ranges $((14 * M)):65536:failed"
			dev_flush && why="${why:-$1: a flush acknowledged}"
		}
		check_refused failed
		flakey_set healthy
		check_refused "healed"
		[ "$(status_field "$DEV" 14)" = failed ] || why="${why:-mode $(status_field "$DEV" 14) once healed}"
		# Reads: what was acknowledged, the write after the flush included.
		dd if="/dev/mapper/$DEV" of="$W/dev.raw" bs=1M iflag=direct 2>/dev/null ||
			why="${why:-reads failed}"
		cp "$W/flushed" "$W/flushed.keep"
		cp "$W/shadow" "$W/flushed"
		# shellcheck disable=SC2046	# the failed ranges: words
		same_but "$W/dev.raw" $(echo "$ranges" | tr ' ' '\n' | grep failed)
		mv "$W/flushed.keep" "$W/flushed"
		rm -f "$W/dev.raw"
		teardown "$W/commit.qcow2"
		# shellcheck disable=SC2086
		[ -z "$why" ] && judge "$W/commit.qcow2" leaks $ranges
	else
		why="setup failed"
	fi
	echo 1 >/sys/module/dm_imgfmt/parameters/commit_seconds
	case_verdict "a failed commit: flush fails, mode failed, event, nothing acknowledged after"
	rm -f "$W"/*.qcow2
}

# 3. Removal with a commit due while the device fails writes: the last
# commit fails, the removal neither hangs nor leaves flakey open.
case_remove()
{
	why=""
	SIZE=$((16 * M))
	b0=$(bad_count)
	stamp "case begins"
	ranges=""
	if new_image remove && setup "$W/remove.qcow2"; then
		write_acked $((4 * M)) 65536 || why="a healthy write failed: $err"
		dev_flush || why="${why:-a healthy flush failed: $err}"
		flushed
		write_acked $((6 * M)) 65536 || why="${why:-a healthy write failed: $err}"
		ranges="$((6 * M)):65536:acked"
		flakey_set error || why="${why:-flakey reload failed}"
		# The flakey table stays failing: the target's last commit meets it.
		teardown "$W/remove.qcow2"
		dmesg | tail -20 | grep -q "metadata I/O failed" ||
			echo "# the timed commit came before the failure"
		[ -z "$why" ] && judge "$W/remove.qcow2" leaks $ranges
	else
		why="setup failed"
	fi
	case_verdict "removal with the device failing: no hang, flakey released, no corruption"
	rm -f "$W"/*.qcow2
}

# 4. Writes and flushes in a loop while flakey fails writes one second in
# two.  Each round makes the table, writes and flushes until something
# fails, removes it and lets QEMU judge; the next round opens the same
# file.  The failures land at any step of a commit.
case_updown()
{
	why=""
	SIZE=$((8 * M))
	b0=$(bad_count)
	stamp "case begins"
	rounds=0 wfail=0 ffail=0 writes=0
	seed=12345
	if new_image loop "-c 'write -P 0x33 0 2M'"; then
		img=$W/loop.qcow2
		end_at=$(($(date +%s) + 15))
		while [ -z "$why" ] && [ "$(date +%s)" -lt "$end_at" ]; do
			setup "$img" updown || { why="setup failed in round $rounds"; break; }
			rounds=$((rounds + 1))
			ranges=""
			i=0
			while [ $i -lt 40 ]; do
				i=$((i + 1))
				seed=$(((seed * 1103515245 + 12345) % 2147483648))
				off=$(((seed / 65536 % 128) * 65536 + (seed % 4) * 4096))
				len=$(((seed / 4 % 16 + 1) * 4096))
				pattern "$len"
				if ! dev_write "$off" "$len"; then
					wfail=$((wfail + 1))
					ranges="$off:$len:failed"
					break
				fi
				writes=$((writes + 1))
				shadow_write "$off" "$len"
				if ! dev_flush; then
					ffail=$((ffail + 1))
					ranges="$off:$len:acked"
					[ "$(status_field "$DEV" 14)" = failed ] ||
						why="a flush failed, the mode is $(status_field "$DEV" 14)"
					dev_flush && why="${why:-a flush acknowledged after a failed one}"
					break
				fi
				flushed
			done
			stamp "round $rounds: $i writes, $ranges"
			teardown "$img" || break
			# shellcheck disable=SC2086
			judge "$img" leaks $ranges || why="round $rounds: $why"
			stamp "judged"
			# The next round starts from what QEMU reads.
			mv "$W/conv.raw" "$W/shadow"
			flushed
		done
		echo "# $rounds rounds, $writes writes acknowledged, $wfail writes and $ffail flushes failed"
		[ $((wfail + ffail)) -gt 0 ] || why="${why:-no write or flush failed in $rounds rounds}"
	else
		why="qemu-img failed"
	fi
	case_verdict "writes and flushes while flakey goes up and down: no corruption"
	rm -f "$W"/*.qcow2
}

# 5. The file system under the loop fills up: the write that finds no
# room fails (ENOSPC or EIO: whichever the loop gives), the device stays
# read-write, nothing acknowledged is lost, no corruption.
case_full()
{
	why=""
	SIZE=$((64 * M))
	b0=$(bad_count)
	stamp "case begins"
	mkdir -p "$W/small"
	if mount -t tmpfs -o size=12m tmpfs "$W/small"; then
		img=$W/small/full.qcow2
		qemu-img create -q -f qcow2 "$img" "$SIZE"
		qemu-img convert -O raw "$img" "$W/shadow"
		flushed
		truncate -s $((2 * SIZE)) "$img"
		LOOP=$(losetup -f) && losetup "$LOOP" "$img"
		if dmsetup create "$DEV" --table "0 $((SIZE / 512)) imgfmt $LOOP"; then
			ranges="" acked="" o=0
			while [ $o -lt $((SIZE / M)) ]; do
				pattern $M
				if ! dev_write $((o * M)) $M; then
					ranges="$((o * M)):$M:failed"
					echo "# full file system, the write at $o MiB: $err"
					break
				fi
				shadow_write $((o * M)) $M
				acked="$acked $((o * M)):$M:acked"
				o=$((o + 1))
			done
			[ -z "$ranges" ] && why="64 MiB written into 12 MiB"
			# A data write that fails fails alone: the metadata
			# is rewritten in place, where the file has room.
			if dev_flush; then
				flushed
			else
				why="${why:-the flush after it failed: $err}"
				ranges="$ranges$acked"
			fi
			[ "$(status_field "$DEV" 14)" = rw ] ||
				why="${why:-mode $(status_field "$DEV" 14) after a data write failed}"
			end=$(status_field "$DEV" 16)
			$TO dmsetup remove "$DEV" || why="${why:-removal failed}"
			losetup -d "$LOOP"
			[ -n "$end" ] && [ "$end" -gt 0 ] && truncate -s "$end" "$img"
			# shellcheck disable=SC2086
			[ -z "$why" ] && judge "$img" leaks $ranges
		else
			why="table load failed"
			losetup -d "$LOOP"
		fi
		rm -f "$img"
		umount "$W/small"
	else
		why="cannot mount a tmpfs"
	fi
	case_verdict "a full file system under the loop: the write fails alone, no corruption"
}

# FAULT_CASES (words) runs only some: hot commit remove updown full.
for c in ${FAULT_CASES:-hot commit remove updown full}; do
	"case_$c"
done
suite_end
