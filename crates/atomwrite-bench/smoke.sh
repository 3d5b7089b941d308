#!/usr/bin/env bash
# CI smoke: small counts (~5 s here, must stay < 60 s), checks every contender's output.
# Last line: "bench-smoke: N passed, M failed, K skipped"; exit 1 if M > 0.
# Scenarios needing root or optional tools (loop mounts, FUSE, strace, xfs/btrfs) are
# reported as skipped when unavailable.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
feat="$("$here/build.sh" | tail -n1)" || { echo "bench-smoke: 0 passed, 1 failed"; exit 1; }
echo "atomwrite-bench built with features: $feat" >&2
timeout -k 10 300 target/release/atomwrite-bench --quick "$@"
rc=$?
if [ "$rc" -ge 124 ]; then
  echo "bench-smoke: 0 passed, 1 failed (timed out or killed, status $rc)"
fi
exit "$rc"
