#!/usr/bin/env bash
# CI smoke: small counts (< 60 s), checks every contender's output.
# Last line: "bench-smoke: N passed, M failed, K skipped"; exit 1 if M > 0.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
feat="$("$here/build.sh" | tail -n1)" || { echo "bench-smoke: 0 passed, 1 failed"; exit 1; }
echo "atomwrite-bench built with features: $feat" >&2
exec target/release/atomwrite-bench --quick "$@"
