#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Faults at chosen blocks: dm-dust between the image's loop device and
# the imgfmt table fails reads of the blocks on its list and, for a count
# given with the block, writes to them.  Where dm-flakey (fault_vm_test.sh)
# fails all writes, dust fails one table: the header or the L1 table at
# table load, an L2 table or a data cluster at run time, an L2 table or a
# refcount block at commit.  What must hold:
# - a table that cannot read its image's header or L1 table does not
#   load, says why, and leaves nothing open; once readable it loads;
# - on a read-only table a failed read fails that bio with EIO and no
#   other, the log says so within its rate limit, and once the block
#   reads again so does the device: no failure is cached;
# - on a read-write table a metadata read or write that fails puts the
#   device in failed mode (writes and flushes fail, reads go on, a dm
#   event), and afterwards qemu-img check finds no corruption and QEMU
#   reads what the last acknowledged flush made durable.
#
# The images have 4 KiB clusters (an L2 table maps 2 MiB) and dust's
# blocks are 4 KiB, so each table is one dust block.
#
#   dust_vm_test.sh DIR	(DIR unused: the images are made here)

here=$(cd "$(dirname "$0")" && pwd)
SUITE=dust
# shellcheck source=selftests/imgfmt/vmlib.sh
. "$here/vmlib.sh"
# shellcheck source=selftests/imgfmt/faultlib.sh
. "$here/faultlib.sh"

suite_begin dust dm-dust
DEV=imgfmt_d
DST=imgfmt_dust
M=1048576
SIZE=$((8 * M))
IMG=$W/d.qcow2

