#!/usr/bin/env bash
# systemd-analyze verify on the unit as CMake configures it for this build's install prefix.
# verify also checks that ExecStart exists, and fotagwd is not installed on a build machine,
# so the copy verified here differs from the configured unit in that one path only (pointing
# at this build); everything else is checked as written, and any finding fails the test.
# verify runs `man` for each Documentation=man: page, found here in the build tree's man/.
# usage: test-systemd-unit.sh UNIT FOTAGWD SBINDIR MANDIR
set -eu
unit=$1
fotagwd=$2
sbindir=$3
export MANPATH=$4
tmp=$(mktemp -d /tmp/fgw-unit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Manifest expiry is judged against the clock: start only once it is synchronised (#18 item 2).
grep -Eq '^After=.*\btime-sync\.target\b' "$unit" || {
	echo "the unit is not ordered after time-sync.target"; exit 1; }
grep -q "^ExecStart=$sbindir/fotagwd " "$unit" || {
	echo "ExecStart does not name the installed path $sbindir/fotagwd"; exit 1; }
sed "s|^ExecStart=$sbindir/fotagwd |ExecStart=$fotagwd |" "$unit" >"$tmp/fotagw.service"
if ! out=$(systemd-analyze verify "$tmp/fotagw.service" 2>&1) || [ -n "$out" ]; then
	echo "systemd-analyze verify found problems:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: no findings"
