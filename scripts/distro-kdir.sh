#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Completes a distribution kernel's build tree for out-of-tree Rust modules.
#
# Debian's linux-headers-<release> ships the .config and Module.symvers of a
# CONFIG_RUST kernel but not what rustc needs to build a module against it:
# rust/*.rmeta, the macros and pin-init proc-macro libraries,
# rust/bindgen_parameters, scripts/module.lds.  This script rebuilds them from
# the matching linux-source package with the headers' .config, the rustc that
# built the kernel (CONFIG_RUSTC_VERSION_TEXT) and its C compiler
# (CONFIG_CC_VERSION_TEXT), and keeps the result in the cache, one tree per
# release and toolchain.  The rebuilt rust/ objects define the same symbols,
# under the same names, as the kernel's Module.symvers exports, so a module
# built against the tree loads into the distribution's unmodified kernel.
#
#   scripts/distro-kdir.sh [RELEASE]          complete the tree if needed,
#                                             print its path
#   scripts/distro-kdir.sh --path [RELEASE]   print the path only
#   scripts/distro-kdir.sh --root [RELEASE]   (not on Debian 13) build the
#                                             trixie root only, print its path
#   scripts/distro-kdir.sh --run [RELEASE] -- CMD...
#                                             run CMD where the tree was built
#                                             (KDIR, CC and PATH set)
#
# On Debian 13 (the headers in /usr/src/linux-headers-RELEASE) it runs
# natively: it needs linux-source-X.Y of the headers' version, rustc,
# rust-src, bindgen, the kernel's gcc, make, bc, bison, flex, libelf-dev and
# libssl-dev.  Elsewhere (our bookworm build machines) it builds a trixie
# root with exactly those packages in the cache and runs itself inside it:
# trixie's toolchain needs trixie's libc, which must not reach the host.
# RELEASE defaults to the running kernel natively, else to $DISTRO_RELEASE.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$here/.." && pwd)
# The system's rustc, rust-src and bindgen, never the test kernel's.
export DMABUF_NATIVE_TOOLCHAIN=1
. "$here/env.sh"

# Bump when this script changes how a tree is completed.
RECIPE=1
MIRROR=http://deb.debian.org/debian

