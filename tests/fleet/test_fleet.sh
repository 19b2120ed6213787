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
#     1b. serve --enqueue: POST enqueues (priority), a worker runs it
#     1c. transient failures go back to the queue, 3 claims at most
#     1d. DELETE of a job on serve --enqueue stops the worker's claims
#     1e. --pipelines; a job whose output root is missing is skipped
#     1f. --listen: /metrics (promtool, counters = the job's items) and
#         /health (200, fields); 404, 405, hostile requests; Redis
#         unreachable: degraded, the job done all the same
#     2. a queue row with broken record_json fails alone (bad_catalog_row
#        in the DLQ), the rest is done
#   PostgreSQL:
#     3. 3 workers on a 3,000-item catalog, one killed with SIGKILL at a
#        random moment mid-run: every item done exactly once, the killed
#        worker's expired lease in the attempt history
#     3b. a worker frozen (SIGSTOP) past its lease: its results are
#        counted lost, not written; every item done once
#     4. SIGTERM drains: exit 0, unstarted claims released, none lost;
#        a local run on the workers' output root is refused
#     5. priority: a 1-item job enqueued at a higher priority while a bulk
#        job runs finishes first
#     6. hostile row, as in 2
#     7. PostgreSQL stopped under a worker with --listen: /health 503,
#        pixmill_worker_store_up 0; started again: 200, 1
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
. tests/fleet/harness.sh
fh_traps
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
start_origin() { # start_origin NAME [OPTIONS]: the test origin (fh_origin); sets PORT
  PIXMILL_ORIGIN=$ORIGIN fh_origin "$@" || { bad "origin did not start"; done_; }
  PORT=$FH_PORT
}
url_catalog() { # url_catalog FILE N TAG: N rows of distinct URLs over the example images
  fh_catalog "http://127.0.0.1:$PORT" "$2" "$3" >"$1"
}
start_serve() { # start_serve NAME: serve --enqueue on $T/NAME.db; sets SP (its pid) and A (its base URL)
  "$PM" serve --enqueue --db "$T/$1.db" --data "$T/$1" --listen 127.0.0.1:0 --port-file "$T/$1.port" >"$T/$1.log" 2>&1 &
  SP=$!
  WPIDS+=($SP)
  for _ in $(seq 100); do [ -s "$T/$1.port" ] && break; sleep 0.1; done
  A="http://127.0.0.1:$(cat "$T/$1.port")"
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
start_serve sv
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
kill "$SP"; wait "$SP" 2>/dev/null
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

# ---- 1d. serve --enqueue: cancelling a job stops the workers' claims ----
start_serve cx
python3 - "$PORT" >"$T/cx.csv" <<'EOF'
import os, sys
imgs = sorted(os.listdir("examples/images"))
print("image")
for i in range(400):
    print(f"http://127.0.0.1:{sys.argv[1]}/file/{imgs[i % 5]}?tag=cx{i}&latency=300")
EOF
curl -s -o "$T/cx.json" -X POST --data-binary @"$T/cx.csv" -H 'Content-Type: text/csv' "$A/api/jobs" 2>/dev/null
JC=$(jq_ "$T/cx.json" "d['id']")
"$PM" worker --db "$T/cx.db" "${NET[@]}" -j 1 --batch 8 --id cx1 --exit-when-idle >/dev/null 2>"$T/cx1.err" &
wp=$!
WPIDS+=($wp)
wait_done "$T/cx.db" "$JC" 20 60 || bad "cancel: the worker did not start"
curl -s -o "$T/cxdel.json" -w '%{http_code}' -X DELETE "$A/api/jobs/$JC" >"$T/cxdel.code" 2>/dev/null
eq "cancel: DELETE /api/jobs/ID answers 202, cancelled" "$(cat "$T/cxdel.code") $(jq_ "$T/cxdel.json" "d['state']")" "202 cancelled"
wait "$wp"
eq "cancel: the worker stops claiming and exits 0 (nothing else to run)" "$? $(grep -c 'was cancelled: no more claims' "$T/cx1.err")" "0 1"
cdone=$(sql "$T/cx.db" "SELECT count(*) FROM items WHERE job_id = $JC")
check "cancel: the rest of the job was not done ($cdone of 400 recorded)" test "$cdone" -lt 400
eq "cancel: nothing of it is claimed afterwards" "$(sql "$T/cx.db" "SELECT count(*) FROM queue WHERE job_id = $JC AND state = 'claimed'")" 0
eq "cancel: the job stays cancelled" "$(sql "$T/cx.db" "SELECT state FROM jobs WHERE id = $JC")" cancelled
kill "$SP"; wait "$SP" 2>/dev/null

# ---- 1e. --pipelines, and a job whose output root is not on this machine ----
mkdir -p "$T/pl"
{ echo image; for f in examples/images/*; do echo "$ROOT/$f"; done; } >"$T/pl/cat.csv"
"$PM" run "$T/pl/cat.csv" --out "$T/pl/out" --db "$T/pl.db" --enqueue-only --priority 5 --json >"$T/pl-th.json" 2>/dev/null
"$PM" run "$T/pl/cat.csv" --out "$T/pl/out" --db "$T/pl.db" --pipeline hashes --enqueue-only --json >"$T/pl-ha.json" 2>/dev/null
JTH=$(jq_ "$T/pl-th.json" "d['job']") JHA=$(jq_ "$T/pl-ha.json" "d['job']")
"$PM" worker --db "$T/pl.db" --pipelines hashes,ocr -j 1 --id pl1 --exit-when-idle >/dev/null 2>"$T/pl1.err"
eq "--pipelines: exits 0 once only other pipelines' work is left" $? 0
eq "--pipelines hashes: the hashes job done (though the thumbnails job is first in priority), thumbnails untouched" \
  "$(sql "$T/pl.db" "SELECT id, state FROM jobs ORDER BY id"; sql "$T/pl.db" "SELECT count(*) FROM items WHERE job_id = $JTH")" "$JTH|queued
$JHA|done
0"
grep -q "nothing this worker can run is queued" "$T/pl1.err" && ok "--pipelines: says why it exits" || bad "--pipelines: says why it exits"
"$PM" worker --db "$T/pl.db" --out "$T/not-mounted" -j 1 --id pl2 --exit-when-idle >/dev/null 2>"$T/pl2.err"
eq "output root missing on this machine: the job is skipped, exit 0" "$? $(grep -c 'is not on this machine' "$T/pl2.err") $(sql "$T/pl.db" "SELECT count(*) FROM items WHERE job_id = $JTH")" "0 1 0"
check "output root missing: nothing created there" test ! -e "$T/not-mounted"
"$PM" worker --db "$T/pl.db" -j 1 --id pl3 --exit-when-idle >/dev/null 2>"$T/pl3.err"
eq "a worker for any pipeline then does the thumbnails job" "$(sql "$T/pl.db" "SELECT state FROM jobs WHERE id = $JTH")" done

# ---- 1f. --listen: /metrics and /health of a worker (SQLite) ----
poll() { # poll SECONDS CMD...: true once CMD succeeds, false when the time is up
  local i
  for i in $(seq $(($1 * 10))); do "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
sample() { # sample FILE SERIES: the value of one series in a scrape, "" if none
  awk -v k="$2" '$1 == k {print $2}' "$1"
}
samples() { # samples FILE SERIES...: their values, space-separated
  local f=$1 k
  shift
  for k in "$@"; do printf '%s ' "$(sample "$f" "$k")"; done
}
listen_worker() { # listen_worker NAME DB [OPTIONS]: a worker with --listen; sets LP (its pid) and LA (its base URL)
  rm -f "$T/$1.port"
  "$PM" worker --db "$2" -j 1 --lease 3 --id "$1" --listen 127.0.0.1:0 --port-file "$T/$1.port" "${@:3}" --json >"$T/$1.json" 2>"$T/$1.err" &
  LP=$!
  WPIDS+=($LP)
  poll 10 test -s "$T/$1.port" || bad "$1: no port file"
  LA="http://127.0.0.1:$(head -n 1 "$T/$1.port" 2>/dev/null)"
}
scrape() { # scrape URL OUT: GET URL into OUT, prints the status code
  curl -s -o "$2" -w '%{http_code}' "$1" 2>/dev/null
}
code_is() { # code_is URL CODE: GET URL answers CODE
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = "$2" ]
}
runs_done() { # runs_done URL N: the worker at URL has finished N job runs
  [ "$(curl -s "$1/metrics" | awk '$1 == "pixmill_worker_job_runs_total" {print $2}')" = "$2" ]
}
no_leases() { # no_leases URL: the worker at URL held no claim at its last lease renewal
  [ "$(curl -s "$1/metrics" | awk '$1 == "pixmill_worker_leases_held" {print $2}')" = 0 ]
}
mkdir -p "$T/ls"
{ echo image; for f in examples/images/*; do echo "$ROOT/$f"; done; } >"$T/ls/cat.csv"
nl=$(($(wc -l <"$T/ls/cat.csv") - 1))
"$PM" run "$T/ls/cat.csv" --out "$T/ls/out" --enqueue-only --json >"$T/ls.json" 2>/dev/null
listen_worker lw1 "$T/ls/out/pixmill.db"
poll 60 runs_done "$LA" 1 || bad "--listen: the worker did not finish its job run"
eq "--listen: GET /metrics answers 200" "$(scrape "$LA/metrics" "$T/lw1.prom")" 200
if command -v promtool >/dev/null; then
  promtool check metrics <"$T/lw1.prom" >"$T/lw1.promtool" 2>&1
  eq "--listen: promtool check metrics accepts /metrics" "$? $(head -c 300 "$T/lw1.promtool")" "0 "
else
  bad "promtool is not installed (needed to check /metrics)"
fi
eq "--listen: claims, worker items done, engine items done = the job's $nl items; 0 failed, lost, requeued" \
  "$(samples "$T/lw1.prom" pixmill_worker_claims_total 'pixmill_worker_items_total{result="done"}' 'pixmill_items_total{result="done"}' \
    'pixmill_worker_items_total{result="failed"}' 'pixmill_worker_items_total{result="lost"}' 'pixmill_worker_items_total{result="requeued"}')" \
  "$nl $nl $nl 0 0 0 "
eq "--listen: idle: current job 0, store up 1, 1 job run, 0 store errors, Redis off (0)" \
  "$(samples "$T/lw1.prom" pixmill_worker_current_job pixmill_worker_store_up pixmill_worker_job_runs_total pixmill_worker_store_errors_total pixmill_redis_up)" \
  "0 1 1 0 0 "
eq "--listen: nothing reaped, leases held exported" "$(samples "$T/lw1.prom" pixmill_worker_reaped_total) $(grep -c '^pixmill_worker_leases_held [0-9]' "$T/lw1.prom")" "0  1"
# leases_held is the count at the last renewal (every third of --lease):
# the job's last claims may still be in it just after the run ended
poll 10 no_leases "$LA"
eq "--listen: GET /health answers 200" "$(scrape "$LA/health" "$T/lw1.health")" 200
eq "--listen: /health: ok, worker, store up at its URL, Redis off, no job, uptime, leases" \
  "$(jq_ "$T/lw1.health" "d['status'], d['worker'], d['store']['state'], d['store']['url'] == '$T/ls/out/pixmill.db', d['redis'], d['job'], d['uptime_s'] > 0, d['leases_held']")" \
  "ok lw1 up True off None True 0"
eq "--listen: an unknown path answers 404" "$(scrape "$LA/api/jobs" /dev/null)" 404
eq "--listen: POST /metrics answers 405 with Allow: GET, HEAD" \
  "$(curl -s -D - -o /dev/null -X POST --data-binary 'x=1' "$LA/metrics" 2>/dev/null | tr -d '\r' | awk 'NR == 1 {print $2} tolower($1) == "allow:" {$1 = ""; print}' | tr '\n' ' ')" "405  GET, HEAD "
eq "--listen: HEAD /health answers 200" "$(curl -s -I -o /dev/null -w '%{http_code}' "$LA/health" 2>/dev/null)" 200
# hostile requests: a 64 KB path, garbage instead of HTTP, a connection left
# half-open; /health answers afterwards
python3 - "${LA#http://127.0.0.1:}" >"$T/lw1.hostile" 2>&1 <<'PY'
import socket, sys
port = int(sys.argv[1])
def send(data):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        return s.recv(64).split(b"\r\n")[0].decode("latin-1") or "closed"
    except OSError:
        return "closed"
    finally:
        s.close()
print(send(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
print(send(b"\x00\xff garbage \r\n\r\n"))
half = socket.create_connection(("127.0.0.1", port), timeout=10)
half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
print(send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
half.close()
PY
check "--listen: hostile requests refused, /health answers after them ($(tr '\n' '|' <"$T/lw1.hostile"))" grep -q '^HTTP/1.1 200' "$T/lw1.hostile"
kill -TERM "$LP"
wait "$LP"
eq "--listen: the worker exits 0 on SIGTERM" $? 0
eq "--listen: its summary agrees ($nl done)" "$(jq_ "$T/lw1.json" "d['done']")" "$nl"
check "--listen: the port is closed after exit" python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0)" "${LA#http://127.0.0.1:}"
# Redis configured but unreachable: the worker runs on, degraded
dead=$(pg_free_port)
mkdir -p "$T/ls2"
cp "$T/ls/cat.csv" "$T/ls2/cat.csv"
"$PM" run "$T/ls2/cat.csv" --out "$T/ls2/out" --enqueue-only --json >"$T/ls2.json" 2>/dev/null
JL2=$(jq_ "$T/ls2.json" "d['job']")
listen_worker lw2 "$T/ls2/out/pixmill.db" --redis "redis://:s3cretpw@127.0.0.1:$dead"
poll 60 runs_done "$LA" 1 || bad "--listen, Redis down: the worker did not finish its job run"
eq "--listen, Redis down: the job is done all the same ($nl items)" \
  "$(sql "$T/ls2/out/pixmill.db" "SELECT state FROM jobs WHERE id = $JL2"; sql "$T/ls2/out/pixmill.db" "SELECT count(*) FROM items WHERE job_id = $JL2 AND state = 'done'")" "done
$nl"
eq "--listen, Redis down: /health answers 200" "$(scrape "$LA/health" "$T/lw2.health")" 200
eq "--listen, Redis down: /health says degraded, store up, redis down (with why)" \
  "$(jq_ "$T/lw2.health" "d['status'], d['store']['state'], d['redis'], d['redis_detail']['state'], d['redis_detail']['last_error'] != ''")" "degraded up down down True"
scrape "$LA/metrics" "$T/lw2.prom" >/dev/null
eq "--listen, Redis down: pixmill_redis_up 0, store up 1, $nl items done" \
  "$(samples "$T/lw2.prom" pixmill_redis_up pixmill_worker_store_up 'pixmill_worker_items_total{result="done"}')" "0 1 $nl "
eq "--listen, Redis down: no password in /health nor /metrics" "$(cat "$T/lw2.health" "$T/lw2.prom" | grep -c s3cretpw)" 0
kill -TERM "$LP"
wait "$LP"
eq "--listen, Redis down: the worker exits 0 on SIGTERM" $? 0
listen_worker $'lw\xff' "$T/ls2/out/pixmill.db"
eq "--listen: an --id that is not UTF-8: /health 200, worker null" "$(scrape "$LA/health" "$T/lw4.health") $(jq_ "$T/lw4.health" "d['worker'], d['status']")" "200 None ok"
kill -TERM "$LP"
wait "$LP"
"$PM" worker --db "$T/ls2/out/pixmill.db" --listen 127.0.0.1:99999 >/dev/null 2>"$T/lw3.err"
eq "--listen: a bad port is a usage error" "$? $(grep -c 'bad port' "$T/lw3.err")" "2 1"

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
  # r6: a poison record, claimed 6 times already by workers that died
  sql "$db" "UPDATE queue SET attempts = 6 WHERE job_id = $j AND key = 'r6'" >/dev/null
  "$PM" worker --db "$db" --exit-when-idle -j 1 --id "h-$label" >/dev/null 2>"$T/h-$label.err"
  eq "$label: worker exits 0 with broken rows in the queue" $? 0
  eq "$label: broken rows (not JSON, an unknown field, another row's record) and the poison record failed, the other 6 done" \
    "$(sql "$db" "SELECT key, state, code FROM items WHERE job_id = $j AND state <> 'done' ORDER BY key"; sql "$db" "SELECT count(*) FROM items WHERE job_id = $j AND state = 'done'")" \
    "r3|failed|bad_catalog_row
r4|failed|bad_catalog_row
r5|failed|bad_catalog_row
r6|failed|internal
6"
  "$PM" dlq list --db "$db" --job "$j" --json >"$T/dlq-$label.json" 2>/dev/null
  eq "$label: the DLQ lists them as bad_catalog_row" \
    "$(python3 -c "import json; d=json.load(open('$T/dlq-$label.json')); d=d['items'] if isinstance(d, dict) else d; print(sorted((i['key'], i['code']) for i in d))")" \
    "[('r3', 'bad_catalog_row'), ('r4', 'bad_catalog_row'), ('r5', 'bad_catalog_row'), ('r6', 'internal')]"
  eq "$label: queue rows: 4 failed, 6 done" "$(sql "$db" "SELECT state, count(*) FROM queue WHERE job_id = $j GROUP BY state ORDER BY state")" "done|6
failed|4"
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
  fh_pg fleet || { bad "PostgreSQL server did not start"; done_; }
  ok "PostgreSQL at $PG_URL"
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
  WPIDS+=($!)
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
WPIDS+=($fp)
wait_done "$PG" "$JF" 10 60 || bad "pg: the worker to freeze did not start"
kill -STOP "$fp"
fheld=$(sql "$PG" "SELECT count(*) FROM queue WHERE job_id = $JF AND state = 'claimed' AND lease_owner = 'frozen'")
echo "froze worker 'frozen' (SIGSTOP) holding $fheld claims"
"$PM" worker --db "$PG" "${NET[@]}" -j 2 --lease 2 --id thaw --exit-when-idle --json >"$T/thaw.json" 2>"$T/thaw.err" &
thp=$!
WPIDS+=($thp)
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
WPIDS+=($tp)
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
WPIDS+=($pp)
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

# ---- 7. PostgreSQL goes away under a worker with --listen ----
if [ -z "${FLEET_PG_AS_SQLITE:-}" ]; then
  listen_worker pgl "$PG" "${NET[@]}"
  poll 30 code_is "$LA/health" 200 || bad "pg --listen: /health is not 200 at the start"
  pg_down fast
  poll 60 code_is "$LA/health" 503
  eq "pg --listen: PostgreSQL stopped: /health answers 503" $? 0
  scrape "$LA/health" "$T/pgl.health" >/dev/null
  eq "pg --listen: /health says degraded, store down, at its URL" \
    "$(jq_ "$T/pgl.health" "d['status'], d['store']['state'], d['store']['url'] == '$PG'")" "degraded down True"
  scrape "$LA/metrics" "$T/pgl.prom" >/dev/null
  eq "pg --listen: pixmill_worker_store_up 0" "$(samples "$T/pgl.prom" pixmill_worker_store_up)" "0 "
  check "pg --listen: store errors counted" test "$(sample "$T/pgl.prom" pixmill_worker_store_errors_total)" -ge 1
  pg_up || bad "pg --listen: PostgreSQL did not start again"
  poll 90 code_is "$LA/health" 200
  eq "pg --listen: PostgreSQL back: /health answers 200 again" $? 0
  scrape "$LA/metrics" "$T/pgl2.prom" >/dev/null
  eq "pg --listen: pixmill_worker_store_up 1 again" "$(samples "$T/pgl2.prom" pixmill_worker_store_up)" "1 "
  kill -TERM "$LP"
  wait "$LP"
  eq "pg --listen: the worker exits 0 on SIGTERM" $? 0
fi

eq "no sanitizer report in any worker's output" "$(cat "$T"/*.err 2>/dev/null | grep -c -E 'Sanitizer|runtime error')" 0

done_
