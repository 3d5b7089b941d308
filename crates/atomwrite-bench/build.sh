#!/usr/bin/env bash
# Build the atomwrite CLI (if it builds) and atomwrite-bench with the richest
# feature set that compiles against the current atomwrite crate:
#   batch (library + Batch) > atomwrite (library) > none (peers + floor only).
# Prints the chosen feature set on stdout's last line.
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p atomwrite-cli >&2 2>/dev/null \
  || echo "build.sh: atomwrite-cli did not build; CLI scenarios will report 'not available'" >&2
for feat in batch atomwrite; do
  if cargo build --release -q -p atomwrite-bench --features "$feat" 2>/dev/null; then
    echo "$feat"
    exit 0
  fi
done
cargo build --release -q -p atomwrite-bench >&2 || exit 1
echo "none"
