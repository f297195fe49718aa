#!/usr/bin/env bash
# Real BlueZ test tier, host side: runs GUEST_SCRIPT inside a QEMU guest (software emulation,
# no KVM needed) that boots Debian's own kernel with the host's root filesystem mounted
# read-only (a tmpfs overlay makes it writable, writes are discarded), so the guest has the
# real kernel Bluetooth stack, btvirt and bluetoothd, and the project's binaries run in place.
#
# Everything comes from Debian packages, fetched here when missing: the tools are installed
# with apt-get, the kernel package is only downloaded and unpacked into a cache (nothing goes
# into /boot). The guest's results come back through a writable 9p share, the output dir:
#   console.log   guest console, each line prefixed with host seconds since QEMU start
#   rc            the guest script's exit status
#   logs/         what the guest wrote (btmon.txt, hci.btsnoop, bluetoothd.log, dmesg.txt, ...)
#   summary.txt   phase timings and host CPU cost
# Exit status: the guest script's; 77 when this machine cannot run the tier (not root, or
# packages missing and no apt-get); 124 when the VM hit --timeout; 125 on a harness failure.
set -euo pipefail

usage() {
	cat <<'USAGE'
usage: run.sh [options] GUEST_SCRIPT [ARG...]
  --out DIR        output dir, shared with the guest (default: a new /tmp/fotagw-vm.XXXXXX)
  --cache DIR      kernel + initramfs cache (default: $FGW_VM_CACHE or /var/cache/fotagw-vm)
  --build DIR      the project's build dir, FGW_BUILD_DIR in the guest
  --timeout SEC    bound on the whole VM run (default 600); the guest script gets SEC-45
  --smp N          guest vCPUs (default 2)
  --mem MB         guest RAM (default 1024)
  --env NAME=VAL   exported to the guest script (repeatable)
  --no-install     never run apt-get; fail if a package is missing
  --prepare-only   install packages, fetch the kernel, build the initramfs, then exit
  --systemd        boot Debian's systemd as PID 1 (init-systemd); the script runs as a unit
  --quiet          do not stream the guest console (it is still in console.log)
environment: FGW_VM_CACHE (see --cache), FGW_VM_KERNEL_ARGS (extra kernel command line,
  default cryptomgr.notests=1), FGW_VM_KERNEL_IMAGE (boot this kernel image instead)
USAGE
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=
CACHE=${FGW_VM_CACHE:-/var/cache/fotagw-vm}
BUILD=
TIMEOUT=600
SMP=2
MEM=1024
INSTALL=1
PREPARE_ONLY=0
QUIET=0
SYSTEMD=0
# cryptomgr.notests: the kernel's crypto self-tests cost seconds under TCG (3.4 s for
# ecdh_generic alone, which bluetooth.ko pulls in) and once failed spuriously (ecdh-nist-p256),
# which would disable LE Secure Connections. No test here pairs.
KERNEL_ARGS=${FGW_VM_KERNEL_ARGS-cryptomgr.notests=1}
GUEST_ENV=()

die() {
	echo "run.sh: $*" >&2
	exit 125
}
skip() {
	echo "run.sh: SKIP: $*" >&2
	exit 77
}
say() { echo "run.sh: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--cache) CACHE=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--smp) SMP=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--env)
		[[ $2 == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE, got '$2'"
		GUEST_ENV+=("$2"); shift 2 ;;
	--no-install) INSTALL=0; shift ;;
	--prepare-only) PREPARE_ONLY=1; shift ;;
	--quiet) QUIET=1; shift ;;
	--systemd) SYSTEMD=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) usage >&2; exit 125 ;;
	*) break ;;
	esac
