#!/usr/bin/env bash
# Installs the Debian packages fotagw needs to build, test, demo and benchmark.
# Idempotent: asks apt only for what is missing, and runs `apt-get update` only then.
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang git
	libuv1-dev libsystemd-dev libcbor-dev libcurl4-openssl-dev libcjson-dev libsqlite3-dev
	libmicrohttpd-dev libssl-dev libzip-dev libinih-dev libcmocka-dev
	dbus systemd nginx-light sqlite3 python3 zip unzip tmux wrk valgrind curl openssl
	# the status page in a real browser, the alert rules and a real Prometheus (tests/web-it)
	chromium prometheus
)

missing=()
for p in "${packages[@]}"; do
	# "install ok installed" only: a removed-but-configured package does not count.
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
