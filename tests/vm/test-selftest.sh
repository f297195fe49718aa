#!/usr/bin/env bash
# CTest vm/selftest: boots the guest with guest/selftest.sh and checks, from the host, that
# the exit status came back, the share carried a file out, and the guest's writes to the
# host root stayed in the guest. Exit 77 (skip) when run.sh says this machine cannot run VMs.
# usage: test-selftest.sh OUTDIR [BUILD_DIR [FILE_IN_BUILD_DIR]] [run.sh options...]
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$1
BUILD=${2:-}
FILE=${3:-}
shift $(($# < 3 ? $# : 3))
marker=$HERE/.guest-write-test
rm -f "$marker"
opts=(--out "$OUT" --timeout 180 --env 'FGW_VM_SELFTEST=a b$c')
[ -z "$BUILD" ] || opts+=(--build "$BUILD")
args=(3 "two words")
[ -z "$FILE" ] || args+=("$FILE")
"$HERE/run.sh" "${opts[@]}" "$@" "$HERE/guest/selftest.sh" "${args[@]}"
rc=$?
[ $rc != 77 ] || exit 77
fail=0
if [ $rc = 3 ]; then echo "selftest: PASS guest exit status 3 came back"; else
	echo "selftest: FAIL guest exit status: want 3, got $rc"; fail=1; fi
if [ "$(cat "$OUT/from-guest" 2>/dev/null)" = guest ]; then echo "selftest: PASS file from the guest"; else
	echo "selftest: FAIL no file from the guest in $OUT"; fail=1; fi
if [ ! -e "$marker" ]; then echo "selftest: PASS guest writes to the host root stayed in the guest"; else
	echo "selftest: FAIL the guest wrote $marker on the host"; rm -f "$marker"; fail=1; fi
exit $fail
