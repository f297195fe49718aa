#!/usr/bin/env bash
# fotagwd --check-config: exit 0 for the shipped example, 2 naming key and line for each kind
# of bad input.
set -u
fotagwd=$1
src=$2
tmp=$(mktemp -d /tmp/fgw-checkconf-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() { # name, expected exit code, text that stderr must contain, config text
	local name=$1 code=$2 needle=$3
	printf '%b' "$4" >"$tmp/$name.conf"
	"$fotagwd" --config "$tmp/$name.conf" --check-config >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ "$rc" -ne "$code" ] || { [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; }; then
		echo "FAIL $name: exit $rc (want $code), stderr:"; cat "$tmp/err"
		fails=$((fails + 1))
	else
		echo "ok   $name: exit $rc, $(grep -F -- "$needle" "$tmp/err" | head -1)"
	fi
}

"$fotagwd" --config "$src/config/fotagw.conf" --check-config >"$tmp/out" 2>"$tmp/err" \
	|| { echo "FAIL example config refused:"; cat "$tmp/err"; fails=$((fails + 1)); }
expect good 0 "" '[store]\npath = /tmp/x.db\n'
expect unknown-key 2 "unknown-key.conf:3: unknown key 'pathh' in section [store]" \
	'[store]\npath = /tmp/x.db\npathh = 1\n'
expect unknown-section 2 "unknown-section.conf:2: unknown section [stor]" '[stor]\npath = x\n'
expect bad-value 2 "bad-value.conf:3: bad value 'soon' for 'store.busy_timeout_ms'" \
	'[store]\npath = /tmp/x.db\nbusy_timeout_ms = soon\n'
expect bad-level 2 "bad-level.conf:2: bad value 'chatty' for 'log.level'" \
	'[log]\nlevel = chatty\n[store]\npath = /tmp/x.db\n'
expect missing 2 "missing required key 'path' in section [store]" '[log]\nlevel = info\n'
expect syntax 2 "syntax.conf:2: syntax error" '[store]\nnot a key value line\npath = /x\n'
"$fotagwd" --config "$tmp/does-not-exist.conf" --check-config 2>"$tmp/err"
[ $? -eq 2 ] || { echo "FAIL missing file not exit 2"; fails=$((fails + 1)); }
"$fotagwd" --bogus 2>/dev/null
[ $? -eq 2 ] || { echo "FAIL bad option not exit 2"; fails=$((fails + 1)); }

[ "$fails" -eq 0 ] && echo "check-config: all cases ok"
exit "$fails"
