#!/usr/bin/env bash
# test_api.sh — end-to-end tests of `pixmill serve` against docs/API.md:
# operations routes and the OpenAPI document, API keys, jobs (CSV, JSON
# Lines, multipart; items, paging, the dead-letter queue, cancel, retry,
# Server-Sent Events), bad input, uploads and assets (ETag, Range, hostile
# names), search, compression, CORS, rate limits, overload (503), graceful
# shutdown and resume, and hostile connections (slow clients, huge headers,
# garbage bytes).
#
# Usage: tests/serve/test_api.sh [PIXMILL_BINARY]   (default build/pixmill)
# Every server listens on 127.0.0.1:0 (--port-file) with its data under $T;
# they are stopped with SIGTERM, and must exit 0. Server logs are kept in
# $T; sanitizer reports and, on failure, the logs' tails are printed.
# No check depends on a timing: waits poll with generous limits, and the
# overload checks use loads that cannot be served in time.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PM=$(realpath "${1:-$ROOT/build/pixmill}")
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
PHOTOS=$CORPUS/photos
EDGE=$CORPUS/edge
PY="$ROOT/tests/serve/apihelp.py"
# The interpreter itself, not a version-manager shim (those can take half a
# second per start, and the script starts python a few hundred times).
PYBIN=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
python3() { command "$PYBIN" "$@"; }
. "$ROOT/tests/cli/lib.sh"

