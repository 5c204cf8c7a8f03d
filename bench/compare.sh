#!/usr/bin/env bash
# compare.sh — plexus beside the raw floor and its peers, in one run.
#
#   bench/compare.sh [--build DIR] [--rounds N] [--duration SEC] [--install]
#                    [--only tcp|shm] [--rdma ADDR] [--baseline DIR] [--out DIR]
#                    [--no-peers] [--quiet]
#
# For every metric of the BRIEF's targets table it runs the floor (bench/
# floor_*), plexus (px-perf local) and each installed peer (sockperf,
# ucx_perftest, fi_pingpong, and ZeroMQ and nng through the small programs
# of bench/peers/, built where libzmq3-dev and libnng-dev are), interleaved — round 1: floor, plexus, peers;
# round 2: again ... — and prints the median of each. The machine flips
# between a fast and a slow state, so only figures from the same run,
# interleaved, compare; the bare cache-line ping-pong round trip (the
# canary) is printed at the start, after every round and at the end.
#
# Units: round trips in us (full round trips: sockperf gets --full-rtt, and
# ucx_perftest's and fi_pingpong's half round trips are doubled), rates in
# million messages/s, bandwidth in GB/s (10^9 bytes/s). Latencies are
# medians (p50) except fi_pingpong, which only reports a mean.
#
# --install: apt-get update and install sockperf, ucx-utils, libfabric-bin,
# iperf3, libzmq3-dev and libnng-dev first (Debian; needs root). A peer
# that is missing or fails is reported as n/a with the reason; the script
# itself only fails when the build does.
# --rdma ADDR: the rdma:// figures alone, on the RDMA device holding ADDR
# (an IP address of it): px-perf beside perftest (ib_send_lat, whose half
# round trip is doubled; ib_write_bw and ib_read_bw, MiB/s made GB/s) and
# ucx_perftest over rc_verbs, with the targets of the rdma issue (round
# trip <= 1.1 x 2 x ib_send_lat; bandwidth >= 0.9 x ib_write_bw). Under
# soft-RoCE (scripts/rxe-vm.sh) the figures are an emulator's: a check
# that the comparison runs, never a measurement.
# --baseline DIR: another build (an older commit's, with px-perf built):
# its px-perf runs right after ours for every plexus figure of every round,
# and a last table gives each figure's ratio to it (before/after a change).
# --out DIR: keep the run in DIR for px-plot: px-perf/METRIC__NAME__rN.json,
# the px-perf --json of every plexus figure of every round; compare.json,
# every contender's figure per round and median (floor, plexus, peers,
# with the reason of an n/a), the canary and the run's settings; table.txt,
# the table printed. `px-plot -o cmp.svg DIR` draws compare.json: each
# metric's contenders side by side, a panel per unit.
# --no-peers: the floor and plexus alone (a quick look, or a test).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=""
rounds=3
dur=1
install=0
only=""
quiet=0
baseline=""
rdma=""
outdir=""
peers=1

usage() {
    sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) dur=$2; shift 2 ;;
    --install) install=1; shift ;;
    --only) only=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --rdma) rdma=$2; only=rdma; shift 2 ;;
    --out) outdir=$2; shift 2 ;;
    --no-peers) peers=0; shift ;;
    --quiet) quiet=1; shift ;;
    -h | --help) usage ;;
    *) echo "compare.sh: unknown option $1" >&2; usage ;;
    esac
done
case $rounds in '' | *[!0-9]* | 0) echo "compare.sh: --rounds wants a positive number" >&2; exit 2 ;; esac

log() { [ $quiet = 1 ] || echo "compare.sh: $*" >&2; }

# ---- set-up ------------------------------------------------------------------

if [ $install = 1 ]; then
    log "installing peers (sockperf ucx-utils libfabric-bin iperf3 libzmq3-dev libnng-dev)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq &&
        apt-get install -y -qq sockperf ucx-utils libfabric-bin iperf3 libzmq3-dev libnng-dev; } >&2; then
        log "apt-get failed: carrying on with whatever peers are installed"
    fi
fi

if [ -z "$build" ]; then
    build=$src/build-compare
    log "building into $build"
    mkdir -p "$build"
    { cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPX_BUILD_TESTS=OFF &&
        cmake --build "$build" -j"$(nproc)" --target px-perf floor_tcp floor_shm floor_memcpy &&
        for t in px-peer-zmq px-peer-nng; do # where their library is installed
            cmake --build "$build" --target $t >/dev/null 2>&1 || true
        done; } \
        >"$build/compare-build.log" 2>&1 ||
        { tail -n 30 "$build/compare-build.log" >&2; echo "compare.sh: build failed (log: $build/compare-build.log)" >&2; exit 1; }
