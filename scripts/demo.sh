#!/usr/bin/env bash
# The main job end to end on an embedded default: a local repository and a real ext4 disk.
# Usage: scripts/demo.sh BIN_DIR
set -euo pipefail
bin=$(cd "${1:-.build/debug}" && pwd)
work=$(pwd)/demo-work
rm -rf "$work"
mkdir -p "$work"
export VAULT_REPO="$work/repo"
# Host configuration (the servers' disks) and instant restores of the demo's own, never the
# machine's /etc/vaultfs or /var/lib/vaultfs.
export VAULT_CONFIG_DIR="$work/etc" VAULT_RESTORE_DIR="$work/restores" VAULT_COPY_DIR="$work/copies"
vaultctl() { echo "+ vaultctl $*" >&2; "$bin/vaultctl" "$@"; }

echo "== a real ext4 disk (256 MiB, holding /usr/share/doc)"
E2FSPROGS_FAKE_TIME=1764000000 mkfs.ext4 -q -F -d /usr/share/doc "$work/web-root.img" 256M
cp --sparse=always "$work/web-root.img" "$work/as-at-full.img"

echo "== repository, vault, server, policy"
vaultctl init "$VAULT_REPO"
vaultctl vault create prod
vaultctl server add web --vault prod --disk root="$work/web-root.img"
vaultctl policy set prod --start 16:00 --every 4h --incrementals 4 --keep-fulls 2 --now 2030-01-01T15:00

echo "== the 16:00 slot: a full"
vaultctl schedule run --once --now 2030-01-01T16:00

echo "== a change on the server, then the 20:00 slot: an incremental"
head -c 5000000 /dev/urandom > "$work/new-file.bin"
debugfs -w -R "write $work/new-file.bin /new-file.bin" "$work/web-root.img" >/dev/null
cp --sparse=always "$work/web-root.img" "$work/as-at-incremental.img"
vaultctl schedule run --once --now 2030-01-01T20:00

echo "== backup now"
vaultctl backup web --name before-upgrade --description "before the upgrade" --tag change=CHG-42

echo "== points and history"
vaultctl points
vaultctl history

echo "== export each point and compare with the disk as it was"
vaultctl export web/20300101T160000Z -o "$work/restored-full.img"
cmp "$work/restored-full.img" "$work/as-at-full.img" && echo "full: identical"
vaultctl export web/20300101T200000Z -o "$work/restored-incremental.img"
cmp "$work/restored-incremental.img" "$work/as-at-incremental.img" && echo "incremental: identical"
ls -ls "$work"/restored-*.img

echo "== mount the repository, show the tree, read an image through it, unmount"
mnt="$work/mnt"
mkdir -p "$mnt"
trap 'fusermount3 -uz "$mnt" 2>/dev/null || true; fusermount3 -uz "$work/mnt-all" 2>/dev/null || true' EXIT
"$bin/vaultfs" "$VAULT_REPO" "$mnt"
find "$mnt" -maxdepth 4 | sed "s|^$mnt|mnt|" | sort
echo "-- mnt/prod/web/latest/"
ls -l "$mnt/prod/web/latest/"
cmp "$mnt/prod/web/20300101T200000Z/root.img" "$work/as-at-incremental.img" && echo "image read through the mount: identical"
e2fsck -fn "$mnt/prod/web/latest/root.img" >/dev/null 2>&1 && echo "e2fsck -fn on the mounted image: clean"

echo "== files inside the point, without root or a loop device"
ls -l "$mnt/prod/web/latest/files/root/" | sed -n 1,5p
first=$(ls /usr/share/doc | sed -n 1p)
cp -a "$mnt/prod/web/latest/files/root/$first" "$work/restored-folder"
diff -r --no-dereference "$work/restored-folder" "/usr/share/doc/$first" >/dev/null && echo "a folder copied out of files/: identical to the source"

echo "== backup now by mkdir inside the mount"
mkdir "$mnt/prod/web/from-mkdir"
for i in $(seq 600); do
  grep -q '"status" : "Active"' "$mnt/prod/web/from-mkdir/point.json" && break
  [ "$i" -eq 600 ] && { echo "the mkdir backup did not finish in 60 s" >&2; exit 1; }
  sleep 0.1
