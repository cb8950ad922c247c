#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boots the cached test kernel once under virtme-ng (TCG, q35, intel-iommu)
# with the test topology, runs guest.sh inside, then judges the run: every
# TAP line of the guest counts, and the guest kernel log must be free of
# splats whatever the tests said.
#
#   run.sh            run the selftests (make check)
#   run.sh --demo     print the demo transcript (make demo)
#
# Topology (one boot serves every test):
#   00:xx edu                      DMABUF_TEST_EDU (ours)
#   00:xx edu                      DMABUF_TEST_IMP_EDU (test importer)
#   00:xx ivshmem-plain, 1 GiB BAR DMABUF_TEST_IVSHMEM (ours; RAM not preallocated)
#   00:xx pci-testdev (I/O BAR 1)  DMABUF_TEST_IO (ours)
#   00:xx pci-testdev (I/O BAR 1)  DMABUF_TEST_VFIO_IO (in-tree vfio-pci)
#   00:1b edu                      DMABUF_TEST_VFIO_EDU (vfio-pci: a process's
#                                  own device in a type1 container)
#   root port -> switch -> edu                  DMABUF_TEST_SW_EDU (test importer)
#                       -> ivshmem-plain (8G)   DMABUF_TEST_SW_IVSHMEM (ours)
#                       -> virtio-rng (PCIe FLR + PM + AER)  DMABUF_TEST_FLR (ours)
#                       -> ivshmem-plain (8G)   DMABUF_TEST_VFIO_IVSHMEM (in-tree
#                          vfio-pci: the conformance reference)
#   root port 00:18.0 (ACS redirect on, as Linux sets it with an IOMMU)
#                       -> .0 ivshmem-plain (64M) DMABUF_TEST_ACS_IVSHMEM (ours)
#                       -> .1 edu                 DMABUF_TEST_ACS_EDU (test importer)
#   root port 00:19.0 (ACS redirect off: pci=disable_acs_redir=)
#                       -> .0 ivshmem-plain (64M) DMABUF_TEST_NOACS_IVSHMEM (ours)
#                       -> .1 edu                 DMABUF_TEST_NOACS_EDU (test importer)
#   root port 00:1a.0   -> .0 ivshmem-plain (64M) DMABUF_TEST_SIB_IVSHMEM (ours)
#                       -> .1 ivshmem-plain (64M) DMABUF_TEST_SIB_VFIO (vfio-pci; its
#                          hot reset resets ours too)
# edu's DMA engine takes 64-bit addresses (dma_mask), so it can reach BARs.
#
#   run.sh --bench    runs the benchmark (make bench) and prints its table
#   run.sh --e2e      runs only the real-user tests (QEMU 11, install;
#                     results in results-e2e/)
#   run.sh --amd      boots with an AMD Zen CPU model (-cpu EPYC), where Linux
#                     routes P2P through the host bridge, and runs only the
#                     P2P topology tests (results in results-amd/)
#   run.sh --only 'BIN [ARGS]'...
#                     runs only the named selftest binaries, each with its
#                     kselftest arguments (e.g. 'dmabuf_mmap_test -r
#                     mmap.huge_mappings'), for working on one test; judged
#                     as a full run (results in results-only/)
#   run.sh --fuzz SEED SECONDS THREADS [TARGET...]
#                     runs the uAPI fuzzer (make fuzz): a campaign of SECONDS
#                     with THREADS threads per target, "ours" (SW_IVSHMEM +
#                     FLR) and "vfio" (in-tree vfio-pci on VFIO_IVSHMEM) side
#                     by side by default (results in results-fuzz/, or
#                     $DMABUF_FUZZ_RESULTS)
#   run.sh --stock-bench
#                     runs the benchmark on Debian's own kernel, as --stock
#                     boots it (results in results-stock-bench/)
#   run.sh --stock-fuzz SEED SECONDS THREADS [TARGET...]
#                     the fuzzer as --fuzz runs it, on Debian's own kernel
#                     (make fuzz KERNEL=stock; results in results-stock-fuzz/)
#   run.sh --stock    boots Debian's own kernel ($DISTRO_RELEASE, its image
#                     and modules as Debian ships them, in the guest root)
#                     with the module DKMS built for it (stock_stage.sh), and
#                     runs the selftests through the group/container uAPI
#                     (results in results-stock/)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
. "$TOP/scripts/env.sh"

