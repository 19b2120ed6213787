#!/usr/bin/env bash
# test_redis.sh — a fleet sharing an optional Redis (--redis,
# docs/REDIS.md), against real redis-server processes started here
# (tests/redis/redis_lib.sh: loopback, temp folder, stopped at the end) and
# the test origin (BUILD/tests/origin, tests/fetch/origin.c):
#   0. the unit tests of src/fleet/ against the server (test_redis with
#      PIXMILL_TEST_REDIS)
#   1. shared rate limit: 3 `pixmill run` at once, different catalogs, the
#      same origin host, --per-host-rps R: with --redis the origin sees at
#      most R + burst (+2 of tolerance) requests in any 1-s window;
#      without, the same 3 runs go well past it (so the check can fail)
#   2. redis-server killed (kill -9) mid-run, or stopped (SIGSTOP: it
#      accepts connections but never answers): the runs finish every item
#      on their local limits and their summaries say DEGRADED
#   3. a bad URL (usage error), a wrong password, nothing listening: a
#      clear error or a clear degraded warning, never a crash, never the
#      password in any output
#   4. shared cache: a second run on another output root (same store:
#      SQLite, then PostgreSQL when its binaries are there) gets Redis hits
#      and the same results as a run without Redis; a store made again at
#      the same path gets no stale hits
#   5. progress pub/sub: `pixmill status --watch --redis` prints the
#      writer's messages live
#   6. serve --redis: /health says "redis": up/down, /metrics has
#      pixmill_redis_up and the fallbacks counter, /api/fleet/events
#      streams the fleet's messages
# Usage: tests/redis/test_redis.sh build/pixmill
# Ends with "redis: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_redis.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$PM")
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/redis/redis_lib.sh"
ORIGIN=${PIXMILL_ORIGIN:-$BUILD/tests/origin}
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

