#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install every host dependency of the build and the guest test runner on a
# Debian bookworm machine (run as root).  Idempotent: a second run only checks.
#
# bookworm gives the compilers, QEMU and the kernel build tools; trixie-backports
# gives only architecture-independent packages (the 7.3 kernel source and the
# rust-src matching rustc 1.95), fetched with `apt-get download` so nothing from
# the newer suite can touch libc6.  The test guest boots from a trixie root
# filesystem of its own, with QEMU 11 from trixie-backports
# (scripts/guest-rootfs.sh), which virtme-ng shares with virtiofsd (built
# here with cargo: bookworm's QEMU has none).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

log() { printf '[deps] %s\n' "$*"; }

APT_PKGS=(
	build-essential flex bison libelf-dev libssl-dev bc cpio kmod zstd
	xz-utils rsync pahole python3-venv python3-docutils
	clang-19 lld-19 llvm-19 libclang-19-dev libclang1-19
	qemu-system-x86 busybox-static
	debootstrap dkms
	libseccomp-dev libcap-ng-dev stress-ng
)

need_apt=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		need_apt+=("$p")
done

add_trixie_sources() {
	local src=/etc/apt/sources.list.d/dmabuf-vfio-trixie.sources
	local pref=/etc/apt/preferences.d/dmabuf-vfio-trixie
	[ -f "$src" ] && [ -f "$pref" ] && return 0
	log "adding trixie and trixie-backports (pinned low) to apt"
	cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	# One stanza per suite, separated by blank lines: apt ignores all but the
	# first stanza otherwise.
	cat >"$pref" <<'PREF'
Package: *
Pin: release n=trixie
Pin-Priority: 50

Package: *
Pin: release n=trixie-backports
Pin-Priority: 50
PREF
	apt_updated=0
}

apt_updated=1
add_trixie_sources
have_ksrc=0; [ -f "$KSRC_TARBALL" ] && have_ksrc=1
have_rsrc=0; [ -f "$RUST_LIB_SRC/core/src/lib.rs" ] && have_rsrc=1

if [ ${#need_apt[@]} -gt 0 ] || [ $have_ksrc = 0 ] || [ $have_rsrc = 0 ] || [ $apt_updated = 0 ]; then
	log "apt-get update"
	apt-get update -qq
fi

if [ ${#need_apt[@]} -gt 0 ]; then
	log "installing from bookworm: ${need_apt[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm \
		--no-install-recommends "${need_apt[@]}" >/dev/null
fi

fetch_all_deb() {	# <package>=<version> <dest-dir>
	local spec=$1 dest=$2 tmp
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -qq "$spec")
	mkdir -p "$dest"
	dpkg-deb -x "$tmp"/*.deb "$dest"
	rm -rf "$tmp"
}

if [ $have_ksrc = 0 ]; then
	# The newest 7.3 source the archive serves; its exact version is part of the
	# kernel cache key (scripts/kernel.sh), so an update rebuilds.
	v=$(apt-cache madison "linux-source-$KVER_MAJOR" | awk '/trixie-backports/ {print $3; exit}')
	[ -n "$v" ] || { log "linux-source-$KVER_MAJOR not found in trixie-backports"; exit 1; }
	log "fetching linux-source-$KVER_MAJOR $v from trixie-backports"
	fetch_all_deb "linux-source-$KVER_MAJOR=$v" "$DEPS_DIR/linux-source"
	echo "$v" >"$DEPS_DIR/linux-source/VERSION"
fi
if [ $have_rsrc = 0 ]; then
	log "fetching rust-src $RUST_SRC_DEB_VERSION from trixie-backports"
	fetch_all_deb "rust-src=$RUST_SRC_DEB_VERSION" "$DEPS_DIR/rust-src"
fi

if ! "$BINDGEN" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "cargo install bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --quiet --root "$DEPS_DIR/cargo" bindgen-cli --version "$BINDGEN_VERSION"
fi

if ! "$VIRTIOFSD" --version 2>/dev/null | grep -q "$VIRTIOFSD_VERSION"; then
	log "cargo install virtiofsd $VIRTIOFSD_VERSION"
	cargo install --locked --quiet --root "$DEPS_DIR/cargo" virtiofsd --version "$VIRTIOFSD_VERSION"
fi

if ! "$VNG" --version >/dev/null 2>&1; then
	log "installing virtme-ng $VNG_VERSION in a venv"
	python3 -m venv "$DEPS_DIR/venv"
	"$DEPS_DIR/venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

GUEST_ROOT=$("$here/guest-rootfs.sh")

log "ok: $(rustc --version), $("$BINDGEN" --version), clang $(clang-19 -dumpversion), $(qemu-system-x86_64 --version | head -1); $("$VIRTIOFSD" --version | head -1); guest: $(cat "$GUEST_ROOT/.qemu-version")"
