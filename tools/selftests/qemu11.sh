#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The guest root's QEMU 11 (trixie-backports), run on this bookworm host as
# the QEMU that boots the guest: with the root's own dynamic loader and
# libraries (never the host's libc), its firmware, and, in a mount
# namespace of its own, its modules over the host QEMU's module directory
# (QEMU loads modules only from its compiled-in path).  Arguments are
# QEMU's.  run.sh uses it with DMABUF_QEMU=11.
#
# Why: bookworm's QEMU 7.2 loses an MMIO write now and then under
# multi-threaded TCG while another vCPU changes the memory map (PCI BAR and
# bridge windows turning on and off: resets, D3, command register writes).
# A lost EOI leaves the local timer vector in service and the guest's CPU
# without timer interrupts: the fuzzer's freezes (Documentation, Testing).
# QEMU 8.2 fixed it ("softmmu: Use async_run_on_cpu in tcg_commit").
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$("$HERE/../../scripts/guest-rootfs.sh" --path)
LIBS=$ROOT/lib/x86_64-linux-gnu:$ROOT/usr/lib/x86_64-linux-gnu
[ -x "$ROOT/usr/bin/qemu-system-x86_64" ] || {
	echo "qemu11.sh: no QEMU in the guest root $ROOT (scripts/guest-rootfs.sh)" >&2
	exit 1
}
# shellcheck disable=SC2016
exec unshare --mount sh -c '
	root=$0 libs=$1
	shift
	mount --bind "$root/usr/lib/x86_64-linux-gnu/qemu" /usr/lib/x86_64-linux-gnu/qemu &&
	exec "$root/lib64/ld-linux-x86-64.so.2" --library-path "$libs" "$root/usr/bin/qemu-system-x86_64" \
		-L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "$@"' "$ROOT" "$LIBS" "$@"
