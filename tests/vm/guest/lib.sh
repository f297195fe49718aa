# Helpers for guest scenario scripts (tests/vm/guest/*.sh): source this file.
# - vm_log, vm_pass/vm_fail/vm_check, vm_result: one line per check, exit status at the end;
# - vm_bg/vm_stop/vm_stop_all: background processes with a log each in $FGW_VM_LOGS, all
#   stopped at the end (entry.sh calls vm_stop_all when the scenario did not);
# - vm_wait: poll a condition with a bound;
# - bt_up N: the real Bluetooth stack with N virtual controllers, powered, btmon recording.
# shellcheck shell=bash

VM_GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FGW_VM_LOGS=${FGW_VM_LOGS:-${FGW_VM_OUT:-/tmp}/logs}
mkdir -p "$FGW_VM_LOGS"
VM_PIDS=/run/fgw-vm.pids
VM_FAILS=${VM_FAILS:-0}

vm_up() { cut -d' ' -f1 /proc/uptime; }
vm_log() { echo "[$(vm_up)s] $*"; }
vm_pass() { echo "[$(vm_up)s] PASS: $*"; }
vm_fail() {
	echo "[$(vm_up)s] FAIL: $*"
	VM_FAILS=$((VM_FAILS + 1))
}
# vm_check DESCRIPTION CMD...: runs CMD, PASS when it succeeds.
vm_check() {
	local what=$1
	shift
	if "$@"; then vm_pass "$what"; else vm_fail "$what"; fi
}
vm_result() {
	if [ "$VM_FAILS" = 0 ]; then
		vm_log "all checks passed"
		return 0
	fi
	vm_log "$VM_FAILS check(s) failed"
	return 1
}

# vm_bg NAME CMD...: runs CMD in the background, output in $FGW_VM_LOGS/NAME.log; pid in VM_PID.
vm_bg() {
	local name=$1
	shift
	"$@" >"$FGW_VM_LOGS/$name.log" 2>&1 &
	VM_PID=$!
	echo "$VM_PID $name" >>"$VM_PIDS"
}
# vm_stop PID...: SIGTERM, then SIGKILL after 3 s.
vm_stop() {
	local p n
	for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
	for p in "$@"; do
		for n in $(seq 30); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	return 0
}
# Newest first, so that loggers started early (btmon) see the others go.
vm_stop_all() {
	[ -f "$VM_PIDS" ] || return 0
	local pids
	pids=$(tac "$VM_PIDS" | cut -d' ' -f1)
	rm -f "$VM_PIDS"
	# shellcheck disable=SC2086
	vm_stop $pids
}

# vm_wait SECONDS DESCRIPTION CMD...: polls CMD every 0.1 s; logs how long it took.
vm_wait() {
	local limit=$1 what=$2 t0 t
	shift 2
	t0=$(vm_up)
	while ! "$@" >/dev/null 2>&1; do
		t=$(vm_up)
		if [ "$(echo "$t $t0 $limit" | awk '{print ($1 - $2 > $3)}')" = 1 ]; then
			vm_log "timed out after ${limit}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
	vm_log "$what (after $(echo "$(vm_up) $t0" | awk '{printf "%.2f", $1 - $2}')s)"
}

