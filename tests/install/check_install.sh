#!/bin/bash
# check_install.sh BUILD_DIR SOURCE_DIR LIBDIR — what a user does with an
# installed plexus, in a scratch prefix:
#   1. the shared library exports px_ names only;
#   2. the inproc plugin builds from its own source and the installed
#      headers alone (nothing of the source tree on the include path);
#   3. an application builds the same way, loads that plugin through
#      $PX_PLUGIN_DIR and talks over it.
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
