#!/usr/bin/env bash
# The object-store suite's `s3b` rows against the second S3 server (s3s-fs), in their own
# process: object_store reads one AWS_ENDPOINT_URL per process, so they cannot share the
# workspace run with moto's `s3` rows. Starts s3s-fs (ci/s3s/start.sh), runs the rows, stops
# it, prints `s3-second: N passed, M failed`. Fails when the server is missing, when a row
# skipped, or when no row ran.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
state="${ATOMWRITE_S3S_STATE:-$repo/target/s3s}"
export ATOMWRITE_S3S_STATE="$state"
trap '"$here/stop.sh"' EXIT

if ! "$here/start.sh" >/dev/null; then
    echo "s3-second: 0 passed, 1 failed (the s3s-fs server did not start)"
    exit 1
fi
unset ATOMWRITE_S3_TEST_URL
# shellcheck disable=SC1091
source "$state/env.sh"

log="$state/test.log"
rc=0
cargo test -p atomwrite --all-features --test object_conformance s3b:: \
    -- --nocapture --test-threads=2 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
# The destination suite's s3b_url rows too (they once stalled on reads: a reader thread reused
# a connection pooled by another runtime's client; fixed in destination/remote.rs).
cargo test -p atomwrite --all-features --test conformance s3b_url:: \
    -- --nocapture --test-threads=2 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
skipped=$(grep -c '^SKIP' "$log" || true)
if [ "$skipped" -ne 0 ]; then
    echo "s3-second: warning: $skipped row(s) skipped although the server was started" >&2
    failed=$((failed + skipped))
fi
if [ "$passed" -eq 0 ]; then failed=$((failed + 1)); fi
refused=$(grep -c '^NOT SUPPORTED ' "$log" || true)
echo "s3-second: $refused row(s) NOT SUPPORTED by this server (its conditional writes are not atomic: ci/s3s/start.sh says why)"
echo "s3-second: $passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
