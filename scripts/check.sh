#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`: every test of the project, one verdict per line, then
# "N passed, N failed, N skipped".  Exits non-zero on any failure.
#   - rustfmt, clippy (CLIPPY=1 build, WERROR), checkpatch, the docs;
#   - the in-tree build, and the KDIR checks against unusable trees;
#   - Debian 13's stock kernel: its build tree completed for Rust modules
#     (scripts/distro-kdir.sh), the module built by DKMS with its rustc;
#   - the guest selftests (tools/selftests/run.sh), splat scan included, on
#     the test kernel and on Debian's.
set -uo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
: >"$out/lint.tap"

step() {	# name, command...
	local name=$1
	shift
	if "$@" >"$out/$name.log" 2>&1; then
		echo "ok - $name" | tee -a "$out/lint.tap"
	else
		echo "not ok - $name" | tee -a "$out/lint.tap"
		tail -30 "$out/$name.log" | sed 's/^/#   /'
	fi
}

step module_builds make -s modules
step rustfmt make -s rustfmt-check
step clippy_werror make -s clippy
step checkpatch make -s checkpatch
step selftests_build make -s selftests
step docs_build rst2html --report=2 --halt=2 Documentation/dmabuf-vfio-pci.rst /dev/null
step intree_build make -s intree
step kdir_errors tools/selftests/kdir_errors.sh "$(scripts/kernel.sh --path)"
. scripts/env.sh
step "stock_kdir_completed_$DISTRO_RELEASE" scripts/distro-kdir.sh "$DISTRO_RELEASE"
step stock_kdir_errors scripts/distro-kdir.sh --run "$DISTRO_RELEASE" -- \
	tools/selftests/distro_kdir_errors.sh "$DISTRO_RELEASE"

# Three boots: the main one (Intel-like CPU: P2P through the host bridge is
# refused), one with an AMD Zen CPU model (it is allowed) for the P2P
# topology tests, and Debian's stock kernel.
: >"$out/guest.tap"
if grep -q '^not ok - \(module_builds\|selftests_build\)' "$out/lint.tap"; then
	echo "not ok - guest selftests (nothing to run: the build failed)" >"$out/guest.tap"
else
	for boot in "results" "results-amd --amd" "results-stock --stock"; do
		set -- $boot
		guest=$TOP/tools/selftests/$1/final.tap
		rm -f "$guest"
		tools/selftests/run.sh ${2:-} | grep -v -E '^(ok|not ok) - '
		if [ -f "$guest" ]; then
			cat "$guest" | tee -a "$out/guest.tap"
		else
			echo "not ok - guest selftests ${2:-} (no verdicts)" | tee -a "$out/guest.tap"
		fi
	done
fi

cat "$out/lint.tap" "$out/guest.tap" >"$out/all.tap"
pass=$(grep -E '^ok - ' "$out/all.tap" | grep -vc '# SKIP')
skip=$(grep -c -E '^ok - .*# SKIP' "$out/all.tap")
fail=$(grep -c -E '^not ok - ' "$out/all.tap")
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
