#!/usr/bin/env bash
# Kernel-crash tests for atomwrite in a QEMU virtual machine.
#
# For each filesystem (ext4, xfs, btrfs) and each crash point:
#   1. make a fresh disk image on the host (mkfs.*),
#   2. boot Debian's kernel with our initramfs in "write" mode: the guest
#      writes versions with Durability::Full, reports each committed version
#      on the serial console, and crashes its own kernel (sysrq c),
#   3. boot again in "check" mode: mount (journal recovery), verify the file
#      is one complete version >= the last one reported committed, inspect
#      and clean leftovers.
# A negative control per filesystem (Durability::None, crash right after
# commit) must be caught by the checker, proving the harness can see a loss.
# Each write boot also reports how many FLUSH requests reached QEMU (QMP
# query-blockstats), proving the guest's fsyncs reach the image file.
#
# Usage: crash-tests/vm/run.sh            (as root; see README.md)
# Environment:
#   AWVM_SEED=N         seed for sizes, contents and random crash times
#   AWVM_FS="ext4 xfs btrfs"   filesystems to test
#   AWVM_RANDOM=N       random crash points per filesystem (default 5)
#   AWVM_ACCEL=kvm|tcg  force the accelerator (default: kvm if a probe boot works)
#   AWVM_CACHE=none|writeback   QEMU cache mode (default none, see README)
#   AWVM_TIMEOUT=S      timeout of each boot (default 60 with KVM, 120 with TCG)
#   AWVM_PVH=0          boot /boot/vmlinuz-* instead of its decompressed vmlinux
#   AWVM_GUEST_BIN=PATH use a prebuilt static guest (atomwrite-vm-qmp beside it)
#   AWVM_WORK=DIR       scratch directory (default crash-tests/vm/work)
#   AWVM_KEEP=1         keep disk images of passing points
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${AWVM_WORK:-$HERE/work}
NAME=vm-crash
T0=$(date +%s)

summary() { echo "$NAME: $1 passed, $2 failed"; }

if [ "$(id -u)" != 0 ]; then
	why="needs root: installs its apt packages, reads the kernel in /boot and uses /dev/kvm"
	if [ "${CI:-}" = true ]; then
		echo "$NAME: cannot run: $why (CI=true never skips)" >&2
		summary 0 1
		exit 1
	fi
	echo "$NAME: SKIPPED: $why"
	summary 0 0
	exit 0
fi

die() {
	echo "$NAME: setup failed: $*" >&2
	summary 0 1
	exit 1
}

# ---------------------------------------------------------------- packages
PKGS=(qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs xfsprogs btrfs-progs cpio)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || die "apt-get update"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]}"
fi

# ---------------------------------------------------------------- kernel
KVER=
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
	v=${k#/boot/vmlinuz-}
	if [ -f "/lib/modules/$v/modules.dep" ]; then KVER=$v; break; fi
done
[ -n "$KVER" ] || die "no /boot/vmlinuz-* with matching /lib/modules/*/modules.dep"
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER

mkdir -p "$WORK" || die "mkdir $WORK"
rm -rf "${WORK:?}/runs"
mkdir -p "$WORK/runs"

# Boot the same Debian kernel, pre-decompressed: the bzImage's XZ
# decompressor takes ~5 s per boot under TCG, while QEMU boots the
# uncompressed vmlinux ELF directly through its PVH entry (CONFIG_PVH=y).
# AWVM_PVH=0 boots /boot/vmlinuz-* as is.
BOOTK=$KERNEL
if [ "${AWVM_PVH:-1}" != 0 ] && grep -q '^CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null; then
	VMLINUX=$WORK/vmlinux-$KVER
	if [ ! -s "$VMLINUX" ] || [ "$KERNEL" -nt "$VMLINUX" ]; then
		rm -f "$VMLINUX"
		for tool in xz zstd gzip; do
			case $tool in
			xz) magic=$'\xfd7zXZ' ;;
			zstd) magic=$'\x28\xb5\x2f\xfd' ;;
			gzip) magic=$'\x1f\x8b\x08' ;;
			esac
			off=$(LC_ALL=C grep -abo -F "$magic" "$KERNEL" 2>/dev/null | head -1 | cut -d: -f1)
			[ -n "$off" ] || continue
			tail -c +$((off + 1)) "$KERNEL" | "$tool" -dc 2>/dev/null >"$VMLINUX.tmp"
			if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				mv "$VMLINUX.tmp" "$VMLINUX"
				break
			fi
		done
		rm -f "$VMLINUX.tmp"
	fi
	[ -s "$VMLINUX" ] && BOOTK=$VMLINUX
