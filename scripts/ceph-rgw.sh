#!/usr/bin/env bash
# Starts and stops a throw-away single-node Ceph cluster with an S3 gateway (RADOS Gateway) for
# tests: one monitor, one memstore OSD and radosgw, from Debian's packages, without cephx or
# ceph-mgr, listening on 127.0.0.1 only and writing nothing outside DIR.
#
#   ceph-rgw.sh start DIR            DIR new or empty. Picks two free ports, starts everything,
#                                    creates an S3 user with random keys and waits until S3
#                                    answers. Writes DIR/env (shell assignments: VAULT_S3_ENDPOINT,
#                                    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
#                                    CEPH_CONF) and prints the endpoint. Gives up after 80 s, stops
#                                    what it started and so fails within 90 s.
#   ceph-rgw.sh stop DIR             Stops everything started for DIR (radosgw, then the OSD, then
#                                    the monitor). Idempotent; leaves DIR for the caller to remove.
#   ceph-rgw.sh pause-gateway DIR    Stops radosgw only, until it is gone and its port is closed.
#   ceph-rgw.sh resume-gateway DIR   Starts radosgw again on the same port and waits for S3.
#   ceph-rgw.sh create-bucket DIR NAME   Creates a bucket (curl's SigV4; fails unless 200).
#   ceph-rgw.sh create-rbd-pool DIR NAME   A pool for RBD images (idempotent).
#   ceph-rgw.sh assume-role DIR      Temporary credentials for the test user (STS AssumeRole of a
#                                    role allowed all of S3, for an hour), printed as
#                                    AWS_ACCESS_KEY_ID=, AWS_SECRET_ACCESS_KEY= and
#                                    AWS_SESSION_TOKEN= lines.
#
# Environment: CEPH_MEMSTORE_BYTES, the OSD's memstore size (default 4 GiB; it holds about 2.1x
# the stored bytes in RAM, and PUTs hang when it is full).
# Every failure prints one line on stderr and exits 1. The reasons for each setting are in
# DESIGN.md, "Ceph (Debian 12, 16.2.15) on one machine: facts found by probing".
set -euo pipefail

readonly START_BUDGET=80   # seconds `start` and `resume-gateway` wait before giving up
readonly STOP_GRACE=10     # seconds from SIGTERM to SIGKILL, and from SIGKILL to giving up
readonly FAIL_GRACE=2      # the same when a failed `start` stops what it started (ends by 90 s)
grace=$STOP_GRACE
readonly RGW_NAME=client.rgw.a
readonly S3_SIGV4="aws:amz:us-east-1:s3"

die() { echo "ceph-rgw.sh: $*" >&2; exit 1; }

usage() {
  die "usage: ceph-rgw.sh start|stop|pause-gateway|resume-gateway|assume-role DIR, or create-bucket|create-rbd-pool DIR NAME"
}

# --- Paths and small helpers -----------------------------------------------------------------

# set_dir DIR: the absolute paths used by every command.
set_dir() {
  dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
  conf=$dir/ceph.conf
  export CEPH_CONF=$conf
}

# pid_file NAME: where NAME's pid is kept (the script writes it at spawn; ceph rewrites it).
pid_file() { echo "$dir/run/$1.pid"; }

# alive PID: PID is a live process started with this DIR's ceph.conf (not a zombie, not reused).
alive() {
  local cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
  [[ $cmdline == *" -c $conf "* ]]
}

# daemon_alive NAME: NAME's pid file names a live process of this DIR.
daemon_alive() {
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"
}

# port_in_use PORT: something listens on TCP PORT (any address).
port_in_use() { ss -Hltn "sport = :$1" | grep -q .; }

# pick_port [EXCEPT]: a free TCP port below the ephemeral range and outside the OSDs' 6800-7300.
pick_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    [ "$p" != "${1:-}" ] && ! port_in_use "$p" && { echo "$p"; return 0; }
  done
  return 1
}

# random_hex BYTES: 2*BYTES hex digits from /dev/urandom.
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

new_uuid() { cat /proc/sys/kernel/random/uuid; }

# left: seconds left of the start budget (at least 1, so `timeout` always gets a valid value).
left() {
  local n=$((deadline - SECONDS))
  [ "$n" -gt 0 ] && echo "$n" || echo 1
}