fi
perf=$build/tools/perf/px-perf
ftcp=$build/bench/floor_tcp
fshm=$build/bench/floor_shm
fmem=$build/bench/floor_memcpy
for b in "$perf" "$ftcp" "$fshm" "$fmem"; do
    [ -n "$rdma" ] && [ "$b" != "$perf" ] && continue # the rdma figures need px-perf alone
    [ -x "$b" ] || { echo "compare.sh: $b missing (build it, or pass --build DIR)" >&2; exit 1; }
done
bperf=""
if [ -n "$baseline" ]; then
    bperf=$baseline/tools/perf/px-perf
    [ -x "$bperf" ] || { echo "compare.sh: $bperf missing (build px-perf in the baseline)" >&2; exit 1; }
fi
if [ -n "$outdir" ]; then
    mkdir -p "$outdir/px-perf" || { echo "compare.sh: cannot make $outdir/px-perf" >&2; exit 1; }
    rm -f "$outdir"/px-perf/*__r[0-9]*.json "$outdir/compare.json" "$outdir/table.txt"
fi

ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then scpu=0; ccpu=1; else scpu=0; ccpu=0; fi
pin_c() { taskset -c $ccpu "$@"; }

tmp=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$tmp"' EXIT

# ---- helpers -------------------------------------------------------------------
# A measurement prints one number, or "n/a (reason)".

# jnum FILE 'ROW PATTERN' FIELD: a number from the one-line JSON row matching
# the pattern (px-perf and the floors print one row per line).
jnum() {
    grep -F -- "$2" "$1" | head -n 1 | grep -o "\"$3\": [-0-9.e+]*" | head -n 1 | awk '{print $2}'
}

failed() { # failed LOGFILE
    local why
    why=$(grep -v '^\s*$' "$1" 2>/dev/null | grep -iE 'error|fail|cannot|unknown|refused|not' | head -n 1)
    [ -n "$why" ] || why=$(grep -v '^\s*$' "$1" 2>/dev/null | tail -n 1)
    # "px-perf server: shm://x: unknown URI scheme: ..." -> "unknown URI scheme"
    why=$(printf '%s' "$why" | tr -s ' \t' ' ' | sed -E 's/^([^:]*: )?[a-z]+:\/\/[^ ]*: //; s/: .*//' | cut -c1-40)
    echo "n/a (failed: ${why:-no output})"
}

numeric() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

port() { echo $((20000 + RANDOM % 20000)); }

# with_server LOG SERVER-CMD... -- CLIENT-CMD...: run a peer pair, the
# server pinned to one CPU and the client to the other.
with_server() {
    local slog=$1; shift
    local scmd=()
    while [ "$1" != "--" ]; do scmd+=("$1"); shift; done
    shift
    # No timeout(1) wrapper on the server: $! must be the server itself
    # (taskset execs it), so that it can be killed for sure — a busy-polling
    # server left behind would eat a CPU and skew every later figure.
    taskset -c $scpu "${scmd[@]}" >"$slog" 2>&1 &
    local spid=$!
    sleep 0.4
    pin_c timeout -k 2 60 "$@"
    local rc=$?
    stop_pid $spid
    return $rc
}

stop_pid() { # TERM, then KILL if it is still there after half a second
    kill "$1" 2>/dev/null
    for _ in 1 2 3 4 5; do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---- the floor -------------------------------------------------------------------

floor_shm() { # floor_shm TEST FIELD
    local out=$tmp/fshm
    "$fshm" --test "$1" --duration "$dur" --json >"$out" 2>&1 || { failed "$out"; return; }
    case $1 in
    pp) jnum "$out" shm-pp-busy p50 ;;
    futex) jnum "$out" shm-pp-futex p50 ;;
    ring) jnum "$out" shm-ring-oneway mmsgs_per_s ;;
    esac
}

canary() { [ -x "$fshm" ] || return 0; "$fshm" --test pp --duration 0.3 --json 2>/dev/null | grep -o '"p50": [0-9.]*' | awk '{print $2}'; }

