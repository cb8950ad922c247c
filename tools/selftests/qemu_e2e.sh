#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# QEMU 11 as a client of the driver, end to end (runs inside the test guest).
#
#   qemu_e2e.sh legacy|iommufd BDF
#
# Real QEMU 11 (Debian trixie-backports, in the guest's root filesystem,
# scripts/guest-rootfs.sh) assigns BDF, an ivshmem-plain
# device with a 1 GiB RAM BAR2 bound to dmabuf-vfio-pci, with -device vfio-pci
# through the legacy container or iommufd.  QEMU's realize asks our driver for
# one dma-buf per mmap-able region (VFIO_DEVICE_FEATURE_DMA_BUF); with iommufd
# it maps BARs with IOMMU_IOAS_MAP_FILE, which iommufd refuses for dma-bufs
# other than vfio-pci's own, and QEMU must carry on with a warning.
#
# No nested OS is booted: the qtest accelerator lets this script program the
# nested PCI config space through ports 0xcf8/0xcfc and read and write the
# BAR through QEMU's memory API, which reaches the device through QEMU's mmap
# of the BAR.  Two QEMU sessions run one after the other; the second reads
# what the first wrote, so the bytes went to the device and nowhere else.
#
# Asserts: QEMU realizes the device and sees its IDs; the dma-bufs QEMU created
# are live in our debugfs while it runs, revoked while the nested guest keeps
# memory decoding off and accessible once it turns it on; the BAR reads back
# what was written; iommufd's MAP_FILE refusal is a QEMU warning, not a
# failure; quitting QEMU revokes every buffer for good (dmabuf_grab holds
# duplicates of QEMU's dma-buf fds, as a process QEMU had passed them to
# would: they can no longer be mapped) and, once the last holder is gone,
# releases them all.
set -u

BACKEND=$1
BDF=$2
HERE=$(cd "$(dirname "$0")" && pwd)
STATUS=/sys/kernel/debug/dmabuf_vfio_pci/$BDF/status
TRACEFS=/sys/kernel/tracing
WORK=$(mktemp -d)
GPA=0x4000000000	# where the nested guest puts BAR2 (64 bit, below 512 GiB)
NESTED_CFG=$((0x80000000 | 4 << 11))	# config address of 00:04.0, the nested slot
fails=0

say() { printf '# %s\n' "$*"; }
fail() { say "FAIL: $*"; fails=$((fails + 1)); }
expect() {	# what, got, want
	if [ "$2" = "$3" ]; then say "ok: $1 = $2"; else fail "$1: got '$2', want '$3'"; fi
}
counter() { sed -n "s/^$1: //p" "$STATUS"; }
buffers() { grep -c '^buffer ' "$STATUS"; }

[ -f /.qemu-version ] || { fail "not in the root of scripts/guest-rootfs.sh (no /.qemu-version)"; exit 1; }
[ -r "$STATUS" ] || { fail "$BDF is not bound to dmabuf-vfio-pci ($STATUS)"; exit 1; }
say "$(cat /.qemu-version), backend $BACKEND, device $BDF"
group=$(basename "$(readlink "/sys/bus/pci/devices/$BDF/iommu_group")")
say "iommu group $group: $(ls "/sys/bus/pci/devices/$BDF/iommu_group/devices" | tr '\n' ' ')"

case $BACKEND in
legacy) VFIO_OPTS=(-device "vfio-pci,host=$BDF,id=hostdev0,bus=pcie.0,addr=0x4") ;;
iommufd) VFIO_OPTS=(-object iommufd,id=iommufd0
	-device "vfio-pci,host=$BDF,id=hostdev0,bus=pcie.0,addr=0x4,iommufd=iommufd0") ;;
*) fail "unknown backend $BACKEND"; exit 1 ;;
esac

mountpoint -q $TRACEFS || mount -t tracefs nodev $TRACEFS
echo 0 >$TRACEFS/tracing_on
: >$TRACEFS/trace
echo 1 >$TRACEFS/events/dmabuf_vfio_pci/enable
echo 1 >$TRACEFS/tracing_on

# One QEMU session, talking qtest on stdio.
qemu_start() {	# session name
	local log=$WORK/$1.stderr
	coproc QEMU {
		exec qemu-system-x86_64 -machine q35 -accel qtest -qtest stdio \
			-qtest-log none -nodefaults -display none -m 64 \
			"${VFIO_OPTS[@]}" 2>"$log"
	}
	QEMU_LOG=$log
}

qt() {	# one qtest command; its reply in $REPLY
	REPLY=
	echo "$*" >&"${QEMU[1]}" || return 1
	read -r -t 120 REPLY <&"${QEMU[0]}" || { fail "no qtest reply to '$*'"; return 1; }
}

cfg_read32() { qt outl 0xcf8 $((NESTED_CFG | $1)) && qt inl 0xcfc && echo "${REPLY#OK }"; }
cfg_write32() { qt outl 0xcf8 $((NESTED_CFG | $1)) && qt outl 0xcfc "$2"; }
cfg_write16() { qt outl 0xcf8 $((NESTED_CFG | $1)) && qt outw 0xcfc "$2"; }

