#!/usr/bin/env bash
# Crash-state exploration (ALICE method) for atomwrite: one command, one summary line.
#   crash-tests/alice/run.sh        -> ... "alice: N passed, M failed", non-zero on failure
# Installs strace (Debian) if missing, builds the atomwrite CLI so the real binary is
# traced (ATOMWRITE_BIN overrides), then runs `cargo test -p atomwrite-alice`.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

if ! command -v strace >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "alice: installing strace" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
    else
        echo "alice: strace missing and cannot be installed here (need root + apt-get)" >&2
    fi
fi

if [ -z "${ATOMWRITE_BIN:-}" ]; then
    if ! cargo build -q -p atomwrite-cli; then
        echo "alice: WARNING: building atomwrite-cli failed; the CLI tests will skip (or fail under CI=true)" >&2
    fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test -p atomwrite-alice -- --nocapture --test-threads=1 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # build error or crash: never report success
fi

echo
echo "---- alice figures (ops recorded, crash states explored, violations per scenario) ----"
grep -E '^(test [a-z_]+ \.\.\. )?alice scenario ' "$log" | sed -E 's/^test [a-z_]+ \.\.\. //'
grep -E '^SKIP ' "$log" || true
echo "alice: ${passed} passed, ${failed} failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
