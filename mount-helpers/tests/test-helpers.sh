#!/usr/bin/env bash
# test-helpers.sh - tests the vaultfs mount helpers: vaultfs-attach (whole-disk ext4, MBR and
# GPT partitions, read-only access, errors), mount.vaultfs (option translation, against a
# fake vaultfs) and the systemd unit files.
#
# Usage (as root): mount-helpers/tests/test-helpers.sh
# Needs losetup, mount, mkfs.ext4, debugfs; the partition cases need sfdisk and are skipped
# without it. Installs nothing; every command is bounded with timeout; everything it
# mounts, attaches or creates is removed again in every outcome.
# The last line is "N passed, N failed"; the exit status is non-zero if any check failed.
set -euo pipefail

helpers=$(cd "$(dirname "$0")/.." && pwd)
attach=$helpers/vaultfs-attach
mounthelper=$helpers/mount.vaultfs
limit=60 # seconds any one command may take

passed=0 failed=0 finished=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
# finish: print the summary line and exit non-zero if anything failed
finish() {
    finished=1
    echo "$passed passed, $failed failed"
    ((failed == 0)) && exit 0
    exit 1
}

if ((EUID != 0)); then
    echo "test-helpers.sh: must be run as root (it attaches loop devices and mounts)" >&2
    bad "running as root"
    finish
fi
for cmd in losetup mount umount findmnt blkid partx mkfs.ext4 debugfs dumpe2fs cmp sha256sum timeout; do
    command -v "$cmd" >/dev/null || bad "required command $cmd is missing"
done
((failed == 0)) || finish

