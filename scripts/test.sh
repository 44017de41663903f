#!/usr/bin/env bash
# Runs the whole suite (XCTest), then the schedule, retention, mount, export, crash and files tests
# again on encrypted repositories, and ends with one plain summary line over both passes:
# "N passed, N failed" (", N skipped" when tests were skipped, each named above it).
# Arguments (e.g. --filter X) run that selection once, unencrypted.
set -uo pipefail
swift="${SWIFT:-swift}"
log=$(mktemp)
# The servers that tests set up (`server add`: their disks and hooks) go to a host configuration of the
# run's own, never to the machine's /etc/vaultfs.
VAULT_CONFIG_DIR=$(mktemp -d)
# Instant restores and the restore history likewise: the run's own, never /var/lib/vaultfs.
VAULT_RESTORE_DIR=$(mktemp -d)
chmod 700 "$VAULT_RESTORE_DIR"
export VAULT_CONFIG_DIR VAULT_RESTORE_DIR
trap 'rm -f "$log"; rm -rf "$VAULT_CONFIG_DIR" "$VAULT_RESTORE_DIR"' EXIT
passed=0 failed=0 skipped=0 status=0

# sweep_leftovers: what a test made under /tmp/vaultfs-* and did not take down (a test process
# that crashed or was killed cannot run its cleanup): mounts, innermost first, and loop devices.
# Each is named, taken down, and fails the run; the next pass and the machine start clean.
sweep_leftovers() {
  local target device found=0
  for target in $(awk '$2 ~ "^/tmp/vaultfs-" { print $2 }' /proc/self/mounts | sort -r); do
    echo "left mounted by the tests: $target" >&2
    timeout 30 fusermount3 -uz "$target" 2>/dev/null || timeout 30 umount -l "$target" 2>/dev/null
    found=1
  done
  for device in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk '$2 ~ "^/tmp/vaultfs-" { print $1 }'); do
    echo "loop device left attached by the tests: $device" >&2
    losetup -d "$device" 2>/dev/null
    found=1
  done
  [ "$found" -eq 0 ] || status=1
}

# run_pass LABEL ARGS...: one `swift test`, its counts added to the totals.
run_pass() {
  local label=$1; shift
  echo "== $label" >&2
  "$swift" test --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
  local code=${PIPESTATUS[0]}
  # XCTest's last summary: "Executed 72 tests, with 1 test skipped and 0 failures (0 unexpected) ..."
  local summary total fails skips
  summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with " "$log" | tail -1)
  if [ -z "$summary" ]; then
    echo "no test summary found in the $label pass"
    exit 1
  fi
  total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
  fails=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
  skips=0
  if echo "$summary" | grep -qE "[0-9]+ tests? skipped"; then
    skips=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? skipped.*/\1/')
    grep -E "Test Case .* skipped|: Test skipped" "$log" | sed 's/^/skipped: /' || true
  fi
  passed=$((passed + total - fails - skips)) failed=$((failed + fails)) skipped=$((skipped + skips))
  [ "$code" -eq 0 ] || status=$code
  sweep_leftovers
}

if [ $# -gt 0 ]; then
  run_pass "selected tests" "$@"
else
  run_pass "all tests"
  VAULTFS_TEST_ENCRYPTION=1 VAULT_PASSPHRASE=vaultfs-test-passphrase \
    run_pass "encrypted repositories" --filter "ScheduleTests|MountTests|CommandLineTests|CrashTests|FilesInsideTests|LocationTests|CopyTests"
fi
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
exit "$status"
