#!/usr/bin/env bash
# systemd-analyze verify on the unit as shipped. verify also checks that ExecStart exists, and
# fotagwd is not installed on a build machine, so the copy verified here differs from the
# shipped unit in that one path only (pointing at this build); everything else is checked
# as written, and any finding fails the test.
set -eu
src=$1
fotagwd=$2
tmp=$(mktemp -d /tmp/fgw-unit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

grep -q '^ExecStart=/usr/local/sbin/fotagwd ' "$src/systemd/fotagw.service" || {
	echo "ExecStart does not name the installed path /usr/local/sbin/fotagwd"; exit 1; }
sed "s|^ExecStart=/usr/local/sbin/fotagwd |ExecStart=$fotagwd |" \
	"$src/systemd/fotagw.service" >"$tmp/fotagw.service"
if ! out=$(systemd-analyze verify "$tmp/fotagw.service" 2>&1) || [ -n "$out" ]; then
	echo "systemd-analyze verify found problems:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: no findings"
