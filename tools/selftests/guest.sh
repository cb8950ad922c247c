#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test guest (started by run.sh): loads the vfio stack and
# dmabuf-vfio-pci, binds the test devices with driver_override, runs every
# selftest and records one TAP line per test in $RES/results.tap.
#
#   guest.sh check|demo|bench|amd|e2e|stock|only|fuzz RESULTS_DIR
#
# amd: the boot with an AMD Zen CPU model runs only the P2P topology tests;
# its verdicts are named "amd/...".  e2e: only the tests of real users (QEMU
# 11 as a client, installing the module), for working on them.  only: the
# selftest binaries listed in RESULTS_DIR/only, one per line with their
# arguments.  fuzz: the uAPI fuzzer alone (RESULTS_DIR/fuzz-args, written by
# run.sh --fuzz).  stock:
# Debian's own kernel, with the module and test importer DKMS built for it
# ($DMABUF_STOCK_STAGE, stock_stage.sh); verdicts "stock/...", and what
# needs a facility that kernel lacks (KUnit, iommufd, kmemleak) is a SKIP
# that names it.
set -u

MODE=$1
RES=$2
# The benchmark alone, or the fuzzer alone, on the kernel MODE boots
# (run.sh --stock-bench, --stock-fuzz); the whole suite otherwise.
BENCH=${DMABUF_BENCH:-0}
FUZZ=${DMABUF_FUZZ:-0}
[ "$MODE" = fuzz ] && FUZZ=1
SUITE=1
{ [ "$BENCH" = 1 ] || [ "$FUZZ" = 1 ]; } && SUITE=0
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
DRIVER=dmabuf-vfio-pci
KO=$TOP/dmabuf-vfio-pci.ko
IMPORTER_KO=$HERE/importer/dmabuf_test_importer.ko
if [ "$MODE" = stock ]; then
	for KO in "$DMABUF_STOCK_STAGE"/dmabuf-vfio-pci.ko*; do break; done
	IMPORTER_KO=$DMABUF_STOCK_STAGE/dmabuf_test_importer.ko
fi
TAP=$RES/results.tap
: >"$TAP"

say() { printf '%s\n' "$*"; }
# What ran when (guest uptime in seconds): run.sh names the step a guest
# that died was in.
# Under TCG every process costs a third of a second: this script spawns
# none where bash can do the work itself.
step() {
	local up _
	read -r up _ </proc/uptime
	printf '%s %s\n' "$up" "$*" >>"$RES/timeline"
}
# Where the boot went before this script: the kernel's and virtme-ng-init's
# own milestones, at their kernel timestamps.
dmesg | sed -n -E \
	-e 's/^\[ *([0-9.]+)\] Run (.*) as init process.*/\1 boot: kernel runs \2/p' \
	-e 's/^\[ *([0-9.]+)\] virtme-ng-init: (basic initialization done|triggering udev coldplug|waiting for udev to settle|udev is done|starting script)$/\1 boot: \2/p' \
	>>"$RES/timeline"
step start
# The kernel log as it is written: the guest's serial console goes nowhere,
# and a guest that hangs never reaches the dmesg.txt at the end.
dmesg --follow >"$RES/kmsg.txt" 2>&1 &
PREFIX=
[ "$MODE" = amd ] && PREFIX=amd/
[ "$MODE" = stock ] && PREFIX=stock/
result() {	# ok|not ok, name, [detail]
	say "$1 - $PREFIX$2${3:+ # $3}" >>"$TAP"
	say "$1 - $PREFIX$2${3:+ # $3}"
}
skip() {	# name, reason
	result ok "$1" "SKIP $2"
}
check() {	# name, command...: one test from a command's exit status
	local name=$1
	shift
	step "$name"
	if "$@" >"$RES/$name.log" 2>&1; then
		result ok "$name"
	else
		result "not ok" "$name"
		sed 's/^/#   /' "$RES/$name.log"
	fi
}

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
KMEMLEAK=/sys/kernel/debug/kmemleak
[ -w $KMEMLEAK ] && echo clear >$KMEMLEAK

