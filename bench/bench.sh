#!/usr/bin/env bash
# bench.sh — pixmill's benchmarks, with the peers measured in the same run.
#
# Usage: bench/bench.sh [OUT_DIR]     (default bench/results/<date>)
#   peers    ../shared/bench/peers.sh over the photo corpus (WebP q80, 256 px,
#            2 jobs), then pixmill on the same job (bench/peer.json), RUNS
#            times each; images/s and peak RSS, medians.
#   default  the default `thumbnails` pipeline (3 sizes, hashes, colours,
#            sharpness, SQLite records, fsync per output), RUNS times.
#   scale    a catalog of SCALE_N items (the photos repeated under distinct
#            ids, --no-dedup) and a 1,000-item prefix of it: wall time, peak
#            RSS at 1k and at SCALE_N, time to the first item done.
# Environment: RUNS=3 SCALE_N=10000 PARTS="peers default scale"
#   CORPUS=../shared/corpus/photos PIXMILL=build/pixmill
# Writes OUT_DIR/summary.md (paste into docs/BENCHMARKS.md) and raw logs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SCALE_N=${SCALE_N:-10000}
PARTS=${PARTS:-"peers default scale"}
CORPUS=$(realpath "${CORPUS:-$ROOT/../shared/corpus/photos}")
PM=$(realpath "${PIXMILL:-build/pixmill}")
OUT=${1:-bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
SUM="$OUT/summary.md"
NIMG=$(find "$CORPUS" -maxdepth 1 -type f | wc -l)
[ -x "$PM" ] || { echo "build pixmill first (make)"; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
jget() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# Runs pixmill RUNS times on a catalog; prints "img_s_med rss_mb_med wall_med first_ms_med".
pm_runs() { # pm_runs NAME CATALOG ARGS...
  local name=$1 cat=$2; shift 2
  local i
  for i in $(seq "$RUNS"); do
    rm -rf "$OUT/tmp-$name"
    /usr/bin/time -f "%e %M" -o "$OUT/$name-$i.time" \
      "$PM" run "$cat" --out "$OUT/tmp-$name" --json --quiet "$@" >"$OUT/$name-$i.json" 2>"$OUT/$name-$i.err"
  done
  rm -rf "$OUT/tmp-$name"
  local ips rss wall first
  ips=$(for i in $(seq "$RUNS"); do n=$(( $(jget "$OUT/$name-$i.json" done) + $(jget "$OUT/$name-$i.json" failed) )); w=$(cut -d' ' -f1 "$OUT/$name-$i.time"); python3 -c "print($n/$w)"; done | median)
  rss=$(for i in $(seq "$RUNS"); do awk '{print $2 / 1024}' "$OUT/$name-$i.time"; done | median)
  wall=$(for i in $(seq "$RUNS"); do cut -d' ' -f1 "$OUT/$name-$i.time"; done | median)
  first=$(for i in $(seq "$RUNS"); do jget "$OUT/$name-$i.json" first_done_ms; done | median)
  printf '%.1f %.0f %.2f %.1f\n' "$ips" "$rss" "$wall" "$first"
}

{
  echo "# pixmill benchmark run $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r); $("$PM" version)"
  echo "Corpus: $CORPUS ($NIMG files). Runs per figure: $RUNS (medians). Wall time is the whole process (start-up included)."
  echo
} >"$SUM"

case " $PARTS " in *" peers "*)
  echo "== peers ($(date +%T))"
  FORMATS=webp RUNS=$RUNS "$ROOT/../shared/bench/peers.sh" "$CORPUS" "$OUT/peers" >"$OUT/peers.log" 2>&1
  read -r ips rss wall first < <(pm_runs peer "$CORPUS" -p bench/peer.json -j 2 --durability none --no-dedup)
  read -r ips_f rss_f wall_f first_f < <(pm_runs peerfsync "$CORPUS" -p bench/peer.json -j 2 --no-dedup)
  {
    echo "## Same job as the peers: one 256-px WebP q80 per image, metadata stripped, 2 workers"
    echo
    echo "Command: \`pixmill run $CORPUS -p bench/peer.json -j 2 --no-dedup [--durability none]\`; peers: \`FORMATS=webp RUNS=$RUNS ../shared/bench/peers.sh $CORPUS OUT\`"
    echo
    echo "| tool | images/s (median) | peak RSS MB (median) | wall s (median) |"
    echo "|---|---|---|---|"
    echo "| pixmill (--durability none, like the peers) | $ips | $rss | $wall |"
    echo "| pixmill (default: fsync every output) | $ips_f | $rss_f | $wall_f |"
    awk -F'\t' 'NR>1 && $2=="webp" {printf "| %s | %s | %s | %s |\n", $1, $9, $10, $7}' "$OUT/peers/summary.tsv" 2>/dev/null
    sharp=$(awk -F'\t' 'NR>1 && $1=="sharp" && $2=="webp" {print $9}' "$OUT/peers/summary.tsv" 2>/dev/null)
    [ -n "$sharp" ] && echo && python3 -c "print('pixmill / sharp images/s: %.2fx (durability none), %.2fx (default)' % ($ips/$sharp, $ips_f/$sharp))"
    echo
  } >>"$SUM"
  ;;
esac

case " $PARTS " in *" default "*)
  echo "== default pipeline ($(date +%T))"
  read -r ips rss wall first < <(pm_runs default "$CORPUS" -j 2 --no-dedup)
  {
    echo "## Default pipeline: 3 sizes (128, 512, 1024 WebP), SHA-256, pHash, colours, sharpness, SQLite records, fsync per output"
    echo
    echo "Command: \`pixmill run $CORPUS -j 2 --no-dedup\`"
    echo
    echo "| images/s (median) | peak RSS MB | wall s | first item done (ms after run start) |"
    echo "|---|---|---|---|"
    echo "| $ips | $rss | $wall | $first |"
    echo
  } >>"$SUM"
  ;;
