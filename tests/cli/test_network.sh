#!/usr/bin/env bash
# test_network.sh — networked runs against the local test origin
# (tests/fetch/origin.c on loopback): a catalog with 25% injected faults of
# mixed kinds, a run killed with SIGKILL mid-transfer and resumed, and a
# re-run of the unchanged catalog that must be all conditional hits; then
# the origin itself (keep-alive, 300 clients at once, junk requests), 25%
# faults drawn by ratio, redirect chains, endless and huge bodies, a wrong
# content type, hangs and drips, and redirects to private addresses.
#
# Usage: tests/cli/test_network.sh PIXMILL_BINARY
# The origin is the one built beside the binary (BUILD/tests/origin, which
# `make` builds), or $PIXMILL_ORIGIN.
# Ends with "network: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_network.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

ORIGIN=${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}
opids=()
trap 'for p in "${opids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
start_origin() { # start_origin NAME [OPTIONS]: starts an origin; sets PORT
  "$ORIGIN" --root "$ROOT/examples/images" --die-with-parent --port-file "$T/$1.port" "${@:2}" 0 >/dev/null 2>"$T/$1.err" &
  opids+=($!)
  PORT=
  for _ in $(seq 50); do PORT=$(head -n 1 "$T/$1.port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
  [ -n "$PORT" ] || { echo "origin $ORIGIN did not start: $(cat "$T/$1.err" 2>/dev/null)"; echo "network: 0 passed, 1 failed"; exit 1; }
}
start_origin main
B="http://127.0.0.1:$PORT" BPORT=$PORT
count() { python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+'/count'))$1)" "$B"; }
ostat() { # ostat EXPR [BASE_URL]: EXPR over d, the origin's /count JSON
  python3 -c "import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]+'/count')); print($1)" "${2:-$B}"; }

# 200 distinct URLs over the 5 example images; every 4th one (25%) is
# faulty at first: 503, 500, 429 with Retry-After, a TCP reset or a
# truncated body, each failing 1 or 2 times, within a budget of 4 attempts.
(cd "$ROOT" && IMGDIR="$ROOT/examples/images" python3 - "$B" >"$T/cat.csv") <<'EOF'
import os, sys
base = sys.argv[1]
imgs = sorted(f for f in os.listdir(os.environ["IMGDIR"]) if f.endswith(".jpg"))
faults = ["503", "500", "429", "reset", "truncate"]
print("id,image,title")
for i in range(200):
    img = imgs[i % len(imgs)]
    q = f"tag={i}"
    if i % 4 == 0:
        q += f"&fault={faults[(i // 4) % len(faults)]}&times={1 + (i // 20) % 2}"
    print(f"p{i},{base}/file/{img}?{q},product {i}")
EOF
eq "catalog: 200 rows, 50 with faults" "$(grep -c fault= "$T/cat.csv")" 50

ARGS=(--allow-private --max-attempts 4 --breaker-open 1 --per-host 8 --per-host-rps 100 -p bench/peer.json)
cd "$ROOT"

# 1. kill -9 during the networked run, then resume: exactly once.
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --quiet &
pid=$!
sleep 1.5
kill -9 "$pid" 2>/dev/null && echo "killed the run mid-way"
wait "$pid" 2>/dev/null
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --json >"$T/run.json" 2>"$T/run.err"
rc=$?
check "resumed networked run exits 0 or 1 (rc $rc)" test "$rc" -le 1
db() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$T/out/pixmill.db" "$1"; }
eq "exactly once: 200 item rows, 200 distinct keys" "$(db "select count(*) || ' ' || count(distinct key) from items")" "200 200"
done_n=$(db "select count(*) from items where state='done'")
check "25% faults: >= 99% done within the retry budget ($done_n/200)" test "$done_n" -ge 198
eq "every failed item is in the DLQ with a reason" "$("$PM" dlq list --db "$T/out/pixmill.db" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(sum(1 for x in d if not x.get('error')))")" 0
# The retries happened: each faulty URL was requested at least times+1.
under=$(python3 - "$B" "$T/cat.csv" <<'EOF'
import csv, json, sys, urllib.request
from urllib.parse import urlsplit, parse_qs
counts = json.load(urllib.request.urlopen(sys.argv[1] + "/count"))["counts"]
bad = 0
for row in csv.DictReader(open(sys.argv[2])):
    u = urlsplit(row["image"]); q = parse_qs(u.query)
    if "fault" in q:
        key = u.path + "?" + u.query
        if counts.get(key, 0) < int(q["times"][0]) + 1:
            bad += 1
print(bad)
EOF
)
eq "each faulty URL was retried past its faults" "$under" 0
eq "per-host concurrency never above 8" "$(count "['max_active']['127.0.0.1'] <= 8")" True

