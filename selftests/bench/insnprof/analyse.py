#!/usr/bin/env python3
# analyse.py KALLSYMS BASE.N OTHER.N IOS [LINES]: instructions per I/O by
# kernel function, OTHER minus BASE, largest differences first.
# analyse.py --rounds KALLSYMS PREFIX ROUNDS IOS LINES CONSOLE: the rounds
# of PROF_REPEAT (PREFIX.2r-1 dm-linear, PREFIX.2r dm-imgfmt), compared.
# analyse.py --calls KALLSYMS PHASE.N FUNCTION...: how often each function
# was called in the phase (the runs of the block at its address) and its
# instructions per call.
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


def profile(path, addrs, names, user=None):
    c = collections.Counter()
    for line in open(path):
        if line.startswith('#'):
            p = line.split()
            if user is not None and len(p) == 3 and p[1] == 'user':
                user.append(int(p[2]))
            continue
        va, n = line.split()[:2]
        j = bisect.bisect_right(addrs, int(va, 16)) - 1
        c[names[j] if j >= 0 else '?'] += int(n)
    return c


def diff_table(first, second, ios, lines, titles):
    """Per read, second minus first by function, largest first."""
    print('%9s %9s %9s  function' % (('diff',) + titles))
    diff = {k: (second[k] - first[k]) / ios for k in set(first) | set(second)}
    for k, v in sorted(diff.items(), key=lambda x: -abs(x[1]))[:lines]:
        print('%9.1f %9.1f %9.1f  %s' % (v, first[k] / ios, second[k] / ios, k))


def pair():
    addrs, names = load_syms(sys.argv[1])
    base = profile(sys.argv[2], addrs, names)
    other = profile(sys.argv[3], addrs, names)
    ios = float(sys.argv[4])
    lines = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    tb, to = sum(base.values()) / ios, sum(other.values()) / ios
    print('kernel instructions per I/O: %.0f and %.0f, difference %.0f'
          % (tb, to, to - tb))
    diff_table(base, other, ios, lines, ('base', 'other'))


def console_runs(path):
    """INSNPROF-IOPS and INSNPROF-RUN lines: {(dev, round): facts}."""
    runs = collections.defaultdict(dict)
    for line in open(path, errors='replace'):
        p = line.split()
        if len(p) >= 7 and p[0] == 'INSNPROF-IOPS' and p[3] == 'run':
            r = runs[(p[1], int(p[4]))]
            r['iops'] = float(p[2])
            r['runtime_ms'] = float(p[6])
        elif len(p) >= 24 and p[0] == 'INSNPROF-RUN':
            r = runs[(p[2], int(p[1]))]
            r['elapsed'] = float(p[5]) - float(p[4])
            before = [int(x) for x in p[7:15]]
            after = [int(x) for x in p[16:24]]
            d = [a - b for a, b in zip(after, before)]
            r['idle'] = d[3] + d[4]		# idle + iowait, USER_HZ
            r['busy'] = sum(d) - r['idle']
    return runs


def rounds():
    addrs, names = load_syms(sys.argv[2])
    prefix, nr = sys.argv[3], int(sys.argv[4])
    ios, lines = float(sys.argv[5]), int(sys.argv[6])
    runs = console_runs(sys.argv[7])
    prof = {}
    for r in range(1, nr + 1):
        for i, dev in ((2 * r - 1, 'lin'), (2 * r, 'img')):
            user = []
            prof[(dev, r)] = profile('%s.%d' % (prefix, i), addrs, names, user)
            runs[(dev, r)]['user'] = user[0] if user else 0
    print('rounds: per read, the guest time (1e9 / fio IOPS, ns) against the')
    print('instructions of the phase (kernel, user: fio and its start too);')
    print('under -icount a nanosecond is an instruction, so time beyond the')
    print('instructions is the vCPU idle.  idle/busy: /proc/stat jiffies')
    print('(USER_HZ) of the phase, idle including iowait.')
    print('%5s %3s %9s %9s %9s %9s %9s %9s %6s %6s' % (
        'round', 'dev', 'IOPS', 'ns/read', 'insn/read', 'kernel', 'user',
        'Minsns', 'idle', 'busy'))
    for dev in ('lin', 'img'):
        for r in range(1, nr + 1):
            f = runs[(dev, r)]
            k = sum(prof[(dev, r)].values())
            tot = k + f['user']
            iops = f.get('iops', 0)
            print('%5d %3s %9.0f %9.0f %9.0f %9.0f %9.0f %9.1f %6s %6s' % (
                r, dev, iops, 1e9 / iops if iops else 0, tot / ios,
                k / ios, f['user'] / ios, tot / 1e6,
                f.get('idle', '?'), f.get('busy', '?')))
    img = list(range(1, nr + 1))
    img.sort(key=lambda r: runs[('img', r)].get('iops', 0))
    slow, fast = img[0], img[-1]
    ps, pf = prof[('img', slow)], prof[('img', fast)]
    print()
    print('dm-imgfmt, slowest round %d (%.0f IOPS) minus fastest round %d '
          '(%.0f IOPS), instructions per read: %.0f - %.0f = %.0f (kernel)'
          % (slow, runs[('img', slow)].get('iops', 0), fast,
             runs[('img', fast)].get('iops', 0), sum(ps.values()) / ios,
             sum(pf.values()) / ios,
             (sum(ps.values()) - sum(pf.values())) / ios))
    diff_table(pf, ps, ios, lines, ('fast', 'slow'))
    for dev, title in (('img', 'dm-imgfmt'), ('lin', 'dm-linear')):
        print()
        print('%s, instructions per read by round, the functions that vary '
              'most between rounds:' % title)
        ps = [prof[(dev, r)] for r in range(1, nr + 1)]
        keys = set().union(*ps)
        spread = {k: (max(p[k] for p in ps) - min(p[k] for p in ps)) / ios
                  for k in keys}
        print(' '.join('%8s' % ('r%d' % r) for r in range(1, nr + 1)) +
              '  function')
        for k, _ in sorted(spread.items(), key=lambda x: -x[1])[:lines]:
            print(' '.join('%8.1f' % (p[k] / ios) for p in ps) + '  ' + k)


def calls():
    addrs, names = load_syms(sys.argv[2])
    start = dict(zip(addrs, names))
    n = collections.Counter()
    for line in open(sys.argv[3]):
        p = line.split()
        if len(p) > 2 and not line.startswith('#'):
            name = start.get(int(p[0], 16))
            if name:
                n[name] += int(p[2])
    insns = profile(sys.argv[3], addrs, names)
    print('%12s %14s %10s  function' % ('calls', 'instructions', 'per call'))
    for f in sys.argv[4:]:
        k = [x for x in insns if x == f or x.startswith(f + ' ')]
        c, i = sum(n[x] for x in k), sum(insns[x] for x in k)
        print('%12d %14d %10.0f  %s' % (c, i, i / c if c else 0, f))


if len(sys.argv) > 1 and sys.argv[1] == '--rounds':
    rounds()
elif len(sys.argv) > 1 and sys.argv[1] == '--calls':
    calls()
else:
    pair()