done
if [ $PREPARE_ONLY = 0 ]; then
	[ $# -ge 1 ] || { usage >&2; exit 125; }
	SCRIPT=$(realpath -e "$1") || die "no guest script '$1'"
	shift
	SCRIPT_ARGS=("$@")
fi
if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || [ "$TIMEOUT" -lt 60 ]; then
	die "--timeout must be a number of seconds >= 60"
fi

[ "$(id -u)" = 0 ] || skip "needs root (apt-get, and QEMU exporting / to the guest over 9p)"

# --- 1. Debian packages -------------------------------------------------------------------
# Host: qemu and busybox build and boot the guest, kmod runs depmod. Guest (it runs the host's
# root, so the same installation): the Bluetooth stack and what the scenarios use.
PACKAGES=(qemu-system-x86 busybox-static kmod bluez bluez-test-tools dbus systemd
	python3 python3-dbus python3-gi)
APT_UPDATED=0
apt_update() {
	[ $APT_UPDATED = 1 ] && return 0
	say "apt-get update"
	apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null || die "apt-get update failed"
	APT_UPDATED=1
}
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ $INSTALL = 1 ] || die "missing packages: ${missing[*]} (and --no-install)"
	command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
	apt_update
	say "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
fi

# --- 2. The Debian kernel, unpacked into the cache (never installed) ------------------------
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "cache $CACHE is locked by another run for 15 min"

# Which kernel: the newest one the archive offers for linux-image-amd64 (apt-cache madison lists
# bookworm-security first, then the point release), unless its changelog shows a known
# Bluetooth regression (kernel_known_bad); then the next older one. FGW_VM_KERNEL_PACKAGE
# names one package instead. A rejected package leaves NAME.bad in the cache (with the reason)
# so that it is not fetched again; an accepted one has "checked" in its .ready (an older cache
# without it is fetched again).
kernel_candidates() {
	if [ -n "${FGW_VM_KERNEL_PACKAGE:-}" ]; then
		echo "$FGW_VM_KERNEL_PACKAGE"
		return
	fi
	local v
	for v in $(apt-cache madison linux-image-amd64 2>/dev/null | awk -F' *[|] *' '{print $2}'); do
		apt-cache show "linux-image-amd64=$v" 2>/dev/null |
			sed -n 's/^Depends: \(linux-image-[0-9][^ ]*-amd64\)\( .*\)\?$/\1/p' | head -n1
	done | awk '!seen[$0]++'
}
# kernel_known_bad CHANGELOG.gz: prints why this kernel cannot run the tier, if it cannot.
# Debian 6.1.192 took upstream 6ab54a717189 ("Bluetooth: L2CAP: Fix slab-use-after-free Read in
# l2cap_send_cmd", CVE-2025-21969), which moved hci_chan_del() into l2cap_conn_free(), but not
# its fix ab4eedb790ca ("Bluetooth: L2CAP: Fix corrupted list in hci_chan_del"): when an
# L2CAP socket is released while the link goes down, hci_conn_del() has freed the hci_chan
# already and the last l2cap_conn_put() deletes it again (list_del corruption or a general
# protection fault in hci_chan_del from l2cap_sock_release). vm/pair hit it in 3 of 5 runs.
kernel_known_bad() {
	local log
	log=$(zcat "$1" 2>/dev/null) || return 1
	if grep -q 'Fix slab-use-after-free Read in l2cap_send_cmd' <<<"$log" &&
		! grep -q 'Fix corrupted list in hci_chan_del' <<<"$log"; then
		echo "has upstream 6ab54a717189 without its fix ab4eedb790ca (hci_chan_del use-after-free)"
	fi
}
# kernel_fetch PKG: unpacks PKG into $CACHE/PKG (modules.dep made); 1 if it is known bad.
kernel_fetch() {
	local pkg=$1 root=$CACHE/$1 why kver
	[ "$(cat "$root/.ready" 2>/dev/null)" != checked ] || return 0
	[ ! -f "$root.bad" ] || return 1
	say "fetching $pkg (about 70 MB, once; cached in $CACHE)"
	rm -rf "$root" "$root.tmp" "$CACHE/deb"
	mkdir -p "$CACHE/deb"
	# apt downloads as the unprivileged _apt user when it can write the target dir.
	! id _apt >/dev/null 2>&1 || chown _apt "$CACHE/deb"
	(cd "$CACHE/deb" && apt-get download -qq "$pkg") || {
		apt_update
		(cd "$CACHE/deb" && apt-get download -qq "$pkg") || die "apt-get download $pkg failed"
	}
	dpkg -x "$CACHE"/deb/"$pkg"_*.deb "$root.tmp" || die "dpkg -x of $pkg failed"
	rm -rf "$CACHE/deb"
	why=$(kernel_known_bad "$root.tmp/usr/share/doc/$pkg/changelog.gz")
	if [ -n "$why" ] && [ -z "${FGW_VM_KERNEL_PACKAGE:-}" ]; then
		say "not using $pkg: $why"
		echo "$why" >"$root.bad"
		rm -rf "$root.tmp"
		return 1
	fi
	kver=$(ls "$root.tmp/lib/modules")
	# The .deb ships no modules.dep (the package's postinst makes it): build it here so that
	# modprobe works in the guest and the initramfs can resolve module dependencies.
	depmod -b "$root.tmp" "$kver" || die "depmod for $kver failed"
	rm -rf "$root.tmp/usr/share/doc"
	# forced with FGW_VM_KERNEL_PACKAGE despite a known bug: not "checked" for a later default run
	if [ -n "$why" ]; then echo forced; else echo checked; fi >"$root.tmp/.ready"
	mv "$root.tmp" "$root"
}
CANDIDATES=$(kernel_candidates)
if [ -z "$CANDIDATES" ]; then
	# A machine that never ran apt-get update has no package lists to ask.
	[ $INSTALL = 1 ] || die "apt does not know linux-image-amd64 (and --no-install)"
	apt_update
	CANDIDATES=$(kernel_candidates)
	[ -n "$CANDIDATES" ] || die "cannot find the kernel package linux-image-amd64 depends on"