# 2. a re-run of the unchanged catalog with --refresh: all conditional hits.
"$PM" run "$T/cat.csv" --out "$T/out" "${ARGS[@]}" --refresh --json >"$T/again.json" 2>/dev/null
eq "re-run with --refresh: every done item is a 304 cache hit" \
  "$(jq_ "$T/again.json" "d['cache_hits'] == d['done'] == $done_n")" True
"$PM" status --db "$T/out/pixmill.db" --json >"$T/status.json"
eq "status --json: the last run's http hit rate is 1.0 ($done_n of $done_n)" \
  "$(jq_ "$T/status.json" "(d['jobs'][0]['http_hit_rate'], d['jobs'][0]['http_hits'] == d['jobs'][0]['http_items'] == $done_n)")" "(1.0, True)"
check "status: says it in words" grep -q "http cache (last run): 100.0% of $done_n http items needed no download" <("$PM" status --db "$T/out/pixmill.db")

# 3. a drip: the body trickles at 100 B/s, under the low-speed limit (1024
# B/s for 15 s), so the transfer is abandoned as too slow. It has its own
# origin and runs in the background while the next sections run.
F=opencv_fruits.jpg
start_origin drip
printf 'id,image\ndrip,http://127.0.0.1:%s/file/%s?fault=drip&rate=100\n' "$PORT" "$F" >"$T/drip.csv"
"$PM" run "$T/drip.csv" --out "$T/drip" --allow-private --max-attempts 1 -p bench/peer.json --quiet 2>/dev/null &
drip_pid=$!

