#!/usr/bin/env bash
# Builds the benchmark corpus: three versions of one real ext4 disk (the standard corpus).
#   disk-v1.img  3 GiB ext4 holding a copy of /usr/share (about 0.6-0.7 GB allocated, sparse)
#   disk-v2.img  v1 after a day of file changes: /usr/lib/gcc added, docs removed, 200 files rewritten
#   disk-v3.img  v2 after database-like churn: 4096 random 4 KiB writes (16 MiB) inside one 256 MiB region
# Usage: scripts/make-corpus.sh OUTDIR [SIZE]   (SIZE for mkfs, default 3G). Needs e2fsprogs (mkfs.ext4, debugfs).
# Nothing is mounted: changes go through debugfs, so no root or loop device is needed.
set -euo pipefail
out=${1:?usage: make-corpus.sh OUTDIR [SIZE]}
size=${2:-3G}
mkdir -p "$out"
export E2FSPROGS_FAKE_TIME=1764000000   # fixed timestamps inside the filesystem
uuid=5e3d7a52-0c1f-4e53-9b6a-6b0d3c1a2f00

echo "making $out/disk-v1.img ($size ext4 from /usr/share)" >&2
rm -f "$out/disk-v1.img"
mkfs.ext4 -q -F -U "$uuid" -E hash_seed="$uuid" -L vaultfs-bench -d /usr/share "$out/disk-v1.img" "$size"

echo "making $out/disk-v2.img (file-level changes)" >&2
cp --sparse=always "$out/disk-v1.img" "$out/disk-v2.img"
script=$(mktemp)
{
  echo "mkdir /gcc-added"
  # add a tree of new files
  (cd /usr/lib/gcc && find . -type d | sort | sed 's|^\./||' | grep -v '^\.$' | sed 's|^|mkdir /gcc-added/|')
  (cd /usr/lib/gcc && find . -type f | sort | sed 's|^\./||' | while read -r f; do echo "write /usr/lib/gcc/$f /gcc-added/$f"; done)
  # remove some documentation
  (cd /usr/share/doc && ls | sort | sed -n 1,150p | while read -r d; do [ -d "/usr/share/doc/$d" ] && echo "rm -r /doc/$d" || echo "rm /doc/$d"; done) 2>/dev/null || true
} > "$script"
# rewrite 200 man pages with new content
tmpf=$(mktemp)
python3 -c "import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(20000))" > "$tmpf"
(cd /usr/share && find man -name '*.gz' | sort | sed -n 1,200p | while read -r f; do echo "rm /$f"; echo "write $tmpf /$f"; done) >> "$script"
debugfs -w -f "$script" "$out/disk-v2.img" >/dev/null 2>&1 || true
e2fsck -fy "$out/disk-v2.img" >/dev/null 2>&1 || true   # debugfs "rm -r" leaves counts for fsck to settle
rm -f "$script" "$tmpf"

echo "making $out/disk-v3.img (4096 random 4 KiB writes in a 256 MiB region)" >&2
cp --sparse=always "$out/disk-v2.img" "$out/disk-v3.img"
python3 - "$out/disk-v3.img" <<'EOF'
import os, random, sys
path = sys.argv[1]
rng = random.Random(20261125)
region_start = 512 * 1024 * 1024 // 4096      # a 256 MiB "database file" 512 MiB into the disk
region_blocks = 256 * 1024 * 1024 // 4096
with open(path, "r+b") as f:
    for _ in range(4096):
        f.seek((region_start + rng.randrange(region_blocks)) * 4096)
        f.write(rng.randbytes(4096))
EOF
ls -ls "$out"/disk-v*.img >&2
