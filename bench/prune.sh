#!/usr/bin/env bash
# prune.sh — `pixmill queue prune` of N finished queue rows (and their 2 N
# events) on SQLite and on PostgreSQL (a throwaway durable server from
# Debian's packages, bench/store_lib.sh): bench/prune_bench.c fills a new
# store (one done job of N rows drained as a worker would, plus 1,000
# queued rows of another job, which must survive), then times a dry run
# and the prune (batches of 10,000 rows per transaction), and reports the
# store's size: SQLite the file's pages in use (page_count -
# freelist_count; the file itself does not shrink without VACUUM, the
# freed pages are reused), PostgreSQL pg_total_relation_size of queue and
# queue_events after the fill, after the prune, and after a plain VACUUM
# (space reusable; only VACUUM FULL gives it back to the OS).
#
# Usage: bench/prune.sh [N]     (rows, default 100000)
# Environment: BUILD=build. Prints Markdown for docs/BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
. bench/store_lib.sh
bench_store_setup prune_bench

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
sq_used() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); p=c.execute('PRAGMA page_size').fetchone()[0]; n=c.execute('PRAGMA page_count').fetchone()[0]; f=c.execute('PRAGMA freelist_count').fetchone()[0]; print((n - f) * p)" "$1"; }
pg_size() { pg_psql pr "SELECT pg_total_relation_size('queue') + pg_total_relation_size('queue_events')"; }
v() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

echo "Queue prune of $N finished rows, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "| store | fill (s) | dry run (s) | prune (s) | rows | events | rows/s | size after fill | after prune | after VACUUM |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for store in sqlite postgres; do
  if [ $store = sqlite ]; then url=$W/pr.db; else pg_createdb pr; url=$PG_URL/pr; fi
  "$W/prune_bench" fill --n "$N" "$url" >"$W/fill.txt" || { echo "fill failed ($store)"; exit 1; }
  if [ $store = sqlite ]; then s0=$(sq_used "$url"); else s0=$(pg_size); fi
  "$W/prune_bench" prune --dry-run "$url" >"$W/dry.txt" || { echo "dry run failed ($store)"; exit 1; }
  "$W/prune_bench" prune "$url" >"$W/prune.txt" || { echo "prune failed ($store)"; exit 1; }
  [ "$(v rows "$W/prune.txt")" = "$N" ] || { echo "prune deleted $(v rows "$W/prune.txt") rows, want $N"; exit 1; }
  if [ $store = sqlite ]; then
    s1=$(sq_used "$url")
    python3 -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('VACUUM')" "$url"
    s2=$(stat -c %s "$url")
  else
    s1=$(pg_size)
    pg_psql pr "VACUUM queue" >/dev/null && pg_psql pr "VACUUM queue_events" >/dev/null
    s2=$(pg_size)
  fi
  ps=$(v prune_s "$W/prune.txt")
  echo "| $store | $(v fill_s "$W/fill.txt") | $(v prune_s "$W/dry.txt") | **$ps** | $(v rows "$W/prune.txt") | $(v events "$W/prune.txt") | $(awk -v n="$N" -v s="$ps" 'BEGIN { printf "%.0f", n / s }') | $(mib "$s0") MiB | $(mib "$s1") MiB | $(mib "$s2") MiB |"
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