qemu_quit() {
	local pid=$QEMU_PID rc
	# As libqtest ends a test (and as a management stack stops a VM).
	exec {QEMU[1]}>&-
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	expect "QEMU exit status" $rc 0
	sed 's/^/#   qemu: /' "$QEMU_LOG"
}

exports0=$(counter exports)
closes0=$(sed -n 's/.* close=\([0-9]*\).*/\1/p' "$STATUS")

# --- Session 1: realize, memory enable, write ------------------------------
qemu_start first
want_id=$(printf '0x%04x%04x' "$(cat /sys/bus/pci/devices/$BDF/device)" \
	"$(cat /sys/bus/pci/devices/$BDF/vendor)")
if ! id=$(cfg_read32 0x00); then
	fail "QEMU did not come up"
	sed 's/^/#   qemu: /' "$QEMU_LOG"
	exit 1
fi
expect "nested device/vendor ID" "$id" "$want_id"

exported=$(( $(counter exports) - exports0 ))
[ "$exported" -ge 1 ] && say "ok: QEMU created $exported dma-buf(s) through our driver" ||
	fail "QEMU created no dma-buf through our driver"
expect "live buffers while QEMU runs" "$(buffers)" "$exported"
grep -q 'size=0x40000000 revoked ' "$STATUS" && say "ok: BAR2's buffer is revoked while memory decoding is off" ||
	fail "no revoked 1 GiB buffer before memory enable"

# BAR2 is a 64-bit memory BAR at 0x18/0x1c; then memory decoding on.
cfg_write32 0x18 0x0
cfg_write32 0x1c $((GPA >> 32))
cfg_write16 0x04 0x0002
bar2=$(( $(cfg_read32 0x18) & ~0xf | $(cfg_read32 0x1c) << 32 ))
expect "nested BAR2 address" "$(printf '%#x' $bar2)" "$(printf '%#x' $GPA)"
grep -q 'size=0x40000000 accessible ' "$STATUS" && say "ok: memory enable made BAR2's buffer accessible" ||
	fail "BAR2's buffer not accessible after the nested guest enabled memory"

PATTERN0=0x0123456789abcdef
PATTERN1=0xfedcba9876543210
LAST=$((GPA + 0x40000000 - 8))
qt writeq $GPA $PATTERN0
qt writeq $LAST $PATTERN1
qt readq $GPA
expect "BAR2[0] read back" "$REPLY" "OK $PATTERN0"
qt readq $LAST
expect "BAR2[1G - 8] read back" "$REPLY" "OK $PATTERN1"

if [ "$BACKEND" = iommufd ]; then
	# iommufd maps a dma-buf only when vfio-pci exported it: ours is refused
	# (EOPNOTSUPP) and QEMU goes on without the P2P mapping.
	grep -q 'warning: .*Operation not supported' "$QEMU_LOG" &&
		say "ok: QEMU warned about IOMMU_IOAS_MAP_FILE" ||
		fail "no QEMU warning about the refused MAP_FILE"
	qt readq $GPA
	expect "QEMU alive after the refused MAP_FILE" "$REPLY" "OK $PATTERN0"
fi
cp "$STATUS" "$WORK/status-running"
sed 's/^/#   debugfs: /' "$WORK/status-running"

mkfifo "$WORK/grab.in" "$WORK/grab.out"
"$HERE/dmabuf_grab" "$QEMU_PID" <"$WORK/grab.in" >"$WORK/grab.out" &
grab_pid=$!
exec {grab_in}>"$WORK/grab.in" {grab_out}<"$WORK/grab.out"
read -r -t 60 grabbed <&$grab_out
expect "QEMU's dma-bufs held by a second process" "$grabbed" "grabbed $exported"
qemu_quit

closes1=$(sed -n 's/.* close=\([0-9]*\).*/\1/p' "$STATUS")
expect "buffers revoked for close when QEMU quit" $((closes1 - closes0)) "$exported"
echo check >&$grab_in
for ((i = 0; i < exported; i++)); do
	read -r -t 60 answer <&$grab_out
	expect "mmap of a held buffer after QEMU quit" "$answer" "mmap ENODEV"
done
exec {grab_in}>&- {grab_out}<&-
wait $grab_pid
expect "live buffers after QEMU and the holder are gone" "$(buffers)" 0
echo 0 >$TRACEFS/tracing_on
traced=$(grep -c "dmabuf_vfio_export: $BDF " $TRACEFS/trace)
expect "export tracepoints" "$traced" "$exported"
grep -q "dmabuf_vfio_revoke: $BDF .*cause=close" $TRACEFS/trace &&
	say "ok: revoke tracepoint with cause=close" || fail "no revoke tracepoint for close"
echo 0 >$TRACEFS/events/dmabuf_vfio_pci/enable
: >$TRACEFS/trace

# --- Session 2: the bytes are in the device ----------------------------------
qemu_start second
cfg_write32 0x18 0x0
cfg_write32 0x1c $((GPA >> 32))
cfg_write16 0x04 0x0002
qt readq $GPA
expect "BAR2[0] in a new QEMU" "$REPLY" "OK $PATTERN0"
qt readq $LAST
expect "BAR2[1G - 8] in a new QEMU" "$REPLY" "OK $PATTERN1"
qemu_quit
expect "live buffers after the second QEMU quit" "$(buffers)" 0

rm -rf "$WORK"
[ $fails = 0 ]
