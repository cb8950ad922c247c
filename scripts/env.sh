# SPDX-License-Identifier: GPL-2.0
# Shared settings of the project's scripts; sourced, never run.

KVER_MAJOR=7.3
RUST_SRC_DEB_VERSION=1.95.0+dfsg1-2~bpo13+1
BINDGEN_VERSION=0.72.1
VNG_VERSION=1.42
export RUSTUP_TOOLCHAIN=1.95.0

CACHE_ROOT=${DMABUF_VFIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmabuf-vfio-pci}
DEPS_DIR=$CACHE_ROOT/deps
KSRC_TARBALL=$DEPS_DIR/linux-source/usr/src/linux-source-$KVER_MAJOR.tar.xz
export RUST_LIB_SRC=$DEPS_DIR/rust-src/usr/lib/rustlib/src/rust/library
BINDGEN=$DEPS_DIR/cargo/bin/bindgen
# Outside the project's own setup (DKMS on a user's machine) the bindgen on
# PATH will do.
if [ ! -x "$BINDGEN" ] && command -v bindgen >/dev/null; then
	BINDGEN=$(command -v bindgen)
fi
VNG=$DEPS_DIR/venv/bin/vng
# virtme-ng finds it on PATH and shares the guest's root through it.
VIRTIOFSD=$DEPS_DIR/cargo/bin/virtiofsd
VIRTIOFSD_VERSION=1.14.0
export PATH=$DEPS_DIR/cargo/bin:$DEPS_DIR/venv/bin:$PATH
