#!/usr/bin/env bash
# `make install`, `make uninstall` and the staging of `make deb`: one list of what vaultfs
# installs, so uninstall removes exactly what install put there.
# Usage: scripts/install.sh install|uninstall|list
# Environment: DESTDIR (staging root, default none), PREFIX (default /usr/local), SBINDIR
# (mount.vaultfs, default /sbin), SYSCONFDIR (default /etc), BUILD (release build folder).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
action=${1:?usage: install.sh install|uninstall|list}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BUILD=${BUILD:-$top/.build-static/release}
MANPAGES=${MANPAGES:-$top/.build-static/man}

bindir=$PREFIX/bin
mandir=$PREFIX/share/man/man8
unitdir=$PREFIX/lib/systemd/system

# The installed files, one per line: "MODE SOURCE DESTINATION" (SOURCE "-" when generated).
files() {
    echo "755 $BUILD/vaultctl $bindir/vaultctl"
    echo "755 $BUILD/vaultfs $bindir/vaultfs"
    echo "755 $top/mount-helpers/vaultfs-attach $bindir/vaultfs-attach"
    echo "755 $top/mount-helpers/mount.vaultfs $SBINDIR/mount.vaultfs"
    echo "644 $top/mount-helpers/vaultfs@.service $unitdir/vaultfs@.service"
    echo "644 $top/mount-helpers/vaultctl-scheduler.service $unitdir/vaultctl-scheduler.service"
    echo "644 $top/mount-helpers/vaultctl-scheduler.timer $unitdir/vaultctl-scheduler.timer"
    echo "644 $top/mount-helpers/vaultctl-web.service $unitdir/vaultctl-web.service"
    for page in "$top"/man/*.8 "$MANPAGES"/*.8; do
        [ -e "$page" ] && echo "644 $page $mandir/$(basename "$page").gz"
    done
    echo "644 - $PREFIX/share/bash-completion/completions/vaultctl"
    echo "644 - $PREFIX/share/zsh/vendor-completions/_vaultctl"
    echo "644 - $PREFIX/share/fish/vendor_completions.d/vaultctl.fish"
    echo "644 $top/packaging/example.conf $SYSCONFDIR/vaultfs/example.conf"
}

case $action in
list)
    files | awk '{print $3}'
    ;;
install)
    for f in vaultctl vaultfs; do
        [ -x "$BUILD/$f" ] || { echo "install: $BUILD/$f is missing: run make install (it builds first)" >&2; exit 1; }
    done
    files | while read -r mode source destination; do
        target=$DESTDIR$destination
        mkdir -p "$(dirname "$target")"
        case $destination in
        # A completion is sourced, never run: no #! line.
        */completions/vaultctl) "$BUILD/vaultctl" --generate-completion-script bash | sed '1{/^#!/d}' >"$target" ;;
        */_vaultctl) "$BUILD/vaultctl" --generate-completion-script zsh >"$target" ;;
        */vaultctl.fish) "$BUILD/vaultctl" --generate-completion-script fish >"$target" ;;
        *.8.gz) gzip -9n <"$source" >"$target" ;;
        *.service) sed "s|/usr/local/bin/|$bindir/|g" "$source" >"$target" ;;
        */bin/vaultctl | */bin/vaultfs)
            # Stripped as Debian's dh_strip does: symbols stay in the build folder.
            strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$target" "$source" ;;
        *) cp "$source" "$target" ;;
        esac
        chmod "$mode" "$target"
        echo "installed $destination"
    done
    ;;
uninstall)
    files | while read -r _ _ destination; do
        if [ -e "$DESTDIR$destination" ]; then rm -f "$DESTDIR$destination" && echo "removed $destination"; fi
    done
    rmdir "$DESTDIR$SYSCONFDIR/vaultfs" 2>/dev/null || true
    ;;
*)
    echo "usage: install.sh install|uninstall|list" >&2
    exit 2
    ;;
esac
