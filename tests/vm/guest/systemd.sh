#!/usr/bin/env bash
# VM systemd scenario (issue 19): the Debian package under Debian's own systemd (PID 1), the
# system dbus-daemon with the stock bus policy, the stock bluetooth.service, and two
# fotagw-sim --peripheral devices behind the real bluetoothd (btvirt: hci0 for fotagwd, hci1
# and hci2 for the devices). Runs the README's "Install on a gateway" steps as written:
#   apt install ./fotagw_<version>_<arch>.deb, the API token, the config keys,
#   fotagwd --check-config, systemctl restart fotagw
# then checks: the rollout of a signed release ends done on both devices; fotagwd runs as
# user fotagw with group bluetooth inside the unit's sandbox; `systemctl reload` applies a
# reloadable key; after SIGSTOP the watchdog restarts it; `systemctl stop` ends it cleanly;
# the journal shows all of it; `apt purge` removes the state.
# usage (host): tests/vm/run.sh --systemd --build BUILD tests/vm/guest/systemd.sh
#   (BUILD/deb/ holds the package: tests/package, fixture fgw_deb)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
L=$FGW_VM_LOGS
B=${FGW_BUILD_DIR:?the scenario needs --build}
SIM=$B/tests/sim/fotagw-sim
W=/run/fgw-sd
mkdir -p "$W"
arch=$(dpkg --print-architecture)
DEB=$(ls "$B"/deb/fotagw_*_"$arch".deb 2>/dev/null | head -n1)
[ -x "$SIM" ] || { vm_fail "missing $SIM (build first)"; exit 1; }
[ -f "$DEB" ] || { vm_fail "no package in $B/deb (tests/package builds it)"; exit 1; }
since() { awk -v a="$1" -v b="$(vm_up)" 'BEGIN{printf "%.2f", b - a}'; }
unit_prop() { systemctl show -p "$2" --value "$1"; }
main_pid() { unit_prop fotagw.service MainPID; }
journal() { journalctl -b -u fotagw.service -o cat --no-pager; }
journal_has() { journal | grep -q -- "$1"; }

# ---- 1. systemd as PID 1, fully booted -----------------------------------------------------
vm_log "PID 1: $(cat /proc/1/comm) ($(readlink /proc/1/exe)), $(systemctl --version | head -n1)"
vm_check "PID 1 is systemd" test "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd
state=$(timeout 120 systemctl is-system-running --wait 2>&1)
vm_log "boot: is-system-running=$state, fgw-vm.target reached at $(awk -v v="$(unit_prop fgw-vm.target ActiveEnterTimestampMonotonic)" 'BEGIN{printf "%.2f", v / 1e6}')s"
failed=$(systemctl --failed --no-legend --plain --no-pager)
vm_check "system running, no failed units${failed:+: $failed}" \
	bash -c "[ '$state' = running ] && [ -z '$failed' ]"
vm_check "virtualization seen as qemu (not a container)" \
	test "$(systemd-detect-virt 2>/dev/null)" = qemu

# ---- 2. the system bus with the stock policy -------------------------------------------------
vm_check "dbus.service active" test "$(systemctl is-active dbus.service)" = active
# Debian's files as shipped: dpkg --verify lists any changed file of these packages.
changed=$(dpkg --verify bluez dbus dbus-system-bus-common 2>/dev/null | grep -E 'dbus-1|bluetooth.service')
vm_check "stock bus policy files (bluetooth.conf, system.conf) and bluetooth.service unchanged${changed:+: $changed}" \
	test -z "$changed"
# The policy is enforced: only root may own org.bluez (bluetooth.conf), so nobody is refused.
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups busctl --system call \
	org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus RequestName su org.bluez 0 2>&1)
vm_check "the bus refuses org.bluez to user nobody: $out" grep -q 'AccessDenied\|Access denied' <<<"$out"

