#!/usr/bin/env bash
# search.sh — search-by-image latency at catalog scale: exact top-10 by
# cosine over the built-in 176-float vectors and by pHash Hamming distance,
# at 10k and 100k synthetic items (bench/search_bench.c; random unit
# vectors and hashes written through the store API, then loaded back).
#
# Usage: bench/search.sh [SIZES]      (default "10000 100000")
# Environment: QUERIES=200 BUILD=build (the build whose libpixmill.a and
# flags are used; make it first). Prints a Markdown table for
# docs/BENCHMARKS.md. Kept short: the machine is shared.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUERIES=${QUERIES:-200}
SIZES=${1:-"10000 100000"}
[ -f "$BUILD/libpixmill.a" ] || { echo "build first: make BUILD=$BUILD"; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# the compiler flags and libraries of the Makefile, without building
mkvar() { make --no-print-directory BUILD="$BUILD" -f Makefile -f <(printf 'pv:\n\t@echo $(%s)\n' "$1") pv; }
# shellcheck disable=SC2046
cc $(mkvar CFLAGS) -o "$W/search_bench" bench/search_bench.c "$BUILD/libpixmill.a" $(mkvar LDLIBS) ||
  { echo "search_bench did not build"; exit 2; }

echo "Search by image, exact, top 10, $QUERIES queries per size, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo
echo "| items | fill store (s) | load vectors (ms) | load hashes (ms) | cosine median / p95 (ms) | naive loop median (ms) | pHash median / p95 (ms) | near copy top-1 |"
echo "|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  "$W/search_bench" --n "$n" --queries "$QUERIES" "$W/s.db" >"$W/out.txt" || { echo "search_bench failed at $n"; cat "$W/out.txt"; exit 1; }
  v() { awk -v k="$1" '$1 == k {print $2}' "$W/out.txt"; }
  echo "| $n | $(v fill_s) | $(v load_vectors_ms) | $(v load_hashes_ms) | $(v cosine_median_ms) / $(v cosine_p95_ms) | $(v cosine_naive_median_ms) | $(v phash_median_ms) / $(v phash_p95_ms) | $(v cosine_top1_is_source) |"
  rm -f "$W"/s.db*
done