opids=()
cleanup() {
  for p in "${opids[@]}"; do kill "$p" 2>/dev/null; done
  redis_stop_all
  declare -F pg_stop >/dev/null && pg_stop
  rm -rf "$T"
}
trap cleanup EXIT
finish() { echo "redis: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

start_origin() { # start_origin NAME [OPTIONS]: starts an origin; sets PORT
  "$ORIGIN" --root "$ROOT/examples/images" --die-with-parent --port-file "$T/$1.port" "${@:2}" 0 >/dev/null 2>"$T/$1.err" &
  opids+=($!)
  PORT=
  for _ in $(seq 50); do PORT=$(head -n 1 "$T/$1.port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
  [ -n "$PORT" ] || { bad "origin did not start: $(cat "$T/$1.err" 2>/dev/null)"; finish; }
}
ostat() { # ostat EXPR: EXPR over d, the origin's /count JSON
  python3 -c "import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]+'/count')); print($1)" "$B"; }
ostat_reset() { curl -s -o /dev/null "$B/stats/reset"; }
catalog() { # catalog FILE TAG N: N rows of distinct URLs (same host)
  python3 - "$B" "$2" "$3" >"$1" <<'EOF'
import sys
base, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
imgs = ["opencv_fruits.jpg", "tuxpaint_jellyfish.jpg", "tuxpaint_wool_mill_machine.jpg",
        "palapeli_castle-maintenon.jpg", "opencv_licenseplate_motion.jpg"]
print("id,image,title")
for i in range(n):
    print(f"{tag}{i},{base}/file/{imgs[i % len(imgs)]}?tag={tag}{i},product {i}")
EOF
}

redis_start main || { bad "redis-server would not start"; finish; }
URL=$REDIS_URL
start_origin main
B="http://127.0.0.1:$PORT"
# hashes: the cheapest pipeline (the test is about the network)
ARGS=(--allow-private -p hashes --progress none -j 1)

# ---- 0. unit tests against the server ----
if [ -x "$BUILD/tests/test_redis" ]; then
  PIXMILL_TEST_REDIS=$URL "$BUILD/tests/test_redis" >"$T/unit.log" 2>&1
  rc=$?
  got=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$T/unit.log" | tail -n 1)
  p=${got%% passed*}; f=${got#*, }; f=${f%% failed}
  # counted in this script's total (not printed as "N passed, N failed":
  # scripts/test.sh sums such lines)
  echo "unit: test_redis against the server: ${p:-0} checks ok, ${f:-0} failing"
  grep -E 'CHECK failed|want' "$T/unit.log" | head -n 20
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
  [ "$rc" -eq 0 ] || [ "${f:-0}" -gt 0 ] || bad "test_redis exited $rc"
  "$REDIS_CLI" -p "$REDIS_PORT" flushall >/dev/null
else
  bad "no $BUILD/tests/test_redis (make all)"
fi

# ---- 1. shared rate limit ----
R=4 BURST=2 N=16
fleet() { # fleet NAME [ARGS...]: 3 runs at once on catalogs NAME-a/b/c
  local n=$1 pids=() x; shift
  for x in a b c; do
    catalog "$T/$n-$x.csv" "$n$x" "$N"
    "$PM" run "$T/$n-$x.csv" --out "$T/$n-$x" "${ARGS[@]}" --per-host "$BURST" \
      --per-host-rps "$R" --json "$@" >"$T/$n-$x.json" 2>"$T/$n-$x.err" &
    pids+=($!)
  done
  for x in "${pids[@]}"; do wait "$x"; done
}
ostat_reset
t0=$(date +%s.%N)
fleet shared --redis "$URL"
t1=$(date +%s.%N)
peak_shared=$(ostat "d['max_per_sec'].get('127.0.0.1', 0)")
total_shared=$(ostat "d['total']")
for x in a b c; do
  eq "rate: run $x with --redis: all $N done" "$(jq_ "$T/shared-$x.json" "(d['done'], d['failed'])")" "($N, 0)"
  eq "rate: run $x used the shared bucket, never degraded" \
    "$(jq_ "$T/shared-$x.json" "(d['redis']['state'], d['redis']['degraded'], d['redis']['rl_shared'] >= $N)")" "('up', False, True)"
done
eq "rate: the origin saw every request once" "$total_shared" $((3 * N))
# the fleet as one client: at most R + burst in any 1-s window, +2 of
# tolerance (a request granted a token but sent late, on a loaded machine,
# can land in the next window; without Redis the peak is ~3 x R + burst)
TOL=$((R + BURST + 2))
check "rate: fleet-wide peak $peak_shared req/s <= R + burst + 2 = $TOL" \
  test "$peak_shared" -le "$TOL"
# and in all: 3N requests at R/s take at least (3N - burst) / R seconds
# (a lower bound only: a slow machine makes it longer, never shorter)
check "rate: $((3 * N)) requests took $(printf %.1f "$(echo "$t1 - $t0" | bc)") s >= $(((3 * N - BURST) / R - 1)) s" \
  python3 -c "import sys; sys.exit(0 if $t1 - $t0 >= ($((3 * N)) - $BURST) / $R - 1 else 1)"
ostat_reset
fleet local
peak_local=$(ostat "d['max_per_sec'].get('127.0.0.1', 0)")
for x in a b c; do
  eq "rate: run $x without Redis: all $N done, redis off" "$(jq_ "$T/local-$x.json" "(d['done'], d['redis']['state'])")" "($N, 'off')"
done
check "rate: without Redis the same fleet exceeds it (peak $peak_local > $TOL)" \
  test "$peak_local" -gt "$TOL"

# ---- 1b. the same limit held by 3 `pixmill worker`s on one queue ----
catalog "$T/wq.csv" wq $((3 * N))
"$PM" run "$T/wq.csv" --out "$T/wq" -p hashes --enqueue-only --json >"$T/wq-enq.json" 2>"$T/wq-enq.err"
eq "workers: $((3 * N)) records enqueued" "$(jq_ "$T/wq-enq.json" "d['enqueued']")" $((3 * N))
ostat_reset
pids=()
for x in a b c; do
  "$PM" worker --db "$T/wq/pixmill.db" --id "w$x" --exit-when-idle --allow-private -j 1 \
    --per-host "$BURST" --per-host-rps "$R" --redis "$URL" --json >"$T/wq-$x.json" 2>"$T/wq-$x.err" &
  pids+=($!)
done
for x in "${pids[@]}"; do wait "$x"; done
peak_w=$(ostat "d['max_per_sec'].get('127.0.0.1', 0)")
eq "workers: $((3 * N)) done in all, each through the shared bucket" \
  "$(python3 -c "import json; w=[json.load(open('$T/wq-%s.json' % x)) for x in 'abc']; print(sum(d['done'] for d in w), all(d['redis']['state'] == 'up' and not d['redis']['degraded'] for d in w))")" \
  "$((3 * N)) True"
eq "workers: the origin saw every request once" "$(ostat "d['total']")" $((3 * N))
check "workers: fleet-wide peak $peak_w req/s <= R + burst + 2 = $TOL" test "$peak_w" -le "$TOL"

# ---- 2. redis-server killed mid-run ----
redis_start crash || { bad "second redis-server would not start"; finish; }
CURL=$REDIS_URL
pids=()
for x in a b; do
  catalog "$T/crash-$x.csv" "crash$x" "$N"
  "$PM" run "$T/crash-$x.csv" --out "$T/crash-$x" "${ARGS[@]}" --per-host "$BURST" \
    --per-host-rps "$R" --json --redis "$CURL" >"$T/crash-$x.json" 2>"$T/crash-$x.err" &
  pids+=($!)
done
sleep 2
redis_kill crash
for x in "${pids[@]}"; do wait "$x"; done
for x in a b; do
  eq "kill -9 redis: run $x finished all $N items" "$(jq_ "$T/crash-$x.json" "(d['done'], d['failed'], d['interrupted'])")" "($N, 0, False)"
  eq "kill -9 redis: run $x summary says degraded" \
    "$(jq_ "$T/crash-$x.json" "(d['redis']['state'], d['redis']['degraded'], d['redis']['downs'] >= 1, d['redis']['degraded_s'] > 0, d['redis']['rl_local'] > 0)")" \
    "('down', True, True, True, True)"
  check "kill -9 redis: run $x warned once that Redis is down" grep -q "is down" "$T/crash-$x.err"
done
"$PM" run "$T/crash-a.csv" --out "$T/crash-a2" "${ARGS[@]}" --redis "$CURL" >"$T/crash-text.out" 2>&1
check "kill -9 redis: the text summary says DEGRADED" grep -q "redis redis://127.0.0.1:[0-9]*: DEGRADED" "$T/crash-text.out"

# 2b. a server that stops answering (SIGSTOP: connections are still
# accepted by the kernel): commands time out (200 ms), the runs go on
redis_start stall || { bad "redis-server (stall) would not start"; finish; }
SURL=$REDIS_URL
catalog "$T/stall.csv" stall "$N"
"$PM" run "$T/stall.csv" --out "$T/stall" "${ARGS[@]}" --per-host "$BURST" \
  --per-host-rps "$R" --json --redis "$SURL" >"$T/stall.json" 2>"$T/stall.err" &
spid=$!
sleep 1.5
redis_pause stall
wait "$spid"
redis_resume stall
eq "stalled redis: the run finished all $N items" "$(jq_ "$T/stall.json" "(d['done'], d['failed'])")" "($N, 0)"
eq "stalled redis: summary degraded, commands timed out" \
  "$(jq_ "$T/stall.json" "(d['redis']['degraded'], 'timed out' in d['redis']['last_error'])")" "(True, True)"

# ---- 3. bad URL, wrong password, nothing listening ----
SECRET=s3cr3t-pa55word
"$PM" run "$T/crash-a.csv" --out "$T/bad" "${ARGS[@]}" --redis "redis://:$SECRET@127.0.0.1:99999" >"$T/badurl.out" 2>&1
eq "bad URL: usage error (exit 2)" "$?" 2
check "bad URL: says what is wrong" grep -q "port wants 1 to 65535" "$T/badurl.out"
"$PM" run "$T/crash-a.csv" --out "$T/bad" "${ARGS[@]}" --redis "http://127.0.0.1:$REDIS_PORT" >>"$T/badurl.out" 2>&1
eq "bad URL: unknown scheme is a usage error" "$?" 2
"$PM" status --watch --redis "redis://$SECRET@127.0.0.1" >>"$T/badurl.out" 2>&1
eq "bad URL: user info without ':' is a usage error" "$?" 2
redis_start auth --requirepass "right-$SECRET" || { bad "redis-server with a password would not start"; finish; }
"$PM" run "$T/crash-a.csv" --out "$T/wrongpw" "${ARGS[@]}" --json --redis "redis://:$SECRET@127.0.0.1:$REDIS_PORT" >"$T/wrongpw.json" 2>"$T/wrongpw.err"
eq "wrong password: the run completes (exit 0)" "$?" 0
eq "wrong password: every item done, summary degraded" "$(jq_ "$T/wrongpw.json" "(d['done'], d['redis']['state'], d['redis']['degraded'])")" "($N, 'down', True)"
check "wrong password: a clear warning (AUTH refused)" grep -q "AUTH refused" "$T/wrongpw.err"
"$PM" run "$T/crash-a.csv" --out "$T/rightpw" "${ARGS[@]}" --json --redis "redis://:right-$SECRET@127.0.0.1:$REDIS_PORT" >"$T/rightpw.json" 2>"$T/rightpw.err"
eq "right password: up, not degraded" "$(jq_ "$T/rightpw.json" "(d['done'], d['redis']['state'], d['redis']['degraded'])")" "($N, 'up', False)"
PIXMILL_REDIS_PASSWORD="right-$SECRET" "$PM" run "$T/crash-a.csv" --out "$T/envpw" "${ARGS[@]}" --json --redis "redis://127.0.0.1:$REDIS_PORT" >"$T/envpw.json" 2>"$T/envpw.err"
eq "password from PIXMILL_REDIS_PASSWORD: up" "$(jq_ "$T/envpw.json" "(d['done'], d['redis']['state'], d['redis']['degraded'])")" "($N, 'up', False)"
dead=$(redis_free_port)
"$PM" run "$T/crash-a.csv" --out "$T/dead" "${ARGS[@]}" --json --redis "redis://:$SECRET@127.0.0.1:$dead" >"$T/dead.json" 2>"$T/dead.err"
eq "not listening: the run completes (exit 0)" "$?" 0
eq "not listening: every item done, degraded" "$(jq_ "$T/dead.json" "(d['done'], d['redis']['degraded'])")" "($N, True)"
check "not listening: a clear warning (connection refused)" grep -q "is down (connect: Connection refused)" "$T/dead.err"
check "the password is never printed (stdout, stderr, summaries)" \
  bash -c "! grep -l -- '$SECRET' '$T'/*.out '$T'/*.err '$T'/*.json"
check "the masked URL is shown instead" grep -q "redis://:\*\*\*@127.0.0.1:$dead" "$T/dead.err"

# ---- 4. shared cache ----
"$REDIS_CLI" -p "$(echo "$URL" | sed 's/.*://')" flushall >/dev/null
catalog "$T/cache.csv" cache 20
"$PM" run "$T/cache.csv" --out "$T/c1" --db "$T/shared.db" "${ARGS[@]}" --json --redis "$URL" >"$T/c1.json" 2>"$T/c1.err"
"$PM" run "$T/cache.csv" --out "$T/c2" --db "$T/shared.db" "${ARGS[@]}" --json --redis "$URL" >"$T/c2.json" 2>"$T/c2.err"
"$PM" run "$T/cache.csv" --out "$T/c3" --db "$T/shared.db" "${ARGS[@]}" --json >"$T/c3.json" 2>"$T/c3.err"
eq "cache: first run wrote the cache" "$(jq_ "$T/c1.json" "(d['done'], d['redis']['cache_writes'] > 0)")" "(20, True)"
eq "cache: second run (another output root) got Redis hits for every URL and asset" \
  "$(jq_ "$T/c2.json" "(d['done'], d['redis']['cache_hits'] >= 40)")" "(20, True)"
eq "cache: same results as without Redis (done, duplicates, not modified)" \
  "$(jq_ "$T/c2.json" "(d['done'], d['failed'], d['duplicates'], d['cache_hits'])")" \
  "$(jq_ "$T/c3.json" "(d['done'], d['failed'], d['duplicates'], d['cache_hits'])")"
mf() { python3 - "$1" <<'EOF'
import json, sys, glob
rows = []
for f in glob.glob(sys.argv[1] + "/manifests/*.jsonl"):
    for line in open(f):
        d = json.loads(line)
        rows.append((d["key"], d["state"], d.get("sha256"), d.get("duplicate")))
print(sorted(rows))
EOF
}
eq "cache: the manifests match item for item" "$(mf "$T/c2")" "$(mf "$T/c3")"
eq "cache: keys are namespaced by store, and there is a URL entry per row" \
  "$("$REDIS_CLI" -p "${URL##*:}" --scan --pattern 'pixmill:c:*:u:*' | wc -l)" 20

# the same on a PostgreSQL store shared by the two runs (the fleet's case)
. "$ROOT/tests/store/pg_lib.sh"
if pg_start 2>"$T/pg.err"; then
  pg_createdb fleet
  PGDB="$PG_URL/fleet"
  "$PM" run "$T/cache.csv" --out "$T/p1" --db "$PGDB" "${ARGS[@]}" --json --redis "$URL" >"$T/p1.json" 2>"$T/p1.err"
  "$PM" run "$T/cache.csv" --out "$T/p2" --db "$PGDB" "${ARGS[@]}" --json --redis "$URL" >"$T/p2.json" 2>"$T/p2.err"
  eq "cache on PostgreSQL: the second run (another output root) got every lookup from Redis, all 20 items 304" \
    "$(jq_ "$T/p2.json" "(d['done'], d['failed'], d['cache_hits'], d['redis']['cache_hits'] >= 40, d['redis']['cache_misses'])")" "(20, 0, 20, True, 0)"
  check "cache on PostgreSQL: its own namespace (not the SQLite store's)" \
    test "$("$REDIS_CLI" -p "${URL##*:}" --scan --pattern 'pixmill:c:*:u:*' | cut -d: -f3 | sort -u | wc -l)" -ge 2
  pg_stop
else
  echo "SKIP cache on PostgreSQL: $(tail -n 1 "$T/pg.err")"
fi

# a store deleted and made again at the same place is another store: no
# stale hits (5 rows, 5 different images: no duplicates within the run)
catalog "$T/fresh.csv" fresh 5
"$PM" run "$T/fresh.csv" --out "$T/fresh" "${ARGS[@]}" --json --redis "$URL" >"$T/fresh1.json" 2>/dev/null
rm -rf "$T/fresh"
"$PM" run "$T/fresh.csv" --out "$T/fresh" "${ARGS[@]}" --json --redis "$URL" >"$T/fresh2.json" 2>/dev/null
eq "cache: a store made again at the same path gets no stale hits, does all the work" \
  "$(jq_ "$T/fresh2.json" "(d['done'], d['duplicates'], d['cache_hits'], d['redis']['cache_hits'])")" "(5, 0, 0, 0)"

# ---- 5. progress pub/sub ----
"$PM" status --watch --redis "$URL" --limit 3 --json >"$T/watch.out" 2>"$T/watch.err" &
wpid=$!
sleep 1
catalog "$T/watch.csv" watch 6
"$PM" run "$T/watch.csv" --out "$T/w" "${ARGS[@]}" --redis "$URL" --quiet
for _ in $(seq 50); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$wpid" 2>/dev/null; then kill "$wpid"; bad "status --watch did not stop after 3 messages"; fi
wait "$wpid" 2>/dev/null
eq "watch: 3 progress messages" "$(wc -l <"$T/watch.out")" 3
eq "watch: each names job, counts and worker" \
  "$(python3 -c "import json,sys; print(all(set(json.loads(l)) >= {'job','done','failed','dups','worker','t'} for l in open(sys.argv[1])))" "$T/watch.out")" True
"$PM" status --watch >/dev/null 2>"$T/watch2.err"
eq "watch: without --redis a usage error" "$?" 2

# ---- 6. serve --redis: health and metrics ----
serve_health() { # serve_health NAME URL: starts serve, saves /health and /metrics
  "$PM" serve --listen 127.0.0.1:0 --port-file "$T/$1.sport" --data "$T/$1-data" --redis "$2" >"$T/$1.serve.log" 2>&1 &
  local spid=$! sp=
  for _ in $(seq 100); do sp=$(head -n 1 "$T/$1.sport" 2>/dev/null); [ -n "$sp" ] && break; sleep 0.1; done
  curl -s "http://127.0.0.1:$sp/health" >"$T/$1.health"
  curl -s "http://127.0.0.1:$sp/metrics" >"$T/$1.metrics"
  kill "$spid"; wait "$spid" 2>/dev/null
}
serve_health up "$URL"
# the fleet's messages as Server-Sent Events
"$PM" serve --listen 127.0.0.1:0 --port-file "$T/sse.sport" --data "$T/sse-data" --redis "$URL" >"$T/sse.serve.log" 2>&1 &
sse_pid=$!
sp=
for _ in $(seq 100); do sp=$(head -n 1 "$T/sse.sport" 2>/dev/null); [ -n "$sp" ] && break; sleep 0.1; done
curl -sN --max-time 20 "http://127.0.0.1:$sp/api/fleet/events" >"$T/sse.out" 2>/dev/null &
curl_pid=$!
sleep 1
catalog "$T/sse.csv" sse 6
"$PM" run "$T/sse.csv" --out "$T/sse-run" "${ARGS[@]}" --redis "$URL" --quiet
for _ in $(seq 30); do [ "$(grep -c '^event: fleet' "$T/sse.out")" -ge 1 ] && break; sleep 0.2; done
sleep 0.5
kill "$sse_pid"; wait "$sse_pid" 2>/dev/null
wait "$curl_pid" 2>/dev/null
check "serve: /api/fleet/events streamed the run's progress (event: fleet)" grep -q '^event: fleet' "$T/sse.out"
eq "serve: the last fleet event says the run's 6 items are done" \
  "$(grep '^data: {"job"' "$T/sse.out" | tail -n 1 | sed 's/^data: //' | python3 -c 'import json,sys; print(json.load(sys.stdin)["done"])')" 6
check "serve: the fleet stream ends with event: end at shutdown" grep -q '^event: end' "$T/sse.out"
eq "serve: /health says redis up" "$(jq_ "$T/up.health" "(d['redis'], d['components']['redis']['status'])")" "('up', 'up')"
check "serve: /metrics pixmill_redis_up 1" grep -qx "pixmill_redis_up 1" "$T/up.metrics"
serve_health down "redis://:$SECRET@127.0.0.1:$dead"
eq "serve: /health says redis down (still ok: Redis is optional)" "$(jq_ "$T/down.health" "(d['redis'], d['status'])")" "('down', 'ok')"
check "serve: /metrics pixmill_redis_up 0" grep -qx "pixmill_redis_up 0" "$T/down.metrics"
check "serve: /metrics has the fallbacks counter" grep -q "^pixmill_redis_fallbacks_total{op=\"rate_limit\"}" "$T/down.metrics"
check "serve: the password is not in /health" bash -c "! grep -q -- '$SECRET' '$T/down.health' '$T/down.serve.log'"

finish
