#!/usr/bin/env bash
# test_pg_restart.sh — PostgreSQL goes away under a running fleet and
# comes back: a URL catalog (the test origin on loopback, 50 ms per
# answer) is enqueued, 3 `pixmill worker --exit-when-idle` processes start
# on it, and once some items are done the server is stopped (fast
# shutdown: every session is cut), kept down 3 s and started again on the
# same port (tests/store/pg_lib.sh pg_restart); later a second time with
# an immediate shutdown (a crash: crash recovery at start). The workers
# must reconnect with backoff and finish: each exits 0, every item is done
# exactly once (one item row and one "done" event per key), and none is
# left queued or claimed.
#
# Usage: tests/fleet/test_pg_restart.sh [PIXMILL_BINARY]
# Environment: PGRESTART_N (URLs, default 300).
# Ends with "pg-restart: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PM=$(realpath "${1:-build/pixmill}")
N=${PGRESTART_N:-300}
. tests/cli/lib.sh
. tests/store/pg_lib.sh
. tests/fleet/harness.sh

fh_traps
finish() { echo "pg-restart: $pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }

fh_pg fleet || { bad "PostgreSQL server did not start"; finish; }
DB="$PG_URL/fleet"
fh_origin net --latency 50 || { bad "origin did not start"; finish; }
fh_enqueue fleet "http://127.0.0.1:$FH_PORT" "$N"

for w in 1 2 3; do
  "$PM" worker --db "$DB" --id "w$w" --workers 2 --batch 4 --lease 10 --out "$T/out" \
    --allow-private --exit-when-idle --json >"$T/w$w.json" 2>"$T/w$w.err" &
  WPIDS+=($!)
done

done_count() { fh_sql fleet "SELECT count(*) FROM items WHERE state = 'done'" 2>/dev/null; }
wait_done() { # wait_done N: until N items are done (60 s at most, while a worker runs)
  local d
  for _ in $(seq 600); do
    d=$(done_count)
    [ -n "$d" ] && [ "$d" -ge "$1" ] && return 0
    fh_alive || return 1
    sleep 0.1
  done
  return 1
}

# 1. a fast shutdown after a sixth of the items, down for 3 s
wait_done $((N / 6)) || bad "a sixth of the items not done within 60 s"
before=$(done_count)
check "restart 1: server stopped (fast), 3 s down, started on port $PG_PORT" pg_restart 3 fast
ok "restart 1 after $before items done"
# 2. a crash (immediate shutdown) after half of them, down for 2 s
wait_done $((N / 2)) || bad "half of the items not done within 60 s after restart 1"
before=$(done_count)
check "restart 2: server crashed (immediate), 2 s down, started again" pg_restart 2 immediate
ok "restart 2 after $before items done"

fh_wait_workers 90
for w in 1 2 3; do
  e=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["store_errors"])' "$T/w$w.json" 2>/dev/null)
  [ "${e:-0}" -ge 1 ] 2>/dev/null && ok "w$w: its --json summary counts $e store errors (the restarts were felt)" ||
    bad "w$w: no store error in its --json summary: '$e'"
done
# what the workers say they committed: never more than N (a commit whose
# answer was lost in the crash may be missing from a summary, not doubled)
sum=$(fh_done_sum "$T"/w[123].json)
[ -n "$sum" ] && [ "$sum" -le "$N" ] && ok "the workers' summaries count $sum done (at most $N)" ||
  bad "the workers' summaries count '$sum' done, more than $N"
n_reconnect=$(cat "$T"/w*.err | grep -ci 'reconnect')
[ "$n_reconnect" -gt 0 ] && ok "workers logged $n_reconnect reconnect lines" ||
  bad "no worker logged a reconnect: $(tail -n 3 "$T"/w*.err)"

# ---- exactly once ----
fh_exactly_once fleet "$N"
fh_sql fleet "SELECT worker, count(*) FROM queue_events WHERE event = 'done' GROUP BY worker ORDER BY 1"
finish