floor_tcp() { # floor_tcp pp-busy|pp-blocking|bw
    local out=$tmp/ftcp
    case $1 in
    pp-busy) "$ftcp" --test pp --sizes 64 --busy --duration "$dur" --json >"$out" 2>&1 ;;
    pp-blocking) "$ftcp" --test pp --sizes 64 --duration "$dur" --json >"$out" 2>&1 ;;
    bw) "$ftcp" --test bw --sizes 1M --duration "$dur" --json >"$out" 2>&1 ;;
    esac || { failed "$out"; return; }
    case $1 in
    bw) jnum "$out" tcp-stream gb_per_s ;;
    *) jnum "$out" "tcp-$1" p50 ;;
    esac
}

floor_memcpy() {
    "$fmem" --sizes 1M --duration "$dur" --json 2>/dev/null | grep -o '"gb_per_s": [0-9.]*' | awk '{print $2}'
}

# ---- plexus ------------------------------------------------------------------------

# plexus URI TEST SIZE [px-perf options]: p50 us, M msg/s or GB/s.
plexus() {
    local uri=$1 test=$2 size=$3; shift 3
    local out=$tmp/px t=${test%%-*}
    [ "$t" = rate ] || [ "$t" = lat ] || t=bw
    "$perf" local "$uri" --test "$t" --sizes "$size" --duration "$dur" --json --quiet "$@" \
        >"$out" 2>"$out.err" || { failed "$out.err"; return; }
    # --out: keep the whole px-perf JSON (the main loop names it).
    [ -n "$outdir" ] && [ -n "${px_keep:-}" ] && cp "$out" "$outdir/px-perf/$px_keep"
    local row="\"test\": \"$test\", \"size\": $size,"
    case $test in
    lat) jnum "$out" "$row" p50 ;;
    rate-*) jnum "$out" "$row" msgs_per_s | awk '{printf "%.4f\n", $1 / 1e6}' ;;
    bw) jnum "$out" "$row" mb_per_s | awk '{printf "%.4f\n", $1 / 1e3}' ;;
    esac
}

# base CMD: CMD with the baseline's px-perf (bash scoping: plexus sees it).
base() {
    local perf=$bperf
    eval "$1"
}

# ---- peers -------------------------------------------------------------------------

sockperf_rtt() { # sockperf_rtt busy|blocking
    have sockperf || { echo "n/a (not installed)"; return; }
    local p extra=() out=$tmp/sp
    p=$(port)
    [ "$1" = busy ] && extra=(--nonblocked --timeout 0)
    with_server "$out.s" sockperf sr --tcp -i 127.0.0.1 -p "$p" "${extra[@]}" -- \
        sockperf pp --tcp -i 127.0.0.1 -p "$p" -m 64 -t "$sp_t" --full-rtt "${extra[@]}" >"$out" 2>&1 ||
        { failed "$out"; return; }
    grep 'percentile 50.000' "$out" | awk '{print $NF}'
}

sockperf_rate() {
    have sockperf || { echo "n/a (not installed)"; return; }
    local p out=$tmp/sp
    p=$(port)
    with_server "$out.s" sockperf sr --tcp -i 127.0.0.1 -p "$p" -- \
        sockperf tp --tcp -i 127.0.0.1 -p "$p" -m 64 -t "$sp_t" >"$out" 2>&1 || { failed "$out"; return; }
    grep 'Message Rate is' "$out" | sed 's/.*Message Rate is \([0-9]*\).*/\1/' | awk '{printf "%.4f\n", $1 / 1e6}'
}

# ucx TLS TEST SIZE ITERS: latency doubled to a round trip, rate in M msg/s,
# bandwidth converted from UCX's MiB/s to GB/s.
ucx() {
    have ucx_perftest || { echo "n/a (not installed)"; return; }
    local tls=$1 test=$2 size=$3 n=$4 p out=$tmp/ucx
    p=$(port)
    UCX_TLS=$tls with_server "$out.s" ucx_perftest -p "$p" -- \
        ucx_perftest 127.0.0.1 -p "$p" -t "$test" -s "$size" -n "$n" -w $((n / 10 + 1)) -f -v \
        >"$out" 2>&1 || { failed "$out"; return; }
    local line
    line=$(grep -E '^[0-9]+,' "$out" | tail -n 1)
    [ -n "$line" ] || { failed "$out"; return; }
    case $test in
    tag_lat) echo "$line" | awk -F, '{printf "%.4f\n", $2 * 2}' ;;
    *) if [ "$size" -ge 65536 ]; then
            echo "$line" | awk -F, '{printf "%.3f\n", $6 * 1048576 / 1e9}'
        else
            echo "$line" | awk -F, '{printf "%.4f\n", $8 / 1e6}'
        fi ;;
    esac
}

