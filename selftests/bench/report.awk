# SPDX-License-Identifier: GPL-2.0-only
#
# make bench: turn the guest's BENCH/IMGSTAT/NOTYET lines of one run (one
# mode) into the results table, the imgfmt counters and the goal verdicts.
# Plain POSIX awk (mawk).  Variables: mode (label for the headings).
#
# Ratios are medians of per-round ratios: the paths of one round ran next to
# each other, so a slow stretch of the host hits all of them alike.

function median(list,    n, a) {
	n = sorted(list, a)
	if (n == 0)
		return ""
	return quantile(a, n, 0.5)
}

# sorted(list, a): sort the numbers of list into a[1..n]; returns n
function sorted(list, a,    n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--)
			a[j + 1] = a[j]
		a[j + 1] = t
	}
	return n
}

# Quantile q of sorted a[1..n], linear interpolation.
function quantile(a, n, q,    h, lo) {
	h = (n - 1) * q + 1
	lo = int(h)
	if (lo >= n)
		return a[n] + 0
	return a[lo] + (h - lo) * (a[lo + 1] - a[lo])
}

# Spread of a list: (max - min) / median for up to 4 values, else the
# interquartile range / median (robust against the odd wild round).
function spread(list,    n, a, m) {
	n = sorted(list, a)
	if (n < 2)
		return "-"
	m = quantile(a, n, 0.5)
	if (m <= 0)
		return "-"
	if (n < 5)
		return sprintf("%.1f%%", 100 * (a[n] - a[1]) / m)
	return sprintf("%.1f%%", 100 * (quantile(a, n, 0.75) - quantile(a, n, 0.25)) / m)
}

function fmtval(v) {
	if (v == "")
		return "-"
	if (v >= 100)
		return sprintf("%.0f", v)
	return sprintf("%.1f", v)
}

function fmtratio(v) {
	return v == "" ? "-" : sprintf("%.3f", v)
}

# Workloads on their own images use paths named <image>-imgfmt, <image>-nbd.
# Chain workloads compare chainN-imgfmt with the plain linear device; the
# write workloads (w-, f-) have write devices of their own for all three.
function prefix(w) {
	if (w ~ /^(sparse|comp|compz|chain[0-9]+|w|f)-/)
		return substr(w, 1, index(w, "-"))
	return ""
}

function linpath(w) {
	return w ~ /^chain/ ? "linear" : prefix(w) "linear"
}

# The imgfmt/linear goal of a workload, or "".
function goal(w) {
	# Issue 8: reads of a single image stay at 0.97 of dm-linear.
	if (w == "rand4k-qd1" || w == "rand4k-qd32" || w == "seq1m-qd4")
		return 0.97
	if (w == "cold-rand4k")
		return 0.80
	if (w ~ /^chain10-/)
		return 0.95
	if (w ~ /^chain100-/)
		return 0.90
	if (w ~ /^chain1000-/)
		return 0.80
	# Issue 9: overwrites near dm-linear, allocating and synced writes
	# at 0.8 of it (f-: of dm-linear filling a fresh sparse file).
	if (w == "w-rand4k-qd1" || w == "w-rand4k-qd32" || w == "w-seq1m")
		return 0.95
	if (w == "w-sync4k" || w ~ /^f-/)
		return 0.80
	return ""
}

# The imgfmt/qemu-nbd goal of a workload: reads 2x, writes 3x.
function nbdgoal(w) {
	if (w ~ /^chain/)
		return ""
	return w ~ /^(w|f)-/ ? 3 : 2
}

# Median over the rounds of w of imgfmt's value over path p's.
function ratio(w, p,    sp, n, rr, j, r, l) {
	sp = prefix(w)
	l = ""
	n = split(rounds[w], rr, " ")
	for (j = 1; j <= n; j++) {
		r = rr[j]
		if ((w, p, r) in val && (w, sp "imgfmt", r) in val && val[w, p, r] > 0)
			l = l " " val[w, sp "imgfmt", r] / val[w, p, r]
	}
	return median(l)
}

function add(arr, key, val) {
	arr[key] = (key in arr) ? arr[key] " " val : val
}

function human(b) {
	if (b >= 1048576)
		return sprintf("%.1f MiB", b / 1048576)
	return sprintf("%.0f KiB", b / 1024)
}

$1 == "BENCH" {
	r = $2; w = $3; p = $4
	# MiB/s for sequential workloads, IOPS for the rest.
	v = (w ~ /^seq|^comp|seq1m$|seq64k$/) ? $6 / 1024 : $5
	val[w, p, r] = v
	add(vals, w SUBSEP p, v)
	if (!((w, r) in seenround)) {
		seenround[w, r] = 1
		add(rounds, w, r)
	}
	if (!(w in seenw)) {
		seenw[w] = 1
		order[++nw] = w
	}
	next
}

$1 == "IMGSTAT" && $2 != 0 {		# round 0: profiled runs
	# IMGSTAT r w p before|after fmt vsize csize used/limit hits misses
	#         io_errors peak deferred decompressed prefetched
	r = $2; w = $3; p = $4
	split($9, ul, "/")
	if ($5 == "before") {
		bmiss[w, p, r] = $11; bdef[w, p, r] = $14; berr[w, p, r] = $12
		bdec[w, p, r] = $15; bpre[w, p, r] = $16
	} else {
		add(dmiss, w SUBSEP p, $11 - bmiss[w, p, r])
		add(ddef, w SUBSEP p, $14 - bdef[w, p, r])
		if (NF >= 15) {
			hasdec = 1
			add(ddec, w SUBSEP p, $15 - bdec[w, p, r])
		}
		if (NF >= 16) {
			haspre = 1
			add(dpre, w SUBSEP p, $16 - bpre[w, p, r])
		}
		errs[w, p] += $12 - berr[w, p, r]
		peak[p] = $13; limit[p] = ul[2]; used[p] = ul[1]
	}
	next
}

