#!/usr/bin/env bash
# Runs every shell example in README.md as a user would paste it: real disk images (ext4, and
# a GPT disk with two ext4 partitions), a real repository, real mounts. Each ```sh block is
# preceded by `<!-- example: SCENE -->`, which says what must exist before it runs:
#   new       nothing: no repository yet
#   repo      an empty repository at /srv/backups, $VAULT_REPO set
#   vaults    repo + vaults prod (a policy) and db
#   servers   vaults + server web (disks root, data) in prod and server db (disk root) in db
#   points    servers + points web/before-upgrade and db/nightly
#   mounted   points + the repository mounted at /mnt/backups
#   after     whatever the block before it left
#   skip: WHY not run here, and why (the README says so too)
# The README's paths are mapped into one scratch folder (see `rewrite`). A command the README
# says keeps running (`schedule run`, `vaultfs -f`) must still be running after a few seconds,
# then is stopped. `ssh host CMD` runs CMD here.
# One line per block; the first block that fails ends the run, naming its README line.
# Usage: scripts/readme-examples.sh BIN_DIR [README]
set -uo pipefail
bin=$(cd "${1:?usage: readme-examples.sh BIN_DIR [README]}" && pwd)
readme=${2:-$(dirname "$0")/../README.md}
world=$(mktemp -d /tmp/vaultfs-readme.XXXXXX)
images=$world/images
helpers=$(cd "$(dirname "$0")/../mount-helpers" && pwd)
export PATH="$bin:$helpers:$PATH"

