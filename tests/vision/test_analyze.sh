#!/usr/bin/env bash
# test_analyze.sh — the analyze stage against the local vision test server
# (tests/vision/server.py, an OpenAI-compatible chat-completions stand-in
# on loopback). Asserts, from the store, the manifests and the server's
# request log:
#   1. captions, tags and product_match stored for every good item; the
#      caption also at $.caption, which `pixmill search text` finds
#   2. key rotation: requests spread over the good keys
#   3. a key answered with 401 is dropped (tried at most once per worker)
#      while the other keys carry on; with every key bad, items fail with
#      `unauthorized` and a clear reason
#   4. malformed and schema-breaking answers: one stricter retry, then an
#      item error (upstream_error) that says why, while the other items
#      succeed; a flaky answer succeeds on the stricter retry; a 400 is
#      not retried
#   5. a re-run, a run with other keys and timeouts (same pipeline hash),
#      and a new catalog of the same images make no request (cache)
#   6. adaptive rate: after injected 429s the key waits out Retry-After,
#      and the gaps between its requests grow (compared with the gaps
#      before the 429s: an ordering, not a wall-clock threshold)
#   7. 500 is retried; an answer slower than timeout_ms is retried, then
#      fails the item with io_error (with response_format json_schema,
#      which the server checks); an answer over 4 MiB fails at once
#   8. no API key appears in the database, the manifests or pixmill's
#      output
#   9. every file of the edge corpus: done with a caption, or failed with
#      a reason
#
# Usage: tests/vision/test_analyze.sh PIXMILL_BINARY
# Ends with "vision: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_analyze.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
SRV_PID=
trap '[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; rm -rf "$T"' EXIT

K1=sk-test-alpha-1111111111
K2=sk-test-beta-2222222222
K3=sk-test-gamma-3333333333
KBAD=sk-test-revoked-9999999999
LOG=$T/requests.jsonl

python3 "$ROOT/tests/vision/server.py" --port-file "$T/port" --log "$LOG" \
  --keys "$K1,$K2,$K3" --slow 2.5 2>"$T/server.err" &
SRV_PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
PORT=$(cat "$T/port" 2>/dev/null)
[ -n "$PORT" ] || { cat "$T/server.err"; echo "vision: 0 passed, 1 failed"; exit 1; }
BASE="http://127.0.0.1:$PORT"
touch "$LOG"

# Images: solid colours (PNG, python's zlib), distinct bytes each.
python3 - "$T/img" <<'EOF'
import os, struct, sys, zlib
d = sys.argv[1]; os.makedirs(d)
def png(path, w, h, rgb):
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
cols = {"red": (215, 25, 25), "green": (30, 160, 40), "blue": (30, 60, 205), "yellow": (230, 220, 40),
        "black": (10, 10, 10), "white": (245, 245, 245)}
for i in range(60):
    name = list(cols)[i % len(cols)]
    r, g, b = cols[name]
    png(f"{d}/{i:02d}-{name}.png", 48 + i, 40 + (i % 7) * 4, (r, g, b))  # sizes differ
EOF
img() { ls "$T/img/" | sed -n "$(($1 + 1))p"; }

pipeline() { # pipeline FILE EXTRA_JSON: an analyze pipeline for this server
  cat >"$1" <<EOF
{"name": "vision-test", "stages": [{"stage": "analyze", "base_url": "$BASE/v1",
  "model": "test-vision" $2}]}
EOF
}
cd "$T"

# ---- 1-4: the main run: 3 good keys and a revoked one, 2 workers ----
pipeline p1.json ", \"api_keys\": [\"$K3\"], \"timeout_ms\": 5000, \"max_attempts\": 3,
  \"rate_start\": 50, \"rate_max\": 50, \"price_in_per_1k\": 0.15, \"price_out_per_1k\": 0.6"
{
  echo "id,image,title"
  echo "p0,$T/img/$(img 0),red mug"       # red image: a match
  echo "p1,$T/img/$(img 1),blue shirt"    # green image: no match
  echo "p2,$T/img/$(img 2),"              # no title: no product_match
  for i in 3 4 5 6 7 8 9 10 11; do echo "p$i,$T/img/$(img $i),item $i"; done
  echo "dup,$T/img/$(img 0),red mug"       # same bytes and text as p0: no request
  echo "p0b,$T/img/$(img 0),green mug"     # same bytes, other title: its own verdict
  echo "bad1,$T/img/$(img 12),MALFORMED thing"
  echo "bad2,$T/img/$(img 13),SCHEMA thing"
  echo "bad3,$T/img/$(img 14),BAD400 thing"
  echo "flaky,$T/img/$(img 15),FLAKY thing"
} >cat1.csv
PIXMILL_VISION_KEYS="$K1,$K2,$KBAD" "$PM" run cat1.csv --out out1 -p p1.json -j 2 \
  >run1.out 2>run1.err
