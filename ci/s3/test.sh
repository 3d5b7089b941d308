#!/usr/bin/env bash
# One command for the object-store suite: start moto on loopback, run the
# atomwrite object-store tests (memory://, file://, s3:// conformance + unit),
# stop moto, print `object-store: N passed, M failed`, exit non-zero on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
state="${ATOMWRITE_S3_STATE:-$repo/target/s3}"
export ATOMWRITE_S3_STATE="$state"
trap '"$here/stop.sh"' EXIT

if ! "$here/start.sh" >/dev/null; then
    echo "object-store: 0 passed, 1 failed (the S3 server did not start)"
    exit 1
fi
# shellcheck disable=SC1091
source "$state/env.sh"

log="$state/test.log"
cargo test -p atomwrite --features object-store,aws,gcp,azure --test object_conformance --test object_blocking --lib -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
passed=${passed:-0}
failed=${failed:-0}
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
skipped=$(grep -c '^SKIP ' "$log" || true)
if [ "$skipped" -ne 0 ]; then
    echo "object-store: warning: $skipped S3 test(s) skipped although the server was started" >&2
    failed=$((failed + skipped))
fi
echo "object-store: $passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
