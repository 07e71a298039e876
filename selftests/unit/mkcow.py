#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Write UML COW test files of every layout, from the format's description.

    mkcow.py OUTDIR            the unit test's files (cow_unit.c)
    mkcow.py --seeds OUTDIR    small files of every layout, for the fuzzer
    mkcow.py --over LAYOUT BACKING NAME OUT.cow OUT.raw
                               a COW file over the existing file BACKING
                               (named NAME in the header; its size and
                               mtime recorded as UML does), and the disk
                               it reads as (chain-resolve.sh)

The layouts, as arch/um/drivers/cow_user.c (Linux) and block/cow.c (QEMU,
until 2014) define them; every integer is big-endian but in version 1,
which is in the writing host's order:

  v1        magic 0, version 4, backing_file 8 (256), mtime 264 (u32),
            size 268 (u64), sectorsize 276; 280 bytes, bitmap at 280
  v2        magic 0, version 4, backing_file 8 (4096), mtime 4104,
            size 4108, sectorsize 4116; 4120 bytes, bitmap at 4120
  v2 QEMU   magic 0, version 4, backing_file 8 (1024), mtime 1032,
            padding 1036, size 1040, sectorsize 1048, padding 1052;
            1056 bytes, bitmap at 1056
  v3        magic 0, version 4, mtime 8, size 12, sectorsize 20,
            alignment 24, cow_format 28, backing_file 32 (4096);
            4128 bytes, bitmap at 4128 rounded up to alignment
  v3 64-bit magic 0, version 4, mtime 8, padding 12, size 16,
            sectorsize 24, alignment 28, cow_format 32, backing_file 36;
            4136 bytes, bitmap at 4136 rounded up to alignment