# libpeer zmq|nng oneway|rr|lat: a bench/peers program pair over tcp (p50
# round trip in us, or M msg/s). One-way is the receiver's figure: its
# server exits by itself after the client's last message.
libpeer() {
    local prog=$build/bench/peers/px-peer-$1 t=$2 p out=$tmp/lp spid
    local pkg=libnng-dev
    [ "$1" = zmq ] && pkg=libzmq3-dev
    [ -x "$prog" ] || { echo "n/a (not built: install $pkg, reconfigure)"; return; }
    for _ in 1 2 3 4 5; do # a random port may be taken: another, then
        p=$(port)
        taskset -c $scpu "$prog" server "tcp://127.0.0.1:$p" --test "$t" >"$out.s" 2>&1 &
        spid=$!
        sleep 0.4
        kill -0 $spid 2>/dev/null && break
    done
    pin_c timeout -k 2 60 "$prog" client "tcp://127.0.0.1:$p" --test "$t" --duration "$dur" \
        --window 64 >"$out" 2>&1 || { stop_pid $spid; failed "$out"; return; }
    case $t in
    oneway)
        for _ in $(seq 50); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
        stop_pid $spid
        awk '$1 == "mmsgs_per_s:" {print $2}' "$out.s" ;;
    rr) stop_pid $spid; awk '$1 == "mmsgs_per_s:" {print $2}' "$out" ;;
    lat) stop_pid $spid; awk '$1 == "p50_us:" {print $2}' "$out" ;;
    esac
}

iperf3_bw() { # one stream, its default 128 KiB writes: the receiver's GB/s
    have iperf3 || { echo "n/a (not installed)"; return; }
    local p out=$tmp/iperf3
    p=$(port)
    with_server "$out.s" iperf3 -s -1 -p "$p" -- \
        iperf3 -c 127.0.0.1 -p "$p" -t "$sp_t" -J >"$out" 2>&1 || { failed "$out"; return; }
    python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e9))' "$out" 2>/dev/null ||
        echo "n/a (no figure in its JSON)"
}

fi_pp() { # fi_pp PROVIDER EP_TYPE: mean round trip (fi_pingpong gives no median)
    have fi_pingpong || { echo "n/a (not installed)"; return; }
    local p out=$tmp/fi
    p=$(port)
    with_server "$out.s" fi_pingpong -p "$1" -e "$2" -B "$p" -I 50000 -S 64 -- \
        fi_pingpong -p "$1" -e "$2" -P "$p" -I 50000 -S 64 127.0.0.1 >"$out" 2>&1 ||
        { failed "$out"; return; }
    local v
    v=$(awk '$1 == 64 && NF >= 8 {print $7 * 2}' "$out" | tail -n 1)
    [ -n "$v" ] && echo "$v" || failed "$out"
}

# perftest PROG SIZE: ib_send_lat's typical half round trip doubled (us);
# ib_write_bw / ib_read_bw average bandwidth in GB/s (perftest's MB/s are
# MiB/s). Both ends use rdma_cm (-R), which RoCE, iWARP and IPoIB all take.
perftest() {
    have "$1" || { echo "n/a (not installed)"; return; }
    local prog=$1 size=$2 out=$tmp/pt dev
    dev=$(ibv_devices 2>/dev/null | awk 'NR > 2 {print $1; exit}')
    [ -n "$dev" ] || { echo "n/a (no RDMA device)"; return; }
    local p args
    p=$(port)
    args=(-d "$dev" -R -p "$p" -s "$size")
    case $prog in
    ib_send_lat) args+=(-n 10000) ;;
    *) args+=(-n 200) ;; # by count: a duration (-D) run can count nothing on a slow device
    esac
    with_server "$out.s" "$prog" "${args[@]}" -- "$prog" "${args[@]}" "$rdma" >"$out" 2>&1 ||
        { failed "$out"; return; }
    case $prog in
    ib_send_lat) awk -v s="$size" '$1 == s && NF >= 5 {print $5 * 2; exit}' "$out" ;;
    *) awk -v s="$size" '$1 == s && NF >= 4 {printf "%.3f\n", $4 * 1048576 / 1e9; exit}' "$out" ;;
    esac
}

