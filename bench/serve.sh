#!/usr/bin/env bash
# serve.sh — HTTP benchmarks of `pixmill serve`, with nginx measured in the
# same run as the static-file reference. wrk (Debian) shares the 2 cores
# with the server, as the issue asks; medians of RUNS runs.
#
# Usage: bench/serve.sh [OUT_DIR]     (default bench/results/serve-<date>)
#   health   GET /health, wrk -t2 -c64 -d10s
#   asset    GET of a 512-px WebP output from pixmill and the same file from
#            nginx (2 workers, sendfile, access_log off)
#   upload   POST /api/images of a 2 MP JPEG (default thumbnails pipeline:
#            128, 512 and 1024 px WebP, hashes, colours, sharpness) at
#            concurrency 1, 2, 4, 8: p50/p95/p99 and req/s. Each request's
#            bytes differ (a random trailer after the JPEG's end), so dedup
#            never short-cuts the work.
# Environment: RUNS=3 DURATION=10 PIXMILL=build/pixmill
# Writes OUT_DIR/summary.md and the raw wrk logs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
PM=$(realpath "${PIXMILL:-build/pixmill}")
CORPUS=$(realpath "${CORPUS:-$ROOT/../shared/corpus/photos}")
OUT=${1:-bench/results/serve-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
SUM="$OUT/summary.md"
T=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
for c in wrk nginx vips curl python3; do
  command -v $c >/dev/null || { echo "needs $c (scripts/install-deps.sh)"; exit 2; }
done
[ -x "$PM" ] || { echo "build pixmill first (make)"; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The wrk script prints one JSON line with the numbers we keep.
cat >"$T/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local s = summary.duration / 1e6
  io.write(string.format(
    '{"rps":%.1f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"errors":%d,"non2xx":%d}\n',
    summary.requests / s, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
EOF
cat "$T/report.lua" >"$T/upload.lua"
cat >>"$T/upload.lua" <<'EOF'
local f = io.open(os.getenv("BENCH_JPEG"), "rb")
local body = f:read("*a")
f:close()
local n = 0
request = function()
  n = n + 1
  local tail = string.format("%d-%d-%d", n, math.random(1, 1e9), os.time())
  return wrk.format("POST", "/api/images",
    {["Content-Type"] = "image/jpeg"}, body .. tail)
end
EOF

# wrk_runs NAME URL ARGS...: RUNS runs, prints the median JSON fields
wrk_runs() {
  local name=$1 url=$2; shift 2
  for i in $(seq "$RUNS"); do
    wrk --latency -s "${LUA:-$T/report.lua}" "$@" "$url" >"$OUT/$name-$i.log" 2>&1
    tail -n 1 "$OUT/$name-$i.log" >"$OUT/$name-$i.json"
  done
  for k in rps p50_ms p95_ms p99_ms errors non2xx; do
    printf '%s=' "$k"
    for i in $(seq "$RUNS"); do
      python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$OUT/$name-$i.json" "$k"
    done | median
  done | paste -sd' '
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }

# ---- start pixmill serve ----
"$PM" serve --listen 127.0.0.1:0 --port-file "$T/port" --data "$T/data" --workers 2 \
  --durability none >"$OUT/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
SP=$(cat "$T/port")

# A 512-px WebP output, and the same file for nginx.
PHOTO=$(ls -S "$CORPUS"/*.jpg | head -1)
curl -sf -X POST --data-binary @"$PHOTO" "http://127.0.0.1:$SP/api/images?sizes=512" >"$T/up.json"
AURL=$(python3 -c "import json; print(json.load(open('$T/up.json'))['outputs'][0]['url'])")
ABYTES=$(python3 -c "import json; print(json.load(open('$T/up.json'))['outputs'][0]['bytes'])")
mkdir -p "$T/www"
curl -sf "http://127.0.0.1:$SP$AURL" -o "$T/www/asset.webp"
# nginx's workers run as nobody: mktemp's folder is 0700.
chmod 755 "$T" "$T/www"; chmod 644 "$T/www/asset.webp"

NP=$(free_port)
mkdir -p "$T/nginx/logs"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types { image/webp webp; }
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server {
    listen 127.0.0.1:$NP;
    root $T/www;
    etag on;
  }
}
EOF
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' >"$OUT/nginx.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$NP/asset.webp" -o /dev/null && break; sleep 0.1; done
cmp -s <(curl -sf "http://127.0.0.1:$NP/asset.webp") "$T/www/asset.webp" ||
  { echo "nginx does not serve the asset (see $OUT/nginx.log)"; exit 1; }

# A 2 MP JPEG (1632x1224) made from the largest photo.
vips thumbnail "$PHOTO" "$T/2mp.jpg[Q=90]" 1632 --height 1224 --size force >/dev/null 2>&1 ||
  vips thumbnail "$PHOTO" "$T/2mp.jpg[Q=90]" 1632
export BENCH_JPEG="$T/2mp.jpg"
JDIM=$(vipsheader -f width "$T/2mp.jpg")x$(vipsheader -f height "$T/2mp.jpg")
JBYTES=$(stat -c %s "$T/2mp.jpg")

echo "== /health"
H=$(wrk_runs health "http://127.0.0.1:$SP/health" -t2 -c64 -d"${DURATION}s")
echo "$H"
echo "== asset: pixmill"
A=$(wrk_runs asset-pixmill "http://127.0.0.1:$SP$AURL" -t2 -c64 -d"${DURATION}s")
echo "$A"
echo "== asset: nginx"
N=$(wrk_runs asset-nginx "http://127.0.0.1:$NP/asset.webp" -t2 -c64 -d"${DURATION}s")
echo "$N"
declare -A U
for c in 1 2 4 8; do
  echo "== POST /api/images, concurrency $c"
  U[$c]=$(LUA="$T/upload.lua" wrk_runs "upload-c$c" "http://127.0.0.1:$SP" -t1 -c"$c" -d"$((DURATION * 2))s" --timeout 30s)
  echo "${U[$c]}"
done
RSS=$(ps -o rss= -p "${pids[0]}" | awk '{printf "%.0f", $1/1024}')

ratio=$(python3 -c "print(f'{$(field "$A" rps)/$(field "$N" rps):.2f}')")
{
  echo "## pixmill serve — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command: \`bench/serve.sh\` (RUNS=$RUNS, DURATION=${DURATION}s; wrk -t2 -c64 on the same 2 cores;"
  echo "medians). pixmill $("$PM" version 2>/dev/null | head -1), nginx $(nginx -v 2>&1 | cut -d/ -f2), server RSS after the run ${RSS} MB."
  echo
  echo "| test | req/s | p50 ms | p95 ms | p99 ms | errors |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| GET /health (pixmill) | $(field "$H" rps) | $(field "$H" p50_ms) | $(field "$H" p95_ms) | $(field "$H" p99_ms) | $(field "$H" errors)/$(field "$H" non2xx) |"
  echo "| GET 512-px WebP, ${ABYTES} B (pixmill) | $(field "$A" rps) | $(field "$A" p50_ms) | $(field "$A" p95_ms) | $(field "$A" p99_ms) | $(field "$A" errors)/$(field "$A" non2xx) |"
  echo "| same file (nginx) | $(field "$N" rps) | $(field "$N" p50_ms) | $(field "$N" p95_ms) | $(field "$N" p99_ms) | $(field "$N" errors)/$(field "$N" non2xx) |"
  for c in 1 2 4 8; do
    echo "| POST /api/images ${JDIM} JPEG ($JBYTES B), c=$c | $(field "${U[$c]}" rps) | $(field "${U[$c]}" p50_ms) | $(field "${U[$c]}" p95_ms) | $(field "${U[$c]}" p99_ms) | $(field "${U[$c]}" errors)/$(field "${U[$c]}" non2xx) |"
  done
  echo
  echo "Asset GET, pixmill / nginx: **${ratio}×** (target ≥ 0.7×)."
} >"$SUM"
cat "$SUM"
