#!/usr/bin/env bash
# isnet.sh — ISNet (the cutout stage's `isnet` engine) through ONNX Runtime:
# time per 1024 x 1024 inference and peak RSS, with ORT's CPU memory arena
# on and off, 1 and 2 intra-op threads, and one row with ORT's memory
# pattern back on (pixmill turns both off). Kept short (the machine is
# shared).
#
# Usage: bench/isnet.sh [IMAGE]   (default: a corpus photo)
# Each configuration is one process: `pixmill models mask IMAGE --threads T
# --repeat REPEAT` (model load, then REPEAT inferences; the first pays the
# page faults of fresh memory, later ones are the steady state a worker
# sees), under /usr/bin/time -v for peak RSS and CPU seconds.
# Environment: REPEAT=3 PIXMILL=build/pixmill (PIXMILL_MODELS as usual).
# Prints a Markdown table for docs/BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PM=${PIXMILL:-build/pixmill}
REPEAT=${REPEAT:-3}
IMG=${1:-../shared/corpus/photos/palapeli_european-honey-bee.jpg}
[ -x "$PM" ] || { echo "build pixmill first (make)"; exit 2; }
"$PM" models list | grep -q '^isnet ' ||
  { echo "ISNet is not installed: $PM models install isnet --accept-license"; exit 2; }
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

echo "ISNet, $(basename "$IMG") ($(vipsheader "$IMG" 2>/dev/null | cut -d: -f2 | cut -d, -f1 | xargs)), $REPEAT inferences per process, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo
echo "| arena | memory pattern | threads | first inference (s) | later, median (s) | CPU s / inference (user+sys, load included) | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|"
ort=
for cfg in "off off 1" "off off 2" "on off 1" "on off 2" "off on 1"; do
  read -r arena pattern t <<<"$cfg"
  a=0; [ "$arena" = on ] && a=1
  p=0; [ "$pattern" = on ] && p=1
  {
    PIXMILL_ORT_ARENA=$a PIXMILL_ORT_MEM_PATTERN=$p /usr/bin/time -v -o "$LOG/time" \
      "$PM" models mask "$IMG" --threads "$t" --repeat "$REPEAT" >"$LOG/out" 2>"$LOG/err" ||
      { echo "| $arena | $pattern | $t | failed: $(tail -n 1 "$LOG/err") | | | |"; continue; }
    first=$(grep -Eo 'infer [0-9.]+ s' "$LOG/out" | head -n 1 | awk '{print $2}')
    later=$(grep -Eo 'median [0-9.]+ s' "$LOG/out" | awk '{print $2}')
    rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$LOG/time")
    cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", (u + s)}' "$LOG/time")
    # Model load and decode are small next to REPEAT inferences: the
    # process's CPU seconds / REPEAT, a figure other load cannot inflate.
    cpu_per=$(awk -v c="$cpu" -v r="$REPEAT" 'BEGIN {printf "%.2f", c / r}')
    echo "| $arena | $pattern | $t | $first | ${later:--} | $cpu_per | $rss |"
    ort=$(grep -Eo 'ort [0-9.]+' "$LOG/out")
  }
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); ONNX Runtime ${ort#ort }"
