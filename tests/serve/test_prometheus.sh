#!/usr/bin/env bash
# test_prometheus.sh — a real Prometheus server (Debian's `prometheus`)
# scrapes `pixmill serve` on loopback: the target must come up healthy and
# pixmill's series must be queryable, including the counters of a job the
# server ran. Both run in a temporary folder and are stopped at the end.
# Usage: tests/serve/test_prometheus.sh [PIXMILL]
set -uo pipefail
cd "$(dirname "$0")/../.."
PIXMILL=${1:-build/pixmill}
PIXMILL=$(realpath "$PIXMILL")
CORPUS=${PIXMILL_CORPUS:-$PWD/../shared/corpus}
. tests/cli/lib.sh

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_for SECONDS COMMAND...: polls until COMMAND succeeds
wait_for() {
  local until=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $until ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.3; done
  return 1
}
query() { # query PROMQL: prints the first value of an instant query
  curl -sf --get "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}

command -v prometheus >/dev/null || { bad "prometheus is not installed (Debian package prometheus)"; echo "$pass passed, $fail failed"; exit 1; }

"$PIXMILL" serve --listen 127.0.0.1:0 --port-file "$T/port" --data "$T/data" --workers 2 \
  >"$T/serve.log" 2>&1 &
pids+=($!)
check "pixmill serve starts" wait_for 30 test -s "$T/port"
SP=$(cat "$T/port")

PP=$(free_port)
cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: pixmill
    static_configs:
      - targets: ['127.0.0.1:$SP']
EOF
promtool check config "$T/prometheus.yml" >"$T/promtool.log" 2>&1
check "promtool accepts the scrape config" test $? -eq 0
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$T/prometheus.log" 2>&1 &
pids+=($!)
check "prometheus is ready" wait_for 60 curl -sf "http://127.0.0.1:$PP/-/ready"

# A job, so the item counters and stage histograms have something in them.
{
  echo "id,title,image"
  i=0
  for f in "$CORPUS"/photos/*.jpg; do
    i=$((i + 1)); [ $i -gt 4 ] && break
    echo "$i,Photo $i,$f"
  done
} >"$T/cat.csv"
curl -sf -X POST -H 'Content-Type: text/csv' --data-binary @"$T/cat.csv" \
  "http://127.0.0.1:$SP/api/jobs" >"$T/job.json"
check "a job is accepted" test -s "$T/job.json"

check "the target is up in prometheus" wait_for 60 \
  sh -c "[ \"\$(curl -sf --get http://127.0.0.1:$PP/api/v1/query --data-urlencode 'query=up{job=\"pixmill\"}' | python3 -c 'import json,sys; r=json.load(sys.stdin)[\"data\"][\"result\"]; print(r[0][\"value\"][1] if r else 0)')\" = 1 ]"
health=$(curl -sf "http://127.0.0.1:$PP/api/v1/targets" |
  python3 -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print(t[0]["health"], t[0]["lastError"] or "-")')
eq "the scrape is healthy, with no error" "$health" "up -"
eq "pixmill_build_info is scraped" "$(query 'pixmill_build_info')" "1"
check "the job's items are counted (4 done)" wait_for 60 \
  sh -c "[ \"\$(curl -sf --get http://127.0.0.1:$PP/api/v1/query --data-urlencode 'query=sum(pixmill_items_total{result=\"done\"})' | python3 -c 'import json,sys; r=json.load(sys.stdin)[\"data\"][\"result\"]; print(r[0][\"value\"][1] if r else 0)')\" = 4 ]"
n=$(query 'count(pixmill_stage_duration_seconds_count)')
check "stage duration histograms are scraped ($n stages)" test "${n:-0}" -ge 2
n=$(query 'process_resident_memory_bytes{job="pixmill"}')
check "process metrics are scraped (RSS $n)" test "${n%.*}" -gt 1000000
n=$(query 'sum(pixmill_http_requests_total{route="/api/jobs",code="202"})')
eq "the submission is counted per route and status" "$n" "1"
n=$(query 'pixmill_jobs{state="done"}')
eq "the jobs gauge says one job done" "$n" "1"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