fi

# ---------------------------------------------------------------- guest
if [ -n "${AWVM_GUEST_BIN:-}" ]; then
	GUEST=$AWVM_GUEST_BIN
else
	echo "== building atomwrite-vm-guest (static)"
	(cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
		CARGO_TARGET_DIR="${CARGO_TARGET_DIR_VM:-$ROOT/target-vm}" \
		cargo build -q --release --target x86_64-unknown-linux-gnu -p atomwrite-vm-guest) ||
		die "cargo build of atomwrite-vm-guest"
	GUEST=${CARGO_TARGET_DIR_VM:-$ROOT/target-vm}/x86_64-unknown-linux-gnu/release/atomwrite-vm-guest
fi
[ -x "$GUEST" ] || die "guest binary $GUEST missing"
QMP=$(dirname "$GUEST")/atomwrite-vm-qmp # host-side QMP client, same crate
[ -x "$QMP" ] || die "QMP helper $QMP missing"

# ---------------------------------------------------------------- modules
# Resolve the modules a filesystem needs, with their dependencies from
# modules.dep and their "pre:" soft dependencies from modules.softdep (crc32c
# for ext4/jbd2/libcrc32c, the checksum algorithms btrfs may use), in load
# order (depth first: every module after all of its dependencies).
declare -A SEEN=()
ORDER=()
norm() { local b=${1##*/}; b=${b%%.ko*}; echo "${b//-/_}"; }
# paths (relative to MODDIR) of the module called NAME
mod_paths() {
	awk -F: -v w="$(norm "$1")" '{ n=$1; sub(/.*\//,"",n); sub(/\.ko.*/,"",n); gsub(/-/,"_",n); if (n==w) print $1 }' "$MODDIR/modules.dep"
}
alias_targets() { awk -v a="$1" '$1=="alias" && $2==a { print $3 }' "$MODDIR/modules.alias"; }
softdeps() {
	awk -v m="$1" '$1=="softdep" && $2==m { pre=0; for (i=3;i<=NF;i++) { if ($i=="pre:") pre=1; else if ($i ~ /:$/) pre=0; else if (pre) print $i } }' "$MODDIR/modules.softdep"
}
add_path() {
	local path=$1 s d
	[ -n "${SEEN[$path]:-}" ] && return 0
	SEEN[$path]=1
	for s in $(softdeps "$(norm "$path")"); do add_name "$s" optional; done
	for d in $(awk -F: -v p="$path" '$1==p { print $2 }' "$MODDIR/modules.dep"); do add_path "$d"; done
	ORDER+=("$path")
}
add_name() {
	local n=$1 p t found=
	for p in $(mod_paths "$n"); do add_path "$p"; found=1; done
	if [ -z "$found" ]; then
		for t in $(alias_targets "$n"); do
			for p in $(mod_paths "$t"); do add_path "$p"; found=1; done
		done
	fi
	if [ -z "$found" ] && [ "${2:-}" != optional ]; then
		grep -q "/$(norm "$n").ko" "$MODDIR/modules.builtin" || die "module $n not found for $KVER"
	fi
	return 0
}

# ---------------------------------------------------------------- initramfs
# One small uncompressed initramfs per filesystem: busybox-static, /init,
# the static guest, and only that filesystem's modules (loading xfs and
# btrfs costs seconds under TCG).
build_initramfs() {
	local fs=$1 ir=$WORK/initramfs-$fs p
	SEEN=()
	ORDER=()
	for p in virtio_pci virtio_blk crc32c_generic crc32c_intel "$fs"; do add_name "$p"; done
	rm -rf "$ir"
	mkdir -p "$ir"/{bin,dev,proc,sys,mnt,tmp,lib/modules} || die "mkdir $ir"
	cp /bin/busybox "$ir/bin/busybox" || die "copy /bin/busybox (busybox-static)"
	cp "$HERE/initramfs/init" "$ir/init" && chmod 755 "$ir/init" || die "copy init"
	cp "$GUEST" "$ir/awvm-guest" && chmod 755 "$ir/awvm-guest" || die "copy guest"
	strip --strip-debug "$ir/awvm-guest" 2>/dev/null || true
	mknod -m 600 "$ir/dev/console" c 5 1 2>/dev/null || true
	: >"$ir/modules.list"
	for p in "${ORDER[@]}"; do
		mkdir -p "$ir/lib/modules/$(dirname "$p")"
		cp "$MODDIR/$p" "$ir/lib/modules/$p" || die "copy $p"
		echo "$p" >>"$ir/modules.list"
	done
	(cd "$ir" && find . | cpio -o -H newc --quiet >"$WORK/initramfs-$fs.cpio") || die "cpio $fs"
	echo "   $fs: ${#ORDER[@]} modules: $(for p in "${ORDER[@]}"; do norm "$p"; done | tr '\n' ' ')"
}
FSLIST=${AWVM_FS:-ext4 xfs btrfs}
echo "== initramfs (kernel $KVER)"
for fs in $FSLIST; do build_initramfs "$fs"; done

# ---------------------------------------------------------------- qemu setup
# qboot (shipped with QEMU) starts a -kernel boot seconds faster than SeaBIOS.
BIOS=()
[ -f /usr/share/qemu/qboot.rom ] && BIOS=(-bios /usr/share/qemu/qboot.rom)

# boot LOG IMG FS APPEND [TIMEOUT [qmp]]: run one VM until it powers off,
# panics (-no-reboot + panic=-1 make QEMU exit) or times out.
# With "qmp", the panic's reboot pauses the VM instead, and the QMP helper
# reads the disk's block statistics (flush count) into LOG.qmp, then quits.
boot() {
	local log=$1 img=$2 fs=$3 append=$4 tmo=${5:-$TMO} rc drive=() qmp=() sock="" qpid
	[ -n "$img" ] && drive=(-drive "file=$img,format=raw,if=none,id=d0,cache=$CACHE,aio=threads"
		-device virtio-blk-pci,drive=d0)
	if [ "${6:-}" = qmp ]; then
		sock=$(mktemp -u /tmp/awvm-qmp.XXXXXX)
		qmp=(-action reboot=shutdown,shutdown=pause -qmp "unix:$sock,server=on,wait=off")
	else
		qmp=(-no-reboot)
	fi
	timeout -k 10 "$tmo" qemu-system-x86_64 -accel "$ACCEL" -cpu "$CPU" -smp 2 -m 512M \
		-nographic "${qmp[@]}" -nodefaults -serial stdio "${BIOS[@]}" \
		-kernel "$BOOTK" -initrd "$WORK/initramfs-$fs.cpio" \
		-append "console=ttyS0 quiet panic=-1 oops=panic printk.devkmsg=on mitigations=off cryptomgr.notests=1 $append" \
		"${drive[@]}" </dev/null >"$log" 2>&1 &
	qpid=$!
	if [ -n "$sock" ]; then
		"$QMP" "$sock" "$tmo" >"$log.qmp" 2>&1 || kill "$qpid" 2>/dev/null
	fi
	wait "$qpid"
	rc=$?
	[ -n "$sock" ] && rm -f "$sock"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $rc -eq 143 ]; then echo "TIMEOUT after ${tmo}s" >>"$log"; fi
	return $rc
}

# KVM only if a real boot works: /dev/kvm may exist yet be unable to run a
# stock kernel (e.g. the PVM nested hypervisor), so probe with a boot.
ACCEL=${AWVM_ACCEL:-}
CACHE=${AWVM_CACHE:-none}
FS1=${FSLIST%% *}
if [ -z "$ACCEL" ]; then
	ACCEL=tcg
	if [ -w /dev/kvm ]; then
		ACCEL=kvm CPU=host
		if boot "$WORK/kvm-probe.log" "" "$FS1" "awvm.mode=probe" 15 && grep -aq 'AWVM PROBE ok' "$WORK/kvm-probe.log"; then
			:
		else
			echo "== /dev/kvm present but a KVM boot failed (see $WORK/kvm-probe.log): using TCG"
			ACCEL=tcg
		fi
	fi
fi
if [ "$ACCEL" = kvm ]; then CPU=host; TMO=${AWVM_TIMEOUT:-60}; else CPU=max; TMO=${AWVM_TIMEOUT:-120}; fi

# cache=none: O_DIRECT on the image, the virtual disk advertises a volatile
# write cache, and every guest FLUSH becomes an fdatasync() of the image.
# Needs O_DIRECT on the host filesystem; otherwise cache=writeback, which
# also turns guest FLUSHes into fdatasync() (never cache=unsafe).
if [ "$CACHE" = none ] && ! dd if=/dev/zero of="$WORK/odirect.probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	echo "== $WORK does not support O_DIRECT: using cache=writeback (flushes still reach the image)"
	CACHE=writeback
fi
rm -f "$WORK/odirect.probe"
echo "== qemu: accel=$ACCEL cache=$CACHE timeout=${TMO}s kernel=$KERNEL (booting $BOOTK) bios=${BIOS[1]:-seabios}"

mkfs_img() {
	local fs=$1 img=$2
	rm -f "$img"
	truncate -s 512M "$img" || return 1
	case $fs in
	ext4) mkfs.ext4 -q -F "$img" ;;
	xfs) mkfs.xfs -q -f "$img" ;;
	btrfs) mkfs.btrfs -q -f "$img" >/dev/null ;;
	*) return 1 ;;
	esac
}