hits() { # hits PATH?QUERY [BASE_URL]: how many requests the origin saw for it
  local p=${1//\%/%25}; p=${p//\?/%3F}; p=${p//&/%26}; p=${p//=/%3D}
  curl -s "${2:-$B}/count?path=$p"; }
dlq_tsv() { # dlq_tsv DB: the DLQ as lines "URL<TAB>code<TAB>attempts<TAB>error"
  "$PM" dlq list --db "$1" --json |
    python3 -c "import json,sys; [print(x['image'], x.get('code') or '', x.get('attempts'), x.get('error') or '', sep='\t') for x in json.load(sys.stdin)]"; }
dlq() { # dlq TSV URL_PART COLUMN: column 2 (code), 3 (attempts) or 4 (error) of the entries whose URL has URL_PART
  awk -F'\t' -v u="$2" -v c="$3" 'index($1, u) { print $c }' "$1"; }

# 4. the origin itself: keep-alive, 300 clients at once, junk requests.
curl -s "$B/stats/reset" >/dev/null
curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null "$B/img/k?tag=1" "$B/img/k?tag=2" "$B/img/k?tag=3" "$B/img/k?tag=4"
eq "origin: keep-alive, 4 requests on 1 connection (and 1 for /count)" "$(ostat "(d['total'], d['connections']['total'])")" "(4, 2)"
mkdir -p "$T/par"
codes=$(curl -s --parallel --parallel-immediate --parallel-max 300 -o "$T/par/#1" -w '%{http_code}\n' \
  "$B/img/p?size=100&latency=1000&tag=[1-300]" 2>/dev/null | grep -c '^200$')
eq "origin: 300 clients at once with 1 s latency, all answered" "$codes" 300
maxact=$(curl -s "$B/count?max_active=127.0.0.1")
check "origin: served side by side, not in turn (max active $maxact)" test "$maxact" -ge 256
for junk in 'GARBAGE\r\n\r\n' 'GET / HTTP/9.9\r\n\r\n' 'GET /x HTTP/1.1\r\nno colon\r\n\r\n' '\x00\xff\r\n\r\n' \
  'GET /img/a?size=-5 HTTP/1.1\r\nConnection: close\r\n\r\n' 'POST /img/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'; do
  (exec 3<>"/dev/tcp/127.0.0.1/$BPORT" && printf "$junk" >&3 && timeout 5 cat <&3 >/dev/null) 2>/dev/null
done
head -c 20000 /dev/zero | tr '\0' a |
  (exec 3<>"/dev/tcp/127.0.0.1/$BPORT" && { printf 'GET / HTTP/1.1\r\nX: ' && cat; } >&3 && timeout 5 cat <&3 >/dev/null) 2>/dev/null
eq "origin: 7 junk requests answered 4xx/5xx" "$(ostat "sum(n for c, n in d['responses'].items() if c[0] in '45')")" 7
eq "origin: still serving after them" "$(curl -s -o /dev/null -w '%{http_code}' "$B/img/after-junk")" 200

# 5. 25% faults drawn by ratio from a hash of path+query and attempt
# number: 503, 500, 429 with Retry-After, resets, truncated bodies and
# hangs, each faulty URL failing twice, then recovering; 4 attempts each
# (no circuit breaker here, so that the time goes to the faults alone).
start_origin ratio --fault-ratio 0.25 --fault-kinds 503,500,429,reset,truncate,timeout --fault-times 2
R="http://127.0.0.1:$PORT"
imgs=($(cd "$ROOT/examples/images" && ls -- *.jpg))
{ echo "id,image"; for i in $(seq 0 199); do echo "q$i,$R/file/${imgs[i % 5]}?tag=$i"; done; } >"$T/ratio.csv"
"$PM" run "$T/ratio.csv" --out "$T/ratio" --allow-private --max-attempts 4 --timeout 1.5 --breaker-failures 0 \
  --per-host 8 --per-host-rps 100 -p bench/peer.json --json >"$T/ratio.json" 2>/dev/null
rdone=$(jq_ "$T/ratio.json" "d['job_done']")
check "ratio faults: >= 99% done within the retry budget ($rdone/200)" test "$rdone" -ge 198
dlq_tsv "$T/ratio/pixmill.db" >"$T/ratio.dlq"
eq "ratio faults: every failed item is in the DLQ with a reason" "$(awk -F'\t' '$2 != "" && $4 != ""' "$T/ratio.dlq" | wc -l)" "$((200 - rdone))"
curl -s "$R/count" >"$T/ratio.count"
# faulty URLs; those that did not fail twice and then get an answer; kinds
# drawn; and (into faulted.1) the faulty ones among the first 40
read -r nfaulty unrecovered nkinds kinds < <(python3 - "$T/ratio.count" "$T/faulted.1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
f = d["faulted"]
bad = sum(1 for k, n in f.items() if n != 2 or d["counts"][k] < 3)
open(sys.argv[2], "w").write("".join(sorted(k + "\n" for k in f if int(k.split("tag=")[1]) < 40)))
print(len(f), bad, len(d["faults"]), ",".join(f"{k}:{n}" for k, n in sorted(d["faults"].items())))
EOF
)
check "ratio faults: about 25% of the URLs faulty ($nfaulty/200)" test "$nfaulty" -ge 30 -a "$nfaulty" -le 70
check "ratio faults: each faulty URL failed twice, then was answered" test "$unrecovered" -le "$((200 - rdone))"
check "ratio faults: every kind was drawn ($kinds)" test "$nkinds" -eq 6
# The draw is reproducible: after a reset the same URLs are faulty again.
curl -s "$R/stats/reset" >/dev/null
for i in $(seq 0 39); do echo "$R/file/${imgs[i % 5]}?tag=$i"; done | xargs -P 20 -n 1 curl -s -m 1 -o /dev/null
curl -s "$R/count" | python3 -c "import json,sys; print(''.join(sorted(k + '\n' for k in json.load(sys.stdin)['faulted'])), end='')" >"$T/faulted.2"
check "ratio faults: the same URLs are faulty on a second pass ($(wc -l <"$T/faulted.1") of the first 40)" \
  cmp -s "$T/faulted.1" "$T/faulted.2"

# 6. one URL per fault: redirect chains, body limits, a wrong type, a hang,
# and faults that recover.
curl -s "$B/stats/reset" >/dev/null
{
  echo "id,image"
  echo "chain5,$B/redirect/5?to=/file/$F%3Ftag%3Dchain5"
  echo "chain6,$B/redirect/6?to=/file/$F%3Ftag%3Dchain6"
  echo "endless,$B/file/$F?fault=endless"
  echo "huge,$B/file/$F?fault=huge"
  echo "ctype,$B/file/$F?fault=ctype"
  echo "hang,$B/file/$F?fault=timeout"
  echo "r429,$B/file/$F?fault=429&times=1&after=1"
  echo "trunc,$B/file/$F?fault=truncate&times=1"
  echo "slow,$B/file/$F?fault=slow&ms=300"
  echo "latency,$B/file/$F?latency=500"
} >"$T/faults.csv"
"$PM" run "$T/faults.csv" --out "$T/faults" --allow-private --max-attempts 2 --timeout 2 --max-bytes 4M \
  -p bench/peer.json --json >"$T/faults.json" 2>/dev/null
dlq_tsv "$T/faults/pixmill.db" >"$T/faults.dlq"
eq "faults: 5 of 10 done (5-hop chain, 429 and truncate retried, slow, latency)" "$(jq_ "$T/faults.json" "d['done']")" 5
eq "redirects: a chain of 5 hops is followed to the file" "$(dlq "$T/faults.dlq" "redirect/5" 2)/$(hits "/file/$F?tag=chain5")" "/1"
eq "redirects: a chain of 6 hops fails, too many redirects" "$(dlq "$T/faults.dlq" "redirect/6" 4 | cut -d, -f1)" "too many redirects (more than 5)"
eq "redirects: the 6-hop chain never reached the file" "$(hits "/file/$F?tag=chain6")" 0
eq "endless body: too_large at --max-bytes, while streaming" "$(dlq "$T/faults.dlq" "fault=endless" 4)" \
  "body is over the limit of 4194304 bytes (stopped while streaming)"
eq "huge Content-Length: too_large, refused on the header" "$(dlq "$T/faults.dlq" "fault=huge" 4)" \
  "body of 1099511627776 bytes (Content-Length) is over the limit of 4194304"
eq "wrong content type (text/html): type_mismatch" "$(dlq "$T/faults.dlq" "fault=ctype" 2)" type_mismatch
eq "a hang: 2 attempts, 2 requests" "$(dlq "$T/faults.dlq" "fault=timeout" 3)/$(hits "/file/$F?fault=timeout")" "2/2"
check "a hang: failed as a timeout" grep -q "fault=timeout.*timeout after 2.0s" "$T/faults.dlq"
eq "429 with Retry-After, then 200: 2 requests" "$(hits "/file/$F?fault=429&times=1&after=1")" 2
eq "truncated body, then 200: 2 requests" "$(hits "/file/$F?fault=truncate&times=1")" 2
eq "the origin's fault counts" "$(ostat "sorted(d['faults'].items())")" \
  "[('429', 1), ('ctype', 1), ('endless', 1), ('huge', 1), ('slow', 1), ('timeout', 2), ('truncate', 1)]"

# 7. the SSRF guard on redirects: only the host name localhost is allowed
# (no --allow-private), so redirects to 169.254.169.254 (cloud metadata)
# and to 127.0.0.1 are refused before any connection is made.
{
  echo "id,image"
  echo "meta,http://localhost:$BPORT/redirect-private?target=metadata"
  echo "loop,http://localhost:$BPORT/redirect-private?target=loopback&path=/file/$F%3Ftag%3Dssrf"
  echo "ok,http://localhost:$BPORT/file/$F?tag=ssrf-ok"
} >"$T/ssrf.csv"
"$PM" run "$T/ssrf.csv" --out "$T/ssrf" --allow-host localhost --max-attempts 1 -p bench/peer.json --json >"$T/ssrf.json" 2>/dev/null
dlq_tsv "$T/ssrf/pixmill.db" >"$T/ssrf.dlq"
eq "ssrf: the allowed host name is fetched" "$(jq_ "$T/ssrf.json" "d['done']")" 1
eq "ssrf: a redirect to 169.254.169.254 is refused as link-local" "$(dlq "$T/ssrf.dlq" "target=metadata" 2) $(dlq "$T/ssrf.dlq" "target=metadata" 4 | cut -d'(' -f1)" \
  "unsupported refused: 169.254.169.254 is a link-local address "
eq "ssrf: a redirect to 127.0.0.1 is refused as loopback" "$(dlq "$T/ssrf.dlq" "target=loopback" 2) $(dlq "$T/ssrf.dlq" "target=loopback" 4 | cut -d'(' -f1)" \
  "unsupported refused: 127.0.0.1 is a loopback address "
eq "ssrf: the refused loopback target was never requested" "$(hits "/file/$F?tag=ssrf")" 0

# 8. a URL on many rows is downloaded once per run: the rows that come
# while its transfer is in flight wait on it, later ones take the kept
# body; a URL that fails once is retried by its first row only.
{
  echo "id,image"
  for i in $(seq 20); do
    echo "a$i,$B/file/$F?tag=rep-a"
    echo "b$i,$B/file/$F?tag=rep-b&fault=503&times=1"
    echo "c$i,$B/file/$F?tag=rep-c$i"
  done
} >"$T/rep.csv"
"$PM" run "$T/rep.csv" --out "$T/rep" --allow-private --max-attempts 3 -p bench/peer.json --json >"$T/rep.json" 2>"$T/rep.err"
eq "repeated URLs: 60 rows done" "$(jq_ "$T/rep.json" "(d['done'], d['failed'])")" "(60, 0)"
eq "repeated URLs: 1 request for the 20 rows of one URL" "$(hits "/file/$F?tag=rep-a")" 1
eq "repeated URLs: 2 requests (503, then 200) for 20 rows of a flaky URL" "$(hits "/file/$F?tag=rep-b&fault=503&times=1")" 2
eq "repeated URLs: distinct URLs are each fetched" "$(hits "/file/$F?tag=rep-c7")/$(hits "/file/$F?tag=rep-c20")" "1/1"
eq "repeated URLs: 38 rows served by an earlier download, of 60 http items" "$(jq_ "$T/rep.json" "(d['url_reused'], d['http_items'])")" "(38, 60)"
eq "repeated URLs: status gives the run's hit rate, 38 of 60" "$("$PM" status --db "$T/rep/pixmill.db" --json | python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['http_hits'], j['http_items'])")" "38 60"
"$PM" run "$T/rep.csv" --out "$T/rep2" --allow-private --max-attempts 3 --url-cache 0 --progress none -p bench/peer.json 2>"$T/rep2.err"
check "repeated URLs, --url-cache 0 (merging in flight only): all 60 done" grep -q " 60 done " "$T/rep2.err"
check "repeated URLs: the summary gives the http cache hit rate" grep -Eq "http cache: [0-9.]+% of 60 http items needed no download" "$T/rep2.err"

# 3 (end): the drip.
wait "$drip_pid"
dlq_tsv "$T/drip/pixmill.db" >"$T/drip.dlq"
eq "drip: abandoned as too slow" "$(dlq "$T/drip.dlq" "fault=drip" 4)" "too slow: under 1024 B/s for 15 s"

echo "network: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
