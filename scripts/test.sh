#!/bin/bash
# test.sh — set up, then every test: the suite in a normal -Werror build,
# again under AddressSanitizer + UndefinedBehaviorSanitizer, the
# multi-threaded tests (the context, sessions across threads, inproc) under
# ThreadSanitizer, the rdma:// suites in a soft-RoCE guest (rxe-vm.sh: no
# RDMA here otherwise), and short libFuzzer runs of every decoder; first,
# the API reference (Doxygen), which fails on any warning. Fails on the
# first failure.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
root=${PX_TEST_DIR:-$src/build-test}
jobs=$(nproc)

"$src/scripts/setup.sh" "$root/release"
echo "== API reference (doxygen over include/plexus/*.h: any warning fails)"
command -v doxygen >/dev/null || { echo "test.sh: doxygen missing (setup.sh installs it)" >&2; exit 1; }
cmake --build "$root/release" --target docs

echo "== tests (release build)"
ctest --test-dir "$root/release" --output-on-failure -j"$jobs" --timeout 600 -LE rdma

echo "== rdma:// suites in the soft-RoCE guest (scripts/rxe-vm.sh)"
(cd "$root/release" && "$src/scripts/rxe-vm.sh" --timeout 1200 -- \
    ctest -L rdma --output-on-failure --timeout 900)

echo "== tests under ASan + UBSan"
"$src/scripts/setup.sh" "$root/asan" -DCMAKE_BUILD_TYPE=Debug -DPX_SANITIZE=address,undefined \
    -DPX_BUILD_TOOLS=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/asan" --output-on-failure -j"$jobs" --timeout 900 -LE rdma

echo "== multi-threaded tests under ThreadSanitizer"
"$src/scripts/setup.sh" "$root/tsan" -DCMAKE_BUILD_TYPE=Debug -DPX_SANITIZE=thread \
    -DPX_BUILD_TOOLS=OFF
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir "$root/tsan" --output-on-failure -R '^(test_ctx|test_threads|conformance_inproc)$' \
    --timeout 300

echo "== fuzz targets (short bounded runs, clang)"
CC=clang "$src/scripts/setup.sh" "$root/fuzz" -DPX_BUILD_FUZZ=ON -DPX_BUILD_TOOLS=OFF
ctest --test-dir "$root/fuzz" --output-on-failure -R '^fuzz_.*_short$' --timeout 300