# max N over "AWVM KEY v=N" lines of a serial log (0 if none)
max_v() { grep -a -o "AWVM $2 v=[0-9]*" "$1" | sed 's/.*v=//' | sort -n | tail -1 | grep . || echo 0; }

# ---------------------------------------------------------------- matrix
SEED=${AWVM_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000 + 1))}
NRANDOM=${AWVM_RANDOM:-5}
echo "== seed $SEED (AWVM_SEED=$SEED reproduces sizes, contents and crash times)"
# small LCG so crash times depend only on the seed
LCG=$SEED
lcg() { LCG=$(((LCG * 1103515245 + 12345) % 2147483648)); R=$(((LCG >> 8) % $1)); }

PASS=0
FAIL=0
RETRIES=0
declare -A FS_POINTS=() FS_VIOL=() FS_TIME=()
REPORT=()

# attempt FS DIR SEED CRASH DURABILITY [PATH]: one write boot + one check boot on a
# fresh image. Sets COMMITTED BEGUN CRASHED VERDICT FOUND, and HARNESS (a
# reason) when the run itself went wrong (hang, no crash, no verdict).
attempt() {
	local fs=$1 dir=$2 seed=$3 crash=$4 dur=$5 path=${6:-linux}
	local img="$dir/disk.img" wlog="$dir/write.log" clog="$dir/check.log"
	COMMITTED=0 BEGUN=0 CRASHED= VERDICT= FOUND= HARNESS= FLUSHES=?
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! mkfs_img "$fs" "$img" >"$dir/mkfs.log" 2>&1; then
		HARNESS="mkfs.$fs failed"
		return
	fi
	boot "$wlog" "$img" "$fs" "awvm.mode=write awvm.fs=$fs awvm.seed=$seed awvm.crash=$crash awvm.durability=$dur awvm.path=$path" "$TMO" qmp
	FLUSHES=$(grep -a -o 'flush_operations=[0-9]*' "$wlog.qmp" 2>/dev/null | sed 's/.*=//')
	COMMITTED=$(max_v "$wlog" COMMITTED)
	BEGUN=$(max_v "$wlog" BEGIN)
	CRASHED=$(grep -a -m1 'AWVM CRASH' "$wlog" | sed 's/.*AWVM CRASH //' | tr -d '\r')
	if grep -aq 'AWVM ERROR' "$wlog"; then
		HARNESS="write boot: $(grep -a -m1 'AWVM ERROR' "$wlog" | sed 's/.*AWVM //' | tr -d '\r')"
	elif grep -aq 'TIMEOUT after' "$wlog"; then
		HARNESS="write boot timed out"
	elif [ -z "$CRASHED" ] || ! grep -aqE 'Kernel panic|sysrq: Trigger a crash' "$wlog"; then
		HARNESS="write boot did not crash"
	elif ! grep -aq 'write_cache=write back' "$wlog"; then
		# Without a volatile write cache the guest never sends FLUSH: the
		# fsync -> FLUSH -> fdatasync path would go untested.
		HARNESS="virtual disk does not advertise a write-back cache"
	elif [ -z "$FLUSHES" ]; then
		HARNESS="no block statistics from QMP: $(tr -d '\r' <"$wlog.qmp" 2>/dev/null | tail -1)"
	elif [ "$dur" = full ] && [ "$COMMITTED" -gt 0 ] && [ "$FLUSHES" -eq 0 ]; then
		HARNESS="versions committed with Durability::Full but no FLUSH reached QEMU"
	fi
	[ -n "$HARNESS" ] && return
	boot "$clog" "$img" "$fs" "awvm.mode=check awvm.fs=$fs awvm.seed=$seed awvm.min=$COMMITTED awvm.max=$BEGUN"
	VERDICT=$(grep -a -m1 'AWVM VERDICT' "$clog" | sed 's/.*AWVM VERDICT //' | tr -d '\r')
	FOUND=$(grep -a -m1 'AWVM CHECK ' "$clog" | sed 's/.*AWVM CHECK //; s/ min=.*//' | tr -d '\r')
	local lo
	lo=$(grep -a -o 'leftovers=[0-9]*' "$clog" | head -1)
	[ -n "$lo" ] && FOUND="$FOUND $lo"
	if [ -z "$VERDICT" ]; then
		HARNESS="check boot gave no verdict"
		grep -aq 'TIMEOUT after' "$clog" && HARNESS="$HARNESS (timeout)"
		grep -aq 'AWVM ERROR' "$clog" && HARNESS="$HARNESS: $(grep -a -m1 'AWVM ERROR' "$clog" | sed 's/.*AWVM //' | tr -d '\r')"
	fi
}

