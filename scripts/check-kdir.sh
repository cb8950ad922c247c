#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fails early, with the reason, when KDIR cannot build this module: it must be
# a configured and built Rust-enabled kernel tree (distro linux-headers
# packages lack rust/*.rmeta) with the vfio-pci core, P2PDMA and dma-buf, and
# its Rust metadata must come from the rustc on PATH.  Tested by
# tools/selftests/kdir_errors.sh.
set -euo pipefail

kdir=${1:?usage: check-kdir.sh KDIR}
die() { echo "dmabuf-vfio-pci: KDIR=$kdir: $*" >&2; exit 1; }

[ -f "$kdir/Makefile" ] || die "not a kernel build tree (no Makefile)"
# A tree of scripts/kernel.sh's cache is usable once its build completed; a
# second make in a tree being built corrupts it.
if [ -f "$kdir/../key" ] && [ ! -f "$kdir/../complete" ]; then
	die "is still being built by scripts/kernel.sh (run it, or wait for it)"
fi
[ -f "$kdir/.config" ] || die "not configured (no .config)"
for sym in CONFIG_RUST=y CONFIG_PCI_P2PDMA=y CONFIG_DMA_SHARED_BUFFER=y; do
	grep -qx "$sym" "$kdir/.config" || die "needs $sym"
done
grep -qE '^CONFIG_VFIO_PCI_CORE=(y|m)$' "$kdir/.config" || die "needs CONFIG_VFIO_PCI_CORE"
grep -qE '^CONFIG_MODULES=y$' "$kdir/.config" || die "needs CONFIG_MODULES"
[ -f "$kdir/rust/libkernel.rmeta" ] ||
	die "has no rust/libkernel.rmeta: build the kernel with CONFIG_RUST (distro headers packages lack it)"

command -v rustc >/dev/null || die "needs rustc on PATH (the one the tree was built with)"
want=$(sed -n 's/^CONFIG_RUSTC_VERSION=//p' "$kdir/.config")
have=$(rustc --version | awk '{split($2, v, "."); printf "%d", v[1] * 100000 + v[2] * 100 + v[3]}')
[ -z "$want" ] || [ "$want" = "$have" ] ||
	die "was built with rustc $want, but PATH has $(rustc --version) (set RUSTUP_TOOLCHAIN)"

# The module runs bindgen over its own headers, with the kernel's clang.
command -v "${BINDGEN:-bindgen}" >/dev/null ||
	die "needs bindgen (cargo install bindgen-cli, or scripts/install-deps.sh)"
case "${LLVM:-}" in
-*) command -v "clang$LLVM" >/dev/null || die "LLVM=$LLVM: clang$LLVM not found" ;;
esac
