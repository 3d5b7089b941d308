#!/usr/bin/env bash
# Process-crash torture (>= 10,000 SIGKILLs by default) and the 8-writer/8-reader concurrency
# test. Usage: crash-tests/torture/run.sh [torture args, e.g. --kills 20000 --dir /mnt/x]
# Last line: `torture: N passed, M failed`; exit status 1 on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
if ! cargo build --release -q -p atomwrite-cli -p atomwrite-torture; then
  echo "torture: 0 passed, 1 failed"; exit 1
fi
log=$(mktemp)
cargo test --release -q -p atomwrite-torture -- --nocapture --include-ignored >"$log" 2>&1
crc=$?
grep -E "^concurrency|panicked|torn|went back" "$log"
cp=$(grep -oE "[0-9]+ passed" "$log" | awk '{s+=$1} END {print s+0}')
cf=$(grep -oE "[0-9]+ failed" "$log" | awk '{s+=$1} END {print s+0}')
[ $crc -ne 0 ] && [ "$cf" -eq 0 ] && cf=1
rm -f "$log"
echo "concurrency: $cp passed, $cf failed"
tlog=$(mktemp)
target/release/torture "$@" 2>&1 | tee "$tlog"
trc=${PIPESTATUS[0]}
out=$(tail -1 "$tlog")
rm -f "$tlog"
tp=$(echo "$out" | sed -nE 's/^torture: ([0-9]+) passed, ([0-9]+) failed$/\1/p')
tf=$(echo "$out" | sed -nE 's/^torture: ([0-9]+) passed, ([0-9]+) failed$/\2/p')
tp=${tp:-0}; tf=${tf:-1}
[ "$trc" -ne 0 ] && [ "$tf" -eq 0 ] && tf=1
echo "torture: $((tp + cp)) passed, $((tf + cf)) failed"
[ $((tf + cf)) -eq 0 ]
