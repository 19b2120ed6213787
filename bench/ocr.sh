#!/usr/bin/env bash
# ocr.sh — OCR throughput and accuracy: pixmill's ocr pipeline against the
# tesseract CLI on the same rendered recipe cards (tests/ocr/gen_cards).
#
# Usage: bench/ocr.sh [OUT_DIR]        (default bench/results/ocr-<date>)
#   pixmill   `pixmill run CARDS --pipeline ocr -j 2` (psm 3, eng, the
#             stage's preprocessing; one Tesseract engine per worker)
#   pixmill-raw  the same with "preprocess": false (what the CLI sees)
#   cli-omp1  `tesseract IMG OUT --psm 3 -l eng`, two at a time (xargs -P2),
#             OMP_THREAD_LIMIT=1
#   cli       the same with OpenMP as it comes (Debian's build: 4 threads)
# Each RUNS times (default 3); reports medians of wall time, images/s and
# CPU seconds (user+sys), and the character accuracy of each (eval.py).
# Environment: RUNS=3 PIXMILL=build/pixmill CORPUS=../shared/corpus
#   SUMMARY_ONLY=1 (remake summary.md from an earlier run's OUT_DIR)
# Writes OUT_DIR/summary.md (paste into docs/BENCHMARKS.md) and raw logs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
PM=$(realpath "${PIXMILL:-build/pixmill}")
GEN=$(dirname "$PM")/tests/gen_cards
CORPUS=$(realpath "${CORPUS:-$ROOT/../shared/corpus}")
OUT=${1:-bench/results/ocr-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
SUM="$OUT/summary.md"
[ -x "$PM" ] && [ -x "$GEN" ] || { echo "build pixmill first (make)"; exit 2; }
command -v tesseract >/dev/null || { echo "no tesseract CLI (apt tesseract-ocr)"; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

if [ -z "${SUMMARY_ONLY:-}" ]; then
mkdir -p "$OUT/cards" "$OUT/images"
"$GEN" "$ROOT/tests/ocr/recipes.txt" "$CORPUS/photos" "$OUT/cards" >/dev/null || exit 1
cp "$OUT"/cards/*.png "$OUT"/cards/*.jpg "$OUT/images/"
fi
N=$(ls "$OUT/images" | wc -l)

# run NAME CMD...: RUNS timed runs; OUT/NAME-i.time holds "wall user sys"
run() {
  local name=$1 i; shift
  for i in $(seq "$RUNS"); do
    rm -rf "$OUT/tmp-$name"; mkdir -p "$OUT/tmp-$name"
    /usr/bin/time -f "%e %U %S" -o "$OUT/$name-$i.time" "$@" >"$OUT/$name-$i.log" 2>&1
  done
}
# tesseract IMG OUTBASE for every card, two at a time
CLI='cd "$0/images" && ls | xargs -P2 -I{} tesseract {} "$1/{}" --psm 3 -l eng'
[ -z "${SUMMARY_ONLY:-}" ] && {
run pixmill "$PM" run "$OUT/images" --pipeline ocr -j 2 --out "$OUT/tmp-pixmill" --quiet
# the same without the stage's preprocessing: Tesseract sees what the CLI
# sees, so accuracy is equal and only the throughput differs
echo '{"name":"ocr-raw","stages":[{"stage":"ocr","preprocess":false},{"stage":"phash"}]}' >"$OUT/raw.json"
run pixmill-raw "$PM" run "$OUT/images" --pipeline "$OUT/raw.json" -j 2 --out "$OUT/tmp-pixmill-raw" --quiet
run cli-omp1 env OMP_THREAD_LIMIT=1 bash -c "$CLI" "$OUT" "$OUT/tmp-cli-omp1"
run cli env -u OMP_THREAD_LIMIT bash -c "$CLI" "$OUT" "$OUT/tmp-cli"
}

# accuracy: the first line of eval.py's report, without the ingredient
# part (the ocr pipeline parses no recipes)
acc() { python3 tests/ocr/eval.py --cards "$OUT/cards" "$@" >"$OUT/eval.txt" 2>&1
        sed -n '1s/^cards [0-9]* (missing \([0-9]*\)), \(char accuracy [0-9.]*\).*/\2 (missing \1)/p' "$OUT/eval.txt"; }
acc_pm=$(acc --manifest "$(ls "$OUT"/tmp-pixmill/manifests/*.jsonl | head -n 1)")
acc_raw=$(acc --manifest "$(ls "$OUT"/tmp-pixmill-raw/manifests/*.jsonl | head -n 1)")
acc_cli=$(acc --text-dir "$OUT/tmp-cli-omp1")
acc_cli2=$(acc --text-dir "$OUT/tmp-cli")

times() { local i; for i in $(seq "$RUNS"); do cat "$OUT/$1-$i.time"; done; }
wall() { times "$1" | awk '{print $1}' | median; }
cpu() { times "$1" | awk '{print $2 + $3}' | median; }
# images/s from CPU: what 2 busy cores would give (the wall clock is only
# meaningful on an otherwise idle machine)
row() { # row NAME ACC
  local w c
  w=$(wall "$1"); c=$(cpu "$1")
  echo "| $1 | $w | $(awk -v n="$N" -v w="$w" 'BEGIN {printf "%.2f", n / w}') | $c | $(awk -v n="$N" -v c="$c" 'BEGIN {printf "%.3f", c / n}') | $(awk -v n="$N" -v c="$c" 'BEGIN {printf "%.2f", 2 * n / c}') | $2 |"
}
pm_w=$(wall pixmill); cli_w=$(wall cli-omp1); cli2_w=$(wall cli)
{
  echo "Command: \`bench/ocr.sh\` (RUNS=$RUNS), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores,"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $N cards; pixmill $("$PM" --version 2>/dev/null | head -n 1), tesseract $(tesseract --version 2>&1 | head -n 1 | awk '{print $2}')."
  echo
  echo "| run | wall s | images/s (wall) | CPU s | CPU s per image | images/s on 2 idle cores (from CPU) | accuracy |"
  echo "|---|---|---|---|---|---|---|"
  row pixmill "$acc_pm"
  row pixmill-raw "$acc_raw"
  row cli-omp1 "$acc_cli"
  row cli "$acc_cli2"
  echo
  echo "Medians of $RUNS runs. Ratio pixmill / CLI, wall: $(awk -v a="$pm_w" -v b="$cli_w" 'BEGIN {printf "%.2f", b / a}')x" \
       "against OMP_THREAD_LIMIT=1, $(awk -v a="$pm_w" -v b="$cli2_w" 'BEGIN {printf "%.2f", b / a}')x against the default;" \
       "CPU per image: $(awk -v a="$(cpu pixmill)" -v b="$(cpu cli-omp1)" 'BEGIN {printf "%.2f", b / a}')x and" \
       "$(awk -v a="$(cpu pixmill)" -v b="$(cpu cli)" 'BEGIN {printf "%.2f", b / a}')x;" \
       "without preprocessing (pixmill-raw), CPU per image against OMP_THREAD_LIMIT=1:" \
       "$(awk -v a="$(cpu pixmill-raw)" -v b="$(cpu cli-omp1)" 'BEGIN {printf "%.2f", b / a}')x."
} >"$SUM"
cat "$SUM"
