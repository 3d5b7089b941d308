#!/usr/bin/env bash
# Full benchmark run (scenarios a-e + strace lists); takes ~10-15 minutes.
#   crates/atomwrite-bench/run.sh [--dir PATH] [any atomwrite-bench option]
# Markdown goes to stdout and target/bench-results.md, JSON to target/bench-results.json.
# Run as root for (e) (loop-mounted btrfs/xfs/ext4 images).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
feat="$("$here/build.sh" | tail -n1)"
echo "atomwrite-bench built with features: $feat" >&2
target/release/atomwrite-bench --json "$@" > target/bench-results.json
target/release/atomwrite-bench "$@" | tee target/bench-results.md
