#!/usr/bin/env bash
# px_info_smoke.sh PX_INFO: run px-info (PX_PLUGIN_DIR set by ctest to the
# build's plugin directory) and check a few lines of each section.
set -u
px_info=$1
fail=0
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

expect() { # expect PATTERN WHAT: a line of $out matches the extended regex
    if ! grep -Eq -- "$1" "$out"; then
        echo "FAIL: $2 (no line matching /$1/)"
        fail=1
    fi
}

"$px_info" >"$out" 2>"$err" || { echo "FAIL: px-info exited $?"; fail=1; }
[ -s "$err" ] && { echo "FAIL: px-info wrote to stderr:"; cat "$err"; fail=1; }
expect '^plexus [0-9]+\.[0-9]+\.[0-9]+$' "the version"
expect '^  build type +[A-Za-z]' "the build type"
expect '^  rdma-core ' "whether rdma-core was found"
expect '^  tcp +builtin +tcp +loaded$' "tcp built in and loaded"
expect '^  unix +builtin +tcp +loaded$' "unix served by tcp"
expect '^  shm +builtin +shm +loaded$' "shm built in and loaded"
expect '^  inproc +plugin +inproc +loaded from .*/libplexus-inproc\.so$' "inproc loaded as a plugin"
if grep -q 'rdma:// is built in' "$out"; then
    expect '^  rdma +builtin +rdma +loaded$' "rdma built in and loaded"
    expect '^    eager=' "rdma's eager option"
else
    expect '^  rdma .*not available: .*not built into this plexus' "rdma said to be missing"
fi
expect '^    nodelay=0\|1$' "tcp's nodelay option"
expect '^    sndbuf=' "tcp's sndbuf option"
expect '^    allow_uid=' "shm's allow_uid option"
expect '^    ring=' "shm's ring option"
expect '^    \(takes no options\)$' "inproc takes no options"
expect '^  queue_depth +512 ' "the default queue depth"
expect '^  max_iov +64 +iovecs +16\.\.1024 ' "max_iov's default and range"

# Each section alone.
"$px_info" -v >"$out" || fail=1
expect '^plexus ' "-v: the version"
grep -q 'nodelay' "$out" && { echo "FAIL: -v printed options"; fail=1; }
"$px_info" -o >"$out" || fail=1
expect '^    nodelay=' "-o: the options"
grep -q '^plexus ' "$out" && { echo "FAIL: -o printed the version"; fail=1; }
"$px_info" -t >"$out" || fail=1
expect '^  shm +builtin' "-t: the transports"
"$px_info" -c >"$out" || fail=1
expect '^  keepalive_ms +5000 ' "-c: the keepalive default"
"$px_info" -h >"$out" || fail=1
expect '^usage: px-info' "-h: the usage"

# Without the plugin directory, inproc is said to be missing, and why.
PX_PLUGIN_DIR=/nonexistent-px-plugins "$px_info" -t >"$out" || fail=1
expect '^  inproc +plugin +- +not available: .*libplexus-inproc\.so' "inproc missing, with the reason"

# A bad option: usage on stderr, nothing on stdout, exit 2.
"$px_info" -x >"$out" 2>"$err"
rc=$?
[ "$rc" = 2 ] || { echo "FAIL: px-info -x exited $rc, not 2"; fail=1; }
grep -q '^usage: px-info' "$err" || { echo "FAIL: px-info -x: no usage on stderr"; fail=1; }
[ -s "$out" ] && { echo "FAIL: px-info -x wrote to stdout"; fail=1; }

[ $fail = 0 ] && echo "px-info smoke: ok"
exit $fail
