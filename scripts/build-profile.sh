#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Where a cold kernel build of scripts/kernel.sh went: sums the wall time
# between consecutive lines of its time-stamped build.log per directory
# (two levels deep), largest first.  With make -j2 a line's share is the time
# until the next job started, so the sums add up to the whole build.
#
#   scripts/build-profile.sh [BUILD_LOG] [DEPTH]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log=${1:-$(dirname "$("$here/kernel.sh" --path)")/build.log}
depth=${2:-2}

awk -v depth="$depth" '
	NF >= 3 && $1 ~ /^[0-9.]+$/ {
		if (prev != "") cost[prev] += $1 - t
		t = $1
		n = split($NF, p, "/")
		d = p[1]
		for (i = 2; i <= depth && i < n; i++) d = d "/" p[i]
		prev = d
		total = $1
	}
	END {
		for (d in cost) printf "%8.1f s %5.1f%%  %s\n", cost[d], 100 * cost[d] / total, d
		printf "%8.1f s total\n", total
	}' "$log" | sort -rn