# --- Load and bind --------------------------------------------------------
step load
VFIO_MODULES="iommufd vfio vfio_iommu_type1 vfio-pci-core vfio-pci"
# Debian's kernel has no CONFIG_IOMMUFD: groups and type1 containers only.
[ "$MODE" = stock ] && VFIO_MODULES=${VFIO_MODULES#iommufd }
modprobe -a $VFIO_MODULES || say "modprobe failed"
# aer_inject lets dmabuf_revoke_test drive an AER recovery (absent: that test
# skips); loop is dmabuf_mmap_test's O_DIRECT source (a module on Debian).
modprobe aer_inject 2>/dev/null
modprobe loop 2>/dev/null
insmod "$KO" || { result "not ok" load_module; dmesg >"$RES/dmesg.txt"; exit 0; }

# KUnit suites of the module ran at load; one verdict per test case.
kunit_results() {
	local results suite line found=0 raw _ name
	for results in /sys/kernel/debug/kunit/dmabuf_vfio_pci_*/results; do
		[ -f "$results" ] || continue
		found=1
		suite=${results%/results}
		suite=${suite##*/}
		# Test cases are the indented KTAP lines.
		while IFS= read -r raw; do
			[[ $raw == [[:space:]]* ]] || continue
			read -r line <<<"$raw"
			case "$line" in
			"ok "[0-9]*) read -r _ _ name _ <<<"$line"; result ok "kunit:$suite.$name" ;;
			"not ok "[0-9]*) read -r _ _ _ name _ <<<"$line"; result "not ok" "kunit:$suite.$name" ;;
			esac
		done <"$results"
	done
	[ $found = 1 ] || result "not ok" "kunit suites ran"
}
step kunit
if [ "$MODE" = stock ]; then
	skip kunit "this kernel has no CONFIG_KUNIT: the module's KUnit suites are compiled out"
else
	kunit_results
fi

# Classifies the emulated devices: by the root port they sit under (the
# multifunction topologies at fixed addresses), else on the root bus or
# behind the switch.
step classify
declare -A DEV
for d in /sys/bus/pci/devices/*; do
	bdf=${d##*/}
	read -r vendor <"$d/vendor"
	read -r device <"$d/device"
	id=$vendor:$device
	# Only the test devices cost a process each: under TCG this loop took
	# 80 s with seven per device.
	case $id in
	0x1234:0x11e8 | 0x1af4:0x1110 | 0x1af4:0x1044 | 0x1b36:0x0005) ;;
	*) continue ;;
	esac
	path=$(cd -P "$d" && pwd)
	parent=${path%/*}
	port=${parent##*/}
	# /sys/devices/pci0000:00/<bdf> (four slashes) sits on the root bus.
	slashes=${path//[^\/]/}
	where=root
	[ ${#slashes} -gt 4 ] && where=switch
	if [ "$bdf:$id" = 0000:00:1b.0:0x1234:0x11e8 ]; then
		DEV[VFIO_EDU]=$bdf
		continue
	fi
	case "$port:$id" in
	0000:00:18.0:0x1af4:0x1110) DEV[ACS_IVSHMEM]=$bdf; continue ;;
	0000:00:18.0:0x1234:0x11e8) DEV[ACS_EDU]=$bdf; continue ;;
	0000:00:19.0:0x1af4:0x1110) DEV[NOACS_IVSHMEM]=$bdf; continue ;;
	0000:00:19.0:0x1234:0x11e8) DEV[NOACS_EDU]=$bdf; continue ;;
	0000:00:1a.0:0x1af4:0x1110)
		case $bdf in
		*.0) DEV[SIB_IVSHMEM]=$bdf ;;
		*) DEV[SIB_VFIO]=$bdf ;;
		esac
		continue ;;
	esac
	case "$id:$where" in
	0x1234:0x11e8:root) if [ -z "${DEV[EDU]:-}" ]; then DEV[EDU]=$bdf; else DEV[IMP_EDU]=$bdf; fi ;;
	0x1234:0x11e8:switch) DEV[SW_EDU]=$bdf ;;
	0x1af4:0x1110:root) DEV[IVSHMEM]=$bdf ;;
	0x1af4:0x1110:switch) if [ -z "${DEV[SW_IVSHMEM]:-}" ]; then DEV[SW_IVSHMEM]=$bdf; else DEV[VFIO_IVSHMEM]=$bdf; fi ;;
	0x1af4:0x1044:*) DEV[FLR]=$bdf ;;
	0x1b36:0x0005:root) if [ -z "${DEV[IO]:-}" ]; then DEV[IO]=$bdf; else DEV[VFIO_IO]=$bdf; fi ;;
	esac
