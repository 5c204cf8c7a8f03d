#!/bin/sh
# px_perf_smoke.sh smoke|bad-option|interrupt PX_PERF
# px_perf_smoke.sh plot PX_PERF PX_PLOT
# px_perf_smoke.sh compare PX_PERF PX_PLOT COMPARE_SH BUILD_DIR FIXTURE
#
# smoke:      a short local run of every test must exit 0 and print valid
#             JSON with one row per (test, size), each with the requested
#             number of messages, the machine it ran on and, for rows with
#             a latency, the whole histogram; --version and the units line
#             under --quiet. No timing is checked.
# bad-option: a bad option must exit 2.
# interrupt:  SIGINT to a long run: exit 130, the rows done printed, the
#             JSON still valid and saying so.
# plot:       px-plot (third argument) draws a short run as a well-formed
#             SVG with its three panels; foreign JSON exits 2.
# compare:    bench/compare.sh --out keeps a short run (tcp, the floor and
#             plexus) that px-plot draws beside a px-perf run it kept, and
#             px-plot draws FIXTURE, a compare.json with peers.
set -u
mode=$1
perf=$2
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

fail() {
    echo "px_perf_smoke: $*" >&2
    echo "--- stdout" >&2; cat "$out" >&2
    echo "--- stderr" >&2; cat "$err" >&2
    exit 1
}

case $mode in
bad-option)
    "$perf" local tcp://127.0.0.1:0 --window 0 >"$out" 2>"$err"
    rc=$?
    [ $rc -eq 2 ] || fail "--window 0 exited $rc, not 2"
    grep -q usage "$err" || fail "no usage text on a bad option"
    "$perf" local tcp://127.0.0.1:0 --no-such-option >"$out" 2>"$err"
    rc=$?
    [ $rc -eq 2 ] || fail "--no-such-option exited $rc, not 2"
    exit 0
    ;;
interrupt)
    "$perf" local tcp://127.0.0.1:0 --test lat,rr --sizes 64 --duration 4 --warmup 0 --json \
        >"$out" 2>"$err" &
    pid=$!
    sleep 6 # the first row (4 s) done, most likely, the second under way
    kill -INT "$pid"
    wait "$pid"
    rc=$?
    [ $rc -eq 130 ] || fail "interrupted px-perf exited $rc, not 130"
    done=$(sed -n 's/^px-perf: interrupted: \([0-9]*\) of 2 rows done$/\1/p' "$err")
    [ -n "$done" ] || fail "no word of the interruption"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$out" "$done" <<'PY' || fail "interrupted JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
done = int(sys.argv[2])
if doc["interrupted"] is not True or len(doc["results"]) != done or done > 1:
    sys.exit("interrupted %s, %d rows done, rows %s" % (doc["interrupted"], done,
             [r["test"] for r in doc["results"]]))
PY
    fi
    exit 0
    ;;
plot)
    # px-plot draws a real run: an SVG with a panel per kind of data and
    # a line per row; input that is not px-perf JSON exits 2.
    plot=$3
    svg=$(mktemp)
    trap 'rm -f "$out" "$err" "$svg"' EXIT
    "$perf" local tcp://127.0.0.1:0 --test lat,rate,bw --sizes 64,64K --iters 300 --json \
        >"$out" 2>"$err" || fail "px-perf exited $?"
    python3 "$plot" -o "$svg" "run=$out" 2>"$err" || fail "px-plot exited $?"
    python3 - "$svg" <<'PY' || fail "the SVG"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
lines = root.iter(ns + "polyline")
n = sum(1 for _ in lines)
titles = [t.text for t in root.iter(ns + "text") if t.text]
for want in ("latency by percentile", "rate against window", "bandwidth against size"):
    if want not in titles:
        sys.exit("no panel %r" % want)
if n < 5:  # lat 64, lat 64K, rr, oneway, bw
    sys.exit("%d lines" % n)
PY
    echo '{"not": "px-perf"}' >"$svg"
    python3 "$plot" -o /dev/null "$svg" 2>"$err"
    rc=$?
    [ $rc -eq 2 ] || fail "px-plot on foreign JSON exited $rc, not 2"
    exit 0
    ;;
compare)
    # The overlay path: a short real compare.sh --out run (tcp, floor and
    # plexus only) that px-plot draws with one of the px-perf runs it kept
    # beside it; then a fixture with peers (and one not measured), as
    # compare.sh writes them where the peers are installed.
    plot=$3 cmp=$4 build=$5 fixture=$6
    dir=$(mktemp -d)
    trap 'rm -f "$out" "$err"; rm -rf "$dir"' EXIT
    bash "$cmp" --build "$build" --only tcp --no-peers --rounds 1 --duration 0.1 --out "$dir" --quiet \
        >"$out" 2>"$err" || fail "compare.sh --out exited $?"
    [ -s "$dir/table.txt" ] || fail "no table.txt"
    python3 "$plot" -o "$dir/a.svg" "$dir" "busy=$dir/px-perf/tcp_rtt_busy__plexus__r1.json" \
        2>"$err" || fail "px-plot on compare.sh --out exited $?"
    python3 "$plot" -o "$dir/b.svg" "$fixture" 2>"$err" || fail "px-plot on the fixture exited $?"
    python3 - "$dir" <<'PY' || fail "compare.sh --out or px-plot's picture of it"