# one_point FS LABEL CRASH DURABILITY EXPECT(ok|violation) [PATH(linux|portable)]
# A run that went wrong for harness reasons (a TCG guest hang, say) is
# retried once from a fresh image and reported; a verdict is never retried.
one_point() {
	local fs=$1 label=$2 crash=$3 dur=$4 expect=$5 path=${6:-linux}
	local dir="$WORK/runs/$fs-$label" seed result note=""
	lcg 1000000
	seed=$((SEED * 1000 + R)) # each point writes its own sizes and contents
	attempt "$fs" "$dir" "$seed" "$crash" "$dur" "$path"
	if [ -n "$HARNESS" ]; then
		note=" (retried after: $HARNESS)"
		RETRIES=$((RETRIES + 1))
		mv "$dir" "$dir.try1"
		attempt "$fs" "$dir" "$seed" "$crash" "$dur" "$path"
	fi
	FS_POINTS[$fs]=$((${FS_POINTS[$fs]:-0} + 1))
	if [ -n "$HARNESS" ]; then
		result=FAIL
		FAIL=$((FAIL + 1))
		REPORT+=("$fs-$label: HARNESS FAILURE twice: $HARNESS (logs in $dir)")
	elif [ "$expect" = ok ] && [ "$VERDICT" = OK ]; then
		result=pass
		PASS=$((PASS + 1))
	elif [ "$expect" = violation ] && [ "${VERDICT%% *}" = FAIL ]; then
		result="pass: control loss detected"
		PASS=$((PASS + 1))
	else
		result=FAIL
		FAIL=$((FAIL + 1))
		if [ "$expect" = ok ]; then
			FS_VIOL[$fs]=$((${FS_VIOL[$fs]:-0} + 1))
			REPORT+=("$fs-$label: VIOLATION: $VERDICT (seed $seed; logs and image in $dir)")
		else
			REPORT+=("$fs-$label: CONTROL NOT DETECTED: checker saw no loss with Durability::None ($FOUND)")
		fi
	fi
	[ -n "$note" ] && REPORT+=("$fs-$label: note:$note (first attempt's logs in $dir.try1)")
	printf '  %-16s %-42s committed=%-3s begun=%-3s flushes=%-4s -> %-30s [%s]%s\n' \
		"$label" "${CRASHED:-?}" "$COMMITTED" "$BEGUN" "${FLUSHES:-?}" "${FOUND:-?}" "$result" "$note"
	if [ "${result%%:*}" = pass ] && [ -z "${AWVM_KEEP:-}" ]; then rm -f "$dir/disk.img" "$dir.try1/disk.img"; fi
}