rc=$?
eq "run 1 exits 1 (some items failed)" "$rc" 1
eq "run 1: 15 done (incl. 1 duplicate), 3 failed" \
  "$(db out1/pixmill.db "select sum(state='done') || ' ' || sum(state='failed') from items")" "15 3"
# captions: what the server answered for each image's colour and size
bad_caps=$(python3 - out1/pixmill.db <<'EOF'
import json, re, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
bad = 0
for key, image, meta in c.execute("select i.record_id, i.image, a.meta_json from items i join assets a on a.id = i.asset_id where i.state = 'done'"):
    m = json.loads(meta)
    colour = re.search(r"-(\w+)\.png$", image).group(1)
    an = m.get("analysis", {})
    if not re.fullmatch(r"a mostly %s image, \d+x\d+ pixels" % colour, m.get("caption", "")) \
       or an.get("caption") != m.get("caption") or colour not in an.get("tags", []) \
       or an.get("model") != "test-vision" or not an.get("tokens_in") or not an.get("tokens_out"):
        print(key, meta, file=sys.stderr); bad += 1
print(bad)
EOF
)
eq "every done item has its caption, tags, model and tokens" "$bad_caps" 0
eq "title 'red mug' on a red image: product_match true, score 0.9" \
  "$(db out1/pixmill.db "select json_extract(a.meta_json,'\$.analysis.product_match') || ' ' || json_extract(a.meta_json,'\$.analysis.match_score') from items i join assets a on a.id=i.asset_id where i.record_id='p0'")" "1 0.9"
eq "title 'blue shirt' on a green image: product_match false" \
  "$(db out1/pixmill.db "select json_extract(a.meta_json,'\$.analysis.product_match') from items i join assets a on a.id=i.asset_id where i.record_id='p1'")" "0"
eq "no title: no product_match" \
  "$(db out1/pixmill.db "select json_type(a.meta_json,'\$.analysis.product_match') is null from items i join assets a on a.id=i.asset_id where i.record_id='p2'")" "1"
eq "malformed answer: upstream_error saying it is not JSON" \
  "$(db out1/pixmill.db "select code || ':' || (error like '%not a JSON object%') from items where record_id='bad1'")" "upstream_error:1"
eq "schema-breaking answer: upstream_error naming the field" \
  "$(db out1/pixmill.db "select code || ':' || (error like '%breaks the schema%caption%') from items where record_id='bad2'")" "upstream_error:1"
eq "400: upstream_error with the API's message" \
  "$(db out1/pixmill.db "select code || ':' || (error like '%answered 400%refused%') from items where record_id='bad3'")" "upstream_error:1"
eq "flaky answer: done after the stricter retry" "$(db out1/pixmill.db "select state from items where record_id='flaky'")" done
eq "malformed and schema answers: asked twice (one stricter retry)" \
  "$(logq 0 "sum(1 for r in L if r.get('title') in ('MALFORMED thing','SCHEMA thing') and r['status']==200)")" 4
eq "the 400 is not retried" "$(logq 0 "sum(1 for r in L if r.get('title')=='BAD400 thing')")" 1
eq "flaky: 2 requests" "$(logq 0 "sum(1 for r in L if r.get('title')=='FLAKY thing')")" 2
eq "the duplicate row made no request, the same image with another title did (13 + 2x2 + 1 + 2)" \
  "$(logq 0 "sum(1 for r in L if r['status']==200 or r.get('fault')=='bad400')")" 20
eq "same image, title 'green mug': its own verdict (no match)" \
  "$(db out1/pixmill.db "select json_extract(a.meta_json,'\$.analysis.product_match') from items i join assets a on a.id=i.asset_id where i.record_id='p0b'")" "0"
