#!/usr/bin/env bash
# test_ranking.sh — the ads pipeline's choice of image per product: rows
# with several image candidates (image_urls) served by the local test
# origin (tests/fetch/origin.c), fetched in rank order and judged by the
# verify stage after decoding; the first that passes is kept and the later
# ones are never requested (asserted from the origin's request counts).
# Covers: a low-quality image rejected on its score; a 404; an image whose
# text names another brand rejected by the OCR check, and one whose text
# names the product kept; a row with no acceptable image composed with a
# placeholder saying why; cache_hits and dlq_retries; the vision model's
# verdict (tests/vision/server.py) rejecting an image of the wrong colour;
# the ads stats in the run summary (--json), `status --json`, the manifest
# and /metrics of `pixmill serve` agreeing; a second
# run into the same output folder refused while the first runs.
#
# usage: tests/ads/test_ranking.sh PIXMILL   (e.g. build/pixmill)
# The origin is the one built beside the binary (BUILD/tests/origin).
# Ends with "ranking: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_ranking.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
export PIXMILL_TEMPLATES=$ROOT/templates
ORIGIN=${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

# ---- images: studio shots, a small blurred photo, text on a product ----
I=$T/img
mkdir -p "$I"
studio() { # studio OUT "R G B" SHAPE: a shape on white, 800x600
  vips black "$T/b.v" 800 600 --bands 3 && vips linear "$T/b.v" "$T/w.v" 1 255 --uchar &&
    case $3 in
      circle) vips draw_circle "$T/w.v" "$2" 400 230 170 --fill ;;
      rect) vips draw_rect "$T/w.v" "$2" 250 80 300 330 --fill ;;
    esac && vips copy "$T/w.v" "$1"
}
texton() { # texton IN OUT TEXT: TEXT in black under the product
  vips text "$T/t.v" "$3" --font "DejaVu Sans Bold 64" &&
    vips embed "$T/t.v" "$T/te.v" 60 450 800 600 &&
    vips black "$T/k.v" 800 600 --bands 3 &&
    vips ifthenelse "$T/te.v" "$T/k.v" "$1" "$2" --blend
}
{ studio "$I/studio.jpg" "30 90 200" circle &&
  studio "$I/studio2.jpg" "200 40 40" rect &&
  studio "$I/extra.jpg" "20 160 60" circle &&
  studio "$T/base1.v" "120 60 20" rect && texton "$T/base1.v" "$I/wrong.jpg" "GLOBEX KETTLE" &&
  studio "$T/base2.v" "90 90 90" circle && texton "$T/base2.v" "$I/acme.jpg" "ACME BOTTLE" &&
  vips thumbnail "$ROOT/examples/images/opencv_fruits.jpg" "$T/small.v" 80 &&
  vips gaussblur "$T/small.v" "$I/low.jpg" 6 &&
  vips black "$T/r.v" 600 600 --bands 3 && vips linear "$T/r.v" "$I/red.jpg" 1 "200 30 30" --uchar &&
  vips linear "$T/r.v" "$I/blue.jpg" 1 "30 60 200" --uchar; } >"$T/img.log" 2>&1 ||
  { bad "could not make the test images: $(tail -n 3 "$T/img.log")"; }

"$ORIGIN" --root "$I" --die-with-parent --port-file "$T/origin.port" 0 >/dev/null 2>"$T/origin.err" &
pids+=($!)
PORT=
for _ in $(seq 50); do PORT=$(head -n 1 "$T/origin.port" 2>/dev/null); [ -n "$PORT" ] && break; sleep 0.1; done
[ -n "$PORT" ] || { echo "origin did not start: $(cat "$T/origin.err")"; echo "ranking: 0 passed, 1 failed"; exit 1; }
B="http://127.0.0.1:$PORT"
hits() { # hits PATH?QUERY: requests the origin received for it
  python3 -c "import sys,urllib.parse,urllib.request; print(urllib.request.urlopen(sys.argv[1]+'/count?path='+urllib.parse.quote(sys.argv[2],safe='')).read().decode().strip())" "$B" "$1"; }
