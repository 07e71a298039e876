#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Hostile input to the imgfmt helper, in userspace (no VM; some checks
# need root and say so when skipped):
#
#   helper-hostile.sh [IMAGEDIR [IMGFMT]]
#
# - FIFOs (with no writer) as images and as extent files: refused at once,
#   in one line naming the file;
# - device names for attach that are too long, with the derived names
#   (NAME-imageN, NAMEpN) in mind;
# - image-derived text (extent file names, descriptor lines) in `info`
#   output and in error lines: escaped, capped, one line;
# - a 4096-extent descriptor under a lowered open file limit;
# - `info --output=json` and text `info` over every test image under
#   IMAGEDIR (default: build/images) and every fuzz corpus and seed file
#   (build/fuzz/*-corpus, *-seeds): JSON must parse (python3), text lines
#   must be "key: value".
#
# Prints TAP.  IMGFMT defaults to this tree's userspace/imgfmt.

set -uo pipefail
export LC_ALL=C

TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common.sh source-path=SCRIPTDIR
. "$TOP/selftests/common.sh"
BUILD=${IMGFMT_BUILD:-$TOP/build}
DIR=${1:-$BUILD/images}
IMGFMT=${2:-${IMGFMT:-$TOP/userspace/imgfmt}}
IMGFMT=$(cd "$(dirname "$IMGFMT")" && pwd)/$(basename "$IMGFMT")
# The checks run in a directory of their own.
[ ! -d "$DIR" ] || DIR=$(cd "$DIR" && pwd)
# How long a command may take before it counts as hanging.
WAIT=${WAIT:-10}

[ -x "$IMGFMT" ] || tap_bail "imgfmt helper $IMGFMT not built (make -C userspace)"
command -v python3 >/dev/null || tap_bail "python3 is needed to check JSON"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || tap_bail "cannot enter $TMP"

# Run imgfmt with a time limit; stdout to out, stderr to err, status in rc.
run()
{
	timeout "$WAIT" "$IMGFMT" "$@" >out 2>err
	rc=$?
}

# The command failed with status $1, one line on stderr matching $2.
one_line_error()	# STATUS PATTERN
{
	if [ $rc -eq 124 ]; then
		why="hung for ${WAIT}s"
		return 1
	fi
	[ $rc -eq "$1" ] || { why="exit status $rc: $(cat err)"; return 1; }
	[ "$(wc -l <err)" -eq 1 ] || { why="stderr: $(cat err)"; return 1; }
	grep -qE -- "$2" err || { why="stderr: $(cat err)"; return 1; }
}

# --- FIFOs ---------------------------------------------------------------

mkfifo fifo
fifo_refused()		# COMMAND ARGS...
{
	run "$@"
	one_line_error 1 "^imgfmt: fifo: a FIFO, not a regular file or block device$"
}
tap_check "info of a FIFO is refused at once" fifo_refused info fifo
fifo_json()
{
	fifo_refused info --output=json fifo || return 1
	python3 -c 'import json, sys; sys.exit("error" not in json.load(open("out")))' ||
		{ why="stdout: $(cat out)"; return 1; }
}
tap_check "info --output=json of a FIFO is an error object" fifo_json
tap_check "table of a FIFO is refused at once" fifo_refused table fifo /dev/loop0
tap_check "read of a FIFO is refused at once" fifo_refused read fifo /dev/null
# Refused before any device is set up: no root or device-mapper needed.
tap_check "attach of a FIFO is refused at once" fifo_refused attach --name t fifo

printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "fifo" 0\n' >fifo.vmdk
fifo_extent()
{
	run info fifo.vmdk
	one_line_error 1 "^imgfmt: fifo.vmdk:3: extent file fifo is not a regular file$"
}
tap_check "a FIFO as extent file is refused at once" fifo_extent

# --- Device names ---------------------------------------------------------

# A string of LEN letters n.
letters()		# LEN
{
	printf "%${1}s" "" | tr ' ' n
}

# NAME-image4096 with the uuid prefix IMGFMT- must fit in a dm uuid (128):
# NAME may have 111 characters.  The image does not exist: the name is
# checked first, nothing is set up on the host.
name_too_long()
{
	run attach --name "$(letters 112)" /nonexistent.qcow2
	one_line_error 2 "^imgfmt: device name 'n{112}' is too long: 112 characters, at most 111 "
}
tap_check "attach refuses a 112-character --name in one line" name_too_long
name_longest()
{
	run attach --name "$(letters 111)" /nonexistent.qcow2
	one_line_error 1 "^imgfmt: cannot open /nonexistent.qcow2: "
}
tap_check "attach takes a 111-character --name" name_longest
name_escaped()
{
	run attach --name "$(printf 'a\nb')" /nonexistent.qcow2
	one_line_error 2 '^imgfmt: bad device name .a\\x0ab.: '
}
tap_check "a bad --name is shown escaped, on one line" name_escaped
# A file name too long for a device name gets a shortened one (the VM test
# checks which): attach goes on to open the file.
auto_name_long()
{
	run attach "/nonexistent/$(letters 200).qcow2"
	one_line_error 1 "^imgfmt: cannot open /nonexistent/n{200}.qcow2: "
}
tap_check "attach makes a name from a 200-character file name" auto_name_long

