#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make KDIR=...` against trees that cannot build the module stops before
# compiling anything, with the reason (scripts/check-kdir.sh); the real test
# kernel tree passes.  Runs on the host.  One TAP line per case.
#
#   kdir_errors.sh TEST_KDIR
set -uo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
REAL=${1:?usage: kdir_errors.sh TEST_KDIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
n=0

# A fake build tree: a Makefile, the given .config lines, optionally rmeta.
fake() {	# name, rmeta(0|1), config lines...
	local d=$tmp/$1 rmeta=$2
	shift 2
	mkdir -p "$d/rust"
	echo 'all:' >"$d/Makefile"
	printf '%s\n' "$@" >"$d/.config"
	[ "$rmeta" = 1 ] && : >"$d/rust/libkernel.rmeta"
	echo "$d"
}

case_() {	# name, expected message (empty: must pass), make arguments...
	local name=$1 want=$2 out rc
	shift 2
	n=$((n + 1))
	out=$(make -s -C "$TOP" "$@" modules 2>&1)
	rc=$?
	if [ -z "$want" ]; then
		[ $rc = 0 ] && { echo "ok $n $name"; return; }
	elif [ $rc != 0 ] && grep -q -- "$want" <<<"$out" && ! grep -q -E 'RUSTC|CC \[M\]|BINDGEN' <<<"$out"; then
		echo "ok $n $name"
		return
	fi
	echo "not ok $n $name"
	echo "# want: ${want:-success} (rc $rc)"
	sed 's/^/# got: /' <<<"$out" | head -5
	fails=$((fails + 1))
}

good=(CONFIG_MODULES=y CONFIG_RUST=y CONFIG_PCI_P2PDMA=y CONFIG_DMA_SHARED_BUFFER=y
	CONFIG_VFIO_PCI_CORE=m)
rustc_now=$(grep '^CONFIG_RUSTC_VERSION=' "$REAL/.config")

mkdir -p "$tmp/empty"
case_ not_a_tree "not a kernel build tree" KDIR="$tmp/empty"
d=$(fake unconfigured 1); rm "$d/.config"
case_ unconfigured "not configured" KDIR="$d"
case_ no_rust "needs CONFIG_RUST=y" KDIR="$(fake no_rust 1 "${good[@]/CONFIG_RUST=y/}")"
case_ no_p2pdma "needs CONFIG_PCI_P2PDMA=y" \
	KDIR="$(fake no_p2pdma 1 "${good[@]/CONFIG_PCI_P2PDMA=y/}")"
case_ no_dma_buf "needs CONFIG_DMA_SHARED_BUFFER=y" \
	KDIR="$(fake no_dma_buf 1 "${good[@]/CONFIG_DMA_SHARED_BUFFER=y/}")"
case_ no_vfio_pci_core "needs CONFIG_VFIO_PCI_CORE" \
	KDIR="$(fake no_vfio 1 "${good[@]/CONFIG_VFIO_PCI_CORE=m/}")"
# What a distro linux-headers package looks like: configured, no Rust metadata.
case_ headers_package_without_rmeta "has no rust/libkernel.rmeta" \
	KDIR="$(fake headers_pkg 0 "${good[@]}" "$rustc_now")"
case_ built_with_another_rustc "was built with rustc 108800" \
	KDIR="$(fake old_rustc 1 "${good[@]}" CONFIG_RUSTC_VERSION=108800)"
case_ clang_missing "clang-1 not found" \
	KDIR="$(fake no_clang 1 "${good[@]}" "$rustc_now")" LLVM=-1
case_ test_kernel_tree "" KDIR="$REAL"

echo "1..$n"
[ $fails = 0 ]
