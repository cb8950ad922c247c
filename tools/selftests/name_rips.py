#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Names the RIPs of a stuck guest's vCPUs.

    name_rips.py CPU_STATE KALLSYMS

CPU_STATE is run.sh's sample of `info registers -a` (cpu-state), KALLSYMS
the guest's /proc/kallsyms (guest.sh copies it before a fuzz campaign).
Prints, per sample and CPU, RIP, the symbol+offset it is in, whether the
CPU was halted, and IF (RFL bit 9).
"""

import bisect
import re
import sys


def load(path):
    syms = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[1].lower() not in "tw":
                continue
            name = parts[2] + (" " + parts[3] if len(parts) > 3 else "")
            syms.append((int(parts[0], 16), name))
    return syms


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    state, kallsyms = sys.argv[1:]
    syms = sorted(load(kallsyms))
    addrs = [a for a, _ in syms]

    def name(rip):
        i = bisect.bisect_right(addrs, rip) - 1
        if i < 0:
            return "?"
        return f"{syms[i][1]}+{rip - syms[i][0]:#x}"

    cpu = None
    with open(state, errors="replace") as f:
        for line in f:
            if line.startswith("==="):
                print(line.rstrip())
            m = re.match(r"CPU#(\d+)", line)
            if m:
                cpu = m.group(1)
            m = re.match(r"RIP=([0-9a-f]+) RFL=([0-9a-f]+).*HLT=(\d)", line)
            if m and cpu is not None:
                rip, rfl, hlt = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
                irq = "on" if rfl & 0x200 else "off"
                print(f"  CPU{cpu} {rip:#x} {name(rip)}  IF={irq} HLT={hlt}")


if __name__ == "__main__":
    main()