man() { # man OUT EXPR: EXPR over r for every manifest line, printed
  python3 - "$1" "$2" <<'PY'
import glob, json, sys
rows = {}
for m in sorted(glob.glob(sys.argv[1] + "/manifests/*.jsonl")):
    for l in open(m):
        d = json.loads(l)
        rows[d.get("id")] = d
r = rows
print(eval(sys.argv[2]))
PY
}

# ---- 1. ranking, early termination, OCR check, placeholder ----
cat >"$T/p.csv" <<EOF
id,title,price,currency,brand,image_urls
r1,Blue ceramic bowl,15,EUR,Acme,$B/file/low.jpg 1600w | $B/file/studio.jpg 1200w | $B/file/extra.jpg 400w
r2,Red ceramic vase,25,EUR,Acme,$B/file/missing.jpg 1600w | $B/file/wrong.jpg 1200w | $B/file/studio2.jpg 1000w | $B/file/extra.jpg?tag=r2 400w
r3,Green tea kettle,9.5,EUR,Zeta,$B/file/gone.jpg 1600w | $B/file/low.jpg?tag=r3 800w
r4,Acme water bottle,7,EUR,Acme,$B/file/acme.jpg
EOF
printf '%s' '{"name":"ads-ocr","stages":[{"stage":"ocr"},{"stage":"verify"},{"stage":"cutout","engine":"fast"},{"stage":"compose"}]}' >"$T/ads-ocr.json"
"$PM" run "$T/p.csv" --pipeline "$T/ads-ocr.json" --allow-private -o "$T/out" --workers 2 --quiet --json >"$T/run.json" 2>"$T/run.err"
eq "ads run with candidates: exit 0 (a placeholder is not a failure)" $? 0

eq "r1: low-quality image requested once" "$(hits /file/low.jpg)" 1
eq "r1: the studio shot requested once" "$(hits /file/studio.jpg)" 1
eq "r1: the candidate after the kept one never requested" "$(hits /file/extra.jpg)" 0
eq "r1: rejected on its score, studio shot chosen, the last untried" \
  "$(man "$T/out" "[(c['result'], 'quality score' in c.get('reason',''), 'score' in c.get('verify',{})) for c in r['r1']['candidates']]")" \
  "[('rejected', True, True), ('chosen', False, False), ('untried', False, False)]"
eq "r1: the item's image is the kept one, its score parts recorded" \
  "$(man "$T/out" "(r['r1']['image'].endswith('/studio.jpg'), sorted(r['r1']['verify']['parts']), r['r1']['verify']['passed'])")" \
  "(True, ['aspect', 'plainness', 'resolution', 'sharpness', 'text'], True)"
check "r1: the rejected one scored under the kept one" \
  test "$(man "$T/out" "int(r['r1']['candidates'][0]['verify']['score'] < r['r1']['verify']['score'])")" = 1

eq "r2: 404, then wrong brand, then chosen; the 4th never requested" \
  "$(man "$T/out" "[c['result'] for c in r['r2']['candidates']]")" "['rejected', 'rejected', 'chosen', 'untried']"
eq "r2: requests: wrong-brand 1, kept 1, the one after 0" \
  "$(hits /file/wrong.jpg) $(hits /file/studio2.jpg) $(hits '/file/extra.jpg?tag=r2')" "1 1 0"
eq "r2: the wrong-brand image rejected by the OCR check, naming what it read" \
  "$(man "$T/out" "(r['r2']['candidates'][1]['verify']['ocr']['verdict'], 'globex' in r['r2']['candidates'][1]['reason'])")" \
  "('contradiction', True)"
eq "r2: the 404 says not found" "$(man "$T/out" "'404' in r['r2']['candidates'][0]['reason'] or 'not found' in r['r2']['candidates'][0]['reason'].lower()")" True

eq "r3: no acceptable image: done with a placeholder" \
  "$(man "$T/out" "(r['r3']['state'], r['r3']['ads']['product'], r['r3']['placeholder']['code'])")" "('done', 'placeholder', 'rejected')"
eq "r3: the placeholder says which candidates failed and why" \
  "$(man "$T/out" "('none of the 2' in r['r3']['placeholder']['reason'], [c['result'] for c in r['r3']['candidates']], 'quality score' in r['r3']['candidates'][1]['reason'])")" \
  "(True, ['rejected', 'rejected'], True)"
