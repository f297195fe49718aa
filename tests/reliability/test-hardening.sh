#!/usr/bin/env bash
# The unit's exposure score from `systemd-analyze security --offline=true` must be 2.0 or lower,
# and the privileges the issue names must hold as written: its own user, only the bluetooth
# group, nothing writable but its state and cache directories. Exit 77 if this systemd has no
# offline security analysis (before v250).
set -eu
unit=$1
tmp=$(mktemp -d /tmp/fgw-hardening-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

if ! systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
	echo "SKIP: systemd-analyze has no --offline"; exit 77
fi
cp "$unit" "$tmp/fotagw.service"
out=$(systemd-analyze security --offline=true --no-pager "$tmp/fotagw.service" 2>&1) || true
echo "$out" | grep '✗' || true
score=$(echo "$out" | sed -n 's/.*Overall exposure level for fotagw.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score in: $out"
echo "figure: exposure score $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score > 2.0"

key() { sed -n "s/^$1=//p" "$unit"; }
user=$(key User)
[ -n "$user" ] && [ "$user" != root ] || fail "User= must name a service user, not '$user'"
[ "$(key SupplementaryGroups)" = bluetooth ] || fail "SupplementaryGroups= must be bluetooth only"
[ "$(key ProtectSystem)" = strict ] || fail "ProtectSystem=strict needed (/usr, /etc, /var read-only)"
[ "$(key ProtectHome)" = yes ] || fail "ProtectHome=yes needed"
[ "$(key NoNewPrivileges)" = yes ] || fail "NoNewPrivileges=yes needed"
[ -z "$(key CapabilityBoundingSet)" ] && grep -q '^CapabilityBoundingSet=$' "$unit" ||
	fail "CapabilityBoundingSet= must be empty"
for k in ReadWritePaths ReadWriteDirectories BindPaths AmbientCapabilities; do
	[ -z "$(key $k)" ] || fail "$k= widens what the service may write or do"
done
[ "$(key StateDirectory)" = fotagw ] || fail "StateDirectory=fotagw needed"
# The default paths of config/fotagw.conf must sit in what the unit makes writable.
conf=$(dirname "$unit")/../config/fotagw.conf
if [ -f "$conf" ]; then
	db=$(sed -n 's/^path = //p' "$conf")
	cache=$(sed -n 's/^cache_dir = //p' "$conf")
	case "$db" in /var/lib/fotagw/*) ;; *) fail "store.path $db is outside StateDirectory";; esac
	case "$cache" in
	/var/lib/fotagw/*) ;;
	/var/cache/fotagw) [ "$(key CacheDirectory)" = fotagw ] ||
		fail "cache_dir $cache needs CacheDirectory=fotagw";;
	*) fail "cache_dir $cache is not writable under ProtectSystem=strict";;
	esac
fi
echo "hardening: exposure $score <= 2.0, user $user, groups bluetooth, writable: state + cache"
