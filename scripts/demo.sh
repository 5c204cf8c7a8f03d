#!/bin/bash
# demo.sh — the main job: set up, build, then a server and client exchanging
# requests and one-way messages over every transport this build has, and a
# short px-perf summary.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${PX_BUILD_DIR:-$src/build}
# Only what the demo needs: no test suite, no sanitizer or fuzzing toolchain.
PX_SETUP=demo "$src/scripts/setup.sh" "$build" -DPX_BUILD_TESTS=OFF

export PX_EXAMPLES_DIR=$build/tools/examples
uris=("tcp://127.0.0.1:0" "unix:///tmp/plexus-demo-$$.sock")
if grep -q px_shm_transport "$src/transports/builtin.h"; then
    uris+=("shm://plexus-demo-$$")
fi
for uri in "${uris[@]}"; do
    echo
    echo "== examples over $uri"
    "$src/tools/examples/demo.sh" "$uri" 5
done

perf=$build/tools/perf/px-perf
if [ -x "$perf" ]; then
    for uri in "${uris[@]}"; do
        echo
        echo "== px-perf over $uri (short run; see docs/PERFORMANCE.md for real measurements)"
        "$perf" local "$uri" --test lat,rate,bw --duration 1 --quiet
    done
fi
