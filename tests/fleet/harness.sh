# harness.sh — shared pieces of the fleet tests (tests/fleet/test_fleet.sh,
# tests/fleet/test_multihost.sh, tests/fleet/test_pg_restart.sh) and of
# bench/fleet.sh: the clean-up on exit, the PostgreSQL server and test
# origin they start, URL catalogs, the enqueue, waiting for the workers and
# the exactly-once checks on the PostgreSQL store. Source it after
# tests/store/pg_lib.sh (and, for the checks, tests/cli/lib.sh: ok/bad/eq
# and $T; bench/fleet.sh sets $T itself).
#   WPIDS          pids of the processes the script starts in the
#                  background (workers, servers)
#   fh_traps [FN]  on EXIT: FN (default fh_cleanup; a script's own FN
#                  ends with fh_cleanup); on INT, TERM, HUP: exit 1
#   fh_cleanup     kills the processes in WPIDS (SIGKILL) and what
#                  fh_origin started, stops PostgreSQL (pg_stop), removes
#                  $T unless KEEP is set (then says where it is)
#   fh_pg DB       starts PostgreSQL (pg_start) and creates database DB;
#                  returns non-zero if the server would not start
#   fh_origin NAME [OPTIONS]  starts BUILD/tests/origin (or $PIXMILL_ORIGIN)
#                  serving examples/images, with OPTIONS (e.g. --bind ADDR
#                  --latency MS); sets FH_PORT; its pid goes to FH_PIDS
#   fh_catalog BASE N [TAG]  prints a CSV catalog of N distinct URLs: row
#                  I has id TAGI and URL BASE/file/IMG?tag=TAGI (TAG
#                  default p), cycling through the .jpg files of
#                  $FH_IMAGES (default examples/images)
#   fh_sql DB SQL  runs SQL on database DB of the test server ($PG_URL),
#                  prints unaligned rows
#   fh_enqueue DB BASE N  writes a catalog of N URLs on BASE (fh_catalog)
#                  to $T/cat.csv and enqueues it in database DB (`run
#                  --enqueue-only`, output root $T/out); checks the exit
#                  code and the N queue rows
#   fh_alive       true while a process of WPIDS runs
#   fh_wait_workers SECONDS  waits for each process of WPIDS to exit
#                  (SECONDS at most each, then SIGKILL) and checks that it
#                  exits 0; empties WPIDS
#   fh_exactly_once DB N  checks database DB after a drain: N queue rows,
#                  all done; N item rows, one per key, all done; one
#                  "done" event per key
#   fh_done_sum FILE...  the sum of "done" over workers' --json summaries
#   fh_stop        kills what fh_origin started (by pid)
# shellcheck shell=bash
FH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FH_PIDS=() FH_PORT=
WPIDS=()

fh_cleanup() {
  local p
  for p in "${WPIDS[@]}"; do
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  fh_stop
  pg_stop
  if [ -n "${KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}

fh_traps() {
  trap "${1:-fh_cleanup}" EXIT
  trap "exit 1" INT TERM HUP
}

fh_pg() {
  pg_start && pg_createdb "$1"
}

fh_origin() {
  local name=$1; shift
  local bin=${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}
  "$bin" --root "${FH_IMAGES:-$FH_ROOT/examples/images}" --die-with-parent \
    --port-file "$T/$name.port" "$@" 0 >/dev/null 2>"$T/$name.err" &
  FH_PIDS+=($!)
  FH_PORT=
  for _ in $(seq 100); do
    FH_PORT=$(head -n 1 "$T/$name.port" 2>/dev/null)
    [ -n "$FH_PORT" ] && return 0
    sleep 0.1
  done
  echo "origin $bin did not start: $(cat "$T/$name.err" 2>/dev/null)" >&2
  return 1
}

fh_catalog() {
  IMGDIR=${FH_IMAGES:-$FH_ROOT/examples/images} python3 - "$1" "$2" "${3:-p}" <<'EOF'
import os, sys
base, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
imgs = sorted(f for f in os.listdir(os.environ["IMGDIR"]) if f.endswith(".jpg"))
print("id,image,title")
for i in range(n):
    print(f"{tag}{i},{base}/file/{imgs[i % len(imgs)]}?tag={tag}{i},product {i}")
EOF
}

fh_sql() {
  "$PG_BIN/psql" -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 "$PG_URL/$1" -c "$2"
}

fh_stop() {
  local p
  for p in "${FH_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  FH_PIDS=()
}

fh_enqueue() {
  fh_catalog "$2" "$3" >"$T/cat.csv"
  "$PM" run "$T/cat.csv" --db "$PG_URL/$1" --out "$T/out" --enqueue-only --allow-private \
    --json >"$T/enqueue.json" 2>"$T/enqueue.err"
  eq "run --enqueue-only exits 0" "$?" 0
  eq "$3 rows queued" "$(fh_sql "$1" "SELECT count(*) FROM queue")" "$3"
}

fh_alive() {
  local p
  for p in "${WPIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}

fh_wait_workers() {
  local p i=0
  for p in "${WPIDS[@]}"; do
    i=$((i + 1))
    for _ in $(seq $(($1 * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      bad "worker $i (pid $p) still running after $1 s"
      kill -9 "$p" 2>/dev/null
    fi
    wait "$p"
    eq "worker $i exits 0 when the queue is drained" "$?" 0
  done
  WPIDS=()
}

fh_exactly_once() {
  eq "every queue row done, none queued or claimed" \
    "$(fh_sql "$1" "SELECT count(*), sum((state = 'done')::int) FROM queue")" "$2 $2"
  eq "one item row per key, all done" \
    "$(fh_sql "$1" "SELECT count(*), count(DISTINCT key), sum((state = 'done')::int) FROM items")" "$2 $2 $2"
  eq "no key has two \"done\" events" \
    "$(fh_sql "$1" "SELECT count(*) FROM (SELECT q.key FROM queue_events e JOIN queue q ON q.id = e.queue_id
       WHERE e.event = 'done' GROUP BY q.key HAVING count(*) <> 1) x")" 0
}

fh_done_sum() {
  python3 -c 'import json,sys; print(sum(json.load(open(f))["done"] for f in sys.argv[1:]))' "$@" 2>&1
}
