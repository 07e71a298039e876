#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the VMDK descriptor test images (descriptors joining extent files)
# and the images whose size is not a multiple of 512, with QEMU's tools, and
# write their manifests.
#
#   mkimages-vmdk-desc.sh [--vm] OUTDIR
#
# --vm makes the smaller set of the in-VM payload (desc_vm_test.sh): no
# 5 GiB split flat disk (its extent files are sparse on the host, but an
# initramfs would store all 5 GiB), and the 512 MiB seSparse disk of the
# corpus checked by windows instead of whole (hashing it all takes seconds
# in the VM).  The 5 GiB split sparse disk stays.
#
# QEMU is the oracle: every checksum comes from `qemu-img convert -O raw`
# or `qemu-img dd`, except for descriptors with RDONLY or ZERO extents,
# which QEMU skips (it maps RW lines only): their raw disk is joined with dd
# from the extents' own contents, each read by qemu-img.
#
# Manifests (one record a line, fields separated by one space):
#   good.list     <name> <file> <virtual_size> <md5>
#                 Disks read whole; md5 of the raw virtual disk.
#   windows.list  <name> <file> <offset> <length> <md5> <virtual_size>
#                 5 GiB disks (and with --vm the seSparse one): md5 of
#                 [offset, +length).
#   hostile.list  <name> <file> <expected error message...>
#                 `imgfmt info` must fail with this message (a substring:
#                 the helper puts the path and line number before it).
#   many.list     <name> <file> <virtual_size> <md5>
#                 The 4096-extent descriptor (not QEMU's md5: see below).
#
# Files are relative to OUTDIR; extent files sit next to their descriptor.
# Everything is deterministic.  Running the script again rebuilds OUTDIR.

set -euo pipefail
export LC_ALL=C

# shellcheck source=imglib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/imglib.sh"
IMG_FMT=vmdk

VM=0
if [ "${1:-}" = --vm ]; then
	VM=1
	shift
