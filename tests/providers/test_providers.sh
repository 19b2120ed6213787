#!/usr/bin/env bash
# test_providers.sh — image search providers (--search-provider) against
# the local stand-in for the Google CSE and Bing v7 image search APIs
# (tests/providers/server.py). Asserts, from the manifests, the store,
# `status --json`, /metrics of `pixmill serve` and the server's request
# log:
#   1. rows without an image get candidates from the first provider, are
#      fetched in rank order (largest declared first) through the fetch
#      engine, and record the provider; a row with an image makes no
#      search; empty results and malformed JSON fall back to the next
#      provider; nothing found anywhere fails the row (not_found) naming
#      every provider; keys never show in outputs
#   2. health counters in `status --json` match the request log
#   3. a daily quota stops the calls and falls back to the next provider,
#      and holds across runs (same store)
#   4. the rate limit: never more requests in a 1 s window than the rate
#      allows (plus one), from the log's timestamps
#   5. 429 with Retry-After is waited out and retried; a Retry-After past
#      the wait bound, timeouts and 5xx from every provider fall back and
#      finally fail the row with a clear reason (rate_limited / io_error)
#   6. no provider: the row fails as before (bad_catalog_row); result
#      URLs go through the SSRF guard
#   7. pixmill serve with providers: /metrics counters match the log
#
# Usage: tests/providers/test_providers.sh PIXMILL_BINARY
# Ends with "providers: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_providers.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
SRV_PID= SERVE_PID=
trap '[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$T"' EXIT

export PM_TEST_GKEY=gk-test-secret-0123456789
export PM_TEST_BKEY=bk-test-secret-9876543210
LOG=$T/requests.jsonl
touch "$LOG"
python3 "$ROOT/tests/providers/server.py" --port-file "$T/port" --log "$LOG" \
  --google-key "$PM_TEST_GKEY" --bing-key "$PM_TEST_BKEY" --slow 3 \
  2>"$T/server.err" &
SRV_PID=$!
for _ in $(seq 200); do [ -s "$T/port" ] && break; sleep 0.1; done
PORT=$(cat "$T/port" 2>/dev/null)
[ -n "$PORT" ] || { cat "$T/server.err"; echo "providers: 0 passed, 1 failed"; exit 1; }
BASE="http://127.0.0.1:$PORT"
GOOGLE="google,endpoint=$BASE/customsearch/v1,key=env:PM_TEST_GKEY,cx=test-cx"
BING="bing,endpoint=$BASE/v7.0/images/search,key=env:PM_TEST_BKEY"
cd "$T"

