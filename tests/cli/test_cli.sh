#!/usr/bin/env bash
# test_cli.sh — end-to-end tests of the pixmill binary: run, resume, status,
# inspect, help, bad input (malformed catalogs and the edge corpus).
#
# Usage: tests/cli/test_cli.sh PIXMILL_BINARY
# Prints one line per check and ends with "cli: N passed, N failed".
# Tests that need ../shared/corpus run only when it is present (CI has it).
set -uo pipefail
PM=$(realpath "${1:?usage: test_cli.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
. "$ROOT/tests/cli/lib.sh"
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# count manifest lines matching a python predicate on record r
mcount() { python3 -c "
import json,sys,glob
n=0
for f in glob.glob(sys.argv[1]+'/manifests/*.jsonl'):
    for l in open(f):
        r=json.loads(l)
        if $2: n+=1
print(n)" "$1"; }

# ---- help and usage ----
"$PM" --help >"$T/help.txt"; eq "top-level --help exits 0" $? 0
check "help lists run" grep -q "^  run " "$T/help.txt"
"$PM" run --help >"$T/runhelp.txt"; eq "run --help exits 0" $? 0
for o in out db pipeline workers memory-limit sizes formats quality max-pixels json quiet; do
  check "run --help shows --$o" grep -q -- "--$o" "$T/runhelp.txt"
done
"$PM" run --no-such-option x 2>"$T/err.txt"; eq "unknown option exits 2" $? 2
check "unknown option is named" grep -q "no-such-option" "$T/err.txt"
"$PM" run 2>/dev/null; eq "run without catalog exits 2" $? 2
"$PM" frobnicate 2>/dev/null; eq "unknown command exits 2" $? 2
"$PM" run --workers 0 x 2>/dev/null; eq "--workers 0 refused" $? 2
for bad_opt in "--timeout 0" "--timeout soon" "--per-host-rps -1" "--breaker-open 0" "--connect-timeout 1e9"; do
  # shellcheck disable=SC2086
  "$PM" run $bad_opt x 2>/dev/null; eq "$bad_opt refused" $? 2
done
# ---- exit watchdog: a library exit handler that never returns must not
# keep the process alive (a destructor that blocks forever, preloaded) ----
if printf '#include <unistd.h>\n__attribute__((destructor)) static void hang(void) { for (;;) pause(); }\n' >"$T/hang.c" &&
  cc -shared -fPIC -o "$T/hang.so" "$T/hang.c" 2>/dev/null; then
  timeout 60 env ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0 PIXMILL_EXIT_GRACE=1 \
    LD_PRELOAD="$T/hang.so" "$PM" status --db "$T/no-such.db" >"$T/wd.out" 2>"$T/wd.err"
  eq "a hung exit handler: the command's own exit code (3), not a hang" $? 3
  check "a hung exit handler: stderr says the shutdown was left" grep -q "did not finish in time" "$T/wd.err"
  timeout 60 env ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0 PIXMILL_EXIT_GRACE=1 \
    LD_PRELOAD="$T/hang.so" "$PM" version >"$T/wd.out" 2>/dev/null
  eq "a hung exit handler: exit 0 and stdout flushed" "$?:$(head -c 8 "$T/wd.out")" "0:pixmill "
else
  bad "could not build the hanging-destructor library with cc"
fi
"$PM" help --markdown >"$T/opts.md"; check "markdown reference has a table" grep -q "\`--out\` | DIR" "$T/opts.md"
check "docs/OPTIONS.md is up to date (pixmill help --markdown > docs/OPTIONS.md)" cmp -s "$T/opts.md" "$ROOT/docs/OPTIONS.md"

# ---- the bundled example ----
E="$T/ex"
"$PM" run "$ROOT/examples/catalog.csv" --out "$E" --json >"$T/run1.json" 2>"$T/run1.err"
eq "example run exits 0" $? 0
eq "example: 6 done" "$(jq_ "$T/run1.json" "d['done']")" 6
eq "example: 1 duplicate" "$(jq_ "$T/run1.json" "d['duplicates']")" 1
eq "example: 0 failed" "$(jq_ "$T/run1.json" "d['failed']")" 0
eq "example: 15 output files (5 images x 3 sizes)" "$(find "$E" -name '*.webp' | wc -l)" 15
eq "example: no temporary files left" "$(find "$E" -type f -name '*.tmp*' | wc -l)" 0
eq "example: manifest has 6 lines" "$(cat "$E"/manifests/*.jsonl | wc -l)" 6
eq "example: embedded newline kept in title via store" \
  "$(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"select count(*) from items where title like 'Castle puzzle%(1000 pieces)'\").fetchone()[0])" "$E/pixmill.db")" 1
eq "example: extra columns kept as attributes" \
  "$(python3 -c "import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1]); print(json.loads(c.execute(\"select attrs from items where record_id='sku-1002'\").fetchone()[0])['brand'])" "$E/pixmill.db")" SeaArt
eq "example: every output has long edge <= its size" "$(python3 -c "
import json,glob,sys
bad=0
for l in open(glob.glob(sys.argv[1]+'/manifests/*.jsonl')[0]):
    r=json.loads(l)
    for o in r.get('outputs',[]):
        s=int(o['name'].split('.')[0])
        if max(o['width'],o['height'])>s: bad+=1
print(bad)" "$E")" 0
w=$(vipsheader -f width "$(find "$E" -name 512.webp | head -1)" 2>/dev/null)
check "example: 512.webp decodes (width $w)" test -n "$w"
"$PM" status --db "$E/pixmill.db" >"$T/status.txt"; eq "status exits 0" $? 0
check "status shows done count" grep -q "done 6" "$T/status.txt"
"$PM" status --db "$E/pixmill.db" --json >"$T/status.json"
eq "status --json job items" "$(jq_ "$T/status.json" "d['jobs'][0]['items']")" 6

# ---- re-run: no image work ----
before=$(find "$E" -name '*.webp' -newer "$E/pixmill.db" | wc -l)
"$PM" run "$ROOT/examples/catalog.csv" --out "$E" --json >"$T/run2.json" 2>"$T/run2.err"
eq "re-run exits 0" $? 0
eq "re-run: 0 done this run" "$(jq_ "$T/run2.json" "d['done']")" 0
eq "re-run: 6 already done" "$(jq_ "$T/run2.json" "d['already_done']")" 6
"$PM" run "$ROOT/examples/catalog.csv" --out "$E" 2>"$T/run3.err"
check "re-run says there is nothing to do" grep -q "nothing to do" "$T/run3.err"
eq "status: still 6 items after re-runs" "$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from items').fetchone()[0])" "$E/pixmill.db")" 6

# ---- a second run into the same folder is locked out ----
( flock -x 9; sleep 2 ) 9>"$E/.pixmill.lock" &
sleep 0.3
"$PM" run "$ROOT/examples/catalog.csv" --out "$E" --quiet 2>"$T/lock.err"; eq "locked output folder exits 4" $? 4
wait

# ---- malformed catalog rows fail alone ----
M="$T/m"; mkdir -p "$M"
cp "$ROOT/examples/images/opencv_fruits.jpg" "$M/a.jpg"
printf 'not an image at all' >"$M/fake.jpg"
head -c 3000 "$ROOT/examples/images/tuxpaint_jellyfish.jpg" >"$M/trunc.jpg"
cat >"$M/cat.csv" <<'EOF'
id,image,title
1,a.jpg,good one
2,missing.jpg,file is missing
3,fake.jpg,not an image
4,,empty image
6,trunc.jpg,truncated
7,gopher://example.invalid/x.jpg,unsupported scheme
5,"a.jpg,unterminated quote swallows the rest
EOF
"$PM" run "$M/cat.csv" --out "$M/out" --json >"$T/m.json" 2>"$T/m.err"
eq "bad rows: exit 1 (some failed)" $? 1
eq "bad rows: the good row is done" "$(mcount "$M/out" "r['state']=='done'")" 1
eq "bad rows: every other row failed with a code" "$(mcount "$M/out" "r['state']=='failed' and r.get('code') and r.get('error')")" 6
eq "bad rows: missing file -> not_found" "$(mcount "$M/out" "r.get('id')=='2' and r.get('code')=='not_found'")" 1
eq "bad rows: text file -> unsupported" "$(mcount "$M/out" "r.get('id')=='3' and r.get('code')=='unsupported'")" 1
eq "bad rows: truncated jpeg -> decode_error" "$(mcount "$M/out" "r.get('id')=='6' and r.get('code')=='decode_error'")" 1
eq "bad rows: gopher URL -> unsupported" "$(mcount "$M/out" "r.get('id')=='7' and r.get('code')=='unsupported'")" 1
eq "bad rows: bad catalog rows -> bad_catalog_row" "$(mcount "$M/out" "r.get('code')=='bad_catalog_row'")" 2
"$PM" run "$M/cat.csv" --out "$M/out" --json >"$T/m2.json" 2>/dev/null
eq "bad rows: a re-run records nothing again (all 7 already processed)" "$(jq_ "$T/m2.json" "(d['done'], d['failed'], d['already_done'])")" "(0, 0, 7)"
"$PM" status --db "$M/out/pixmill.db" >"$T/mstatus.txt"
check "status lists failure reasons" grep -q "decode_error" "$T/mstatus.txt"

# ---- JSONL and list catalogs, custom pipeline file ----
J="$T/j"; mkdir -p "$J"
printf '{"id": 1, "image": "%s", "title": "one", "price": 3.5, "tags": ["a"]}\n{"id": 2, "image": 7}\n' \
  "$ROOT/examples/images/opencv_board.jpg" >"$J/cat.jsonl" 2>/dev/null
cp "$ROOT/examples/images/opencv_fruits.jpg" "$J/f.jpg"
printf '{"id": 1, "image": "f.jpg", "title": "one", "price": 3.5, "tags": ["a"]}\n{"id": 2, "image": 7}\n' >"$J/cat.jsonl"
cat >"$J/pipe.json" <<'EOF'
{"name": "small", "stages": [{"stage": "thumbnail", "sizes": [64, 32], "formats": ["jpeg", "png"]}]}
EOF
"$PM" run "$J/cat.jsonl" --out "$J/out" -p "$J/pipe.json" --quiet; eq "jsonl: exit 1 (one bad line)" $? 1
eq "jsonl + pipeline file: 4 outputs (2 sizes x 2 formats)" "$(find "$J/out" -name '*.jpg' -o -name '*.png' | grep -v manifests | wc -l)" 4
o64=$(find "$J/out" -name 64.jpg | head -1)
eq "pipeline file: 64.jpg is 64 px wide" "$(vipsheader -f width "$o64")" 64
"$PM" run "$J/cat.jsonl" --out "$J/out2" -p "$J/nope.json" --quiet 2>/dev/null; eq "missing pipeline file exits 3" $? 3
printf '{"stages": [{"stage": "frobnicate"}]}' >"$J/badpipe.json"
"$PM" run "$J/cat.jsonl" --out "$J/out2" -p "$J/badpipe.json" --quiet 2>"$T/bp.err"; eq "unknown stage exits 3" $? 3
check "unknown stage is named" grep -q frobnicate "$T/bp.err"
printf '%s\n# comment\n\n%s\n' "$J/f.jpg" "file://$J/f.jpg" >"$J/list.txt"
"$PM" run "$J/list.txt" --out "$J/out3" --sizes 100 --formats webp,avif --json >"$T/l.json" 2>/dev/null
eq "list: exit 0" $? 0
eq "list: 2 done (1 duplicate)" "$(jq_ "$T/l.json" "(d['done'],d['duplicates'])")" "(2, 1)"
eq "list: avif output written" "$(find "$J/out3" -name 100.avif | wc -l)" 1

# ---- memory limit and signals ----
"$PM" run "$ROOT/examples/catalog.csv" --out "$T/mem" --memory-limit 64M --json >"$T/mem.json" 2>/dev/null
eq "--memory-limit 64M: run completes" "$(jq_ "$T/mem.json" "d['done']")" 6
"$PM" run "$ROOT/examples/catalog.csv" --out "$T/mem2" --memory-limit 1K 2>/dev/null; eq "--memory-limit below 16M refused" $? 2
# SIGTERM: finish what is in flight, mark the job interrupted, exit 130;
# the same command then completes the job.
S="$T/sig"; mkdir -p "$S"
for i in $(seq 1 40); do echo "$ROOT/examples/images/tuxpaint_jellyfish.jpg"; done >"$S/list.txt"
"$PM" run "$S/list.txt" --out "$S/out" --no-dedup -j 1 --quiet &
pid=$!
# once the first item is committed (the handlers are in place by then,
# however slowly a loaded machine starts the process)
for _ in $(seq 200); do [ -s "$S/out/manifests/job1-run1.jsonl" ] && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid"; rc=$?
if [ "$rc" = 130 ]; then
  ok "SIGTERM: exit 130"
  eq "SIGTERM: job state interrupted" "$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select state from jobs').fetchone()[0])" "$S/out/pixmill.db")" interrupted
