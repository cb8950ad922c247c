#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scripts/distro-kdir.sh refuses, with a message naming what is missing or
# what differs, every distribution kernel it cannot complete, before it
# unpacks or builds anything.  Runs natively where the headers are, so on
# our machines inside the trixie build root:
#
#   distro-kdir.sh --run RELEASE -- tools/selftests/distro_kdir_errors.sh RELEASE
#
# One TAP line per case.
set -uo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
REAL=/usr/src/linux-headers-${1:?usage: distro_kdir_errors.sh RELEASE}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
n=0

# Headers of the real kernel with some .config lines replaced.
fake() {	# name, sed expression
	mkdir -p "$tmp/$1"
	sed -e "$2" "$REAL/.config" >"$tmp/$1/.config"
	echo "$tmp/$1"
}

case_() {	# name, release, headers dir, expected message
	local name=$1 rel=$2 hdr=$3 want=$4 out rc
	n=$((n + 1))
	out=$(DMABUF_DISTRO_HEADERS=$hdr DMABUF_VFIO_CACHE=$tmp/cache \
		"$TOP/scripts/distro-kdir.sh" "$rel" 2>&1)
	rc=$?
	if [ $rc != 0 ] && grep -q -F -- "$want" <<<"$out" && [ ! -d "$tmp/cache/distro" ]; then
		echo "ok $n $name"
		return
	fi
	echo "not ok $n $name"
	echo "# want: $want (rc $rc, nothing built)"
	sed 's/^/# got: /' <<<"$out" | head -5
	fails=$((fails + 1))
}

rel=${REAL#/usr/src/linux-headers-}
have=$(rustc --version)
case_ no_headers "$rel" "$tmp/none" "no $tmp/none/.config: install linux-headers-$rel"
case_ no_rust "$rel" "$(fake no_rust 's/^CONFIG_RUST=y$/# CONFIG_RUST is not set/')" \
	"was built without CONFIG_RUST"
case_ another_rustc "$rel" \
	"$(fake rustc 's/^CONFIG_RUSTC_VERSION_TEXT=.*/CONFIG_RUSTC_VERSION_TEXT="rustc 1.99.0 (0123456 2027-01-01)"/')" \
	"built with 'rustc 1.99.0 (0123456 2027-01-01)', but this machine has '$have'"
case_ compiler_missing "$rel" \
	"$(fake cc 's/^CONFIG_CC_VERSION_TEXT=.*/CONFIG_CC_VERSION_TEXT="gcc-99 (Debian 99.1.0-1) 99.1.0"/')" \
	"was built by 'gcc-99 (Debian 99.1.0-1) 99.1.0': install gcc-99"
case_ clang_built "$rel" \
	"$(fake clang 's/^CONFIG_CC_IS_GCC=y$/CONFIG_CC_IS_CLANG=y/; s/^CONFIG_CC_VERSION_TEXT=.*/CONFIG_CC_VERSION_TEXT="gcc-14 (Debian clang) 19"/')" \
	"only GCC-built distribution kernels are supported"
# Headers of a release whose package is not installed: the source package
# cannot be matched to them.
case_ source_of_another_version 7.3.99+deb13-amd64 "$(fake other_rel 's/x/x/')" \
	"linux-headers-7.3.99+deb13-amd64 is not installed, but linux-source-7.3 is"

echo "1..$n"
[ $fails = 0 ]
