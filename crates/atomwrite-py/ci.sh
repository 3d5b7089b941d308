#!/usr/bin/env bash
# The Python package's CI: in a venv under the workspace's target dir, pip-installs the package
# (maturin as the PEP 517 backend, building this workspace's library), pytest, mypy, numpy and
# the libraries the benchmark compares against; type-checks the package (stubs included) and a
# typed usage example with `mypy --strict`; runs the pytest suites against the installed
# package. Prints one summary line: "python: N passed, M failed[, K skipped]".
#
# Usage: crates/atomwrite-py/ci.sh [pytest args...]    (PYTHON=python3.X to pick another CPython)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/atomwrite-py-venv
log=$(mktemp -d /tmp/atomwrite-py-ci.XXXXXX)
fail() {
    echo "python: $1"
    echo "python: 0 passed, 1 failed"
    exit 1
}

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv" || fail "cannot create a venv with ${PYTHON:-python3}"
fi
py=$venv/bin/python
"$py" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" pytest mypy numpy \
    atomicwrites==1.4.1 safer || fail "pip could not install the test dependencies"
# The one install command of the README (a fresh build every run: --force-reinstall).
"$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$here" \
    || fail "pip install ./crates/atomwrite-py failed"

rc=0
(cd "$here" && "$venv/bin/mypy" --strict --no-incremental python/atomwrite examples/typed_usage.py) \
    || { echo "mypy: failed"; rc=1; }
(cd /tmp && "$py" "$here/examples/typed_usage.py" >/dev/null) || { echo "typed example: failed"; rc=1; }

# Against the installed package (not python/ in the source tree): run from the tests directory
# with the default rootdir, so only tests/ is on sys.path.
(cd "$here/tests" && "$py" -m pytest -q -p no:cacheprovider --junitxml="$log/junit.xml" "$@" .)
prc=$?
[ "$prc" -eq 0 ] || rc=1
counts=$("$py" - "$log/junit.xml" "$rc" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
    s = root if root.tag == "testsuite" else root.find("testsuite")
    total, failures, errors, skipped = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
except Exception:
    total = failures = errors = skipped = 0
failed = failures + errors
passed = total - failed - skipped
# mypy or the example failing counts as one failure.
if sys.argv[2] != "0" and failed == 0:
    failed = 1
print(f"python: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PYEOF
)
echo "$counts"
exit $rc