declare -A SPID=() SURL=()
cleanup() {
  for n in "${!SPID[@]}"; do kill -TERM "${SPID[$n]}" 2>/dev/null; done
  for n in "${!SPID[@]}"; do
    for _ in $(seq 100); do kill -0 "${SPID[$n]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${SPID[$n]}" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
T0=$(date +%s)
mkdir -p "$T/r" "$T/v"
[ -x "$PM" ] || { echo "no pixmill binary at $PM"; echo "0 passed, 1 failed"; exit 1; }
[ -d "$PHOTOS" ] || { echo "no corpus at $CORPUS"; echo "0 passed, 1 failed"; exit 1; }

# ---- helpers ----

# req NAME CURL-ARGS...: one request; headers in $T/r/NAME.h, body in
# $T/r/NAME.b; prints the status (000 when there was no answer).
req() {
  local n=$1; shift
  curl -s -m 120 -o "$T/r/$n.b" -D "$T/r/$n.h" -w '%{http_code}' "$@" 2>/dev/null
  return 0
}
# hdr NAME HEADER: the header's value in the last answer of NAME (values of
# a repeated header joined with ", "); empty when absent.
hdr() {
  awk -v h="$2" 'BEGIN { h = tolower(h) }
    /^HTTP\// { v = "" }
    { l = $0; sub(/\r$/, "", l); i = index(l, ":")
      if (i > 0 && tolower(substr(l, 1, i - 1)) == h) {
        x = substr(l, i + 1); sub(/^[ \t]+/, "", x); v = (v == "" ? x : v ", " x) } }
    END { print v }' "$T/r/$1.h"
}
jf() { python3 "$PY" jf "$T/r/$1.b" "$2"; } # jf NAME PYTHON-EXPR (d = body)
body() { head -c "${2:-300}" "$T/r/$1.b" 2>/dev/null | tr -c '[:print:]' '.'; }
# status DESC NAME GOT WANT-REGEX: checks a status code.
status() {
  if [[ $3 =~ ^($4)$ ]]; then ok "$1 ($3)"; else bad "$1: status $3, want $4: $(body "$2")"; fi
}
# experr DESC NAME GOT WANT-REGEX [CODE-REGEX]: an error answer: the status,
# and a body {"error": {"code": ..., "message": ...}} (with that code).
experr() {
  local d=$1 n=$2 got=$3 want=$4 code=${5:-} c
  status "$d" "$n" "$got" "$want"
  c=$(jf "$n" "d['error']['code'] if isinstance(d['error']['code'], str) and d['error']['code'] and isinstance(d['error']['message'], str) and d['error']['message'] else '<no code/message>'")
  if [ -n "$code" ]; then
    if [[ $c =~ ^($code)$ ]]; then ok "$d: error.code $c"; else bad "$d: error.code '$c', want $code: $(body "$n")"; fi
  elif [[ $c == "<"* ]]; then bad "$d: error body without error.code/message: $(body "$n")"
  else ok "$d: error.code $c, error.message"; fi
}
KEY=pm-test-key-$$-0123456789abcdef
KEY2=pm-other-key-$$-0123456789abcdef
AUTH=(-H "Authorization: Bearer $KEY")
# start_srv NAME SERVE-ARGS...: starts a server on a free port and waits
# until /health/ready answers 200. Sets SPID[NAME] and SURL[NAME].
start_srv() {
  local n=$1 port="" i; shift
  rm -f "$T/$n.port"
  "$PM" serve --listen 127.0.0.1:0 --port-file "$T/$n.port" "$@" >>"$T/$n.log" 2>&1 &
  SPID[$n]=$!
  for i in $(seq 1200); do
    port=$(head -n 1 "$T/$n.port" 2>/dev/null)
    [ -n "$port" ] && break
    kill -0 "${SPID[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    bad "server $n: no port file: $(tail -n 5 "$T/$n.log")"
    return 1
  fi
  SURL[$n]="http://127.0.0.1:$port"
  for i in $(seq 1200); do
    [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "${AUTH[@]}" "${SURL[$n]}/health/ready")" = 200 ] &&
      { ok "server $n listening on $port and ready"; return 0; }
    sleep 0.1
  done
  bad "server $n: /health/ready never answered 200"
  return 1
}
# alive PID: the process runs (exists and is not a zombie). The stat file
# is read by the shell itself: the old `kill -0 && ! grep ') Z'` forked
# grep, and bash reaped the exited server while grep started, so grep found
# no file, failed, and `! grep` called a dead process alive (stop_srv then
# gave 999 in a second: the CI failures of servers c and d).
alive() {
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  [[ $st != *") Z "* ]]
}
# stop_srv NAME [SECONDS] [nosig]: SIGTERM (unless nosig: already sent),
# wait (default 180 s); SRC = exit code (999: still running, killed; 998:
# no process recorded for NAME, which a fresh CI run once showed as a
# 999 that came without the 180-s wait).
stop_srv() {
  local n=$1 pid=${SPID[$1]:-} i
  SRC=998
  [ -n "$pid" ] || { echo "stop_srv $n: no pid recorded (SPID: ${!SPID[*]})"; return 0; }
  SRC=999
  [ "${3:-}" = nosig ] || kill -TERM "$pid" 2>/dev/null
  for i in $(seq $((${2:-180} * 10))); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "stop_srv $n: pid $pid still running after ${2:-180} s: $(cat "/proc/$pid/stat" 2>/dev/null | cut -c1-80)"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  else
    wait "$pid"
    SRC=$?
  fi
  unset "SPID[$n]"
}
# wait_job URL EXPR SECONDS [HEADERS...]: polls URL until EXPR (python, d =
# the JSON) holds; the last JSON goes to $T/r/wait.b. Returns 1 on timeout.
wait_job() {
  local url=$1 expr=$2 secs=$3; shift 3
  python3 "$PY" wait "$url" "$expr" "$secs" "$@" >"$T/r/wait.b"
}
FINAL="d['state'] in ('done', 'cancelled', 'failed')"
sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { if [ -f "$1" ]; then stat -c %s "$1"; else echo 0; fi; }

# Fixtures: the largest JPEGs, each in 6 byte-distinct variants (a suffix
# after the end of the image), so no row of a big job is a duplicate.
mapfile -t BIG < <(ls -S "$PHOTOS"/*.jpg | head -n 10)
for p in $(seq 0 9); do
  for v in $(seq 0 5); do
    { cat "${BIG[$p]}"; printf 'pixmill-api-test %d %d' "$p" "$v"; } >"$T/v/p${p}_$v.jpg"
  done
done
for u in $(seq 0 7); do { cat "${BIG[0]}"; printf 'upload %d' "$u"; } >"$T/v/u$u.jpg"; done
SMALL1=$PHOTOS/opencv_fruits.jpg
SMALL2=$PHOTOS/tuxpaint_jellyfish.jpg
SMALL3=$PHOTOS/opencv_board.jpg
SMALL4=$PHOTOS/palapeli_castle-maintenon.jpg
# bigcat FILE N [PREFIX]: a CSV catalog of N rows over the variants
bigcat() {
  { echo "id,image,title"
    for i in $(seq 0 $(($2 - 1))); do echo "${3:-b}$i,$T/v/p$((i % 10))_$((i / 10 % 6)).jpg,Big photo $i"; done
  } >"$1"
}

# ---- keys and configs ----
H1=$(printf %s "$KEY" | "$PM" hash-key)
H2=$(printf %s "$KEY2" | "$PM" hash-key)
eq "hash-key prints the SHA-256 of the key read on stdin" "$H1" "$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)"
echo short | "$PM" hash-key >/dev/null 2>&1; check "hash-key refuses a short key" test $? -ne 0
KEYS="[{\"name\": \"ci\", \"sha256\": \"$H1\"}, {\"name\": \"other\", \"sha256\": \"$H2\"}]"
cat >"$T/a.json" <<EOF
{"api_keys": $KEYS, "protect_ops": false,
 "cors_origins": ["https://admin.example.com"],
 "max_body": 16384, "max_upload": 4194304}
EOF
cat >"$T/b.json" <<EOF
{"api_keys": $KEYS, "protect_ops": true, "public_assets": true}
EOF
cat >"$T/c.json" <<EOF
{"api_keys": $KEYS, "rate_limit": {"per_second": 2, "burst": 3}}
EOF
cat >"$T/d.json" <<EOF
{"max_queued_jobs": 1, "max_waiting_uploads": 1}
EOF
cat >"$T/e.json" <<EOF
{"connection_timeout": 2}
EOF

start_srv a --data "$T/data-a" --config "$T/a.json" --workers 2 --http-threads 2 || { echo "0 passed, $((fail + 1)) failed"; exit 1; }
A=${SURL[a]}

# ==== 1. operations routes and the OpenAPI document ====
echo "# 1. health, metrics, openapi"
s=$(req health "$A/health"); status "GET /health" health "$s" 200
eq "/health: status ok" "$(jf health "d['status']")" ok
eq "/health: version is a non-empty string" "$(jf health "isinstance(d['version'], str) and len(d['version']) > 0")" True
eq "/health: components store, jobs, uploads (docs/API.md)" \
  "$(jf health "sorted(k for k in ('store', 'jobs', 'uploads') if k in d['components'])")" "['jobs', 'store', 'uploads']"
check "/health: Content-Type application/json" grep -qi '^content-type: application/json' "$T/r/health.h"
s=$(req live "$A/health/live"); status "GET /health/live" live "$s" 200
eq "/health/live: status ok" "$(jf live "d['status']")" ok
s=$(req ready "$A/health/ready"); status "GET /health/ready" ready "$s" 200
s=$(req metrics "$A/metrics"); status "GET /metrics" metrics "$s" 200
check "/metrics: text format 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$T/r/metrics.h"
if command -v promtool >/dev/null; then
  promtool check metrics <"$T/r/metrics.b" >"$T/promtool.out" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then ok "promtool check metrics exits 0"; else bad "promtool check metrics exits $rc: $(head -c 400 "$T/promtool.out")"; fi
else
  bad "promtool is not installed (needed to check /metrics)"
fi
check "/metrics has HTTP request counters" grep -q '^[a-z_]*http[a-z_]*requests' "$T/r/metrics.b"
s=$(req openapi "$A/api/openapi.json"); status "GET /api/openapi.json" openapi "$s" 200
eq "openapi.json: openapi 3.x" "$(jf openapi "str(d['openapi']).split('.')[0]")" 3
eq "openapi.json: has paths" "$(jf openapi "len(d['paths']) > 10")" True
out=$(python3 "$PY" openapi "$ROOT/docs/API.md" "$T/r/openapi.b")
if [ $? -eq 0 ]; then ok "docs/API.md routes == openapi.json paths and methods: $out"; else bad "docs/API.md and openapi.json disagree: $out"; fi
# the ticker samples once a second: wait for the first sample (a loaded
# machine may start the server's ticker late)
for _ in $(seq 50); do
  s=$(req stats "${AUTH[@]}" "$A/api/stats")
  [ "$s" = 200 ] && [ "$(jf stats "len(d['t']) > 0")" = True ] && break
  sleep 0.2
done
status "GET /api/stats" stats "$s" 200
eq "/api/stats: t, items_per_s, req_p50_ms, req_p95_ms arrays" \
  "$(jf stats "all(isinstance(d[k], list) for k in ('t', 'items_per_s', 'req_p50_ms', 'req_p95_ms'))")" True
eq "/api/stats: the four series have one value per second each" \
  "$(jf stats "len(d['t']) > 0 and len({len(d[k]) for k in ('t', 'items_per_s', 'req_p50_ms', 'req_p95_ms')}) == 1")" True
eq "/api/stats: items_per_s numbers >= 0; latencies null or > 0 (never a made-up 0)" \
  "$(jf stats "all(isinstance(x, (int, float)) and x >= 0 for x in d['items_per_s']) and all(x is None or x > 0 for k in ('req_p50_ms', 'req_p95_ms') for x in d[k])")" True
# A second without any request has no latency: null, not 0. Stay idle for
# a few seconds (nothing else talks to this server now), then look; an
# idle second stays in the 300-second history once sampled.
sleep 3
for _ in $(seq 20); do
  s=$(req stats2 "${AUTH[@]}" "$A/api/stats")
  [ "$(jf stats2 "any(x is None for x in d['req_p50_ms'])")" = True ] && break
  sleep 2
done
eq "/api/stats: an idle second has req_p50_ms and req_p95_ms null (the chart's gap)" \
  "$(jf stats2 "[i for i, x in enumerate(d['req_p50_ms']) if x is None] == [i for i, x in enumerate(d['req_p95_ms']) if x is None] != []")" True
eq "/api/stats: a second with requests has p50 <= p95" \
  "$(jf stats2 "all(a <= b for a, b in zip(d['req_p50_ms'], d['req_p95_ms']) if a is not None)")" True
s=$(req dash "$A/"); status "GET / (dashboard) needs no key" dash "$s" 200

# ==== 2. authentication ====
echo "# 2. auth"
s=$(req noauth "$A/api/jobs"); experr "no key: 401" noauth "$s" 401 unauthorized
check "no key: WWW-Authenticate" test -n "$(hdr noauth WWW-Authenticate)"
s=$(req wrongb -H "Authorization: Bearer wrong-key-0123456789abcdef" "$A/api/jobs"); experr "wrong Bearer key: 401" wrongb "$s" 401 unauthorized
check "wrong key: WWW-Authenticate" test -n "$(hdr wrongb WWW-Authenticate)"
s=$(req wrongx -H "X-API-Key: wrong-key-0123456789abcdef" "$A/api/jobs"); experr "wrong X-API-Key: 401" wrongx "$s" 401 unauthorized
s=$(req wrongp -H "Authorization: Bearer ${KEY}x" "$A/api/jobs"); experr "key with one extra character: 401" wrongp "$s" 401
s=$(req basic -u "ci:$KEY" "$A/api/jobs"); experr "Basic auth is not an API key: 401" basic "$s" 401
s=$(req bearer "${AUTH[@]}" "$A/api/jobs"); status "Authorization: Bearer accepted" bearer "$s" 200
s=$(req xkey -H "X-API-Key: $KEY" "$A/api/jobs"); status "X-API-Key accepted" xkey "$s" 200
s=$(req key2 -H "X-API-Key: $KEY2" "$A/api/jobs"); status "second configured key accepted" key2 "$s" 200
s=$(req qkeyjobs "$A/api/jobs?api_key=$KEY"); experr "?api_key= is not accepted on /api/jobs" qkeyjobs "$s" 401
s=$(req openh "$A/health"); status "/health open while protect_ops is false" openh "$s" 200
s=$(req openm "$A/metrics"); status "/metrics open while protect_ops is false" openm "$s" 200
s=$(req noauthpost -H 'Content-Type: text/csv' --data-binary @"$ROOT/examples/catalog.csv" "$A/api/jobs")
experr "POST /api/jobs without a key: 401" noauthpost "$s" 401

start_srv b --data "$T/data-b" --config "$T/b.json" --workers 1 --http-threads 1
B=${SURL[b]:-http://127.0.0.1:1}
s=$(req bm "$B/metrics"); experr "protect_ops: /metrics without key: 401" bm "$s" 401 unauthorized
s=$(req bh "$B/health"); experr "protect_ops: /health without key: 401" bh "$s" 401
s=$(req bmk "${AUTH[@]}" "$B/metrics"); status "protect_ops: /metrics with key" bmk "$s" 200
s=$(req bhk -H "X-API-Key: $KEY" "$B/health/live"); status "protect_ops: /health/live with key" bhk "$s" 200
s=$(req bo "${AUTH[@]}" "$B/api/openapi.json"); status "protect_ops: /api/openapi.json with key" bo "$s" 200
s=$(req bon "$B/api/openapi.json"); experr "protect_ops: /api/openapi.json without key: 401" bon "$s" 401 unauthorized
# public_assets: true: output files need no key; nothing else opens up
s=$(req bup "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$PHOTOS/opencv_fruits.jpg" "$B/api/images?sizes=64")
status "public_assets: upload with a key" bup "$s" 200
BURL=$(jf bup "d['outputs'][0]['url']")
s=$(req bpa "$B$BURL"); status "public_assets: GET $BURL without a key: 200" bpa "$s" 200
eq "public_assets: the asset is the output (its ETag is the body's SHA-256)" "$(hdr bpa ETag)" "\"$(sha "$T/r/bpa.b")\""
s=$(req bpw -H "X-API-Key: wrong-key-0123456789abcdef" "$B$BURL"); status "public_assets: a wrong key does not matter for assets" bpw "$s" 200
s=$(req bpo "$B/api/outputs"); experr "public_assets: /api/outputs (the listing) still needs a key" bpo "$s" 401 unauthorized
s=$(req bpu -H 'Content-Type: image/jpeg' --data-binary @"$PHOTOS/opencv_fruits.jpg" "$B/api/images"); experr "public_assets: uploads still need a key" bpu "$s" 401 unauthorized
s=$(req bpn "$B/api/assets/$(printf '%064d' 0)/64.webp"); experr "public_assets: an unknown asset without a key: 404" bpn "$s" 404 not_found
stop_srv b; eq "server b exits 0 on SIGTERM" "$SRC" 0
echo '{"public_assets": "yes"}' >"$T/badpub.json"
"$PM" serve --listen 127.0.0.1:0 --data "$T/data-x" --config "$T/badpub.json" >"$T/r/badpub.out" 2>&1
eq "config public_assets not a boolean: exit 2" "$?" 2
check "config public_assets not a boolean: says why" grep -q 'public_assets' "$T/r/badpub.out"

# ==== 3. jobs ====
echo "# 3. jobs"
cat >"$T/j1.csv" <<EOF
id,image,title,category
r1,$SMALL1,Crimson zebrafruit bowl,kitchen
r2,$SMALL2,Blue jellyfish poster,decor
r3,$T/missing-file.jpg,Missing picture,decor
r4,$SMALL1,Duplicate of the fruit,kitchen
EOF
s=$(req j1 "${AUTH[@]}" -H 'Content-Type: text/csv' --data-binary @"$T/j1.csv" "$A/api/jobs?sizes=200&formats=webp&quality=70&name=first")
status "POST /api/jobs CSV: 202" j1 "$s" 202
J1=$(jf j1 "d['id']")
eq "POST /api/jobs: Location /api/jobs/ID" "$(hdr j1 Location)" "/api/jobs/$J1"
eq "POST /api/jobs: state queued or running" "$(jf j1 "d['state'] in ('queued', 'running')")" True
eq "POST /api/jobs: urls" "$(jf j1 "[d['urls']['self'], d['urls']['events'], d['urls']['items']]")" \
  "['/api/jobs/$J1', '/api/jobs/$J1/events', '/api/jobs/$J1/items']"
wait_job "$A/api/jobs/$J1" "$FINAL" 180 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/j1d.b"
eq "CSV job ends done" "$(jf j1d "d['state']")" done
eq "CSV job: items 4, done 3, failed 1, duplicates 1" "$(jf j1d "[d['items'], d['done'], d['failed'], d['duplicates']]")" "[4, 3, 1, 1]"
eq "CSV job: name and pipeline" "$(jf j1d "[d['name'], d['pipeline']]")" "['first', 'thumbnails']"
eq "CSV job: progress 1, total 4, total_known" "$(jf j1d "[d['progress'], d['total'], d['total_known']]")" "[1.0, 4, True]"
eq "job JSON has every documented field" \
  "$(jf j1d "[k for k in ('id','name','state','pipeline','created','updated','items','done','failed','duplicates','runs','error','urls','total','total_known','progress') if k not in d]")" "[]"
eq "finished job: runs 1, error null, no live-only fields (rate, eta_s, elapsed_s, cache_hits)" \
  "$(jf j1d "[d['runs'], d['error'], [k for k in ('rate', 'eta_s', 'elapsed_s', 'cache_hits') if k in d]]")" "[1, None, []]"
s=$(req j1get "${AUTH[@]}" "$A/api/jobs/$J1"); status "GET /api/jobs/ID" j1get "$s" 200
eq "job created <= updated (Unix seconds)" "$(jf j1get "1.5e9 < d['created'] <= d['updated']")" True
s=$(req j1items "${AUTH[@]}" "$A/api/jobs/$J1/items"); status "GET items" j1items "$s" 200
eq "items: 4, keys r1..r4 in order" "$(jf j1items "[i['key'] for i in d['items']]")" "['r1', 'r2', 'r3', 'r4']"
eq "items: next_cursor null on the last page" "$(jf j1items "d['next_cursor']")" None
eq "item r1: done, id, title, code ok, attempts 1" \
  "$(jf j1items "[(i['state'], i['id'], i['title'], i['code'], i['attempts']) for i in d['items'] if i['key']=='r1'][0]")" \
  "('done', 'r1', 'Crimson zebrafruit bowl', 'ok', 1)"
eq "item r1: sha256 of the file" "$(jf j1items "d['items'][0]['sha256']")" "$(sha "$SMALL1")"
eq "item r1: sizes=200 formats=webp -> one output 200.webp, webp, long edge 200" \
  "$(jf j1items "[(o['name'], o['format'], max(o['width'], o['height'])) for o in d['items'][0]['outputs']]")" "[('200.webp', 'webp', 200)]"
eq "item r1: output url /api/assets/SHA/200.webp" "$(jf j1items "d['items'][0]['outputs'][0]['url']")" "/api/assets/$(sha "$SMALL1")/200.webp"
eq "item r3 (missing file): failed, code not_found, an error message" \
  "$(jf j1items "[(i['state'], i['code'], bool(i['error'])) for i in d['items'] if i['key']=='r3'][0]")" "('failed', 'not_found', True)"
eq "item r4: done, duplicate true, same outputs" \
  "$(jf j1items "[(i['state'], i['duplicate'], i['outputs'] == d['items'][0]['outputs']) for i in d['items'] if i['key']=='r4'][0]")" \
  "('done', True, True)"
Q70=$(jf j1items "d['items'][0]['outputs'][0]['bytes']")
# paging: limit=1 and the cursor visit every item exactly once
python3 "$PY" pages "$A/api/jobs/$J1/items" 1 "Authorization: Bearer $KEY" >"$T/r/pages.b"
eq "paging limit=1: every item exactly once, in order" "$(jf pages "[d['keys'], d['error']]")" "[['r1', 'r2', 'r3', 'r4'], None]"
python3 "$PY" pages "$A/api/jobs/$J1/items" 3 "Authorization: Bearer $KEY" >"$T/r/pages3.b"
eq "paging limit=3: every item exactly once" "$(jf pages3 "[d['keys'], d['error']]")" "[['r1', 'r2', 'r3', 'r4'], None]"
s=$(req p1 "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=1"); status "items?limit=1" p1 "$s" 200
eq "items?limit=1: one item and a next_cursor string" "$(jf p1 "[len(d['items']), isinstance(d['next_cursor'], str)]")" "[1, True]"
eq "paging limit=1 over 4 items: 4 pages, no empty last page" "$(jf pages "d['pages']")" 4
eq "paging limit=3 over 4 items: 2 pages" "$(jf pages3 "d['pages']")" 2
s=$(req p4 "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=4"); status "items?limit=4 (exactly all 4)" p4 "$s" 200
eq "items?limit=4: a full last page has next_cursor null" "$(jf p4 "[len(d['items']), d['next_cursor']]")" "[4, None]"
s=$(req p3 "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=3"); status "items?limit=3" p3 "$s" 200
s=$(req p3b "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=3&cursor=$(jf p3 "d['next_cursor']")"); status "items?limit=3&cursor=next" p3b "$s" 200
eq "items: the page after limit=3 is r4 alone, next_cursor null" "$(jf p3b "[[i['key'] for i in d['items']], d['next_cursor']]")" "[['r4'], None]"
s=$(req fi2 "${AUTH[@]}" "$A/api/jobs/$J1/items?state=failed&limit=1"); status "items?state=failed&limit=1" fi2 "$s" 200
eq "items?state=failed&limit=1: the one failed item fills the page, next_cursor null" "$(jf fi2 "[[i['key'] for i in d['items']], d['next_cursor']]")" "[['r3'], None]"
eq "items: every documented field" \
  "$(jf j1items "sorted({k for i in d['items'] for k in ('key','ordinal','id','title','image','state','code','error','sha256','duplicate','attempts','latency_ms','outputs') if k not in i})")" "[]"
eq "items: latency_ms >= 0, ordinals 1..4" "$(jf j1items "[all(i['latency_ms'] >= 0 for i in d['items']), [i['ordinal'] for i in d['items']]]")" "[True, [1, 2, 3, 4]]"
eq "items: the failed item has no outputs and a null sha256" "$(jf j1items "[(i['outputs'], i['sha256']) for i in d['items'] if i['key'] == 'r3']")" "[([], None)]"
s=$(req fi "${AUTH[@]}" "$A/api/jobs/$J1/items?state=failed"); status "items?state=failed" fi "$s" 200
eq "items?state=failed: only r3" "$(jf fi "[(i['key'], i['state']) for i in d['items']]")" "[('r3', 'failed')]"
s=$(req di "${AUTH[@]}" "$A/api/jobs/$J1/items?state=done"); status "items?state=done" di "$s" 200
eq "items?state=done: r1 r2 r4" "$(jf di "[i['key'] for i in d['items'] if i['state'] == 'done']")" "['r1', 'r2', 'r4']"
s=$(req dlq "${AUTH[@]}" "$A/api/failed?job=$J1"); status "GET /api/failed?job=ID" dlq "$s" 200
eq "/api/failed lists r3 with code not_found and an error" \
  "$(jf dlq "[(i['job_id'], i['key'], i['code'], bool(i['error']), i['attempts']) for i in d['items']]")" "[($J1, 'r3', 'not_found', True, 1)]"
s=$(req dlqr "${AUTH[@]}" "$A/api/failed?reason=decode_error"); status "/api/failed?reason=decode_error" dlqr "$s" 200
eq "/api/failed?reason=decode_error: none yet" "$(jf dlqr "len(d['items'])")" 0
s=$(req dlql "${AUTH[@]}" "$A/api/failed?limit=0"); experr "/api/failed?limit=0: 400" dlql "$s" 400

# JSON Lines, other sizes, formats and quality
printf '{"id": "j1", "image": "%s", "title": "Night board"}\n{"id": "j2", "image": "%s", "title": "Fruit again"}\n' \
  "$SMALL3" "$SMALL1" >"$T/j2.jsonl"
s=$(req j2 "${AUTH[@]}" -H 'Content-Type: application/x-ndjson' --data-binary @"$T/j2.jsonl" "$A/api/jobs?sizes=200&formats=webp,jpeg&quality=20")
status "POST /api/jobs JSON Lines: 202" j2 "$s" 202
J2=$(jf j2 "d['id']")
wait_job "$A/api/jobs/$J2" "$FINAL" 180 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/j2d.b"
eq "JSON Lines job: done, 2 items done" "$(jf j2d "[d['state'], d['items'], d['done'], d['failed']]")" "['done', 2, 2, 0]"
s=$(req j2items "${AUTH[@]}" "$A/api/jobs/$J2/items"); status "JSON Lines job items" j2items "$s" 200
eq "formats=webp,jpeg: outputs 200.webp and 200.jp(e)g" \
  "$(jf j2items "sorted((o['name'].replace('.jpeg', '.jpg'), o['format']) for o in d['items'][1]['outputs'])")" "[('200.jpg', 'jpeg'), ('200.webp', 'webp')]"
Q20=$(jf j2items "[o['bytes'] for o in d['items'][1]['outputs'] if o['name'] == '200.webp'][0]")
check "quality=20 gives a smaller 200.webp than quality=70 ($Q20 < $Q70 bytes)" test "$Q20" -lt "$Q70"
eq "the same image under a new pipeline is not a duplicate" "$(jf j2items "d['items'][1]['duplicate']")" False

# multipart
printf 'id,image,title\nm1,%s,Castle in multipart\n' "$SMALL4" >"$T/j3.csv"
s=$(req j3 "${AUTH[@]}" -F "catalog=@$T/j3.csv;type=text/csv" -F sizes=128 -F name=multi "$A/api/jobs")
status "POST /api/jobs multipart: 202" j3 "$s" 202
J3=$(jf j3 "d['id']")
eq "multipart: Location" "$(hdr j3 Location)" "/api/jobs/$J3"
wait_job "$A/api/jobs/$J3" "$FINAL" 180 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/j3d.b"
eq "multipart job: done, 1 item, name from the form field" "$(jf j3d "[d['state'], d['items'], d['done'], d['name']]")" "['done', 1, 1, 'multi']"
s=$(req j3items "${AUTH[@]}" "$A/api/jobs/$J3/items"); status "multipart job items" j3items "$s" 200
eq "multipart sizes=128: output 128.webp, long edge 128" \
  "$(jf j3items "[(o['name'], max(o['width'], o['height'])) for o in d['items'][0]['outputs']]")" "[('128.webp', 128)]"

s=$(req jobs "${AUTH[@]}" "$A/api/jobs"); status "GET /api/jobs" jobs "$s" 200
eq "/api/jobs lists the three jobs" "$(jf jobs "sorted({$J1, $J2, $J3} & {j['id'] for j in d['jobs']})")" "$(python3 -c "print(sorted({$J1, $J2, $J3}))")"
eq "/api/jobs: newest first" "$(jf jobs "[j['created'] for j in d['jobs']] == sorted([j['created'] for j in d['jobs']], reverse=True)")" True
s=$(req jobs1 "${AUTH[@]}" "$A/api/jobs?limit=1"); status "GET /api/jobs?limit=1" jobs1 "$s" 200
eq "/api/jobs?limit=1: one job" "$(jf jobs1 "len(d['jobs'])")" 1

# the events stream of a finished job, with ?api_key=
s=$(req evq -m 60 "$A/api/jobs/$J1/events?api_key=$KEY"); status "events ?api_key= accepted (finished job)" evq "$s" 200
check "events: text/event-stream" grep -qi '^content-type: text/event-stream' "$T/r/evq.h"
python3 "$PY" sse "$T/r/evq.b" "$J1" >"$T/r/evqs.b"
eq "events of a finished job: one end event, state done" "$(jf evqs "[d['end'], d['last'], d['last_state'], d['bad_data']]")" "[1, 'end', 'done', 0]"
s=$(req evbad -m 60 "$A/api/jobs/$J1/events?api_key=wrong-key-0123456789abcdef"); experr "events with a wrong ?api_key=: 401" evbad "$s" 401

# ==== 4. bad input ====
echo "# 4. bad input"
CT=(-H 'Content-Type: text/csv')
s=$(req e1 "${AUTH[@]}" "${CT[@]}" --data-binary '' "$A/api/jobs"); experr "empty body: 400" e1 "$s" 400
s=$(req e1b "${AUTH[@]}" -X POST "$A/api/jobs"); experr "no body at all: 400" e1b "$s" 400
printf 'id,image,title\n' >"$T/hdronly.csv"
s=$(req e1c "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/hdronly.csv" "$A/api/jobs"); experr "header row only: 400" e1c "$s" 400
head -c 4000 "$SMALL1" >"$T/garbage.bin"
s=$(req e2 "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/garbage.bin" "$A/api/jobs"); experr "binary garbage as catalog: 4xx" e2 "$s" '4[0-9][0-9]'
s=$(req e2b "${AUTH[@]}" -H 'Content-Type: application/octet-stream' --data-binary @"$T/garbage.bin" "$A/api/jobs"); experr "binary garbage (octet-stream): 4xx" e2b "$s" '4[0-9][0-9]'
for qv in 0 101 -5 abc 50.5 ''; do
  s=$(req eq "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/j3.csv" "$A/api/jobs?quality=$qv"); experr "quality=$qv: 400" eq "$s" 400
done
s=$(req ep "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/j3.csv" "$A/api/jobs?pipeline=no-such-pipeline"); experr "unknown pipeline: 400" ep "$s" 400
for pv in /etc/passwd ../../etc/passwd . "$T/a.json" %2Fetc%2Fpasswd; do
  s=$(req ep2 "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/j3.csv" "$A/api/jobs?pipeline=$pv"); experr "pipeline=$pv: 400" ep2 "$s" 400
done
for sz in 0 abc -1 99999999; do
  s=$(req es "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/j3.csv" "$A/api/jobs?sizes=$sz"); experr "sizes=$sz: 400" es "$s" 400
done
s=$(req ef "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/j3.csv" "$A/api/jobs?formats=gif"); experr "formats=gif: 400" ef "$s" 400
python3 -c "import sys; sys.stdout.write('id,image,title\n' + ''.join(f'x{i},/nonexistent/{i}.jpg,row {i}\n' for i in range(1500)))" >"$T/big.csv"
s=$(req e413 "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/big.csv" "$A/api/jobs"); experr "body over max_body: 413" e413 "$s" 413 too_large
s=$(req e413c "${AUTH[@]}" "${CT[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.csv" "$A/api/jobs"); experr "chunked body over max_body: 413" e413c "$s" 413 too_large
s=$(req e413m "${AUTH[@]}" -F "catalog=@$T/big.csv" "$A/api/jobs"); experr "multipart body over max_body: 413" e413m "$s" 413
head -c 5000000 /dev/urandom >"$T/5mb.bin"
s=$(req e413u "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$T/5mb.bin" "$A/api/images"); experr "upload over max_upload: 413" e413u "$s" 413 too_large
s=$(req alive "$A/health/live"); status "server alive after the 413s" alive "$s" 200
s=$(req nf1 "${AUTH[@]}" "$A/api/jobs/999999"); experr "unknown job id: 404" nf1 "$s" 404 not_found
for id in abc 1x -1 0 1.0 99999999999999999999999 %00 "$J1%00abc" "$J1%00"; do
  s=$(req nf2 "${AUTH[@]}" "$A/api/jobs/$id"); experr "job id '$id': 404" nf2 "$s" 404
done
s=$(req nf3 "${AUTH[@]}" "$A/api/jobs/999999/items"); experr "items of an unknown job: 404" nf3 "$s" 404
s=$(req nf4 "${AUTH[@]}" -m 30 "$A/api/jobs/999999/events"); experr "events of an unknown job: 404" nf4 "$s" 404
s=$(req nf5 "${AUTH[@]}" -X DELETE "$A/api/jobs/999999"); experr "DELETE an unknown job: 404" nf5 "$s" 404
s=$(req nf6 "${AUTH[@]}" -X POST "$A/api/jobs/999999/retry"); experr "retry an unknown job: 404" nf6 "$s" 404
s=$(req del "${AUTH[@]}" -X DELETE "$A/api/jobs/$J1"); experr "DELETE a finished job: 409" del "$s" 409
s=$(req nr1 "${AUTH[@]}" "$A/api/nope"); experr "unknown route GET /api/nope: 404" nr1 "$s" 404 not_found
s=$(req nr2 "${AUTH[@]}" -X POST --data x "$A/api/nope"); experr "unknown route POST /api/nope: 404" nr2 "$s" 404
s=$(req nr3 "${AUTH[@]}" "$A/no/such/page.html"); experr "unknown dashboard file: 404" nr3 "$s" 404
s=$(req m1 "${AUTH[@]}" -X PUT --data x "$A/api/jobs"); experr "PUT /api/jobs: 405" m1 "$s" 405 method_not_allowed
allow=$(hdr m1 Allow)
if [[ $allow == *GET* && $allow == *POST* ]]; then ok "PUT /api/jobs: Allow lists GET and POST ($allow)"; else bad "PUT /api/jobs: Allow is '$allow', want both GET and POST"; fi
s=$(req m2 "${AUTH[@]}" -X PATCH "$A/api/jobs/$J1"); experr "PATCH /api/jobs/ID: 405" m2 "$s" 405 method_not_allowed
allow=$(hdr m2 Allow)
if [[ $allow == *GET* && $allow == *DELETE* ]]; then ok "PATCH /api/jobs/ID: Allow lists GET and DELETE ($allow)"; else bad "PATCH /api/jobs/ID: Allow is '$allow', want both GET and DELETE"; fi
s=$(req m3 "${AUTH[@]}" -X PUT "$A/api/images"); experr "PUT /api/images: 405" m3 "$s" 405 method_not_allowed
allow=$(hdr m3 Allow)
if [[ $allow == *GET* && $allow == *POST* ]]; then ok "PUT /api/images: Allow lists POST and GET ($allow)"; else bad "PUT /api/images: Allow is '$allow', want POST and GET"; fi
s=$(req m4 "${AUTH[@]}" -X DELETE "$A/api/images/$(printf '%064d' 0)"); experr "DELETE /api/images/SHA: 405" m4 "$s" 405 method_not_allowed
for lim in 0 abc -1 1001 ''; do
  s=$(req l1 "${AUTH[@]}" "$A/api/jobs?limit=$lim"); experr "/api/jobs?limit=$lim: 400" l1 "$s" 400
done
for lim in 0 abc 501; do
  s=$(req l2 "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=$lim"); experr "items?limit=$lim: 400" l2 "$s" 400
done
s=$(req l3 "${AUTH[@]}" "$A/api/jobs/$J1/items?limit=500"); status "items?limit=500" l3 "$s" 200
s=$(req st1 "${AUTH[@]}" "$A/api/jobs/$J1/items?state=bogus"); experr "items?state=bogus: 400" st1 "$s" 400
s=$(req cu1 "${AUTH[@]}" "$A/api/jobs/$J1/items?cursor=abc"); experr "items?cursor=abc: 400" cu1 "$s" 400
s=$(req ol "${AUTH[@]}" "$A/api/outputs?limit=0"); experr "/api/outputs?limit=0: 400" ol "$s" 400

# ==== 5. uploads and assets ====
echo "# 5. uploads"
UP=$PHOTOS/mate_GreenMeadow.jpg
UP2=$PHOTOS/palapeli_european-honey-bee.jpg
s=$(req u1 "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images?title=Green%20meadow%20upload")
status "POST /api/images raw JPEG: 200" u1 "$s" 200
eq "upload: sha256 == sha256sum of the file" "$(jf u1 "d['sha256']")" "$(sha "$UP")"
eq "upload: format jpeg, duplicate false, phash 16 hex" "$(jf u1 "[d['format'], d['duplicate'], len(d['phash'])]")" "['jpeg', False, 16]"
eq "upload: width and height of the image" "$(jf u1 "[d['width'], d['height']]")" \
  "[$(vipsheader -f width "$UP" 2>/dev/null || echo '?'), $(vipsheader -f height "$UP" 2>/dev/null || echo '?')]"
eq "upload: default outputs 128/512/1024.webp" "$(jf u1 "sorted(o['name'] for o in d['outputs'])")" "['1024.webp', '128.webp', '512.webp']"
eq "upload: bytes (the upload's size), pipeline, ms" "$(jf u1 "[d['bytes'], d['pipeline'], d['ms'] > 0]")" "[$(stat -c %s "$UP"), 'thumbnails', True]"
s=$(req ujobs "${AUTH[@]}" "$A/api/jobs?limit=100"); status "GET /api/jobs after an upload" ujobs "$s" 200
eq "uploads are recorded in a job named uploads, state uploads" "$(jf ujobs "sorted({(j['name'], j['state']) for j in d['jobs'] if j['state'] == 'uploads'})")" "[('uploads', 'uploads')]"
UJ=$(jf ujobs "[j['id'] for j in d['jobs'] if j['state'] == 'uploads'][0]")
s=$(req ujd "${AUTH[@]}" -X DELETE "$A/api/jobs/$UJ"); experr "DELETE the uploads job: 409" ujd "$s" 409 conflict
s=$(req ujr "${AUTH[@]}" -X POST "$A/api/jobs/$UJ/retry"); experr "retry the uploads job: 409" ujr "$s" 409 conflict
eq "upload: every output has url, format, width, height, bytes" \
  "$(jf u1 "all(o['url'] == '/api/assets/%s/%s' % (d['sha256'], o['name']) and o['format'] == 'webp' and o['width'] > 0 and o['height'] > 0 and o['bytes'] > 0 for o in d['outputs'])")" True
s=$(req t0 "${AUTH[@]}" "$A/api/search/text?q=meadow"); status "search text right after an upload with ?title=" t0 "$s" 200
eq "search text finds the upload's title" "$(jf t0 "'$(sha "$UP")' in [r['sha256'] for r in d['results']]")" True
s=$(req u2 "${AUTH[@]}" -F "file=@$UP2" "$A/api/images"); status "POST /api/images multipart: 200" u2 "$s" 200
eq "multipart upload: sha256 of the file, not a duplicate" "$(jf u2 "[d['sha256'], d['duplicate'], len(d['outputs'])]")" "['$(sha "$UP2")', False, 3]"
s=$(req u3 "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images"); status "same upload again (raw): 200" u3 "$s" 200
eq "same upload again: duplicate true, same outputs" "$(jf u3 "[d['duplicate'], d['sha256'], sorted(o['name'] for o in d['outputs'])]")" \
  "[True, '$(sha "$UP")', ['1024.webp', '128.webp', '512.webp']]"
s=$(req u4 "${AUTH[@]}" -F "file=@$UP2" "$A/api/images"); status "same upload again (multipart): 200" u4 "$s" 200
eq "same multipart upload again: duplicate true" "$(jf u4 "d['duplicate']")" True
s=$(req u5 "${AUTH[@]}" -F "file=@$UP" "$A/api/images?sizes=64&formats=jpeg&quality=50"); status "upload with sizes=64 formats=jpeg quality=50" u5 "$s" 200
eq "upload sizes/formats: one 64.jp(e)g, long edge 64, not a duplicate (other pipeline)" \
  "$(jf u5 "[[(o['name'].replace('.jpeg', '.jpg'), o['format'], max(o['width'], o['height'])) for o in d['outputs']], d['duplicate']]")" "[[('64.jpg', 'jpeg', 64)], False]"
# docs/API.md: a broken image is 422 decode_error, a format pixmill does
# not decode (or no image at all) 415 unsupported.
for fc in skimage_truncated.jpg:422:decode_error png_invalid_crc32.png:422:decode_error \
  heic_park_truncated.heic:422:decode_error bmp_colormap.bmp:415:unsupported; do
  IFS=: read -r f want code <<<"$fc"
  s=$(req ub "${AUTH[@]}" -H 'Content-Type: application/octet-stream' --data-binary @"$EDGE/$f" "$A/api/images")
  experr "broken/unsupported upload $f: $want $code with a reason" ub "$s" "$want" "$code"
done
printf 'this is just some text, not an image\n%.0s' $(seq 20) >"$T/text.txt"
s=$(req ut "${AUTH[@]}" -H 'Content-Type: text/plain' --data-binary @"$T/text.txt" "$A/api/images"); experr "text upload: 415 unsupported" ut "$s" 415 unsupported
s=$(req ut2 "${AUTH[@]}" -F "file=@$T/text.txt" "$A/api/images"); experr "text upload (multipart): 415 unsupported" ut2 "$s" 415 unsupported
s=$(req ue "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary '' "$A/api/images"); experr "empty upload: 400" ue "$s" 400
s=$(req uq "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images?quality=0"); experr "upload quality=0: 400" uq "$s" 400
s=$(req upp "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images?pipeline=/etc/passwd"); experr "upload pipeline=/etc/passwd: 400" upp "$s" 400
s=$(req upn "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images?pipeline=nope"); experr "upload unknown pipeline: 400" upn "$s" 400
s=$(req usz "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images?sizes=0"); experr "upload sizes=0: 400" usz "$s" 400
s=$(req una "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/images"); status "uploads still work after the bad ones" una "$s" 200

# assets
URL1=$(jf u1 "[o['url'] for o in d['outputs'] if o['name'] == '512.webp'][0]")
OSHA=$(jf u1 "[o.get('sha256') for o in d['outputs'] if o['name'] == '512.webp'][0]")
OBYTES=$(jf u1 "[o['bytes'] for o in d['outputs'] if o['name'] == '512.webp'][0]")
s=$(req as "${AUTH[@]}" "$A$URL1"); status "GET output url: 200" as "$s" 200
eq "asset: Content-Type image/webp" "$(hdr as Content-Type)" image/webp
check "asset: Cache-Control public, immutable" grep -qi '^cache-control: public.*immutable' "$T/r/as.h"
ETAG=$(hdr as ETag)
check "asset: has an ETag ($ETAG)" test -n "$ETAG"
eq "asset: ETag is the output's SHA-256" "$ETAG" "\"$(sha "$T/r/as.b")\""
eq "asset: body size == output bytes" "$(stat -c %s "$T/r/as.b")" "$OBYTES"
[ "$OSHA" != None ] && eq "asset: body sha256 == output sha256" "$(sha "$T/r/as.b")" "$OSHA"
check "asset: a WebP file" grep -q WEBP <(head -c 16 "$T/r/as.b")
s=$(req asnk "$A$URL1"); experr "asset without a key (public_assets off, the default): 401" asnk "$s" 401 unauthorized
s=$(req as304 "${AUTH[@]}" -H "If-None-Match: $ETAG" "$A$URL1"); status "If-None-Match: 304" as304 "$s" 304
eq "304: no body" "$(fsize "$T/r/as304.b")" 0
s=$(req as304b "${AUTH[@]}" -H "If-None-Match: \"abc\", $ETAG" "$A$URL1"); status "If-None-Match list with the tag: 304" as304b "$s" 304
s=$(req as200 "${AUTH[@]}" -H 'If-None-Match: "0000"' "$A$URL1"); status "If-None-Match other tag: 200" as200 "$s" 200
s=$(req ar "${AUTH[@]}" -H 'Range: bytes=0-99' "$A$URL1"); status "Range bytes=0-99: 206" ar "$s" 206
eq "206: Content-Range" "$(hdr ar Content-Range)" "bytes 0-99/$OBYTES"
eq "206: 100 bytes" "$(stat -c %s "$T/r/ar.b")" 100
eq "206: the first 100 bytes of the file" "$(sha "$T/r/ar.b")" "$(head -c 100 "$T/r/as.b" | sha256sum | cut -d' ' -f1)"
s=$(req ar2 "${AUTH[@]}" -H 'Range: bytes=-10' "$A$URL1"); status "Range bytes=-10: 206" ar2 "$s" 206
eq "suffix range: last 10 bytes" "$(sha "$T/r/ar2.b")" "$(tail -c 10 "$T/r/as.b" | sha256sum | cut -d' ' -f1)"
s=$(req ar416 "${AUTH[@]}" -H "Range: bytes=$((OBYTES + 10))-" "$A$URL1"); status "Range beyond the end: 416" ar416 "$s" 416
eq "416: Content-Range bytes */SIZE" "$(hdr ar416 Content-Range)" "bytes */$OBYTES"
s=$(req agz "${AUTH[@]}" -H 'Accept-Encoding: gzip, br, zstd' "$A$URL1"); status "asset with Accept-Encoding" agz "$s" 200
eq "image: no Content-Encoding" "$(hdr agz Content-Encoding)" ""
eq "image: bytes unchanged" "$(sha "$T/r/agz.b")" "$(sha "$T/r/as.b")"
s=$(req ah "${AUTH[@]}" -I "$A$URL1"); status "HEAD asset: 200" ah "$s" 200
S1=$(sha "$UP")
s=$(req an1 "${AUTH[@]}" "$A/api/assets/$S1/999.webp"); experr "unknown output name: 404" an1 "$s" 404 not_found
s=$(req an2 "${AUTH[@]}" "$A/api/assets/$(printf '%064d' 0)/512.webp"); experr "unknown sha256: 404" an2 "$s" 404 not_found
s=$(req an3 "${AUTH[@]}" "$A/api/assets/nothex/512.webp"); experr "bad hash: 400" an3 "$s" 400
s=$(req an4 "${AUTH[@]}" "$A/api/assets/${S1^^}/512.webp"); experr "upper-case hash: 400 or 404" an4 "$s" '400|404'
DBSZ=$(stat -c %s "$T/data-a/pixmill.db")
n_hostile=0; n_bad=0
for name in .. %2e%2e %2E%2E .%2e a/b a%2Fb a%2fb x%00 %00 ..%2F..%2Fpixmill.db %2e%2e%2fpixmill.db ../../pixmill.db \
  ../../../../etc/passwd ..%2f..%2f..%2f..%2fetc%2fpasswd .hidden 512.webp%00.txt %2F 'a\b' ....webp \
  "$(printf 'x%.0s' $(seq 300))" 512.webp/ 512.webp/.. %252e%252e 512.webp%2500 512.webp%00; do
  for hash in "$S1" "$S1/.." ".." "%2e%2e"; do
    s=$(req hn "${AUTH[@]}" --path-as-is "$A/api/assets/$hash/$name")
    n_hostile=$((n_hostile + 1))
    sz=$(fsize "$T/r/hn.b")
    if [[ ! $s =~ ^(400|404)$ ]] || grep -q 'root:' "$T/r/hn.b" || grep -q 'SQLite format' "$T/r/hn.b" || [ "$sz" = "$DBSZ" ]; then
      n_bad=$((n_bad + 1)); echo "   hostile asset path /api/assets/$hash/$name -> $s $(body hn 80)"
    fi
  done
done
eq "hostile asset paths ($n_hostile): all 400 or 404, none serves a file outside the outputs" "$n_bad" 0
s=$(req outs "${AUTH[@]}" "$A/api/outputs?limit=5"); status "GET /api/outputs" outs "$s" 200
eq "/api/outputs: up to 5, each with sha256, name, url" "$(jf outs "0 < len(d['outputs']) <= 5 and all(o['sha256'] and o['name'] and o['url'] for o in d['outputs'])")" True
eq "/api/outputs: each lists all its asset's outputs, itself among them" "$(jf outs "all(len(o['outputs']) >= 1 and o['name'] in [x['name'] for x in o['outputs']] and all(x['url'].startswith('/api/assets/' + o['sha256'] + '/') for x in o['outputs']) for o in d['outputs'])")" True

# ==== 6. search ====
echo "# 6. search"
s=$(req t1 "${AUTH[@]}" "$A/api/search/text?q=zebrafruit"); status "search text q=zebrafruit" t1 "$s" 200
eq "search text finds r1 of job $J1 with its sha256 and outputs" \
  "$(jf t1 "[(r['job_id'], r['key'], r['sha256'], len(r['outputs']) > 0) for r in d['results'] if r['key'] == 'r1']")" \
  "[($J1, 'r1', '$(sha "$SMALL1")', True)]"
s=$(req t2 "${AUTH[@]}" "$A/api/search/text?q=jellyfish"); status "search text q=jellyfish" t2 "$s" 200
eq "search text: jellyfish is r2 only" "$(jf t2 "sorted({r['key'] for r in d['results']})")" "['r2']"
s=$(req t3 "${AUTH[@]}" "$A/api/search/text?q=kitchen"); status "search text in categories" t3 "$s" 200
eq "search text: category kitchen finds r1 and r4" "$(jf t3 "sorted({r['key'] for r in d['results'] if r['job_id'] == $J1})")" "['r1', 'r4']"
s=$(req t4 "${AUTH[@]}" "$A/api/search/text?q=meadow"); status "search text finds upload titles" t4 "$s" 200
eq "search text: the upload's title survives re-uploads of the same bytes without ?title=" "$(jf t4 "'$(sha "$UP")' in [r['sha256'] for r in d['results']]")" True
s=$(req t5 "${AUTH[@]}" "$A/api/search/text?q=zebrafruit&limit=0"); experr "search text limit=0: 400" t5 "$s" 400
n5=0
for q in '"' 'a OR' '*' 'OR' 'AND' 'NOT' 'NEAR(' ')' '(' "'" '-x' 'title:x' 'x:y' '^a' '""' '"unterminated' 'a*b' '{a b}' \
  'zebra* OR (' '\' '%' ';' 'a AND NOT' "$(printf 'é漢字')" '   ' "$(head -c 900 /dev/zero | tr '\0' 'a')"; do
  s=$(req th "${AUTH[@]}" --get --data-urlencode "q=$q" "$A/api/search/text")
  if [[ ! $s =~ ^(200|400)$ ]]; then n5=$((n5 + 1)); echo "   hostile q='$q' -> $s $(body th 120)"; fi
done
eq "hostile search texts: 200 or 400, never 5xx" "$n5" 0
s=$(req tq "${AUTH[@]}" "$A/api/search/text"); experr "search text without q: 400" tq "$s" 400
s=$(req tq2 "${AUTH[@]}" "$A/api/search/text?q="); experr "search text q empty: 400" tq2 "$s" 400
s=$(req si "${AUTH[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$UP" "$A/api/search/image"); status "search image (raw)" si "$s" 200
eq "search image: first result distance 0, same sha256" "$(jf si "[d['results'][0]['distance'], d['results'][0]['sha256']]")" "[0, '$(sha "$UP")']"
eq "search image: query phash == the upload's phash" "$(jf si "d['query']['phash']")" "$(jf u1 "d['phash']")"
eq "search image: the result has outputs" "$(jf si "len(d['results'][0]['outputs']) > 0")" True
eq "search image: nearest by embedding is the upload itself, cosine 1" "$(jf si "[d['embedding'][0]['sha256'], round(d['embedding'][0]['score'], 3), d['query']['model']]")" "['$(sha "$UP")', 1.0, 'builtin-v1']"
s=$(req t6 "${AUTH[@]}" "$A/api/search/text?q=kitchen&job=$J1&category=kitchen"); status "search text with job and category filters" t6 "$s" 200
eq "search text filters: r1 and r4 with snippets" "$(jf t6 "sorted((r['key'], '[' in r['snippet']) for r in d['results'])")" "[('r1', True), ('r4', True)]"
s=$(req t7 "${AUTH[@]}" "$A/api/search/text?q=kitchen&has_text=true"); status "search text has_text" t7 "$s" 200
eq "search text has_text: no OCR text in these images" "$(jf t7 "len(d['results'])")" 0
s=$(req t8 "${AUTH[@]}" "$A/api/search/text?q=kitchen&has_text=maybe"); experr "search text has_text=maybe: 400" t8 "$s" 400
s=$(req si2 "${AUTH[@]}" -F "file=@$SMALL1" "$A/api/search/image?limit=3&max_distance=0"); status "search image (multipart)" si2 "$s" 200
eq "search image of a job's image: distance 0, its sha256" "$(jf si2 "[(r['distance'], r['sha256']) for r in d['results']][:1]")" "[(0, '$(sha "$SMALL1")')]"
eq "search image limit=3: at most 3" "$(jf si2 "len(d['results']) <= 3")" True
s=$(req si3 "${AUTH[@]}" -H 'Content-Type: text/plain' --data-binary @"$T/text.txt" "$A/api/search/image"); experr "search image with text: 4xx" si3 "$s" '4[0-9][0-9]'
s=$(req si4 "${AUTH[@]}" -X POST "$A/api/search/image"); experr "search image without a body: 400" si4 "$s" 400
s=$(req si5 "${AUTH[@]}" -F "file=@$SMALL1" "$A/api/search/image?max_distance=65"); experr "search image max_distance=65: 400" si5 "$s" 400

# ==== 6b. the catalog views: GET /api/images and /api/images/{sha256} ====
echo "# 6b. catalog views"
# A catalog of local files through the catalog pipeline, on a server
# without a vision endpoint (the analyze stage is left out): a byte copy,
# a mirrored photo and a rendered text image among them.
unset PIXMILL_VISION_URL PIXMILL_VISION_MODEL
mkdir -p "$T/cat"
cp "$SMALL1" "$T/cat/fruit-copy.jpg"
vips flip "$SMALL4" "$T/cat/castle-mirror.jpg" horizontal
vips text "$T/cat/t.v" "Quarterly invoice for Zephyr Pumps" --dpi 200 && vips invert "$T/cat/t.v" "$T/cat/i.v" &&
  vips embed "$T/cat/i.v" "$T/cat/invoice.png" 40 40 1000 200 --extend white
TXT=$(sha "$T/cat/invoice.png"); FRU=$(sha "$SMALL1"); JEL=$(sha "$SMALL2"); CAS=$(sha "$SMALL4"); MIR=$(sha "$T/cat/castle-mirror.jpg")
cat >"$T/cat.csv" <<EOF
id,image,title
c1,$SMALL1,Fruit bowl
c2,$T/cat/fruit-copy.jpg,Fruit bowl again
c3,$SMALL2,Blue jellyfish
c4,$SMALL4,Castle in spring
c5,$T/cat/castle-mirror.jpg,Castle mirrored
c6,$T/cat/invoice.png,Scanned invoice
EOF
start_srv C --data "$T/data-c" --workers 2
C=${SURL[C]}
s=$(req jc1 -H 'Content-Type: text/csv' --data-binary @"$T/cat.csv" "$C/api/jobs?pipeline=catalog"); status "POST /api/jobs pipeline=catalog: 202" jc1 "$s" 202
JCAT=$(jf jc1 "d['id']")
wait_job "$C/api/jobs/$JCAT" "$FINAL" 300 >/dev/null; cp "$T/r/wait.b" "$T/r/jcat.b"
eq "catalog job: done, 6 items, 0 failed, 1 duplicate" "$(jf jcat "[d['state'], d['done'], d['failed'], d['duplicates']]")" "['done', 6, 0, 1]"
# imgs NAME QUERY: GET /api/images?QUERY; prints the sorted sha256s
imgs() { req "$1" "$C/api/images?$2" >/dev/null; jf "$1" "' '.join(sorted(i['sha256'] for i in d['images']))"; }
srt() { printf '%s\n' "$@" | sort | tr '\n' ' ' | sed 's/ $//'; }
eq "GET /api/images: the 5 distinct images" "$(imgs ci0 '')" "$(srt "$FRU" "$JEL" "$CAS" "$MIR" "$TXT")"
eq "/api/images: 256.webp and 1024.webp each, no caption or tags (no vision endpoint)" \
  "$(jf ci0 "all(sorted(o['name'] for o in i['outputs']) == ['1024.webp', '256.webp'] and i['caption'] is None and i['tags'] is None for i in d['images'])")" True
eq "/api/images: the copied image has 2 items and is the only duplicate" \
  "$(jf ci0 "sorted((i['sha256'], i['items']) for i in d['images'] if i['duplicate'])")" "[('$FRU', 2)]"
eq "/api/images: the text image has text, no photo does" "$(jf ci0 "[i['sha256'] for i in d['images'] if i['has_text']]")" "['$TXT']"
eq "/api/images?has_text=true: the text image" "$(imgs ci1 has_text=true)" "$TXT"
eq "/api/images?q=zephyr: found by the text in the image" "$(imgs ci2 q=zephyr)" "$TXT"
eq "/api/images?q=QUARTERLY+pumps: every word, any case" "$(imgs ci3 'q=QUARTERLY+pumps')" "$TXT"
eq "/api/images?q=castle: the castle and its mirror (titles)" "$(imgs ci4 q=castle)" "$(srt "$CAS" "$MIR")"
eq "/api/images?q=castle&has_text=true: filters combine" "$(imgs ci5 'q=castle&has_text=true')" ""
eq "/api/images?format=png" "$(imgs ci6 format=png)" "$TXT"
eq "/api/images?format=jpeg" "$(imgs ci7 format=jpeg)" "$(srt "$FRU" "$JEL" "$CAS" "$MIR")"
eq "/api/images?duplicates=true" "$(imgs ci8 duplicates=true)" "$FRU"
eq "/api/images?has_caption=true: none without a vision model" "$(imgs ci9 has_caption=true)" ""
eq "/api/images?tag=test: none" "$(imgs ci10 tag=test)" ""
eq "/api/images?job=JOB: the job's 5" "$(imgs ci13 "job=$JCAT")" "$(srt "$FRU" "$JEL" "$CAS" "$MIR" "$TXT")"
eq "/api/images?job=999: none" "$(imgs ci11 job=999)" ""
# paging: 2 + 2 + 1, no repeats
p1=$(imgs cp1 limit=2); c1=$(jf cp1 "d['next_cursor']")
p2=$(imgs cp2 "limit=2&cursor=$c1"); c2=$(jf cp2 "d['next_cursor']")
p3=$(imgs cp3 "limit=2&cursor=$c2"); c3=$(jf cp3 "d['next_cursor']")
eq "/api/images paging: cursors 2, 4, then none" "$c1 $c2 $c3" "2 4 None"
eq "/api/images paging: the pages hold the 5 images once each" "$(srt $p1 $p2 $p3)" "$(srt "$FRU" "$JEL" "$CAS" "$MIR" "$TXT")"
# another job over one of the images, with another pipeline
printf 'id,image,title\nx1,%s,Jellyfish thumbs\n' "$SMALL2" >"$T/cat2.csv"
s=$(req jc2 -H 'Content-Type: text/csv' --data-binary @"$T/cat2.csv" "$C/api/jobs?pipeline=thumbnails&sizes=64"); status "a second job (thumbnails)" jc2 "$s" 202
JC2=$(jf jc2 "d['id']")
wait_job "$C/api/jobs/$JC2" "$FINAL" 300 >/dev/null
eq "/api/images?job=SECOND: its one image, with that job's 64 px output" "$(req cj2 "$C/api/images?job=$JC2" >/dev/null; jf cj2 "[(i['sha256'], [o['name'] for o in i['outputs']]) for i in d['images']]")" "[('$JEL', ['64.webp'])]"
eq "/api/images?job=CATALOG: still its 5, with the catalog outputs" "$(req cj1 "$C/api/images?job=$JCAT" >/dev/null; jf cj1 "sorted((i['sha256'], len(i['outputs'])) for i in d['images'])")" \
  "$(python3 -c "import sys; print(sorted((s, 2) for s in sys.argv[1:]))" "$FRU" "$JEL" "$CAS" "$MIR" "$TXT")"
eq "/api/images without a job: one entry per image (the newest asset)" "$(imgs ci12 '')" "$(srt "$FRU" "$JEL" "$CAS" "$MIR" "$TXT")"
n6=0
for qs in limit=0 limit=201 limit=x cursor=-1 cursor=x 'cursor=1e3' job=0 job=x has_text=maybe has_caption=2 duplicates=yes \
  format=PNG 'format=..%2Fx' 'format=jpeg%00' "tag=$(printf 't%.0s' $(seq 65))" 'q=%22' 'q=*' 'q=%20%20'; do
  s=$(req ch "$C/api/images?$qs")
  c=$(jf ch "d['error']['code']" 2>/dev/null)
  if [ "$s" != 400 ] || [ "$c" != usage ]; then n6=$((n6 + 1)); echo "   /api/images?$qs -> $s $(body ch 120)"; fi
done
eq "bad /api/images parameters: 400 usage" "$n6" 0
# one image's page
s=$(req cd1 "$C/api/images/$TXT"); status "GET /api/images/{sha256} (the text image)" cd1 "$s" 200
eq "image page: OCR text, has_text, title, its item" "$(jf cd1 "['Zephyr' in d['ocr']['text'], d['has_text'], d['title'], [(i['job_id'], i['key'], i['title']) for i in d['items']]]")" \
  "[True, True, 'Scanned invoice', [($JCAT, 'r6', 'Scanned invoice')]]"
eq "image page: no caption, one asset with facts and both outputs" "$(jf cd1 "[d['analysis']['caption'], len(d['assets']), d['assets'][0]['format'], d['assets'][0]['width'], len(d['assets'][0]['phash']), sorted(o['name'] for o in d['assets'][0]['outputs'])]")" \
  "[None, 1, 'png', 1000, 16, ['1024.webp', '256.webp']]"
s=$(req cd2 "$C/api/images/$FRU"); status "GET /api/images/{sha256} (the copied image)" cd2 "$s" 200
eq "image page: exact duplicates, both rows" "$(jf cd2 "[d['duplicates']['exact'], sorted(i['key'] for i in d['items'])]")" "[True, ['r1', 'r2']]"
s=$(req cd3 "$C/api/images/$CAS"); status "GET /api/images/{sha256} (a photo with a mirrored copy)" cd3 "$s" 200
eq "image page: the most similar image is the mirror (cosine ~1), not a pHash near duplicate" \
  "$(jf cd3 "[d['similar'][0]['sha256'], d['similar'][0]['score'] > 0.99, d['similar'][0]['title'], d['duplicates']['exact'], '$MIR' in [n['sha256'] for n in d['duplicates']['near']]]")" \
  "['$MIR', True, 'Castle mirrored', False, False]"
s=$(req cd4 "$C/api/images/$JEL"); status "GET /api/images/{sha256} (two pipelines)" cd4 "$s" 200
eq "image page: both assets, newest first; items of both jobs" "$(jf cd4 "[[len(a['outputs']) for a in d['assets']], sorted(i['job_id'] for i in d['items'])]")" "[[1, 2], [$JCAT, $JC2]]"
s=$(req cd5 "$C/api/images/$(printf '%064d' 0)"); experr "image page: unknown sha256: 404" cd5 "$s" 404 not_found
n7=0
for id in nothex "${TXT^^}" "${TXT:0:63}" "${TXT}0" .. %2e%2e "$TXT%00" "..%2F..%2Fpixmill.db" "$(printf 'a%.0s' $(seq 200))"; do
  s=$(req ch2 --path-as-is "$C/api/images/$id")
  if [[ ! $s =~ ^(400|404)$ ]] || grep -q 'SQLite format' "$T/r/ch2.b"; then n7=$((n7 + 1)); echo "   /api/images/$id -> $s $(body ch2 120)"; fi
done
eq "hostile image ids: 400 or 404" "$n7" 0
stop_srv C
eq "catalog server: exit 0 after SIGTERM" "$SRC" 0

# ==== 7. compression ====
echo "# 7. compression"
s=$(req cid "${AUTH[@]}" "$A/api/openapi.json"); status "openapi.json identity" cid "$s" 200
check "openapi.json is over 1 KiB ($(stat -c %s "$T/r/cid.b") bytes)" test "$(stat -c %s "$T/r/cid.b")" -gt 1024
eq "no Accept-Encoding: no Content-Encoding" "$(hdr cid Content-Encoding)" ""
check "large JSON: Vary: Accept-Encoding" grep -qi '^vary:.*accept-encoding' "$T/r/cid.h"
for path in /api/openapi.json /api/jobs "/api/jobs/$J1/items"; do
  for enc in gzip br zstd; do
    s=$(req cz "${AUTH[@]}" -H "Accept-Encoding: $enc" "$A$path"); status "GET $path Accept-Encoding $enc" cz "$s" 200
    eq "$path $enc: Content-Encoding $enc" "$(hdr cz Content-Encoding)" "$enc"
    check "$path $enc: Vary: Accept-Encoding" grep -qi '^vary:.*accept-encoding' "$T/r/cz.h"
    rm -f "$T/r/czd.b"
    case $enc in
      gzip) python3 "$PY" gunzip "$T/r/cz.b" "$T/r/czd.b" 2>/dev/null ;;
      zstd) command -v zstd >/dev/null && zstd -q -d -c "$T/r/cz.b" >"$T/r/czd.b" 2>/dev/null ;;
      br) if command -v brotli >/dev/null; then brotli -d -c "$T/r/cz.b" >"$T/r/czd.b" 2>/dev/null
          else python3 "$PY" brotli "$T/r/cz.b" "$T/r/czd.b" 2>/dev/null; fi ;;
    esac
    if [ -s "$T/r/czd.b" ]; then
      eq "$path $enc: decodes to valid JSON" "$(jf czd "isinstance(d, dict)")" True
      check "$path $enc: smaller than the JSON" test "$(stat -c %s "$T/r/cz.b")" -lt "$(stat -c %s "$T/r/czd.b")"
    elif [ "$enc" = br ] && [[ $(curl -V) == *brotli* ]]; then
      # no brotli tool here: let curl (built with brotli) decode it
      s=$(req czc "${AUTH[@]}" --compressed -H "Accept-Encoding: br" "$A$path")
      eq "$path br: curl decodes it (Content-Encoding $(hdr czc Content-Encoding)) to valid JSON" "$(jf czc "isinstance(d, dict)")" True
    else
      echo "   ($enc: no decoder here; header checked only)"
    fi
  done
