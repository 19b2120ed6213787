#!/usr/bin/env bash
# isnet.sh — ISNet (the cutout stage's `isnet` engine) through ONNX Runtime:
# time per 1024 x 1024 inference and peak RSS, for the model as shipped
# (float16, PIXMILL_ISNET_FP16=1) and widened to float32 (pixmill's
# default), ORT's CPU memory arena on (pixmill's default for ISNet) and
# off, 1 and 2 intra-op threads, and one row with ORT's memory pattern on.
# Kept short (the machine is shared).
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
echo "| weights | arena | memory pattern | threads | first inference (s) | later, median (s) | later, CPU s (all threads), median | process CPU s / inference (load and first run included) | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
ort=
for cfg in "fp16 off off 2" "fp32 off off 2" "fp32 on off 1" "fp32 on off 2" "fp32 on on 2"; do
  read -r wts arena pattern t <<<"$cfg"
  a=0; [ "$arena" = on ] && a=1
  p=0; [ "$pattern" = on ] && p=1
  f=0; [ "$wts" = fp16 ] && f=1
  {
    PIXMILL_ISNET_FP16=$f PIXMILL_ORT_ARENA=$a PIXMILL_ORT_MEM_PATTERN=$p /usr/bin/time -v -o "$LOG/time" \
      "$PM" models mask "$IMG" --threads "$t" --repeat "$REPEAT" >"$LOG/out" 2>"$LOG/err" ||
      { echo "| $wts | $arena | $pattern | $t | failed: $(tail -n 1 "$LOG/err") | | | | |"; continue; }
    first=$(grep -Eo 'infer [0-9.]+ s' "$LOG/out" | head -n 1 | awk '{print $2}')
    later=$(grep -Eo 'median [0-9.]+ s max' "$LOG/out" | awk '{print $2}')
    # CPU seconds of the steady-state runs (all of ORT's threads)
    later_cpu=$(grep -Eo 'then median [0-9.]+ s$' "$LOG/out" | awk '{print $3}')
    rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$LOG/time")
    cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", (u + s)}' "$LOG/time")
    # Model load and decode are small next to REPEAT inferences: the
    # process's CPU seconds / REPEAT, a figure other load cannot inflate.
    cpu_per=$(awk -v c="$cpu" -v r="$REPEAT" 'BEGIN {printf "%.2f", c / r}')
    echo "| $wts | $arena | $pattern | $t | $first | ${later:--} | ${later_cpu:--} | $cpu_per | $rss |"
    ort=$(grep -Eo 'ort [0-9.]+' "$LOG/out")
  }
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); ONNX Runtime ${ort#ort }"
