#!/usr/bin/env bash
# Installs the system packages vaultfs builds and tests with, when they are missing.
# As root it uses apt-get; otherwise it prints the command to run.
# With --test it adds what only the tests need: a single-node Ceph with its S3 gateway
# (ceph-mon, ceph-osd, radosgw, ceph-common; without recommends, about 60 MB), and qemu with
# busybox-static and cpio for the virtual machine that boots from an instant restore, and
# python3-rbd, through which the tests write to RBD images (no rbd kernel module here), and
# qemu-utils (qemu-io, qemu-img) for the NBD tests, which serve images with qemu-storage-daemon;
# chromium and chromium-driver for the console's browser test, with Selenium and schemathesis
# (its API against docs/openapi.json) from PyPI, at the versions the tests were written with.
set -euo pipefail
packages=(libfuse3-dev fuse3 libzstd-dev libsqlite3-dev libcurl4-openssl-dev librbd-dev libnbd-dev e2fsprogs libext2fs-dev pkg-config util-linux
  fdisk attr acl dpkg-dev man-db)
test_packages=(ceph-mon ceph-osd radosgw ceph-common python3-rbd qemu-system-x86 qemu-utils busybox-static cpio
  chromium chromium-driver openssl)
python_packages=(selenium==4.51.0 schemathesis==4.32.5)
[ "${1:-}" = --test ] || { test_packages=(); python_packages=(); }

# missing NAME...: the packages of NAME... that are not installed.
missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t build < <(missing "${packages[@]}")
mapfile -t tests < <(missing "${test_packages[@]}")
# missing_python NAME==VERSION...: the Python packages not installed at that version.
missing_python() {
  local p
  for p in "$@"; do
    [ "$(python3 -m pip show "${p%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${p#*==}" ] || echo "$p"
  done
}
mapfile -t python < <(missing_python "${python_packages[@]}")
if [ ${#python[@]} -gt 0 ]; then
  echo "installing ${python[*]} (pip)" >&2
  python3 -m pip install -q "${python[@]}"
fi
[ ${#build[@]} -eq 0 ] && [ ${#tests[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${build[*]} ${tests[*]}" >&2
  [ ${#build[@]} -eq 0 ] || echo "install them with: sudo apt-get install -y ${build[*]}" >&2
  [ ${#tests[@]} -eq 0 ] || echo "and for the tests: sudo apt-get install -y --no-install-recommends ${tests[*]}" >&2
  exit 1
fi
echo "installing ${build[*]} ${tests[*]}" >&2
apt-get update -q
[ ${#build[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${build[@]}"
[ ${#tests[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${tests[@]}"