tmp=$(mktemp -d /tmp/vaultfs-helpers-test.XXXXXX)
cleanup() {
    local rc=$? m d
    set +e
    # Unmount whatever is still mounted under $tmp (deepest first), then detach every loop
    # device backed by a file under $tmp, then remove $tmp.
    {
        findmnt -rn -o TARGET | grep "^$tmp/" | sort -r | while read -r m; do
            timeout 30 umount "$m" || timeout 30 umount -l "$m"
        done
        losetup --list --noheadings --raw --output NAME,BACK-FILE | while read -r d m; do
            [[ $m == "$tmp/"* ]] && timeout 30 losetup -d "$d"
        done
        rm -rf "$tmp"
    } >/dev/null 2>&1
    if ((!finished)); then # stopped early: still end with the summary line
        echo "FAIL - stopped early (exit status $rc)"
        echo "$passed passed, $((failed + 1)) failed"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---------------------------------------------------------------- helpers

# run COMMAND...: bounded, output in $tmp/out and $tmp/err
run() { timeout "$limit" "$@" >"$tmp/out" 2>"$tmp/err"; }
# check WHAT COMMAND...: passes when COMMAND succeeds
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# expect_error WHAT PATTERN COMMAND...: COMMAND fails with one line on stderr matching PATTERN
expect_error() {
    local what=$1 pattern=$2; shift 2
    if run "$@"; then bad "$what (it succeeded)"; return; fi
    if [[ $(wc -l <"$tmp/err") == 1 ]] && grep -q -- "$pattern" "$tmp/err"; then
        ok "$what: $(cat "$tmp/err")"
    else
        bad "$what: expected one line matching '$pattern', got: $(cat "$tmp/err")"
    fi
}
no_loop_on() { [[ -z $(losetup -j "$1") ]]; }
not_mounted() { ! mountpoint -q "$1"; }
read_only_mount() { findmnt -n -o OPTIONS --mountpoint "$1" | tr , '\n' | grep -x ro >/dev/null; }
hardened_mount() {
    local opts; opts=$(findmnt -n -o OPTIONS --mountpoint "$1" | tr , '\n')
    grep -qx nosuid <<<"$opts" && grep -qx nodev <<<"$opts" && grep -qx noexec <<<"$opts"
}
write_fails() { mountpoint -q "$1" && ! touch "$1/written-by-test" 2>/dev/null; }
listed() { timeout "$limit" "$attach" --list | grep -F "$1" | grep -F "$2" >/dev/null; }
sha() { sha256sum <"$1" | cut -d' ' -f1; }

# attach_and_compare NAME IMAGE [--partition N]: attach, compare, check read-only, list, detach
attach_and_compare() {
    local name=$1 img=$2 dir=$tmp/mnt-$1; shift 2
    local before; before=$(sha "$img") || true
    if run "$attach" "$img" "$dir" "$@" && grep -q '/dev/loop' "$tmp/out"; then
        ok "$name: attach${*:+ $*} ($(tail -n 1 "$tmp/out"))"
    else
        bad "$name: attach${*:+ $*}: $(cat "$tmp/err")"
    fi
    check "$name: known file is identical (cmp)" timeout "$limit" cmp -s "$src/known.bin" "$dir/known.bin"
    check "$name: mounted read-only" read_only_mount "$dir"
    check "$name: mounted nosuid,nodev,noexec" hardened_mount "$dir"
    check "$name: a write fails" write_fails "$dir"
    check "$name: --list shows image and mount point" listed "$img" "$dir"
    if run "$attach" --detach "$dir"; then ok "$name: --detach"; else bad "$name: --detach: $(cat "$tmp/err")"; fi
    check "$name: unmounted" not_mounted "$dir"
    check "$name: no loop device left on the image" no_loop_on "$img"
    check "$name: image bytes unchanged (sha256)" [ "$(sha "$img")" = "$before" ]
}

# ---------------------------------------------------------------- vaultfs-attach: whole disk

src=$tmp/src
mkdir -p "$src/etc"
head -c 1000000 /dev/urandom >"$src/known.bin"
echo web01 >"$src/etc/hostname"

whole=$tmp/whole.img
run mkfs.ext4 -q -F -d "$src" "$whole" 32M </dev/null || bad "mkfs.ext4 whole.img: $(cat "$tmp/err")"
# Flag the journal as needing recovery: a read-only mount only works without replay (noload).
run debugfs -w -R "feature needs_recovery" "$whole" || true
dumpe2fs -h "$whole" 2>/dev/null | grep needs_recovery >/dev/null || echo "note: could not mark whole.img as needing journal recovery"

attach_and_compare whole "$whole"

# ---------------------------------------------------------------- vaultfs-attach: errors

expect_error "missing IMAGE" "no such file" "$attach" "$tmp/nope.img" "$tmp/mnt-x"
expect_error "unknown option" "unknown option" "$attach" --bogus "$whole" "$tmp/mnt-x"
expect_error "DIR not a directory" "not a directory" "$attach" "$whole" "$src/known.bin"
expect_error "no arguments" "usage" "$attach"
expect_error "--detach on a directory nothing is mounted on" "nothing is mounted" "$attach" --detach "$src"
mkdir -p "$tmp/mnt-tmpfs"
if timeout "$limit" mount -t tmpfs vaultfs-test "$tmp/mnt-tmpfs"; then
    expect_error "--detach on a mount that is no loop device" "not mounted from a loop device" \
        "$attach" --detach "$tmp/mnt-tmpfs"
    timeout "$limit" umount "$tmp/mnt-tmpfs" || true
fi
if command -v setpriv >/dev/null; then
    # The script is fed on stdin so its path need not be readable by nobody.
    cd / # somewhere nobody may be
    expect_error "not root" "must be run as root" \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$BASH" -s -- --list <"$attach"
else
    echo "skip - not root (setpriv missing)"
fi
check "errors left no loop device on the image" no_loop_on "$whole"
# A failure after the loop device was made (no filesystem on it) detaches it again.
truncate -s 4M "$tmp/zeros.img"
expect_error "image without a filesystem" "no filesystem" "$attach" "$tmp/zeros.img" "$tmp/mnt-zeros"
check "no loop device left on the image without a filesystem" no_loop_on "$tmp/zeros.img"
check "the DIR it created is removed again" [ ! -e "$tmp/mnt-zeros" ]

# ---------------------------------------------------------------- vaultfs-attach: partitions

# make_partitioned LABEL TYPE IMAGE: 40 MiB disk, partition 1 from 1 MiB, ext4 of 32 MiB in it
make_partitioned() {
    local label=$1 type=$2 img=$3
    truncate -s 40M "$img" &&
        printf 'label: %s\nstart=2048, type=%s\n' "$label" "$type" | timeout "$limit" sfdisk -q "$img" >/dev/null &&
        timeout "$limit" mkfs.ext4 -q -F -E offset=1048576 -d "$src" "$img" 32M </dev/null >/dev/null
}
# table_intact IMAGE: still 40 MiB, table valid, partition 1 still at sector 2048
table_intact() {
    [[ $(stat -c %s "$1") == $((40 << 20)) ]] &&
        timeout "$limit" sfdisk --verify "$1" >/dev/null 2>&1 &&
        timeout "$limit" sfdisk -d "$1" 2>/dev/null | grep -E '1 : start= *2048,' >/dev/null
}

if command -v sfdisk >/dev/null; then
    for label in dos gpt; do
        case $label in
            dos) type=83 name=mbr ;;
            gpt) type=0FC63DAF-8483-4772-8E79-3D69D8477DE4 name=gpt ;;
        esac
        img=$tmp/$name.img
        if make_partitioned "$label" "$type" "$img"; then ok "$name: image made with sfdisk and mkfs.ext4 -E offset"; else bad "$name: making the image"; fi
        check "$name: partition table intact after mkfs (sfdisk --verify)" table_intact "$img"
        attach_and_compare "$name" "$img" --partition 1
        before=$(sha "$img") || true
        expect_error "$name: --partition 3" "no partition 3 (partitions found: 1)" \
            "$attach" "$img" "$tmp/mnt-$name" --partition 3
        check "$name: no loop device left after --partition 3" no_loop_on "$img"
        expect_error "$name: whole partitioned disk without --partition" "partition table" \
            "$attach" "$img" "$tmp/mnt-$name"
        check "$name: no loop device left after that" no_loop_on "$img"
        check "$name: image bytes unchanged after the failed attaches" [ "$(sha "$img")" = "$before" ]
    done