fi
KPKG=
for k in $CANDIDATES; do
	if kernel_fetch "$k"; then
		KPKG=$k
		break
	fi
done
[ -n "$KPKG" ] || die "every kernel the archive offers is known bad for this tier: $(
	cd "$CACHE" && grep -H . ./*.bad | tr '\n' ' ')"
KROOT=$CACHE/$KPKG
# Kernels of earlier Debian point releases are not needed any more (the .bad notes stay).
find "$CACHE" -maxdepth 1 -name 'linux-image-*' ! -name "$KPKG" ! -name '*.bad' \
	-exec rm -rf {} +
KVER=$(ls "$KROOT/lib/modules")
BZIMAGE=$KROOT/boot/vmlinuz-$KVER
[ -f "$BZIMAGE" ] || die "no $BZIMAGE in the cached kernel package"
# The same kernel unpacked, booted through QEMU's PVH entry: about 5 s faster per boot.
PVH=$KROOT/boot/vmlinux-pvh
if [ ! -f "$PVH" ] && [ ! -f "$PVH.none" ]; then
	if python3 "$HERE/pvh-kernel.py" "$BZIMAGE" "$PVH.tmp"; then
		mv "$PVH.tmp" "$PVH"
	else
		touch "$PVH.none"
	fi
fi
VMLINUZ=$BZIMAGE
[ ! -f "$PVH" ] || VMLINUZ=$PVH
VMLINUZ=${FGW_VM_KERNEL_IMAGE:-$VMLINUZ}

# --- 3. The initramfs, rebuilt when its inputs change --------------------------------------
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
key=$( (echo "$KVER $bbver"; cat "$HERE/init" "$HERE/init-systemd" "$HERE/mkinitramfs.sh") | sha256sum | cut -c1-16)
INITRD=$CACHE/initrd-$key.gz
if [ ! -f "$INITRD" ]; then
	rm -f "$CACHE"/initrd-*.gz
	"$HERE/mkinitramfs.sh" "$KROOT" "$INITRD.tmp" || die "building the initramfs failed"
	mv "$INITRD.tmp" "$INITRD"
fi
exec 9>&-
if [ $PREPARE_ONLY = 1 ]; then
	say "prepared: kernel $KVER in $KROOT, initramfs $INITRD"
	exit 0
fi

# --- 4. The output dir, shared with the guest ---------------------------------------------
if [ -z "$OUT" ]; then
	OUT=$(mktemp -d "${TMPDIR:-/tmp}/fotagw-vm.XXXXXX")
else
	mkdir -p "$OUT"
	OUT=$(realpath "$OUT")
	rm -rf "$OUT/logs" "$OUT/rc" "$OUT/console.log" "$OUT/guest.env" "$OUT/summary.txt"
fi
mkdir -p "$OUT/logs"
# The kernel command line carries these paths: no blanks allowed.
for p in "$OUT" "$SCRIPT" "$HERE" "$KROOT"; do
	[[ $p != *[[:space:]]* ]] || die "path with blanks not supported: '$p'"
done
[ -z "$BUILD" ] || BUILD=$(realpath -e "$BUILD") || die "no build dir '$BUILD'"

# The guest starts with an empty environment: what it needs travels in guest.env.
GUEST_TIMEOUT=$((TIMEOUT - 45))
# systemd's boot before the scenario starts takes 25-100 s under TCG (a loaded host: the latter)
[ $SYSTEMD = 0 ] || GUEST_TIMEOUT=$((GUEST_TIMEOUT - 150))
{
	echo "# written by tests/vm/run.sh, sourced by guest/entry.sh"
	printf 'export FGW_VM_OUT=%q\n' "$OUT"
	printf 'export FGW_VM_DIR=%q\n' "$HERE"
	printf 'export FGW_SOURCE_DIR=%q\n' "$SRC"
	printf 'export FGW_BUILD_DIR=%q\n' "$BUILD"
	printf 'export FGW_VM_HOST_KERNEL=%q\n' "$(uname -r)"
	printf 'export FGW_VM_SCRIPT=%q\n' "$SCRIPT"
	printf 'export FGW_VM_SCRIPT_TIMEOUT=%q\n' "$GUEST_TIMEOUT"
	printf 'FGW_VM_ARGS=('
	[ ${#SCRIPT_ARGS[@]} -eq 0 ] || printf '%q ' "${SCRIPT_ARGS[@]}"
	printf ')\n'
	for kv in "${GUEST_ENV[@]}"; do
		printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
	done
} >"$OUT/guest.env"

# --- 5. Boot ------------------------------------------------------------------------------
say "kernel $KVER ($(basename "$VMLINUZ")), ${SMP} vCPU, ${MEM} MB, timeout ${TIMEOUT}s, output in $OUT"
say "guest script: $SCRIPT ${SCRIPT_ARGS[*]}"
# --systemd: init-systemd switch_roots into systemd, which boots fgw-vm.target (tests/vm/systemd/)
# and runs the scenario as a unit. Masked: host units with no business in the guest that
# basic.target would still pull in (timers: apt, man-db, fstrim...; the host's clock sync).
if [ $SYSTEMD = 1 ]; then
	KERNEL_ARGS+=" rdinit=/init-systemd systemd.unit=fgw-vm.target systemd.show_status=1"
	KERNEL_ARGS+=" systemd.log_color=0 systemd.mask=timers.target"
	KERNEL_ARGS+=" systemd.mask=systemd-timesyncd.service systemd.mask=getty@tty1.service"
	KERNEL_ARGS+=" systemd.mask=serial-getty@ttyS0.service"
fi
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
QEMU=(qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp "$SMP" -m "$MEM"
	-nographic -no-reboot -nic none -kernel "$VMLINUZ" -initrd "$INITRD"
	-append "console=ttyS0 quiet loglevel=4 panic=-1 $KERNEL_ARGS fgwvm.out=$OUT fgwvm.entry=$HERE/guest/entry.sh fgwvm.kmod=$KROOT/lib/modules/$KVER"
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
	-virtfs "local,path=$OUT,mount_tag=fgwout,security_model=none,multidevs=remap")

# Host seconds since QEMU start on each console line, from bash's clock (no fork per line).
stamp() {
	local t0=${EPOCHREALTIME/./} now line
	while IFS= read -r line; do
		now=${EPOCHREALTIME/./}
		printf '%4d.%02d %s\n' $(((now - t0) / 1000000)) $(((now - t0) % 1000000 / 10000)) \
			"${line//$'\r'/}"
	done
}

QPID=
cleanup() {
	# timeout(1) runs QEMU in its own process group: end that group if we are interrupted.
	[ -z "$QPID" ] || kill -TERM -- "-$QPID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=${EPOCHREALTIME/./}
t_before=$(cut -d' ' -f14-17 /proc/$$/stat)
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null > >(stamp >"$OUT/console.log") 2>&1 &
QPID=$!
if [ $QUIET = 0 ]; then
	tail -n +1 -F --pid=$QPID "$OUT/console.log" 2>/dev/null &
	TAILPID=$!
fi
set +e
wait $QPID
qrc=$?
set -e
QPID=
T1=${EPOCHREALTIME/./}
sleep 0.3 # let the stamp process drain
# tail --pid may have gone already: neither may stop the script (set -e)
[ $QUIET = 1 ] || { kill "$TAILPID" 2>/dev/null || true; wait "$TAILPID" 2>/dev/null || true; }
# children's CPU time (utime, stime, cutime, cstime in ticks): QEMU and the stamper
read -r _ _ cu cs <<<"$(cut -d' ' -f14-17 /proc/$$/stat)"
read -r _ _ cu0 cs0 <<<"$t_before"
hz=$(getconf CLK_TCK)

# --- 6. Result ----------------------------------------------------------------------------
if [ -f "$OUT/rc" ]; then
	rc=$(cat "$OUT/rc")
	[[ $rc =~ ^[0-9]+$ ]] || rc=125
elif [ $qrc = 124 ] || [ $qrc = 137 ]; then
	echo "run.sh: FAIL: the VM did not finish within ${TIMEOUT}s (killed)" >&2
	rc=124
else
	echo "run.sh: FAIL: the guest did not report a result (QEMU exit $qrc)" >&2
	rc=125
fi

# Host time of the first console line matching a marker the guest prints.
at() { grep -m1 -- "$1" "$OUT/console.log" 2>/dev/null | awk '{print $1 "s"}'; }
wall=$(((T1 - T0) / 10000))
cpu=$(((cu - cu0 + cs - cs0) * 100 / hz))
{
	echo "kernel:                $KVER (TCG, ${SMP} vCPU, ${MEM} MB)"
	echo "init started:          $(at 'fgw-vm-init: start')"
	echo "guest script started:  $(at 'fgw-vm: script start')"
	echo "bluetooth powered:     $(at 'bt-up: .* powered')"
	echo "guest script ended:    $(at 'fgw-vm: script end')"
	printf 'VM wall time:          %d.%02ds\n' $((wall / 100)) $((wall % 100))
	printf 'host CPU (QEMU):       %d.%02ds (%d%% of one core)\n' $((cpu / 100)) $((cpu % 100)) \
		$((wall > 0 ? cpu * 100 / wall : 0))
	echo "guest script exit:     $rc"
	echo "output:                $OUT"
} >"$OUT/summary.txt"
echo "---- fotagw-vm summary"
cat "$OUT/summary.txt"
if [ "$rc" != 0 ]; then
	for f in bluetoothd.log btmon.txt; do
		[ -s "$OUT/logs/$f" ] || continue
		echo "---- last 40 lines of logs/$f"
		tail -n 40 "$OUT/logs/$f"
	done
	ls -l "$OUT/logs"
fi
exit "$rc"