MODE=check
BENCH=0
FUZZ=
RES=$HERE/results
CPU=()
case "${1:-}" in
--demo) MODE=demo ;;
--bench) MODE=bench RES=$HERE/results-bench ;;
--amd) MODE=amd RES=$HERE/results-amd CPU=(-cpu EPYC) ;;
--e2e) MODE=e2e RES=$HERE/results-e2e ;;
--stock) MODE=stock RES=$HERE/results-stock ;;
--stock-bench) MODE=stock BENCH=1 RES=$HERE/results-stock-bench ;;
--only) MODE=only RES=$HERE/results-only; shift; ONLY=("$@") ;;
--fuzz) MODE=fuzz RES=${DMABUF_FUZZ_RESULTS:-$HERE/results-fuzz}; shift; FUZZ="${*:-$(date +%s) 1800 4}" ;;
--stock-fuzz) MODE=stock RES=${DMABUF_FUZZ_RESULTS:-$HERE/results-stock-fuzz}; shift; FUZZ="${*:-$(date +%s) 1800 4}" ;;
esac
# The guest boots from a trixie root of its own, with QEMU 11 for
# qemu_e2e.sh and no udev (scripts/guest-rootfs.sh, run by
# scripts/install-deps.sh).
GUEST_ROOT=$("$TOP/scripts/guest-rootfs.sh" --path)
if [ "$MODE" = stock ]; then
	KIMG=$GUEST_ROOT/usr/lib/modules/$DISTRO_RELEASE/vmlinuz.unsigned
	KNAME=$DISTRO_RELEASE
else
	KDIR=${KDIR:-$("$TOP/scripts/kernel.sh" --path)}
	KIMG=$KDIR
	KNAME=$(basename "$(dirname "$KDIR")")
fi
rm -rf "$RES"
mkdir -p "$RES"
# The guest reads the --only list from its results directory.
[ "$MODE" = only ] && printf '%s\n' "${ONLY[@]}" >"$RES/only"
# The fuzz campaign's parameters too.
[ -n "$FUZZ" ] && echo "$FUZZ" >"$RES/fuzz-args"
# Where the guest sees $RES: the checkout above it is read-only there, and
# virtme-ng mounts the writable directories first.
GUEST_RES=/run/dmabuf-results

