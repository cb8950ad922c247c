#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the root filesystem the guest runs QEMU 11 from: Debian
# trixie (minbase) with qemu-system-x86 from trixie-backports.  QEMU 11 needs
# trixie's libc, which must never reach the bookworm host, so it lives in a
# directory of its own in the cache and the guest chroots into it.
#
#   scripts/qemu-rootfs.sh           build if needed, print the root's path
#   scripts/qemu-rootfs.sh --path    print the path the current recipe maps to
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

# Bump when this script changes what goes into the root.
RECIPE=1
MIRROR=http://deb.debian.org/debian
PKGS=(qemu-system-x86)

key=$(printf '%s\n' "recipe=$RECIPE" "suite=trixie" "pkgs=${PKGS[*]}" | sha256sum | cut -c1-16)
root=$CACHE_ROOT/rootfs/trixie-qemu-$key

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
log "installing ${PKGS[*]} from trixie-backports"
{
	in_root apt-get update -qq &&
	in_root apt-get install -y -qq --no-install-recommends -t trixie-backports "${PKGS[@]}" &&
	in_root apt-get clean
} >>"$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }

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