else
    echo "skip - partition cases (MBR, GPT): sfdisk is not installed"
fi

# ---------------------------------------------------------------- mount.vaultfs

fake=$tmp/fake-vaultfs
printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"$FAKE_ARGS"\n' >"$fake"
chmod +x "$fake"
# mh ARGS...: run mount.vaultfs with the fake vaultfs; its arguments land in $tmp/args
mh() { rm -f "$tmp/args"; VAULTFS_BIN=$fake FAKE_ARGS=$tmp/args run "$mounthelper" "$@"; }
# mh_expect WHAT 'ARGS' 'EXPECTED vaultfs ARGS' (words split on spaces)
mh_expect() {
    local what=$1 a e
    read -ra a <<<"$2"
    read -ra e <<<"$3"
    if mh "${a[@]}" && [[ -f $tmp/args ]] && printf '%s\n' "${e[@]}" | cmp -s - "$tmp/args"; then
        ok "mount.vaultfs: $what"
    else
        bad "mount.vaultfs: $what: expected '$3', got '$(paste -sd' ' "$tmp/args" 2>/dev/null)' $(cat "$tmp/err")"
    fi
}
mh_expect "fstab options, mount/systemd-only ones dropped" \
    '/repo /mnt -o vault=prod,allow_other,nofail,_netdev,x-systemd.automount,defaults' '/repo /mnt -o vault=prod,allow_other'
mh_expect "-o defaults alone gives no -o" '/repo /mnt -o defaults' '/repo /mnt'
mh_expect "no options" '/repo /mnt' '/repo /mnt'
mh_expect "-o X SPEC DIR order" '-o vault=prod /repo /mnt' '/repo /mnt -o vault=prod'
mh_expect "-s -n -t accepted, ro and cache_size kept" \
    '/repo /mnt -sn -o ro,noatime,nodev,nosuid,cache_size=512M,comment=systemd.x -t vaultfs' '/repo /mnt -o ro,cache_size=512M'
mh_expect "several -o joined" '/repo -o vault=prod /mnt -o allow_other,auto' '/repo /mnt -o vault=prod,allow_other'

if mh -f /repo /mnt -o vault=prod,nofail && [[ ! -e $tmp/args ]] && grep -q 'vault=prod' "$tmp/out"; then
    ok "mount.vaultfs: -f prints the command and runs nothing ($(cat "$tmp/out"))"
else
    bad "mount.vaultfs: -f: $(cat "$tmp/out" "$tmp/err")"
fi
if mh -v /repo /mnt -o vault=prod && [[ -e $tmp/args ]] && grep -q 'vault=prod' "$tmp/out"; then
    ok "mount.vaultfs: -v prints the command and runs it"
