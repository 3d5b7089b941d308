#!/usr/bin/env bash
# Fault injection for `atomwrite write`: strace -e inject at every step with real errnos, then
# real kernel faults (root). Usage: crash-tests/faults/run.sh [-v] [--dir BASE]
# Last line: `faults: N passed, M failed`; exit status 1 on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi
if ! cargo build --release -q -p atomwrite-cli -p atomwrite-faults; then
  echo "faults: 0 passed, 1 failed"; exit 1
fi
exec target/release/faults "$@"