# Unmounts, detaches and removes everything a scene made, whatever happened.
teardown_scene() {
  local mnt
  for mnt in $(awk -v w="$world/scene" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    if [ -e /dev/loop-control ] && vaultfs-attach --list 2>/dev/null | grep -q " $mnt\$"; then
      timeout 30 vaultfs-attach --detach "$mnt" >/dev/null 2>&1
    fi
    timeout 30 fusermount3 -u "$mnt" 2>/dev/null || timeout 30 umount -l "$mnt" 2>/dev/null
  done
  rm -rf "$world/scene"
}
trap 'teardown_scene; rm -rf "$world"' EXIT
trap 'exit 143' TERM INT

fail() { echo "readme-examples: $*" >&2; exit 1; }

# The disks the examples back up, made once: web's root (ext4), web's data (GPT, two ext4
# partitions) and db's root.
make_images() {
  local tree=$world/tree part
  mkdir -p "$images" "$tree/root/etc/nginx" "$tree/root/home/alice" "$tree/root/srv/www" "$tree/p1/home/alice" "$tree/p2/srv"
  echo "worker_processes 2;" > "$tree/root/etc/nginx/nginx.conf"
  echo "root:*:19000:0:99999:7:::" > "$tree/root/etc/shadow" && chmod 640 "$tree/root/etc/shadow"
  echo "quarterly report" > "$tree/root/home/alice/report.odt"
  echo "<h1>web</h1>" > "$tree/root/srv/www/index.html"
  chown -R 1000:1000 "$tree/root/home/alice"
  cp -a "$tree/root/home/alice/report.odt" "$tree/p1/home/alice/"
  echo "data" > "$tree/p2/srv/data.txt"
  mkfs.ext4 -q -F -d "$tree/root" "$images/root.img" 32M >/dev/null || fail "mkfs.ext4 failed"
  cp --sparse=always "$images/root.img" "$images/db.img"
  truncate -s 64M "$images/data.raw"
  printf 'label: gpt\n,28M\n,\n' | sfdisk -q "$images/data.raw" || fail "sfdisk failed"
  for part in 1 2; do
    local start size
    read -r start size < <(sfdisk -d "$images/data.raw" | awk -v n="data.raw$part" '$1 ~ n"$" { gsub(/[=,]/, " "); print $4, $6 }')
    mkfs.ext4 -q -F -d "$tree/p$part" "$world/part.img" "$((size / 2))K" >/dev/null || fail "mkfs.ext4 failed"
    dd if="$world/part.img" of="$images/data.raw" bs=64K seek="$((start * 512))" oflag=seek_bytes conv=notrunc,sparse status=none
    rm -f "$world/part.img"
  done
}

# Builds the named scene from nothing in $world/scene.
scene() {
  local s=$world/scene
  teardown_scene
  mkdir -p "$s"/{work,mnt,mnt2,restore,restore-tar,tmp,vartmp,home,etc,img}
  cp --sparse=always "$images"/* "$s/img/"
  echo "correct horse battery staple" > "$s/etc/passphrase"
  export VAULT_CONFIG_DIR=$s/etc/vaultfs           # servers (disks, hooks): never the machine's /etc/vaultfs
  export VAULT_COPY_DIR=$s/copy-history            # the host's copy history: never /var/lib/vaultfs
  export VAULT_WEB_TOKEN_FILE=$s/state/web/token    # the console's token: never /var/lib/vaultfs
  export VAULT_NEW_PASSPHRASE="a longer passphrase for the new key wrap"   # key change-passphrase
  unset VAULT_REPO
  [ "$1" = new ] && return
  export VAULT_REPO=$s/backups
  vaultctl init "$VAULT_REPO" >/dev/null || return 1
  [ "$1" = repo ] && return
  vaultctl vault create prod --start 01:00 --every 24h --incrementals 6 --keep-fulls 4 >/dev/null || return 1
  vaultctl vault create db >/dev/null || return 1
  [ "$1" = vaults ] && return
  vaultctl server add web --vault prod --disk root="$s/img/root.img" --disk data="$s/img/data.raw" >/dev/null || return 1
  vaultctl server add db --vault db --disk root="$s/img/db.img" >/dev/null || return 1
  [ "$1" = servers ] && return
  vaultctl backup web --name before-upgrade --progress none >/dev/null || return 1
  vaultctl backup db --name nightly --progress none >/dev/null || return 1
  [ "$1" = points ] && return
  vaultfs "$VAULT_REPO" "$s/mnt" || return 1
  [ "$1" = mounted ] && return
  fail "unknown scene '$1'"
}

# The README's paths, mapped into the scene (each at the start of a word), `[...]` (optional
# arguments) dropped, and the example point id made the id of web/before-upgrade.
rewrite() {
  local s=$world/scene id
  id=$(vaultctl points web --json 2>/dev/null | grep -o '"id" *: *"[^"]*"' | head -1 | sed -E 's/.*"([0-9a-f]{8})[^"]*"$/\1/')
  local w='(^|[ =])'
  sed -E \
    -e 's/ \[[^]]*\]//g' \
    -e "s#$w/srv/backups#\1@@/backups#g; s#$w/srv/offsite#\1@@/offsite#g; s#$w/srv/copies#\1@@/copies#g; s#$w/mnt/backups#\1@@/mnt#g" \
    -e "s#$w/mnt/restore#\1@@/restore#g; s#-C /restore#-C @@/restore-tar#g; s#$w/var/tmp/#\1@@/vartmp/#g; s#$w/tmp/#\1@@/tmp/#g" \
    -e "s#$w/dev/vda#\1@@/img/root.img#g; s#$w/dev/vdb#\1@@/vdb#g; s#$w/srv/img/data.raw#\1@@/img/data.raw#g" \
    -e "s#$w/etc/vaultfs/passphrase#\1@@/etc/passphrase#g; s#$w/root/#\1@@/home/#g" \
    -e "s#$w/var/lib/vaultfs/web/token#\1@@/state/web/token#g" \
    -e "s#$w~/backups#\1@@/backups#g; s#$w~/mnt#\1@@/mnt2#g; s#$w~/#\1@@/home/#g" \
    -e "s#3f2a9c01#${id:-no-point}#g" \
    -e "s#@@#$s#g"
}

# What every block runs with: the README's long-running commands bounded, ssh to this machine.
prelude() {
  cat <<'EOF'
set -eo pipefail
# Whatever a block started in the background (`vaultctl serve &`) ends with it, failed or not.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
vaultctl() {
  # `vaultctl serve &`: the server itself in the background, so `kill $!` stops it.
  [ "${1:-}" = serve ] && exec "$(type -P vaultctl)" "$@"
  if [ "${1:-}" = schedule ] && [ "${2:-}" = run ] && [[ " $* " != *" --once "* ]]; then
    local code=0
    timeout 5 "$(type -P vaultctl)" "$@" || code=$?
    [ "$code" -eq 124 ] || { echo "'vaultctl $*' ended (status $code); it should keep running" >&2; return 1; }
    return 0
  fi
  "$(type -P vaultctl)" "$@"
}
vaultfs() {
  if [[ " $* " == *" -f "* ]]; then
    "$(type -P vaultfs)" "$@" & local pid=$! i
    for i in $(seq 100); do mountpoint -q "$2" && break; sleep 0.1; done
    mountpoint -q "$2" || { kill "$pid"; echo "'vaultfs $*' did not mount" >&2; return 1; }
    kill -TERM "$pid"
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ! mountpoint -q "$2" || { echo "'vaultfs $*' did not unmount on SIGTERM" >&2; return 1; }
    return 0
  fi
  "$(type -P vaultfs)" "$@"
}
ssh() { shift; sh -c "$*"; }
EOF
}

make_images
blocks=$world/blocks
mkdir -p "$blocks"
# Splits the README into blocks: blocks/N.sh (N = the README line of the fence) and
# blocks/N.scene, the scene its comment names ("none" when it has none).
awk -v dir="$blocks" '
  /^[[:space:]]*```sh[[:space:]]*$/ {
    n = NR; inblock = 1; what = "none"
    if (match(last, /<!-- example: .* -->/)) what = substr(last, RSTART + 14, RLENGTH - 18)
    print what > (dir "/" n ".scene"); close(dir "/" n ".scene"); printf "" > (dir "/" n ".sh"); next
  }
  inblock && /^[[:space:]]*```[[:space:]]*$/ { inblock = 0; close(dir "/" n ".sh"); next }
  inblock { sub(/^  /, ""); print >> (dir "/" n ".sh"); next }
  NF { last = $0 }
' "$readme"

ran=0 skipped=0
for line in $(ls "$blocks" | sed -n 's/\.sh$//p' | sort -n); do
  what=$(cat "$blocks/$line.scene")
  case "$what" in
    none) fail "README.md line $line: an example with no <!-- example: SCENE --> comment before it" ;;
    skip:*) echo "README.md line $line: not run here: ${what#skip: }"; skipped=$((skipped + 1)); continue ;;
    after) ;;
    *) scene "$what" || fail "README.md line $line: could not set up scene '$what'" ;;
  esac
  { prelude; rewrite < "$blocks/$line.sh"; } > "$world/block.sh"
  out=$( cd "$world/scene/work" && timeout 300 bash "$world/block.sh" 2>&1 )
  code=$?
  if [ "$code" -ne 0 ]; then
    echo "$out" | tail -20 >&2
    fail "README.md line $line: the example failed (status $code):"$'\n'"$(rewrite < "$blocks/$line.sh")"
  fi
  echo "README.md line $line: ran ($what)"
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || fail "no example found in $readme"
echo "$ran README examples ran, $skipped not run here"