# ---- 3. Bluetooth: btvirt, and the stock bluetooth.service started by udev --------------------
# No EATT (guest/main.conf says why); the stock unit reads /etc/bluetooth/main.conf.
cp "$VM_GUEST_DIR/main.conf" /etc/bluetooth/main.conf
vm_bg btmon stdbuf -oL btmon -w "$L/hci.btsnoop"
t=$(vm_up)
systemctl start fgw-vm-btvirt.service || vm_fail "fgw-vm-btvirt.service"
vm_wait 60 "3 controllers" bt_count_controllers 3 || vm_fail "controllers from btvirt"
vm_wait 60 "bluetooth.service active (udev -> bluetooth.target)" \
	bash -c '[ "$(systemctl is-active bluetooth.service)" = active ]' ||
	vm_fail "bluetooth.service: $(systemctl status bluetooth.service --no-pager 2>&1 | tail -n 5)"
BT_ADAPTERS=(hci0 hci1 hci2)
vm_wait 60 "bluetoothd lists hci0 hci1 hci2" bt_all_adapters Address || vm_fail "adapters on D-Bus"
for a in "${BT_ADAPTERS[@]}"; do
	busctl --system set-property org.bluez "/org/bluez/$a" org.bluez.Adapter1 Powered b true
done
vm_wait 30 "adapters powered" bt_all_adapters Powered "b true" || vm_fail "power on"
vm_log "bluetooth up in $(since "$t")s: bluetooth.service $(unit_prop bluetooth.service FragmentPath), drop-ins: '$(unit_prop bluetooth.service DropInPaths)'"

# ---- 4. README "Install on a gateway", step 1: the package --------------------------------------
cd "$(dirname "$DEB")" || exit 1
t=$(vm_up)
if DEBIAN_FRONTEND=noninteractive apt install -y "./$(basename "$DEB")" >"$L/apt-install.log" 2>&1; then
	vm_pass "apt install ./$(basename "$DEB") ($(since "$t")s)"
else
	vm_fail "apt install (logs/apt-install.log)"
	tail -n 20 "$L/apt-install.log"
fi
cd /tmp || exit 1
for f in /usr/sbin/fotagwd /usr/bin/fotactl /usr/bin/fotagw-smp; do
	vm_check "installed $f" test -x "$f"
done
vm_check "user fotagw, in group bluetooth (systemd-sysusers from postinst): $(id fotagw 2>&1)" \
	bash -c 'id -nG fotagw | tr " " "\n" | grep -qx bluetooth'
vm_check "conffile /etc/fotagw/fotagw.conf 0640 root:fotagw ($(stat -c '%a %U:%G' /etc/fotagw/fotagw.conf))" \
	test "$(stat -c '%a %U:%G' /etc/fotagw/fotagw.conf)" = "640 root:fotagw"
vm_check "unit enabled by postinst" test "$(systemctl is-enabled fotagw.service)" = enabled
vm_wait 60 "fotagw.service started by postinst" \
	bash -c '[ "$(systemctl is-active fotagw.service)" = active ]' ||
	vm_fail "fotagw.service after install: $(systemctl status fotagw --no-pager 2>&1 | tail -n 8)"