# True once NAME has an owner on the system bus. NameHasOwner, never `busctl status NAME`: the
# latter asks dbus to start NAME through its activation helper, which hangs ~45 s here.
bus_has_name() {
	busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
		NameHasOwner s "$1" 2>/dev/null | grep -q '^b true$'
}
bt_adapter_prop() { # bt_adapter_prop hciN PROPERTY -> busctl's value text
	busctl --system get-property org.bluez "/org/bluez/$1" org.bluez.Adapter1 "$2" 2>/dev/null
}
bt_adapter_addr() { bt_adapter_prop "$1" Address | sed -n 's/^s "\(.*\)"$/\1/p'; }
bt_count_controllers() { # true when at least $1 controllers exist (not "hci0:42" links)
	local f n=0
	for f in /sys/class/bluetooth/hci*; do
		[[ ${f##*/} =~ ^hci[0-9]+$ ]] && n=$((n + 1))
	done
	[ "$n" -ge "$1" ]
}
bt_no_controllers() { ! bt_count_controllers 1; }
bt_all_adapters() { # bt_all_adapters PROPERTY [VALUE]: every adapter in BT_ADAPTERS has it
	local a v
	for a in "${BT_ADAPTERS[@]}"; do
		v=$(bt_adapter_prop "$a" "$1") || return 1
		[ $# -lt 2 ] || [ "$v" = "$2" ] || return 1
	done
}

# The kernel's crypto instances btvirt's emulated controllers bind (AF_ALG), created up front:
# a first bind makes the kernel look for crypto-ecb(aes) etc. through modprobe, slow under
# TCG, and while btvirt waits for that its first controller misses the 2 s HCI Reset timeout.
bt_crypto_warm() {
	python3 -c 'import socket
for kind, alg in (("skcipher", "ecb(aes)"), ("hash", "cmac(aes)")):
    socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0).bind((kind, alg))'
}

# bt_up N: kernel modules, the system D-Bus, bluetoothd (logs/bluetoothd.log, debug on), btmon
# recording everything (logs/btmon.log text, logs/hci.btsnoop), then btvirt with N linked
# virtual controllers (hci0 .. hciN-1), every adapter powered through D-Bus.
# Sets BT_ADAPTERS=(hci0 ...) and BT_ADDR[hciK]. Settings: BT_CONF (main.conf for
# bluetoothd), BT_LE_ONLY=1 (LE-only controllers), BT_WAIT (seconds per step, default 30),
# BT_ATTEMPTS (btvirt starts, default 3), BT_INIT_WAIT (seconds for them to reach bluetoothd).
bt_up() {
	local n=${1:-2} i a w=${BT_WAIT:-30} try
	vm_log "bt-up: $n controllers"
	modprobe -a bluetooth hci_vhci af_alg algif_hash algif_skcipher ecb cmac ||
		{ vm_fail "modprobe of the Bluetooth modules"; return 1; }
	bt_crypto_warm || { vm_fail "AF_ALG ecb(aes)/cmac(aes) (btvirt needs them)"; return 1; }
	vm_log "bt-up: modules loaded"
	mkdir -p /run/dbus /var/lib/bluetooth
	chmod 0700 /var/lib/bluetooth
	vm_bg dbus-daemon dbus-daemon --system --nofork --nopidfile
	vm_wait "$w" "system bus socket" test -S /run/dbus/system_bus_socket || return 1
	# Line-buffered so that the text log is complete even if btmon is killed hard.
	vm_bg btmon stdbuf -oL btmon -w "$FGW_VM_LOGS/hci.btsnoop"
	# bluetoothd first: it picks the controllers up as the kernel announces them.
	vm_bg bluetoothd /usr/libexec/bluetooth/bluetoothd -n -d \
		-f "${BT_CONF:-$VM_GUEST_DIR/main.conf}"
	vm_wait "$w" "org.bluez on the bus" bus_has_name org.bluez || return 1
	BT_ADAPTERS=()
	for ((i = 0; i < n; i++)); do BT_ADAPTERS+=("hci$i"); done
	local lopt=(-l"$n")
	[ "${BT_LE_ONLY:-0}" != 1 ] || lopt=(-L "${lopt[@]}")
	for ((try = 1; ; try++)); do
		vm_bg btvirt btvirt "${lopt[@]}"
		BT_BTVIRT_PID=$VM_PID
		vm_wait "$w" "$n controllers from btvirt" bt_count_controllers "$n" &&
			vm_wait "${BT_INIT_WAIT:-15}" "bluetoothd lists the $n adapters" \
				bt_all_adapters Address && break
		# A controller whose init timed out in the kernel (dmesg: "Opcode 0x.... failed: -110")
		# never reaches bluetoothd: start the controllers again.
		dmesg | grep -E 'Bluetooth: hci[0-9]+: .*failed' | tail -n 3
		if [ "$try" -ge "${BT_ATTEMPTS:-3}" ]; then
			vm_fail "bt-up: controllers not ready after $try btvirt starts"
			return 1
		fi
		vm_log "bt-up: restarting btvirt (attempt $((try + 1)))"
		vm_stop "$BT_BTVIRT_PID"
		vm_wait 10 "controllers gone" bt_no_controllers
	done
	for a in "${BT_ADAPTERS[@]}"; do
		busctl --system set-property org.bluez "/org/bluez/$a" org.bluez.Adapter1 Powered b true ||
			{ vm_fail "power on $a"; return 1; }
	done
	vm_wait "$w" "adapters powered" bt_all_adapters Powered "b true" || return 1
	declare -g -A BT_ADDR=()
	for a in "${BT_ADAPTERS[@]}"; do BT_ADDR[$a]=$(bt_adapter_addr "$a"); done
	vm_log "bt-up: $n controllers powered: $(for a in "${BT_ADAPTERS[@]}"; do printf '%s=%s ' "$a" "${BT_ADDR[$a]}"; done)"
}