else
    bad "mount.vaultfs: -v: $(cat "$tmp/out" "$tmp/err")"
fi
expect_error "mount.vaultfs: unknown option" "unknown option" env VAULTFS_BIN="$fake" "$mounthelper" /repo /mnt -x
expect_error "mount.vaultfs: missing DIR" "usage" env VAULTFS_BIN="$fake" "$mounthelper" /repo
expect_error "mount.vaultfs: VAULTFS_BIN not executable" "not an executable" \
    env VAULTFS_BIN="$tmp/nothing-here" "$mounthelper" /repo /mnt
# A copy of the helper alone in a directory, with an empty PATH: no binary anywhere.
mkdir -p "$tmp/alone" "$tmp/empty-path" "$tmp/beside"
cp "$mounthelper" "$tmp/alone/"
expect_error "mount.vaultfs: no vaultfs binary anywhere" "vaultfs binary not found" \
    env -u VAULTFS_BIN PATH="$tmp/empty-path" "$BASH" "$tmp/alone/mount.vaultfs" /repo /mnt
# A vaultfs next to the helper is used when VAULTFS_BIN is not set.
cp "$mounthelper" "$tmp/beside/"
cp "$fake" "$tmp/beside/vaultfs"
rm -f "$tmp/args"
if timeout "$limit" env -u VAULTFS_BIN FAKE_ARGS="$tmp/args" PATH="$tmp/empty-path" "$BASH" "$tmp/beside/mount.vaultfs" /repo /mnt >/dev/null 2>&1 &&
    [[ -f $tmp/args ]]; then
    ok "mount.vaultfs: uses the vaultfs next to it"
else
    bad "mount.vaultfs: did not use the vaultfs next to it"
fi

# ---------------------------------------------------------------- unit files

for key in ExecStart= EnvironmentFile= WantedBy= Restart=on-failure Type=simple; do
    check "vaultfs@.service has $key" grep -q "^$key" "$helpers/vaultfs@.service"
done
# The scheduler runs once per start, so a run whose backups failed leaves the unit failed.
for key in 'ExecStart=.* schedule run --once$' EnvironmentFile= Type=oneshot TimeoutStartSec=infinity; do
    check "vaultctl-scheduler.service has $key" grep -Eq "^$key" "$helpers/vaultctl-scheduler.service"
done
for key in OnCalendar= WantedBy=timers.target; do
    check "vaultctl-scheduler.timer has $key" grep -q "^$key" "$helpers/vaultctl-scheduler.timer"
done
check "vaultfs@.service runs vaultfs in the foreground" grep -Eq '^ExecStart=/usr/local/bin/vaultfs .* -f( |$)' "$helpers/vaultfs@.service"
check "vaultfs@.service stops with fusermount3 -u" grep -Eq '^ExecStop=.*fusermount3 -u' "$helpers/vaultfs@.service"
if command -v systemd-analyze >/dev/null; then
    # Verify copies whose /usr/local/bin binaries are stubs, since verify wants them to exist.
    units=$tmp/units
    mkdir -p "$units/bin"
    for b in vaultfs vaultctl; do printf '#!/bin/sh\n' >"$units/bin/$b" && chmod +x "$units/bin/$b"; done
    for unit in 'vaultfs@.service' vaultctl-scheduler.service vaultctl-scheduler.timer; do
        sed "s#/usr/local/bin/#$units/bin/#g" "$helpers/$unit" >"$units/$unit"
    done
    for unit in 'vaultfs@prod.service' vaultctl-scheduler.service vaultctl-scheduler.timer; do
        if run systemd-analyze verify "$units/$unit" && ! grep -Eq 'vaultfs@|vaultctl-scheduler' "$tmp/out" "$tmp/err"; then
            ok "systemd-analyze verify $unit"
        else
            bad "systemd-analyze verify $unit: $(cat "$tmp/out" "$tmp/err")"
        fi
    done
else
    echo "skip - systemd-analyze verify (not installed; required keys checked above)"
fi

# ---------------------------------------------------------------- leftovers

check "nothing left mounted under the test directory" [ -z "$(findmnt -rn -o TARGET | grep "^$tmp/")" ]
check "no loop device left on the test images" [ -z "$(losetup --list --noheadings --raw --output BACK-FILE | grep "^$tmp/")" ]

finish