# virtme-ng shares a host directory at the same path in the guest, onto a
# mount point that must exist in the read-only root, and only paths made of
# [a-zA-Z0-9_+ /.-] (the kernel cache's has a '~'): the nearest such parent.
shareable() {	# path
	local d=$1
	while [[ $d == *[!a-zA-Z0-9_+\ /.-]* ]]; do d=${d%/*}; done
	echo "$d"
}
SHARED=("$TOP")
# Debian's kernel finds its modules in the root's own /lib/modules.
[ "$MODE" = stock ] || SHARED+=("$(shareable "$KDIR")")
for d in "${SHARED[@]}"; do
	[ -d "$GUEST_ROOT$d" ] || mkdir -p "$GUEST_ROOT$d"
done
if [ "$MODE" != stock ]; then
	# A --root guest loads modules from its own /lib/modules/<release>: a
	# link to virtme-ng's module directory of the build tree, which the
	# guest sees at the host's path.
	(cd "$KDIR" && virtme-prep-kdir-mods) >"$RES/prep-kdir-mods.log" 2>&1 ||
		echo "[run] virtme-prep-kdir-mods failed (see $RES/prep-kdir-mods.log)"
	ln -sfn "$KDIR/.virtme_mods/lib/modules/0.0.0" \
		"$GUEST_ROOT/lib/modules/$(cat "$KDIR/include/config/kernel.release")"
fi

# The QEMU that boots the guest (DMABUF_QEMU): "11", the guest root's QEMU
# 11 (qemu11.sh), for every guest on multi-threaded TCG: bookworm's 7.2
# loses an MMIO write now and then there while another vCPU changes the
# memory map, and a lost local-APIC EOI froze fuzz campaigns (see
# qemu11.sh).  The benchmark's guests run on one thread (-icount), where
# that race cannot happen, on bookworm's QEMU ("system") their tables were
# measured on.  A path selects any other binary.
if [ -z "${DMABUF_QEMU:-}" ]; then
	DMABUF_QEMU=11
	{ [ "$MODE" = bench ] || [ "$BENCH" = 1 ]; } && [ "${DMABUF_BENCH_ICOUNT:-1}" = 1 ] && DMABUF_QEMU=system
fi
case $DMABUF_QEMU in
11) QEMU_BIN=$HERE/qemu11.sh ;;
system) QEMU_BIN= ;;
*) QEMU_BIN=$DMABUF_QEMU ;;
esac
# QEMU 9 and later give a PCIe virtio function its PM capability always,
# and have no switch for it.
PM_INIT=,x-pcie-pm-init=on
"${QEMU_BIN:-qemu-system-x86_64}" -device virtio-rng-pci,help 2>/dev/null | grep -q x-pcie-pm-init || PM_INIT=

QEMU_OPTS=(
	-machine q35,kernel-irqchip=split
	# q35's ACPI hotplug of devices behind bridges gives each bridge 32 AML
	# slot objects, which Linux searched for every device it found behind
	# one: 0.6 s a device under TCG, 9 s of each boot.  No test hotplugs.
	-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off
	-device intel-iommu,intremap=on
	-device edu,dma_mask=0xffffffffffffffff
	-device edu,dma_mask=0xffffffffffffffff
	# An I/O BAR (BAR 1) each for ours and vfio-pci: export errnos.
	-device pci-testdev
	-device pci-testdev
	-device edu,addr=0x1b,dma_mask=0xffffffffffffffff
	"${CPU[@]}"
	-object memory-backend-ram,id=ivbig,size=1G
	-device ivshmem-plain,memdev=ivbig
	-device pcie-root-port,id=rp_sw,chassis=2,slot=2
	-device x3130-upstream,id=sw_up,bus=rp_sw
	-device xio3130-downstream,id=sw_dn0,bus=sw_up,chassis=3,slot=0
	-device xio3130-downstream,id=sw_dn1,bus=sw_up,chassis=4,slot=1
	-device xio3130-downstream,id=sw_dn2,bus=sw_up,chassis=5,slot=2
	-device virtio-rng-pci,bus=sw_dn2,disable-legacy=on,x-pcie-flr-init=on$PM_INIT,aer=on
	-device xio3130-downstream,id=sw_dn3,bus=sw_up,chassis=6,slot=3
	-object memory-backend-ram,id=ivvfio,size=8G
	-device ivshmem-plain,memdev=ivvfio,bus=sw_dn3
	-device edu,bus=sw_dn0,dma_mask=0xffffffffffffffff
	-object memory-backend-ram,id=ivsw,size=8G
	-device ivshmem-plain,memdev=ivsw,bus=sw_dn1
	-device pcie-root-port,id=rp_acs,chassis=7,slot=7,addr=0x18
	-object memory-backend-ram,id=ivacs,size=64M
	-device ivshmem-plain,memdev=ivacs,bus=rp_acs,addr=0.0,multifunction=on
	-device edu,bus=rp_acs,addr=0.1,dma_mask=0xffffffffffffffff
	-device pcie-root-port,id=rp_noacs,chassis=8,slot=8,addr=0x19
	-object memory-backend-ram,id=ivnoacs,size=64M
	-device ivshmem-plain,memdev=ivnoacs,bus=rp_noacs,addr=0.0,multifunction=on
	-device edu,bus=rp_noacs,addr=0.1,dma_mask=0xffffffffffffffff
	-device pcie-root-port,id=rp_sib,chassis=9,slot=9,addr=0x1a
	-object memory-backend-ram,id=ivsib0,size=64M
	-device ivshmem-plain,memdev=ivsib0,bus=rp_sib,addr=0.0,multifunction=on
	-object memory-backend-ram,id=ivsib1,size=64M
	-device ivshmem-plain,memdev=ivsib1,bus=rp_sib,addr=0.1
	# A guest that resets itself (a triple fault with -no-reboot) ends
	# QEMU without a word on the console: the log says so.
	-D "$RES/qemu.log" -d cpu_reset
	# What a guest that stopped making progress was doing (cpu_state()).
	-monitor unix:$RES/monitor.sock,server=on,wait=off
)
# Benchmarks on an instruction clock: with -icount the guest's time is the
# count of instructions it ran (shift=0: 1 ns each) on one host thread, so
# a figure is the work done, whatever else the host does meanwhile.
# Every vCPU's instructions advance that one clock: the benchmark's guest
# has one CPU, so the work of the other (a kworker, RCU's callbacks)
# cannot land between the stamps of a loop without running on its CPU.
# On the test kernel kmemleak is off for the benchmark's boot: it frees
# its record of every freed object from an RCU callback, and where a
# batch of those lands is the timer's phase, not the loop's work.
CPUS=2
if [ "$MODE" = bench ] || [ "$BENCH" = 1 ]; then
	CPUS=1
	[ "${DMABUF_BENCH_ICOUNT:-1}" = 1 ] && QEMU_OPTS+=(-icount shift=0,align=off,sleep=off)
	[ "$MODE" = bench ] && DMABUF_APPEND="kmemleak=off ${DMABUF_APPEND:-}"
fi

# No verdict comes from a total time: a guest is stopped only when it makes
# no progress (no file of its own in $RES changes: the timeline, a test's
# log) for $STALL seconds.  How long the boot took in this run measures how
# fast the guest runs here and now, and stretches the limit for the tests.
STALL=${DMABUF_STALL_SECONDS:-600}
# What the boot (QEMU start to guest.sh) takes on an idle build machine.
BOOT_REFERENCE=60

# What a stuck guest is doing, from QEMU's monitor, into $RES/cpu-state:
# every vCPU's registers five times a second apart (a RIP that never moves
# spins; a halted CPU has HLT=1), each local APIC (is a timer armed, an
# interrupt pending?), then SysRq w and l on the emulated keyboard: the
# kernel's own list of blocked tasks and every CPU's backtrace, on the
# console (sysrq_always_enabled).  name_rips.py names the RIPs.
cpu_state() {
	[ -S "$RES/monitor.sock" ] || return 0
	local i
	{
		for i in 1 2 3 4 5; do
			echo "=== sample $i, $(date +%T)"
			monitor 'info registers -a'
			sleep 1
		done
		echo "=== local APICs"
		monitor 'info lapic 0'
		monitor 'info lapic 1'
		echo "=== SysRq w, l (output on the console)"
		monitor 'sendkey alt-sysrq-w'
		sleep 5
		monitor 'sendkey alt-sysrq-l'
		sleep 5
	} >"$RES/cpu-state" 2>&1
}

monitor() {	# HMP command
	python3 - "$RES/monitor.sock" "$1" <<-'PY'
		import socket, sys
		s = socket.socket(socket.AF_UNIX)
		s.settimeout(10)
		s.connect(sys.argv[1])
		def until_prompt():
		    buf = b""
		    while not buf.endswith(b"(qemu) "):
		        chunk = s.recv(65536)
		        if not chunk:
		            break
		        buf += chunk
		    return buf
		until_prompt()
		s.sendall(sys.argv[2].encode() + b"\n")
		sys.stdout.write(until_prompt().decode(errors="replace"))
		PY
}

stop_guest() {	# vng pid
	kill "$1" 2>/dev/null
	# Ending vng does not always end the QEMU it started.
	pkill -f -- "dmabuf_results=$RES " 2>/dev/null
}

# Runs beside vng: copies every new timeline step into timeline.host with
# the host's seconds since QEMU started, and stops a guest that is stuck.
watchdog() {	# vng pid
	local t0=$SECONDS seen=0 n now last=$SECONDS limit=$STALL booted=
	local mark=$RES/.progress
	touch "$mark"
	while kill -0 "$1" 2>/dev/null; do
		sleep 2
		now=$SECONDS
		n=0
		[ -f "$RES/timeline" ] && n=$(wc -l <"$RES/timeline")
		if [ "$n" -gt "$seen" ]; then
			sed -n "$((seen + 1)),${n}p" "$RES/timeline" |
				sed "s/^/$((now - t0)) /" >>"$RES/timeline.host"
			seen=$n
			if [ -z "$booted" ] && grep -q ' start$' "$RES/timeline"; then
				booted=$((now - t0))
				limit=$(( STALL * (booted > BOOT_REFERENCE ? booted : BOOT_REFERENCE) / BOOT_REFERENCE ))
				echo "$booted $limit" >"$RES/boot-seconds"
			fi
		fi
		if [ -n "$(find "$RES" -maxdepth 1 -type f -newer "$mark" ! -name console.log \
			! -name qemu.log ! -name timeline.host ! -name kmsg.txt ! -name .progress -print -quit)" ]; then
			touch "$mark"
			last=$now
		elif [ $((now - last)) -ge "$limit" ]; then
			echo "$((now - t0)) s after QEMU started, nothing changed for $((now - last)) s (limit $limit s)" >"$RES/stalled"
			cpu_state
			stop_guest "$1"
			return
		fi
	done
}

boot() {
	local d ro=()
	for d in "${SHARED[@]}"; do ro+=("--rodir=$d=$d"); done
	# dmabuf_results= tells this run's QEMU from another's (stop_guest).
	"$VNG" --run "$KIMG" --disable-microvm --disable-kvm ${QEMU_BIN:+--qemu "$QEMU_BIN"} \
		--cpus $CPUS --memory 3G --root "$GUEST_ROOT" \
		--rwdir="$GUEST_RES=$RES" "${ro[@]}" \
		--qemu-opts="${QEMU_OPTS[*]}" \
		--append "intel_iommu=on no5lvl panic_on_warn=0 loglevel=5 sysrq_always_enabled pci=disable_acs_redir=0000:00:19.0 ${DMABUF_APPEND:-} dmabuf_results=$RES" \
		--exec "env DMABUF_INSTALL_STAGE=$GUEST_RES/install DMABUF_STOCK_STAGE=$GUEST_RES/stage DMABUF_BENCH=$BENCH DMABUF_FUZZ=${FUZZ:+1} $HERE/guest.sh $MODE $GUEST_RES" </dev/null >"$RES/console.log" 2>&1 &
	local vng=$! rc dog
	watchdog $vng &
	dog=$!
	wait $vng
	rc=$?
	kill $dog 2>/dev/null
	wait $dog 2>/dev/null
	stop_guest $vng
	return $rc
}

# make install and DKMS for the test kernel, on the host: the guest installs
# from there (install_e2e.sh).
if [ "$MODE" = check ] || [ "$MODE" = e2e ]; then
	"$HERE/install_stage.sh" "$KDIR" "$RES/install" >"$RES/install-stage.log" 2>&1 ||
		echo "[run] install_stage.sh failed (see $RES/install-stage.log)"
fi
# The module and the test importer for Debian's kernel, built by DKMS in the
# trixie build root (the guest loads them from the stage).
if [ "$MODE" = stock ]; then
	"$HERE/stock_stage.sh" "$DISTRO_RELEASE" "$RES/stage" >"$RES/stock-stage.log" 2>&1 ||
		echo "[run] stock_stage.sh failed (see $RES/stock-stage.log)"
	grep '^vermagic:' "$RES/stock-stage.log" | sed 's/^/[run] module /'
fi

# A guest kernel that said it is in trouble: its run failed, whatever else.
SPLATS='BUG:|WARNING:|KASAN|UBSAN|Oops|possible circular locking|possible recursive locking|INFO: task .* blocked|blocked for more than|general protection fault|kernel BUG|Kernel panic'

# Why a guest stopped before guest.sh finished, in a few lines: the step it
# was in (guest.sh's timeline), what QEMU logged, the last kernel lines, and
# whether the host's OOM killer took QEMU.
diagnose() {	# seconds, vng exit code
	local last
	last=$(tail -1 "$RES/timeline" 2>/dev/null)
	echo "[run] the guest stopped after $1 s (vng exit $2), in: ${last:-boot, before guest.sh started} (guest uptime, step)"
	[ -f "$RES/stalled" ] && echo "[run] stopped for lack of progress: $(cat "$RES/stalled")"
	[ -s "$RES/cpu-state" ] && grep -a -E '^(=== |CPU#|RIP=)' "$RES/cpu-state" | head -15 | sed 's/^/[run] /'
	grep -a -h -E 'Triple fault|fatal|[Aa]ssert|abort' "$RES/qemu.log" 2>/dev/null | head -3 | sed 's/^/[run] qemu: /'
	grep -a -v -E '^(ok|not ok) - ' "$RES/console.log" | grep -v '^$' | tail -8 | sed 's/^/[run] console: /'
	tail -12 "$RES/kmsg.txt" 2>/dev/null | sed 's/^/[run] kernel: /'
	dmesg 2>/dev/null | grep -i -E 'out of memory|oom-kill|killed process' | tail -2 | sed 's/^/[run] host: /'
}

# Where the time of a run went: the boot's milestones (guest uptime), the
# host's seconds from QEMU's start to guest.sh and to the first test, and
# the longest steps.
timeline_summary() {
	[ -f "$RES/timeline" ] || return 0
	awk '$2 == "boot:" { t = $1; sub(/^[^ ]+ boot: /, ""); printf "%s%s %s s", (n++ ? ", " : "[run] boot (guest uptime): "), $0, t }
		END { if (n) print "" }' "$RES/timeline"
	awk '$3 == "start" && !s { s = $1 } $3 ~ /_test$/ && !t { t = $1 }
		END { if (s != "") printf "[run] host seconds from QEMU start: guest.sh %s, first test binary %s\n", s, t == "" ? "never" : t }' \
		"$RES/timeline.host" 2>/dev/null
	awk '$2 != "boot:" { if (p != "") printf "%.1f %s\n", $1 - t, p; t = $1; p = $2 }' "$RES/timeline" |
		sort -rn | head -5 | awk '{ printf "%s%s %s s", (NR > 1 ? ", " : "[run] longest steps: "), $2, $1 } END { if (NR) print "" }'
}

start=$(date +%s)
echo "[run] booting $KNAME under TCG ($MODE, QEMU $("${QEMU_BIN:-qemu-system-x86_64}" --version | sed -n "s/^QEMU emulator version \([^ ]*\).*/\1/p"))"
boot
vng_rc=$?
# Rarely QEMU dies under a TCG guest with nothing on the guest console (seen
# before user space with -cpu EPYC, and mid-run twice in ~40 runs, once
# while the host VM was being snapshotted).  Such a boot is run again once,
# from the start, and its logs kept in first-boot/; a guest that stopped
# after its kernel reported trouble is a failure, never run again.
if [ ! -f "$RES/complete" ] && [ ! -f "$RES/stalled" ] &&
	! grep -q -s -a -E "$SPLATS" "$RES/console.log" "$RES/kmsg.txt"; then
	diagnose $(( $(date +%s) - start )) $vng_rc
	echo "[run] no kernel splat on the console: booting again (first boot's logs in $RES/first-boot)"
	mkdir "$RES/first-boot"
	find "$RES" -mindepth 1 -maxdepth 1 ! -name install ! -name stage ! -name stock-stage.log ! -name first-boot \
		-exec mv -t "$RES/first-boot" {} +
	start=$(date +%s)
	boot
	vng_rc=$?
fi
echo "[run] guest ran $(( $(date +%s) - start )) s (vng exit $vng_rc)"
timeline_summary

if [ "$MODE" = demo ]; then
	grep -v -E '^(ok|not ok) - bind_' "$RES/console.log" | sed -n '/== dmabuf-vfio-pci demo/,$p'
fi
if [ "$MODE" = bench ] || [ "$BENCH" = 1 ]; then
	sed -n '/== dmabuf-vfio-pci bench/,$p' "$RES/console.log" | grep -v -E '^(ok|not ok) - '
fi
if [ -n "$FUZZ" ]; then
	for log in "$RES"/fuzz-*.log; do
		[ -f "$log" ] && grep -v '^# progress' "$log"
	done
fi

# --- Judge the run --------------------------------------------------------
pass=0 fail=0 skip=0
while read -r line; do
	case "$line" in
	"ok - "*"# SKIP"*) skip=$((skip + 1)) ;;
	"ok - "*) pass=$((pass + 1)) ;;
	"not ok - "*) fail=$((fail + 1)); echo "FAIL: ${line#not ok - }" ;;
	esac