done
s=$(req cq "${AUTH[@]}" -H 'Accept-Encoding: gzip;q=0.5, br;q=0.9, zstd;q=0.1' "$A/api/openapi.json"); status "q-values" cq "$s" 200
eq "q-values: br preferred" "$(hdr cq Content-Encoding)" br
s=$(req cs "${AUTH[@]}" -H 'Accept-Encoding: *' "$A/api/openapi.json"); status "Accept-Encoding *" cs "$s" 200
check "Accept-Encoding *: some encoding" test -n "$(hdr cs Content-Encoding)"
for ae in identity 'gzip;q=0' 'gzip;q=0, br;q=0, zstd;q=0' 'deflate' 'compress' '*;q=0' 'identity, gzip;q=0'; do
  s=$(req cn "${AUTH[@]}" -H "Accept-Encoding: $ae" "$A/api/openapi.json"); status "Accept-Encoding '$ae'" cn "$s" 200
  eq "Accept-Encoding '$ae': no Content-Encoding" "$(hdr cn Content-Encoding)" ""
  eq "Accept-Encoding '$ae': the plain JSON" "$(cmp -s "$T/r/cn.b" "$T/r/cid.b" && echo same)" same
done
s=$(req csm "${AUTH[@]}" -H 'Accept-Encoding: gzip' "$A/health/live"); status "small JSON with gzip" csm "$s" 200
eq "small JSON (< 1 KiB): not compressed" "$(hdr csm Content-Encoding)" ""
s=$(req cdash -H 'Accept-Encoding: gzip' "$A/"); status "dashboard with gzip" cdash "$s" 200
if [ "$(stat -c %s "$T/r/cdash.b")" -gt 0 ] && [ -n "$(hdr cdash Content-Encoding)" ]; then
  python3 "$PY" gunzip "$T/r/cdash.b" "$T/r/cdashd.b" 2>/dev/null
  check "dashboard gzip decodes to HTML" grep -qi '<html' "$T/r/cdashd.b"
