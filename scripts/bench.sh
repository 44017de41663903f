#!/usr/bin/env bash
# `make bench`: vaultfs against borg and restic, side by side in one run, on the benchmark
# corpus that scripts/make-corpus.sh builds (three versions of a 3 GiB ext4 image of
# /usr/share). Installs what it needs, builds vaultfs as `make release` does, then runs
# scripts/bench.py, which prints a Markdown table and writes WORKDIR/results.json.
# Usage: scripts/bench.sh [WORKDIR]   (as root; BENCH_RUNS=N for more runs, default 3)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$top/bench-work}
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (it drops the page cache and mounts)" >&2; exit 1; }

need=()
for p in restic borgbackup fio python3 e2fsprogs fuse2fs libnbd-bin wrk curl; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >&2
fi
# The S3 rows start a local Ceph (scripts/ceph-rgw.sh), installed as make test installs it.
"$top/scripts/install-deps.sh" --test >&2

# The binaries `make install` and the .deb ship: release, with the Swift runtime linked in.
echo "== release build" >&2
make -C "$top" --no-print-directory release-binaries >&2

mkdir -p "$work"
# BENCH_ONLY=fragments, rbd and nbd make their own disks and need no corpus.
if [ "${BENCH_ONLY:-}" != fragments ] && [ "${BENCH_ONLY:-}" != rbd ] && [ "${BENCH_ONLY:-}" != nbd ] && [ ! -f "$work/corpus/disk-v3.img" ]; then "$top/scripts/make-corpus.sh" "$work/corpus"; fi
exec python3 "$top/scripts/bench.py" "$work"
