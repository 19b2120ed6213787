#!/usr/bin/env bash
# test_fleet.sh — many `pixmill worker` processes sharing one store: the
# queue (run --enqueue-only), leases, exactly-once, draining, priorities
# and hostile queue rows. Sources are local files or URLs on the test
# origin (BUILD/tests/origin, with latency so runs last long enough to be
# interrupted). PostgreSQL is a real server from Debian's packages
# (tests/store/pg_lib.sh).
#   SQLite (workers on one machine):
#     1. enqueue-only, idempotent re-enqueue; 2 workers --exit-when-idle:
#        every item done once, one manifest line per item, job done
#     2. a queue row with broken record_json fails alone (bad_catalog_row
#        in the DLQ), the rest is done
#   PostgreSQL:
#     3. 3 workers on a 3,000-item catalog, one killed with SIGKILL at a
#        random moment mid-run: every item done exactly once, the killed
#        worker's expired lease in the attempt history
#     4. SIGTERM drains: exit 0, unstarted claims released, none lost
#     5. priority: a 1-item job enqueued at a higher priority while a bulk
#        job runs finishes first
#     6. hostile row, as in 2
# Usage: tests/fleet/test_fleet.sh [BUILD_DIR]  (default build)
# FLEET_SQLITE_ONLY=1 skips the PostgreSQL part.
# Ends with "fleet: N passed, N failed".
# shellcheck shell=bash
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=${1:-build}
PM=$ROOT/$B/pixmill
ORIGIN=$ROOT/$B/tests/origin
. tests/cli/lib.sh
. tests/store/pg_lib.sh
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  pg_stop
  rm -rf "$T"
}
trap cleanup EXIT
done_() { echo "fleet: $pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }

# ---- helpers ----
sql() { # sql DB QUERY: rows of QUERY on DB (an SQLite file or a PG URL), '|' between columns
  case $1 in
  postgres*) "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$1" -c "$2" ;;
  *) python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1], timeout=30)