n_bad=$(logq 0 "sum(1 for r in L if r['key']=='$KBAD')")
check "the revoked key was tried at most once per worker ($n_bad)" test "$n_bad" -ge 1 -a "$n_bad" -le 2
eq "... and got 401 each time" "$(logq 0 "all(r['status']==401 for r in L if r['key']=='$KBAD')")" True
eq "the revoked key's refusal is logged by name, not by value" \
  "$(grep -c "vision API key key4 refused (401)" run1.err | awk '{print ($1>=1)}')" 1
spread=$(logq 0 "' '.join(str(sum(1 for r in L if r['key']==k and r['status']==200)) for k in ('$K1','$K2','$K3'))")
echo "requests per good key: $spread"
check "key rotation: each good key served >= 4 of the 20 answers ($spread)" \
  python3 -c "import sys; sys.exit(0 if all(int(x) >= 4 for x in sys.argv[1].split()) else 1)" "$spread"
eq "manifest lines carry the analysis" \
  "$(grep -c '"analysis":{"caption":"a mostly' out1/manifests/job1-run1.jsonl)" 14

n_found=$("$PM" search text "mostly yellow" --db out1/pixmill.db 2>/dev/null | grep -c '\[yellow\]')
check "captions feed text search: 'mostly yellow' finds the yellow images ($n_found)" test "$n_found" -ge 2

# ---- 5: cache ----
before=$(nlog)
PIXMILL_VISION_KEYS="$K1,$K2,$KBAD" "$PM" run cat1.csv --out out1 -p p1.json -j 2 >run2.out 2>run2.err
eq "re-run: no new request" "$(nlog)" "$before"
pipeline p1b.json ", \"timeout_ms\": 9000, \"max_attempts\": 5, \"price_in_per_1k\": 1"
sed 's/^p/q/; s/^dup/qdup/; s/^flaky/qflaky/' cat1.csv | grep -v 'MALFORMED\|SCHEMA\|BAD400' >cat1b.csv
PIXMILL_VISION_KEYS="$K2" "$PM" run cat1b.csv --out out1 -p p1b.json -j 2 >run3.out 2>run3.err
eq "other keys and timeouts, a new catalog of the same images: no request" "$(nlog)" "$before"
eq "... and the new job's items are all done" \
  "$(db out1/pixmill.db "select count(*) || ' ' || sum(state='done') from items where record_id like 'q%'")" "15 15"
eq "same pipeline hash without keys and settings" \
  "$(db out1/pixmill.db "select count(distinct pipeline_hash) from assets")" 1

# ---- 6: adaptive rate (one key, one worker) ----
control '{"faults": [{"status": 429, "after": 6, "count": 3, "retry_after": 1}]}'
pipeline p2.json ", \"rate_start\": 20, \"rate_max\": 20, \"rate_increase\": 0.5, \"rate_decrease\": 0.5, \"max_attempts\": 6"
{ echo "id,image,title"; for i in $(seq 20 35); do echo "r$i,$T/img/$(img "$i"),"; done; } >cat2.csv
start=$(nlog)
PIXMILL_VISION_KEYS="$K1" "$PM" run cat2.csv --out out2 -p p2.json -j 1 >run4.out 2>run4.err
eq "rate run: all 16 done despite the 429s" "$(db out2/pixmill.db "select sum(state='done') from items")" 16
eq "rate run: 3 injected 429s, 16 answers" \
  "$(logq "$start" "str(sum(r['status']==429 for r in L)) + ' ' + str(sum(r['status']==200 for r in L))")" "3 16"
eq "Retry-After honoured: each request after a 429 came >= 1 s later" \
  "$(logq "$start" "all(L[i+1]['t0'] - L[i]['t0'] >= 0.99 for i in range(len(L)-1) if L[i]['status']==429)")" True
gaps=$(python3 - "$LOG" "$start" <<'EOF'
import json, statistics, sys
L = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
ok = [i for i, r in enumerate(L) if r["status"] == 200]
first429 = min(i for i, r in enumerate(L) if r["status"] == 429)
last429 = max(i for i, r in enumerate(L) if r["status"] == 429)
before = [L[i]["t0"] for i in ok if i < first429][-6:]
after = [L[i]["t0"] for i in ok if i > last429][:7]
gb = [b - a for a, b in zip(before, before[1:])]
ga = [b - a for a, b in zip(after[1:], after[2:])]  # from the first after the cool-down
print("%.3f %.3f" % (statistics.median(gb), statistics.median(ga)))
EOF
)
echo "median gap between requests before the 429s and after (s): $gaps"
check "adaptive rate: the gaps after the 429s are longer than before ($gaps)" \
  python3 -c "import sys; b, a = map(float, sys.argv[1].split()); sys.exit(0 if a > b else 1)" "$gaps"

