#!/usr/bin/env bash
# test_pool.sh — serve's store connection pool (--db-pool) on a real
# PostgreSQL server (tests/store/pg_lib.sh: Debian's binaries, a temp dir,
# loopback, stopped at the end):
#   0. the pool's unit test (BUILD/tests/test_pool) with PIXMILL_TEST_PG:
#      its cases on SQLite and on this server;
#   1. the example catalog is run into the store;
#   2. `serve --db-pool 1 --http-threads 4 --workers 1` answers 160
#      concurrent API requests (8 at a time, store-backed routes) with 200
#      every one, while pg_stat_activity is sampled: pixmill's sessions on
#      the database never exceed 1 (the pool) + 1 (the upload worker) + 1
#      (the job scheduler), where one connection per HTTP thread would
#      have been up to 4 + 2;
#   3. /metrics reports the pool: bound 1, at most 1 open, opened once,
#      no timeouts (the waits are shown);
#   3b. the pool exhausted (the one connection blocked on a table lock
#      another session holds): the other request gets 503 "overloaded"
#      with Retry-After after the pool's 5 s wait, counted as a timeout;
#      /metrics meanwhile answers 200 (without the store's gauges);
#   4. the same on SQLite (a file store): all answer 200, metrics agree.
# Usage: tests/serve/test_pool.sh [BUILD_DIR] (build or build-asan)
# shellcheck shell=bash
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
PM=$PWD/$B/pixmill
. tests/cli/lib.sh
. tests/store/pg_lib.sh
SRV_PID= SAMPLER=
trap 'pg_suite_cleanup "$SAMPLER" "$SRV_PID"' EXIT

pg_start_or_exit

# ---- 0. the unit test on both backends ----
pg_unit test_pool "$B/tests/test_pool"
grep -E 'connections seen open' "$T/unit.log"

pg_createdb pool
PGDB=$PG_URL/pool
SQDB=$T/pool.db

# serve_on DB TAG: serve --db-pool 1 on DB in the background (SRV_PID),
# its URL in SURL once /health/ready answers 200
serve_on() {
  rm -f "$T/port"
  "$PM" serve --listen 127.0.0.1:0 --port-file "$T/port" --db "$1" \
    --data "$T/srv-$2" --db-pool 1 --http-threads 4 --workers 1 \
    >"$T/serve-$2.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 300); do [ -s "$T/port" ] && break; sleep 0.1; done
  SURL="http://127.0.0.1:$(head -n 1 "$T/port" 2>/dev/null)"
  for _ in $(seq 300); do
    [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$SURL/health/ready")" = 200 ] && break; sleep 0.1
  done
}
serve_stop() {
  kill "$SRV_PID"; wait "$SRV_PID"; local rc=$?; SRV_PID=
  eq "serve: clean exit after SIGTERM ($1)" "$rc" 0
}
# storm TAG: 160 requests on store-backed routes, 8 at a time; each
# answer's status code on its own line in $T/codes.TAG
storm() {
  local paths=(/api/jobs /api/images "/api/search/text?q=fruit" /api/failed
    /metrics /api/jobs/1 /api/jobs/1/items "/api/images?q=basket")
  for i in $(seq 20); do for p in "${paths[@]}"; do echo "$SURL$p"; done; done |
    xargs -P 8 -n 1 curl -s -m 30 -o /dev/null -w '%{http_code}\n' >"$T/codes.$1"
}
metric() { # metric NAME{LABELS}: its value in the last scrape ($T/metrics)
  awk -v n="$1" '$1 == n { print $2 }' "$T/metrics"
}

"$PM" run examples/catalog.csv --db "$PGDB" --out "$T/out-pg" >"$T/run.pg" 2>&1
eq "run into PostgreSQL" "$?" 0

# ---- PostgreSQL ----
serve_on "$PGDB" pg
grep -q '1 store connections for them' "$T/serve-pg.log" &&
  ok "serve logs its pool size" || bad "serve log: $(grep serving "$T/serve-pg.log")"
# sample pixmill's sessions on the database while the storm runs
( while :; do
    pg_psql postgres "SELECT count(*) FROM pg_stat_activity WHERE datname = 'pool' AND application_name = 'pixmill'"
    sleep 0.05
  done >"$T/sessions" 2>/dev/null ) &
SAMPLER=$!
storm pg
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null; SAMPLER=
eq "PostgreSQL: every request answered" "$(wc -l <"$T/codes.pg")" 160
eq "PostgreSQL: every answer 200 (one store connection, 4 HTTP threads)" \
  "$(grep -vc '^200$' "$T/codes.pg")" 0
