#!/usr/bin/env bash
# queue.sh — the shared queue's overhead per item: claim + complete (a
# minimal done item put with the claim's queue_id and lease owner, its share
# of the batch's commit) on SQLite and on PostgreSQL (a throwaway local
# server from Debian's packages, tests/store/pg_lib.sh: loopback TCP, fsync
# on), in claim batches of 16 and 64; also the enqueue cost per record and
# the same minimal put without a queue, for comparison.
#
# Usage: bench/queue.sh [N]     (items per measurement, default 2000)
# Environment: BUILD=build. Prints a Markdown table for docs/BENCHMARKS.md.
# One worker, one connection: the overhead, not the throughput of many
# workers. Kept short: the machine is shared.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
. bench/store_lib.sh
bench_store_setup queue_bench

echo "Queue overhead per item (µs), $N items per row, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo
echo "| store | claim batch | enqueue | claim | complete (puts + commit) | claim + complete | plain put, no queue |"
echo "|---|---|---|---|---|---|---|"
i=0
for store in sqlite postgres; do
  for b in 16 64; do
    i=$((i + 1))
    if [ $store = sqlite ]; then url=$W/q$i.db; else pg_createdb "q$i"; url=$PG_URL/q$i; fi
    "$W/queue_bench" --n "$N" --batch "$b" "$url" >"$W/out.txt" || { echo "queue_bench failed ($store, batch $b)"; exit 1; }
    v() { awk -v k="$1" '$1 == k {print $2}' "$W/out.txt"; }
    echo "| $store | $b | $(v enqueue_us) | $(v claim_us) | $(v complete_us) | **$(v queue_us)** | $(v plain_put_us) |"
  done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