# ---- the metrics ---------------------------------------------------------------------
# id|label|unit|better(lo/hi)|target kind|target value
metrics=(
    "tcp_rtt_busy|tcp 64 B round trip, busy-poll|us|lo|floor|1.1"
    "tcp_rtt_block|tcp 64 B round trip, blocking|us|lo|floor|1.1"
    "tcp_oneway|tcp 64 B one-way rate|M/s|hi|abs|12"
    "tcp_rr|tcp 64 B req/reply rate, window 64|M/s|hi|abs|2"
    "tcp_bw|tcp 1 MiB bandwidth|GB/s|hi|abs|21"
    "shm_rtt_busy|shm 64 B round trip, busy-poll|us|lo|abs|0.20"
    "shm_rtt_sleep|shm 64 B round trip, peer asleep|us|lo|floor|1.1"
    "shm_oneway|shm 64 B one-way rate|M/s|hi|abs|25"
    "shm_bw|shm 1 MiB bandwidth|GB/s|hi|abs|45"
    "rdma_rtt|rdma 64 B round trip, busy-poll|us|lo|floor|1.1"
    "rdma_rr|rdma 64 B req/reply rate, window 64|M/s|hi|abs|10"
    "rdma_bw|rdma 1 MiB bandwidth|GB/s|hi|floor|0.9"
)
# Which metrics run: --only's, and the rdma ones only with --rdma (they
# need a device).
wanted() {
    if [[ $1 == rdma_* ]]; then [ -n "$rdma" ]; else [ -z "$only" ] || [[ $1 == ${only}_* ]]; fi
}

SHM_URI="shm://pxcompare-$$"
# sockperf takes whole seconds.
sp_t=$(awk -v d="$dur" 'BEGIN {t = int(d + 0.999); print t < 1 ? 1 : t}')
TCP_URI="tcp://127.0.0.1:0"
POLL=(--poll-us 1000)
RDMA_URI="rdma://${rdma:-127.0.0.1}:0"
if [[ $rdma == *:* ]]; then RDMA_URI="rdma://[$rdma]:0"; fi

# contenders METRIC: "name|command" lines; the first is the floor, the
# second plexus, the rest peers ("plexus ..." extras are listed in the
# details only). plexus polls (--poll-us 1000) wherever the peers it is
# compared with busy-poll — all but the blocking and asleep round trips;
# the blocking figures of the rates and bandwidth are in the details.
contenders() {
    case $1 in
    tcp_rtt_busy) printf '%s\n' "floor_tcp busy|floor_tcp pp-busy" \
        "plexus|plexus $TCP_URI lat 64 ${POLL[*]}" "sockperf busy|sockperf_rtt busy" \
        "ucx tcp|ucx tcp tag_lat 64 100000" "fi_pingpong tcp|fi_pp tcp msg" ;;
    tcp_rtt_block) printf '%s\n' "floor_tcp blocking|floor_tcp pp-blocking" \
        "plexus|plexus $TCP_URI lat 64" "sockperf|sockperf_rtt blocking" \
        "zeromq req/rep|libpeer zmq lat" "nng pair1|libpeer nng lat" ;;
    tcp_oneway) printf '%s\n' "-|" "plexus|plexus $TCP_URI rate-oneway 64 ${POLL[*]}" \
        "plexus blocking|plexus $TCP_URI rate-oneway 64" \
        "ucx tcp|ucx tcp tag_bw 64 1000000" "sockperf tp|sockperf_rate" \
        "zeromq push/pull|libpeer zmq oneway" "nng pair1|libpeer nng oneway" ;;
    tcp_rr) printf '%s\n' "-|" "plexus|plexus $TCP_URI rate-rr 64 --window 64 ${POLL[*]}" \
        "plexus blocking|plexus $TCP_URI rate-rr 64 --window 64" \
        "zeromq dealer/router|libpeer zmq rr" "nng pair1|libpeer nng rr" ;;
    tcp_bw) printf '%s\n' "floor_tcp stream|floor_tcp bw" \
        "plexus|plexus $TCP_URI bw 1048576 ${POLL[*]}" "plexus blocking|plexus $TCP_URI bw 1048576" \
        "ucx tcp|ucx tcp tag_bw 1048576 2000" "iperf3|iperf3_bw" ;;
    shm_rtt_busy) printf '%s\n' "cache-line pp|floor_shm pp" \
        "plexus|plexus $SHM_URI lat 64 ${POLL[*]}" "ucx posix|ucx posix tag_lat 64 1000000" \
        "fi_pingpong shm|fi_pp shm rdm" ;;
    shm_rtt_sleep) printf '%s\n' "futex pp|floor_shm futex" "plexus|plexus $SHM_URI lat 64" ;;
    shm_oneway) printf '%s\n' "SPSC ring|floor_shm ring" \
        "plexus|plexus $SHM_URI rate-oneway 64 ${POLL[*]}" \
        "ucx posix|ucx posix tag_bw 64 5000000" ;;
    shm_bw) printf '%s\n' "memcpy|floor_memcpy" "plexus|plexus $SHM_URI bw 1048576 ${POLL[*]}" \
        "ucx posix|ucx posix tag_bw 1048576 5000" ;;
    rdma_rtt) printf '%s\n' "2 x ib_send_lat|perftest ib_send_lat 64" \
        "plexus|plexus $RDMA_URI lat 64 ${POLL[*]}" "plexus blocking|plexus $RDMA_URI lat 64" \
        "ucx rc_verbs|ucx rc_verbs tag_lat 64 100000" ;;
    rdma_rr) printf '%s\n' "-|" "plexus|plexus $RDMA_URI rate-rr 64 --window 64 ${POLL[*]}" ;;
    rdma_bw) printf '%s\n' "ib_write_bw|perftest ib_write_bw 1048576" \
        "plexus|plexus $RDMA_URI bw 1048576 ${POLL[*]}" "ib_read_bw|perftest ib_read_bw 1048576" \
        "ucx rc_verbs|ucx rc_verbs tag_bw 1048576 2000" ;;
    esac
}

