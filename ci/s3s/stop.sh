#!/usr/bin/env bash
# Stop the s3s-fs server started by ci/s3s/start.sh (by its recorded pid only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${ATOMWRITE_S3S_STATE:-$(cd "$here/../.." && pwd)/target/s3s}"
if [ -f "$state/s3s.pid" ]; then
    pid="$(cat "$state/s3s.pid")"
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/s3s.pid"
fi
