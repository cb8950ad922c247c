#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Installing the module as a kernel user does, checked inside the test guest
# against the running test kernel:
#
#   install_e2e.sh make|dkms STAGE
#
# install_stage.sh built and installed it on the host, against this kernel's
# build tree, into STAGE: `make install INSTALL_MOD_PATH=` (updates/) and
# dkms add/build/install with the project's dkms.conf (updates/dkms/).  Here
# those files go into /lib/modules/<release>/ and depmod runs; then
# `modprobe dmabuf_vfio_pci` must load that file (depmod prefers updates/ to
# the in-tree build of the test kernel), modinfo must describe it, and the
# devices whose driver_override names the driver must bind to it.  The
# module must not be loaded when this starts.
#
# /lib/modules/<release> is a link into the build tree's module directory
# (run.sh) in the guest root's /lib, which virtme-ng overlays with a tmpfs:
# the link is replaced by a copy, so nothing on the host changes.
set -u

HOW=$1
STAGE=$2
KVER=$(uname -r)
MODDIR=/lib/modules/$KVER
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

case $HOW in
make)
	staged=$STAGE/make/lib/modules/$KVER/updates
	want=$MODDIR/updates/dmabuf-vfio-pci.ko
	;;
dkms)
	staged=$STAGE/dkms/$KVER/updates
	want=$MODDIR/updates/dkms/dmabuf-vfio-pci.ko
	;;
*) fail "unknown way $HOW"; exit 1 ;;
esac
[ -d "$staged" ] || { fail "nothing staged in $staged (see install-stage.log)"; exit 1; }
cp -a "$staged" "$MODDIR/updates"
run depmod "$KVER" || fail "depmod"

[ -f "$want" ] && say "ok: installed $want" || fail "$want not installed"
got=$(modinfo -n dmabuf_vfio_pci 2>&1)
[ "$got" = "$want" ] && say "ok: modinfo finds $got" || fail "modinfo finds '$got', want $want"
for field in "description:VFIO PCI variant driver exporting BAR ranges as dma-bufs" \
	"license:GPL" "import_ns:DMA_BUF" 'alias:vfio_pci:v*d*sv*sd*bc*sc*i*'; do
	modinfo -F "${field%%:*}" dmabuf_vfio_pci | grep -qxF "${field#*:}" &&
		say "ok: modinfo $field" || fail "modinfo lacks $field"
done

modinfo -F vermagic dmabuf_vfio_pci | grep -q "^$KVER " &&
	say "ok: built for $KVER" || fail "vermagic is not $KVER's"

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
[ ! -d /sys/module/dmabuf_vfio_pci ] || fail "module still loaded"

rm -rf "$MODDIR/updates"
depmod "$KVER"
[ $fails = 0 ]
