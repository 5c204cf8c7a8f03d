#!/bin/bash
# peers_smoke.sh PEER: the bench/peers program PEER (px-peer-zmq or
# px-peer-nng) runs each of its tests end to end over loopback and prints
# a figure; it never looks at what the figure is.
set -u
peer=$1
fail=0
for t in lat rr oneway; do
    out=$(mktemp) sout=$(mktemp)
    for _ in 1 2 3 4 5; do # a random port may be taken: another, then
        port=$((30000 + RANDOM % 20000))
        "$peer" server "tcp://127.0.0.1:$port" --test "$t" >"$sout" 2>&1 &
        spid=$!
        sleep 0.3
        kill -0 $spid 2>/dev/null && break
    done
    timeout 20 "$peer" client "tcp://127.0.0.1:$port" --test "$t" --duration 0.2 >"$out" 2>&1
    rc=$?
    [ "$t" = oneway ] && for _ in $(seq 50); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
    kill $spid 2>/dev/null
    wait $spid 2>/dev/null
    key=mmsgs_per_s
    [ "$t" = lat ] && key=p50_us
    file=$out
    [ "$t" = oneway ] && file=$sout # the receiver's figure
    if [ $rc -ne 0 ] || ! grep -Eq "^$key: [0-9]+\.[0-9]+$" "$file"; then
        echo "peers_smoke: $(basename "$peer") --test $t: rc $rc, no '$key' figure" >&2
        cat "$out" "$sout" >&2
        fail=1
    else
        echo "$(basename "$peer") $t: $(grep "^$key:" "$file")"
    fi
    rm -f "$out" "$sout"
done
bad=$("$peer" client tcp://127.0.0.1:1 --test nope 2>&1)
[ $? -eq 2 ] && [[ $bad == usage:* ]] || { echo "peers_smoke: a bad --test was not refused with usage" >&2; fail=1; }
exit $fail