elif [ "$rc" = 0 ]; then
  echo "skip SIGTERM checks: the run finished before the signal"
else
  bad "SIGTERM: exit $rc, want 130"
fi
"$PM" run "$S/list.txt" --out "$S/out" --no-dedup -j 1 --json >"$T/sig.json" 2>/dev/null
eq "after SIGTERM: re-run finishes the job" "$(jq_ "$T/sig.json" "d['job_done']")" 40

# ---- http(s) sources: a local origin (tests/fetch/origin.c) on loopback ----
H="$T/http"; mkdir -p "$H"
ORIGIN_ROOT="$ROOT/examples/images" "${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}" --die-with-parent 0 >"$H/port" 2>"$H/origin.err" &
opid=$!
for _ in $(seq 50); do PORT=$(head -n 1 "$H/port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
if [ -n "${PORT:-}" ]; then
  B="http://127.0.0.1:$PORT"
  cat >"$H/cat.csv" <<EOF
id,image,title
1,$B/file/opencv_fruits.jpg,fruits
2,$B/file/tuxpaint_jellyfish.jpg,jellyfish
3,$B/status/503?times=2,recovers but is text
4,$B/html,an error page sent as 200
5,$B/file/nope.jpg,missing
6,$B/file/opencv_fruits.jpg,same URL again
7,http://localhost:$PORT/status/500,always fails (another host name: its own circuit breaker)
8,ftp://127.0.0.1/x.jpg,wrong scheme
9,http://user:pw@127.0.0.1:$PORT/file/opencv_fruits.jpg,userinfo
EOF
  hc() { mcount "$1" "r['key']=='r$2' and r['state']=='$3' and r.get('code')$4"; }
  "$PM" run "$H/cat.csv" --out "$H/guarded" --quiet 2>/dev/null; eq "http: exit 1 when the SSRF guard refuses" $? 1
  eq "http: loopback refused by default" "$(mcount "$H/guarded" "r.get('code')=='unsupported' and 'loopback' in r.get('error','')")" 7
  "$PM" run "$H/cat.csv" --out "$H/out" --allow-private --max-attempts 3 --quiet 2>/dev/null
  eq "http: exit 1 (some failed)" $? 1
  eq "http: image downloaded and done" "$(hc "$H/out" 1 done "==None")" 1
  eq "http: second image done" "$(hc "$H/out" 2 done "==None")" 1
  # r1 and r6 share a URL (one download) and so their bytes: one of them
  # does the image work, the other is its duplicate (which one depends on
  # which worker claims the bytes first)
  eq "http: same URL again: one of the two rows is a duplicate" "$(mcount "$H/out" "r['key'] in ('r1', 'r6') and r['state'] == 'done' and r.get('duplicate')")" 1
  eq "http: 503 retried, then its text body refused" "$(hc "$H/out" 3 failed "=='type_mismatch'")" 1
  eq "http: text/html 200 is a type mismatch" "$(hc "$H/out" 4 failed "=='type_mismatch'")" 1
  eq "http: 404 -> not_found" "$(hc "$H/out" 5 failed "=='not_found'")" 1
  eq "http: 500 fails after 3 attempts with its history" "$(mcount "$H/out" "r['key']=='r7' and r.get('code')=='io_error' and '3: HTTP 500' in r.get('error','')")" 1
  eq "http: ftp:// refused" "$(hc "$H/out" 8 failed "=='unsupported'")" 1
  eq "http: userinfo refused" "$(hc "$H/out" 9 failed "is not None")" 1
  eq "http: the origin saw 3 requests for the 500" "$(python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+'/count'))['counts'].get('/status/500'))" "$B")" 3
  "$PM" run "$H/cat.csv" --out "$H/out" --allow-private --max-attempts 3 --json >"$H/again.json" 2>/dev/null
  eq "http: re-run retries only the network failure" "$(jq_ "$H/again.json" "(d['failed'], d['already_done'])")" "(1, 8)"
  # the dead-letter queue
  "$PM" dlq list --db "$H/out/pixmill.db" >"$H/dlq.txt"; eq "dlq list exits 0" $? 0
  eq "dlq list: 6 failed items" "$(wc -l <"$H/dlq.txt")" 6
  "$PM" dlq list --db "$H/out/pixmill.db" --reason io_error --json >"$H/dlq.json"
  eq "dlq list --reason io_error: the 500 with 3 attempts" "$(jq_ "$H/dlq.json" "[(x['key'], x['attempts']) for x in d]")" "[('r7', 3)]"
  "$PM" dlq show r5 --db "$H/out/pixmill.db" >"$H/show.txt"; eq "dlq show exits 0" $? 0
  check "dlq show prints the error" grep -q "HTTP 404" "$H/show.txt"
  "$PM" dlq show nosuch --db "$H/out/pixmill.db" >/dev/null; eq "dlq show of an unknown key exits 3" $? 3
  "$PM" dlq retry --db "$H/out/pixmill.db" --reason not_found --json >"$H/retry.json"
  eq "dlq retry --reason not_found sends 1 back" "$(jq_ "$H/retry.json" "d['sent_back']")" 1
  "$PM" run "$H/cat.csv" --out "$H/out" --allow-private --max-attempts 1 --json >"$H/after.json" 2>/dev/null
  eq "after dlq retry: the next run redoes the 404 and the network failure" "$(jq_ "$H/after.json" "d['failed']")" 2
  "$PM" dlq frob --db "$H/out/pixmill.db" 2>/dev/null; eq "dlq with an unknown action exits 2" $? 2
  # conditional re-fetch: --refresh re-checks done URLs; unchanged ones are 304s
  before=$(python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+'/count'))['counts'].get('/file/opencv_fruits.jpg'))" "$B")
  "$PM" run "$H/cat.csv" --out "$H/out" --allow-private --max-attempts 1 --refresh --json >"$H/refresh.json" 2>/dev/null
  eq "--refresh: the 3 done URL items are 304 cache hits" "$(jq_ "$H/refresh.json" "d['cache_hits']")" 3
  eq "--refresh: the manifest marks them not_modified" "$(mcount "$H/out" "r.get('not_modified') and r['state']=='done'")" 3
  after=$(python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+'/count'))['counts'].get('/file/opencv_fruits.jpg'))" "$B")
  eq "--refresh: one conditional request for the URL on two rows (the second waits on it)" "$((after - before))" 1
  printf 'id,image\nz,%s/file/tuxpaint_jellyfish.jpg\n' "$B" >"$H/other.csv"
  "$PM" run "$H/other.csv" --out "$H/out" --allow-private --json >"$H/other.json" 2>/dev/null
  eq "a known URL in another catalog is a 304 cache hit" "$(jq_ "$H/other.json" "(d['done'], d['cache_hits'])")" "(1, 1)"