$1 == "NOTYET" {
	w = $2
	$1 = ""; $2 = ""
	sub(/^ +/, "")
	notyet[w] = $0
	next
}

END {
	printf "%-20s %-5s %10s %10s %10s %9s %9s %s\n", "workload", "unit",
	       "linear", "imgfmt", "qemu-nbd", "img/lin", "img/nbd", "spread: lin img nbd"
	for (i = 1; i <= nw; i++) {
		w = order[i]
		sp = prefix(w)
		unit = (w ~ /^seq|^comp|seq1m$|seq64k$/) ? "MiB/s" : "IOPS"
		ml = median(vals[w, linpath(w)])
		mi = median(vals[w, sp "imgfmt"])
		mn = median(vals[w, sp "nbd"])
		ratl[w] = ratio(w, linpath(w))
		ratn[w] = ratio(w, sp "nbd")
		if ((w SUBSEP sp "nbdwb") in vals)
			ratwb[w] = ratio(w, sp "nbdwb")
		printf "%-20s %-5s %10s %10s %10s %9s %9s %s %s %s\n", w, unit,
		       fmtval(ml), fmtval(mi), fmtval(mn), fmtratio(ratl[w]),
		       fmtratio(ratn[w]), spread(vals[w, linpath(w)]),
		       spread(vals[w, sp "imgfmt"]), spread(vals[w, sp "nbd"])
	}
	for (w in notyet)
		printf "%-20s %-5s %10s %10s %10s %9s %9s   not yet: %s\n", w,
		       "MiB/s", "-", "-", "-", "-", "-", notyet[w]
	printf "rounds: %d per workload; spread = (max-min)/median, from 5 rounds on (p75-p25)/median\n",
	       split(rounds[order[1]], rr, " ")
	for (i = 1; i <= nw; i++) {
		w = order[i]
		if (!(w in ratwb))
			continue
		if (!hdrwb++) {
			print ""
			print "writes against qemu-nbd with cache=writeback (nbdwb: a qemu-nbd's defaults):"
			printf "%-20s %-5s %10s %9s %s\n", "workload", "unit",
			       "nbdwb", "img/nbdwb", "spread"
		}
		printf "%-20s %-5s %10s %9s %s\n", w,
		       (w ~ /seq1m$|seq64k$/) ? "MiB/s" : "IOPS",
		       fmtval(median(vals[w, prefix(w) "nbdwb"])),
		       fmtratio(ratwb[w]), spread(vals[w, prefix(w) "nbdwb"])
	}

	print ""
	print "dm-imgfmt counters per fio run (medians over rounds):"
	printf "  %-20s %12s %14s %10s%s%s\n", "workload", "table reads", "deferred bios", "io_errors",
	       hasdec ? "  decompressed clusters" : "",
	       haspre ? "  of them read ahead" : ""
	for (i = 1; i <= nw; i++) {
		w = order[i]
		sp = prefix(w)
		p = sp "imgfmt"
		if (!((w SUBSEP p) in dmiss))
			continue
		printf "  %-20s %12s %14s %10d%s%s\n", w, fmtval(median(dmiss[w, p])),
		       fmtval(median(ddef[w, p])), errs[w, p],
		       hasdec ? sprintf(" %23s", fmtval(median(ddec[w, p]))) : "",
		       haspre ? sprintf(" %20s", fmtval(median(dpre[w, p]))) : ""
	}
	for (p in peak)
		printf "  metadata cache of %s: peak %s (%d bytes), now %s, limit %s (%d bytes)\n",
		       p, human(peak[p]), peak[p], human(used[p]), human(limit[p]), limit[p]

	print ""
	print "goals (" mode "):"
	for (i = 1; i <= nw; i++) {
		w = order[i]
		want = goal(w)
		if (want != "") {
			ok = ratl[w] != "" && ratl[w] >= want
			printf "  %-4s %-20s imgfmt/linear %s >= %.2f\n", ok ? "met" : "MISS",
			       w, fmtratio(ratl[w]), want
			nmiss += !ok
		}
		want = nbdgoal(w)
		if (want == "")
			continue
		ok = ratn[w] != "" && ratn[w] >= want
		printf "  %-4s %-20s imgfmt/nbd    %s >= %.2f\n", ok ? "met" : "MISS",
		       w, fmtratio(ratn[w]), want
		nmiss += !ok
		if (!(w in ratwb))
			continue
		ok = ratwb[w] >= want
		printf "  %-4s %-20s imgfmt/nbdwb  %s >= %.2f\n", ok ? "met" : "MISS",
		       w, fmtratio(ratwb[w]), want
		nmiss += !ok
	}
	# The metadata of a whole chain stays within its one cache_size.
	for (p in peak) {
		if (p !~ /^chain/)
			continue
		ok = peak[p] <= limit[p]
		printf "  %-4s %-20s cache peak %s <= cache_size %s\n", ok ? "met" : "MISS",
		       p, human(peak[p]), human(limit[p])
		nmiss += !ok
	}
	if ("sparse-imgfmt" in peak) {
		ok = peak["sparse-imgfmt"] <= limit["sparse-imgfmt"]
		printf "  %-4s %-20s cache peak %s <= cache_size %s\n", ok ? "met" : "MISS",
		       "sparse (1 TiB)", human(peak["sparse-imgfmt"]),
		       human(limit["sparse-imgfmt"])
		nmiss += !ok
	}
	printf "  => %d goal(s) missed\n", nmiss
}