fi

# ==== 8. CORS ====
echo "# 8. CORS"
s=$(req co1 "${AUTH[@]}" -H 'Origin: https://admin.example.com' "$A/api/jobs"); status "CORS allowed origin" co1 "$s" 200
eq "allowed origin echoed" "$(hdr co1 Access-Control-Allow-Origin)" https://admin.example.com
s=$(req co2 "${AUTH[@]}" -H 'Origin: https://evil.example.com' "$A/api/jobs"); status "CORS other origin" co2 "$s" 200
eq "other origin: no Access-Control-Allow-Origin" "$(hdr co2 Access-Control-Allow-Origin)" ""
s=$(req co3 "${AUTH[@]}" -H 'Origin: https://admin.example.com.evil.com' "$A/api/jobs"); status "CORS origin with the allowed one as prefix" co3 "$s" 200
eq "prefix-extended origin: no Access-Control-Allow-Origin" "$(hdr co3 Access-Control-Allow-Origin)" ""
s=$(req co4 -H 'Origin: https://admin.example.com' "$A/api/jobs"); status "CORS on a 401" co4 "$s" 401
eq "401 to an allowed origin carries Access-Control-Allow-Origin" "$(hdr co4 Access-Control-Allow-Origin)" https://admin.example.com
s=$(req co5 -X OPTIONS -H 'Origin: https://admin.example.com' -H 'Access-Control-Request-Method: POST' \
  -H 'Access-Control-Request-Headers: x-api-key, content-type' "$A/api/jobs")