fi
[ $# -eq 1 ] || die "usage: mkimages-vmdk-desc.sh [--vm] OUTDIR"
need_tools "qemu-utils, coreutils, gzip" qemu-img qemu-io md5sum dd stat \
	truncate gzip mkfifo
find_corpus vmware || true

rm -rf "$1"
setup_out "$1"
make_tmp desc
cd "$OUT"
: >good.list
: >windows.list
: >hostile.list

add_good()		# add_good NAME FILE [MD5 SIZE]
{
	local md5=${3:-} size=${4:-}

	[ -n "$size" ] || size=$(info_field "$2" virtual-size)
	[ -n "$size" ] || die "no virtual size for $2"
	[ -n "$md5" ] || md5=$(raw_md5 "$2")
	echo "$1 $2 $size $md5" >>good.list
}

# Write distinct patterns into an image: qemu-io "write -P" per region.
fill_patterns()		# fill_patterns FORMAT FILE OFFSET:LENGTH:PATTERN...
{
	local fmt=$1 file=$2 cmds=() r off len pat

	shift 2
	for r in "$@"; do
		IFS=: read -r off len pat <<<"$r"
		cmds+=(-c "write -q -P $pat $off $len")
	done
	qemu_io "$fmt" "$file" "${cmds[@]}"
}

# A descriptor: CRLF line ends when CRLF=1, a windows-1252 comment (0xE9)
# in the disk database.  Extent lines come as arguments.
# shellcheck disable=SC2059 # $eol is a printf escape
descriptor()		# descriptor FILE CREATETYPE EXTENTLINE...
{
	local file=$1 ct=$2 eol='\n' l

	shift 2
	[ "${CRLF:-0}" = 1 ] && eol='\r\n'
	{
		printf "# Disk DescriptorFile$eol"
		printf "version=1$eol"
		printf "encoding=\"windows-1252\"$eol"
		printf "CID=fffffffe$eol"
		printf "parentCID=ffffffff$eol"
		printf "isNativeSnapshot=\"no\"$eol"
		printf "createType=\"%s\"$eol$eol" "$ct"
		printf "# Extent description$eol"
		for l in "$@"; do
			printf "%s$eol" "$l"
		done
		printf "$eol# The Disk Data Base$eol#DDB$eol$eol"
		printf "ddb.virtualHWVersion = \"4\"$eol"
		printf "ddb.comment = \"r\351sum\351 \221quoted\222\"$eol"
		printf "ddb.adapterType = \"ide\"$eol"
	} >"$file"
}

# --- Disks qemu-img makes, 5 GiB split into 2 GiB extents. -------------

# Data at the start, across both extent boundaries and at the end.
BIG_REGIONS=(0:64k:0x11 "$((2 * GiB - MiB)):2M:0x22"
	     "$((4 * GiB - 4096)):8k:0x33" "$((5 * GiB - MiB)):1M:0x44")
BIG_WINDOWS=("0:$MiB" "$((2 * GiB - 2 * MiB)):$((4 * MiB))"
	     "$((4 * GiB - MiB)):$((2 * MiB))" "$((5 * GiB - 2 * MiB)):$((2 * MiB))")

BIG_SUBFORMATS=twoGbMaxExtentSparse
[ "$VM" = 1 ] || BIG_SUBFORMATS="$BIG_SUBFORMATS twoGbMaxExtentFlat"
for sub in $BIG_SUBFORMATS; do
	name=q_$sub
	qemu-img create -q -f vmdk -o subformat="$sub" "$name.vmdk" 5G
	fill_patterns vmdk "$name.vmdk" "${BIG_REGIONS[@]}"
	for w in "${BIG_WINDOWS[@]}"; do
		add_window "$name" "$name.vmdk" "${w%:*}" "${w#*:}" $((5 * GiB))
	done
done

# --- Disks qemu-img makes, read whole. ---------------------------------

for sub in monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat \
	   monolithicSparse; do
	name=q_small_$sub
	qemu-img create -q -f vmdk -o subformat=$sub "$name.vmdk" 64M
	fill_patterns vmdk "$name.vmdk" 0:64k:0x51 $((31 * MiB)):2M:0x52 \
		$((64 * MiB - 4096)):4k:0x53
	add_good "$name" "$name.vmdk"
done
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized \
	q_small_monolithicSparse.vmdk q_small_streamOptimized.vmdk
add_good q_small_streamOptimized q_small_streamOptimized.vmdk

# --- Hand-made descriptors joining extents of every kind. --------------

# A raw file: 16 sectors of other data, then the extent's 2048 sectors,
# then 3 odd bytes (a flat extent need not end on a sector).
truncate -s $((2064 * 512 + 3)) mix-f1.raw
fill_patterns raw mix-f1.raw 0:8k:0xee 8k:1M:0x61 $((8192 + MiB)):3:0xef
# Sparse extents: hosted sparse, the same stream-optimized, and one whose
# file ends in a partial sector (bytes appended after its last grain).
qemu-img create -q -f vmdk -o subformat=monolithicSparse mix-s2.vmdk 2M
fill_patterns vmdk mix-s2.vmdk 0:4k:0x62 $((MiB + 512)):64k:0x63
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized \
	mix-s2.vmdk mix-s5.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse mix-s6.vmdk 1M
fill_patterns vmdk mix-s6.vmdk 64k:4k:0x66
printf 'tail' >>mix-s6.vmdk
# A VMFS (flat, offset 0) extent.
truncate -s 512K mix-f3.raw
fill_patterns raw mix-f3.raw 0:512k:0x64

MIX_RW=('RW 2048 FLAT "mix-f1.raw" 16' 'RW 4096 SPARSE "mix-s2.vmdk"'
	'RW 1024 VMFS "mix-f3.raw"' 'RW 4096 SPARSE "mix-s5.vmdk"'
	'RW 2048 SPARSE "mix-s6.vmdk"')
CRLF=1 descriptor mix_crlf.vmdk twoGbMaxExtentSparse "${MIX_RW[@]}"
add_good mix_crlf mix_crlf.vmdk
descriptor mix_lf.vmdk twoGbMaxExtentSparse "${MIX_RW[@]}"
add_good mix_lf mix_lf.vmdk

# RDONLY and ZERO extents: QEMU skips these lines, VMware maps them.
CRLF=1 descriptor mix_all.vmdk twoGbMaxExtentSparse "${MIX_RW[0]}" \
	'RW 100 ZERO' 'RDONLY 4096 SPARSE "mix-s2.vmdk"' \
	'RDONLY 1024 VMFS "mix-f3.raw"'
{
	dd if=mix-f1.raw bs=512 skip=16 count=2048 status=none
	head -c $((100 * 512)) /dev/zero
	qemu-img convert -f vmdk -O raw mix-s2.vmdk s2.tmp
	cat s2.tmp
	rm -f s2.tmp
	cat mix-f3.raw
} >mix_all.raw
add_good mix_all mix_all.vmdk "$(md5_of mix_all.raw)" \
	"$(stat -c %s mix_all.raw)"
rm -f mix_all.raw

# A hosted sparse file of capacity 0 whose embedded descriptor names other
# extents (QEMU reads it so).
qemu-img create -q -f vmdk -o subformat=monolithicSparse embdesc.vmdk 64k
dd if=/dev/zero of=embdesc.vmdk bs=1 seek=12 count=8 conv=notrunc status=none
dd if=/dev/zero of=embdesc.vmdk bs=512 seek=1 count=20 conv=notrunc \
	status=none
descriptor embdesc.txt monolithicFlat 'RW 1024 VMFS "mix-f3.raw"'
dd if=embdesc.txt of=embdesc.vmdk bs=512 seek=1 conv=notrunc status=none
rm -f embdesc.txt
add_good embdesc embdesc.vmdk

# --- Images whose size is not a multiple of 512. -----------------------

# Compressed clusters are packed byte by byte: this file is 20524 bytes and
# its last cluster's stream ends in the partial sector.
qemu-img create -q -f qcow2 -o cluster_size=4k odd_qcow2.qcow2 16M
qemu_io qcow2 odd_qcow2.qcow2 -c "write -q -c -P 0x33 0 4k" \
	-c "write -q -c -P 0x44 8k 4k"
[ $(($(stat -c %s odd_qcow2.qcow2) % 512)) -ne 0 ] ||
	die "odd_qcow2.qcow2 ends on a sector: QEMU changed its packing"
qemu-img convert -f qcow2 -O raw odd_qcow2.qcow2 raw.tmp
add_good odd_qcow2 odd_qcow2.qcow2 "$(md5_of raw.tmp)" \
	"$(stat -c %s raw.tmp)"
rm -f raw.tmp
cp mix-s6.vmdk odd_vmdk.vmdk
add_good odd_vmdk odd_vmdk.vmdk

# --- Images made elsewhere (the corpus README has their sums). ---------

if [ -n "$CORPUS" ]; then
	for f in twoGbMaxExtentSparse.vmdk twoGbMaxExtentSparse-s001.vmdk \
		 vmfs_thick.vmdk vmfs_thick-flat.vmdk monolithicFlat.vmdk \
		 twoGbMaxExtentFlat.vmdk vmfs_thick-000001.vmdk; do
		cp "$CORPUS/vmware/$f" "corpus-$f"
		chmod 644 "corpus-$f"
	done
	# The descriptors name their extents without our prefix.
	sed -i 's/"twoGbMaxExtentSparse-s001.vmdk"/"corpus-twoGbMaxExtentSparse-s001.vmdk"/' \
		corpus-twoGbMaxExtentSparse.vmdk
	sed -i 's/"vmfs_thick-flat.vmdk"/"corpus-vmfs_thick-flat.vmdk"/' \
		corpus-vmfs_thick.vmdk
	add_good corpus_twoGbMaxExtentSparse corpus-twoGbMaxExtentSparse.vmdk
	add_good corpus_vmfs_thick corpus-vmfs_thick.vmdk
	add_hostile corpus_monolithicFlat corpus-monolithicFlat.vmdk \
		"cannot open extent file monolithicFlat-flat.vmdk: No such file or directory"
	add_hostile corpus_twoGbMaxExtentFlat corpus-twoGbMaxExtentFlat.vmdk \
		"cannot open extent file twoGbMaxExtentFlat-f001.vmdk: No such file or directory"
	add_hostile corpus_vmfs_thick_000001 corpus-vmfs_thick-000001.vmdk \
		"cannot open extent file vmfs_thick-000001-delta.vmdk: No such file or directory"
	gzip -dc "$CORPUS/sesparse/sesparse.vmdk.gz" >sesparse.vmdk
	cp "$CORPUS/sesparse/sesparse-desc.vmdk" sesparse-desc.vmdk
	chmod 644 sesparse-desc.vmdk
	if [ "$VM" = 1 ]; then
		# Its data is the first 16 MiB; the rest is unallocated.
		for w in 0:$((16 * MiB)) $((15 * MiB)):$((2 * MiB)) \
			 $((511 * MiB)):$MiB; do
			add_window corpus_sesparse sesparse-desc.vmdk \
				"${w%:*}" "${w#*:}" $((512 * MiB))
		done
	else
		add_good corpus_sesparse sesparse-desc.vmdk
	fi
fi

# --- The documented limit: 4096 extents. --------------------------------

# Each extent is the next sector of one file with a different text in
# every sector, so the disk is that file exactly (in order).  Not QEMU's:
# it holds one file open per extent and stops at its open file limit.
# desc_vm_test.sh attaches it under a lowered ulimit -n.
{ seq 1 400000 || true; } | head -c $((4096 * 512)) >many.raw
{
	printf 'version=1\nCID=fffffffe\nparentCID=ffffffff\n'
	printf 'createType="twoGbMaxExtentFlat"\n'
	seq 0 4095 | sed 's/.*/RW 1 FLAT "many.raw" &/'
} >many4096.vmdk
echo "many4096 many4096.vmdk $((4096 * 512)) $(md5sum <many.raw | cut -d' ' -f1)" \
	>many.list

# --- Descriptors the helper must refuse, naming the file or line. ------

bad_desc()		# bad_desc NAME CREATETYPE EXTENTLINE MESSAGE
{
	descriptor "$1.vmdk" "$2" "$3"
	add_hostile "$1" "$1.vmdk" "$4"
}

bad_desc h_missing monolithicFlat 'RW 2048 FLAT "nothere.raw" 0' \
	"cannot open extent file nothere.raw: No such file or directory"
bad_desc h_bad_size monolithicFlat 'RW 2x48 FLAT "mix-f3.raw" 0' \
	"bad extent size '2x48' (sectors expected)"
bad_desc h_zero_size monolithicFlat 'RW 0 FLAT "mix-f3.raw" 0' \
	"extent of 0 sectors"
bad_desc h_bad_type monolithicFlat 'RW 1024 FLOT "mix-f3.raw" 0' \
	"unknown extent type 'FLOT'"
bad_desc h_unquoted monolithicFlat 'RW 1024 FLAT mix-f3.raw 0' \
	"quoted extent file name expected"
bad_desc h_open_quote monolithicFlat 'RW 1024 FLAT "mix-f3.raw 0' \
	"extent file name without its closing quote"
bad_desc h_trailing monolithicFlat 'RW 1024 FLAT "mix-f3.raw" 0 x' \
	"unexpected 'x' after the extent"
bad_desc h_sparse_offset twoGbMaxExtentSparse 'RW 4096 SPARSE "mix-s2.vmdk" 0' \
	"only FLAT and VMFS extents take an offset"
bad_desc h_noaccess monolithicFlat 'NOACCESS 1024 FLAT "mix-f3.raw" 0' \
	"NOACCESS extents are not supported"
bad_desc h_rdm vmfs 'RW 1024 VMFSRDM "mix-f3.raw"' \
	"VMFSRDM extents (raw host disk access) are not supported"
bad_desc h_full_device fullDevice 'RW 1024 FLAT "mix-f3.raw" 0' \
	"createType 'fullDevice' (raw host disk access) is not supported"
bad_desc h_custom custom 'RW 1024 FLAT "mix-f3.raw" 0' \
	"unsupported createType 'custom'"
bad_desc h_short monolithicFlat 'RW 1025 FLAT "mix-f3.raw" 0' \
	"extent file mix-f3.raw is too short: 524288 bytes, the extent needs 524800"
bad_desc h_not_sparse twoGbMaxExtentSparse 'RW 1024 SPARSE "mix-f3.raw"' \
	"extent file mix-f3.raw is not a SPARSE extent"
bad_desc h_capacity twoGbMaxExtentSparse 'RW 2048 SPARSE "mix-s2.vmdk"' \
	"extent file mix-s2.vmdk holds 4096 sectors, the descriptor says 2048"
bad_desc h_device monolithicFlat 'RW 1 FLAT "/dev/zero" 0' \
	"extent file /dev/zero is not a regular file"
mkfifo fifo.raw
bad_desc h_fifo monolithicFlat 'RW 1 FLAT "fifo.raw" 0' \
	"extent file fifo.raw is not a regular file"
descriptor h_no_extents.vmdk monolithicFlat
add_hostile h_no_extents h_no_extents.vmdk "no extent lines"

printf 'version=1\nCID=fffffffe\nparentCID=12345678\ncreateType="monolithicFlat"\nparentFileNameHint="base.vmdk"\nRW 1024 FLAT "mix-f3.raw" 0\n' \
	>h_delta.vmdk
add_hostile h_delta h_delta.vmdk \
	"a VMDK delta disk needs a sparse extent"
printf 'version=1\ncreateType="monolithicFlat"\nthis is not a descriptor line\n' \
	>h_junk.vmdk
add_hostile h_junk h_junk.vmdk \
	"neither an extent nor a \"key = value\" line: 'this is not a descriptor line'"
printf 'version=1\ncreateType="monolithicFlat"\ncreateType="vmfs"\n' \
	>h_twice.vmdk
add_hostile h_twice h_twice.vmdk "createType given twice"
printf 'version=7\ncreateType="monolithicFlat"\n' >h_version.vmdk
add_hostile h_version h_version.vmdk "unsupported descriptor version '7'"
{
	printf 'version=1\ncreateType="twoGbMaxExtentFlat"\n'
	for i in $(seq 4097); do
		printf 'RW 1 FLAT "mix-f3.raw" %d\n' "$i"
	done
} >h_many.vmdk
add_hostile h_many h_many.vmdk "more than 4096 extents"
{
	printf 'version=1\ncreateType="monolithicFlat"\n'
	head -c $((MiB + 1)) /dev/zero | tr '\0' '#'
} >h_huge.vmdk
add_hostile h_huge h_huge.vmdk "VMDK descriptor larger than 1048576 bytes"

echo "mkimages-vmdk-desc.sh: $(wc -l <good.list) good, $(wc -l <windows.list) windows, $(wc -l <hostile.list) hostile in $OUT"
