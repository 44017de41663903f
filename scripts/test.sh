#!/usr/bin/env bash
# Runs the whole suite (XCTest) and ends with one plain summary line:
# "N passed, N failed" (", N skipped" when tests were skipped, each named above it).
set -uo pipefail
swift="${SWIFT:-swift}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$swift" test --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# XCTest's last summary: "Executed 72 tests, with 1 test skipped and 0 failures (0 unexpected) ..."
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with " "$log" | tail -1)
if [ -z "$summary" ]; then
  echo "no test summary found"
  exit 1
fi
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
skipped=0
if echo "$summary" | grep -qE "[0-9]+ tests? skipped"; then
  skipped=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? skipped.*/\1/')
  grep -E "Test Case .* skipped|: Test skipped" "$log" | sed 's/^/skipped: /' || true
fi
passed=$((total - failed - skipped))
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
exit "$status"