status "CORS preflight: 2xx" co5 "$s" '20[04]'
eq "preflight: Access-Control-Allow-Origin" "$(hdr co5 Access-Control-Allow-Origin)" https://admin.example.com
check "preflight: allows X-API-Key" grep -qi '^access-control-allow-headers:.*x-api-key' "$T/r/co5.h"

# ==== 11. cancel, 13. SSE, 12. retry (server a) ====
echo "# 11. cancel"
bigcat "$T/cancel.csv" 60 c
s=$(req jc "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/cancel.csv" "$A/api/jobs?name=to-cancel"); status "big job for cancel: 202" jc "$s" 202
JC=$(jf jc "d['id']")
if wait_job "$A/api/jobs/$JC" "d['done'] >= 2 or $FINAL" 300 "Authorization: Bearer $KEY"; then
  cp "$T/r/wait.b" "$T/r/jcw.b"
  eq "big job is running with >= 2 done" "$(jf jcw "[d['state'], d['done'] >= 2]")" "['running', True]"
else
  bad "big job never got 2 items done: $(body wait)"
fi
s=$(req jcd "${AUTH[@]}" -X DELETE "$A/api/jobs/$JC"); status "DELETE a running job: 202" jcd "$s" 202
eq "DELETE: state cancelling or cancelled" "$(jf jcd "d['state'] in ('cancelling', 'cancelled')")" True
s=$(req jcdi "${AUTH[@]}" "$A/api/jobs/$JC/items?state=done&limit=500"); status "done items right after DELETE" jcdi "$s" 200
DONE_KEYS=$(jf jcdi "sorted(i['key'] for i in d['items'])")
wait_job "$A/api/jobs/$JC" "$FINAL" 300 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/jcf.b"
eq "cancelled job ends cancelled" "$(jf jcf "d['state']")" cancelled
eq "cancelled job stopped reading the catalog (items < 60)" "$(jf jcf "[d['items'] < 60, d['done'] < 60]")" "[True, True]"
s=$(req jcdi2 "${AUTH[@]}" "$A/api/jobs/$JC/items?state=done&limit=500"); status "done items after cancel" jcdi2 "$s" 200
eq "items done before the cancel stay done" "$(jf jcdi2 "set($DONE_KEYS) <= {i['key'] for i in d['items']}")" True
eq "done items all have their 3 outputs" "$(jf jcdi2 "all(len(i['outputs']) == 3 for i in d['items'])")" True
s=$(req jcd2 "${AUTH[@]}" -X DELETE "$A/api/jobs/$JC"); experr "DELETE a cancelled job: 409" jcd2 "$s" 409

