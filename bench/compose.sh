#!/usr/bin/env bash
# compose.sh — composed-ad throughput: ms per composed ad per shipped
# template (bench/compose_bench.c: render + encode, one thread, median and
# p90 over N ads with a different title each time), then products/hour for
# a catalog of P products with local images through the compose pipeline
# (and through the ads pipeline: fast cut-out + compose) on 2 workers, with
# peak RSS. Prints a Markdown section for docs/BENCHMARKS.md.
#
# Usage: bench/compose.sh            Env: BUILD=build N=40 P=200
# (make BUILD=... first). Kept short: the machine is shared; figures are
# what this machine gave at that load, never asserted by a test.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
N=${N:-40}
P=${P:-200}
[ -x "$BUILD/pixmill" ] && [ -f "$BUILD/libpixmill.a" ] || { echo "build first: make BUILD=$BUILD"; exit 2; }
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
export PIXMILL_TEMPLATES=$ROOT/templates
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkvar() { make --no-print-directory BUILD="$BUILD" -f Makefile -f <(printf 'pv:\n\t@echo $(%s)\n' "$1") pv; }
# shellcheck disable=SC2046
cc $(mkvar CFLAGS) -o "$W/compose_bench" bench/compose_bench.c "$BUILD/libpixmill.a" $(mkvar LDLIBS) ||
  { echo "compose_bench did not build"; exit 2; }

echo "### Composed ads"
echo
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $(date -u +%Y-%m-%d)."
echo "Command: \`BUILD=$BUILD N=$N P=$P bench/compose.sh\`."
echo
echo "ms per composed ad (one thread; render = background, product fit + drop shadow, 4 text blocks with auto-fit; encode = JPEG q88), median of $N:"
echo
echo "| template | canvas | product image | median ms | p90 ms | render ms | encode ms | CPU ms |"
echo "|---|---|---|---|---|---|---|---|"
for img in examples/images/opencv_fruits.jpg "$CORPUS/photos/mate_Dune.jpg"; do
  [ -f "$img" ] || continue
  "$W/compose_bench" "$N" "$img" templates/square.json templates/landscape.json templates/story.json >"$W/b.txt" 2>"$W/b.err" ||
    { echo "compose_bench failed: $(cat "$W/b.err")"; exit 1; }
  sz=$(vipsheader -f width "$img")x$(vipsheader -f height "$img")
  while read -r name canvas med p90 ren enc cpu; do
    echo "| $name | $canvas | $(basename "$img") $sz | $med | $p90 | $ren | $enc | $cpu |"
  done <"$W/b.txt"
done
echo

# P products: local images (examples + corpus photos) cycled, a different
# title and price on every row (no two rows share an ad).
python3 - "$W/products.csv" "$P" "$ROOT/examples/images" "$CORPUS/photos" <<'PY'
import os, sys
out, n = sys.argv[1], int(sys.argv[2])
imgs = []
for d in sys.argv[3:]:
    if os.path.isdir(d):
        imgs += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".jpeg", ".png"))]
words = "steel bottle ceramic mug linen shirt walnut desk lamp wool scarf leather wallet canvas print".split()
with open(out, "w") as f:
    f.write("id,image,title,price,currency,brand\n")
    for i in range(n):
        t = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(3 + i % 6)).capitalize()
        f.write('sku-%d,%s,"%s %d",%d.%02d,EUR,Brand %d\n' % (i, imgs[i % len(imgs)], t, i, 5 + i % 400, i % 100, i % 9))
PY
nimg=$(python3 -c "import csv,sys; print(len({r['image'] for r in csv.DictReader(open('$W/products.csv'))}))")
echo '{"name":"compose","stages":[{"stage":"compose"}]}' >"$W/compose.json"
echo "Products/hour, $P products ($nimg distinct local images, 3 ads each: square, landscape, story), \`pixmill run --workers 2\`:"
echo
echo "| pipeline | wall s | products/hour | ads/hour | p50 item ms | peak RSS MiB | CPU s | products/hour if the 2 cores were idle (from CPU time) |"
echo "|---|---|---|---|---|---|---|---|"
for pipe in compose ads; do
  spec=$pipe; [ "$pipe" = compose ] && spec=$W/compose.json
  rm -rf "$W/out"
  # CPU time (user + sys of pixmill and its threads) from getrusage
  OUTBASE="$W/run" python3 -c '
import os, resource, subprocess, sys
base = os.environ["OUTBASE"]
r = subprocess.run(sys.argv[1:], stdout=open(base + ".json", "w"), stderr=subprocess.DEVNULL)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(base + ".cpu", "w").write("%.2f" % (u.ru_utime + u.ru_stime))
sys.exit(r.returncode)' "$BUILD/pixmill" run "$W/products.csv" --pipeline "$spec" -o "$W/out" --workers 2 --quiet --json ||
    echo "run failed"
  python3 - "$W/run.json" "$pipe" "$P" "$(cat "$W/run.cpu")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); p = int(sys.argv[3]); cpu = float(sys.argv[4])
ph = d["done"] / d["wall_s"] * 3600
print("| %s | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f |" % (sys.argv[2], d["wall_s"], ph, ph * 3, d["p50_ms"], d["peak_rss_bytes"] / 2**20, cpu, d["done"] / cpu * 3600 * 2))
if d["done"] != p:
    print("\n(%d of %d done, %d failed)" % (d["done"], p, d["failed"]))
PY
done
echo
echo "Load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
