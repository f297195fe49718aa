#!/usr/bin/env bash
# Checks the harness itself, without Bluetooth: arguments and --env values reach the guest
# intact, the host root is visible and writable through the overlay without touching the host,
# /run starts empty, the output dir is shared, the unpacked kernel's modules load, and the exit
# status comes back. Exits with the status given as first argument when every check passed.
# usage (host): run.sh --env 'FGW_VM_SELFTEST=a b$c' guest/selftest.sh RC 'two words' [BUILD_FILE]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
want_rc=${1:?}
vm_check "argument with a blank arrives intact" test "${2:-}" = "two words"
vm_check "--env value arrives intact" test "${FGW_VM_SELFTEST:-}" = 'a b$c'
vm_check "guest.env: source dir is this tree" test -f "$FGW_SOURCE_DIR/tests/vm/run.sh"
[ -z "${3:-}" ] || vm_check "build dir file visible: $3" test -e "$FGW_BUILD_DIR/$3"
vm_check "guest kernel is not the host's" test "$(uname -r)" != "$FGW_VM_HOST_KERNEL"
vm_check "/run starts empty (no host sockets)" test ! -e /run/dbus/system_bus_socket
marker=$FGW_SOURCE_DIR/tests/vm/.guest-write-test
vm_check "host root writable in the guest (overlay)" sh -c "echo x > '$marker'"
echo guest >"$FGW_VM_OUT/from-guest"
vm_check "output dir writable" test -s "$FGW_VM_OUT/from-guest"
vm_check "modprobe of a module from the unpacked kernel" modprobe bluetooth
vm_check "module autoload through init's forwarder (AF_ALG)" \
	python3 -c 'import socket; socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0).bind(("hash", "cmac(aes)"))'
vm_result || exit 1
exit "$want_rc"