echo "# 13. SSE"
bigcat "$T/sse.csv" 20 s
s=$(req js "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/sse.csv" "$A/api/jobs?sizes=300&name=sse"); status "job for SSE: 202" js "$s" 202
JS=$(jf js "d['id']")
timeout 300 curl -s -N -D "$T/r/sse.h" -o "$T/r/sse.b" -H 'Accept: text/event-stream' "$A/api/jobs/$JS/events?api_key=$KEY"
rc=$?
eq "SSE: the server closes the stream by itself (curl exit 0)" "$rc" 0
check "SSE: 200 text/event-stream" grep -qi '^content-type: text/event-stream' "$T/r/sse.h"
check "SSE: Cache-Control no-cache" grep -qi '^cache-control: no-cache' "$T/r/sse.h"
python3 "$PY" sse "$T/r/sse.b" "$JS" >"$T/r/sses.b"
eq "SSE: at least one progress event" "$(jf sses "d['progress'] >= 1")" True
eq "SSE: every data line is the job's JSON" "$(jf sses "d['bad_data']")" 0
eq "SSE: exactly one end event, last, with state done" "$(jf sses "[d['end'], d['last'], d['last_state'], d['other']]")" "[1, 'end', 'done', []]"
check "SSE: event: progress lines" grep -q '^event: progress' "$T/r/sse.b"
s=$(req jsd "${AUTH[@]}" "$A/api/jobs/$JS"); status "SSE job" jsd "$s" 200
eq "SSE job: done, 20 items" "$(jf jsd "[d['state'], d['items'], d['done']]")" "['done', 20, 20]"