# ---- 5. a signed release and two devices behind the real bluetoothd ---------------------------
# The release, made with the installed fotactl, served as file:// (readable by user fotagw).
REL=/srv/fotagw-release
mkdir -p "$REL"
(
	set -e
	cd "$REL"
	fotactl release keygen -o manifest.pem --public manifest.pub
	fotactl release make-image -o app.bin --image-version 2.0.0 --size 65536 --seed 1
	fotactl release make-image -o net.bin --image-version 2.0.0 --size 32768 --seed 2
	fotactl release make-bundle -o fw-2.0.0.zip --app app.bin --net net.bin
	python3 - <<'PY'
import hashlib, json
data = open("fw-2.0.0.zip", "rb").read()
json.dump({"schema": 1, "sequence": 1, "expires": "2100-01-01T00:00:00Z", "releases": [{
    "id": "fw-2.0.0", "version": "2.0.0",
    "bundle": {"url": "fw-2.0.0.zip", "sha256": hashlib.sha256(data).hexdigest(),
               "size": len(data)},
    "targets": {"board": "nrf5340dk/nrf5340/cpuapp"},
    "policy": {"mode": "test-confirm", "canary_percent": 0, "max_failure_rate": 0.5,
               "max_concurrent": 8}}]}, open("manifest.json", "w"))
PY
	fotactl release sign manifest.json --key manifest.pem
	# fotactl writes bundles 0600; the service (user fotagw) reads them here, as a web
	# server would have to
	chmod 0644 fw-2.0.0.zip
) >"$L/release.log" 2>&1 || vm_fail "signed release with the installed fotactl (logs/release.log)"
install -m 0644 "$REL/manifest.pub" /etc/fotagw/manifest.pub
vm_bg sim "$SIM" --peripheral --adapter hci1,hci2 --state-dir "$W/sim" --log-level info
SIMPID=$VM_PID
vm_wait 60 "both devices advertising" bash -c "[ \$(grep -c 'event: advertising' '$L/sim.log') -ge 2 ]" ||
	vm_fail "fotagw-sim --peripheral (logs/sim.log)"

