#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# DKMS's make command (dkms.conf): builds the module for kernel RELEASE.
# A Rust-enabled build tree is used as it is; a distribution's headers
# (/usr/src/linux-headers-RELEASE without rust/*.rmeta) are first completed
# by scripts/distro-kdir.sh, once per release (about 5 minutes); any other
# tree goes to the Makefile, whose KDIR check names what it lacks.
#
#   scripts/dkms-make.sh RELEASE KERNEL_SOURCE_DIR [make targets...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rel=${1:?usage: dkms-make.sh RELEASE KERNEL_SOURCE_DIR [targets...]}
ksrc=${2:?usage: dkms-make.sh RELEASE KERNEL_SOURCE_DIR [targets...]}
shift 2
kdir=$ksrc
if [ ! -f "$ksrc/rust/libkernel.rmeta" ] && [ -f "/usr/src/linux-headers-$rel/.config" ]; then
	kdir=$("$here/distro-kdir.sh" "$rel")
fi
exec make -C "$here/.." KDIR="$kdir" "${@:-modules}"
