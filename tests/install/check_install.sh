#!/bin/bash
# check_install.sh BUILD_DIR SOURCE_DIR LIBDIR — what a user does with an
# installed plexus, in a scratch prefix:
#   1. the shared library exports px_ names only;
#   2. the inproc plugin builds from its own source and the installed
#      headers alone (nothing of the source tree on the include path);
#   3. an application builds the same way, loads that plugin through
#      $PX_PLUGIN_DIR and talks over it;
#   4. consumers find it with find_package(plexus) (shared and static) and
#      with pkg-config (shared and --static);
#   5. the installed tools run from the prefix (their RPATH finds the
#      library there).
set -euo pipefail
build=$1
src=$2
libdir_name=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
libdir=$prefix/$libdir_name
cc=${CC:-cc}
flags=(-std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -I"$prefix/include")

cmake --install "$build" --prefix "$prefix" >/dev/null

echo "-- exported symbols of libplexus.so"
# The version node (PLEXUS_0) is an absolute symbol, not a name of ours.
bad=$(nm -D --defined-only "$libdir/libplexus.so" | awk '$2 != "A" && $3 !~ /^px_/ {print $3}')
if [ -n "$bad" ]; then
    echo "libplexus.so exports names outside px_:"
    echo "$bad"
    exit 1
fi
echo "   $(nm -D --defined-only "$libdir/libplexus.so" | awk '$2 != "A"' | wc -l) symbols, all px_"

echo "-- the inproc plugin, from the installed headers"
mkdir "$tmp/plugins"
"$cc" "${flags[@]}" -fPIC -shared -fvisibility=hidden "$src/transports/inproc/inproc.c" \
    -L"$libdir" -lplexus -lpthread -o "$tmp/plugins/libplexus-inproc.so"
exported=$(nm -D --defined-only "$tmp/plugins/libplexus-inproc.so" | awk '{print $3}')
[ "$exported" = "px_transport_plugin_init" ] || {
    echo "the plugin exports: $exported"
    exit 1
}

echo "-- an application over it"
"$cc" "${flags[@]}" "$src/tools/examples/inproc_pair.c" -L"$libdir" -lplexus -lpthread \
    -Wl,-rpath,"$libdir" -o "$tmp/inproc_pair"
PX_PLUGIN_DIR=$tmp/plugins "$tmp/inproc_pair" 1000 4096

# A consumer program, and the two ways a build system finds plexus.
mkdir "$tmp/consumer"
cat >"$tmp/consumer/main.c" <<'C'
#include <plexus/plexus.h>
#include <stdio.h>

int main(void)
{
    px_ctx *ctx;
    if (px_ctx_create(NULL, &ctx) != 0 || px_ctx_run_timeout(ctx, 1) != -PX_ETIMEDOUT ||
        px_ctx_destroy(ctx) != 0)
        return 1;
    printf("plexus %s\n", px_version());
    return 0;
}
C
cat >"$tmp/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(plexus 0.1 REQUIRED)
add_executable(app_shared main.c)
target_link_libraries(app_shared PRIVATE plexus::plexus)
add_executable(app_static main.c)
target_link_libraries(app_static PRIVATE plexus::plexus_static)
CM

echo "-- find_package(plexus): plexus::plexus and plexus::plexus_static"
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/consumer/build/app_shared"
"$tmp/consumer/build/app_static"
if ldd "$tmp/consumer/build/app_static" | grep -q libplexus; then
    echo "app_static is linked against the shared libplexus"
    exit 1
fi

echo "-- pkg-config plexus (shared, and --static)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
"$cc" "${flags[@]}" "$tmp/consumer/main.c" $(pkg-config --cflags --libs plexus) \
    -Wl,-rpath,"$libdir" -o "$tmp/pc_shared"
"$tmp/pc_shared"
static_libs=$(pkg-config --static --libs plexus)
case " $static_libs " in
*" -lev "*) ;;
*)
    echo "pkg-config --static --libs plexus lacks -lev: $static_libs"
    exit 1
    ;;
esac
# shellcheck disable=SC2046
"$cc" "${flags[@]}" "$tmp/consumer/main.c" $(pkg-config --cflags plexus) "$libdir/libplexus.a" \
    $(pkg-config --static --libs-only-other --libs-only-l plexus | sed 's/-lplexus//') \
    -o "$tmp/pc_static"
"$tmp/pc_static"

[ -x "$build/tools/perf/px-perf" ] || exit 0 # built without the tools
echo "-- installed tools run from the prefix"
for t in px-perf px-scale px-info px-plot; do
    [ -x "$prefix/bin/$t" ] || {
        echo "$t is not installed"
        exit 1
    }
done
env -u LD_LIBRARY_PATH "$prefix/bin/px-perf" --help >/dev/null
env -u LD_LIBRARY_PATH "$prefix/bin/px-info" -v >/dev/null
"$prefix/bin/px-perf" local "tcp://127.0.0.1:0" --test lat --iters 200 --quiet >/dev/null
"$prefix/bin/px-plot" --help >/dev/null
echo "   px-perf, px-scale, px-info and px-plot installed and run from $prefix/bin"
