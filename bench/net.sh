#!/usr/bin/env bash
# net.sh — networked benchmark: a URL catalog served by the local test
# origin (tests/fetch/origin.c on loopback) with added latency and 25%
# injected faults, the default thumbnails pipeline, 2 workers; then a second
# run with --refresh (conditional requests) for the cache hit rate.
#
# Usage: bench/net.sh [N] [OUT_DIR]     (N URLs, default 10000)
# Environment: DELAY_MS=100 PIXMILL=build/pixmill EXTRA="--per-host 32 ..."
# PIXMILL_ORIGIN (default: tests/origin beside PIXMILL, built by make)
# Prints products/hour, worker CPU utilisation (CPU seconds / wall / 2
# cores), peak RSS and the second run's cache hit rate.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-10000}
OUT=${2:-bench/results/net-$(date +%Y%m%d-%H%M%S)}
DELAY_MS=${DELAY_MS:-100}
PM=$(realpath "${PIXMILL:-build/pixmill}")
mkdir -p "$OUT"; OUT=$(realpath "$OUT")

ORIGIN=${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}
ORIGIN_ROOT="$ROOT/examples/images" "$ORIGIN" --die-with-parent 0 >"$OUT/port" 2>"$OUT/origin.err" &
opid=$!
trap 'kill $opid 2>/dev/null' EXIT
for _ in $(seq 50); do PORT=$(head -n 1 "$OUT/port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
[ -n "${PORT:-}" ] || { echo "origin did not start"; exit 1; }

IMGDIR="$ROOT/examples/images" python3 - "http://127.0.0.1:$PORT" "$N" "$DELAY_MS" >"$OUT/cat.csv" <<'EOF'
import os, sys
base, n, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3]
imgs = sorted(f for f in os.listdir(os.environ["IMGDIR"]) if f.endswith(".jpg"))
faults = ["503", "500", "429", "reset", "truncate"]
print("id,image,title,price")
for i in range(n):
    q = f"tag={i}&delay={delay}"
    if i % 4 == 0:
        q += f"&fault={faults[(i // 4) % len(faults)]}&times={1 + (i // 20) % 2}"
    print(f"p{i},{base}/file/{imgs[i % len(imgs)]}?{q},product {i},{i % 50}.99")
EOF

# One host serves everything here, so the per-host limits are raised to
# what a CDN would allow; the global limit stays at its default (64).
# --no-dedup: the catalog cycles through 5 images, and every row should
# cost a decode and three encodes, as distinct product photos would.
read -r -a extra <<<"${EXTRA:---per-host 32 --per-host-rps 0 --breaker-open 1 --no-dedup}"
run() { # run NAME ARGS...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/$name.time" \
    "$PM" run "$OUT/cat.csv" --out "$OUT/out" --allow-private -j 2 --json --quiet "${extra[@]}" "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.err"
}
run first
run second --refresh
python3 - "$OUT" "$N" "$DELAY_MS" <<'EOF'
import json, sys
out, n, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for name in ("first", "second"):
    wall, user, sys_, kb = map(float, open(f"{out}/{name}.time").read().split())
    d = json.load(open(f"{out}/{name}.json"))
    processed = d["done"] + d["failed"]
    print(f"{name}: {n} URLs, {delay} ms latency, 25% faults: wall {wall:.1f} s, "
          f"done {d['done']}, failed {d['failed']}, "
          f"{processed / wall * 3600:,.0f} products/hour, "
          f"CPU {100 * (user + sys_) / wall / 2:.0f}% of 2 cores, peak RSS {kb / 1024:.0f} MB, "
          f"cache hits {d['cache_hits']} ({100 * d['cache_hits'] / max(1, d['done']):.1f}% of done)")
EOF
