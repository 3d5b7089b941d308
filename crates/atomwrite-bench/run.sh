#!/usr/bin/env bash
# Full benchmark run (scenarios a-f + strace lists); 10-20 minutes.
#   crates/atomwrite-bench/run.sh [--dir PATH] [any atomwrite-bench option]
# Markdown goes to stdout and target/bench-results.md, JSON to target/bench-results.json.
# Run as root for (e) (loop-mounted btrfs/xfs/ext4 images) and (f) (FUSE + loop).
# Needs: strace; optional: xfsprogs, btrfs-progs, fuse3, GNU time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
feat="$("$here/build.sh" | tail -n1)"
echo "atomwrite-bench built with features: $feat" >&2
target/release/atomwrite-bench --json-out target/bench-results.json "$@" | tee target/bench-results.md
