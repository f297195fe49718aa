#!/usr/bin/env bash
# Builds the Debian package with tools/mkdeb.sh (lintian included: no error allowed), then
# checks the .deb against issue 19: installed paths, the unit's ExecStart, the conffile and
# its mode set in postinst, the maintainer scripts (user, enable/start, purge), man pages that
# render, and bash completions that complete.
# usage: test-deb.sh SOURCE_DIR OUT_DIR
set -uo pipefail
SRC=$1
OUT=$2
fails=0
ok() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

for t in dpkg-buildpackage lintian scdoc fakeroot; do
	command -v $t >/dev/null || { echo "FAIL: $t is not installed (tools/deps.sh)"; exit 1; }
done
"$SRC/tools/mkdeb.sh" "$OUT" || { echo "FAIL: tools/mkdeb.sh (build or lintian)"; exit 1; }
ver=$(sed -n 's/^project(fotagw VERSION \([0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt")
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$OUT/fotagw_${ver}_${arch}.deb
check "package named after the project version: $(basename "$deb")" test -f "$deb"
check "dbgsym package" test -f "$OUT/fotagw-dbgsym_${ver}_${arch}.deb"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
dpkg-deb -x "$deb" "$T/root"
dpkg-deb -e "$deb" "$T/ctl"
dpkg-deb -c "$deb" >"$T/list"
for f in /usr/sbin/fotagwd /usr/bin/fotactl /usr/bin/fotagw-smp; do
	check "$f executable" test -x "$T/root$f"
done
for f in /usr/lib/systemd/system/fotagw.service /usr/lib/sysusers.d/fotagw.conf \
	/usr/lib/tmpfiles.d/fotagw.conf /etc/fotagw/fotagw.conf \
	/usr/share/man/man8/fotagwd.8.gz /usr/share/man/man1/fotactl.1.gz \
	/usr/share/man/man1/fotagw-smp.1.gz /usr/share/man/man5/fotagw.conf.5.gz \
	/usr/share/bash-completion/completions/fotactl \
	/usr/share/bash-completion/completions/fotagw-smp; do
	check "ships $f" test -f "$T/root$f"
done
check "nothing from the test tree (no fotagw-sim)" bash -c "! grep -q fotagw-sim '$T/list'"
check "nothing under /lib or /usr/local" bash -c "! grep -qE '\./(lib|usr/local)/' '$T/list'"
check "unit: ExecStart=/usr/sbin/fotagwd --config /etc/fotagw/fotagw.conf" \
	grep -qx 'ExecStart=/usr/sbin/fotagwd --config /etc/fotagw/fotagw.conf' \
	"$T/root/usr/lib/systemd/system/fotagw.service"
check "the shipped fotagwd accepts the shipped config (--check-config)" \
	"$T/root/usr/sbin/fotagwd" --config "$T/root/etc/fotagw/fotagw.conf" --check-config
check "--version of the shipped programs says $ver" bash -c \
	"'$T/root/usr/sbin/fotagwd' --version | grep -qx 'fotagwd $ver' &&
	 '$T/root/usr/bin/fotactl' --version | grep -qx 'fotactl $ver'"
check "conffiles: /etc/fotagw/fotagw.conf" grep -qx /etc/fotagw/fotagw.conf "$T/ctl/conffiles"
check "postinst: conffile 0640 root:fotagw after systemd-sysusers, before the unit starts" \
	python3 - "$T/ctl/postinst" <<'PY'
import sys
s = open(sys.argv[1]).read()
i = [s.find(x) for x in ("systemd-sysusers fotagw.conf", "chown root:fotagw /etc/fotagw/fotagw.conf",
                         "chmod 0640 /etc/fotagw/fotagw.conf", "deb-systemd-helper enable 'fotagw.service'",
                         "deb-systemd-invoke $_dh_action 'fotagw.service'")]
sys.exit(0 if min(i) >= 0 and i == sorted(i) else 1)
PY
check "postinst: tmpfiles" grep -q 'systemd-tmpfiles .*--create fotagw.conf' "$T/ctl/postinst"
check "prerm: stops the unit on removal" grep -q "deb-systemd-invoke stop 'fotagw.service'" "$T/ctl/prerm"
check "postrm purge: removes the state and the cache" \
	grep -q 'rm -rf /var/lib/fotagw /var/cache/fotagw' "$T/ctl/postrm"
check "postrm purge: disables the unit" grep -q "deb-systemd-helper purge 'fotagw.service'" "$T/ctl/postrm"
check "Depends: systemd-sysusers provider" bash -c "dpkg-deb -f '$deb' Depends | grep -q 'systemd-sysusers'"
for m in man8/fotagwd.8 man1/fotactl.1 man1/fotagw-smp.1 man5/fotagw.conf.5; do
	# groff warnings (-ww) on stderr mean a page scdoc rendered badly
	out=$(MANWIDTH=80 man --warnings=w -l "$T/root/usr/share/man/$m.gz" 2>&1 >"$T/page") ||
		out="man failed: $out"
	check "man $m renders without warnings, NAME and SYNOPSIS present" bash -c \
		"[ -z \"\$1\" ] && grep -q '^NAME' '$T/page' && grep -q '^SYNOPSIS' '$T/page'" _ "$out"
	[ -z "$out" ] || echo "$out" | head -5
done
# Completion: load bash-completion and ours, then ask for words the way bash would.
complete_words() { # PROGRAM WORDS... -> the candidates for the last word
	local prog=$1
	shift
	bash -c 'source /usr/share/bash-completion/bash_completion
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		fn=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
		"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"' _ \
		"$T/root/usr/share/bash-completion/completions/$prog" "$prog" "$@"
}
check "completion: fotactl rel<TAB> -> release releases" \
	test "$(complete_words fotactl rel | sort | tr '\n' ' ')" = "release releases "
check "completion: fotactl release make-b<TAB> -> make-bundle" \
	test "$(complete_words fotactl release make-b)" = make-bundle
check "completion: fotactl release make-bundle --a<TAB> -> --app --app-board --app-file" \
	test "$(complete_words fotactl release make-bundle --a | sort | tr '\n' ' ')" = "--app --app-board --app-file "
check "completion: fotagw-smp image <TAB> lists the image subcommands" \
	test "$(complete_words fotagw-smp image '' | sort | tr '\n' ' ')" = "confirm erase list slots test upload "
check "completion: fotagw-smp --transport ble:X sc<TAB> -> scan" \
	test "$(complete_words fotagw-smp --transport ble:X sc)" = scan
if [ $fails = 0 ]; then echo "package: all checks passed"; exit 0; fi
echo "package: $fails check(s) failed"
exit 1
