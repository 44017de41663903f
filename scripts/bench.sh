#!/usr/bin/env bash
# Benchmarks vaultfs against restic and borg, side by side in one run, on the standard corpus
# (../shared/corpus/make-images.sh: a 3 GiB ext4 disk and two later versions of it).
# Measures a full backup, an incremental backup, and a cold read of the whole image through
# each tool's FUSE mount; prints seconds, peak memory and ratios (other tool / vaultfs).
# Usage: scripts/bench.sh [WORKDIR]   (as root: it installs restic/borgbackup and drops caches)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$top/bench-work}
corpus_script=${CORPUS_SCRIPT:-$top/../shared/corpus/make-images.sh}
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (it drops the page cache and mounts)" >&2; exit 1; }
[ -x "$corpus_script" ] || [ -f "$corpus_script" ] || { echo "bench: corpus script not found at $corpus_script (set CORPUS_SCRIPT)" >&2; exit 1; }

need=()
for p in restic borgbackup time python3 bc; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >&2
fi

echo "== release build" >&2
(cd "$top" && swift build -c release --product vaultctl >&2 && swift build -c release --product vaultfs >&2)
bin=$top/.build/release

mkdir -p "$work"
if [ ! -f "$work/corpus/disk-v3.img" ]; then bash "$corpus_script" "$work/corpus"; fi
rm -rf "$work/run" && mkdir -p "$work/run"
run=$work/run
disk=$run/disk.img
results=$run/results.tsv
: > "$results"

mnt=$run/mnt
mkdir -p "$mnt"
cleanup() {
  for m in "$mnt"/*; do
    if mountpoint -q "$m" 2>/dev/null; then fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; fi
  done
  return 0
}
trap cleanup EXIT

# measure NAME TOOL COMMAND...: wall seconds and peak RSS of COMMAND, appended to results.
measure() {
  local name=$1 tool=$2; shift 2
  local t0 t1 rss
  sync
  echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$run/rss" "$@" > "$run/last.out" 2> "$run/last.err" || { cat "$run/last.err" >&2; echo "bench: $tool $name failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  rss=$(tail -1 "$run/rss")
  printf '%s\t%s\t%.2f\t%s\n' "$name" "$tool" "$(echo "$t1 - $t0" | bc -l)" "$rss" >> "$results"
  printf '%-12s %-8s %6.2f s  %7d KiB\n' "$name" "$tool" "$(echo "$t1 - $t0" | bc -l)" "$rss" >&2
}

# The same file path for every tool: the server's disk, replaced by the next version between backups.
use_version() { cp --sparse=always "$work/corpus/disk-v$1.img" "$disk"; }

export VAULT_REPO=$run/vaultfs-repo RESTIC_REPOSITORY=$run/restic-repo RESTIC_PASSWORD=bench BORG_REPO=$run/borg-repo
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
"$bin/vaultctl" init "$VAULT_REPO" >/dev/null
"$bin/vaultctl" vault create bench >/dev/null
"$bin/vaultctl" policy set bench --start 00:00 --every 1h --incrementals 10 --keep-fulls 2 --now 2030-01-01T00:00 >/dev/null
"$bin/vaultctl" server add web --vault bench --disk root="$disk" >/dev/null
restic init >/dev/null 2>&1
borg init -e none >/dev/null 2>&1

echo "== full backup (v1)" >&2
use_version 1
measure full vaultfs "$bin/vaultctl" schedule run --once --now 2030-01-01T00:00
measure full restic restic backup --quiet "$disk"
measure full borg borg create "::v1" "$disk"

echo "== incremental backup (v2)" >&2
use_version 2
measure incremental vaultfs "$bin/vaultctl" schedule run --once --now 2030-01-01T01:00
measure incremental restic restic backup --quiet "$disk"
measure incremental borg borg create "::v2" "$disk"

echo "== cold read of the whole v2 image through each mount" >&2
mkdir -p "$mnt/vaultfs" "$mnt/restic" "$mnt/borg"
"$bin/vaultfs" "$VAULT_REPO" "$mnt/vaultfs"
restic mount "$mnt/restic" >/dev/null 2>&1 &
borg mount "::v2" "$mnt/borg"
for i in $(seq 100); do mountpoint -q "$mnt/restic" && [ -d "$mnt/restic/snapshots/latest" ] && break; sleep 0.2; done
v_img=$mnt/vaultfs/bench/web/20300101T010000Z/root.img
r_img=$mnt/restic/snapshots/latest$disk
b_img=$mnt/borg${disk}
measure cold-read vaultfs dd if="$v_img" of=/dev/null bs=1M
measure cold-read restic dd if="$r_img" of=/dev/null bs=1M
measure cold-read borg dd if="$b_img" of=/dev/null bs=1M
# For reads the memory that matters is the mount daemon's peak, not dd's.
peak() { grep VmHWM "/proc/$1/status" 2>/dev/null | awk '{print $2}'; }
python3 - "$results" "$(peak "$(pgrep -f "vaultfs $VAULT_REPO" | head -1)")" \
  "$(peak "$(pgrep -f "restic mount" | head -1)")" "$(peak "$(pgrep -f "borg mount" | head -1)")" <<'PY'
import sys
path, peaks = sys.argv[1], dict(zip(["vaultfs", "restic", "borg"], sys.argv[2:]))
rows = [l.rstrip("\n").split("\t") for l in open(path)]
with open(path, "w") as out:
    for name, tool, secs, rss in rows:
        if name == "cold-read": rss = peaks[tool] or "0"
        out.write("\t".join([name, tool, secs, rss]) + "\n")
PY
cmp "$v_img" "$work/corpus/disk-v2.img" && echo "vaultfs image equals disk-v2.img" >&2
cleanup

echo "== repository sizes" >&2
du -sh "$VAULT_REPO" "$RESTIC_REPOSITORY" "$BORG_REPO" >&2

python3 - "$results" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
t = collections.defaultdict(dict)
for name, tool, secs, rss in rows: t[name][tool] = (float(secs), int(rss))
print("seconds and peak memory (the command's; for cold-read, the mount daemon's)")
print("| measurement | vaultfs | restic | borg | restic / vaultfs | borg / vaultfs |")
print("| --- | --- | --- | --- | --- | --- |")
for name in ["full", "incremental", "cold-read"]:
    v, r, b = t[name]["vaultfs"], t[name]["restic"], t[name]["borg"]
    print(f"| {name} | {v[0]:.2f} s, {v[1]//1024} MiB | {r[0]:.2f} s, {r[1]//1024} MiB | {b[0]:.2f} s, {b[1]//1024} MiB | {r[0]/v[0]:.1f}x | {b[0]/v[0]:.1f}x |")
PY