# admin SECONDS CMD...: a ceph admin command, bounded by SECONDS and by the start budget (then
# SIGKILL 5 s later). Its output goes to stdout; its errors to DIR/log/admin.err.
admin() {
  local cap=$1; shift
  local t; t=$(left); [ "$t" -lt "$cap" ] || t=$cap
  timeout -k 5 "$t" "$@" 2>>"$dir/log/admin.err"
}

# http_code URL: the HTTP status of an anonymous GET (000 when nothing answers).
http_code() { curl -s --noproxy '*' -o /dev/null -m 2 -w '%{http_code}' "$1" || true; }

# s3_code METHOD URL: the HTTP status of a SigV4-signed request with DIR/env's credentials.
s3_code() {
  curl -s --noproxy '*' -o /dev/null -m 10 -w '%{http_code}' -X "$1" --aws-sigv4 "$S3_SIGV4" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$2" || true
}

# load_env: the variables of DIR/env, written by `start`.
load_env() {
  [ -f "$dir/env" ] || die "$dir/env is missing: was \`ceph-rgw.sh start $dir\` run?"
  # shellcheck source=/dev/null
  . "$dir/env"
  rgw_port=${VAULT_S3_ENDPOINT##*:}
}

# --- Configuration ---------------------------------------------------------------------------

# write_conf FSID MON_PORT RGW_PORT: DIR/ceph.conf, keeping everything under DIR on 127.0.0.1.
write_conf() {
  local fsid=$1 mon_port=$2 rgw_port=$3
  local bytes=${CEPH_MEMSTORE_BYTES:-4294967296}
  [[ $bytes =~ ^[0-9]+$ ]] || die "CEPH_MEMSTORE_BYTES is not a number of bytes: $bytes"
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$mon_port]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
client_mount_timeout = 30
run_dir = $dir/run
crash_dir = $dir/crash
log_file = $dir/log/\$cluster-\$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true

[mon]
mon_data = $dir/mon/\$cluster-\$id
mon_cluster_log_file = default=$dir/log/\$cluster.\$channel.log cluster=$dir/log/\$cluster.log
mon_data_avail_crit = 0
paxos_propose_interval = 0.05
admin_socket = \$run_dir/\$cluster-\$name.asok
pid_file = \$run_dir/\$name.pid

[osd]
osd_data = $dir/osd/\$cluster-\$id
osd_objectstore = memstore
memstore_device_bytes = $bytes
admin_socket = \$run_dir/\$cluster-\$name.asok
pid_file = \$run_dir/\$name.pid

[$RGW_NAME]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_data = $dir/rgw/\$cluster-\$id
rgw_enable_lc_threads = false
rgw_s3_auth_use_sts = true
rgw_sts_key = $(random_hex 8)
admin_socket = \$run_dir/\$cluster-\$name.asok
pid_file = \$run_dir/\$name.pid
EOF
}

# --- Daemons ---------------------------------------------------------------------------------

# spawn NAME CMD...: runs CMD in the foreground of its own session, detached from our stdio
# (output in DIR/log/NAME.out), and records its pid at once so `stop` finds it however early.
# Every other descriptor the caller gave us is closed in the daemon: a caller that learns of our
# end through a pipe or socket (Foundation's Process does) must not wait on the daemons.
spawn() {
  local name=$1; shift
  ( close_inherited; exec setsid "$@" ) </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$(pid_file "$name")"
  disown $!   # no "Killed" notice from bash when `start` fails and stops it
}

close_inherited() {
  local fd
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}

start_mon() { spawn mon.a ceph-mon -f -c "$conf" -i a; }
start_osd() { MALLOC_MMAP_THRESHOLD_=131072 spawn osd.0 ceph-osd -f -c "$conf" -i 0; }
start_rgw() { spawn "$RGW_NAME" radosgw -f -c "$conf" -n "$RGW_NAME"; }

