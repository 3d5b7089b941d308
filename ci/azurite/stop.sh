#!/usr/bin/env bash
# Stop the Azurite server started by ci/azurite/start.sh (by its recorded pid only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${ATOMWRITE_AZURITE_STATE:-$(cd "$here/../.." && pwd)/target/azurite}"
if [ -f "$state/azurite.pid" ]; then
    pid="$(cat "$state/azurite.pid")"
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/azurite.pid"
fi
