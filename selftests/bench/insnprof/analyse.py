#!/usr/bin/env python3
# analyse.py KALLSYMS BASE.N OTHER.N IOS [LINES]: instructions per I/O by
# kernel function, OTHER minus BASE, largest differences first.
import bisect
import collections
import sys


def load_syms(path):
    syms = []
    for line in open(path, errors='replace'):
        p = line.split()
        if len(p) >= 3 and p[1] in 'tTwW':
            name = p[2] + (' ' + p[3] if len(p) > 3 else '')
            syms.append((int(p[0], 16), name))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def profile(path, addrs, names):
    c = collections.Counter()
    for line in open(path):
        if line.startswith('#'):
            continue
        va, n = line.split()[:2]
        j = bisect.bisect_right(addrs, int(va, 16)) - 1
        c[names[j] if j >= 0 else '?'] += int(n)
    return c


def main():
    addrs, names = load_syms(sys.argv[1])
    base = profile(sys.argv[2], addrs, names)
    other = profile(sys.argv[3], addrs, names)
    ios = float(sys.argv[4])
    lines = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    tb, to = sum(base.values()) / ios, sum(other.values()) / ios
    print('kernel instructions per I/O: %.0f and %.0f, difference %.0f'
          % (tb, to, to - tb))
    print('%9s %9s %9s  function' % ('diff', 'base', 'other'))
    diff = {k: (other[k] - base[k]) / ios for k in set(base) | set(other)}
    for k, v in sorted(diff.items(), key=lambda x: -abs(x[1]))[:lines]:
        print('%9.1f %9.1f %9.1f  %s' % (v, base[k] / ios, other[k] / ios, k))


main()