else
  bad "http: the test origin did not start: $(cat "$H/origin.err")"
fi
kill "$opid" 2>/dev/null; wait "$opid" 2>/dev/null

# ---- inspect ----
"$PM" inspect --json "$ROOT/examples/images/opencv_fruits.jpg" >"$T/i.json"; eq "inspect exits 0" $? 0
eq "inspect: format jpeg" "$(jq_ "$T/i.json" "d['header']['format']")" jpeg
eq "inspect: 16-hex-digit phash" "$(jq_ "$T/i.json" "len(d['phash'])")" 16
"$PM" inspect "$M/fake.jpg" >/dev/null; eq "inspect of a text file exits 3" $? 3
"$PM" inspect --max-pixels 1000 "$J/f.jpg" --json >"$T/i2.json"; eq "inspect over pixel limit exits 3" $? 3
eq "inspect: over-limit code" "$(jq_ "$T/i2.json" "d['code']")" too_large

# ---- several image candidates per row (image_urls) ----
C="$T/cand"
mkdir -p "$C"
cp "$J/f.jpg" "$C/good.jpg"
vips thumbnail "$J/f.jpg" "$C/small.jpg" 64 >/dev/null 2>&1
echo "not an image" >"$C/bad.jpg"
cat >"$C/cat.csv" <<'EOF2'
id,title,image_urls
1,Ranked,missing.jpg 4000w | bad.jpg | small.jpg 64w | good.jpg
2,Gif last,anim.gif | good.jpg
3,None usable,missing.jpg|bad.jpg
4,No entries, |
EOF2
"$PM" run "$C/cat.csv" --out "$C/out" --min-dimension 100 --json >"$T/cand.json" 2>/dev/null
eq "candidates: exit 1 (two rows fail)" $? 1
eq "candidates: 2 done" "$(jq_ "$T/cand.json" "d['done']")" 2
eq "candidates: the first good one is chosen" "$(mcount "$C/out" "r['key']=='r1' and r['image'].endswith('/good.jpg')")" 1
eq "candidates: rejections recorded with reasons" "$(mcount "$C/out" "r['key']=='r1' and [c['result'] for c in r['candidates']]==['rejected','rejected','chosen','untried'] and all(c.get('reason') for c in r['candidates'][:2])")" 1
eq "candidates: a small one ranks after an unhinted one" "$(mcount "$C/out" "r['key']=='r1' and r['candidates'][3]['url'].endswith('small.jpg')")" 1
eq "candidates: GIF ranks after JPEG, untried" "$(mcount "$C/out" "r['key']=='r2' and r['candidates'][0]['result']=='chosen' and r['candidates'][1]=={'url':r['candidates'][1]['url'],'result':'untried'}")" 1
eq "candidates: none usable fails with the last reason" "$(mcount "$C/out" "r['key']=='r3' and r['code']=='unsupported' and 'none of the 2' in r['error']")" 1
eq "candidates: an empty list is a bad row" "$(mcount "$C/out" "r['key']=='r4' and r['code']=='bad_catalog_row'")" 1
printf '{"id":"a","image_urls":["missing.jpg","%s"]}\n' "$C/good.jpg" >"$C/cat.jsonl"
"$PM" run "$C/cat.jsonl" --out "$C/out2" --quiet >/dev/null 2>&1
eq "candidates: a JSON array works too" "$(mcount "$C/out2" "r['state']=='done' and r['candidates'][0]['result']=='rejected'")" 1
echo "$C/good.jpg" >"$C/one.txt"
"$PM" run "$C/one.txt" --out "$C/out3" --min-dimension 100000 --quiet >/dev/null 2>&1
eq "--min-dimension fails a single small image as too_small" "$(mcount "$C/out3" "r.get('code')=='too_small'")" 1

