#!/bin/bash
# icount.sh — instructions per message, per side, by callgrind.
#
#   bench/icount.sh [--build DIR] [--uris "tcp unix shm"] [--tests "lat rr oneway"]
#                   [--size BYTES] [--iters N1,N2] [--side client|server|both]
#                   [--repeat R]
#
# For each transport and test, one side runs px-perf under callgrind while
# the other runs natively, twice: N1 and N2 operations (--iters, --warmup
# 0). The difference of the two instruction totals over N2 - N1 is the
# cost of one operation with start-up, connection set-up and teardown
# cancelled out. An operation is what px-perf counts: a round trip for
# lat, one windowed request and its reply for rr, one message for oneway.
#
# Instruction counts do not move with the machine's fast and slow states,
# so these are the regression guard; timings are compare.sh's business.
# One thing does move them: a side that waits for its peer polls, and how
# many polls it makes depends on timing (shm lat, where both sides wait in
# turn, varies by up to a third between runs). With --repeat R (default 3)
# each figure is the median of R measurements, printed with their range
# when that is over 2 %.
# Needs valgrind (apt-get install valgrind) and a px-perf built with
# -DPX_BUILD_TOOLS=ON (a Release build is what the figures in
# docs/PERFORMANCE.md are from).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build
uris="tcp unix shm"
tests="lat rr oneway"
size=64
iters=20000,120000
side=both
repeat=3

while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --uris) uris=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --side) side=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "icount.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done

perf=$build/tools/perf/px-perf
[ -x "$perf" ] || { echo "icount.sh: no $perf (build with -DPX_BUILD_TOOLS=ON)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "icount.sh: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
n1=${iters%,*}
n2=${iters#*,}
case $side in client | server | both) ;; *) echo "icount.sh: --side client|server|both" >&2; exit 2 ;; esac
[ "$n2" -gt "$n1" ] 2>/dev/null || { echo "icount.sh: --iters N1,N2 with N2 > N1" >&2; exit 2; }
[ "$repeat" -ge 1 ] 2>/dev/null || { echo "icount.sh: --repeat R with R >= 1" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

uri_for() {
    case $1 in
    tcp) echo "tcp://127.0.0.1:0" ;;
    unix) echo "unix://$work/icount.sock" ;;
    shm) echo "shm://px-icount-$$" ;;
    *) echo "$1" ;; # a whole URI
    esac
}

callgrind() { # OUT CMD...: run CMD under callgrind, its output file OUT
    local out=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$out.log"
}

total_ir() { # callgrind output file -> total instructions
    awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

# Start a px-perf server (maybe under callgrind: $1 = output file) and set
# $bound to the URI it listens on.
start_server() {
    local cg=$1 uri=$2
    local log=$work/server.out
    : >"$log"
    if [ -n "$cg" ]; then
        valgrind --tool=callgrind --callgrind-out-file="$cg" "$perf" server "$uri" --quiet \
            >"$log" 2>"$cg.log" &
    else
        "$perf" server "$uri" --quiet >"$log" 2>"$work/server.err" &
    fi
    server_pid=$!
    for _ in $(seq 600); do
        bound=$(sed -n 's/^px-perf server listening on //p' "$log")
        [ -n "$bound" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "icount.sh: the server did not start on $uri" >&2
    cat "$log" "$work/server.err" "$cg.log" 2>/dev/null >&2 || true
    exit 1
}

stop_server() {
    kill -INT "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

client_args() { # TEST N
    echo "--test $1 --sizes $size --iters $2 --warmup 0 --quiet --cpu -1"
}

# Instructions of one side for N operations.
measure() { # SIDE URI TEST N
    local what=$1 uri=$2 t=$3 n=$4 out=$work/cg.$1.$3.$4
    if [ "$what" = client ]; then
        start_server "" "$uri"
        # shellcheck disable=SC2046
        callgrind "$out" "$perf" client "$bound" $(client_args "$t" "$n")
        stop_server
    else
        start_server "$out" "$uri"
        # shellcheck disable=SC2046
        "$perf" client "$bound" $(client_args "$t" "$n") >/dev/null
        stop_server
    fi
    local ir
    ir=$(total_ir "$out")
    [ -n "$ir" ] || { echo "icount.sh: no callgrind total in $out" >&2; cat "$out.log" >&2; exit 1; }
    echo "$ir"
}

one_op() { # SIDE URI TEST: one differenced measurement
    local a b
    a=$(measure "$1" "$2" "$3" "$n1")
    b=$(measure "$1" "$2" "$3" "$n2")
    awk -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" 'BEGIN {printf "%.0f\n", (b - a) / (n2 - n1)}'
}

per_op() { # SIDE URI TEST: the median of $repeat, with the range if it is wide
    for _ in $(seq "$repeat"); do one_op "$@"; done | sort -n | awk '
        { v[NR] = $1 }
        END {
            m = v[int((NR + 1) / 2)]
            if (NR > 1 && m > 0 && (v[NR] - v[1]) / m > 0.02)
                printf "%d (%d-%d)", m, v[1], v[NR]
            else
                printf "%d", m
        }'
}

sides="client server"
[ "$side" = both ] || sides=$side
echo "# instructions per operation (callgrind, ${size} B, $n1 vs $n2 operations differenced, median of $repeat)"
echo "# px-perf: $perf"
printf '%-8s %-8s' transport test
for s in $sides; do printf ' %18s' "$s"; done
echo
for u in $uris; do
    uri=$(uri_for "$u")
    for t in $tests; do
        printf '%-8s %-8s' "$u" "$t"
        for s in $sides; do
            printf ' %18s' "$(per_op "$s" "$uri" "$t")"
        done
        echo
    done
done
