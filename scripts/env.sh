# SPDX-License-Identifier: GPL-2.0
# Shared settings of the project's scripts; sourced, never run.

KVER_MAJOR=7.3
RUST_SRC_DEB_VERSION=1.95.0+dfsg1-2~bpo13+1
BINDGEN_VERSION=0.72.1
VNG_VERSION=1.42
# The rustc the test kernel is built with (rustup's toolchain name).
PROJECT_RUSTC=1.95.0
# The distribution kernel the stock-kernel tests boot (scripts/distro-kdir.sh).
DISTRO_RELEASE=7.3.4+deb13-amd64

CACHE_ROOT=${DMABUF_VFIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmabuf-vfio-pci}
DEPS_DIR=$CACHE_ROOT/deps
KSRC_TARBALL=$DEPS_DIR/linux-source/usr/src/linux-source-$KVER_MAJOR.tar.xz
BINDGEN=$DEPS_DIR/cargo/bin/bindgen
VNG=$DEPS_DIR/venv/bin/vng
# virtme-ng finds it on PATH and shares the guest's root through it.
VIRTIOFSD=$DEPS_DIR/cargo/bin/virtiofsd
VIRTIOFSD_VERSION=1.14.0
# The test kernel's toolchain, unless a command builds for a kernel made by
# another rustc (a distribution's, scripts/distro-kdir.sh): then rustc,
# rust-src and bindgen are the system's own.
if [ -z "${DMABUF_NATIVE_TOOLCHAIN:-}" ]; then
	export RUSTUP_TOOLCHAIN=$PROJECT_RUSTC
	export RUST_LIB_SRC=$DEPS_DIR/rust-src/usr/lib/rustlib/src/rust/library
	export PATH=$DEPS_DIR/cargo/bin:$DEPS_DIR/venv/bin:$PATH
else
	BINDGEN=
fi
# Outside the project's own setup (DKMS on a user's machine) the bindgen on
# PATH will do.
if [ ! -x "$BINDGEN" ] && command -v bindgen >/dev/null; then
	BINDGEN=$(command -v bindgen)
fi