# stop_daemon NAME: SIGTERM, then SIGKILL after `grace` seconds; returns once it is gone.
stop_daemon() {
  local name=$1 pid
  pid=$(cat "$(pid_file "$name")" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || { rm -f "$(pid_file "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid"; } ||
    die "$name (pid $pid) is still running after SIGKILL"
  rm -f "$(pid_file "$name")"
}

# wait_gone PID: waits up to `grace` seconds for PID to exit.
wait_gone() {
  local i
  for ((i = 0; i < grace * 20; i++)); do
    alive "$1" || return 0
    sleep 0.05
  done
  return 1
}

# check_daemons NAME...: fails with the daemon's log when one of them has exited.
check_daemons() {
  local name
  for name in "$@"; do
    daemon_alive "$name" || die "$name exited during start-up; see $dir/log/$name.out and $dir/log/ceph-$name.log"
  done
}

# wait_for WHAT CHECK DAEMONS...: polls CHECK until it succeeds, a daemon dies or the budget ends.
wait_for() {
  local what=$1 check=$2; shift 2
  until $check; do
    check_daemons "$@"
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${START_BUDGET}s waiting for $what"
    sleep 0.1
  done
}

osd_up() {
  admin 10 ceph osd stat -f json | grep -q '"num_up_osds":1[,}]'
}
gateway_answers() { [ "$(http_code "http://127.0.0.1:$rgw_port/")" = 200 ]; }
user_answers() { [ "$(s3_code GET "$VAULT_S3_ENDPOINT/")" = 200 ]; }

# --- Start steps -----------------------------------------------------------------------------

make_mon() {
  local fsid=$1 mon_port=$2
  mkdir -p "$dir/mon/ceph-a"
  admin 20 monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
    "$dir/monmap" >/dev/null || die "monmaptool failed; see $dir/log/admin.err"
  admin 30 ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null ||
    die "ceph-mon --mkfs failed; see $dir/log/admin.err"
  start_mon
}

make_osd() {
  local uuid id
  uuid=$(new_uuid)
  id=$(admin 30 ceph osd new "$uuid") || die "\`ceph osd new\` failed; see $dir/log/admin.err"
  [ "$id" = 0 ] || die "\`ceph osd new\` gave OSD id '$id', expected 0"
  mkdir -p "$dir/osd/ceph-0"   # memstore aborts in set_fsid when it is missing
  MALLOC_MMAP_THRESHOLD_=131072 admin 30 ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" \
    >/dev/null || die "ceph-osd --mkfs failed; see $dir/log/admin.err"
  start_osd
}

make_user() {
  AWS_ACCESS_KEY_ID=$(random_hex 10 | tr a-f A-F)
  AWS_SECRET_ACCESS_KEY=$(random_hex 20)
  admin 30 radosgw-admin -c "$conf" user create --uid=vaultfs-test --display-name=vaultfs-test \
    --access-key="$AWS_ACCESS_KEY_ID" --secret-key="$AWS_SECRET_ACCESS_KEY" >/dev/null ||
    die "radosgw-admin user create failed; see $dir/log/admin.err"
}

write_env() {
  local tmp=$dir/env.tmp
  {
    printf 'VAULT_S3_ENDPOINT=%q\n' "$VAULT_S3_ENDPOINT"
    printf 'AWS_ACCESS_KEY_ID=%q\n' "$AWS_ACCESS_KEY_ID"
    printf 'AWS_SECRET_ACCESS_KEY=%q\n' "$AWS_SECRET_ACCESS_KEY"
    printf 'AWS_DEFAULT_REGION=%q\n' us-east-1
    printf 'CEPH_CONF=%q\n' "$conf"
  } >"$tmp"
  mv "$tmp" "$dir/env"
}

# --- Commands --------------------------------------------------------------------------------

cmd_start() {
  mkdir -p "$1" || die "cannot create $1"
  set_dir "$1"
  [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
  [[ $dir != *[[:space:]]* ]] || die "$dir contains white space, which ceph.conf cannot hold"
  deadline=$((SECONDS + START_BUDGET))
  mkdir -p "$dir/run" "$dir/log" "$dir/crash" "$dir/rgw/ceph-rgw.a"
  local mon_port
  mon_port=$(pick_port) || die "no free port for the monitor"
  rgw_port=$(pick_port "$mon_port") || die "no free port for the gateway"
  VAULT_S3_ENDPOINT=http://127.0.0.1:$rgw_port
  local fsid; fsid=$(new_uuid)
  write_conf "$fsid" "$mon_port" "$rgw_port"
  trap 'grace=$FAIL_GRACE; stop_all >/dev/null 2>&1 || true' EXIT   # a failure stops what started
  trap 'die "interrupted; stopping what was started"' INT TERM
  make_mon "$fsid" "$mon_port"
  make_osd
  wait_for "the OSD to come up" osd_up mon.a osd.0
  start_rgw
  wait_for "the gateway on port $rgw_port" gateway_answers mon.a osd.0 "$RGW_NAME"
  make_user
  wait_for "S3 to accept the new user" user_answers mon.a osd.0 "$RGW_NAME"
  write_env
  trap - EXIT INT TERM
  echo "$VAULT_S3_ENDPOINT"
}

stop_all() {
  stop_daemon "$RGW_NAME"
  stop_daemon osd.0
  stop_daemon mon.a
}

cmd_stop() {
  [ -d "$1" ] || return 0
  set_dir "$1"
  stop_all
}

cmd_pause_gateway() {
  set_dir "$1"
  load_env
  stop_daemon "$RGW_NAME"
  local i
  for ((i = 0; i < STOP_GRACE * 20; i++)); do
    port_in_use "$rgw_port" || return 0
    sleep 0.05
  done
  die "port $rgw_port is still open after radosgw exited"
}

cmd_resume_gateway() {
  set_dir "$1"
  load_env
  deadline=$((SECONDS + START_BUDGET))
  daemon_alive "$RGW_NAME" || start_rgw
  wait_for "the gateway on port $rgw_port" user_answers mon.a osd.0 "$RGW_NAME"
}

cmd_create_bucket() {
  set_dir "$1"
  load_env
  local code
  code=$(s3_code PUT "$VAULT_S3_ENDPOINT/$2")
  [ "$code" = 200 ] || die "creating bucket '$2' at $VAULT_S3_ENDPOINT answered HTTP $code"
}

cmd_assume_role() {
  set_dir "$1"
  load_env
  deadline=$((SECONDS + 60))
  local role=vaultfs-test-role answer field value
  if ! admin 30 radosgw-admin -c "$conf" role get --role-name="$role" >/dev/null; then
    admin 30 radosgw-admin -c "$conf" role create --role-name="$role" --path=/ \
      --assume-role-policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/vaultfs-test"]},"Action":["sts:AssumeRole"]}]}' \
      >/dev/null || die "radosgw-admin role create failed; see $dir/log/admin.err"
    admin 30 radosgw-admin -c "$conf" role-policy put --role-name="$role" --policy-name=all-of-s3 \
      --policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}' \
      >/dev/null || die "radosgw-admin role-policy put failed; see $dir/log/admin.err"
  fi
  answer=$(curl -s --noproxy '*' -m 30 -X POST --aws-sigv4 "aws:amz:us-east-1:sts" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "Content-Type: application/x-www-form-urlencoded" \
    --data "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam:::role/$role&RoleSessionName=vaultfs-test&DurationSeconds=3600" \
    "$VAULT_S3_ENDPOINT/") || die "AssumeRole at $VAULT_S3_ENDPOINT did not answer"
  for field in AccessKeyId:AWS_ACCESS_KEY_ID SecretAccessKey:AWS_SECRET_ACCESS_KEY SessionToken:AWS_SESSION_TOKEN; do
    value=$(printf '%s' "$answer" | sed -n "s/.*<${field%%:*}>\([^<]*\)<\/${field%%:*}>.*/\1/p")
    [ -n "$value" ] || die "AssumeRole answered without ${field%%:*}: $(printf '%s' "$answer" | tr '\n' ' ' | head -c 300)"
    echo "${field##*:}=$value"
  done
}

# create-rbd-pool DIR NAME: a pool for RBD images (idempotent), served by the same monitor and
# OSD; no ceph-mgr is needed.
cmd_create_rbd_pool() {
  set_dir "$1"
  deadline=$((SECONDS + 60))
  if ! admin 30 ceph -c "$conf" osd pool ls | grep -qx "$2"; then
    admin 30 ceph -c "$conf" osd pool create "$2" 8 >/dev/null || die "ceph osd pool create $2 failed; see $dir/log/admin.err"
    admin 30 rbd -c "$conf" pool init "$2" || die "rbd pool init $2 failed; see $dir/log/admin.err"
  fi
}

main() {
  local cmd=${1:-}
  case "$cmd:$#" in
    start:2) cmd_start "$2" ;;
    stop:2) cmd_stop "$2" ;;
    pause-gateway:2) cmd_pause_gateway "$2" ;;
    resume-gateway:2) cmd_resume_gateway "$2" ;;
    create-bucket:3) cmd_create_bucket "$2" "$3" ;;
    assume-role:2) cmd_assume_role "$2" ;;
    create-rbd-pool:3) cmd_create_rbd_pool "$2" "$3" ;;
    *) usage ;;
  esac
}

main "$@"
