#!/usr/bin/env bash
# Coverage-guided fuzzing of atomwrite's parsers with cargo-fuzz (libFuzzer, nightly toolchain).
#
# Usage: crash-tests/fuzz/run.sh [TARGET...]        (default: every target in Cargo.toml)
# Env:   FUZZ_SECONDS  time per target (default 60)
#        FUZZ_TOOLCHAIN  rustup toolchain (default nightly); FUZZ_WORK  scratch dir (default
#        crash-tests/fuzz/work: the grown corpus and logs; the seeds in corpus/ are never modified)
#
# Builds every target (`cargo +nightly fuzz build`: release, debug assertions, AddressSanitizer),
# runs each for FUZZ_SECONDS on its seed corpus plus the corpus grown by earlier runs, and
# prints per target the executions and libFuzzer's final coverage (`cov:` edges, `ft:` features).
# A crash (panic, failed assertion, sanitizer report), a timeout (>10 s on one input) or an
# out-of-memory is a failure; the input is kept in crash-tests/fuzz/artifacts/TARGET/ and the
# command to reproduce it is printed. Needs no terminal and no stdin (CI=true, root are fine).
# Last line: `fuzz: N passed, M failed`; exit status 1 on any failure.
# Needs: rustup toolchain `nightly` and `cargo install cargo-fuzz --locked`.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE" || exit 1
SECS=${FUZZ_SECONDS:-60}
TC=${FUZZ_TOOLCHAIN:-nightly}
WORK=${FUZZ_WORK:-$HERE/work}
# The main workspace's target dir would mix sanitizer and normal builds: keep our own.
unset CARGO_TARGET_DIR
# Rust panics abort under cargo-fuzz; show where.
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

fail_all() { echo "fuzz: $1" >&2; echo "fuzz: 0 passed, 1 failed"; exit 1; }

case $SECS in '' | *[!0-9]*) fail_all "FUZZ_SECONDS must be a number of seconds, not \`$SECS\`" ;; esac
cargo "+$TC" --version >/dev/null 2>&1 ||
  fail_all "no \`$TC\` toolchain (rustup toolchain install $TC)"
cargo "+$TC" fuzz --version >/dev/null 2>&1 ||
  fail_all "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo "+$TC" fuzz list --fuzz-dir . 2>/dev/null)
  [ ${#TARGETS[@]} -gt 0 ] || fail_all "no fuzz targets found"
fi

t0=$(date +%s)
echo "fuzz: building the targets with $(cargo "+$TC" fuzz --version) ($(rustc "+$TC" --version))"
if ! cargo "+$TC" fuzz build --fuzz-dir . </dev/null; then
  fail_all "build failed"
fi
echo "fuzz: build took $(($(date +%s) - t0)) s; ${SECS} s per target"

mkdir -p "$WORK"
pass=0
failed=0
for t in "${TARGETS[@]}"; do
  seeds=$HERE/corpus/$t
  grown=$WORK/corpus/$t
  log=$WORK/$t.log
  if [ ! -d "$seeds" ]; then
    echo "FAIL $t: no seed corpus in corpus/$t"
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$grown" "$HERE/artifacts/$t"
  before=$(find "$HERE/artifacts/$t" -type f | wc -l)
  # New inputs go to the first corpus dir (the scratch copy); the seeds are read only.
  cargo "+$TC" fuzz run --fuzz-dir . "$t" "$grown" "$seeds" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    </dev/null >"$log" 2>&1
  rc=$?
  after=$(find "$HERE/artifacts/$t" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
  corpus=$(find "$grown" -type f | wc -l)
  if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ] && [ -n "$execs" ]; then
    pass=$((pass + 1))
    printf 'ok   %-12s %12s execs  %-22s corpus %s (%s seeds)\n' \
      "$t" "$execs" "${cov:-cov: ? ft: ?}" "$corpus" "$(find "$seeds" -type f | wc -l)"
  else
    failed=$((failed + 1))
    echo "FAIL $t (exit $rc, ${execs:-?} execs, ${cov:-no coverage line}); log: $log"
    grep -E 'panicked at|^==[0-9]+==ERROR|SUMMARY|Test unit written|^Reproduce with|cargo fuzz run' "$log" |
      head -n 12 | sed 's/^/     /'
    sed -n '/^thread .* panicked/,/^note:/p' "$log" | head -n 8 | sed 's/^/     /'
  fi
done
echo "fuzz: total $(($(date +%s) - t0)) s"
echo "fuzz: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