# --- Image-derived text in output and errors -------------------------------

# Every line of info's text output: "key: value" (or "key:" when empty),
# printable ASCII, at most 512 bytes (keys are short, values cut at 255).
text_lines_ok()		# FILE
{
	local bad

	bad=$(LC_ALL=C grep -nvE '^[a-z0-9-]+:( [ -~]*)?$' "$1" | head -3)
	[ -z "$bad" ] || { why="bad lines: $bad"; return 1; }
	bad=$(awk 'length($0) > 512 { print NR ": " length($0) " bytes"; exit }' "$1")
	[ -z "$bad" ] || { why="line too long: $bad"; return 1; }
}

# Extent files whose names hold bytes that are not ASCII (the parser
# refuses control characters there), a backslash
# and 200 more characters: info lists them on one line each, escaped and
# cut; a missing one is named in a one-line error.
long=$(letters 240)
nl_name=$(printf 'nl\377x\200\\%s.raw' "$long")
head -c 512 /dev/zero >"$nl_name"
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "%s" 0\n' \
	"$nl_name" >nl.vmdk
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "%s-gone" 0\n' \
	"$nl_name" >nl-gone.vmdk
escaped_extent()
{
	run info nl.vmdk
	[ $rc -eq 0 ] || { why="exit status $rc: $(cat err)"; return 1; }
	text_lines_ok out || return 1
	grep -qE '^extent-1: RW 1 FLAT "nl\\xffx\\x80\\x5cn{10}.*\.\.\." 0$' out ||
		{ why="extent line: $(grep extent-1 out)"; return 1; }
}
tap_check "info shows an odd extent file name escaped and cut" escaped_extent
escaped_extent_error()
{
	run info nl-gone.vmdk
	one_line_error 1 '^imgfmt: nl-gone.vmdk:3: cannot open extent file nl\\xffx\\x80\\x5cn{10}'
	[ $? -eq 0 ] || return 1
	[ "$(wc -c <err)" -lt 600 ] || { why="$(wc -c <err) bytes"; return 1; }
	grep -qx 'error: .*' out && text_lines_ok out
}
tap_check "an error naming an odd extent file is one escaped line" \
	escaped_extent_error
# A descriptor line quoted in an error: control bytes escaped.
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "x" 0 \033]0;pwned\007\n' \
	>esc-line.vmdk
escaped_desc_line()
{
	run info esc-line.vmdk
	one_line_error 1 "^imgfmt: esc-line.vmdk:3: unexpected '\\\\x1b\\]0;pwned\\\\x07' after the extent$" &&
		text_lines_ok out
}
tap_check "a descriptor line quoted in an error is escaped" escaped_desc_line
# A createType of 63 bytes of control characters: escaped and cut.
ct=$(head -c 63 /dev/zero | tr '\0' '\001')
printf 'version=1\ncreateType="%s"\nRW 1 FLAT "x" 0\n' "$ct" >esc-ct.vmdk
escaped_create_type()
{
	run info esc-ct.vmdk
	one_line_error 1 "^imgfmt: esc-ct.vmdk:2: bad value for createType: " &&
		text_lines_ok out
}
tap_check "a createType of control characters is escaped" escaped_create_type

# --- 4096 extents under a lowered open file limit --------------------------

