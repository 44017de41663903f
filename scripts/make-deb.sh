#!/usr/bin/env bash
# `make deb`: a Debian package of the release build (run `make release` first; make deb does):
# vaultfs_VERSION_ARCH.deb in the top folder. Depends come from dpkg-shlibdeps over the
# binaries, plus fuse3 for fusermount3 and libcurl4 (7.75 or later, for AWS Signature
# Version 4), which the binaries open at run time for S3 repositories rather than link.
# librbd1 and libnbd0 are only suggested: they too are opened at run time, by servers with
# rbd: and nbd+unix: disks.
# Runs lintian when it is installed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=$("$top/.build-static/release/vaultctl" --version | awk '{ print $NF }')
arch=$(dpkg --print-architecture)
work=$top/.build-static/deb
root=$work/root
rm -rf "$work"
mkdir -p "$root/DEBIAN" "$root/usr/share/doc/vaultfs"

DESTDIR=$root PREFIX=/usr SBINDIR=/usr/sbin SYSCONFDIR=/etc "$top/scripts/install.sh" install >/dev/null

# Documentation Debian policy asks for.
cp "$top/packaging/copyright" "$root/usr/share/doc/vaultfs/copyright"
{
    echo "vaultfs ($version) unstable; urgency=medium"
    echo
    echo "  * Release $version; see the project's CHANGELOG.md."
    echo
    echo " -- vaultfs developers <vaultfs@lists.example.org>  $(date -R -d @"${SOURCE_DATE_EPOCH:-1764115200}")"
} | gzip -9n >"$root/usr/share/doc/vaultfs/changelog.gz"

# Shared libraries the binaries link, as package dependencies.
shlib=$work/shlibs
mkdir -p "$shlib/debian"
printf 'Source: vaultfs\nMaintainer: x <x@example.org>\n\nPackage: vaultfs\nArchitecture: any\n' >"$shlib/debian/control"
depends=$(cd "$shlib" && dpkg-shlibdeps -O "$root/usr/bin/vaultctl" "$root/usr/bin/vaultfs" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "make-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

installed=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: vaultfs
Version: $version
Architecture: $arch
Maintainer: vaultfs developers <vaultfs@lists.example.org>
Installed-Size: $installed
Depends: $depends, libcurl4 (>= 7.75.0), fuse3
Recommends: e2fsprogs
Suggests: librbd1, libnbd0
Section: admin
Priority: optional
Homepage: https://github.com/vaultfs/vaultfs
Description: block-level backups of servers' disks, shown as a filesystem
 vaultctl backs up servers' disks into a deduplicated, zstd-compressed and
 optionally encrypted chunk store, on a policy schedule or on demand, and
 applies retention. vaultfs mounts the repository with FUSE: vaults, servers
 and restore points are folders, each point's disks are read-only images, and
 the files of their ext2/3/4 filesystems can be copied out without root.
CONTROL
echo /etc/vaultfs/example.conf >"$root/DEBIAN/conffiles"
for script in postinst postrm; do
    cat >"$root/DEBIAN/$script" <<'SCRIPT'
#!/bin/sh
set -e
# Units changed: tell systemd, where it runs (not in a chroot or a container without it).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
SCRIPT
    chmod 755 "$root/DEBIAN/$script"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum >DEBIAN/md5sums)
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

out=$top/vaultfs_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "built $out"
if command -v lintian >/dev/null 2>&1; then
    lintian --profile debian "$out" || true
fi