done

bound_to() {	# bdf, driver
	[[ /sys/bus/pci/devices/$1/driver -ef /sys/bus/pci/drivers/$2 ]]
}

bind() {	# bdf, driver
	local d=/sys/bus/pci/devices/$1
	[ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
	echo "$2" >"$d/driver_override"
	echo "$1" >/sys/bus/pci/drivers_probe
	bound_to "$1" "$2"
}

IMPORTER=dmabuf-test-importer

# QEMU does not route peer-to-peer traffic inside a switch: an importer's
# DMA to a PCI bus address goes through the vIOMMU.  An identity domain
# makes it reach the peer BAR, as the switch would on real hardware.
identity_domain() {	# bdf
	local type=/sys/bus/pci/devices/$1/iommu_group/type
	echo identity >"$type" && grep -qx identity "$type"
}
step load_test_importer
insmod "$IMPORTER_KO" || result "not ok" load_test_importer

DEVICES=
ROLES="EDU IVSHMEM FLR SW_IVSHMEM IMP_EDU SW_EDU VFIO_IVSHMEM ACS_IVSHMEM ACS_EDU
NOACS_IVSHMEM NOACS_EDU SIB_IVSHMEM SIB_VFIO IO VFIO_IO VFIO_EDU"
for role in $ROLES; do
	bdf=${DEV[$role]:-}
	[ -n "$bdf" ] || { result "not ok" "find_device_$role"; continue; }
	export "DMABUF_TEST_$role=$bdf"
	case $role in
	VFIO_IVSHMEM | SIB_VFIO | VFIO_IO | VFIO_EDU) check "bind_$role" bind "$bdf" vfio-pci ;;
	SW_EDU) check "identity_domain_$role" identity_domain "$bdf"
		check "bind_$role" bind "$bdf" $IMPORTER ;;
	IMP_EDU | ACS_EDU | NOACS_EDU) check "bind_$role" bind "$bdf" $IMPORTER ;;
	*) DEVICES="$DEVICES $bdf"; check "bind_$role" bind "$bdf" $DRIVER ;;
	esac
done
export DMABUF_TEST_DEVICES="${DEVICES# }"
# Where the fuzzer writes every thread's last operations when it fails.
export DMABUF_FUZZ_HISTORY=$RES/fuzz.history

# --- Demo transcript --------------------------------------------------------
if [ "$MODE" = demo ]; then
	say ""
	say "== dmabuf-vfio-pci demo ($(uname -r)) =="
	for role in $ROLES; do
		bdf=${DEV[$role]:-}
		[ -n "$bdf" ] || continue
		d=/sys/bus/pci/devices/$bdf
		say ""
		say "$role: $bdf [$(cat "$d/vendor"):$(cat "$d/device")]" \
			"driver=$(basename "$(readlink "$d/driver")")" \
			"iommu_group=$(basename "$(readlink "$d/iommu_group")")" \
			"vfio=$(ls "$d/vfio-dev" 2>/dev/null)"
		i=0
		while read -r start end flags; do
			if [ $((end)) -ne 0 ]; then
				say "  BAR$i: $((end - start + 1)) bytes at $start"
			fi
			i=$((i + 1))
			[ $i -ge 6 ] && break
		done <"$d/resource"
	done
	say ""
	say "Exercising the devices through the driver (both vfio uAPIs):"
	"$HERE/vfio_skeleton_test" -f vfio 2>&1 | grep -E '^(ok|not ok)' | sed 's/^/  /'
	say ""
	say "Peer-to-peer through a dma-buf:"
	"$HERE/dmabuf_demo"
	say ""
fi

