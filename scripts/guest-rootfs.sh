#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the root filesystem of the test guest: Debian trixie
# (minbase) with kmod, iproute2, QEMU 11 (qemu-system-x86 from
# trixie-backports, for qemu_e2e.sh) and Debian's own kernel
# $DISTRO_RELEASE, image and modules as Debian ships them (the stock-kernel
# boot of tools/selftests/run.sh --stock).  QEMU 11 needs trixie's libc, which
# must never reach the bookworm host, so the guest boots from a directory of
# its own in the cache rather than from the host's whole /.
#
# It has no udev: under TCG the coldplug of the host root's udev took half a
# minute of every boot, for nothing the tests use.  virtme-ng-init still
# starts "udevd" and connects its script to /dev/virtio-ports/<name>, so a
# stand-in makes those links (the only thing the guest needed from udev),
# and udevadm and systemd-tmpfiles (the guest's /run and /tmp are fresh
# tmpfs) are stand-ins that do nothing.  They live in /usr/local/bin, out
# of dpkg's way.
#
#   scripts/guest-rootfs.sh           build if needed, print the root's path
#   scripts/guest-rootfs.sh --path    print the path the current recipe maps to
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

# Bump when this script changes what goes into the root.
RECIPE=3
MIRROR=http://deb.debian.org/debian
BACKPORTS_PKGS=(qemu-system-x86 "linux-binary-unsigned-$DISTRO_RELEASE" "linux-modules-$DISTRO_RELEASE")
PKGS=(kmod iproute2)

key=$(printf '%s\n' "recipe=$RECIPE" "suite=trixie" "pkgs=${PKGS[*]}" "backports=${BACKPORTS_PKGS[*]}" | sha256sum | cut -c1-16)
root=$CACHE_ROOT/rootfs/trixie-guest-$key

if [ "${1:-}" = --path ]; then
	echo "$root"
	exit 0
fi

log() { printf '[rootfs] %s\n' "$*" >&2; }

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || { log "waiting for another build of $root"; flock 9; }

if [ -f "$root/.complete" ]; then
	echo "$root"
	exit 0
fi

command -v debootstrap >/dev/null || { log "no debootstrap: run scripts/install-deps.sh"; exit 1; }
[ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }

tmp=$root.tmp
rm -rf "$tmp"
start=$(date +%s)
log "debootstrap trixie (minbase) into $tmp"
debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$root.log" 2>&1 ||
	{ tail -30 "$root.log" >&2; exit 1; }

cat >"$tmp/etc/apt/sources.list.d/backports.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

in_root() { chroot "$tmp" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
log "installing ${PKGS[*]}, and ${BACKPORTS_PKGS[*]} from trixie-backports"
{
	in_root apt-get update -qq &&
	in_root apt-get install -y -qq --no-install-recommends "${PKGS[@]}" &&
	in_root apt-get install -y -qq --no-install-recommends -t trixie-backports "${BACKPORTS_PKGS[@]}" &&
	in_root apt-get clean &&
	in_root depmod "$DISTRO_RELEASE"
} >>"$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }
[ -f "$tmp/usr/lib/modules/$DISTRO_RELEASE/vmlinuz.unsigned" ] ||
	{ log "no vmlinuz.unsigned in linux-binary-unsigned-$DISTRO_RELEASE"; exit 1; }

cat >"$tmp/usr/local/bin/udevd" <<'STANDIN'
#!/bin/sh
# Stand-in for udevd (scripts/guest-rootfs.sh): the names of the
# virtio-serial ports, which virtme-ng-init connects its script to.
mkdir -p /dev/virtio-ports
for port in /sys/class/virtio-ports/*; do
	read -r name <"$port/name" && ln -sfn "../${port##*/}" "/dev/virtio-ports/$name"
done
exit 0
STANDIN
printf '#!/bin/sh\n# Stand-in (scripts/guest-rootfs.sh): this guest has no udev.\nexit 0\n' >"$tmp/usr/local/bin/udevadm"
printf '#!/bin/sh\n# Stand-in (scripts/guest-rootfs.sh): /run and /tmp are fresh tmpfs.\nexit 0\n' >"$tmp/usr/local/bin/systemd-tmpfiles"
chmod 755 "$tmp/usr/local/bin/udevd" "$tmp/usr/local/bin/udevadm" "$tmp/usr/local/bin/systemd-tmpfiles"
mkdir -p "$tmp/lib/modules"

version=$(in_root qemu-system-x86_64 --version | head -1)
case "$version" in
*"version 11."*) ;;
*) log "expected QEMU 11, got: $version"; exit 1 ;;
esac
echo "$version" >"$tmp/.qemu-version"
touch "$tmp/.complete"
rm -rf "$root"
mv "$tmp" "$root"
log "$version in $(( $(date +%s) - start )) s"
echo "$root"
