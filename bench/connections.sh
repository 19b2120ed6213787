#!/usr/bin/env bash
# connections.sh — how many PostgreSQL connections pixmill processes hold
# (the store pools, docs/POSTGRES.md "Connections"): the peak of
#   SELECT count(*) FROM pg_stat_activity
#   WHERE datname = DB AND application_name = 'pixmill'
# sampled every 0.1 s while
#   - `pixmill run --workers W` and
#   - `pixmill worker --workers W --exit-when-idle` (after run
#     --enqueue-only) process the test corpus's photos x 3 rows, for W in
#     1 4 8, and
#   - `serve --http-threads 8 --workers 2 [--db-pool 1]` answers 320 API
#     requests (store-backed routes, 16 at a time) on the example catalog.
# A throwaway PostgreSQL server (tests/store/pg_lib.sh: Debian's
# binaries, loopback, a temp dir) is started and stopped.
#
# Usage: bench/connections.sh [PIXMILL]   (default build/pixmill; another
# build, e.g. one without the pools, to compare). Prints a Markdown table.
set -uo pipefail
cd "$(dirname "$0")/.."
PM=$(realpath "${1:-build/pixmill}")
CORPUS=${PIXMILL_CORPUS:-$PWD/../shared/corpus}
. tests/store/pg_lib.sh
T=$(mktemp -d)
SP=
trap '[ -n "$SP" ] && kill "$SP" 2>/dev/null; pg_stop; rm -rf "$T"' EXIT
pg_start || { echo "PostgreSQL did not start"; exit 1; }

# peak DB PID: the most pixmill sessions on DB while PID lives
peak() {
  local most=0 c
  while kill -0 "$2" 2>/dev/null; do
    c=$(pg_psql postgres "SELECT count(*) FROM pg_stat_activity WHERE datname = '$1' AND application_name = 'pixmill'") || c=0
    [ "$c" -gt "$most" ] && most=$c
    sleep 0.1
  done
  echo "$most"
}

C=$T/cat.csv
echo "id,image,title,price,category,brand,color" >"$C"
i=0
for _ in 1 2 3; do
  for f in "$CORPUS"/photos/*; do
    i=$((i + 1)); echo "sku-$i,$(realpath "$f"),Photo $i,1.00,misc,X,red" >>"$C"
  done
done
echo "Peak PostgreSQL connections ($PM, $(nproc) cores, $i rows, $(date -u +%Y-%m-%d))"
echo
echo "| process | connections |"
echo "|---|---|"
for W in 1 4 8; do
  pg_createdb "r$W"
  "$PM" run "$C" --db "$PG_URL/r$W" --out "$T/or-$W" --workers "$W" >"$T/r-$W.log" 2>&1 &
  n=$(peak "r$W" $!)
  wait $! || { echo "run failed: $(tail -n 3 "$T/r-$W.log")"; exit 1; }
  echo "| \`run --workers $W\` | $n |"
done
for W in 1 4 8; do
  pg_createdb "w$W"
  "$PM" run "$C" --db "$PG_URL/w$W" --out "$T/ow-$W" --enqueue-only >"$T/e-$W.log" 2>&1 ||
    { echo "enqueue failed: $(tail -n 3 "$T/e-$W.log")"; exit 1; }
  "$PM" worker --db "$PG_URL/w$W" --out "$T/ow-$W" --workers "$W" --exit-when-idle >"$T/w-$W.log" 2>&1 &
  n=$(peak "w$W" $!)
  wait $! || { echo "worker failed: $(tail -n 3 "$T/w-$W.log")"; exit 1; }
  echo "| \`worker --workers $W\` | $n |"
done
pg_createdb s
"$PM" run examples/catalog.csv --db "$PG_URL/s" --out "$T/os" >"$T/s.log" 2>&1 || exit 1
POOLS=("")
"$PM" help --markdown 2>/dev/null | grep -q -- --db-pool && POOLS+=("--db-pool 1")
for extra in "${POOLS[@]}"; do
  rm -f "$T/port"
  # shellcheck disable=SC2086
  "$PM" serve --listen 127.0.0.1:0 --port-file "$T/port" --db "$PG_URL/s" --data "$T/d" \
    --http-threads 8 --workers 2 $extra >"$T/serve.log" 2>&1 &
  SP=$!
  for _ in $(seq 300); do [ -s "$T/port" ] && break; sleep 0.1; done
  U="http://127.0.0.1:$(cat "$T/port")"
  for _ in $(seq 100); do curl -sf -o /dev/null "$U/health/ready" && break; sleep 0.1; done
  ( for _ in $(seq 40); do
      for p in /api/jobs /api/images "/api/search/text?q=fruit" /api/failed /metrics \
        /api/jobs/1 /api/jobs/1/items "/api/images?q=basket"; do echo "$U$p"; done
    done | xargs -P 16 -n 1 curl -s -m 30 -o /dev/null -w '%{http_code}\n' >"$T/codes" ) &
  n=$(peak s $!)
  kill "$SP"; wait "$SP"; SP=
  echo "| \`serve --http-threads 8 --workers 2${extra:+ $extra}\`, 320 requests | $n (answers: $(sort "$T/codes" | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')) |"
done