python3 - "$T/out" "$ROOT/templates" >"$T/ph.txt" <<'PY'
import glob, json, os, subprocess, sys
out, tdir = sys.argv[1], sys.argv[2]
rows = {json.loads(l)["id"]: json.loads(l) for m in glob.glob(out + "/manifests/*.jsonl") for l in open(m)}
outs = {o["name"]: o for o in rows["r3"].get("outputs", [])}
for f in sorted(glob.glob(tdir + "/*.json")):
    t = json.load(open(f))
    name = "ad-%dx%d.jpg" % (t["canvas"]["width"], t["canvas"]["height"])
    o = outs.get(name)
    if not o:
        print("FAIL placeholder ad %s missing" % name); continue
    p = os.path.join(out, o["path"])
    w = int(subprocess.check_output(["vipsheader", "-f", "width", p]))
    h = int(subprocess.check_output(["vipsheader", "-f", "height", p]))
    ok = (w, h) == (t["canvas"]["width"], t["canvas"]["height"])
    print(("ok   " if ok else "FAIL ") + "placeholder ad %s is %dx%d" % (name, w, h))
PY
cat "$T/ph.txt"
pass=$((pass + $(grep -c '^ok' "$T/ph.txt"))); fail=$((fail + $(grep -c '^FAIL' "$T/ph.txt")))

eq "r4: text naming the product is a match, the image kept" \
  "$(man "$T/out" "(r['r4']['verify']['ocr']['verdict'], r['r4'].get('ads',{}).get('product') != 'placeholder')")" "('match', True)"

# ---- 2. stats: run summary, manifest and status agree ----
st() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['stats'])" "$1"; }
want=$(man "$T/out" "{'total': 4, 'success': 4, 'failed': 0, 'placeholder': sum(1 for d in r.values() if d.get('placeholder')), 'bg_removed': sum(1 for d in r.values() if d.get('cutout', {}).get('skipped') is False), 'bg_skipped': sum(1 for d in r.values() if d.get('cutout', {}).get('skipped') is True), 'cache_hits': 0, 'dlq_retries': 0}")
eq "run --json stats match the manifest" "$(st "$T/run.json")" "$want"
eq "stats: 1 placeholder, the other 3 cut out or kept" \
  "$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print(s['placeholder'], s['bg_removed'] + s['bg_skipped'])" "$T/run.json")" "1 3"
check "stats: the studio shots' backgrounds removed (>= 2)" \
  test "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['stats']['bg_removed'])" "$T/run.json")" -ge 2
"$PM" status --db "$T/out/pixmill.db" --json >"$T/status.json"
eq "status --json has the same stats" \
  "$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['jobs'][0]['stats']; print({k: s[k] for k in ('total','success','failed','placeholder','bg_removed','bg_skipped')})" "$T/status.json")" \
  "$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print({k: s[k] for k in ('total','success','failed','placeholder','bg_removed','bg_skipped')})" "$T/run.json")"
check "status text shows the ads line" grep -q "ads: placeholder 1" <("$PM" status --db "$T/out/pixmill.db")

# ---- 2b. cache_hits (a URL on two rows, downloaded once) and
# dlq_retries (a failed item tried again by the next run) ----
cat >"$T/c.csv" <<EOF
id,title,price,image
c1,Blue bowl,5,$B/file/studio.jpg?tag=shared
c2,Blue bowl large,9,$B/file/studio.jpg?tag=shared
d1,Broken thing,3,$B/status/503
EOF
"$PM" run "$T/c.csv" --pipeline ads --allow-private --max-attempts 1 -o "$T/cout" --quiet --json >"$T/c1.json" 2>/dev/null
eq "a shared URL downloaded once" "$(hits '/file/studio.jpg?tag=shared')" 1
eq "first run: cache_hits 1 (the second row took the first's download), 1 failed, no retries" \
  "$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print(s['cache_hits'], s['failed'], s['dlq_retries'])" "$T/c1.json")" "1 1 0"
"$PM" run "$T/c.csv" --pipeline ads --allow-private --max-attempts 1 -o "$T/cout" --quiet --json >"$T/c2.json" 2>/dev/null
eq "second run: the failed item tried again (dlq_retries 1), the done ones skipped" \
  "$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); s=d['stats']; print(s['total'], s['dlq_retries'], d['already_done'])" "$T/c2.json")" "1 1 2"

