#!/usr/bin/env bash
# Builds the Debian package (debian/) into OUT: fotagw_<version>_<arch>.deb, its -dbgsym
# package, .buildinfo and .changes, then runs lintian on them (exit 1 on any error tag).
# Incremental: the sources are copied into OUT/src with their modification times and the
# CMake tree OUT/obj is kept between runs, so a second run rebuilds only what changed.
# usage: tools/mkdeb.sh [OUT] (default build-deb); env JOBS (default nproc), LINTIAN=0 skips it
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC/build-deb}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

ver_cmake=$(sed -n 's/^project(fotagw VERSION \([0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt")
ver_deb=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
if [ "$ver_cmake" != "$ver_deb" ]; then
	echo "mkdeb: debian/changelog says $ver_deb, CMakeLists.txt project() says $ver_cmake" >&2
	exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

# The source as git sees it (tracked and new files, not ignored ones: no build trees).
rm -rf "$OUT/src"
mkdir -p "$OUT/src"
(cd "$SRC" && git ls-files -z -c -o --exclude-standard | grep -zv '^build' |
	xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	tar -c --null -T - -f -) | tar -x -C "$OUT/src" -f -
rm -f "$OUT"/fotagw_"$ver_deb"_* "$OUT"/fotagw-dbgsym_"$ver_deb"_*
t0=${EPOCHREALTIME/./}
(cd "$OUT/src" && DEB_BUILD_OPTIONS="parallel=$JOBS ${DEB_BUILD_OPTIONS:-}" \
	FGW_DEB_OBJDIR="$OUT/obj" dpkg-buildpackage -b -us -uc -nc --no-pre-clean \
	>"$OUT/build.log" 2>&1) || {
	tail -n 40 "$OUT/build.log" >&2
	echo "mkdeb: dpkg-buildpackage failed (full log: $OUT/build.log)" >&2
	exit 1
}
t1=${EPOCHREALTIME/./}
deb=$OUT/fotagw_${ver_deb}_${arch}.deb
ls -l "$deb" "$OUT"/fotagw-dbgsym_"${ver_deb}"_"${arch}".deb
printf 'mkdeb: dpkg-buildpackage %d.%02ds (JOBS=%s)\n' $(((t1 - t0) / 1000000)) \
	$(((t1 - t0) % 1000000 / 10000)) "$JOBS"
[ "${LINTIAN:-1}" = 1 ] || exit 0
# --fail-on error: warnings are printed but do not fail; overrides carry their reasons in
# debian/fotagw.lintian-overrides.
lintian --fail-on error --info --display-info "$OUT/fotagw_${ver_deb}_${arch}.changes"
echo "mkdeb: lintian: no errors"