for fs in $FSLIST; do
	t=$(date +%s)
	echo "== $fs"
	one_point "$fs" after-commit-1 after-commit:1 full ok
	one_point "$fs" after-commit-40 after-commit:40 full ok
	one_point "$fs" before-commit-9 before-commit:9 full ok
	one_point "$fs" mid-write-7 mid-write:7 full ok
	for i in $(seq 1 "$NRANDOM"); do
		lcg 3500
		ms=$((R + 300))
		one_point "$fs" "random-$i" "random:$ms" full ok
	done
	# the portable path (named temp + rename) as used off Linux
	one_point "$fs" portable-mid-5 mid-write:5 full ok portable
	lcg 3500
	one_point "$fs" portable-random "random:$((R + 300))" full ok portable
	one_point "$fs" control-none after-commit:30 none violation
	FS_TIME[$fs]=$(($(date +%s) - t))
done

echo "== summary (seed $SEED, accel=$ACCEL, cache=$CACHE, kernel $KVER, $(($(date +%s) - T0))s, $RETRIES harness retries)"
for fs in $FSLIST; do
	echo "  $fs: ${FS_POINTS[$fs]:-0} crash points, ${FS_VIOL[$fs]:-0} violations, ${FS_TIME[$fs]:-0}s"
done
for r in "${REPORT[@]}"; do echo "  $r"; done
summary "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]