# ---- 3b: every key bad ----
start=$(nlog)
{ echo "id,image,title"; for i in 40 41 42; do echo "u$i,$T/img/$(img "$i"),"; done; } >cat3.csv
PIXMILL_VISION_KEYS="$KBAD" "$PM" run cat3.csv --out out3 -p p2.json -j 1 >run5.out 2>run5.err
eq "every key refused: items fail as unauthorized with the reason" \
  "$(db out3/pixmill.db "select count(*) || ' ' || sum(code='unauthorized' and error like '%every vision API key%refused%') from items")" "3 3"
eq "... after a single request with the bad key" "$(logq "$start" "len(L)")" 1

# ---- 7: 500 retried, slow answers time out ----
control '{"faults": [{"status": 500, "count": 1}]}'
pipeline p3.json ", \"timeout_ms\": 1000, \"max_attempts\": 2, \"response_format\": \"json_schema\",
  \"detail\": \"low\""
{ echo "id,image,title"; echo "s1,$T/img/$(img 50),normal"; echo "s2,$T/img/$(img 51),SLOW one"
  echo "s3,$T/img/$(img 52),HUGE one"; } >cat4.csv
start=$(nlog)
PIXMILL_VISION_KEYS="$K1" "$PM" run cat4.csv --out out4 -p p3.json -j 1 >run6.out 2>run6.err
eq "a 500 is retried: the item is done (json_schema request accepted)" "$(db out4/pixmill.db "select state from items where record_id='s1'")" done
eq "... after one injected 500" "$(logq "$start" "sum(r['status']==500 for r in L)")" 1
eq "slow answers: io_error naming timeout_ms" \
  "$(db out4/pixmill.db "select code || ':' || (error like '%timeout_ms 1000%') from items where record_id='s2'")" "io_error:1"
eq "an answer over 4 MiB: upstream_error, not retried" \
  "$(db out4/pixmill.db "select code || ':' || (error like '%over 4194304 bytes%') from items where record_id='s3'")" "upstream_error:1"
eq "... one request" "$(logq "$start" "sum(1 for r in L if r.get('title')=='HUGE one')")" 1
sleep 3 # the server logs a slow request when its answer is written
eq "... after max_attempts (2) requests" "$(logq "$start" "sum(1 for r in L if r.get('title')=='SLOW one')")" 2

# ---- 9: the edge corpus: every file done or failed with a reason ----
EDGE=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}/edge
if [ -d "$EDGE" ]; then
  pipeline p5.json ", \"max_edge\": 512, \"timeout_ms\": 30000, \"rate_start\": 50, \"rate_max\": 50"
  start=$(nlog)
  PIXMILL_VISION_KEYS="$K2" "$PM" run "$EDGE" --all-files --out out5 -p p5.json >run7.out 2>run7.err
  rc=$?
  check "edge corpus through analyze: exit 0 or 1 (rc $rc)" test "$rc" -le 1
  eq "edge corpus: every file has a row, done or failed with a reason" \
    "$(db out5/pixmill.db "select count(*) = $(find "$EDGE" -type f | wc -l) and sum(state='done' or (state='failed' and length(error) > 0)) = count(*) from items")" 1
  eq "edge corpus: every done file has a caption, from one request each" \
    "$(db out5/pixmill.db "select count(*) from items i join assets a on a.id=i.asset_id where i.state='done' and json_extract(a.meta_json,'\$.caption') like 'a mostly %'")" \
    "$(logq "$start" "sum(r['status']==200 for r in L)")"
fi

# ---- 8: keys never stored or printed ----
leaks=0
for k in "$K1" "$K2" "$K3" "$KBAD"; do
  if grep -rqa -- "$k" out* run*.out run*.err; then
    leaks=$((leaks + 1)); grep -rla -- "$k" out* run*.out run*.err
  fi
done
eq "no API key in the databases, manifests or pixmill's output" "$leaks" 0
check "the stored pipeline has no api_keys" \
  test "$(db out1/pixmill.db "select count(*) from jobs where pipeline_json like '%api_keys%' or pipeline_json like '%sk-test%'")" = 0

check "no sanitizer report in any run (ASan builds)" \
  sh -c '! grep -l "Sanitizer\|runtime error" run*.err'

echo "vision: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