# ---- 6. README steps 2-4: API token, configuration, check, restart ----------------------------
# conf_set SECTION KEY VALUE: sets the key's line in that section of the shipped file, the
# edit an administrator makes with an editor.
conf_set() {
	local f=/etc/fotagw/fotagw.conf
	awk -v s="[$1]" -v k="$2" -v v="$3" '
		/^\[/ { in_s = ($0 == s) }
		in_s && !done && $0 ~ "^" k " *=" { print k " = " v; done = 1; next }
		{ print }
		END { exit !done }' "$f" >"$f.new" && cat "$f.new" >"$f" && rm -f "$f.new"
}
t=$(vm_up)
(
	set -e
	umask 027
	head -c 32 /dev/urandom | base64 >/etc/fotagw/api-token
	chgrp fotagw /etc/fotagw/api-token
	conf_set api token_file /etc/fotagw/api-token
	conf_set release manifest_url "file://$REL/manifest.json"
	conf_set release trusted_keys /etc/fotagw/manifest.pub
	conf_set ble filter_service false
	conf_set ble name_prefix fotagw-sim-
	# this site: the central is hci0; btvirt reports no RSSI (any threshold drops every advert)
	# and carries one link from the central at a time; TCG is slow to connect and reboot
	conf_set ble adapter hci0
	conf_set ble rssi_threshold 0
	conf_set ble max_connections 1
	conf_set ble connect_timeout_s 40
	conf_set fleet reboot_timeout_s 120
	# poll the manifest every 10 s (each poll logs a debug line: the reload check below)
	conf_set release poll_interval_s 10
	fotagwd --check-config
	systemctl restart fotagw
) >"$L/configure.log" 2>&1 || vm_fail "configure, check, restart (logs/configure.log)"
vm_check "fotagwd --check-config: ok" grep -q '/etc/fotagw/fotagw.conf: ok' "$L/configure.log"
vm_check "config still 0640 root:fotagw after the edit" \
	test "$(stat -c '%a %U:%G' /etc/fotagw/fotagw.conf)" = "640 root:fotagw"
vm_wait 60 "fotagw.service active after restart" \
	bash -c '[ "$(systemctl is-active fotagw.service)" = active ]' || vm_fail "restart"
PID=$(main_pid)

# README step 5: enrol the devices ([fleet] enrollment = allowlist, the default), with the
# installed fotactl and the token file the config names; the API may take a moment to listen.
enroll_both() {
	fotactl devices enroll "$(bt_adapter_addr hci1)" --label sim-hci1 &&
		fotactl devices enroll "$(bt_adapter_addr hci2)" --label sim-hci2
} >>"$L/enroll.log" 2>&1
vm_wait 30 "both devices enrolled" enroll_both || vm_fail "fotactl devices enroll (logs/enroll.log)"

# ---- 7. the rollout, through the real bluetoothd -----------------------------------------------
# fotactl reads [api] of /etc/fotagw/fotagw.conf, as an administrator would.
cat >"$W/states.py" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["devices"]
print(" ".join("%s=%s" % (x["address"], x["state"]) for x in d))
sys.exit(0 if len(d) == 2 and all(x["state"] in ("done", "failed") for x in d) else 1)
PY
devices_done() {
	fotactl --json devices >"$W/devices.json" 2>/dev/null && python3 "$W/states.py" "$W/devices.json"
}
if vm_wait 360 "both jobs ended" devices_done; then
	cp "$W/devices.json" "$L/devices.json"
	states=$(python3 "$W/states.py" "$W/devices.json")
	vm_check "rollout done on both devices: $states" \
		test "$(grep -o '=done' <<<"$states" | wc -l)" = 2
	vm_log "rollout took $(since "$t")s from the restart"
else
	vm_fail "rollout did not end within 360 s: $(tr -d '\n\t' <"$W/devices.json" 2>/dev/null | head -c 600)"
	journal >"$L/fotagw-journal.txt"
	tail -n 30 "$L/fotagw-journal.txt"
fi
vm_check "the same fotagwd did it (no restart meanwhile): MainPID $PID" test "$(main_pid)" = "$PID"
vm_check "sim: device 0 installed 2.0.0" grep -q 'boot-install, device: fotagw-sim-0000' "$L/sim.log"
vm_check "sim: device 1 installed 2.0.0" grep -q 'boot-install, device: fotagw-sim-0001' "$L/sim.log"
vm_check "sim: SMP through bluetoothd's AcquireWrite fd" grep -q 'via AcquireWrite fd' "$L/sim.log"

# ---- 8. who and where fotagwd runs ------------------------------------------------------------
ids=$(ps -o user=,group=,supgrp= -p "$PID")
vm_check "fotagwd runs as user fotagw, group fotagw, supplementary bluetooth: $ids" \
	bash -c "[[ '$ids' =~ ^fotagw\ +fotagw\ +.*bluetooth ]]"
st=/proc/$PID/status
vm_log "sandbox: $(grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' "$st" | tr -s '\t\n' '  ')"
vm_check "sandbox: no new privileges, seccomp filter, no capabilities" bash -c \
	"grep -q '^NoNewPrivs:.1' $st && grep -q '^Seccomp:.2' $st && grep -q '^CapBnd:.0000000000000000' $st"
vm_check "sandbox: own mount namespace" \
	test "$(readlink "/proc/$PID/ns/mnt")" != "$(readlink /proc/1/ns/mnt)"
out=$(nsenter -t "$PID" -m -- touch /etc/fgw-probe 2>&1)
vm_check "sandbox: /etc is read-only in its namespace (ProtectSystem=strict): $out" \
	grep -q 'Read-only file system' <<<"$out"
out=$(nsenter -t "$PID" -m -- touch /var/lib/fotagw/probe 2>&1 && echo writable)
vm_check "sandbox: its StateDirectory is writable: $out" test "$out" = writable
rm -f /var/lib/fotagw/probe

# ---- 9. systemctl reload applies a reloadable key ---------------------------------------------
# [log] level: at debug each manifest poll (every 10 s here) logs its state changes ("release
# source: idle -> ..."); at info, in the minutes of polls so far, it did not.
poll_lines() { journal | grep -qE "release source: |manifest '.*' not modified"; }
no_poll_lines() { ! poll_lines; }
vm_check "at level info, no debug line from the manifest polls" no_poll_lines
conf_set log level debug
systemctl reload fotagw || vm_fail "systemctl reload"
vm_wait 30 "journal: reloaded, 1 key applied" journal_has 'event: reloaded, keys-applied: 1' ||
	vm_fail "reload"
vm_wait 40 "a poll's debug line in the journal after the reload (level debug applied)" \
	poll_lines ||
	vm_fail "[log] level = debug did not take effect"
vm_check "reload kept the process (MainPID $PID)" test "$(main_pid)" = "$PID"

# ---- 10. a hung fotagwd is restarted by the watchdog ------------------------------------------
wd=$(unit_prop fotagw.service WatchdogUSec)
n0=$(unit_prop fotagw.service NRestarts)
kill -STOP "$PID"
t=$(vm_up)
vm_log "SIGSTOP to fotagwd $PID (WatchdogSec=$wd, NRestarts=$n0)"
restarted() {
	local p
	p=$(main_pid)
	[ "$p" != 0 ] && [ "$p" != "$PID" ] && [ "$(systemctl is-active fotagw.service)" = active ]
}
if vm_wait 120 "a new fotagwd after the watchdog" restarted; then
	vm_pass "watchdog: restarted $(since "$t")s after SIGSTOP, MainPID $PID -> $(main_pid), NRestarts $n0 -> $(unit_prop fotagw.service NRestarts)"
else
	vm_fail "no restart within 120 s of SIGSTOP: $(systemctl status fotagw --no-pager 2>&1 | tail -n 8)"
fi
vm_check "journal: watchdog timeout" bash -c \
	"journalctl -b -u fotagw.service -o cat --no-pager | grep -qi 'watchdog timeout'"

# ---- 11. systemctl stop ends it cleanly ----------------------------------------------------------
PID=$(main_pid)
t=$(vm_up)
systemctl stop fotagw || vm_fail "systemctl stop"
res="$(unit_prop fotagw.service Result) code=$(unit_prop fotagw.service ExecMainCode) status=$(unit_prop fotagw.service ExecMainStatus)"
vm_check "stopped in $(since "$t")s: $res (exited, status 0)" test "$res" = "success code=1 status=0"
vm_check "process $PID gone" bash -c "! kill -0 $PID 2>/dev/null"

# ---- 12. the journal tells the story --------------------------------------------------------------
journal >"$L/fotagw-journal.txt"
for e in 'event: started' 'event: reload' 'event: reloaded' 'event: signal, name: Terminated' \
	'event: stopped'; do
	vm_check "journalctl -u fotagw: '$e'" grep -q -- "$e" "$L/fotagw-journal.txt"
done
vm_check "journalctl -u fotagw: both jobs' state changes, to done" \
	test "$(grep -c 'event: job-state, .*to: done' "$L/fotagw-journal.txt")" -ge 2
vm_check "journalctl -u fotagw: systemd's watchdog kill and restart" bash -c \
	"journalctl -b -u fotagw.service --no-pager | grep -qiE 'Scheduled restart job|restart counter'"
vm_stop "$SIMPID"

# ---- 13. purge removes the state ----------------------------------------------------------------
vm_check "state exists before purge" test -d /var/lib/fotagw -a -d /var/cache/fotagw
DEBIAN_FRONTEND=noninteractive apt-get purge -y fotagw >"$L/apt-purge.log" 2>&1 ||
	vm_fail "apt-get purge (logs/apt-purge.log)"
vm_check "purge: /var/lib/fotagw and /var/cache/fotagw gone" \
	test ! -e /var/lib/fotagw -a ! -e /var/cache/fotagw
vm_check "purge: unit gone and not enabled" bash -c \
	"! systemctl cat fotagw.service >/dev/null 2>&1 && [ ! -e /etc/systemd/system/multi-user.target.wants/fotagw.service ]"

# ---- evidence: the real stack carried it -----------------------------------------------------------
vm_stop_all
vm_check "btmon: LE connections and ATT traffic" \
	bash -c "grep -qE 'LE (Enhanced )?Connection Complete' '$L/btmon.log' && grep -q 'ATT: Write Command' '$L/btmon.log'"
journalctl -b -o short-monotonic --no-pager >"$L/journal.txt" 2>&1
journalctl -b -u bluetooth.service -o short-monotonic --no-pager >"$L/bluetoothd.log" 2>&1
vm_result
