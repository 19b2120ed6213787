#!/usr/bin/env bash
# test_network.sh — networked runs against the local test origin
# (tests/fetch/origin.py on loopback): a catalog with 25% injected faults of
# mixed kinds, a run killed with SIGKILL mid-transfer and resumed, and a
# re-run of the unchanged catalog that must be all conditional hits.
#
# Usage: tests/cli/test_network.sh PIXMILL_BINARY
# Ends with "network: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_network.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

ORIGIN_ROOT="$ROOT/examples/images" python3 -u "$ROOT/tests/fetch/origin.py" 0 >"$T/port" 2>"$T/origin.err" &
opid=$!
trap 'kill $opid 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 50); do PORT=$(head -n 1 "$T/port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
[ -n "${PORT:-}" ] || { echo "origin did not start: $(cat "$T/origin.err")"; echo "network: 0 passed, 1 failed"; exit 1; }
B="http://127.0.0.1:$PORT"
count() { python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+'/count'))$1)" "$B"; }

# 200 distinct URLs over the 5 example images; every 4th one (25%) is
# faulty at first: 503, 500, 429 with Retry-After, a TCP reset or a
# truncated body, each failing 1 or 2 times, within a budget of 4 attempts.
(cd "$ROOT" && IMGDIR="$ROOT/examples/images" python3 - "$B" >"$T/cat.csv") <<'EOF'
import os, sys
base = sys.argv[1]
imgs = sorted(f for f in os.listdir(os.environ["IMGDIR"]) if f.endswith(".jpg"))
faults = ["503", "500", "429", "reset", "truncate"]
print("id,image,title")
for i in range(200):
    img = imgs[i % len(imgs)]
    q = f"tag={i}"
    if i % 4 == 0:
        q += f"&fault={faults[(i // 4) % len(faults)]}&times={1 + (i // 20) % 2}"
    print(f"p{i},{base}/file/{img}?{q},product {i}")
EOF
eq "catalog: 200 rows, 50 with faults" "$(grep -c fault= "$T/cat.csv")" 50

ARGS=(--allow-private --max-attempts 4 --breaker-open 1 --per-host 8 --per-host-rps 100 -p bench/peer.json)
cd "$ROOT"

# 1. kill -9 during the networked run, then resume: exactly once.
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --quiet &
pid=$!
sleep 1.5
kill -9 "$pid" 2>/dev/null && echo "killed the run mid-way"
wait "$pid" 2>/dev/null
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --json >"$T/run.json" 2>"$T/run.err"
rc=$?
check "resumed networked run exits 0 or 1 (rc $rc)" test "$rc" -le 1
db() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$T/out/pixmill.db" "$1"; }
eq "exactly once: 200 item rows, 200 distinct keys" "$(db "select count(*) || ' ' || count(distinct key) from items")" "200 200"
done_n=$(db "select count(*) from items where state='done'")
check "25% faults: >= 99% done within the retry budget ($done_n/200)" test "$done_n" -ge 198
eq "every failed item is in the DLQ with a reason" "$("$PM" dlq list --db "$T/out/pixmill.db" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(sum(1 for x in d if not x.get('error')))")" 0
# The retries happened: each faulty URL was requested at least times+1.
under=$(python3 - "$B" "$T/cat.csv" <<'EOF'
import csv, json, sys, urllib.request
from urllib.parse import urlsplit, parse_qs
counts = json.load(urllib.request.urlopen(sys.argv[1] + "/count"))["counts"]
bad = 0
for row in csv.DictReader(open(sys.argv[2])):
    u = urlsplit(row["image"]); q = parse_qs(u.query)
    if "fault" in q:
        key = u.path + "?" + u.query
        if counts.get(key, 0) < int(q["times"][0]) + 1:
            bad += 1
print(bad)
EOF
)
eq "each faulty URL was retried past its faults" "$under" 0
eq "per-host concurrency never above 8" "$(count "['max_active']['127.0.0.1'] <= 8")" True

# 2. a re-run of the unchanged catalog with --refresh: all conditional hits.
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --refresh --json >"$T/again.json" 2>/dev/null
eq "re-run with --refresh: every done item is a 304 cache hit" \
  "$(jq_ "$T/again.json" "d['cache_hits'] == d['done'] == $done_n")" True

echo "network: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
