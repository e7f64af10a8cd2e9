#!/usr/bin/env bash
# deps.sh -- installs the Debian 12 packages Moor builds, tests and
# benchmarks with.  Idempotent: asks dpkg which are missing and runs apt
# only when some are, with a single `apt-get update` first.
#
# Never installs the `luajit` package: it conflicts with luajit2 /
# libluajit2-5.1-dev (the GC64 build we link against), so the install line
# forbids it explicitly in case a dependency would pull it in.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    libluajit2-5.1-dev luajit2
    libuv1-dev libmsgpack-dev libzstd-dev libxxhash-dev
    libcmocka-dev lua-busted lua-socket
    clang-14 libclang-rt-14-dev
    librocksdb-dev libleveldb-dev
    redis-server redis-tools
    python3-msgpack
    chromium python3-pil
    iptables util-linux iproute2
)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; this script expects Debian 12." >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run as root (or with passwordless sudo):" >&2
    echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
"${as_root[@]}" apt-get update
# `luajit-` tells apt to keep luajit off the system (see above).
"${as_root[@]}" apt-get install -y "${missing[@]}" luajit-
