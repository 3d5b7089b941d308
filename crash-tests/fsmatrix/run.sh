#!/usr/bin/env bash
# Every filesystem: runs the atomwrite and atomwrite-cli integration tests and a short torture
# round on ext4, xfs and btrfs (loop-mounted images) and on tmpfs, with TEST_DIR=<mountpoint>.
# Needs root (skips with a reason otherwise; with CI=true that is a failure).
# Usage: crash-tests/fsmatrix/run.sh [FS...]      (default: ext4 xfs btrfs tmpfs)
# Env: FSMATRIX_KILLS (torture kills per filesystem, default 800), FSMATRIX_SIZE (default 512M).
# Last line: `fsmatrix: N passed, M failed`; exit status 1 on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
KILLS=${FSMATRIX_KILLS:-800}
SIZE=${FSMATRIX_SIZE:-512M}
FILESYSTEMS=("$@")
[ ${#FILESYSTEMS[@]} -eq 0 ] && FILESYSTEMS=(ext4 xfs btrfs tmpfs)
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "fsmatrix: PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "fsmatrix: FAIL $*"; }
finish() { echo "fsmatrix: $PASSED passed, $FAILED failed"; [ "$FAILED" -eq 0 ]; exit $?; }

if [ "$(id -u)" != 0 ]; then
  if [ "${CI:-}" = true ]; then
    fail "needs root for loop mounts and CI=true forbids skipping"
  else
    echo "fsmatrix: SKIP: needs root (loop devices, mount)"
  fi
  finish
fi

need_pkgs=()
command -v mkfs.ext4 >/dev/null || need_pkgs+=(e2fsprogs)
command -v mkfs.xfs >/dev/null || need_pkgs+=(xfsprogs)
command -v mkfs.btrfs >/dev/null || need_pkgs+=(btrfs-progs)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "fsmatrix: installing ${need_pkgs[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || { fail "could not install ${need_pkgs[*]}"; finish; }
fi

WORK=$(mktemp -d /tmp/atomwrite-fsmatrix.XXXXXX)
chmod 0755 "$WORK"
cleanup() {
  for m in "$WORK"/mnt-*; do
    [ -d "$m" ] || continue
    if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  for img in "$WORK"/*.img; do
    [ -e "$img" ] || continue
    for dev in $(losetup -j "$img" -O NAME -n 2>/dev/null); do losetup -d "$dev" 2>/dev/null; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "fsmatrix: building (release binaries, test binaries)"
if ! cargo build --release -q -p atomwrite-cli -p atomwrite-torture >"$WORK/build.log" 2>&1 \
   || ! cargo test -q --no-run --all-features -p atomwrite -p atomwrite-cli --tests >>"$WORK/build.log" 2>&1; then
  tail -30 "$WORK/build.log"
  fail "build"
  finish
fi

for fs in "${FILESYSTEMS[@]}"; do
  mnt="$WORK/mnt-$fs"
  mkdir -p "$mnt"
  case "$fs" in
    tmpfs)
      mount -t tmpfs -o size="$SIZE",mode=0755 tmpfs "$mnt" || { fail "$fs: mount"; continue; } ;;
    ext4|xfs|btrfs)
      img="$WORK/$fs.img"
      truncate -s "$SIZE" "$img"
      case "$fs" in
        ext4) mkfs.ext4 -q -F "$img" ;;
        xfs) mkfs.xfs -q -f "$img" ;;
        btrfs) mkfs.btrfs -q -f "$img" >/dev/null ;;
      esac || { fail "$fs: mkfs"; continue; }
      mount -o loop "$img" "$mnt" || { fail "$fs: mount"; continue; }
      chmod 0755 "$mnt" ;;
    *) fail "$fs: unknown filesystem"; continue ;;
  esac
  actual=$(stat -f -c %T "$mnt")
  echo "fsmatrix: $fs mounted at $mnt (statfs type: $actual)"
  log="$WORK/$fs-tests.log"
  # The object-store rows talk to servers, not to this filesystem: the workspace suite runs them
  # once; here they would only repeat (minutes per filesystem).
  if TEST_DIR="$mnt" cargo test -q --all-features -p atomwrite -p atomwrite-cli --tests -- \
      --skip s3:: --skip s3b:: --skip az:: --skip gs:: --skip s3_url:: --skip s3b_url:: \
      --skip azure_url:: --skip gcs_url:: --skip silent_endpoint --skip unroutable_endpoint \
      >"$log" 2>&1; then
    pass "$fs: integration tests ($(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}') tests)"
  else
    grep -E "^(test .*FAILED|---- |thread .* panicked)" "$log" | head -20
    tail -5 "$log"
    fail "$fs: integration tests"
  fi
  log="$WORK/$fs-torture.log"
  if target/release/torture --dir "$mnt" --kills "$KILLS" --max-len 262144 >"$log" 2>&1; then
    pass "$fs: torture ($(grep -E '^torture: [0-9]+ kills, ' "$log"))"
  else
    grep -E "VIOLATION|torture:" "$log" | head -20
    fail "$fs: torture"
  fi
  leftovers=$(find "$mnt" -mindepth 1 -maxdepth 1 ! -name lost+found | head -5)
  [ -n "$leftovers" ] && echo "fsmatrix: note: $fs left $leftovers"
  umount "$mnt" || umount -l "$mnt"
  [ -e "$WORK/$fs.img" ] && rm -f "$WORK/$fs.img"
done
finish
