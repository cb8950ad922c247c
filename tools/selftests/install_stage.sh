#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The host half of the install tests: builds and installs the module for the
# test kernel the two ways a user would, into staging trees the guest's
# install_e2e.sh then installs from and loads (building inside the TCG guest
# would take longer than the whole test run):
#
#   install_stage.sh KDIR STAGE
#
#   STAGE/make/lib/modules/<release>/updates/   `make install INSTALL_MOD_PATH=`
#   STAGE/dkms/<release>/updates/dkms/          dkms add/build/install with
#                                               the project's dkms.conf
set -euo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
KDIR=${1:?usage: install_stage.sh KDIR STAGE}
STAGE=${2:?usage: install_stage.sh KDIR STAGE}
KVER=$(make -s --no-print-directory -C "$KDIR" kernelrelease)
rm -rf "$STAGE"
mkdir -p "$STAGE"

echo "== make install (KDIR=$KDIR, release $KVER)"
make -s -C "$TOP" KDIR="$KDIR" INSTALL_MOD_PATH="$STAGE/make" install

echo "== dkms"
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$TOP/dkms.conf")
src=$STAGE/src/dmabuf-vfio-pci-$ver
mkdir -p "$src" "$STAGE/dkms-tree" "$STAGE/dkms/$KVER"
# What a release tarball would hold: the tracked files.
(cd "$TOP" && git ls-files -z | xargs -0 cp --parents -t "$src")
trees=(--dkmstree "$STAGE/dkms-tree" --sourcetree "$STAGE/src" --installtree "$STAGE/dkms")
dkms add "${trees[@]}" -m dmabuf-vfio-pci -v "$ver"
dkms build "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$KVER" --kernelsourcedir "$KDIR"
# depmod runs in the guest, whose /lib/modules holds the test kernel's modules.
dkms install "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$KVER" --kernelsourcedir "$KDIR" \
	--force --no-depmod
dkms status "${trees[@]}"
find "$STAGE/make" "$STAGE/dkms" -name '*.ko*'