# man OUT KEY PYEXPR: PYEXPR over m, the manifest line of KEY
man() { python3 -c "
import json, sys, glob
m = [json.loads(l) for f in sorted(glob.glob(sys.argv[1] + '/manifests/*.jsonl')) for l in open(f)]
m = [x for x in m if x['key'] == sys.argv[2]][-1]
print($3)" "$1" "$2"; }
run() { "$PM" run "$@" --pipeline hashes --allow-private --progress none -j 2; }

# ---- 1. candidates from providers, fallback, not found ----
cat >c1.csv <<EOF
id,image,title,price,brand
k1,,Red kettle,10,Acme
k2,,Blue mug,3,
k3,,NOTHING at all,4,Zed
k4,,MALFORMG teapot,5,Zed
k5,$BASE/img/listed-0-300x200.png,Listed lamp,6,Lux
EOF
s1=$(nlog)
run c1.csv --out o1 --search-provider "$GOOGLE" --search-provider "$BING" \
  --json >run1.json 2>run1.err
eq "run 1 exits 1 (one row found nothing)" "$?" 1
eq "k1 done, its candidates from google" "$(man o1 r1 "m['state'], m.get('search_provider')")" "done google"
eq "k1 query is title + brand" "$(logq "$s1" "[r['q'] for r in L if r['api']=='google'][0]")" "Red kettle Acme"
eq "k2 query without a brand is the title" "$(logq "$s1" "sorted(r['q'] for r in L if r['api']=='google')[0]")" "Blue mug"
eq "k1: the largest declared candidate was tried first and chosen" \
  "$(man o1 r1 "m['candidates'][0]['result'], m['candidates'][0]['url'].endswith('-800x600.png'), m['candidates'][0]['provider']")" \
  "chosen True google"
eq "k1: the image came from the search result URL" \
  "$(man o1 r1 "m['image'].startswith('$BASE/img/red-kettle-acme-1-')")" True
eq "k1: one image request per done search row (early stop)" \
  "$(logq "$s1" "sum(1 for r in L if r['api']=='img' and 'red-kettle' in r['path'])")" 1
eq "k3: nothing found anywhere: not_found naming both providers" \
  "$(man o1 r3 "m['state'], m['code'], 'google: no results' in m['error'] and 'bing: no results' in m['error']")" \
  "failed not_found True"
eq "k4: malformed JSON from google falls back to bing" \
  "$(man o1 r4 "m['state'], m.get('search_provider')")" "done bing"
eq "k5 (listed image) made no search" \
  "$(logq "$s1" "sum(1 for r in L if r['api'] in ('google','bing') and 'Listed' in r['q'])")" 0
eq "k5 done without a provider" "$(man o1 r5 "m['state'], m.get('search_provider')")" "done None"
eq "item in the store records the provider in its candidates" \
  "$(db o1/pixmill.db "select json_extract(candidates,'\$[0].provider') from items where record_id='k2'")" google
eq "run summary JSON: google 4 searches (3 found... k3 empty)" \
  "$(python3 -c "import json; g=[p for p in json.load(open('run1.json'))['search_providers'] if p['provider']=='google'][0]; print(g['found'], g['empty'], g['failed'], g['requests'])")" \
  "2 1 1 4"
bad_keys=0
for f in run1.json run1.err o1/manifests/*.jsonl; do
  grep -q -e "$PM_TEST_GKEY" -e "$PM_TEST_BKEY" "$f" && bad_keys=$((bad_keys + 1))
done
grep -a -q -e "$PM_TEST_GKEY" -e "$PM_TEST_BKEY" o1/pixmill.db* && bad_keys=$((bad_keys + 1))
eq "no API key in the summary, stderr, manifests or database" "$bad_keys" 0

# ---- 2. health counters in status --json match the log ----
"$PM" status --db o1/pixmill.db --json >st1.json
for api in google bing; do
  eq "status --json: $api requests/found/empty/failed/results match the log" \
    "$(python3 -c "import json,sys; p=[p for p in json.load(open('st1.json'))['search_providers'] if p['provider']=='$api'][0]; print(p['requests'], p['found'], p['empty'], p['failed'], p['results'], p['today_requests'])")" \
    "$(logq "$s1" "' '.join(map(str, [sum(r['api']=='$api' for r in L), sum(r['api']=='$api' and r['status']==200 and r['n']>0 for r in L), sum(r['api']=='$api' and r['status']==200 and r['n']==0 and r['fault'] is None for r in L), sum(r['api']=='$api' and r['fault']=='malformed' for r in L), sum(r['n'] for r in L if r['api']=='$api'), sum(r['api']=='$api' for r in L)]))")"
done
"$PM" status --db o1/pixmill.db >st1.txt
check "status text lists the providers" grep -q "image search providers" st1.txt

# ---- 3. daily quota, persisted across runs, falls back ----
{
  echo "id,image,title"
  for i in 1 2 3 4 5; do echo "q$i,,Quota item $i"; done
} >c3.csv
s3=$(nlog)
run c3.csv --out o3 --search-provider "$GOOGLE,quota=2" --search-provider "$BING" >/dev/null 2>run3.err
eq "quota run: every row done" "$(db o3/pixmill.db "select sum(state='done') from items")" 5
eq "quota 2: google asked twice, bing the other 3 times" \
  "$(logq "$s3" "sum(r['api']=='google' for r in L), sum(r['api']=='bing' for r in L)")" "2 3"
eq "quota: 2 rows from google, 3 from bing" \
  "$(db o3/pixmill.db "select group_concat(p, ',') from (select json_extract(candidates,'\$[0].provider') p from items order by p)")" \
  "bing,bing,bing,google,google"
sed 's/Quota item/Quota again/' c3.csv >c3b.csv
s3b=$(nlog)
run c3b.csv --out o3 --search-provider "$GOOGLE,quota=2" --search-provider "$BING" >/dev/null 2>&1
eq "quota holds across runs on one store: google not asked again" \
  "$(logq "$s3b" "sum(r['api']=='google' for r in L), sum(r['api']=='bing' for r in L)")" "0 5"
eq "status: google today_requests 2 in the quota store" \
  "$("$PM" status --db o3/pixmill.db --json | python3 -c "import json,sys; print([p['today_requests'] for p in json.load(sys.stdin)['search_providers'] if p['provider']=='google'][0])")" 2

# ---- 4. rate limit (rps=2): at most 3 requests in any 1 s window ----
{
  echo "id,image,title"
  for i in 1 2 3 4 5 6 7; do echo "r$i,,Rate item $i"; done
} >c4.csv
s4=$(nlog)
run c4.csv --out o4 --search-provider "$GOOGLE,rps=2" >/dev/null 2>&1
eq "rate run: 7 google requests" "$(logq "$s4" "sum(r['api']=='google' for r in L)")" 7
eq "rate 2/s: no 1 s window holds more than 3 google requests" \
  "$(logq "$s4" "max(sum(1 for u in t if s <= u < s + 1.0) for t in [sorted(r['t'] for r in L if r['api']=='google')] for s in t) <= 3")" True
eq "rate run: every row done" "$(db o4/pixmill.db "select sum(state='done') from items")" 7

# ---- 5. 429 + Retry-After, timeouts, 5xx ----
echo -e "id,image,title\nt1,,Retry item" >c5.csv
control '{"faults": [{"api": "google", "status": 429, "count": 1, "retry_after": 1}]}'
s5=$(nlog)
run c5.csv --out o5 --search-provider "$GOOGLE" >/dev/null 2>&1
eq "429 then retried on google: row done by google" "$(man o5 r1 "m['state'], m.get('search_provider')")" "done google"
eq "429 once, then 200" "$(logq "$s5" "[r['status'] for r in L if r['api']=='google']")" "[429, 200]"
eq "the retry waited out Retry-After: 1 (gap >= 0.9 s)" \
  "$(logq "$s5" "(lambda t: t[1] - t[0] >= 0.9)([r['t'] for r in L if r['api']=='google'])")" True

echo -e "id,image,title\nt2,,Cooling item" >c5b.csv
control '{"faults": [{"api": "google", "status": 429, "count": 5, "retry_after": 120}]}'
s5b=$(nlog)
run c5b.csv --out o5b --search-provider "$GOOGLE" --search-provider "$BING" >/dev/null 2>&1
eq "Retry-After 120 s (past the 30 s bound): one google request, then bing" \
  "$(logq "$s5b" "[r['api'] for r in L if r['api']!='img']")" "['google', 'bing']"
eq "... and the row is done by bing" "$(man o5b r1 "m['state'], m.get('search_provider')")" "done bing"
control '{"faults": []}'

echo -e "id,image,title\nt3,,SLOWG item" >c5c.csv
s5c=$(nlog)
run c5c.csv --out o5c --search-provider "$GOOGLE,timeout=0.5,attempts=2" --search-provider "$BING" >/dev/null 2>&1
eq "google timing out twice (attempts=2), then bing supplies" \
  "$(man o5c r1 "m['state'], m.get('search_provider')")" "done bing"
eq "two google requests for the timed-out search" \
  "$(logq "$s5c" "sum(r['api']=='google' for r in L)")" 2

echo -e "id,image,title\nt4,,Down item" >c5d.csv
control '{"faults": [{"api": "google", "status": 503, "count": 50}, {"api": "bing", "status": 500, "count": 50}]}'
s5d=$(nlog)
run c5d.csv --out o5d --search-provider "$GOOGLE,attempts=2" --search-provider "$BING,attempts=2" >/dev/null 2>&1
eq "5xx everywhere: the row fails with io_error naming both" \
  "$(man o5d r1 "m['state'], m['code'], 'google: answered 503' in m['error'] and 'bing: answered 500' in m['error']")" \
  "failed io_error True"
eq "5xx: each provider retried once (2 requests each)" \
  "$(logq "$s5d" "sum(r['api']=='google' for r in L), sum(r['api']=='bing' for r in L)")" "2 2"
control '{"faults": []}'
s5e=$(nlog)
run c5d.csv --out o5d --search-provider "$GOOGLE" >/dev/null 2>&1
eq "a re-run retries the io_error row and now finds it" \
  "$(man o5d r1 "m['state'], m.get('search_provider')")" "done google"

# ---- 6. no provider: fails as before; bad keys, bad specs ----
run c1.csv --out o6 >/dev/null 2>&1
eq "no provider: rows without an image fail as bad_catalog_row" \
  "$(man o6 r1 "m['state'], m['code'], m['error']")" "failed bad_catalog_row line 2: empty image"
s6=$(nlog)
run c1.csv --out o6 --search-provider "$GOOGLE" >/dev/null 2>&1
eq "adding a provider later searches for those rows (no --retry-failed)" \
  "$(man o6 r1 "m['state'], m.get('search_provider')")" "done google"
PM_TEST_GKEY=wrong-key-000 run c5.csv --out o6b --search-provider "$GOOGLE" >/dev/null 2>o6b.err
eq "a refused key: upstream_error naming the answer, no key in it" \
  "$(man o6b r1 "m['code'], 'google: answered 400' in m['error'], 'wrong-key' in m['error']")" "upstream_error True False"
"$PM" run c1.csv --out o7 --search-provider "google,key=env:PM_TEST_GKEY" >/dev/null 2>o7.err
eq "google without cx: usage error (2)" "$?" 2
check "... saying cx is needed" grep -q "cx=" o7.err
"$PM" run c1.csv --out o7 --search-provider "yahoo" >/dev/null 2>&1
eq "unknown API shape: usage error" "$?" 2
"$PM" run c1.csv --out o7 --search-provider "bing,key=env:PM_NO_SUCH_VAR_X" >/dev/null 2>&1
eq "key from an unset variable: usage error" "$?" 2
"$PM" run c1.csv --out o7 --search-provider "bing,key=$PM_TEST_BKEY,rps=zero" >/dev/null 2>o7b.err
check "a bad setting's error does not echo the key" sh -c "! grep -q '$PM_TEST_BKEY' o7b.err"

s6g=$(nlog)
"$PM" run c5.csv --out o8 --pipeline hashes --progress none --search-provider "$GOOGLE" >/dev/null 2>&1
eq "no --allow-private: result URLs on loopback are refused by the SSRF guard" \
  "$(man o8 r1 "m['state'], len(m['candidates']), all(c['result'] == 'rejected' for c in m['candidates'])")" "failed 3 True"
eq "... without a single image request reaching the server" \
  "$(logq "$s6g" "sum(r['api']=='img' for r in L), sum(r['api']=='google' for r in L)")" "0 1"

# ---- 7. serve: /metrics match the log ----
"$PM" serve --listen 127.0.0.1:0 --port-file "$T/sport" --data sdata -j 1 \
  --allow-private --search-provider "$GOOGLE" --search-provider "$BING" \
  >serve.out 2>serve.err &
SERVE_PID=$!
for _ in $(seq 200); do [ -s "$T/sport" ] && break; sleep 0.1; done
SP=$(cat "$T/sport" 2>/dev/null)
s7=$(nlog)
python3 - "http://127.0.0.1:$SP" c1.csv >serve_job.out 2>&1 <<'EOF'
import json, sys, time, urllib.request
base, path = sys.argv[1], sys.argv[2]
r = urllib.request.urlopen(urllib.request.Request(base + "/api/jobs?pipeline=hashes",
    data=open(path, "rb").read(), headers={"Content-Type": "text/csv"}, method="POST"))
jid = json.load(r)["id"]
for _ in range(600):
    j = json.load(urllib.request.urlopen(base + "/api/jobs/%d" % jid))
    if j.get("state") in ("done", "failed", "interrupted"):
        print(j.get("state")); break
    time.sleep(0.1)
EOF
eq "serve: the job with search rows finishes" "$(tail -n 1 serve_job.out)" done
curl -s "http://127.0.0.1:$SP/metrics" >metrics.txt
for api in google bing; do
  eq "/metrics: pixmill_search_requests_total for $api = its requests in the log" \
    "$(python3 -c "
import re
t = 0
for l in open('metrics.txt'):
    m = re.match(r'pixmill_search_requests_total\{provider=\"$api\",outcome=\"[a-z_]+\"\} ([0-9.e+]+)', l)
    if m: t += float(m.group(1))
print(int(t))")" "$(logq "$s7" "sum(r['api']=='$api' for r in L)")"
done
eq "/metrics: google searches found = google's non-empty answers" \
  "$(sed -n 's/^pixmill_search_searches_total{provider="google",result="found"} //p' metrics.txt)" \
  "$(logq "$s7" "sum(r['api']=='google' and r['n']>0 for r in L)")"
check "/metrics: a latency histogram per provider" grep -q 'pixmill_search_request_duration_seconds_count{provider="bing"}' metrics.txt
if command -v promtool >/dev/null; then
  check "/metrics with the search metrics passes promtool check metrics" sh -c "promtool check metrics <metrics.txt"
fi
kill "$SERVE_PID" 2>/dev/null
wait "$SERVE_PID" 2>/dev/null
SERVE_PID=

echo "providers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
