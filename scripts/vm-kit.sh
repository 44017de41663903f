#!/usr/bin/env bash
# Makes the tiny Linux VM kit the tests boot under qemu (scripts/vm-boot.sh boots it):
#   DIR/vmlinuz    Debian's cloud kernel (console=ttyS0; ext4 built in)
#   DIR/initrd.gz  static busybox, the virtio disk modules and an /init that runs one job
#   DIR/kit.version  the version string below, written last
# Usage: scripts/vm-kit.sh DIR   Does nothing when DIR already holds this version of the kit.
# Needs qemu-system-x86, busybox-static and cpio (installed when run as root) and apt to fetch the kernel.
set -euo pipefail
kit_version="vaultfs-vmkit 1"   # change this whenever the /init or the module list changes
dir=${1:?usage: vm-kit.sh DIR}
# The modules virtio_blk needs, in load order (virtio_blk is a module in the cloud kernel).
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

if [ -f "$dir/vmlinuz" ] && [ -f "$dir/initrd.gz" ] && [ "$(cat "$dir/kit.version" 2>/dev/null)" = "$kit_version" ]; then
  exit 0
fi
root_user=false
[ "$(id -u)" -ne 0 ] || root_user=true

# Install the tools when missing (as root), or name the command that would.
missing=()
for p in qemu-system-x86 busybox-static cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $root_user || { echo "vm-kit: missing ${missing[*]}; install with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2; exit 1; }
  timeout 300 apt-get update -q
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# kernel_package: the versioned kernel package (linux-image-6.1.0-NN-cloud-amd64) the meta-package depends on now.
kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
# download PACKAGE: fetch its .deb into the temp folder (as root, without handing the folder to the _apt user).
download() {
  local sandbox=()
  $root_user && sandbox=(-o APT::Sandbox::User=root)
  (cd "$tmp" && timeout 300 apt-get download -q "${sandbox[@]}" "$1")
}
pkg=$(kernel_package)
if [ -z "$pkg" ] || ! download "$pkg"; then
  # Stale or missing package lists: refresh them once (root only) and try again.
  $root_user || { echo "vm-kit: cannot download the cloud kernel ${pkg:-(linux-image-cloud-amd64 unknown)}; run: sudo apt-get update" >&2; exit 1; }
  timeout 300 apt-get update -q
  pkg=$(kernel_package)
  [ -n "$pkg" ] || { echo "vm-kit: apt knows no linux-image-cloud-amd64 package" >&2; exit 1; }
  download "$pkg"
fi
echo "vm-kit: using $pkg" >&2
dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/kernel"

# The initramfs tree: busybox, the modules (decompressed: busybox insmod may not read .xz/.zst) and /init.
initramfs=$tmp/initramfs
mkdir -p "$initramfs"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,mnt,tmp,lib/modules}
cp /bin/busybox "$initramfs/bin/busybox"
for m in "${modules[@]}"; do
  f=$(find "$tmp/kernel/lib/modules" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) -print -quit)
  case $f in
    *.ko) cp "$f" "$initramfs/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$initramfs/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -dcq "$f" > "$initramfs/lib/modules/$m.ko" ;;
    *) echo "vm-kit: module $m not found in $pkg" >&2; exit 1 ;;
  esac
done

cat > "$initramfs/init" <<'EOF'
#!/bin/busybox sh
# /init of the vaultfs test VM. Kernel command line parameters:
#   vaultfs.job=boot-check (the default and only job)
#   vaultfs.marker=PATH  print the content of PATH (relative to the disk's root) as "marker=..."
#   vaultfs.write=PATH   write PATH ("written by the vm") and PATH.bin (8 MiB of random data)
# It mounts /dev/vda (ext4) at /mnt, does the job, unmounts and powers off.
# Every result is a "VAULTFS-VM: ..." line on the console; "VAULTFS-VM: done" means success.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo   # end the firmware's last console line, so every VAULTFS-VM line starts a line

say() { echo "VAULTFS-VM: $*"; }
off() { sync; poweroff -f; exit 1; }
# fail STEP: report the failed step, unmount the disk if it is mounted, power off.
fail() { say "failed $*"; umount /mnt 2>/dev/null; off; }

job=boot-check marker='' write=''
read -r cmdline < /proc/cmdline
set -f   # split the command line into words without expanding * or ?
for arg in $cmdline; do
  case $arg in
    vaultfs.job=*) job=${arg#*=} ;;
    vaultfs.marker=*) marker=${arg#*=} ;;
    vaultfs.write=*) write=${arg#*=} ;;
  esac
done
[ "$job" = boot-check ] || fail "job $job"

for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
# The disk's device node may show up a moment after the module loads: wait up to 10 s.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

mount -t ext4 /dev/vda /mnt || { say "mount failed"; off; }
say first-read-done

if [ -n "$marker" ]; then
  content=$(cat "/mnt/${marker#/}") || fail marker
  say "marker=$(printf '%s' "$content" | tr '\n' ' ')"
fi
if [ -n "$write" ]; then
  echo "written by the vm" > "/mnt/${write#/}" || fail write
  dd if=/dev/urandom of="/mnt/${write#/}.bin" bs=1M count=8 status=none || fail dd
fi
sync || fail sync
umount /mnt || fail umount
[ -z "$write" ] || say wrote
say "done"
off
EOF
chmod 755 "$initramfs/init"

# Pack the initramfs (files owned by root whoever runs this) and put the kit in place, version last.
(cd "$initramfs" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$tmp/initrd.gz"
mkdir -p "$dir"
rm -f "$dir/kit.version"
cp "$tmp"/kernel/boot/vmlinuz-* "$dir/vmlinuz"
cp "$tmp/initrd.gz" "$dir/initrd.gz"
echo "$kit_version" > "$dir/kit.version"
echo "vm-kit: kit ready in $dir" >&2
