#!/usr/bin/env bash
# store.sh — store overhead per item (put_item plus its share of commit) on
# SQLite and on PostgreSQL (a throwaway local server from Debian's packages,
# tests/store/pg_lib.sh: loopback TCP, fsync on), in batches of 1 and of
# 256 (the run's writer commits up to 256 waiting results at once).
#
# Usage: bench/store.sh [N]     (items per measurement, default 2000)
# Environment: BUILD=build. Prints a Markdown table for docs/BENCHMARKS.md.
# Kept short: the machine is shared.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
. bench/store_lib.sh
bench_store_setup store_bench

echo "Store overhead per item, $N items per cell, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo
echo "| store | batch 1: µs/item | batch 256: µs/item | batch 256: items/s |"
echo "|---|---|---|---|"
i=0
for store in sqlite postgres; do
  row="| $store"
  for b in 1 256; do
    i=$((i + 1))
    if [ $store = sqlite ]; then url=$W/s$i.db; else pg_createdb "b$i"; url=$PG_URL/b$i; fi
    "$W/store_bench" --n "$N" --batch "$b" "$url" >"$W/out.txt" || { echo "store_bench failed ($store, batch $b)"; exit 1; }
    v() { awk -v k="$1" '$1 == k {print $2}' "$W/out.txt"; }
    row="$row | $(v us_per_item)"
    [ "$b" = 256 ] && row="$row | $(v items_per_s)"
  done
  echo "$row |"
done