import json, os, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
doc = json.load(open(os.path.join(d, "compare.json")))
assert doc["tool"] == "compare.sh" and doc["rounds"] == 1, doc
ids = [m["id"] for m in doc["metrics"]]
assert ids == ["tcp_rtt_busy", "tcp_rtt_block", "tcp_oneway", "tcp_rr", "tcp_bw"], ids
for m in doc["metrics"]:
    px = [c for c in m["contenders"] if c["name"] == "plexus"]
    assert len(px) == 1 and px[0]["median"] > 0 and len(px[0]["rounds"]) == 1, m
    assert px[0]["px_perf"], m
    for f in px[0]["px_perf"]:
        assert json.load(open(os.path.join(d, f)))["tool"] == "px-perf", f
    assert all(c["note"] == "n/a (--no-peers)" for c in m["contenders"] if c["role"] == "peer"), m
def texts(name):
    root = ET.parse(os.path.join(d, name)).getroot()
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]
a = texts("a.svg")
for want in ("compare.sh: round trip (us)", "compare.sh: message rate (M/s)",
             "compare.sh: bandwidth (GB/s)", "plexus", "floor (bare exchange)",
             "latency by percentile", "busy lat 64"):
    assert want in a, (want, a)
assert any(t.startswith("not measured:") for t in a), a
b = texts("b.svg")
for want in ("compare.sh: round trip (us)", "compare.sh: bandwidth (GB/s)", "plexus", "sockperf",
             "ucx", "floor (bare exchange)"):
    assert want in b, (want, b)
assert any("ucx tcp: n/a (not installed)" in t for t in b), b
PY
    exit 0
    ;;
smoke) ;;
*) echo "usage: $0 smoke|bad-option|interrupt|plot|compare PX_PERF [PX_PLOT [COMPARE_SH BUILD_DIR FIXTURE]]" >&2; exit 2 ;;
esac

"$perf" --version >"$out" 2>"$err" || fail "--version failed"
grep -q "^px-perf (plexus [0-9]" "$out" || fail "--version says something else"
"$perf" local tcp://127.0.0.1:0 --test lat --iters 100 --sizes 64 --quiet >"$out" 2>"$err" ||
    fail "a --quiet run failed"
grep -q "^# latency in us" "$out" || fail "--quiet dropped the units line"

"$perf" local tcp://127.0.0.1:0 --test lat,rate,bw --iters 200 --sizes 64,1M --json --quiet \
    >"$out" 2>"$err"
rc=$?
[ $rc -eq 0 ] || fail "px-perf exited $rc"

if command -v python3 >/dev/null 2>&1; then
    python3 -m json.tool "$out" >/dev/null || fail "output is not valid JSON"
    python3 - "$out" <<'PY' || fail "unexpected rows"
import json, sys
doc = json.load(open(sys.argv[1]))
rows = {(r["test"], r["size"]): r for r in doc["results"]}
want = [(t, s) for t in ("lat", "rate-rr", "rate-oneway", "bw") for s in (64, 1 << 20)]
missing = [w for w in want if w not in rows]
if missing or len(doc["results"]) != len(want):
    sys.exit("rows: got %s, want %s" % (sorted(rows), want))
for key, r in rows.items():
    if r["msgs"] != 200:
        sys.exit("%s: %d messages, not 200" % (key, r["msgs"]))
    if (r["lat_us"] is None) != (r["test"] == "rate-oneway"):
        sys.exit("%s: latency present/absent wrongly" % (key,))
    hdr = r.get("hdr_percentiles")
    if (hdr is None) != (r["test"] == "rate-oneway"):
        sys.exit("%s: histogram present/absent wrongly" % (key,))
    if hdr is not None:
        lines = [l for l in hdr.splitlines() if l and not l.startswith("#")]
        if "Percentile" not in lines[0] or int(lines[-1].split()[2]) != 200:
            sys.exit("%s: histogram does not add up to 200: %s" % (key, lines[-1]))
for k in ("host", "kernel", "cpu_model", "time", "version", "pinning"):
    if not doc.get(k):
        sys.exit("no %s in the JSON" % k)
if doc["interrupted"] is not False:
    sys.exit("a whole run says interrupted")
PY
else
    # No python: at least the eight rows and the closing brace must be there.
    [ "$(grep -c '"test":' "$out")" -eq 8 ] || fail "expected 8 rows"
    tail -n 1 "$out" | grep -q '^}' || fail "JSON not closed"
fi
exit 0
