#!/bin/bash
# setup.sh [BUILD_DIR] [cmake args...] — install what plexus needs on Debian 12
# (as root, non-interactively) and build it. Used by demo.sh, test.sh and CI.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shift || true

need=(cmake make gcc pkg-config libev-dev check libibverbs-dev librdmacm-dev clang libclang-rt-14-dev python3)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== building in $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