# --- Benchmark ----------------------------------------------------------------
if [ "$MODE" = bench ] || [ "$BENCH" = 1 ]; then
	say ""
	say "== dmabuf-vfio-pci bench ($(uname -r), $(date -u +%F)) =="
	"$HERE/dmabuf_bench"
	say ""
fi

# --- Selftest binaries --------------------------------------------------------
TESTS=()
case $MODE in
check | stock) [ "$SUITE" = 0 ] || TESTS=("$HERE"/*_test) ;;
amd) TESTS=("$HERE/dmabuf_topology_test") ;;
esac
if [ "$MODE" = only ]; then
	while read -r t; do [ -n "$t" ] && TESTS+=("$HERE/$t"); done <"$RES/only"
fi
if [ ${#TESTS[@]} -gt 0 ]; then
	for t in "${TESTS[@]}"; do
		read -r t args <<<"$t"
		name=${t##*/}
		step "$name"
		# shellcheck disable=SC2086 # the arguments of an --only line
		"$t" $args >"$RES/$name.log" 2>&1
		# kselftest harness: "ok N fixture.variant.test [# SKIP ...]"
		while IFS= read -r line; do
			case "$line" in
			"ok "[0-9]*"# SKIP"*) read -r _ _ tc _ <<<"$line"; result ok "$name:$tc" "SKIP${line#*# SKIP}" ;;
			"ok "[0-9]*) read -r _ _ tc _ <<<"$line"; result ok "$name:$tc" ;;
			"not ok "[0-9]*) read -r _ _ _ tc _ <<<"$line"; result "not ok" "$name:$tc"
				grep -E '^# ' "$RES/$name.log" | grep -v '^# *(RUN|OK|PASSED|FAILED|Totals)' |
					sed 's/^/#   /' | head -20 ;;
			esac
		done <"$RES/$name.log"
	done
fi

# --- Fuzzing (make fuzz) -------------------------------------------------------
# RESULTS_DIR/fuzz-args, "SEED SECONDS THREADS [TARGET...]" (run.sh --fuzz,
# --stock-fuzz):
# one campaign per target, side by side; each prints a progress line every
# 10 s into its log.
if [ "$FUZZ" = 1 ]; then
	read -r seed secs threads targets <"$RES/fuzz-args"
	# Where the kernel and its modules are, to name the RIPs run.sh samples
	# from a guest that stops making progress (cpu-state; name_rips.py).
	# Debian's System.map is a placeholder: the guest's own table it is.
	cp /proc/kallsyms "$RES/kallsyms" 2>/dev/null
	step fuzz
	pids=()
	for target in ${targets:-ours vfio}; do
		DMABUF_FUZZ_HISTORY=$RES/fuzz-$target.history \
			"$HERE/dmabuf_fuzz_test" --campaign "$target" "$seed" "$secs" "$threads" \
			>"$RES/fuzz-$target.log" 2>&1 &
		pids+=("$!:$target")
	done
	for p in "${pids[@]}"; do
		if wait "${p%%:*}"; then
			result ok "fuzz_${p#*:}" "seed $seed"
		else
			result "not ok" "fuzz_${p#*:}" "seed $seed"
		fi
	done
fi

# --- Real users ----------------------------------------------------------------
# QEMU 11 assigning a device bound to the driver, through both vfio backends
# (qemu_e2e.sh; QEMU 11 is the guest root's own).
if [ "$SUITE" = 1 ] && { [ "$MODE" = check ] || [ "$MODE" = e2e ] || [ "$MODE" = stock ]; }; then
	for backend in legacy iommufd; do
		if [ $backend = iommufd ] && [ ! -e /dev/iommu ]; then
			skip "qemu11_${backend}_assigns_the_device" "this kernel has no iommufd"
			continue
		fi
		check "qemu11_${backend}_assigns_the_device" \
			"$HERE/qemu_e2e.sh" $backend "$DMABUF_TEST_IVSHMEM"
	done
fi

# --- Driver lifecycle ---------------------------------------------------------
unbind_rebind() {
	local bdf=$DMABUF_TEST_EDU d=/sys/bus/pci/devices/$DMABUF_TEST_EDU
	echo "$bdf" >/sys/bus/pci/drivers/$DRIVER/unbind || return 1
	[ ! -e "$d/driver" ] || return 1
	[ ! -e "$d/vfio-dev" ] || return 1
	echo "$bdf" >/sys/bus/pci/drivers_probe || return 1
	bound_to "$bdf" $DRIVER && [ -d "$d/vfio-dev" ]
}

