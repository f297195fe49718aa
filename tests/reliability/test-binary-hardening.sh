#!/usr/bin/env bash
# The installed programs are built hardened (issue 18 item 6): position-independent, a
# read-only GOT bound at start (RELRO + BIND_NOW), a non-executable stack, stack protector
# calls, and fortified libc calls. Read from the ELF files themselves with readelf.
# usage: test-binary-hardening.sh BINARY...
set -eu
fail() { echo "FAIL: $*"; exit 1; }
command -v readelf >/dev/null || fail "readelf (binutils) is missing"
[ $# -gt 0 ] || fail "no binary given"
for bin in "$@"; do
	[ -f "$bin" ] || fail "$bin does not exist"
	name=$(basename "$bin")
	hdr=$(readelf -h -W "$bin")
	echo "$hdr" | grep -qE 'Type:[[:space:]]+DYN' || fail "$name is not a PIE"
	prog=$(readelf -l -W "$bin")
	echo "$prog" | grep -q 'GNU_RELRO' || fail "$name has no RELRO segment"
	echo "$prog" | grep -E 'GNU_STACK' | grep -q 'RWE' && fail "$name has an executable stack"
	dyn=$(readelf -d -W "$bin")
	echo "$dyn" | grep -qE 'BIND_NOW|FLAGS.*NOW' || fail "$name is not linked with -z now"
	syms=$(readelf --dyn-syms -W "$bin")
	echo "$syms" | grep -q '__stack_chk_fail' || fail "$name has no stack protector calls"
	fortified=$(echo "$syms" | grep -oE '__[a-z_]+_chk' | grep -v __stack_chk_fail | sort -u |
		wc -l)
	[ "$fortified" -gt 0 ] || fail "$name calls no fortified libc function (_FORTIFY_SOURCE)"
	echo "ok: $name: PIE, RELRO, BIND_NOW, NX stack, stack protector, $fortified fortified calls"
done
