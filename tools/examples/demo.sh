#!/bin/sh
# demo.sh URI [N] — run the examples over one transport:
#   a hello server in the background, hello_client with N requests (default 5),
#   epoll_loop against the same server (N*1000 requests from an epoll loop on
#   px_ctx_fd, interleaved with as many from px_ctx_run, 3 rounds),
#   then the one-way example with N*1000 messages and receipts, then
#   mt_server with 2 threads and mt_client with one session over 2 threads
#   (N*1000 requests each).
#
#   tools/examples/demo.sh tcp://127.0.0.1:7420
#   tools/examples/demo.sh unix:///tmp/plexus-demo.sock
#
# Binaries are looked up next to this script (the copy in the build tree),
# then in $PX_EXAMPLES_DIR, then in build/tools/examples of the source tree.
set -eu

uri=${1:?usage: demo.sh URI [N]}
n=${2:-5}

here=$(cd "$(dirname "$0")" && pwd)
bin=
for d in "$here" "${PX_EXAMPLES_DIR:-}" "$here/../../build/tools/examples"; do
    if [ -n "$d" ] && [ -x "$d/hello_server" ]; then bin=$d; break; fi
done
[ -n "$bin" ] || { echo "demo.sh: examples not built (set PX_EXAMPLES_DIR)" >&2; exit 1; }

out=$(mktemp)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
        sed 's/^/  server: /' "$out"
    fi
}
trap 'stop_server; rm -f "$out"' EXIT INT TERM

# Start "$@" in the background and wait for its "listening on URI" line;
# sets $bound to the URI it really bound (port 0 becomes a real port).
start_server() {
    case $uri in unix://*) [ -S "${uri#unix://}" ] && rm -f "${uri#unix://}" ;; esac
    : >"$out"
    "$@" >"$out" &
    server_pid=$!
    i=0
    until grep -q '^listening on ' "$out"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$server_pid" 2>/dev/null; then
            echo "demo.sh: server did not start" >&2; cat "$out" >&2; exit 1
        fi
        sleep 0.05
    done
    bound=$(sed -n 's/^listening on //p' "$out")
}

echo "== request/reply over $uri"
start_server "$bin/hello_server" "$uri"
"$bin/hello_client" "$bound" "$n"
echo "== the client driven from its own epoll loop over $uri"
"$bin/epoll_loop" "$bound" $((n * 1000)) --rounds 3
stop_server

echo "== one-way messages with receipts over $uri"
start_server "$bin/oneway" server "$uri"
"$bin/oneway" client "$bound" $((n * 1000))
stop_server

echo "== one session over 2 client threads, served by 2 server threads (portals) over $uri"
start_server "$bin/mt_server" "$uri" 2
"$bin/mt_client" "$bound" 2 $((n * 1000))
stop_server
