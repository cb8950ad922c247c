#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the test kernel: Debian's linux-source-7.3 with
# scripts/config/test-kernel.config merged onto x86_64 defconfig, built with
# LLVM=-19.  The tree lives in the cache outside the clone, keyed by everything
# that changes its output, so nothing stale is ever reused:
#   source package version, config fragment, rustc, bindgen and clang versions.
#
#   scripts/kernel.sh           build if needed, print the build tree's path
#   scripts/kernel.sh --path    print the path the current key maps to
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

# Bump when this script changes how the tree is configured or built.
RECIPE=2

fragment=$here/config/test-kernel.config
ksrc_version=$(cat "$DEPS_DIR/linux-source/VERSION" 2>/dev/null || echo none)
key_material=$(printf '%s\n' "recipe=$RECIPE" "source=$ksrc_version" \
	"fragment=$(sha256sum <"$fragment" | cut -c1-64)" \
	"kconfig=$(sha256sum <"$here/../Kconfig" | cut -c1-64)" \
	"rustc=$(rustc --version)" "bindgen=$("$BINDGEN" --version 2>/dev/null)" \
	"clang=$(clang-19 --version | head -1)")
key=$(printf '%s' "$key_material" | sha256sum | cut -c1-16)
ktree=$CACHE_ROOT/kernel/$ksrc_version-$key
kdir=$ktree/linux-source-$KVER_MAJOR

if [ "${1:-}" = --path ]; then
	echo "$kdir"
	exit 0
fi

log() { printf '[kernel] %s\n' "$*" >&2; }

# One build per tree: a second make in a tree being built corrupts it.
if [ ! -f "$ktree/complete" ]; then
	mkdir -p "$(dirname "$ktree")"
	exec 9>"$ktree.lock"
	flock -n 9 || { log "waiting for another build of $ktree"; flock 9; }
fi

if [ -f "$ktree/complete" ]; then
	log "reusing cached kernel $kdir"
	echo "$kdir"
	exit 0
fi

[ -f "$KSRC_TARBALL" ] || { log "no kernel source: run scripts/install-deps.sh"; exit 1; }
mkdir -p "$ktree"
printf '%s\n' "$key_material" >"$ktree/key"

if [ ! -f "$kdir/Makefile" ]; then
	log "unpacking $ksrc_version"
	tar -C "$ktree" -xf "$KSRC_TARBALL"
fi

kmake() { make -C "$kdir" LLVM=-19 -j"$(nproc)" "$@"; }

if [ ! -f "$kdir/.config" ]; then
	# The driver is also built in-tree (drivers/vfio/pci/dmabuf-vfio-pci/, from
	# the sources of the checkout that builds the tree): its Kconfig must parse
	# and its dependencies hold for CONFIG_DMABUF_VFIO_PCI=m to survive below.
	# scripts/intree.sh --build refreshes and rebuilds it later.
	"$here/intree.sh" "$kdir"
	log "configuring: x86_64 defconfig + $(basename "$fragment")"
	kmake -s defconfig
	(cd "$kdir" && scripts/kconfig/merge_config.sh -m .config "$fragment") >"$ktree/merge.log"
	kmake -s olddefconfig
	# Every symbol the fragment names must have survived olddefconfig: a silently
	# dropped CONFIG_RUST or CONFIG_KASAN would make every later test meaningless.
	bad=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=n) sym=${line%%=*}; grep -q "^$sym=" "$kdir/.config" && { log "lost: $line"; bad=1; } ;;
		CONFIG_*) grep -qxF "$line" "$kdir/.config" || { log "lost: $line"; bad=1; } ;;
		"# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
			grep -q "^$sym=" "$kdir/.config" && { log "lost: $line"; bad=1; } ;;
		esac
	done <"$fragment"
	[ $bad = 0 ] || { rm -f "$kdir/.config"; exit 1; }
fi

# Every line of the build log carries the seconds since the build started:
# scripts/build-profile.sh sums them per directory (where a cold build goes).
stamp() {
	local t0=${EPOCHREALTIME/./} t line
	while IFS= read -r line; do
		t=$(( ${EPOCHREALTIME/./} - t0 ))
		printf '%d.%02d %s\n' $((t / 1000000)) $((t % 1000000 / 10000)) "$line"
	done
}
start=$(date +%s)
log "building (12 to 32 minutes on 2 cores, measured)"
kmake all 2>&1 | stamp >"$ktree/build.log"
[ "${PIPESTATUS[0]}" = 0 ] || { tail -50 "$ktree/build.log" >&2; exit 1; }
kmake -s headers_install INSTALL_HDR_PATH="$ktree/headers" >>"$ktree/build.log" 2>&1
rm -rf "$ktree/modules"
kmake -s modules_install INSTALL_MOD_PATH="$ktree/modules" >>"$ktree/build.log" 2>&1
log "built in $(( $(date +%s) - start )) s"
touch "$ktree/complete"
echo "$kdir"
