#!/usr/bin/env bash
# Guest side, started by init (chrooted into the overlaid host root, empty environment): loads
# the settings run.sh wrote, runs the scenario script under a bound, stops whatever the
# scenario left running, saves the kernel log and reports the exit status through $OUT/rc.
set -u
OUT=${FGW_VM_OUT:?}
# shellcheck source=/dev/null
if ! source "$OUT/guest.env"; then
	echo "fgw-vm: FAIL: cannot read $OUT/guest.env"
	echo 125 >"$OUT/rc"
	exit 125
fi
export FGW_VM_LOGS=$OUT/logs
mkdir -p "$FGW_VM_LOGS"
up() { cut -d' ' -f1 /proc/uptime; }
read -r _ u0 n0 s0 i0 _ </proc/stat

echo "fgw-vm: script start, uptime $(up)s, kernel $(uname -r), $(nproc) vCPU: $FGW_VM_SCRIPT ${FGW_VM_ARGS[*]}"
cd /tmp || exit 125
# Bounded here too (run.sh's bound is later) so that a stuck scenario still gets its logs out.
timeout -k 5 "$FGW_VM_SCRIPT_TIMEOUT" /bin/bash "$FGW_VM_SCRIPT" "${FGW_VM_ARGS[@]}"
rc=$?
[ $rc != 124 ] || echo "fgw-vm: FAIL: the script ran over ${FGW_VM_SCRIPT_TIMEOUT}s and was stopped"
echo "fgw-vm: script end rc=$rc, uptime $(up)s"

# Processes the scenario started through vm_bg (lib.sh) and did not stop: stop them now, so
# that loggers such as btmon flush their files before poweroff.
if [ -f /run/fgw-vm.pids ]; then
	# shellcheck source=lib.sh
	source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
	vm_stop_all
fi
read -r _ u1 n1 s1 i1 _ </proc/stat
echo "fgw-vm: guest CPU during the script (jiffies, all vCPUs): user $((u1 + n1 - u0 - n0)), sys $((s1 - s0)), idle $((i1 - i0))"
dmesg >"$FGW_VM_LOGS/dmesg.txt" 2>&1
# Crypto self-test failures (seen once under TCG) would silently disable LE Secure Connections.
if grep -E 'alg: .*(failed|fail)' "$FGW_VM_LOGS/dmesg.txt"; then
	echo "fgw-vm: WARNING: a kernel crypto self-test failed in this boot (see logs/dmesg.txt)"
fi
echo $rc >"$OUT/rc"
sync
exit $rc
