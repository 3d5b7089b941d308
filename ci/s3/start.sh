#!/usr/bin/env bash
# Start a local S3-compatible server (moto) on 127.0.0.1 for the object-store tests.
#
#   ci/s3/start.sh            # installs moto[server] into a venv if needed, starts it,
#                             # creates the bucket, checks conditional PUTs, and writes
#                             # $STATE/env.sh (source it) — also printed on stdout.
# Env knobs: ATOMWRITE_MOTO_VENV (default /opt/atomwrite-moto), ATOMWRITE_S3_PORT
# (default: a free port), ATOMWRITE_S3_STATE (default target/s3 in the repo),
# ATOMWRITE_S3_BUCKET (default atomwrite-test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${ATOMWRITE_MOTO_VENV:-/opt/atomwrite-moto}"
state="${ATOMWRITE_S3_STATE:-$repo/target/s3}"
bucket="${ATOMWRITE_S3_BUCKET:-atomwrite-test}"
mkdir -p "$state"

if [ -f "$state/moto.pid" ] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
    echo "start.sh: moto already running (pid $(cat "$state/moto.pid")); stop it with ci/s3/stop.sh" >&2
    cat "$state/env.sh"
    exit 0
fi

if [ ! -x "$venv/bin/moto_server" ]; then
    echo "start.sh: installing moto[server] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi

port="${ATOMWRITE_S3_PORT:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
endpoint="http://127.0.0.1:$port"

"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
echo $! >"$state/moto.pid"

export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
       AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ALLOW_HTTP=true
up=""
for _ in $(seq 1 120); do
    if "$venv/bin/python" - "$endpoint" <<'PY' 2>/dev/null; then up=1; break; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=1).read()
PY
    if ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then break; fi
    sleep 0.5
done
if [ -z "$up" ]; then
    echo "start.sh: moto did not answer on $endpoint; log:" >&2
    cat "$state/moto.log" >&2
    kill "$(cat "$state/moto.pid")" 2>/dev/null || true
    rm -f "$state/moto.pid"
    exit 1
fi

"$venv/bin/python" - "$bucket" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
try:
    s3.create_bucket(Bucket=sys.argv[1])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY
"$venv/bin/python" "$here/check_conditional.py" "$bucket" >&2

cat >"$state/env.sh" <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export ATOMWRITE_S3_TEST_URL=s3://$bucket/atomwrite-tests
ENV
echo "start.sh: moto on $endpoint (pid $(cat "$state/moto.pid")), bucket $bucket; env in $state/env.sh" >&2
cat "$state/env.sh"