log() { printf '[distro-kdir] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mode=build
case "${1:-}" in
--path) mode=path; shift ;;
--run) mode=run; shift ;;
--root) mode=root; shift ;;
esac
rel=
if [ $# -gt 0 ] && [ "$1" != -- ]; then
	rel=$1
	shift
fi
if [ "$mode" = run ]; then
	[ "${1:-}" = -- ] && shift
	[ $# -gt 0 ] || die "usage: distro-kdir.sh --run [RELEASE] -- CMD..."
fi

if [ -z "$rel" ]; then
	rel=$(uname -r)
	[ -d "/usr/src/linux-headers-$rel" ] || rel=$DISTRO_RELEASE
fi
# DMABUF_DISTRO_HEADERS names another headers directory (the error tests).
hdr=${DMABUF_DISTRO_HEADERS:-/usr/src/linux-headers-$rel}
# Debian names the source package by major.minor: linux-source-7.3 for 7.3.4+deb13-amd64.
series=$(echo "$rel" | cut -d. -f1,2)

# --- In a trixie root, unless the host has the headers ------------------------
if [ ! -d "$hdr" ] && [ -z "${DMABUF_DISTRO_IN_ROOT:-}" ]; then
	pkgs=(make bc bison flex cpio kmod xz-utils zstd dwarves libssl-dev gcc-14
		python3 rustc rustfmt rust-src bindgen dkms)
	# Backports' kernel packages, and the libelf their kbuild tools link.
	bpo_pkgs=("linux-headers-$rel" "linux-source-$series" libelf-dev)
	key=$(printf '%s\n' "recipe=$RECIPE" "${pkgs[@]}" "${bpo_pkgs[@]}" | sha256sum | cut -c1-16)
	broot=$CACHE_ROOT/rootfs/trixie-build-$key
	if [ ! -f "$broot/.complete" ]; then
		[ "$mode" = path ] && { echo "$CACHE_ROOT/distro/$rel-(not built yet)"; exit 0; }
		command -v debootstrap >/dev/null || die "no debootstrap: run scripts/install-deps.sh"
		[ "$(id -u)" = 0 ] || die "debootstrap needs root"
		mkdir -p "$(dirname "$broot")"
		exec 9>"$broot.lock"
		flock -n 9 || { log "waiting for another build of $broot"; flock 9; }
	fi
	if [ ! -f "$broot/.complete" ]; then
		start=$(date +%s)
		tmp=$broot.tmp
		rm -rf "$tmp"
		log "debootstrap trixie (minbase) into $tmp"
		debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$broot.log" 2>&1 ||
			{ tail -30 "$broot.log" >&2; exit 1; }
		cat >"$tmp/etc/apt/sources.list.d/backports.sources" <<-SRC
			Types: deb
			URIs: $MIRROR
			Suites: trixie-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		SRC
		in_tmp() { chroot "$tmp" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
		log "installing ${pkgs[*]}, and ${bpo_pkgs[*]} from trixie-backports"
		{
			in_tmp apt-get update -qq &&
			in_tmp apt-get install -y -qq --no-install-recommends "${pkgs[@]}" &&
			in_tmp apt-get install -y -qq --no-install-recommends -t trixie-backports "${bpo_pkgs[@]}" &&
			in_tmp apt-get clean
		} >>"$broot.log" 2>&1 || { tail -30 "$broot.log" >&2; exit 1; }
		touch "$tmp/.complete"
		rm -rf "$broot"
		mv "$tmp" "$broot"
		exec 9>&-
		log "build root ready in $(( $(date +%s) - start )) s"
	fi
	[ "$mode" = root ] && { echo "$broot"; exit 0; }
	# The checkout and the cache at their own paths inside the root; a
	# private mount namespace, so nothing stays mounted after the command.
	mkdir -p "$broot$TOP" "$broot$CACHE_ROOT"
	args=()
	[ "$mode" = path ] && args+=(--path)
	[ "$mode" = run ] && args+=(--run)
	args+=("$rel")
	[ "$mode" = run ] && args+=(-- "$@")
	# The command runs in the current directory when the root has it
	# (inside the checkout or the cache), so relative paths work.
	exec unshare --mount --propagation private sh -c '
		root=$1 top=$2 cache=$3 cwd=$4
		shift 4
		mount --rbind /dev "$root/dev" &&
		mount -t proc proc "$root/proc" &&
		mount --bind "$top" "$root$top" &&
		mount --bind "$cache" "$root$cache" &&
		exec chroot "$root" sh -c "cd \"\$0\" 2>/dev/null || cd /; exec \"\$@\"" "$cwd" "$@"' \
		sh "$broot" "$TOP" "$CACHE_ROOT" "$PWD" \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
		DMABUF_DISTRO_IN_ROOT=1 DMABUF_VFIO_CACHE="$CACHE_ROOT" \
		"$TOP/scripts/distro-kdir.sh" "${args[@]}"
fi

# --- Natively ----------------------------------------------------------------
[ "$mode" = root ] && die "$hdr exists: this machine builds natively, without a root"
[ -f "$hdr/.config" ] || die "no $hdr/.config: install linux-headers-$rel"
grep -qx CONFIG_RUST=y "$hdr/.config" || die "$rel was built without CONFIG_RUST: no Rust module can load into it"
config() { sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$hdr/.config"; }

# The rustc that built the kernel, exactly: the metadata of another rustc
# cannot be loaded by it, and a module's mangled symbols would not match.
want_rustc=$(config CONFIG_RUSTC_VERSION_TEXT)
have_rustc=$(rustc --version 2>/dev/null || echo "no rustc")
[ "$have_rustc" = "$want_rustc" ] ||
	die "$rel was built with '$want_rustc', but this machine has '$have_rustc': install that rustc (Debian: the rustc package of the kernel's suite)"
sysroot=$(rustc --print sysroot)
[ -d "${RUST_LIB_SRC:-$sysroot/lib/rustlib/src/rust/library}/core" ] ||
	die "no Rust core library source for $have_rustc: install rust-src"
command -v bindgen >/dev/null || die "no bindgen: install bindgen"

# The C compiler named by the kernel's config, e.g. gcc-14 for
# "gcc-14 (Debian 14.2.0-19) 14.2.0".
cc_text=$(config CONFIG_CC_VERSION_TEXT)
cc=${cc_text%% *}
command -v "$cc" >/dev/null || die "$rel was built by '$cc_text': install $cc"
grep -qx CONFIG_CC_IS_GCC=y "$hdr/.config" || die "only GCC-built distribution kernels are supported (this one: '$cc_text')"

# The source must be the headers' own version.
hdr_version=$(dpkg-query -W -f '${Version}' "linux-headers-$rel" 2>/dev/null) ||
	die "linux-headers-$rel is not installed, but linux-source-$series is needed at its version: install both from the kernel's suite"
src_version=$(dpkg-query -W -f '${Version}' "linux-source-$series" 2>/dev/null) || src_version="not installed"
[ "$src_version" = "$hdr_version" ] ||
	die "linux-headers-$rel is $hdr_version but linux-source-$series is $src_version: install linux-source-$series=$hdr_version"
tarball=/usr/src/linux-source-$series.tar.xz
[ -f "$tarball" ] || die "no $tarball"

key=$(printf '%s\n' "recipe=$RECIPE" "headers=$hdr_version" "rustc=$have_rustc" \
	"bindgen=$(bindgen --version)" "cc=$("$cc" --version | head -1)" | sha256sum | cut -c1-16)
tree=$CACHE_ROOT/distro/$rel-$key
kdir=$tree/linux-source-$series

kenv() { env CC="$cc" KDIR="$kdir" "$@"; }
if [ "$mode" = path ]; then
	echo "$kdir"
	exit 0
fi

mkdir -p "$(dirname "$tree")"
if [ ! -f "$tree/complete" ]; then
	exec 9>"$tree.lock"
	flock -n 9 || { log "waiting for another build of $tree"; flock 9; }
fi
if [ ! -f "$tree/complete" ]; then
	start=$(date +%s)
	log "completing $rel from linux-source-$series $src_version with $have_rustc and $cc (about 5 minutes on 2 cores)"
	rm -rf "$tree"
	mkdir -p "$tree"
	tar -C "$tree" -xf "$tarball"
	cp "$hdr/.config" "$hdr/Module.symvers" "$kdir/"
	kmake() { make -C "$kdir" CC="$cc" HOSTCC="$cc" -j"$(nproc)" "$@"; }
	{
		kmake olddefconfig &&
		kmake prepare &&
		kmake KERNELRELEASE="$rel" modules_prepare
	} >"$tree/build.log" 2>&1 || { tail -40 "$tree/build.log" >&2; die "build failed (log: $tree/build.log)"; }
	# olddefconfig may only restate what the compiler found; a changed
	# option would make a module the kernel refuses.
	diff <(grep '^CONFIG_' "$hdr/.config" | grep -v -E '^CONFIG_(CC_VERSION_TEXT|GCC_VERSION|AS_VERSION|LD_VERSION|PAHOLE_VERSION|CC_HAS_|AS_HAS_|LD_HAS_|HAVE_|TOOLS_SUPPORT)') \
		<(grep '^CONFIG_' "$kdir/.config" | grep -v -E '^CONFIG_(CC_VERSION_TEXT|GCC_VERSION|AS_VERSION|LD_VERSION|PAHOLE_VERSION|CC_HAS_|AS_HAS_|LD_HAS_|HAVE_|TOOLS_SUPPORT)') \
		>"$tree/config.diff" || log "note: options that differ from the headers' .config: $tree/config.diff"
	got=$(cat "$kdir/include/config/kernel.release")
	[ "$got" = "$rel" ] || die "the tree says release $got, not $rel"
	[ -f "$kdir/rust/libkernel.rmeta" ] || die "no rust/libkernel.rmeta after the build"
	touch "$tree/complete"
	log "$rel completed in $(( $(date +%s) - start )) s: $kdir"
fi

case $mode in
build) echo "$kdir" ;;
run) kenv "$@" ;;
esac
