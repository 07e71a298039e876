#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Small edits of a QCOW2 image's metadata, to damage it for check.sh.

  qcow2poke.py IMAGE get l1 N | l2 N | reftable N | refcount CLUSTER
  qcow2poke.py IMAGE set l1 N VALUE | l2 N VALUE | reftable N VALUE |
                         refcount CLUSTER VALUE | autoclear VALUE
  qcow2poke.py IMAGE info          (cluster_size file_size)

l2 N is entry N of the L2 table that L1 entry 0 points at (8-byte
entries; not for extended L2).  refcount works for refcount_bits 8 to 64.
VALUE may be given in hex (0x...), or negative as a shell's
64-bit arithmetic makes values with bit 63 set.  Gets print the value in decimal.
"""
import struct
import sys


class Image:
    def __init__(self, path):
        self.f = open(path, 'r+b')
        h = self.read(0, 104)
        self.cluster_bits = struct.unpack('>I', h[20:24])[0]
        self.cs = 1 << self.cluster_bits
        self.l1_offset = struct.unpack('>Q', h[40:48])[0]
        self.reftable_offset = struct.unpack('>Q', h[48:56])[0]
        version = struct.unpack('>I', h[4:8])[0]
        self.order = struct.unpack('>I', h[96:100])[0] if version == 3 else 4

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def u64(self, off):
        return struct.unpack('>Q', self.read(off, 8))[0]

    def put64(self, off, v):
        self.write(off, struct.pack('>Q', v & 0xffffffffffffffff))

    def where(self, table, n):
        mask = 0x00fffffffffffe00
        if table == 'l1':
            return self.l1_offset + 8 * n
        if table == 'l2':
            return (self.u64(self.l1_offset) & mask) + 8 * n
        if table == 'reftable':
            return self.reftable_offset + 8 * n
        raise SystemExit('unknown table ' + table)

    def refcount_at(self, cluster):
        if self.order < 3:
            raise SystemExit('refcount_bits below 8 not supported')
        width = 1 << (self.order - 3)
        per = self.cs // width
        block = self.u64(self.reftable_offset + 8 * (cluster // per))
        block &= ~0x1ff
        if not block:
            raise SystemExit('cluster %d has no refcount block' % cluster)
        return block + width * (cluster % per), width


def main(argv):
    img = Image(argv[1])
    op = argv[2]
    if op == 'info':
        img.f.seek(0, 2)
        print(img.cs, img.f.tell())
        return
    what, n = argv[3], int(argv[4], 0) if len(argv) > 4 else 0
    if what == 'refcount':
        off, width = img.refcount_at(n)
        if op == 'get':
            print(int.from_bytes(img.read(off, width), 'big'))
        else:
            img.write(off, int(argv[5], 0).to_bytes(width, 'big'))
    elif what == 'autoclear':
        img.put64(88, n)
    elif op == 'get':
        print(img.u64(img.where(what, n)))
    else:
        img.put64(img.where(what, n), int(argv[5], 0))


main(sys.argv)