done
grep -E '"(name|status|scheduleType|type)"' "$mnt/prod/web/from-mkdir/point.json"
cmp "$mnt/prod/web/from-mkdir/root.img" "$work/web-root.img" && echo "from-mkdir/root.img equals the disk now"

echo "== instant restore: the disk usable at once through the mount, filled behind"
image=$(vaultctl restore web/20300101T160000Z --to "$work/instant.raw" --instant)
echo "image: ${image#"$work/"}"
debugfs -R "ls -l /" "$image" 2>/dev/null | sed -n 1,3p
id=$(basename "$(dirname "$image")")
for i in $(seq 600); do
  vaultctl restore status "$id" --json 2>/dev/null | grep -q '"state" : "complete"' && break
  [ "$i" -eq 600 ] && { echo "the instant restore did not complete in 60 s" >&2; exit 1; }
  sleep 0.1
done
vaultctl restore finish "$id"
cmp "$work/instant.raw" "$work/as-at-full.img" && echo "instant.raw, finished: identical to the point"
vaultctl restore history
fusermount3 -u "$mnt"
echo "unmounted $mnt"

echo "== a second location, and prod copied there by the scheduler"
unset VAULT_REPO
vaultctl location add main "$work/repo"
vaultctl location add offsite "$work/offsite" --mirror-of main
vaultctl vault set prod --copy-to offsite --copy-every 24h --copy-keep-fulls 2
vaultctl schedule run --once --now 2030-01-02T00:00
vaultctl history --copies
vaultctl vault list
vaultctl export web/20300101T200000Z --location offsite -o "$work/restored-from-copy.img"
cmp "$work/restored-from-copy.img" "$work/as-at-incremental.img" && echo "incremental, from the copy: identical"
vaultctl verify --location offsite

echo "== one mount of every location"
mkdir -p "$work/mnt-all"
"$bin/vaultfs" --all-locations "$work/mnt-all"
find "$work/mnt-all" -maxdepth 3 | sed "s|^$work/||" | sort
grep -A3 '"copyOf"' "$work/mnt-all/offsite/prod/web/20300101T200000Z/point.json"
cmp "$work/mnt-all/offsite/prod/web/20300101T200000Z/root.img" "$work/as-at-incremental.img" && echo "the copy's image read through the mount: identical"
fusermount3 -u "$work/mnt-all"
echo "unmounted $work/mnt-all"

echo "== the web console and its API"
export VAULT_WEB_TOKEN_FILE="$work/web-token"
"$bin/vaultctl" serve --location main --listen 127.0.0.1:0 > "$work/serve.log" &
serve=$!
trap 'kill "$serve" 2>/dev/null || true; fusermount3 -uz "$mnt" 2>/dev/null || true; fusermount3 -uz "$work/mnt-all" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "http://" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
cat "$work/serve.log"
url=$(grep -o 'http://[^ ]*' "$work/serve.log" | head -1)
auth="Authorization: Bearer $(cat "$VAULT_WEB_TOKEN_FILE")"
echo "+ curl -H 'Authorization: Bearer TOKEN' ${url}api/v1/points?server=web&type=full"
curl -s -H "$auth" "${url}api/v1/points?server=web&type=full" | grep -E '^      "(name|status)"|^  "total"'
echo "+ curl ${url}api/v1/points   (no token)"
curl -s -o /dev/null -w "%{http_code} without the token\n" "${url}api/v1/points"
# The id of the 16:00 full (keys come sorted: a point's id before its name).
id=$(curl -s -H "$auth" "${url}api/v1/points?server=web" \
  | awk -F'"' '/^      "id"/ { id = $4 } /^      "name" : "20300101T160000Z"/ { print id }')
curl -s -H "$auth" -o "$work/downloaded.img" "${url}api/v1/points/$id/disks/root/image"
cmp "$work/downloaded.img" "$work/as-at-full.img" && echo "full point downloaded over HTTP: identical"
curl -s -H "$auth" -r 1024-2047 "${url}api/v1/points/$id/disks/root/image" | cmp - <(dd if="$work/as-at-full.img" bs=1024 skip=1 count=1 status=none) && echo "a Range of it: identical"
kill "$serve"
wait "$serve" 2>/dev/null || true
echo "console stopped; in a browser it is ${url} (log in with the token in $VAULT_WEB_TOKEN_FILE)"