echo "# 12. retry"
LATE=$T/late-arrival.jpg
printf 'id,image,title\nk1,%s,Here already\nk2,%s,Arrives late\n' "$T/v/p9_5.jpg" "$LATE" >"$T/retry.csv"
s=$(req jr "${AUTH[@]}" "${CT[@]}" --data-binary @"$T/retry.csv" "$A/api/jobs"); status "job with a missing file: 202" jr "$s" 202
JR=$(jf jr "d['id']")
wait_job "$A/api/jobs/$JR" "$FINAL" 300 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/jrd.b"
eq "retry job: done with 1 failed" "$(jf jrd "[d['state'], d['done'], d['failed']]")" "['done', 1, 1]"
cp "$SMALL2" "$LATE"
s=$(req jrr "${AUTH[@]}" -X POST "$A/api/jobs/$JR/retry"); status "POST retry: 202" jrr "$s" 202
eq "retry: retried 1, state queued" "$(jf jrr "[d['id'], d['retried'], d['state']]")" "[$JR, 1, 'queued']"
wait_job "$A/api/jobs/$JR" "$FINAL and d['failed'] == 0" 300 "Authorization: Bearer $KEY"; cp "$T/r/wait.b" "$T/r/jrf.b"
eq "retried job ends done with failed 0" "$(jf jrf "[d['state'], d['items'], d['done'], d['failed']]")" "['done', 2, 2, 0]"
s=$(req jrdl "${AUTH[@]}" "$A/api/failed?job=$JR"); status "DLQ after the retry" jrdl "$s" 200
eq "DLQ of the retried job is empty" "$(jf jrdl "len(d['items'])")" 0
s=$(req jrr2 "${AUTH[@]}" -X POST "$A/api/jobs/$JR/retry?reason=not_found"); status "retry again with nothing failed: 202" jrr2 "$s" 202
eq "retry with nothing failed: retried 0" "$(jf jrr2 "d['retried']")" 0
wait_job "$A/api/jobs/$JR" "$FINAL" 300 "Authorization: Bearer $KEY" >/dev/null