most=$(sort -n "$T/sessions" | tail -n 1)
samples=$(wc -l <"$T/sessions")
echo "  pg_stat_activity: $samples samples, at most $most pixmill sessions"
check "pg_stat_activity sampled during the storm" [ "$samples" -ge 1 ]
check "at most 3 pixmill sessions (pool 1 + upload worker + scheduler): $most" [ "${most:-99}" -le 3 ]
curl -s -m 10 "$SURL/metrics" >"$T/metrics"
eq "metrics: pool bound" "$(metric pixmill_db_pool_max)" 1
check "metrics: at most 1 pool connection open" \
  [ "$(metric 'pixmill_db_pool_connections{state="open"}')" -le 1 ]
eq "metrics: the pool opened one connection" "$(metric pixmill_db_pool_opens_total)" 1
eq "metrics: no borrow timed out" "$(metric 'pixmill_db_pool_errors_total{reason="timeout"}')" 0
# how many waited depends on timing: shown, not checked
echo "  waits $(metric pixmill_db_pool_waits_total), waited $(metric pixmill_db_pool_wait_seconds_total) s"

# The pool exhausted: another session holds an exclusive lock on jobs, so
# the request that has the one connection blocks on it; the other waits
# for the pool past its 5 s and gets 503 "overloaded" with Retry-After.
# Which of the two gets which depends on who asks first: exactly one 503.
PGAPPNAME=locker "$PG_BIN/psql" -X -q "$PG_URL/pool" \
  -c "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT" >/dev/null 2>&1 &
LOCKER=$!
for _ in $(seq 100); do
  [ "$(pg_psql pool "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'jobs' AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ] && break
  sleep 0.1
done
curl -s -m 60 -D "$T/h1" -o "$T/b1" -w '%{http_code}\n' "$SURL/api/jobs" >"$T/c1" &
C1=$!
sleep 1
curl -s -m 60 -D "$T/h2" -o "$T/b2" -w '%{http_code}\n' "$SURL/api/jobs/1" >"$T/c2" &
C2=$!
# the 503 comes after the pool's 5 s wait; then the lock goes
for _ in $(seq 300); do grep -qs 503 "$T/c1" "$T/c2" && break; sleep 0.1; done
# /metrics meanwhile: it too waits for the pool in vain, and then answers
# 200 without the store's gauges (the pool's figures show why)
eq "pool exhausted: /metrics still answers" \
  "$(curl -s -m 60 -o "$T/metrics" -w '%{http_code}' "$SURL/metrics")" 200
eq "metrics: the one connection in use" "$(metric 'pixmill_db_pool_connections{state="in_use"}')" 1
eq "metrics: two borrows timed out (the request's and the scrape's)" \
  "$(metric 'pixmill_db_pool_errors_total{reason="timeout"}')" 2
pg_psql postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locker'" >/dev/null
wait "$C1" "$C2"; wait "$LOCKER" 2>/dev/null
eq "pool exhausted: one 503 and one 200" "$(cat "$T/c1" "$T/c2" | sort | tr '\n' ' ')" "200 503 "
busy=$(grep -l 503 "$T/c1" "$T/c2" | head -n 1 | sed 's/c\([12]\)$/\1/')
busy=${busy##*/}
check "the 503 says Retry-After" grep -qi '^Retry-After: 1' "$T/h$busy"
check "the 503 is a JSON error \"overloaded\" naming the store connections" \
  grep -q '"code":"overloaded".*store connections are busy' "$T/b$busy"
curl -s -m 10 -o /dev/null -w '%{http_code}' "$SURL/api/jobs" >"$T/c3"
eq "after the lock: answers again" "$(cat "$T/c3")" 200
curl -s -m 10 "$SURL/metrics" >"$T/metrics"
eq "metrics after the lock: still two timeouts" "$(metric 'pixmill_db_pool_errors_total{reason="timeout"}')" 2
eq "metrics after the lock: still one connection opened" "$(metric pixmill_db_pool_opens_total)" 1
serve_stop pg

# ---- SQLite ----
"$PM" run examples/catalog.csv --db "$SQDB" --out "$T/out-sq" >"$T/run.sq" 2>&1
eq "run into SQLite" "$?" 0
serve_on "$SQDB" sq
storm sq
eq "SQLite: every answer 200" "$(grep -vc '^200$' "$T/codes.sq")" 0
eq "SQLite: every request answered" "$(wc -l <"$T/codes.sq")" 160
curl -s -m 10 "$SURL/metrics" >"$T/metrics"
eq "SQLite metrics: the pool opened one connection" "$(metric pixmill_db_pool_opens_total)" 1
eq "SQLite metrics: no borrow timed out" "$(metric 'pixmill_db_pool_errors_total{reason="timeout"}')" 0
serve_stop sq
# ASan/UBSan builds: nothing reported by either server
check "no sanitizer reports in the server logs" \
  bash -c "! grep -qE 'Sanitizer|runtime error' '$T'/serve-*.log"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
