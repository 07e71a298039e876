#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Synthetic dm-log-writes logs for replay-log's host test.

  mklog.py log OUT [SECTOR] [BREAK]   write the test log (sector size SECTOR,
                                      default 512), broken as BREAK says
  mklog.py expect OUT N SIZE [SECTOR] the replay device (SIZE bytes of 0x55)
                                      after entries [0, N) of the test log
  mklog.py list [SECTOR]              what replay-log --list must print

The model here is written from the format description in
drivers/md/dm-log-writes.c, independently of replay-log.c, so that the
two check each other.  BREAK names one defect a hostile log may have.
"""
import struct
import sys

FLUSH, FUA, DISCARD, MARK, META = 1, 2, 4, 8, 16
MAGIC = 0x6a736677736872
FILL = 0x55

# (sector, nr_sectors, flags, fill byte or mark name)
ENTRIES = [
    (8, 4, 0, 0xa1),
    (100, 1, META, 0xb2),
    (0, 0, FLUSH, None),
    (0, 0, MARK, b"mkfs"),
    (8, 2, DISCARD, None),
    (20, 2, FUA, 0xc3),
    (9, 1, FLUSH | FUA, 0xd4),
    (0, 0, MARK, b"dm-log-writes-end"),
]


def pack_entry(ss, sector, nr, flags, data_len, mark=b""):
    head = struct.pack("<QQQQ", sector, nr, flags, data_len) + mark
    return head + bytes(ss - len(head))


def build(ss, brk):
    entries = list(ENTRIES)
    nr_entries = len(entries)
    version = 1
    magic = MAGIC
    body = b""
    for i, (sector, nr, flags, what) in enumerate(entries):
        data_len = len(what) if flags & MARK else 0
        mark = what if flags & MARK else b""
        if i == 1 and brk == "beyond":
            sector = 200        # the replay device has 128 sectors
        if i == 1 and brk == "wrap":
            sector = 2**64 - 1
        if i == 1 and brk == "flags":
            flags |= 0x40
        if i == 1 and brk == "inline":
            data_len = 5
        if i == 3 and brk == "markdata":
            nr = 1
        if i == 3 and brk == "marklen":
            data_len = ss - 31
        if i == 5 and brk == "hugenr":
            nr = 2**63
        body += pack_entry(ss, sector, nr, flags, data_len, mark)
        if not flags & (DISCARD | MARK) and what is not None:
            body += bytes([what]) * (ENTRIES[i][1] * ss)
    if brk == "magic":
        magic ^= 1
    if brk == "version":
        version = 2
    if brk == "entries":
        nr_entries = 10**6
    field_ss = {"sector1000": 1000, "sector128k": 131072}.get(brk, ss)
    sb = struct.pack("<QQQI", magic, version, nr_entries, field_ss)
    log = sb + bytes(ss - len(sb)) + body
    if brk == "truncated":
        log = log[:13 * ss]                 # inside entry 5's data
    if brk == "shortsuper":
        log = log[:100]
    return log


def expect(n, size, ss):
    dev = bytearray([FILL]) * size
    for sector, nr, flags, what in ENTRIES[:n]:
        if flags & MARK or not nr:
            continue
        byte = 0 if flags & DISCARD else what
        dev[sector * ss:(sector + nr) * ss] = bytes([byte]) * (nr * ss)
    return bytes(dev)


def listing():
    names = [(FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"),
             (MARK, "MARK"), (META, "META")]
    for i, (sector, nr, flags, what) in enumerate(ENTRIES):
        f = "|".join(n for b, n in names if flags & b) or "-"
        mark = " " + what.decode() if flags & MARK else ""
        print(f"{i} {sector} {nr} {f}{mark}")


def main(argv):
    if argv[1] == "log":
        ss = int(argv[3]) if len(argv) > 3 else 512
        brk = argv[4] if len(argv) > 4 else ""
        with open(argv[2], "wb") as f:
            f.write(build(ss, brk))
    elif argv[1] == "expect":
        ss = int(argv[5]) if len(argv) > 5 else 512
        with open(argv[2], "wb") as f:
            f.write(expect(int(argv[3]), int(argv[4]), ss))
    elif argv[1] == "list":
        listing()
    else:
        sys.exit(f"mklog.py: unknown command {argv[1]}")


main(sys.argv)
