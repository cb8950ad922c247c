#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Installing the module as a kernel user does, inside the test guest, against
# the running test kernel (its build tree is KDIR):
#
#   install_e2e.sh make|dkms KDIR
#
#   make: `make KDIR=... install` puts it in /lib/modules/<release>/updates/
#         and runs depmod;
#   dkms: dkms add/build/install with the project's dkms.conf.
#
# Then `modprobe dmabuf_vfio_pci` must load that file (depmod prefers updates/
# to the in-tree build of the test kernel), modinfo must describe it, and the
# devices whose driver_override names the driver must bind to it.  The
# module must not be loaded when this starts.
#
# /lib/modules is virtme-ng's tmpfs with a link to the build tree's module
# directory: the link is replaced by a copy, so nothing on the host changes.
# The source tree is copied to a tmpfs mounted over it, so the build writes
# nowhere else.
set -u

HOW=$1
KDIR=$2
# The host's toolchain (rustup, bindgen, clang), as run.sh found it.
export PATH=${DMABUF_HOST_PATH:+$DMABUF_HOST_PATH:}$PATH
export HOME=${DMABUF_HOST_HOME:-$HOME}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
KVER=$(uname -r)
MODDIR=/lib/modules/$KVER
WORK=$(mktemp -d)
fails=0

say() { printf '# %s\n' "$*"; }
fail() { say "FAIL: $*"; fails=$((fails + 1)); }
run() {	# command...: runs it, its output in the log
	say "\$ $*"
	"$@" 2>&1 | sed 's/^/#   /'
	return "${PIPESTATUS[0]}"
}

[ ! -d /sys/module/dmabuf_vfio_pci ] || { fail "the module is loaded already"; exit 1; }

if [ -L "$MODDIR" ]; then
	real=$(readlink -f "$MODDIR")
	rm "$MODDIR"
	cp -a "$real" "$MODDIR"
	# Its links are relative (build -> the build tree, module files): make
	# them absolute, as a real /lib/modules/<release>/build is.
	(cd "$real" && find . -type l) | while read -r link; do
		ln -sfn "$(readlink -f "$real/$link")" "$MODDIR/$link"
	done
fi
rm -rf "$MODDIR/updates"
depmod "$KVER"

# Same path and timestamps, so the build's recorded commands match and
# nothing recompiles that is up to date.
mount -t tmpfs tmpfs "$WORK" || { fail "no tmpfs"; exit 1; }
cp -a "$TOP" "$WORK/top" && mount --bind "$WORK/top" "$TOP" ||
	{ fail "cannot put a copy of $TOP over it"; exit 1; }
trap 'umount "$TOP"; umount "$WORK"; rmdir "$WORK"' EXIT

case $HOW in
make)
	run make -s -C "$TOP" KDIR="$KDIR" install || fail "make install"
	want=$MODDIR/updates/dmabuf-vfio-pci.ko
	;;
dkms)
	ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$TOP/dkms.conf")
	trees=(--dkmstree "$WORK/dkms" --sourcetree "$WORK/src")
	mkdir -p "$WORK/dkms" "$WORK/src/dmabuf-vfio-pci-$ver"
	# What a release tarball would hold: the tracked files.
	(cd "$TOP" && git ls-files -z | xargs -0 cp --parents -t "$WORK/src/dmabuf-vfio-pci-$ver") ||
		mkdir -p "$WORK/src/dmabuf-vfio-pci-$ver"
	run dkms add "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" || fail "dkms add"
	run dkms build "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$KVER" \
		--kernelsourcedir "$KDIR" || fail "dkms build"
	run dkms install "${trees[@]}" -m dmabuf-vfio-pci -v "$ver" -k "$KVER" \
		--kernelsourcedir "$KDIR" --force || fail "dkms install"
	run dkms status "${trees[@]}"
	want=$MODDIR/updates/dkms/dmabuf-vfio-pci.ko
	;;
*) fail "unknown way $HOW"; exit 1 ;;
esac

[ -f "$want" ] && say "ok: installed $want" || fail "$want not installed"
got=$(modinfo -n dmabuf_vfio_pci 2>&1)
[ "$got" = "$want" ] && say "ok: modinfo finds $got" || fail "modinfo finds '$got', want $want"
for field in "description:VFIO PCI variant driver exporting BAR ranges as dma-bufs" \
	"license:GPL" "import_ns:DMA_BUF" 'alias:vfio_pci:v*d*sv*sd*bc*sc*i*'; do
	modinfo -F "${field%%:*}" dmabuf_vfio_pci | grep -qxF "${field#*:}" &&
		say "ok: modinfo $field" || fail "modinfo lacks $field"
done

run modprobe dmabuf_vfio_pci || fail "modprobe"
[ -d /sys/module/dmabuf_vfio_pci ] || fail "module not loaded"
bound=0
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/driver_override" 2>/dev/null)" = dmabuf-vfio-pci ] || continue
	echo "${d##*/}" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$d/driver")")" = dmabuf-vfio-pci ] &&
		bound=$((bound + 1)) || fail "${d##*/} did not bind"
done
[ $bound -gt 0 ] && say "ok: $bound devices bound to the installed module" ||
	fail "no device bound"
run modprobe -r dmabuf_vfio_pci || fail "modprobe -r"

[ $fails = 0 ]