s=$(req ahealth "$A/health/live"); status "server a healthy at the end" ahealth "$s" 200
stop_srv a; eq "server a exits 0 on SIGTERM" "$SRC" 0

# ==== 9. rate limit ====
echo "# 9. rate limit"
start_srv c --data "$T/data-c" --config "$T/c.json" --workers 1 --http-threads 1
C=${SURL[c]:-http://127.0.0.1:1}
python3 "$PY" burst "$C/api/jobs" 15 "X-API-Key: $KEY" >"$T/r/burst.b"
eq "15 quick requests (2/s, burst 3): the first 3 pass" "$(jf burst "[r[0] for r in d[:3]]")" "[200, 200, 200]"
eq "15 quick requests: some 429" "$(jf burst "any(r[0] == 429 for r in d)")" True
eq "15 quick requests: only 200 and 429" "$(jf burst "sorted({r[0] for r in d})")" "[200, 429]"
eq "429: Retry-After >= 1 on each" "$(jf burst "all(r[1] is not None and int(r[1]) >= 1 for r in d if r[0] == 429)")" True
eq "429: error.code rate_limited" "$(jf burst "{r[2] for r in d if r[0] == 429}")" "{'rate_limited'}"
s=$(req rl2 -H "X-API-Key: $KEY2" "$C/api/jobs"); status "another key has its own bucket" rl2 "$s" 200
stop_srv c; eq "server c exits 0 on SIGTERM" "$SRC" 0

# ==== 10. overload: 503 ====
echo "# 10. overload"
start_srv d --data "$T/data-d" --config "$T/d.json" --workers 1 --http-threads 2
D=${SURL[d]:-http://127.0.0.1:1}
bigcat "$T/big60.csv" 60 o
s=$(req ob "${CT[@]}" --data-binary @"$T/big60.csv" "$D/api/jobs"); status "overload: big job 202" ob "$s" 202
JB=$(jf ob "d['id']")
wait_job "$D/api/jobs/$JB" "d['state'] != 'queued'" 120 >/dev/null
codes=""
for i in 1 2 3; do
  s=$(req "oq$i" "${CT[@]}" --data-binary @"$T/j3.csv" "$D/api/jobs"); codes="$codes $s"
done
s=$(req oready "$D/health/ready"); status "/health/ready while the job queue is full: 503" oready "$s" 503
eq "/health/ready body: ready false" "$(jf oready "d.get('ready')")" False
s=$(req ohealth "$D/health"); status "/health while full: 200" ohealth "$s" 200
eq "/health while full: status degraded" "$(jf ohealth "d['status']")" degraded
check "overload: 3 more jobs -> at least one 503 ($codes)" grep -q 503 <<<"$codes"
check "overload: only 202 and 503 ($codes)" test -z "$(tr ' ' '\n' <<<"$codes" | grep -v -E '^(|202|503)$')"
for i in 1 2 3; do
  if grep -q '^HTTP/1.1 503' "$T/r/oq$i.h"; then
    experr "overload 503 (job $i)" "oq$i" 503 503 overloaded
    check "overload 503: Retry-After" test -n "$(hdr "oq$i" Retry-After)"
    break
  fi
done
pids=()
for u in $(seq 0 7); do
  curl -s -m 300 -o "$T/r/up$u.b" -D "$T/r/up$u.h" -w '%{http_code}\n' -H 'Content-Type: image/jpeg' \
    --data-binary @"$T/v/u$u.jpg" "$D/api/images?formats=avif&sizes=512" >"$T/r/up$u.code" 2>/dev/null &
  pids+=($!)
done
wait "${pids[@]}"
ucodes=$(cat "$T"/r/up?.code | tr '\n' ' ')
check "8 concurrent uploads (1 worker, 1 waiting): at least one 503 ($ucodes)" grep -q 503 <<<"$ucodes"
check "8 concurrent uploads: at least one 200 ($ucodes)" grep -q 200 <<<"$ucodes"
check "8 concurrent uploads: only 200 and 503 ($ucodes)" test -z "$(tr ' ' '\n' <<<"$ucodes" | grep -v -E '^(|200|503)$')"
for u in $(seq 0 7); do
  if [ "$(cat "$T/r/up$u.code")" = 503 ]; then
    experr "upload 503" "up$u" 503 503 overloaded
    check "upload 503: Retry-After" test -n "$(hdr "up$u" Retry-After)"
    break
  fi
done
stop_srv d; eq "server d (busy) exits 0 on SIGTERM" "$SRC" 0

# ==== 14. graceful shutdown and resume; no-config CORS ====
echo "# 14. shutdown and resume"
start_srv r --data "$T/data-r" --workers 1 --http-threads 2
R=${SURL[r]:-http://127.0.0.1:1}
s=$(req nc -H 'Origin: https://admin.example.com' "$R/api/jobs"); status "no config: no key needed" nc "$s" 200
eq "no config: no Access-Control-Allow-Origin" "$(hdr nc Access-Control-Allow-Origin)" ""
bigcat "$T/resume.csv" 20 z
s=$(req jz "${CT[@]}" --data-binary @"$T/resume.csv" "$R/api/jobs"); status "job to interrupt: 202" jz "$s" 202
JZ=$(jf jz "d['id']")
wait_job "$R/api/jobs/$JZ" "d['done'] >= 2 or $FINAL" 300 >/dev/null
cp "$T/r/wait.b" "$T/r/jzw.b"
eq "job to interrupt is running" "$(jf jzw "d['state']")" running
pid=${SPID[r]}
kill -TERM "$pid"
first=200
for _ in $(seq 300); do
  first=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$R/health/ready")
  [ "$first" != 200 ] && break
  sleep 0.1
done
check "after SIGTERM /health/ready turns 503 (or the server is gone): $first" grep -qE '^(503|000)$' <<<"$first"
stop_srv r 180 nosig; eq "SIGTERM during a job: exit 0" "$SRC" 0
check "the log says it drained" grep -qi 'drain' "$T/r.log"
st=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select state from jobs where id=?', (int(sys.argv[2]),)).fetchone()[0])" "$T/data-r/pixmill.db" "$JZ" 2>&1)
eq "the interrupted job is recorded as interrupted" "$st" interrupted
start_srv r --data "$T/data-r" --workers 1 --http-threads 2
R=${SURL[r]:-http://127.0.0.1:1}
wait_job "$R/api/jobs/$JZ" "$FINAL" 300 >/dev/null; cp "$T/r/wait.b" "$T/r/jzd.b"
eq "after the restart the job resumes and ends done" "$(jf jzd "[d['state'], d['items'], d['done'], d['failed']]")" "['done', 20, 20, 0]"
python3 "$PY" pages "$R/api/jobs/$JZ/items" 7 >"$T/r/jzp.b"
eq "resumed job: 20 item rows, 20 distinct keys, all done" \
  "$(jf jzp "[len(d['keys']), len(set(d['keys'])), set(d['states']), d['error']]")" "[20, 20, {'done'}, None]"
eq "resumed job: each catalog row exactly once" "$(jf jzp "sorted(d['ids']) == sorted('z%d' % i for i in range(20))")" True
stop_srv r; eq "server r exits 0 on SIGTERM" "$SRC" 0

# ==== 14b. ads over the API with serve's own --templates ====
echo "# 14b. ads through POST /api/jobs"
mkdir -p "$T/tpl" && cp "$ROOT/templates/square.json" "$T/tpl/"
printf 'id,image,title,price,currency,brand\np1,%s,Fresh fruit basket,12.99,USD,FreshCo\np2,%s,Jellyfish poster,24.00,GBP,SeaArt\n' \
  "$SMALL1" "$SMALL2" >"$T/ads.csv"
start_srv ad --data "$T/data-ad" --workers 1 --http-threads 2 --templates "$T/tpl"
AD=${SURL[ad]:-http://127.0.0.1:1}
s=$(req ja "${CT[@]}" --data-binary @"$T/ads.csv" "$AD/api/jobs?pipeline=ads"); status "POST /api/jobs pipeline=ads: 202" ja "$s" 202
JAD=$(jf ja "d['id']")
wait_job "$AD/api/jobs/$JAD" "$FINAL" 300 >/dev/null; cp "$T/r/wait.b" "$T/r/jad.b"
eq "ads job: done, 2 items, 0 failed" "$(jf jad "[d['state'], d['done'], d['failed']]")" "['done', 2, 0]"
eq "ads job: one ad per product from --templates (square only), 1080x1080" \
  "$(find "$T/data-ad" -name 'ad-*.jpg' -exec vipsheader -f width {} \; -exec vipsheader -f height {} \; 2>/dev/null | tr '\n' ' ')" \
  "1080 1080 1080 1080 "
stop_srv ad; eq "server ad exits 0 on SIGTERM" "$SRC" 0

# ==== 15. slow clients, huge headers, garbage ====
echo "# 15. connection limits"
start_srv e --data "$T/data-e" --config "$T/e.json" --workers 1 --http-threads 2
E=${SURL[e]:-http://127.0.0.1:1}
EP=${E##*:}
out=$(python3 "$PY" slow 127.0.0.1 "$EP" 30)
check "half a request line, then silence: closed by the server (connection_timeout 2): $out" \
  python3 -c "import sys; w=sys.argv[1].split(); sys.exit(not (w[0] == 'closed' and float(w[1]) <= 20))" "$out"
out=$(python3 "$PY" bigheader 127.0.0.1 "$EP" 100000)
check "100 KB header: a 4xx or a close ($out)" grep -qE '^(status 4[0-9][0-9]|closed)' <<<"$out"
check "100 KB header: not answered with 2xx/5xx ($out)" test -z "$(grep -E 'status [25]' <<<"$out")"
s=$(req el1 "$E/health/live"); status "healthy after the huge header" el1 "$s" 200
out=$(python3 "$PY" garbage 127.0.0.1 "$EP")
check "garbage bytes: never a 2xx or a 500 (505 for HTTP/9.9 is fine) ($out)" test -z "$(tr ' ' '\n' <<<"$out" | grep -E '^(2[0-9][0-9]|500)$')"
s=$(req el2 "$E/health/live"); status "healthy after garbage" el2 "$s" 200
s=$(req el3 -H 'Content-Type: image/jpeg' --data-binary @"$SMALL1" "$E/api/images"); status "an upload works after the abuse" el3 "$s" 200
stop_srv e; eq "server e exits 0 on SIGTERM" "$SRC" 0

# ==== sanitizer reports and logs ====
san=0
for log in "$T"/*.log; do
  if grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' "$log"; then
    san=1
    echo "---- sanitizer report in $(basename "$log") ----"
    grep -nE -A40 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$log" | head -n 120
  fi
done
eq "no sanitizer reports in the server logs" "$san" 0
if [ "$fail" -gt 0 ]; then
  for log in "$T"/*.log; do echo "---- tail of $(basename "$log") ----"; tail -n 15 "$log"; done
fi
echo "($(($(date +%s) - T0)) s)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
