#!/usr/bin/env bash
# VM smoke scenario: the real kernel Bluetooth stack and the real bluetoothd on both ends of a
# BLE link between two btvirt controllers. hci1 is a GATT peripheral (SMP service, advertised)
# registered through bluetoothd's D-Bus API; hci0 is the central, driven through the same
# bluetoothd the way fotagw's ble transport drives it. Then the logs must show bluetoothd and
# the controllers handling that connection. Needs only Debian packages.
# usage (host): tests/vm/run.sh tests/vm/guest/smoke.sh [FRAMES]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FRAMES=${1:-20}
L=$FGW_VM_LOGS
ECHO=$VM_GUEST_DIR/gatt-echo.py

bt_up 2 || { vm_fail "Bluetooth stack up"; exit 1; }
periph=hci1
central=hci0

# Both start at once: python3-dbus takes seconds to import under TCG, and the central's
# discovery simply waits for the first advertisement.
vm_bg peripheral python3 -u "$ECHO" peripheral --adapter $periph --name fgw-vm-smoke
vm_log "central on $central"
if timeout 120 python3 -u "$ECHO" central --adapter $central --name fgw-vm-smoke \
	--frames "$FRAMES" --json "$L/smoke-central.json" 2>&1 | tee "$L/central.log"; then
	vm_pass "central: discover, connect, GATT, AcquireWrite/AcquireNotify echo, disconnect"
else
	vm_fail "central (see logs/central.log and logs/peripheral.log)"
fi
vm_check "peripheral: registered and advertised through bluetoothd" \
	grep -q "advertising 'fgw-vm-smoke'" "$L/peripheral.log"

vm_stop_all
# Evidence that the real stack carried the link, not just that the scripts said so.
a_c=${BT_ADDR[$central]}
a_p=${BT_ADDR[$periph]}
vm_check "bluetoothd: $central connected to $a_p (mgmt Device Connected)" \
	grep -q "$central device $a_p connected" "$L/bluetoothd.log"
vm_check "bluetoothd: $periph accepted a connection from $a_c" \
	grep -q "$periph device $a_c connected" "$L/bluetoothd.log"
vm_check "bluetoothd: services of $a_p resolved on $central" \
	grep -q "device_svc_resolved() /org/bluez/$central/dev_${a_p//:/_} err 0" "$L/bluetoothd.log"
vm_check "btmon: LE connection complete on both controllers" \
	test "$(grep -cE 'LE (Enhanced )?Connection Complete \(0x0' "$L/btmon.log")" -ge 2
vm_check "btmon: the kernel told bluetoothd (mgmt Device Connected) on $central" \
	grep -qE "MGMT Event: Device Connected .*\[$central\]" "$L/btmon.log"
vm_check "btmon: the kernel told bluetoothd (mgmt Device Connected) on $periph" \
	grep -qE "MGMT Event: Device Connected .*\[$periph\]" "$L/btmon.log"
vm_check "btmon: ATT write commands" grep -q 'ATT: Write Command' "$L/btmon.log"
vm_check "btmon: ATT notifications" grep -qE 'ATT: Handle (Multiple )?Value Notification' "$L/btmon.log"
vm_check "peripheral: writes reached the application" grep -q 'peripheral: write #' "$L/peripheral.log"
vm_result
