#!/usr/bin/env bash
# Boots the test VM made by scripts/vm-kit.sh with DISK_IMAGE (raw ext4, no partition table) as /dev/vda,
# under qemu with software emulation (TCG; /dev/kvm hangs here). The VM's serial console goes to stdout.
# Usage: scripts/vm-boot.sh KIT_DIR DISK_IMAGE [extra kernel args...]
#   e.g. scripts/vm-boot.sh /tmp/vaultfs-vmkit disk.img vaultfs.marker=/marker.txt vaultfs.write=/from-vm.txt
# Environment: VM_TIMEOUT  seconds before the VM is killed (default 120)
#              VM_DRIVE_OPTS  more -drive options, appended after a comma (e.g. aio=threads)
# Exits 0 only when the VM printed "VAULTFS-VM: done".
set -euo pipefail
usage="usage: vm-boot.sh KIT_DIR DISK_IMAGE [extra kernel args...]"
kit=${1:?$usage}
disk=${2:?$usage}
shift 2
command -v qemu-system-x86_64 >/dev/null ||
  { echo "vm-boot: qemu-system-x86_64 missing; install with: sudo apt-get install -y --no-install-recommends qemu-system-x86" >&2; exit 1; }
{ [ -f "$kit/vmlinuz" ] && [ -f "$kit/initrd.gz" ]; } || { echo "vm-boot: no kit in $kit; make it with: scripts/vm-kit.sh $kit" >&2; exit 1; }
[ -f "$disk" ] || { echo "vm-boot: no disk image $disk" >&2; exit 1; }

# qemu option values escape a comma by doubling it.
drive="file=${disk//,/,,},format=raw,if=virtio,cache=writeback${VM_DRIVE_OPTS:+,$VM_DRIVE_OPTS}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The serial console ends lines with CR LF: drop the CRs so the output greps and parses cleanly
# (sed -u passes each line on at once, so callers can time the lines as they come).
timeout "${VM_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg -cpu max -m 256 -nographic -no-reboot -nic none \
  -kernel "$kit/vmlinuz" -initrd "$kit/initrd.gz" -drive "$drive" \
  -append "console=ttyS0 quiet panic=-1 $*" </dev/null | sed -u 's/\r$//' | tee "$log" || status=$?
[ "$status" -ne 124 ] || echo "vm-boot: timed out after ${VM_TIMEOUT:-120} s" >&2
grep -q "VAULTFS-VM: done" "$log"