modalias_is_vfio_variant() {
	modinfo -F alias "$KO" | grep -qx 'vfio_pci:v\*d\*sv\*sd\*bc\*sc\*i\*'
}

# rmmod with devices bound unbinds them all; reloading and reprobing binds
# them again through driver_override.
rmmod_and_reload() {
	rmmod dmabuf_vfio_pci || return 1
	[ ! -d /sys/module/dmabuf_vfio_pci ] || return 1
	for bdf in $DMABUF_TEST_DEVICES; do
		[ ! -e "/sys/bus/pci/devices/$bdf/driver" ] || { echo "$bdf still bound"; return 1; }
	done
	insmod "$KO" || return 1
	for bdf in $DMABUF_TEST_DEVICES; do
		echo "$bdf" >/sys/bus/pci/drivers_probe
		bound_to "$bdf" $DRIVER ||
			{ echo "$bdf not rebound"; return 1; }
	done
}

# kmemleak reports nothing allocated by vfio or this driver once every
# device is unbound and the module is gone.
no_leaks() {
	rmmod dmabuf_vfio_pci || return 1
	rmmod dmabuf_test_importer || return 1
	[ -w $KMEMLEAK ] || { echo "no kmemleak"; return 1; }
	echo scan >$KMEMLEAK
	sleep 1
	echo scan >$KMEMLEAK
	cp $KMEMLEAK "$RES/kmemleak.txt"
	# Linux 7.3's dma_buf_free_sgt() frees its DMA-only tables with
	# orig_nents == 0, which frees no scatterlist: every unmap through
	# in-tree vfio-pci's exporter leaks one.  Those are not ours; they are
	# kept apart as evidence.
	awk -v RS='unreferenced object' 'NR > 1 && /dma_buf_phys_vec_to_sgt/ {
		print "unreferenced object" $0 }' "$RES/kmemleak.txt" >"$RES/kmemleak-in-tree.txt"
	awk -v RS='unreferenced object' 'NR > 1 && !/dma_buf_phys_vec_to_sgt/ {
		print "unreferenced object" $0 }' "$RES/kmemleak.txt" >"$RES/kmemleak-ours.txt"
	if grep -E 'vfio|dmabuf' "$RES/kmemleak-ours.txt"; then
		cat "$RES/kmemleak-ours.txt"
		return 1
	fi
}

# The demo's transcript (make demo) as the user reads it: it succeeds, and
# every line is one process's.
demo_transcript() {
	local out
	out=$("$HERE/dmabuf_demo" 2>&1) || { echo "$out"; return 1; }
	echo "$out"
	! grep -E '\[client [0-9]+\].*\[client [0-9]+\]' <<<"$out"
}

if [ "$SUITE" = 1 ] && { [ "$MODE" = check ] || [ "$MODE" = stock ]; }; then
	check demo_transcript_is_line_by_line demo_transcript
	check modalias_is_vfio_variant modalias_is_vfio_variant
	check unbind_rebind unbind_rebind
	check rmmod_and_reload rmmod_and_reload
	if [ -e $KMEMLEAK ]; then
		check no_leaks_after_rmmod no_leaks
	else
		skip no_leaks_after_rmmod "this kernel has no kmemleak"
	fi
fi

# Installing it as a user does (install_e2e.sh): what `make install` and DKMS
# installed for this kernel (staged by run.sh), then modprobe by name.  Last:
# they load and unload the installed copy.
if [ "$MODE" = check ] || [ "$MODE" = e2e ]; then
	[ ! -d /sys/module/dmabuf_vfio_pci ] || rmmod dmabuf_vfio_pci
	for how in make dkms; do
		check "install_with_${how}_then_modprobe" "$HERE/install_e2e.sh" $how "$DMABUF_INSTALL_STAGE"
	done
fi

step done
dmesg >"$RES/dmesg.txt"
touch "$RES/complete"
