#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Drop the driver into a Linux source tree as drivers/vfio/pci/dmabuf-vfio-pci/
# and hook it into drivers/vfio/pci/{Kconfig,Makefile}, as an in-tree variant
# driver would be.  Idempotent: only files whose content changed are
# rewritten, so a second run costs nothing in the next build.
#
#   scripts/intree.sh KSRC            copy the sources and add the hooks
#   scripts/intree.sh --build KSRC    the same, then build the module in-tree
#                                     (KSRC configured with CONFIG_DMABUF_VFIO_PCI=m)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=0
if [ "${1:-}" = --build ]; then
	build=1
	shift
fi
ksrc=${1:?usage: intree.sh [--build] KSRC}
pci=$ksrc/drivers/vfio/pci
dest=$pci/dmabuf-vfio-pci
[ -f "$pci/Kconfig" ] && [ -f "$pci/Makefile" ] || { echo "$ksrc: not a Linux source tree" >&2; exit 1; }

mkdir -p "$dest"
# --checksum: unchanged files are left alone and keep their timestamps (no
# rebuild); changed ones are written now, so they are newer than anything
# built from their previous content (the source's own time may be older:
# bindgen's output would then look up to date).
(cd "$top" && rsync -r --checksum --relative Kbuild Kconfig glue.c trace.c \
	$(ls ./*.rs | grep -v bindings_generated.rs) kernel_ext include "$dest/")

grep -q 'dmabuf-vfio-pci/Kconfig' "$pci/Kconfig" ||
	sed -i 's|^endmenu$|source "drivers/vfio/pci/dmabuf-vfio-pci/Kconfig"\n\nendmenu|' "$pci/Kconfig"
grep -q 'dmabuf-vfio-pci/' "$pci/Makefile" ||
	printf '\nobj-$(CONFIG_DMABUF_VFIO_PCI) += dmabuf-vfio-pci/\n' >>"$pci/Makefile"
grep -q 'dmabuf-vfio-pci/Kconfig' "$pci/Kconfig" || { echo "$pci/Kconfig: hook not added" >&2; exit 1; }

if [ $build = 1 ]; then
	grep -qx 'CONFIG_DMABUF_VFIO_PCI=m' "$ksrc/.config" ||
		{ echo "$ksrc/.config: CONFIG_DMABUF_VFIO_PCI is not m" >&2; exit 1; }
	. "$top/scripts/env.sh"
	# All modules, not the single .ko target: that would leave modules.order
	# and Module.symvers listing this module alone.  Only what changed builds.
	make -C "$ksrc" LLVM="${LLVM:--19}" -j"$(nproc)" -s modules
	modinfo -F name "$dest/dmabuf-vfio-pci.ko" | grep -qx dmabuf_vfio_pci
fi