The bitmap has one bit per 512-byte sector, least significant bit first.
The data area starts after the bitmap, rounded up to 512 (v1, v2: UML sized
the bitmap as (size + 511) // 4096 bytes; QEMU as (size // 512 + 7) // 8)
or to the alignment (v3: ceil(ceil(size / 512) / 8) bytes), and holds
sector n at data_offset + 512 n.  A clear bit reads the backing file.

For each file NAME.cow of the unit set, NAME.kinds has one letter per
sector (D: in the data area, U: unallocated, Z: a set bit whose data lies
past the end of the file, which reads as zeroes) and NAME.raw the virtual
disk's bytes.  The manifest has a line per file:

    map NAME VERSION SIZE DATA_OFFSET BACKING
    refuse NAME MESSAGE
"""
import os
import random
import shutil
import struct
import subprocess
import sys

MAGIC = 0x4F4F4F4D
SECTOR = 512


def round_up(x, a):
    return (x + a - 1) // a * a


def name_field(path, width):
    b = path.encode() if isinstance(path, str) else path
    return b + b"\0" * (width - len(b)) if len(b) < width else b[:width]


class Cow:
    """One file: a layout, its fields, a bitmap, data and a backing file."""

    def __init__(self, layout, size, backing, align=4096, order=">"):
        self.layout = layout
        self.size = size
        self.backing = backing
        self.align = align
        self.order = order
        self.sectors = (size + SECTOR - 1) // SECTOR
        self.set = set()
        self.mtime = 0x5EADBEEF
        self.sectorsize = SECTOR
        self.cow_format = 0
        self.version = None
        self.place()

    def place(self):
        size, lay = self.size, self.layout
        if lay in ("v3", "v3-64"):
            hlen = 4128 if lay == "v3" else 4136
            self.bitmap_offset = round_up(hlen, self.align)
            blen = (self.sectors + 7) // 8
            self.data_offset = round_up(self.bitmap_offset + blen, self.align)
            self.bitmap_len = blen
        elif lay == "qemu":
            self.bitmap_offset = 1056
            blen = (size // SECTOR + 7) // 8
            self.data_offset = round_up(1056 + blen, SECTOR)
            self.bitmap_len = blen
        else:
            self.bitmap_offset = 280 if lay == "v1" else 4120
            blen = (size + SECTOR - 1) // (8 * SECTOR)
            self.data_offset = round_up(self.bitmap_offset + blen, SECTOR)
            self.bitmap_len = (self.sectors + 7) // 8

    def header(self):
        o, lay = self.order, self.layout
        ver = self.version
        if lay == "v1":
            return struct.pack(o + "II256sIQI", MAGIC, ver or 1,
                               name_field(self.backing, 256), self.mtime,
                               self.size, self.sectorsize)
        if lay == "v2":
            return struct.pack(o + "II4096sIQI", MAGIC, ver or 2,
                               name_field(self.backing, 4096), self.mtime,
                               self.size, self.sectorsize)
        if lay == "qemu":
            return struct.pack(o + "II1024sIIQII", MAGIC, ver or 2,
                               name_field(self.backing, 1024), self.mtime, 0,
                               self.size, self.sectorsize, 0)
        if lay == "v3":
            return struct.pack(o + "IIIQIII4096s", MAGIC, ver or 3,
                               self.mtime, self.size, self.sectorsize,
                               self.align, self.cow_format,
                               name_field(self.backing, 4096))
        # The unpacked 64-bit struct: its padding was never initialised.
        return struct.pack(o + "IIIIQIII4096sI", MAGIC, ver or 3, self.mtime,
                           0xA5A5A5A5, self.size, self.sectorsize, self.align,
                           self.cow_format, name_field(self.backing, 4096),
                           0x5A5A5A5A)

    def bitmap(self):
        b = bytearray(self.bitmap_len)
        for s in self.set:
            b[s // 8] |= 1 << (s % 8)
        return bytes(b)

    @staticmethod
    def sector_data(s):
        return bytes(((s * 7 + i) ^ 0x5C) & 0xFF for i in range(SECTOR))

    def write(self, path, file_size=None, header=None):
        """file_size: None is UML's (the whole data area), else a length."""
        with open(path, "wb") as f:
            f.write(header if header is not None else self.header())
            f.seek(self.bitmap_offset)
            f.write(self.bitmap())
            for s in sorted(self.set):
                f.seek(self.data_offset + s * SECTOR)
                f.write(self.sector_data(s))
            if file_size is None:
                file_size = self.data_offset + self.sectors * SECTOR
            f.truncate(file_size)
        self.file_size = file_size

    def expected(self, backing_bytes):
        kinds, raw = bytearray(), bytearray()
        for s in range(self.sectors):
            if s not in self.set:
                kinds += b"U"
                chunk = backing_bytes[s * SECTOR:(s + 1) * SECTOR]
                raw += chunk + b"\0" * (SECTOR - len(chunk))
            elif self.data_offset + (s + 1) * SECTOR <= self.file_size:
                kinds += b"D"
                raw += self.sector_data(s)
            else:
                kinds += b"Z"
                raw += b"\0" * SECTOR
        return bytes(kinds), bytes(raw[:self.size])


def pattern(cow, seed):
    """Runs of set and clear bits: byte-aligned, not, single, long."""
    rnd = random.Random(seed)
    n, s = cow.sectors, 0
    while s < n:
        length = rnd.choice([1, 1, 2, 3, 7, 8, 9, 16, 40, 300])
        if rnd.random() < 0.45:
            cow.set.update(range(s, min(n, s + length)))
        s += length + rnd.choice([0, 1, 5, 8, 13, 64])
    cow.set.add(0)


def backing_file(path, size, seed):
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def read_uml_header(path):
    """A v3 file made by uml_mkcow, read back from the description."""
    with open(path, "rb") as f:
        h = f.read(4128)
    magic, ver, _mt, size, ss, align, fmt = struct.unpack(">IIIQIII", h[:32])
    assert magic == MAGIC and ver == 3 and ss == 512 and fmt == 0, h[:32]
    return size, align, h[32:].split(b"\0", 1)[0]


class Writer:
    def __init__(self, out):
        self.out = out
        self.lines = []

    def valid(self, name, cow, backing_bytes, file_size=None, header=None):
        path = os.path.join(self.out, name)
        cow.write(path + ".cow", file_size, header)
        kinds, raw = cow.expected(backing_bytes)
        with open(path + ".kinds", "wb") as f:
            f.write(kinds)
        with open(path + ".raw", "wb") as f:
            f.write(raw)
        version = {"v1": 1, "v2": 2, "qemu": 2}.get(cow.layout, 3)
        back = cow.backing.decode() if isinstance(cow.backing, bytes) \
            else cow.backing
        self.lines.append(f"map {name} {version} {cow.size} "
                          f"{cow.data_offset} {back}")

    def refuse(self, name, data, message):
        with open(os.path.join(self.out, name + ".cow"), "wb") as f:
            f.write(data)
        self.lines.append(f"refuse {name} {message}")

    def finish(self):
        with open(os.path.join(self.out, "manifest"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def cow_bytes(cow, file_size=None):
    """The file cow describes, as bytes (for hostile variants)."""
    tmp = bytearray(cow.header())
    end = cow.data_offset + cow.sectors * SECTOR if file_size is None \
        else file_size
    tmp += b"\0" * max(0, end - len(tmp))
    bm = cow.bitmap()
    tmp[cow.bitmap_offset:cow.bitmap_offset + len(bm)] = bm
    return bytes(tmp[:end])


def patch(data, off, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def unit_set(out):
    w = Writer(out)
    base = os.path.join(out, "base.img")
    bb = backing_file(base, 33 << 20, 1)
    mib = 1 << 20

    cases = [
        ("v1-le", Cow("v1", mib, base, order="<"), None),
        ("v1-be", Cow("v1", mib + 5 * SECTOR, base, order=">"), None),
        # 33 MiB: the bitmap spans three 4 KiB pieces of the cache.
        ("v2", Cow("v2", 33 * mib, base), None),
        ("v2-qemu", Cow("qemu", 2 * mib, base), None),
        ("v3", Cow("v3", 3 * mib + 7 * SECTOR, base), None),
        ("v3-align64k", Cow("v3", mib, base, align=65536), None),
        ("v3-64bit", Cow("v3-64", 2 * mib, base), None),
    ]
    for i, (name, cow, size) in enumerate(cases):
        pattern(cow, 100 + i)
        w.valid(name, cow, bb, size)

    # QEMU's file ends where the last written sector does: the sectors
    # after it read as zeroes although their bits are set.
    cow = Cow("qemu", mib, base)
    pattern(cow, 7)
    cow.set.update(range(1500, 2048))
    w.valid("v2-qemu-short", cow, bb, cow.data_offset + 1700 * SECTOR)
    # A fresh QEMU file: header and bitmap only, not even a whole sector.
    cow = Cow("qemu", mib, base)
    cow.set.update([3, 4, 100])
    w.valid("v2-qemu-fresh", cow, bb, 1056 + cow.bitmap_len)
    # A virtual size inside a sector: bytes past it read as zeroes.
    cow = Cow("v3", 100 * SECTOR + 100, base)
    cow.set.update(range(90, 101))
    w.valid("v3-odd-size", cow, bb)
    # UML's own rounding (v2), a sector count that is not a multiple of 8
    # but leaves the bitmap room before the data.
    cow = Cow("v2", 4001 * SECTOR, base)
    pattern(cow, 9)
    cow.set.add(4000)
    w.valid("v2-rounding", cow, bb)
    # The unpacked layout's padding may hold anything; so may the v2
    # name's tail in UML's layout, which must not look like QEMU's.
    cow = Cow("v2", 64 * 1024, base)
    cow.set.update(range(0, 128, 3))
    hdr = bytearray(cow.header())
    hdr[1030:1130] = bytes(range(100))
    hdr[2000:2100] = bytes(range(100))
    w.valid("v2-name-tail", cow, bb, header=bytes(hdr))

    mkcow = shutil.which("uml_mkcow")
    if mkcow:
        odd = os.path.join(out, "base-odd.img")
        ob = backing_file(odd, 1000000, 2)
        path = os.path.join(out, "uml-mkcow.cow")
        subprocess.run([mkcow, "-f", path, odd], check=True)
        size, align, name = read_uml_header(path)
        cow = Cow("v3", size, name, align=align)
        pattern(cow, 11)
        cow.set.add(cow.sectors - 1)
        with open(path, "rb") as f:
            hdr = f.read(4128)
        w.valid("uml-mkcow", cow, ob, header=hdr)

    hostile(w, base)
    w.finish()


def hostile(w, base):
    v3 = Cow("v3", 1 << 20, base)
    good = cow_bytes(v3)
    r = w.refuse
    r("bad-magic", patch(good, 0, ">I", 0x4F4F4F4E), "UML COW bad magic number")
    r("version-4", patch(good, 4, ">I", 4), "UML COW unsupported version")
    r("version-0", patch(good, 4, ">I", 0), "UML COW unsupported version")
    r("v3-little-endian", patch(patch(good, 0, "<I", MAGIC), 4, "<I", 3),
      "UML COW version 2 or 3 header not big-endian")
    for name, align, msg in [
            ("align-0", 0, "UML COW alignment is not a power of two"),
            ("align-3000", 3000, "UML COW alignment is not a power of two"),
            ("align-256", 256,
             "UML COW alignment out of range (512 bytes to 1 MiB)"),
            ("align-huge", 1 << 30,
             "UML COW alignment out of range (512 bytes to 1 MiB)"),
            ("align-2g", 1 << 31,
             "UML COW alignment out of range (512 bytes to 1 MiB)")]:
        r(name, patch(good, 24, ">I", align), msg)
    for name, ss in [("sectorsize-0", 0), ("sectorsize-1000", 1000),
                     ("sectorsize-4096", 4096)]:
        r(name, patch(good, 20, ">I", ss),
          "UML COW sector size is not 512 bytes")
    r("v1-sectorsize-1000", patch(cow_bytes(Cow("v1", 1 << 20, base,
                                                order="<")), 276, "<I", 1000),
      "UML COW sector size is not 512 bytes")
    r("cow-format-1", patch(good, 28, ">I", 1), "UML COW unknown cow_format")
    r("size-0", patch(good, 12, ">Q", 0), "UML COW virtual size is zero")
    r("size-max", patch(good, 12, ">Q", (1 << 64) - 1),
      "UML COW virtual size too large")
    r("size-2^62+1", patch(good, 12, ">Q", (1 << 62) + 1),
      "UML COW virtual size too large")
    r("v1-size-max", patch(cow_bytes(Cow("v1", 1 << 20, base, order="<")),
                           268, "<Q", (1 << 64) - 512),
      "UML COW virtual size too large")
    # 1 TiB: a 256 MiB bitmap, in a 1 MiB file.
    r("bitmap-past-end", patch(good, 12, ">Q", 1 << 40),
      "UML COW bitmap beyond end of device")
    r("bitmap-cut", good[:v3.bitmap_offset + v3.bitmap_len - 1],
      "UML COW bitmap beyond end of device")
    big = Cow("v3", 1 << 20, base, align=1 << 20)
    r("data-past-end", cow_bytes(big, big.bitmap_offset + big.bitmap_len),
      "UML COW data area beyond end of device")
    # v2's rounding leaves the last sectors' bits on the first data byte.
    ov = Cow("v2", 3905 * SECTOR, base)
    assert ov.bitmap_offset + ov.bitmap_len > ov.data_offset
    r("v2-bitmap-overlap", cow_bytes(ov), "UML COW bitmap overlaps the data area")
    r("name-unterminated", good[:32] + b"/" * 4096 + good[4128:],
      "UML COW backing file name not terminated")
    v1 = cow_bytes(Cow("v1", 1 << 20, base, order="<"))
    r("v1-name-unterminated", v1[:8] + b"x" * 256 + v1[264:],
      "UML COW backing file name not terminated")
    r("name-too-long", good[:32] + b"/" * 1024 + b"\0" * 3072 + good[4128:],
      "UML COW backing file name too long")
    r("short-header", good[:4127], "UML COW image is smaller than its header")
    r("tiny", good[:7], "UML COW image is smaller than its header")
    r("v1-short-header", v1[:279], "UML COW image is smaller than its header")


def seed_set(out):
    """Small files (well below the fuzzer's 1 MiB inputs) of every layout."""
    for i, (lay, order, size, align) in enumerate([
            ("v1", "<", 64 << 10, 0), ("v1", ">", 40 << 10, 0),
            ("v2", ">", 64 << 10, 0), ("qemu", ">", 64 << 10, 0),
            ("v3", ">", 64 << 10, 4096), ("v3", ">", 33 << 10, 512),
            ("v3-64", ">", 64 << 10, 4096)]):
        cow = Cow(lay, size, "/srv/uml/root_fs", align=align or 4096,
                  order=order)
        pattern(cow, 200 + i)
        path = os.path.join(out, f"seed-{i}-{lay}.cow")
        cow.write(path)


def over(layout, backing, name, out, raw):
    st = os.stat(backing)
    cow = Cow(layout, st.st_size, name)
    cow.mtime = int(st.st_mtime) & 0xFFFFFFFF
    pattern(cow, 77)
    cow.write(out)
    with open(backing, "rb") as f:
        _, data = cow.expected(f.read())
    with open(raw, "wb") as f:
        f.write(data)


def main():
    args = sys.argv[1:]
    if args and args[0] == "--over":
        if len(args) != 6:
            sys.exit(__doc__)
        over(*args[1:])
        return
    seeds = bool(args) and args[0] == "--seeds"
    if seeds:
        args = args[1:]
    if len(args) != 1:
        sys.exit(__doc__)
    os.makedirs(args[0], exist_ok=True)
    (seed_set if seeds else unit_set)(args[0])


if __name__ == "__main__":
    main()