declare -A vals   # "metric|name" -> space-separated numbers
declare -A notes  # "metric|name" -> the last n/a reason
declare -a order  # "metric|name" in first-seen order
declare -A pxfiles # "metric|name" -> the px-perf JSON kept of each round (--out)

record() { # record KEY VALUE
    [ -n "${vals[$1]+x}${notes[$1]+x}" ] || order+=("$1")
    if numeric "$2"; then vals[$1]="${vals[$1]:-} $2"; else notes[$1]=$2; fi
}

# slug NAME: "plexus blocking (baseline)" -> "plexus-blocking-baseline"
slug() { printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '-' | tr -s '-' | sed 's/^-//; s/-$//'; }

# run_one KEY CMD [base]: one figure, recorded (and its px-perf JSON kept
# under --out).
run_one() {
    local key=$1 cmd=$2 how=${3:-} v
    px_keep=""
    if [ -n "$outdir" ] && [[ ${key#*|} == plexus* ]]; then
        px_keep="${key%%|*}__$(slug "${key#*|}")__r$r.json"
        rm -f "$outdir/px-perf/$px_keep"
    fi
    if [ "$how" = base ]; then v=$(base "$cmd" 2>/dev/null | tail -n 1); else v=$(eval "$cmd" 2>/dev/null | tail -n 1); fi
    [ -n "$v" ] || v="n/a (failed: no figure)"
    record "$key" "$v"
    if [ -n "$px_keep" ] && [ -f "$outdir/px-perf/$px_keep" ]; then
        pxfiles[$key]="${pxfiles[$key]:-} px-perf/$px_keep"
    fi
    px_keep=""
}

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

# ---- the run ------------------------------------------------------------------------------

canaries=()
c=$(canary); canaries+=("start:${c:-?}")
log "canary (cache-line ping-pong round trip) at start: ${c:-?} us"
for ((r = 1; r <= rounds; r++)); do
    for m in "${metrics[@]}"; do
        id=${m%%|*}
        wanted "$id" || continue
        first=1
        while IFS='|' read -r name cmd; do
            [ $first = 1 ] && isfloor=1 || isfloor=0
            first=0
            [ "$name" = "-" ] && continue
            if [ $peers = 0 ] && [ $isfloor = 0 ] && [[ $name != plexus* ]]; then
                record "$id|$name" "n/a (--no-peers)"
                continue
            fi
            log "round $r/$rounds: $id: $name"
            run_one "$id|$name" "$cmd"
            if [ -n "$bperf" ] && [[ $name == plexus* ]]; then
                log "round $r/$rounds: $id: $name (baseline)"
                run_one "$id|$name (baseline)" "$cmd" base
            fi
        done < <(contenders "$id")
    done
    c=$(canary); canaries+=("r$r:${c:-?}")
    log "canary after round $r: ${c:-?} us"
done

# ---- the table ------------------------------------------------------------------------------

fmt() { numeric "$1" && awk -v v="$1" 'BEGIN {printf (v < 10 ? "%.3f" : "%.2f"), v}' || echo "$1"; }

value_of() { # value_of KEY -> median or the n/a note
    local k=$1
    if [ -n "${vals[$k]:-}" ]; then median "${vals[$k]}"; else echo "${notes[$k]:-n/a}"; fi
}

ratio() { # ratio A B -> "1.23x" or "-"
    numeric "$1" && numeric "$2" && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}' || echo "-"
}

verdict() { # verdict VALUE BETTER KIND TARGET FLOOR
    local v=$1 better=$2 kind=$3 t=$4 floor=$5
    numeric "$v" || { echo "not measured"; return; }
    if [ "$kind" = floor ]; then
        numeric "$floor" && awk -v f="$floor" 'BEGIN {exit !(f > 0)}' || { echo "no floor"; return; }
        t=$(awk -v f="$floor" -v k="$t" 'BEGIN {print f * k}')
    fi
    awk -v v="$v" -v t="$t" -v b="$better" 'BEGIN {
        if (b == "lo") { if (v <= t) print "met"; else printf "short by %.0f%%\n", (v / t - 1) * 100 }
        else { if (v >= t) print "met"; else printf "short by %.0f%%\n", (1 - v / t) * 100 } }'
}

best_of() { # best_of BETTER values... -> "name value" of the best numeric one
    local better=$1; shift
    printf '%s\n' "$@" | awk -F'\t' -v b="$better" '$2 ~ /^[0-9.eE+-]+$/ {
        if (!n++ || (b == "lo" ? $2 < best : $2 > best)) { best = $2; who = $1 } }
        END { if (n) print who "\t" best }'
}


# ---- --out: compare.json -----------------------------------------------------------------

json_str() { # json_str TEXT: a JSON string
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}

json_nums() { # json_nums "1 2.5": [1, 2.5]
    local out="" x
    for x in $1; do out+="${out:+, }$x"; done
    printf '[%s]' "$out"
}

# Every contender of every metric that ran: its figure per round and the
# median, or the reason it has none; px-plot reads it (tool "compare.sh").
write_json() {
    local m id label unit better kind target first n role c key med note files fn sep
    printf '{\n  "tool": "compare.sh",\n  "format": 1,\n'
    printf '  "time": %s,\n  "host": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" \
        "$(json_str "$(hostname 2>/dev/null || echo "?")")"
    printf '  "cpus": %s,\n  "server_cpu": %s,\n  "client_cpu": %s,\n' "$(nproc)" "$scpu" "$ccpu"
    printf '  "rounds": %s,\n  "duration_s": %s,\n' "$rounds" "$dur"
    printf '  "baseline": %s,\n' "$(json_str "$baseline")"
    printf '  "units": {"us": "round trip, p50 (fi_pingpong: mean)", "M/s": "million messages/s", "GB/s": "10^9 bytes/s"},\n'
    printf '  "canary_us": ['
    first=1
    for c in "${canaries[@]}"; do
        [ $first = 1 ] || printf ', '
        first=0
        numeric "${c#*:}" && n=${c#*:} || n=null
        printf '{"when": %s, "p50": %s}' "$(json_str "${c%%:*}")" "$n"
    done
    printf '],\n  "metrics": ['
    first=1
    for m in "${metrics[@]}"; do
        IFS='|' read -r id label unit better kind target <<<"$m"
        wanted "$id" || continue
        [ $first = 1 ] || printf ','
        first=0
        printf '\n    {"id": %s, "label": %s, "unit": %s, "better": %s, "target": {"kind": %s, "value": %s},\n     "contenders": [' \
            "$(json_str "$id")" "$(json_str "$label")" "$(json_str "$unit")" "$(json_str "$better")" \
            "$(json_str "$kind")" "$target"
        n=0
        sep=""
        while IFS='|' read -r c _; do
            [ "$c" = "-" ] && { n=$((n + 1)); continue; }
            role=peer
            [ $n = 0 ] && role=floor
            [[ $c == plexus* ]] && role=plexus
            n=$((n + 1))
            for key in "$id|$c" "$id|$c (baseline)"; do
                [ -n "${vals[$key]+x}${notes[$key]+x}" ] || continue
                med=null
                [ -n "${vals[$key]:-}" ] && med=$(median "${vals[$key]}")
                note=null
                [ -n "${notes[$key]:-}" ] && note=$(json_str "${notes[$key]}")
                files=""
                for fn in ${pxfiles[$key]:-}; do files+="${files:+, }$(json_str "$fn")"; done
                printf '%s\n       {"name": %s, "role": %s, "baseline": %s, "median": %s, "rounds": %s, "note": %s, "px_perf": [%s]}' \
                    "$sep" "$(json_str "${key#*|}")" "$(json_str "$role")" \
                    "$([[ $key == *"(baseline)" ]] && echo true || echo false)" "$med" \
                    "$(json_nums "${vals[$key]:-}")" "$note" "$files"
                sep=","
            done
        done < <(contenders "$id")
        printf '\n     ]}'
    done
    printf '\n  ]\n}\n'
}

tables() {
    echo
    echo "plexus vs floor vs peers — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs (server cpu $scpu, client cpu $ccpu),"
    echo "medians of $rounds interleaved rounds, ${dur}s per figure; canary round trip (us): ${canaries[*]}"
    echo
    printf '%-36s %-5s %-28s %-30s %-22s %-9s %-8s %-14s %s\n' metric unit floor plexus "best peer" \
        "px/floor" "px/peer" target status
    for m in "${metrics[@]}"; do
        IFS='|' read -r id label unit better kind target <<<"$m"
        wanted "$id" || continue
        mapfile -t cs < <(contenders "$id")
        fname=${cs[0]%%|*}
        floor="-"
        [ "$fname" != "-" ] && floor=$(value_of "$id|$fname")
        px=$(value_of "$id|plexus")
        peers=()
        for ((i = 2; i < ${#cs[@]}; i++)); do
            n=${cs[$i]%%|*}
            [[ $n == plexus* ]] && continue
            peers+=("$n"$'\t'"$(value_of "$id|$n")")
        done
        best=""
        [ ${#peers[@]} -gt 0 ] && best=$(best_of "$better" "${peers[@]}")
        bname=${best%%$'\t'*}
        bval=${best##*$'\t'}
        # A relative target is against the best floor figure in the run: the
        # BRIEF's tcp floor is sockperf, so a faster sockperf counts as floor.
        tfloor=$floor
        if [ "$kind" = floor ] && [[ $id == tcp_* ]] && [ -n "$best" ]; then
            sp=$(printf '%s\n' "${peers[@]}" | awk -F'\t' '$1 ~ /^sockperf/ {print $2}')
            numeric "${sp:-x}" && { ! numeric "$tfloor" || awk -v a="$sp" -v b="$tfloor" 'BEGIN {exit !(a < b)}'; } && tfloor=$sp
        fi
        if [ "$better" = lo ]; then cmp="<="; else cmp=">="; fi
        if [ "$kind" = floor ]; then tdesc="$cmp ${target}x floor"; else tdesc="$cmp $target"; fi
        fcol="-"; [ "$fname" != "-" ] && fcol="$(fmt "$floor") ($fname)"
        pcol="-"
        if [ -n "$best" ]; then
            pcol="$(fmt "$bval") ($bname)"
        elif [ ${#peers[@]} -gt 0 ]; then # none measured: say why (the first one's reason)
            pcol=${peers[0]##*$'\t'}
        fi
        printf '%-36s %-5s %-28s %-30s %-22s %-9s %-8s %-14s %s\n' "$label" "$unit" "$fcol" "$(fmt "$px")" \
            "$pcol" "$(ratio "$px" "$floor")" "$(ratio "$px" "$bval")" "$tdesc" \
            "$(verdict "$px" "$better" "$kind" "$target" "$tfloor")"
    done

    if [ -n "$bperf" ]; then
        echo
        echo "plexus against the baseline ($baseline), run in turn in every round:"
        printf '  %-52s %-12s %-12s %s\n' figure this baseline this/baseline
        for k in "${order[@]}"; do
            [[ $k == *"(baseline)" ]] && continue
            [ -n "${vals["$k (baseline)"]+x}${notes["$k (baseline)"]+x}" ] || continue
            a=$(value_of "$k")
            b=$(value_of "$k (baseline)")
            printf '  %-52s %-12s %-12s %s\n' "${k/|/: }" "$(fmt "$a")" "$(fmt "$b")" "$(ratio "$a" "$b")"
        done
    fi

    echo
    echo "every contender (median, and each round's figure):"
    for k in "${order[@]}"; do
        printf '  %-52s %-14s %s\n' "${k/|/: }" "$(fmt "$(value_of "$k")")" "${vals[$k]:-}"
    done
}

if [ -n "$outdir" ]; then
    tables | tee "$outdir/table.txt"
    write_json >"$outdir/compare.json"
    log "kept the run in $outdir (compare.json, table.txt, px-perf/)"
else
    tables
fi
exit 0
