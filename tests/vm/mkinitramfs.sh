#!/usr/bin/env bash
# Builds the guest's initramfs: busybox-static, the few kernel modules needed to reach the
# host's root over virtio-9p and to overlay it (with their dependencies, in load order), and
# tests/vm/init as /init. Everything else the guest loads comes from the host root.
# usage: mkinitramfs.sh KROOT OUT.gz   (KROOT: the kernel .deb unpacked with dpkg -x, depmod run)
set -euo pipefail
KROOT=$1
OUT=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVER=$(ls "$KROOT/lib/modules")
MD=$KROOT/lib/modules/$KVER
WANT=(virtio_pci 9pnet_virtio 9p overlay)

declare -A dep_of=() seen=()
while IFS=: read -r mod deps; do
	dep_of[$mod]=$deps
done <"$MD/modules.dep"
by_name() { # module name -> its path in modules.dep (names use - and _ interchangeably)
	local n=${1//-/_} k
	for k in "${!dep_of[@]}"; do
		local b=${k##*/}
		b=${b%%.ko*}
		[ "${b//-/_}" = "$n" ] && { echo "$k"; return 0; }
	done
	return 1
}
ORDER=()
visit() { # dependencies first, each module once
	local m=$1 d
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	for d in ${dep_of[$m]}; do visit "$d"; done
	ORDER+=("$m")
}
for n in "${WANT[@]}"; do
	if p=$(by_name "$n"); then
		visit "$p"
	elif grep -q "/${n}.ko" "$MD/modules.builtin" 2>/dev/null; then
		continue # built into this kernel
	else
		echo "mkinitramfs: module $n not found for $KVER" >&2
		exit 1
	fi
done

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin" "$T/mod"
cp /bin/busybox "$T/bin/busybox"
: >"$T/mod/order"
for m in "${ORDER[@]}"; do
	f=${m##*/}
	case $f in
	*.ko) cp "$MD/$m" "$T/mod/$f" ;;
	*.ko.xz) xz -dc "$MD/$m" >"$T/mod/${f%.xz}" ;;
	*.ko.zst) zstd -qdc "$MD/$m" >"$T/mod/${f%.zst}" ;;
	*) echo "mkinitramfs: unknown module format $f" >&2; exit 1 ;;
	esac
	echo "${f%%.ko*}.ko" >>"$T/mod/order"
done
install -m 0755 "$HERE/init" "$T/init"
install -m 0755 "$HERE/init-systemd" "$T/init-systemd" # run.sh --systemd
(cd "$T" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$OUT"
echo "mkinitramfs: $OUT, $(stat -c %s "$OUT") bytes, kernel $KVER, modules: $(tr '\n' ' ' <"$T/mod/order")"
