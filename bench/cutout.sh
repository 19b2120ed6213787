#!/usr/bin/env bash
# cutout.sh — the cutout stage's `fast` engine: time per image at 2 MP and
# peak RSS (docs/BENCHMARKS.md, "Cut-out"). A benchmark, not a test:
# nothing here asserts on a number.
#
# Usage: bench/cutout.sh [OUT_DIR]     (default bench/results/cutout-<date>)
#   engine  bench/cutout_bench.c (built here against BUILD/libpixmill.a):
#           pm_cutout_fast on a synthetic 2-MP studio shot, RUNS runs,
#           median and min wall ms, median thread-CPU ms, plus the median
#           PNG and WebP encode time of the RGBA result; peak RSS of that
#           process (/usr/bin/time).
#   run     pixmill run over N synthetic 2-MP shots (JPEG q90) with a
#           pipeline of the cutout stage alone (engine fast, PNG), one
#           worker: images/s, p50 latency per item (decode + cut-out +
#           encode + fsync + record) and peak RSS, median of RUNS_RUN runs.
# Environment: BUILD=build RUNS=25 N=20 RUNS_RUN=3 SIZE=1732x1155
# Writes OUT_DIR/summary.md (paste into docs/BENCHMARKS.md) and raw logs.
# isnet figures come from `pixmill models mask --repeat` (see
# docs/BENCHMARKS.md, ISNet).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-25}
N=${N:-20}
RUNS_RUN=${RUNS_RUN:-3}
SIZE=${SIZE:-1732x1155}
OUT=${1:-bench/results/cutout-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
SUM="$OUT/summary.md"

make -s -j2 BUILD="$BUILD" "$BUILD/pixmill" >"$OUT/build.log" 2>&1 ||
  { cat "$OUT/build.log"; echo "build failed"; exit 2; }
PKGS="vips gmodule-2.0 jansson sqlite3 libcrypto"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -Isrc $(pkg-config --cflags $PKGS) \
  -o "$OUT/cutout_bench" bench/cutout_bench.c "$BUILD/libpixmill.a" \
  $(pkg-config --libs $PKGS) -lpthread -lm >>"$OUT/build.log" 2>&1 ||
  { cat "$OUT/build.log"; echo "bench build failed"; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
jget() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

echo "== engine ($(date +%T))"
/usr/bin/time -f "%e %M" -o "$OUT/engine.time" \
  "$OUT/cutout_bench" --runs "$RUNS" --size "$SIZE" >"$OUT/engine.txt" 2>"$OUT/engine.err"
cat "$OUT/engine.txt"
ENGINE_RSS=$(awk '{printf "%.0f", $2 / 1024}' "$OUT/engine.time")

echo "== pixmill run, $N shots ($(date +%T))"
mkdir -p "$OUT/shots"
"$OUT/cutout_bench" --write "$OUT/shots" "$N" --size "$SIZE" || exit 1
echo '{"name":"cutout-fast","stages":[{"stage":"cutout","engine":"fast"}]}' >"$OUT/fast.json"
for i in $(seq "$RUNS_RUN"); do
  rm -rf "$OUT/tmp-run"
  /usr/bin/time -f "%e %M" -o "$OUT/run-$i.time" \
    "$BUILD/pixmill" run "$OUT/shots" --pipeline "$OUT/fast.json" -j 1 \
    --out "$OUT/tmp-run" --json --quiet >"$OUT/run-$i.json" 2>"$OUT/run-$i.err"
done
cp "$OUT/tmp-run/manifests/job1-run1.jsonl" "$OUT/run-manifest.jsonl" 2>/dev/null
rm -rf "$OUT/tmp-run"
IPS=$(for i in $(seq "$RUNS_RUN"); do jget "$OUT/run-$i.json" images_per_s; done | median)
P50=$(for i in $(seq "$RUNS_RUN"); do jget "$OUT/run-$i.json" p50_ms; done | median)
RSS=$(for i in $(seq "$RUNS_RUN"); do awk '{print $2 / 1024}' "$OUT/run-$i.time"; done | median)
SKIPPED=$(grep -c '"skipped":true' "$OUT/run-manifest.jsonl" 2>/dev/null || true)

{
  echo "# cut-out benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r); $("$BUILD/pixmill" version); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo '```'
  echo "bench/cutout.sh   # RUNS=$RUNS N=$N RUNS_RUN=$RUNS_RUN SIZE=$SIZE BUILD=$BUILD"
  echo '```'
  echo
  echo "Engine only (\`pm_cutout_fast\`, $SIZE synthetic studio shot, $RUNS runs):"
  echo
  echo '```'
  cat "$OUT/engine.txt"
  echo '```'
  echo
  echo "| what | figure |"
  echo "|---|---|"
  echo "| engine process peak RSS (libvips, the decoded image, the mask) | $ENGINE_RSS MB |"
  printf '| `pixmill run`, %s shots of %s, cutout stage alone (fast, PNG), 1 worker | %.1f images/s, p50 %.0f ms per item, peak RSS %.0f MB |\n' \
    "$N" "$SIZE" "$IPS" "$P50" "$RSS"
  echo "| shots skipped (low confidence) | ${SKIPPED:-0} of $N |"
} >"$SUM"
cat "$SUM"