# The documented limit: 4096 extents, each a sector of one flat file, so
# that info and table hold 4096 files open at once.
head -c $((4096 * 512)) /dev/zero >one.raw
{
	printf 'version=1\ncreateType="twoGbMaxExtentFlat"\n'
	seq 0 4095 | sed 's/.*/RW 1 FLAT "one.raw" &/'
} >many.vmdk
seq -f '7:%g' 0 4095 >many.devs
# Can this process raise its hard limit (root with CAP_SYS_RESOURCE)?
can_raise_hard=0
(ulimit -n 256 && ulimit -Hn 512) 2>/dev/null && can_raise_hard=1
many_ok()		# ULIMIT-ARGS...
{
	# shellcheck disable=SC2046 # one DEV per word
	(ulimit "$@" && run info many.vmdk && [ $rc -eq 0 ] &&
		grep -qx 'extents: 4096' out &&
		run table many.vmdk $(cat many.devs) && [ $rc -eq 0 ] &&
		[ "$(wc -l <out)" -eq 4096 ]) ||
		{ why="exit status $rc: $(head -c 300 err)"; return 1; }
}
many_refused()		# ULIMIT-ARGS...
{
	(ulimit "$@" && run info many.vmdk &&
		one_line_error 1 '^imgfmt: many.vmdk needs 4160 open files \(4096 of its own\), but the open file limit \(ulimit -n\) is 256 and cannot be raised') ||
		{ why="exit status $rc: $(head -c 300 err)"; return 1; }
}
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 4160 ]; then
	tap_check "info and table of 4096 extents under a soft ulimit -n 256" \
		many_ok -Sn 256
else
	tap_result skip "info and table of 4096 extents under a soft ulimit -n 256" \
		"the hard limit is $hard"
fi
if [ $can_raise_hard = 1 ]; then
	tap_check "info and table of 4096 extents under ulimit -n 256 (root raises the hard limit)" \
		many_ok -n 256
else
	tap_check "info of 4096 extents under a hard ulimit -n 256 fails in one line" \
		many_refused -n 256
fi

# --- info output over every image and fuzz input -----------------------------

# For each file: `info --output=json` prints one JSON object in UTF-8
# (python3's json module parses it) with "filename", and "error" exactly
# when the exit status is 1; text `info` prints only "key: value" lines of
# printable ASCII, with an "error:" line when it fails; on stderr every
# line is one printable "imgfmt: " line.  Exit status 0 or 1, never a hang.
cat >check-info.py <<'PY'
import json, os, re, subprocess, sys

imgfmt, wait = sys.argv[1], float(sys.argv[2])
line_re = re.compile(rb'^[a-z0-9-]+:( [\x20-\x7e]*)?$')
bad = []

def run(args):
    try:
        p = subprocess.run([imgfmt, "info"] + args, capture_output=True,
                           timeout=wait)
    except subprocess.TimeoutExpired:
        return None
    return p

def check(path):
    p = run(["--output=json", path])
    if p is None:
        return "json: hung"
    if p.returncode not in (0, 1):
        return "json: exit status %d" % p.returncode
    try:
        obj = json.loads(p.stdout.decode("utf-8"))
    except ValueError as e:
        return "json: %s: %r" % (e, p.stdout[:200])
    if not isinstance(obj, dict) or "filename" not in obj:
        return "json: no object with a filename"
    if ("error" in obj) != (p.returncode == 1):
        return "json: error field and exit status %d disagree" % p.returncode
    p = run([path])
    if p is None:
        return "text: hung"
    if p.returncode not in (0, 1):
        return "text: exit status %d" % p.returncode
    lines = p.stdout.split(b"\n")
    if lines[-1] != b"":
        return "text: no final newline"
    for l in lines[:-1]:
        if not line_re.match(l) or len(l) > 512:
            return "text: bad line %r" % l[:200]
    if p.returncode == 1:
        if not any(l.startswith(b"error:") for l in lines):
            return "text: no error: line"
        # The error line, after any notes of the format code (uport.c's
        # imgfmt_log(), one line each).
        err = p.stderr.split(b"\n")
        if err[-1] != b"" or len(err) < 2:
            return "text: stderr does not end a line: %r" % p.stderr[:200]
        for l in err[:-1]:
            if not line_re.match(l) or not l.startswith(b"imgfmt: "):
                return "text: bad stderr line %r" % l[:200]
    return None

count = 0
for top in sys.argv[3:]:
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            count += 1
            why = check(path)
            if why:
                bad.append("%s: %s" % (path, why))
print("checked %d files" % count)
for b in bad[:20]:
    print(b)
sys.exit(1 if bad else 0)
PY
info_everywhere()	# DIR...
{
	python3 check-info.py "$IMGFMT" "$WAIT" "$@" >py.out 2>&1 ||
		{ why=$(head -20 py.out); return 1; }
	echo "# $(head -1 py.out) in $*"
}
tap_check "info (text and JSON) of this test's hostile files" info_everywhere "$TMP"
if [ -d "$DIR" ]; then
	tap_check "info (text and JSON) of every test image" info_everywhere "$DIR"
else
	tap_fail "info (text and JSON) of every test image" "no $DIR (run the images step of make check)"
