#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check` while every host CPU is busy with a stress-ng hog: a busy host
# must make the run slower, never red (tools/selftests/run.sh stops a guest
# for lack of progress, not for its total time).
#
#   scripts/check-under-load.sh     (make check-under-load)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
command -v stress-ng >/dev/null || { echo "no stress-ng: run scripts/install-deps.sh" >&2; exit 1; }

stress-ng --cpu "$(nproc)" --quiet &
hog=$!
trap 'kill $hog 2>/dev/null; wait $hog 2>/dev/null || true' EXIT
echo "[load] stress-ng --cpu $(nproc) running (pid $hog)"
make -C "$here/.." check