esac

case " $PARTS " in *" scale "*)
  echo "== scale ($(date +%T))"
  mapfile -t imgs < <(find "$CORPUS" -maxdepth 1 -type f | sort)
  # The smallest photo first, so "time to first item" measures the engine
  # rather than one large decode.
  small=$(ls -S "${imgs[@]}" | tail -1)
  python3 - "$OUT/scale.csv" "$SCALE_N" "$small" "${imgs[@]}" <<'EOF'
import sys
out, n, first, imgs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
with open(out, "w") as f:
    f.write("id,image,title,price\n")
    f.write(f"s0,{first},first,1.00\n")
    for i in range(1, n):
        f.write(f"s{i},{imgs[i % len(imgs)]},item {i},{i % 100}.99\n")
EOF
  head -n 1001 "$OUT/scale.csv" >"$OUT/scale1k.csv"
  RUNS=1 pm_runs scale1k "$OUT/scale1k.csv" -j 2 --no-dedup >"$OUT/scale1k.txt"
  RUNS=1 pm_runs scale "$OUT/scale.csv" -j 2 --no-dedup >"$OUT/scale.txt"
  read -r ips1 rss1 wall1 first1 <"$OUT/scale1k.txt"
  read -r ipsn rssn walln firstn <"$OUT/scale.txt"
  {
    echo "## Scale: $SCALE_N items (photos repeated under distinct ids, --no-dedup), default pipeline"
    echo
    echo "Command: \`pixmill run scale.csv -j 2 --no-dedup\` (bench/bench.sh writes the catalog)"
    echo
    echo "| items | wall s | images/s | peak RSS MB | first item done (ms after run start) |"
    echo "|---|---|---|---|---|"
    echo "| 1000 | $wall1 | $ips1 | $rss1 | $first1 |"
    echo "| $SCALE_N | $walln | $ipsn | $rssn | $firstn |"
    echo
    python3 -c "print('Peak RSS at %d items / at 1000: %.2f' % ($SCALE_N, $rssn/$rss1))"
    echo
  } >>"$SUM"
  ;;
esac
echo "== done: $SUM"
cat "$SUM"