# ---- 2c. /metrics of `pixmill serve` after an ads job ----
"$PM" serve --listen 127.0.0.1:0 --port-file "$T/serve.port" --data "$T/sdata" --allow-private --workers 1 >"$T/serve.log" 2>&1 &
pids+=($!)
SP=
for _ in $(seq 100); do SP=$(head -n 1 "$T/serve.port" 2>/dev/null); [ -n "$SP" ] && break; sleep 0.1; done
S="http://127.0.0.1:$SP"
printf 'id,title,price,image\nm1,Blue bowl,5,%s\nm2,Lost lamp,7,%s\n' "$B/file/studio.jpg?tag=m" "$B/file/nowhere.jpg" >"$T/m.csv"
job=$(curl -s -H 'Content-Type: text/csv' --data-binary @"$T/m.csv" "$S/api/jobs?pipeline=ads" |
  python3 -c "import json,sys; print(json.load(sys.stdin).get('id', ''))")
for _ in $(seq 600); do
  state=$(curl -s "$S/api/jobs/$job" | python3 -c "import json,sys; print(json.load(sys.stdin).get('state', ''))" 2>/dev/null)
  case $state in done | failed | interrupted) break ;; esac
  sleep 0.2
done
eq "serve: the ads job finished" "$state" done
msample() { curl -s "$S/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
eq "/metrics: 1 placeholder, 1 bg_removed (the studio shot)" \
  "$(msample 'pixmill_ads_items_total{result="placeholder"}') $(msample 'pixmill_ads_items_total{result="bg_removed"}')" "1 1"

# ---- 3. the vision model's verdict ----
python3 "$ROOT/tests/vision/server.py" --port-file "$T/vport" --log "$T/vision.log" >/dev/null 2>"$T/vision.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$T/vport" ] && break; sleep 0.1; done
VB="http://127.0.0.1:$(cat "$T/vport" 2>/dev/null)"
printf '{"name":"ads-vision","stages":[{"stage":"analyze","base_url":"%s/v1","model":"test-vision"},{"stage":"verify"},{"stage":"cutout","engine":"fast"},{"stage":"compose"}]}' "$VB" >"$T/ads-vision.json"
cat >"$T/v.csv" <<EOF
id,title,price,brand,image_urls
v1,Red lamp,30,Acme,$B/file/blue.jpg 1600w | $B/file/red.jpg 1200w
EOF
"$PM" run "$T/v.csv" --pipeline "$T/ads-vision.json" --allow-private -o "$T/vout" 2>"$T/vrun.err"
eq "vision: run exit 0" $? 0
eq "vision: blue image rejected by the model's verdict, red chosen" \
  "$(man "$T/vout" "([c['result'] for c in r['v1']['candidates']], r['v1']['candidates'][0]['verify']['vision']['match'], r['v1']['verify']['vision']['match'])")" \
  "(['rejected', 'chosen'], False, True)"
eq "vision: two requests to the model, one per candidate" "$(grep -c '"status": 200' "$T/vision.log")" 2
check "the run summary has the ads stats line" grep -q "pixmill: ads: total 1, success 1, failed 0, placeholder 0, bg_removed" "$T/vrun.err"

# ---- 4. one run per output folder ----
cat >"$T/slow.csv" <<EOF
id,title,price,image
s1,Slow thing,1,$B/file/studio.jpg?delay=8000&tag=slow
EOF
"$PM" run "$T/slow.csv" --pipeline ads --allow-private -o "$T/lock" --quiet 2>/dev/null &
first=$!
for _ in $(seq 50); do [ -e "$T/lock/.pixmill.lock" ] && break; sleep 0.1; done
sleep 0.3
"$PM" run "$T/p.csv" --pipeline ads --allow-private -o "$T/lock" --quiet 2>"$T/lock.err"
eq "a second run into the same folder exits 4" $? 4
check "it says another run holds the folder" grep -q "another pixmill run is using" "$T/lock.err"
wait "$first"
eq "the first run finishes normally" $? 0

echo "ranking: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