# ---- the edge corpus: each file done or failed with a reason, no crash ----
if [ -d "$CORPUS/edge" ]; then
  X="$T/edge"
  timeout 300 "$PM" run "$CORPUS/edge" --all-files --out "$X" --json >"$T/edge.json" 2>"$T/edge.err"
  rc=$?
  check "edge corpus: exit 0 or 1, not a crash or hang (rc $rc)" test "$rc" -le 1
  n=$(ls "$CORPUS/edge" | wc -l)
  eq "edge corpus: one manifest line per file" "$(cat "$X"/manifests/*.jsonl | wc -l)" "$n"
  eq "edge corpus: every failure has a code and a reason" "$(mcount "$X" "r['state']=='failed' and not (r.get('code') and r.get('error'))")" 0
  eq "edge: truncated 8 MP JPEG fails" "$(mcount "$X" "r['key']=='derived_truncated_half_baseline_8mp.jpg' and r['state']=='failed'")" 1
  eq "edge: EXIF orientation 5 becomes 50x70" "$(mcount "$X" "r['key']=='exif_orientation_5.jpg' and r['state']=='done' and (r['width'],r['height'])==(50,70)")" 1
  eq "edge: animated GIF is done (first frame)" "$(mcount "$X" "r['key']=='gif_animated_camshift_face.gif' and r['state']=='done'")" 1
  eq "edge: CMYK JPEG is done" "$(mcount "$X" "r['key']=='jpeg_cmyk.jpg' and r['state']=='done'")" 1
  "$PM" run "$CORPUS/edge" --all-files --out "$T/edge2" --max-frames 10 --json >/dev/null 2>&1
  eq "edge: --max-frames 10 refuses the 16-frame GIF" "$(mcount "$T/edge2" "r['key']=='gif_animated_camshift_face.gif' and r.get('code')=='too_large'")" 1
  for f in "$CORPUS"/edge/*; do
    timeout 60 "$PM" inspect "$f" >/dev/null 2>&1; rc=$?
    if [ "$rc" -gt 5 ]; then bad "inspect $(basename "$f") crashed or hung (rc $rc)"; fi
  done
  ok "edge: inspect never crashes or hangs"
else
  echo "skip edge corpus tests: $CORPUS/edge not found"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
