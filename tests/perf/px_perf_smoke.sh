#!/bin/sh
# px_perf_smoke.sh smoke|bad-option PX_PERF
#
# smoke:      a short local run of every test must exit 0 and print valid
#             JSON with one row per (test, size), each with the requested
#             number of messages. No timing is checked.
# bad-option: a bad option must exit 2.
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
smoke) ;;
*) echo "usage: $0 smoke|bad-option PX_PERF" >&2; exit 2 ;;
esac

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
PY
else
    # No python: at least the eight rows and the closing brace must be there.
    [ "$(grep -c '"test":' "$out")" -eq 8 ] || fail "expected 8 rows"
    tail -n 1 "$out" | grep -q '^}' || fail "JSON not closed"
fi
exit 0
