#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Folds several runs of the benchmark into one table.

    bench_summary.py LOG...

Each LOG is the output of a run of ``run.sh --stock-bench`` or ``--bench``
(its table of medians).  For each row and side: the median of the runs'
medians, the lowest and highest of them, and the spread around the
median (half of max - min, in percent); then the median of the runs'
ratios and their range.  A row whose sides repeat within +-2 % is marked
``stable``.
"""

import re
import statistics
import sys

ROW = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<ours>[\d.]+) \([\d.]+-[\d.]+\)\s+"
                 r"(?P<theirs>[\d.]+) \([\d.]+-[\d.]+\)\s+(?P<ratio>[\d.]+)x (?P<unit>\S+)")


def rows(path):
    out = {}
    order = []
    with open(path, errors="replace") as f:
        for line in f:
            m = ROW.match(line.rstrip("\n"))
            if m:
                name = m.group("name").strip()
                out[name] = (float(m.group("ours")), float(m.group("theirs")), m.group("unit"))
                order.append(name)
    return order, out


def spread(values):
    mid = statistics.median(values)
    if mid == 0:
        return 0.0
    return (max(values) - min(values)) / 2 / mid * 100


def side(values):
    return (f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
            f" +-{spread(values):.1f}%")


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs = [rows(p) for p in paths]
    order = runs[0][0]
    print(f"{len(paths)} runs; per side: median of the runs' medians (min-max) +- half the"
          " spread; ratio: median (range)")
    print(f"{'':44}{'dmabuf-vfio-pci':>34}{'vfio-pci (C)':>36}{'ratio':>20}")
    for name in order:
        vals = [r[1][name] for r in runs if name in r[1]]
        ours = [v[0] for v in vals]
        theirs = [v[1] for v in vals]
        ratios = [o / t if t else 0.0 for o, t in zip(ours, theirs)]
        so, st = spread(ours), spread(theirs)
        mark = "stable" if so <= 2 and st <= 2 else "UNSTABLE"
        print(f"{name[:44]:44}{side(ours):>36}{side(theirs):>36}"
              f"  {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
              f" {vals[0][2]:6} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