for r in c.execute(sys.argv[2]).fetchall(): print("|".join("" if v is None else str(v) for v in r))
c.commit()' "$1" "$2" ;;
  esac
}
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
start_origin() { # start_origin NAME [OPTIONS]: sets PORT
  "$ORIGIN" --root "$ROOT/examples/images" --die-with-parent --port-file "$T/$1.port" "${@:2}" 0 >/dev/null 2>"$T/$1.err" &
  pids+=($!)
  PORT=
  for _ in $(seq 50); do PORT=$(head -n 1 "$T/$1.port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
  [ -n "$PORT" ] || { bad "origin did not start: $(cat "$T/$1.err")"; done_; }
}
url_catalog() { # url_catalog FILE N TAG: N rows of distinct URLs over the 5 example images
  python3 - "$1" "$2" "$3" "$PORT" <<'EOF'
import os, sys
path, n, tag, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
imgs = sorted(os.listdir("examples/images"))
with open(path, "w") as f:
    f.write("id,image,title\n")
    for i in range(n):
        f.write(f"{tag}{i},http://127.0.0.1:{port}/file/{imgs[i % len(imgs)]}?tag={tag}{i},item {i}\n")
EOF
}
# the engine options every networked worker takes: loopback origin, no
# per-host rate limit, small thumbnails
NET=(--allow-private --per-host-rps 0 --per-host 8)
manifest_check() { # manifest_check OUT JOB: "lines distinct_keys" over every worker's manifest of JOB
  cat "$1"/manifests/job"$2"-*.jsonl 2>/dev/null | python3 -c '
import json, sys
keys = [json.loads(l)["key"] for l in sys.stdin if l.strip()]
print(len(keys), len(set(keys)))'
}
wait_done() { # wait_done DB JOB N SECONDS: until N items of JOB are done (or the time is up)
  local i
  for i in $(seq $(($4 * 10))); do
    [ "$(sql "$1" "SELECT count(*) FROM items WHERE job_id = $2 AND state = 'done'")" -ge "$3" ] && return 0
    sleep 0.1
  done
  return 1
}

[ -x "$PM" ] || { bad "no $PM (make $B/pixmill)"; done_; }
[ -x "$ORIGIN" ] || { bad "no $ORIGIN (make all)"; done_; }

# ---- 1. SQLite: enqueue-only, 2 workers ----
mkdir -p "$T/s/img"
echo "id,image,title" >"$T/s/cat.csv"
n=0
for rep in 1 2 3 4 5 6; do
  for f in examples/images/*; do
    n=$((n + 1))
    b=$(basename "$f" .jpg)
    cp "$f" "$T/s/img/$b-$rep.jpg" # distinct names, the same bytes: dedup
    echo "p$n,img/$b-$rep.jpg,\"item $n\"" >>"$T/s/cat.csv"
  done
done
DB=$T/s/out/pixmill.db
"$PM" run "$T/s/cat.csv" --out "$T/s/out" --enqueue-only --json >"$T/enq1.json" 2>"$T/enq1.err"
eq "sqlite: enqueue-only exits 0" $? 0
eq "sqlite: enqueue-only: $n records enqueued, none present" "$(jq_ "$T/enq1.json" "d['enqueued'], d['already_present']")" "$n 0"
J=$(jq_ "$T/enq1.json" "d['job']")
"$PM" run "$T/s/cat.csv" --out "$T/s/out" --enqueue-only --json >"$T/enq2.json" 2>/dev/null
eq "sqlite: re-enqueue is idempotent (same job, 0 added, $n present)" \
  "$(jq_ "$T/enq2.json" "d['job'], d['enqueued'], d['already_present']")" "$J 0 $n"
eq "sqlite: nothing processed by enqueue-only" "$(sql "$DB" "SELECT count(*) FROM items")" 0
eq "sqlite: job queued" "$(sql "$DB" "SELECT state FROM jobs WHERE id = $J")" queued
"$PM" worker --db "$DB" --exit-when-idle -j 1 --batch 4 --id wA --json >"$T/wA.json" 2>"$T/wA.err" &
a=$!
"$PM" worker --db "$DB" --exit-when-idle -j 1 --batch 4 --id wB --json >"$T/wB.json" 2>"$T/wB.err" &
b=$!
wait $a; ra=$?
wait $b; rb=$?
eq "sqlite: both workers exit 0 when idle" "$ra $rb" "0 0"
eq "sqlite: workers' done add up to $n" "$(python3 -c "import json; print(sum(json.load(open(f))['done'] for f in ['$T/wA.json', '$T/wB.json']))")" "$n"
check "sqlite: both workers took items" python3 -c "import json,sys; sys.exit(not all(json.load(open(f))['done'] > 0 for f in ['$T/wA.json', '$T/wB.json']))"
eq "sqlite: items: $n rows, $n keys, all done" "$(sql "$DB" "SELECT count(*), count(DISTINCT key), sum(state = 'done') FROM items WHERE job_id = $J")" "$n|$n|$n"
eq "sqlite: queue: $n rows done" "$(sql "$DB" "SELECT state, count(*) FROM queue WHERE job_id = $J GROUP BY state")" "done|$n"
eq "sqlite: each item claimed once, done once" "$(sql "$DB" "SELECT event, count(*) FROM queue_events WHERE job_id = $J GROUP BY event ORDER BY event")" "claimed|$n
done|$n"
eq "sqlite: one manifest line per item over both workers' manifests" "$(manifest_check "$T/s/out" "$J")" "$n $n"
eq "sqlite: job done" "$(sql "$DB" "SELECT state FROM jobs WHERE id = $J")" done
"$PM" status --db "$DB" --json >"$T/st.json" 2>/dev/null
eq "sqlite: status shows the job done with $n items done" \
  "$(jq_ "$T/st.json" "[(j['state'], j['done']) for j in (d['jobs'] if isinstance(d, dict) else d) if j['id'] == $J]")" "[('done', $n)]"
eq "sqlite: per-worker temporary folders removed" "$(find "$T/s/out/.tmp" -mindepth 1 | wc -l)" 0
grep -q "job $J (thumbnails, priority 0): start" "$T/wA.err" "$T/wB.err" && ok "sqlite: job start logged" || bad "sqlite: job start logged"

# ---- 1b. serve --enqueue: POST /api/jobs enqueues, workers run it ----
"$PM" serve --enqueue --db "$T/sv.db" --data "$T/sv" --listen 127.0.0.1:0 --port-file "$T/sv.port" >"$T/sv.log" 2>&1 &
sp=$!
pids+=($sp)
for _ in $(seq 100); do [ -s "$T/sv.port" ] && break; sleep 0.1; done
A="http://127.0.0.1:$(cat "$T/sv.port")"
sed "s#,img/#,$T/s/img/#" "$T/s/cat.csv" >"$T/s/abs.csv" # absolute paths: the server spools the catalog elsewhere
curl -s -o "$T/post.json" -w '%{http_code}' -X POST --data-binary @"$T/s/abs.csv" -H 'Content-Type: text/csv' \
  "$A/api/jobs?priority=7&name=fleet" >"$T/post.code" 2>/dev/null
eq "serve --enqueue: POST /api/jobs answers 202" "$(cat "$T/post.code")" 202
eq "serve --enqueue: the job is queued with its $n records, none run here" \
  "$(jq_ "$T/post.json" "d['state'], d['queue']['total'], d['queue']['queued'], d['done']")" "queued $n $n 0"
eq "serve --enqueue: priority 7 in the queue" "$(sql "$T/sv.db" "SELECT DISTINCT priority FROM queue")" 7
sleep 1
eq "serve --enqueue: nothing processed by serve itself" "$(sql "$T/sv.db" "SELECT count(*) FROM items")" 0
"$PM" worker --db "$T/sv.db" --exit-when-idle -j 2 --id sv1 >/dev/null 2>"$T/sv1.err"
eq "serve --enqueue: a worker runs it" $? 0
JS=$(jq_ "$T/post.json" "d['id']")
curl -s "$A/api/jobs" >"$T/jobs.json"
eq "serve --enqueue: GET /api/jobs shows it done, progress 1, queue empty" \
  "$(jq_ "$T/jobs.json" "[(j['state'], j['done'], j['progress'], j['queue']['queued'], j['queue']['claimed']) for j in d['jobs'] if j['id'] == $JS]")" \
  "[('done', $n, 1.0, 0, 0)]"
kill "$sp"; wait "$sp" 2>/dev/null
grep -q "not run here (--enqueue)" "$T/sv.log" && ok "serve --enqueue: says jobs are not run here" || bad "serve --enqueue: says jobs are not run here"

# ---- 1c. transient failures go back to the queue (SQLite) ----
start_origin tr
{
  echo image
  echo "http://127.0.0.1:$PORT/file/opencv_fruits.jpg?fault=503&times=4&tag=recovers"
  echo "http://127.0.0.1:$PORT/file/opencv_fruits.jpg?fault=503&times=100&tag=never"
} >"$T/tr.csv"
"$PM" run "$T/tr.csv" --out "$T/tr" --enqueue-only --json >"$T/tr.json" 2>/dev/null
JR=$(jq_ "$T/tr.json" "d['job']")
"$PM" worker --db "$T/tr/pixmill.db" "${NET[@]}" --max-attempts 2 --breaker-failures 0 -j 1 --id tr1 --exit-when-idle --json >"$T/tr1.json" 2>"$T/tr1.err"
eq "requeue: worker exits 0" $? 0
eq "requeue: 503 x4 with 2 requests per claim: done at the 3rd claim; 503 forever: io_error after 3" \
  "$(sql "$T/tr/pixmill.db" "SELECT key, state, coalesce(code, '') FROM items WHERE job_id = $JR ORDER BY key")" "r1|done|ok
r2|failed|io_error"
eq "requeue: 2 retry events each, 3 claims each" \
  "$(sql "$T/tr/pixmill.db" "SELECT key, sum(event = 'retry'), sum(event = 'claimed') FROM queue_events WHERE job_id = $JR GROUP BY key ORDER BY key")" "r1|2|3
r2|2|3"
eq "requeue: the worker counts 4 requeued" "$(jq_ "$T/tr1.json" "d['requeued']")" 4
eq "requeue: the origin saw 5 + 6 requests" "$(python3 -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$PORT/count'))['counts']; print(sorted(v for k, v in d.items() if 'tag=' in k))")" "[5, 6]"

# ---- 2. SQLite: a broken queue row fails alone ----
hostile() { # hostile DB LABEL: a 10-row job whose row r3 gets broken record_json
  local db=$1 label=$2 j
  mkdir -p "$T/h-$label"
  { echo "image"; for i in 1 2 3 4 5 6 7 8 9 10; do echo "$ROOT/examples/images/opencv_fruits.jpg"; done; } >"$T/h-$label/cat.csv"
  "$PM" run "$T/h-$label/cat.csv" --out "$T/h-$label/out" --db "$db" --enqueue-only --json >"$T/h-$label.json" 2>/dev/null
  j=$(jq_ "$T/h-$label.json" "d['job']")
  sql "$db" "UPDATE queue SET record_json = '{\"ordinal\": 3, \"key\": [' WHERE job_id = $j AND key = 'r3'" >/dev/null
  sql "$db" "UPDATE queue SET record_json = '{\"ordinal\": 4, \"key\": \"r4\", \"image\": \"/x\", \"evil\": 1}' WHERE job_id = $j AND key = 'r4'" >/dev/null
  sql "$db" "UPDATE queue SET record_json = (SELECT record_json FROM queue WHERE job_id = $j AND key = 'r9') WHERE job_id = $j AND key = 'r5'" >/dev/null
  "$PM" worker --db "$db" --exit-when-idle -j 1 --id "h-$label" >/dev/null 2>"$T/h-$label.err"
  eq "$label: worker exits 0 with broken rows in the queue" $? 0
  eq "$label: broken rows (not JSON, an unknown field, another row's record) failed, the other 7 done" \
    "$(sql "$db" "SELECT key, state, code FROM items WHERE job_id = $j AND state <> 'done' ORDER BY key"; sql "$db" "SELECT count(*) FROM items WHERE job_id = $j AND state = 'done'")" \
    "r3|failed|bad_catalog_row
r4|failed|bad_catalog_row
r5|failed|bad_catalog_row
7"
  "$PM" dlq list --db "$db" --job "$j" --json >"$T/dlq-$label.json" 2>/dev/null
  eq "$label: the DLQ lists them as bad_catalog_row" \
    "$(python3 -c "import json; d=json.load(open('$T/dlq-$label.json')); d=d['items'] if isinstance(d, dict) else d; print(sorted((i['key'], i['code']) for i in d))")" \
    "[('r3', 'bad_catalog_row'), ('r4', 'bad_catalog_row'), ('r5', 'bad_catalog_row')]"
  eq "$label: queue rows: 3 failed, 7 done" "$(sql "$db" "SELECT state, count(*) FROM queue WHERE job_id = $j GROUP BY state ORDER BY state")" "done|7
failed|3"
  "$PM" dlq show r5 --db "$db" --job "$j" >"$T/dlq-$label-r5.txt" 2>&1
  check "$label: the DLQ says why (the key of another row)" grep -q 'in a queue row of key' "$T/dlq-$label-r5.txt"
}
hostile "$T/h-sqlite.db" sqlite

if [ -n "${FLEET_SQLITE_ONLY:-}" ]; then done_; fi

# ---- PostgreSQL ----
# (FLEET_PG_AS_SQLITE=1 runs the same sections on an SQLite file: a quick
# check of the tests themselves while the PostgreSQL backend is missing)
if [ -n "${FLEET_PG_AS_SQLITE:-}" ]; then
  PG=$T/pg-as-sqlite.db
else
  if ! pg_start; then
    bad "PostgreSQL server did not start"
    done_
  fi
  ok "PostgreSQL at $PG_URL"
  pg_createdb fleet
  PG=$PG_URL/fleet
fi
agg() { case $PG in postgres*) echo "string_agg($1, ' ' ORDER BY id)" ;; *) echo "group_concat($1, ' ')" ;; esac; }
start_origin lat --latency 150

# ---- 3. 3 workers, 3,000 items, one killed with SIGKILL mid-run ----
N=3000
url_catalog "$T/big.csv" $N b
"$PM" run "$T/big.csv" --out "$T/pg/out" --db "$PG" --enqueue-only --sizes 64 --json >"$T/big.json" 2>"$T/big.err"
eq "pg: enqueue-only of $N records" "$(jq_ "$T/big.json" "d['enqueued']")" "$N"
JB=$(jq_ "$T/big.json" "d['job']")
for w in k1 s2 s3; do
  "$PM" worker --db "$PG" "${NET[@]}" -j 2 --batch 16 --lease 3 --id "$w" --exit-when-idle --json >"$T/$w.json" 2>"$T/$w.err" &
  pids+=($!)
  eval "pid_$w=$!"
done
kill_at=$((300 + RANDOM % 1200))
if wait_done "$PG" "$JB" "$kill_at" 120; then
  held=$(sql "$PG" "SELECT count(*) FROM queue WHERE job_id = $JB AND state = 'claimed' AND lease_owner = 'k1'")
  kill -9 "$pid_k1"
  echo "killed worker k1 with SIGKILL at >= $kill_at items done, holding $held claims"
else
  bad "pg: the fleet did not reach $kill_at items in 120 s"
fi
wait "$pid_k1" 2>/dev/null
wait "$pid_s2"; r2=$?
wait "$pid_s3"; r3=$?
eq "pg: surviving workers exit 0 once idle" "$r2 $r3" "0 0"
eq "pg: items: $N rows, $N keys, all done" "$(sql "$PG" "SELECT count(*), count(DISTINCT key), count(*) FILTER (WHERE state = 'done') FROM items WHERE job_id = $JB")" "$N|$N|$N"
eq "pg: queue: $N rows done" "$(sql "$PG" "SELECT state, count(*) FROM queue WHERE job_id = $JB GROUP BY state")" "done|$N"
eq "pg: every queue row done exactly once" "$(sql "$PG" "SELECT count(*) FROM (SELECT queue_id FROM queue_events WHERE job_id = $JB AND event = 'done' GROUP BY queue_id HAVING count(*) = 1) x")" "$N"
exp=$(sql "$PG" "SELECT count(*) FROM queue_events WHERE job_id = $JB AND event = 'expired' AND worker = 'k1'")
if [ "${held:-0}" -gt 0 ]; then
  check "pg: the killed worker's $held leases expired ($exp expired events)" test "$exp" -ge 1
  key=$(sql "$PG" "SELECT key FROM queue_events WHERE job_id = $JB AND event = 'expired' AND worker = 'k1' LIMIT 1")
  hist=$(sql "$PG" "SELECT $(agg "event || ':' || coalesce(worker, '')") FROM (SELECT * FROM queue_events WHERE job_id = $JB AND key = '$key' ORDER BY id) e")
  echo "history of $key: $hist"
  check "pg: its history: claimed by k1, expired, claimed by a survivor, done" python3 -c "
import re, sys; h = sys.argv[1]
sys.exit(not re.search(r'claimed:k1 expired:k1 .*claimed:s[23] .*done:s[23]', h))" "$hist"
  if "$PM" status --help 2>/dev/null | grep -q -- '--item'; then
    "$PM" status --db "$PG" --job "$JB" --item "$key" >"$T/item.txt" 2>&1
    check "pg: status --job --item shows the expired lease" grep -q expired "$T/item.txt"
  fi
else
  echo "SKIP expired-lease history: k1 held no claim when killed"
fi
eq "pg: no key twice in the workers' manifests" "$(manifest_check "$T/pg/out" "$JB" | awk '{print ($1 == $2)}')" 1
eq "pg: job done" "$(sql "$PG" "SELECT state FROM jobs WHERE id = $JB")" done
lost=$(python3 -c "import json; print(sum(json.load(open(f))['lost'] for f in ['$T/s2.json', '$T/s3.json']))")
echo "survivors: lost $lost (a lease taken over while its result was on the way)"

# ---- 3b. a worker frozen past its lease: its results are lost, not doubled ----
url_catalog "$T/frz.csv" 300 f
"$PM" run "$T/frz.csv" --out "$T/pg/out" --db "$PG" --enqueue-only --sizes 64 --json >"$T/frz.json" 2>/dev/null
JF=$(jq_ "$T/frz.json" "d['job']")
"$PM" worker --db "$PG" "${NET[@]}" -j 1 --batch 16 --lease 2 --id frozen --exit-when-idle --json >"$T/frozen.json" 2>"$T/frozen.err" &
fp=$!
pids+=($fp)
wait_done "$PG" "$JF" 10 60 || bad "pg: the worker to freeze did not start"
kill -STOP "$fp"
fheld=$(sql "$PG" "SELECT count(*) FROM queue WHERE job_id = $JF AND state = 'claimed' AND lease_owner = 'frozen'")
echo "froze worker 'frozen' (SIGSTOP) holding $fheld claims"
"$PM" worker --db "$PG" "${NET[@]}" -j 2 --lease 2 --id thaw --exit-when-idle --json >"$T/thaw.json" 2>"$T/thaw.err" &
thp=$!
pids+=($thp)
wait_done "$PG" "$JF" 300 120 || echo "note: not all 300 done while 'frozen' was stopped (it may hold a row lock)"
kill -CONT "$fp"
wait "$fp"; rf=$?
wait "$thp"; rt=$?
eq "pg: frozen worker and its successor exit 0" "$rf $rt" "0 0"
eq "pg: frozen: 300 items done, each queue row done exactly once" \
  "$(sql "$PG" "SELECT count(*) FILTER (WHERE state = 'done') FROM items WHERE job_id = $JF"; sql "$PG" "SELECT count(*) FROM (SELECT queue_id FROM queue_events WHERE job_id = $JF AND event = 'done' GROUP BY queue_id HAVING count(*) = 1) x")" "300
300"
flost=$(jq_ "$T/frozen.json" "d['lost']")
if [ "${fheld:-0}" -gt 0 ]; then
  check "pg: frozen: its leases expired while it was stopped" test "$(sql "$PG" "SELECT count(*) FROM queue_events WHERE job_id = $JF AND event = 'expired' AND worker = 'frozen'")" -ge 1
  check "pg: frozen: results of items taken over are counted lost ($flost), not written" test "$flost" -ge 1
fi
eq "pg: frozen + successor: their done add up to 300 (no item counted done twice)" \
  "$(python3 -c "import json; a, b = (json.load(open(f)) for f in ['$T/frozen.json', '$T/thaw.json']); print(a['done'] + b['done'])")" 300

# ---- 4. SIGTERM drains ----
url_catalog "$T/term.csv" 400 t
"$PM" run "$T/term.csv" --out "$T/pg/out" --db "$PG" --enqueue-only --sizes 64 --json >"$T/term.json" 2>/dev/null
JT=$(jq_ "$T/term.json" "d['job']")
"$PM" worker --db "$PG" "${NET[@]}" -j 1 --batch 32 --id term1 --json >"$T/term1.json" 2>"$T/term1.err" &
tp=$!
pids+=($tp)
wait_done "$PG" "$JT" 20 60 || bad "pg: the SIGTERM worker did not start working"
"$PM" run "$T/term.csv" --out "$T/pg/out" --quiet >/dev/null 2>"$T/local.err"
eq "pg: a local run on the workers' output root is refused (locked)" "$? $(grep -c 'another pixmill run is using' "$T/local.err")" "4 1"
kill -TERM "$tp"
wait "$tp"
eq "pg: SIGTERM: worker exits 0" $? 0
eq "pg: SIGTERM: it holds no claim afterwards" "$(sql "$PG" "SELECT count(*) FROM queue WHERE lease_owner = 'term1' AND state = 'claimed'")" 0
rel=$(sql "$PG" "SELECT count(*) FROM queue_events WHERE job_id = $JT AND event = 'released' AND worker = 'term1'")
check "pg: SIGTERM: its unstarted claims were released ($rel released events)" test "$rel" -ge 1
eq "pg: SIGTERM: summary counts the released claims" "$(jq_ "$T/term1.json" "d['released']")" "$rel"
left=$(sql "$PG" "SELECT count(*) FROM queue WHERE job_id = $JT AND state = 'queued'")
check "pg: SIGTERM: work left in the queue ($left rows)" test "$left" -ge 1
"$PM" worker --db "$PG" "${NET[@]}" -j 2 --id term2 --exit-when-idle >/dev/null 2>"$T/term2.err"
eq "pg: SIGTERM: another worker finishes: 400 done, once each" "$(sql "$PG" "SELECT count(*), count(DISTINCT key), count(*) FILTER (WHERE state = 'done') FROM items WHERE job_id = $JT")" "400|400|400"
eq "pg: SIGTERM: no released row was ever done twice" "$(sql "$PG" "SELECT count(*) FROM (SELECT queue_id FROM queue_events WHERE job_id = $JT AND event = 'done' GROUP BY queue_id HAVING count(*) > 1) x")" 0

# ---- 5. priority: a 1-item job jumps ahead of a bulk job ----
url_catalog "$T/bulk.csv" 600 u
"$PM" run "$T/bulk.csv" --out "$T/pg/out" --db "$PG" --enqueue-only --sizes 64 --json >"$T/bulk.json" 2>/dev/null
JU=$(jq_ "$T/bulk.json" "d['job']")
"$PM" worker --db "$PG" "${NET[@]}" -j 1 --batch 8 --id prio1 --exit-when-idle >/dev/null 2>"$T/prio1.err" &
pp=$!
pids+=($pp)
wait_done "$PG" "$JU" 30 60 || bad "pg: the bulk job did not start"
mkdir -p "$T/one"
echo "image" >"$T/one/cat.csv"
echo "$ROOT/examples/images/tuxpaint_jellyfish.jpg" >>"$T/one/cat.csv"
"$PM" run "$T/one/cat.csv" --out "$T/pg/out" --db "$PG" --enqueue-only --sizes 64 --priority 10 --json >"$T/one.json" 2>/dev/null
J1=$(jq_ "$T/one.json" "d['job']")
bulk_left=$(sql "$PG" "SELECT count(*) FROM queue WHERE job_id = $JU AND state = 'queued'")
wait "$pp"
eq "pg: priority: the worker exits 0" $? 0
eq "pg: priority: both jobs done" "$(sql "$PG" "SELECT state FROM jobs WHERE id IN ($JU, $J1) ORDER BY id")" "done
done"
if [ "$bulk_left" -gt 0 ]; then
  eq "pg: priority: the 1-item job (enqueued with $bulk_left bulk rows still queued) finished first" \
    "$(sql "$PG" "SELECT CASE WHEN (SELECT finished FROM jobs WHERE id = $J1) < (SELECT finished FROM jobs WHERE id = $JU) THEN 'yes' ELSE 'no' END")" yes
  check "pg: priority: the worker paused the bulk job for it" grep -q "paused for a job of higher priority" "$T/prio1.err"
else
  echo "SKIP priority order: the bulk job had no row left when the 1-item job came"
fi

# ---- 6. PostgreSQL: a broken queue row fails alone ----
hostile "$PG" pg

eq "no sanitizer report in any worker's output" "$(cat "$T"/*.err 2>/dev/null | grep -c -E 'Sanitizer|runtime error')" 0

done_
