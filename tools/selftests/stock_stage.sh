#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The host half of the stock-kernel boot (run.sh --stock): builds the module
# for Debian's kernel RELEASE as a Debian 13 user would, inside the trixie
# build root of scripts/distro-kdir.sh: DKMS with the project's dkms.conf and
# no kernel source directory of its own, so it builds against
# /lib/modules/RELEASE/build, Debian's headers, which scripts/dkms-make.sh
# completes.  The test importer is built against the same tree.
#
#   stock_stage.sh RELEASE STAGE
#
#   STAGE/dmabuf-vfio-pci.ko*        what DKMS installed (Debian's compression)
#   STAGE/dmabuf_test_importer.ko
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
REL=${1:?usage: stock_stage.sh RELEASE STAGE}
STAGE=${2:?usage: stock_stage.sh RELEASE STAGE}
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$TOP/dkms.conf")

if [ -z "${DMABUF_DISTRO_IN_ROOT:-}" ] && [ ! -d "/usr/src/linux-headers-$REL" ]; then
	rm -rf "$STAGE"
	mkdir -p "$STAGE/src/dmabuf-vfio-pci-$ver" "$STAGE/importer"
	# What a release tarball would hold: the tracked files.
	(cd "$TOP" && git ls-files -z | xargs -0 cp --parents -t "$STAGE/src/dmabuf-vfio-pci-$ver")
	cp "$HERE"/importer/* "$STAGE/importer/"
	exec "$TOP/scripts/distro-kdir.sh" --run "$REL" -- "$HERE/${0##*/}" "$REL" "$STAGE"
fi

echo "== dkms for $REL (kernel source dir: /lib/modules/$REL/build, Debian's headers)"
trees=(--dkmstree "$STAGE/dkms-tree" --sourcetree "$STAGE/src" --installtree "$STAGE/dkms")
mkdir -p "$STAGE/dkms-tree" "$STAGE/dkms/$REL"
dkms add "${trees[@]}" -m dmabuf-vfio-pci -v "$ver"
# --installtree moves where DKMS looks for the headers too: name the place
# it looks at on a user's machine.
ksrc=(--kernelsourcedir "/lib/modules/$REL/build")
dkms build "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$REL" "${ksrc[@]}"
# Warning-free on this kernel too: no compiler diagnostic, no tool that
# complains.  (Kbuild's "Skipping BTF generation ... unavailability of
# vmlinux" is not one: Debian's headers have no vmlinux, so no out-of-tree
# module of this kernel carries BTF.)
log=$(find "$STAGE/dkms-tree" -name make.log | head -1)
if grep -E -i '(warning|error)(\[[A-Za-z0-9_]+\])?:|failed' "$log"; then
	echo "the DKMS build warned (log: $log)"
	exit 1
fi
dkms install "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$REL" "${ksrc[@]}" --force --no-depmod
dkms status "${trees[@]}"
ko=$(find "$STAGE/dkms" -name 'dmabuf-vfio-pci.ko*' | head -1)
[ -n "$ko" ] || { echo "dkms installed no module"; exit 1; }
cp "$ko" "$STAGE/"

echo "== test importer against $KDIR"
make -C "$KDIR" M="$STAGE/importer" CC="$CC" modules
cp "$STAGE/importer/dmabuf_test_importer.ko" "$STAGE/"

vermagic=$(modinfo -F vermagic "$STAGE/${ko##*/}")
echo "vermagic: $vermagic"
case "$vermagic" in
"$REL "*) ;;
*) echo "the module's vermagic is not $REL's"; exit 1 ;;
esac
