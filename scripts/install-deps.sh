#!/usr/bin/env bash
# Installs the system packages vaultfs builds and tests with, when they are missing.
# As root it uses apt-get; otherwise it prints the command to run.
set -euo pipefail
packages=(libfuse3-dev fuse3 libzstd-dev libsqlite3-dev e2fsprogs libext2fs-dev pkg-config util-linux fdisk attr acl dpkg-dev man-db)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