# be_off FILE OFF: the big-endian 64-bit field at OFF, without its top
# byte (flags) and its low 9 bits: a QCOW2 table's offset.
be_off()
{
	_h=$(od -A n -t x1 -j "$2" -N 8 "$1" | tr -d ' \n')
	echo $((0x${_h#??} & ~511))
}

# The image: data in 0-4 MiB and at 4 MiB (so the L2 table of 4-6 MiB
# exists, the rest of it unallocated), nothing in 6-8 MiB.  Sets L1, L2_2
# (the table of 2-4 MiB), L2_4 (of 4-6 MiB), DATA1 (the cluster of 1 MiB)
# and RB (the refcount block the image's next clusters take their counts
# in); the shadow and flushed copy are QEMU's reading.
new_image()
{
	rm -f "$IMG"
	qemu-img create -q -f qcow2 -o cluster_size=4096 "$IMG" "$SIZE" &&
		qemu-io -f qcow2 -c "write -P 0x5a 0 4M" -c "write -P 0x33 4M 4k" \
			"$IMG" >/dev/null &&
		qemu-img convert -O raw "$IMG" "$W/shadow" || return 1
	flushed
	L1=$(be_off "$IMG" 40)
	L2_2=$(be_off "$IMG" $((L1 + 8)))
	L2_4=$(be_off "$IMG" $((L1 + 16)))
	DATA1=$(be_off "$IMG" $(($(be_off "$IMG" "$L1") + 256 * 8)))
	rt=$(be_off "$IMG" 48)
	# 16-bit refcounts: a 4 KiB block counts 2048 clusters.
	RB=$(be_off "$IMG" $((rt + ($(stat -c %s "$IMG") / 4096 / 2048) * 8)))
	if [ "$L2_2" -eq 0 ] || [ "$L2_4" -eq 0 ] || [ "$DATA1" -eq 0 ] ||
		[ "$RB" -eq 0 ]; then
		why="the image's tables are not where expected"
		return 1
	fi
}

# dust_up: loop the image (grown for new clusters), dust over it with no
# bad block yet.  Sets LOOP.
dust_up()
{
	truncate -s $((2 * SIZE)) "$IMG" || return 1
	LOOP=$(losetup -f) && losetup "$LOOP" "$IMG" || return 1
	dmsetup create "$DST" --table \
		"0 $(blockdev --getsz "$LOOP") dust $LOOP 0 4096" && return 0
	losetup -d "$LOOP"
	return 1
}
# bad OFF [WRITES]: the 4 KiB block at image offset OFF reads failing
# (and its next WRITES writes fail).
bad()
{
	dmsetup message "$DST" 0 addbadblock $(($1 / 4096)) ${2:+"$2"} &&
		dmsetup message "$DST" 0 enable
}
good()			# good OFF: the block reads again
{
	dmsetup message "$DST" 0 removebadblock $(($1 / 4096))
}
# dust_down: remove $DST (it must be closed by now) and the loop, and
# cut the image back to END when set.
dust_down()
{
	open=$(dmsetup info -c --noheadings -o open "$DST")
	[ "$open" = 0 ] || why="${why:-dust still open $open times}"
	dmsetup message "$DST" 0 clearbadblocks >/dev/null 2>&1
	dmsetup remove "$DST" || why="${why:-removing dust failed}"
	losetup -d "$LOOP"
	[ -n "${END:-}" ] && [ "$END" -gt 0 ] && truncate -s "$END" "$IMG"
	END=
}
# table RO|RW: the imgfmt table over dust; dmsetup's error in $err.
table()
{
	_ro=
	[ "$1" = RO ] && _ro=--readonly
	err=$(dmsetup create $_ro "$DEV" \
		--table "0 $((SIZE / 512)) imgfmt /dev/mapper/$DST" 2>&1)
}
# untable: remove the table (bounded in time), noting the image's end.
untable()
{
	END=$(status_field "$DEV" 16)
	$TO dmsetup remove "$DEV" || why="${why:-removing the table failed or hung}"
}
# reads OFF LEN: LEN bytes at OFF, direct, match the shadow.
reads()
{
	_a=$(dd if="/dev/mapper/$DEV" bs=4096 skip=$(($1 / 4096)) \
		count=$(($2 / 4096)) iflag=direct 2>/dev/null | md5_of)
	[ "$_a" = "$(md5_range "$W/shadow" "$1" "$2")" ]
}
# read_fails OFF: the 4 KiB read at OFF fails with EIO.
read_fails()
{
	_e=$(dd if="/dev/mapper/$DEV" of=/dev/null bs=4096 skip=$(($1 / 4096)) \
		count=1 iflag=direct 2>&1) && return 1
	case $_e in
	*"I/O error"*|*"Input/output"*) return 0 ;;
	esac
	return 1
}
# case_end NAME: the verdict (case_verdict); the image goes.
case_end()
{
	case_verdict "$1"
	rm -f "$IMG"
}

# 1. A table that cannot read the header or the L1 table does not load;
# the log names what failed; nothing stays open; once the block reads
# again the same table loads and reads as QEMU does.
case_open()
{
	for what in header:0:"cannot read" L1:L1:"cannot read the QCOW2 L1 table"; do
		why=""
		b0=$(bad_count)
		name=${what%%:*} rest=${what#*:}
		where=${rest%%:*} msg=${rest#*:}
		if new_image && dust_up; then
			[ "$where" = L1 ] && where=$L1
			bad "$where" || why="dust refused the bad block"
			if [ -z "$why" ] && table RO; then
				why="loaded with its $name unreadable"
				dmsetup remove "$DEV"
			elif [ -z "$why" ]; then
				# A device error, not a bad image: EIO.
				dmesg | tail -n 5 | grep -q "$msg.*(-EIO)" ||
					why="the log lacks '$msg ... (-EIO)': $(dmesg | tail -n 2 | tr '\n' ' ')"
				echo "# $name: $err"
			fi
			good "$where"
			if [ -z "$why" ] && table RO; then
				reads 0 "$SIZE" || why="reads differ from QEMU's once readable"
				untable
			elif [ -z "$why" ]; then
				why="not loaded once readable: $err"
			fi
			END=
			dust_down
		else
			why="${why:-setup failed}"
		fi
		case_end "$name unreadable: the table is refused, then loads"
	done
}

# Lines the module logged, less the rate limiter's own "callbacks
# suppressed" reports (which name the function: imgfmt_...).
imgfmt_log_lines()
{
	dmesg | grep 'imgfmt' | grep -vc 'callbacks suppressed'
}

# 2. A read-only table: an unreadable L2 table fails the reads it maps,
# an unreadable data cluster its own; the rest reads on; the errors are
# counted and logged within the rate limit; healed, everything reads.
case_ro()
{
	why=""
	b0=$(bad_count)
	if new_image && dust_up; then
		bad "$L2_2" && bad "$DATA1" || why="dust refused a bad block"
		[ -z "$why" ] && { table RO || why="table load failed: $err"; }
		if [ -z "$why" ]; then
			l0=$(imgfmt_log_lines)
			read_fails $((3 * M)) || why="a read through the bad L2 table did not fail with EIO"
			read_fails $M || why="${why:-a read of the bad data cluster did not fail with EIO}"
			reads 0 $M || why="${why:-0-1 MiB reads wrong}"
			reads $((M + 4096)) $((M - 4096)) || why="${why:-1-2 MiB reads wrong}"
			reads $((4 * M)) $((4 * M)) || why="${why:-4-8 MiB reads wrong}"
			t0=$(date +%s)
			i=0
			while [ $i -lt 100 ]; do
				read_fails $((2 * M + i * 4096)) || why="${why:-read $i of the bad table did not fail}"
				i=$((i + 1))
			done
			lines=$(($(imgfmt_log_lines) - l0))
			# Rate limited: 10 lines per 5 s for each of the two
			# messages of a failed read, so a slow guest may log
			# more windows' worth; never near the 204 of no limit.
			secs=$(($(date +%s) - t0))
			limit=$((20 * (secs / 5 + 2)))
			[ "$limit" -le 100 ] || limit=100
			echo "# 102 failed reads in $secs s, $lines lines in the log (at most $limit)"
			[ "$lines" -ge 1 ] || why="${why:-failed reads not logged}"
			[ "$lines" -le "$limit" ] ||
				why="${why:-$lines log lines for 102 failed reads in $secs s}"
			[ "$(status_field "$DEV" 7)" -ge 101 ] ||
				why="${why:-io_errors $(status_field "$DEV" 7) after 101 table failures}"
			good "$L2_2" && good "$DATA1" || why="${why:-dust refused to heal}"
			reads 0 "$SIZE" || why="${why:-healed, the device reads wrong}"
			[ "$(status_field "$DEV" 14)" = ro ] || why="${why:-mode $(status_field "$DEV" 14)}"
			untable
		fi
		END=
		dust_down
		[ -z "$why" ] && judge "$IMG" noleaks
	else
		why="${why:-setup failed}"
	fi
	case_end "read-only: failed reads fail alone, nothing cached, healed reads right"
}

# 3. A read-write table that cannot read an L2 table a write needs: the
# write fails, the device is failed (writes and flushes fail, reads go
# on, a dm event), and the image is as it was.
case_rw_read()
{
	why=""
	b0=$(bad_count)
	if new_image && dust_up; then
		bad "$L2_2" || why="dust refused the bad block"
		[ -z "$why" ] && { table RW || why="table load failed: $err"; }
		if [ -z "$why" ]; then
			ev=$(events)
			pattern 4096
			dev_write $((3 * M)) 4096 && why="a write through the bad L2 table acknowledged"
			[ "$(status_field "$DEV" 14)" = failed ] ||
				why="${why:-mode $(status_field "$DEV" 14) after a metadata read failed}"
			[ "$(events)" -gt "$ev" ] || why="${why:-no dm event}"
			pattern 4096
			dev_write $((5 * M)) 4096 && why="${why:-a write acknowledged in failed mode}"
			dev_flush && why="${why:-a flush acknowledged in failed mode}"
			reads 0 $((2 * M)) || why="${why:-reads of 0-2 MiB wrong in failed mode}"
			good "$L2_2"
			reads 0 "$SIZE" || why="${why:-healed, reads wrong in failed mode}"
			untable
		fi
		dust_down
		[ -z "$why" ] && judge "$IMG" noleaks
	else
		why="${why:-setup failed}"
	fi
	case_end "read-write: an unreadable L2 table fails the device, nothing changes"
}

# 4. A read-write table whose commit cannot write one block (the L2
# table of an allocating write, or the refcount block of its cluster):
# the flush fails, the device is failed, later writes and flushes fail,
# and the image keeps what the last good flush made durable.
case_commit()
{
	for what in L2 refcount; do
		why=""
		b0=$(bad_count)
		if new_image && dust_up; then
			block=$L2_4
			[ "$what" = refcount ] && block=$RB
			table RW || why="table load failed: $err"
			# Cache the tables: dust fails reads of the block too.
			[ -z "$why" ] && { reads 0 "$SIZE" || why="reads wrong"; }
			# An allocating write reads the refcount block, too.
			[ -z "$why" ] && { write_acked $((6 * M)) 4096 && dev_flush && flushed ||
				why="a healthy write or flush failed: $err"; }
			[ -z "$why" ] && { bad "$block" 8 || why="dust refused the bad block"; }
			if [ -z "$why" ]; then
				ev=$(events)
				write_acked $((5 * M)) 65536 ||
					why="an allocating write failed before its commit: $err"
				dev_flush && why="${why:-a flush acknowledged with its $what block unwritable}"
				[ "$(status_field "$DEV" 14)" = failed ] ||
					why="${why:-mode $(status_field "$DEV" 14) after a failed commit}"
				[ "$(events)" -gt "$ev" ] || why="${why:-no dm event}"
				pattern 4096
				dev_write 0 4096 && why="${why:-a write acknowledged in failed mode}"
				dev_flush && why="${why:-a flush acknowledged in failed mode}"
				reads $((4 * M)) $((4 * M)) || why="${why:-reads wrong in failed mode}"
			fi
			untable
			dust_down
			[ -z "$why" ] && judge "$IMG" leaks $((5 * M)):65536:acked 0:4096:failed
		else
			why="${why:-setup failed}"
		fi
		case_end "read-write: the $what block unwritable at commit fails the device, no corruption"
	done
}

# DUST_CASES (words) runs only some: open ro rw_read commit.
for c in ${DUST_CASES:-open ro rw_read commit}; do
	"case_$c"
done
suite_end