fi
mapfile -t fuzz < <(ls -d "$BUILD"/fuzz/*-corpus "$BUILD"/fuzz/*-seeds 2>/dev/null)
if [ ${#fuzz[@]} -gt 0 ]; then
	tap_check "info (text and JSON) of every fuzz corpus and seed file" \
		info_everywhere "${fuzz[@]}"
else
	tap_result skip "info (text and JSON) of every fuzz corpus and seed file" \
		"no $BUILD/fuzz (run selftests/fuzz/run.sh)"
fi

# JSON strings: bytes that are not UTF-8 as \u00NN, UTF-8 as it is.
utf8_name=$(printf 'caf\303\251.raw')
head -c 512 /dev/zero >"$utf8_name"
printf 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "%s" 0\nRW 1 FLAT "%s" 0\n' \
	"$nl_name" "$utf8_name" >names.vmdk
json_strings()
{
	run info --output=json names.vmdk
	[ $rc -eq 0 ] || { why="exit status $rc: $(cat err)"; return 1; }
	python3 -c '
import json, sys
d = json.loads(open("out", encoding="utf-8").read())["format-specific"]["data"]
names = [e["filename"] for e in d["extents"]]
sys.exit(0 if names[0].startswith("nl\u00ffx\u0080\\nnn") and
	 names[1] == "caf\u00e9.raw" else 1)' || { why="$(cat out)"; return 1; }
}
tap_check "info --output=json escapes bytes that are not UTF-8" json_strings
json_option_forms()
{
	run info --output json names.vmdk
	cp out out.1
	run info --output=json names.vmdk
	cmp -s out out.1 || { why="--output json and --output=json differ"; return 1; }
	run info --output=xml names.vmdk
	one_line_error 2 "^imgfmt: info: --output must be text or json, not 'xml'$"
}
tap_check "info takes --output json and --output=json, refuses others" \
	json_option_forms

# The fields qemu-img info has too must say what it says, for every image
# of good.list QEMU can read (VMDK descriptors apart: qemu-img names the
# extent files by their full paths).
cat >vs-qemu.py <<'PY'
import json, subprocess, sys

imgfmt, top = sys.argv[1], sys.argv[2]
keys = ["format", "virtual-size", "cluster-size", "dirty-flag",
	"backing-filename", "backing-filename-format"]
data_keys = ["compat", "compression-type", "lazy-refcounts",
	     "refcount-bits", "corrupt", "extended-l2"]
bad, count = [], 0
for line in open(top + "/good.list"):
    f = line.split()
    path = top + "/" + f[1]
    if len(f) < 6 or f[5] not in ("qcow2", "qcow"):
        continue
    ours = json.loads(subprocess.run([imgfmt, "info", "--output=json", path],
                                     capture_output=True).stdout)
    q = subprocess.run(["qemu-img", "info", "--output=json", path],
                       capture_output=True)
    if q.returncode:
        continue
    theirs = json.loads(q.stdout)
    count += 1
    # QEMU counts whole sectors: it rounds the header's size down to 512.
    if isinstance(ours.get("virtual-size"), int):
        ours["virtual-size"] -= ours["virtual-size"] % 512
    for k in keys:
        if ours.get(k) != theirs.get(k):
            bad.append("%s: %s: %r, qemu-img: %r" % (f[1], k, ours.get(k), theirs.get(k)))
    fs_o, fs_t = ours.get("format-specific", {}), theirs.get("format-specific", {})
    if fs_o.get("type") != fs_t.get("type"):
        bad.append("%s: format-specific type %r, qemu-img: %r" % (f[1], fs_o.get("type"), fs_t.get("type")))
    for k in data_keys:
        if k in fs_t.get("data", {}) and fs_o.get("data", {}).get(k) != fs_t["data"][k]:
            bad.append("%s: %s: %r, qemu-img: %r" % (f[1], k, fs_o.get("data", {}).get(k), fs_t["data"][k]))
print("compared %d images" % count)
print("\n".join(bad[:20]))
sys.exit(1 if bad or not count else 0)
PY
json_vs_qemu()
{
	python3 vs-qemu.py "$IMGFMT" "$DIR" >py.out 2>&1 ||
		{ why=$(head -20 py.out); return 1; }
	echo "# $(head -1 py.out)"
}
if [ -s "$DIR/good.list" ] && command -v qemu-img >/dev/null; then
	tap_check "info --output=json agrees with qemu-img info --output=json" json_vs_qemu
else
	tap_result skip "info --output=json agrees with qemu-img info --output=json" \
		"no $DIR/good.list or no qemu-img"
fi

echo "1..$TAP_N"
echo "# $TAP_PASS passed, $TAP_FAIL failed"
[ "$TAP_FAIL" -eq 0 ]