done <"$RES/results.tap" 2>/dev/null

if [ ! -f "$RES/complete" ]; then
	echo "FAIL: the guest did not finish (see $RES/console.log)"
	diagnose $(( $(date +%s) - start )) $vng_rc
	fail=$((fail + 1))
fi

# A splat fails the run even when every test passed.
log=$RES/dmesg.txt
[ -f "$log" ] || log=$RES/kmsg.txt
[ -f "$log" ] || log=$RES/console.log
splats=$(grep -n -a -E "$SPLATS" "$log")
if [ -n "$splats" ]; then
	echo "FAIL: guest kernel log has splats:"
	echo "$splats" | head -20
	fail=$((fail + 1))
else
	pass=$((pass + 1))
fi

# Every verdict of the run, for scripts/check.sh to count with the lint steps.
{
	grep -E '^(ok|not ok) - ' "$RES/results.tap" 2>/dev/null
	P=
	[ "$MODE" = amd ] && P=amd/
	[ "$MODE" = stock ] && P=stock/
	[ -f "$RES/complete" ] || echo "not ok - ${P}guest finished"
	if [ -z "$splats" ]; then echo "ok - ${P}guest kernel log clean"; else echo "not ok - ${P}guest kernel log clean"; fi
} >"$RES/final.tap"
[ "$MODE" = demo ] || [ "$MODE" = bench ] || [ "$BENCH" = 1 ] || cat "$RES/final.tap"
[ "$fail" = 0 ]
