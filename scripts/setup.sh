#!/bin/bash
# setup.sh [BUILD_DIR] [cmake args...] — install what plexus needs on Debian 12
# (as root, non-interactively) and build it. Used by demo.sh, test.sh and CI.
# PX_SETUP=demo installs only what a build without tests needs (a compiler,
# CMake, libev); the default, PX_SETUP=test, everything the tests, the
# sanitizers, the fuzzers (clang), the RDMA build, the API reference
# (doxygen) and the ZeroMQ and nng peers of bench/compare.sh (libzmq3-dev,
# libnng-dev: built and smoke-tested here so that they cannot rot) need.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shift || true

case ${PX_SETUP:-test} in
demo) need=(cmake make gcc libev-dev) ;;
test) need=(cmake make gcc pkg-config libev-dev check libibverbs-dev librdmacm-dev clang
      libclang-rt-14-dev python3 doxygen libzmq3-dev libnng-dev) ;;
*) echo "setup.sh: PX_SETUP is demo or test, not '$PX_SETUP'" >&2; exit 2 ;;
esac
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
