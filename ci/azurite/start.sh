#!/usr/bin/env bash
# Start Azurite (the Azure Blob Storage emulator, npm package `azurite`, pinned in
# ci/azurite/package-lock.json) on 127.0.0.1 for the object-store tests.
#
#   ci/azurite/start.sh      # `npm ci` into ci/azurite/node_modules if needed, starts the blob
#                            # service, creates the container, proves that conditional PUTs are
#                            # honoured (check_conditional.mjs), writes $STATE/env.sh (source it)
#                            # — also printed on stdout.
# Env knobs: ATOMWRITE_AZURITE_PORT (default: a free port), ATOMWRITE_AZURITE_STATE (default
# target/azurite in the repo), ATOMWRITE_AZ_CONTAINER (default atomwrite-test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${ATOMWRITE_AZURITE_STATE:-$repo/target/azurite}"
container="${ATOMWRITE_AZ_CONTAINER:-atomwrite-test}"
mkdir -p "$state"

if [ -f "$state/azurite.pid" ] && kill -0 "$(cat "$state/azurite.pid")" 2>/dev/null; then
    echo "start.sh: azurite already running (pid $(cat "$state/azurite.pid")); stop it with ci/azurite/stop.sh" >&2
    cat "$state/env.sh"
    exit 0
fi

command -v node >/dev/null || { echo "start.sh: node (Node.js) is not installed; Azurite needs it" >&2; exit 1; }
bin="$here/node_modules/.bin/azurite-blob"
if [ ! -x "$bin" ]; then
    echo "start.sh: installing azurite (npm ci) into $here/node_modules" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

port="${ATOMWRITE_AZURITE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
endpoint="http://127.0.0.1:$port"


# --inMemoryPersistence: nothing outlives the server; --skipApiVersionCheck: object_store's
# x-ms-version may be newer than this Azurite knows.
"$bin" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence \
    --skipApiVersionCheck --loose >"$state/azurite.log" 2>&1 &
echo $! >"$state/azurite.pid"

up=""
for _ in $(seq 1 240); do
    if python3 - "$endpoint" <<'PY' 2>/dev/null; then up=1; break; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/devstoreaccount1?comp=list", timeout=1).read()
except urllib.error.HTTPError:
    pass  # 403 without a signature: the server answers
PY
    if ! kill -0 "$(cat "$state/azurite.pid")" 2>/dev/null; then break; fi
    sleep 0.5
done
if [ -z "$up" ]; then
    echo "start.sh: azurite did not answer on $endpoint; log:" >&2
    cat "$state/azurite.log" >&2
    kill "$(cat "$state/azurite.pid")" 2>/dev/null || true
    rm -f "$state/azurite.pid"
    exit 1
fi

export AZURITE_BLOB_STORAGE_URL="$endpoint"
if ! node "$here/check_conditional.mjs" "$container" >&2; then
    echo "start.sh: azurite does not honour conditional PUTs; refusing to run the suite against it" >&2
    kill "$(cat "$state/azurite.pid")" 2>/dev/null || true
    rm -f "$state/azurite.pid"
    exit 1
fi

cat >"$state/env.sh" <<ENV
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=$endpoint
export ATOMWRITE_AZ_TEST_URL=az://$container/atomwrite-tests
ENV
echo "start.sh: azurite $(node -p "require('$here/node_modules/azurite/package.json').version") on $endpoint (pid $(cat "$state/azurite.pid")), container $container; env in $state/env.sh" >&2
cat "$state/env.sh"
