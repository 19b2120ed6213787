#!/usr/bin/env bash
# test_search.sh — end-to-end tests of `pixmill search image`, `pixmill
# search text` and `pixmill dupes`, and of the embed stage on the edge
# corpus.
#
#   search image  the corpus photos are processed (hashes pipeline: pHash,
#                 colours, sharpness, embedding); edited copies made with
#                 the vips CLI (mirror, 90% crop, JPEG q=40, 50% resize)
#                 must each find their original as the top embedding hit
#   dupes         a seeded folder (3 byte-identical copies, a photo with a
#                 half-size and a blurred copy, unrelated photos) gives
#                 exactly one exact group and one near group, keeping the
#                 original
#   search text   titles, categories and OCR text (written into an asset's
#                 metadata, as the ocr stage does), filters and snippets
#   catalog       the catalog pipeline over a folder without a vision
#                 endpoint: its stages' results, and a note (not a
#                 failure) that the analyze stage is skipped
#
# Usage: tests/cli/test_search.sh PIXMILL_BINARY
# SEARCH_EDITS=N searches only the first N edited copies (for slow builds).
# Ends with "search: N passed, N failed". Needs ../shared/corpus (or
# $PIXMILL_CORPUS) and the vips CLI; skips what it cannot run.
set -uo pipefail
PM=$(realpath "${1:?usage: test_search.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
. "$ROOT/tests/cli/lib.sh"
py() { python3 -c "$@"; }

"$PM" search --help >"$T/help.txt"; eq "search --help exits 0" $? 0
for o in db job category has-text limit json model; do
  check "search --help shows --$o" grep -q -- "--$o" "$T/help.txt"
done
"$PM" dupes --help >"$T/help2.txt"; eq "dupes --help exits 0" $? 0
check "dupes --help shows --threshold" grep -q -- "--threshold" "$T/help2.txt"
"$PM" search 2>/dev/null; eq "search without arguments exits 2" $? 2
"$PM" search frob x 2>/dev/null; eq "search frob exits 2" $? 2
"$PM" search image x -k 0 2>/dev/null; eq "search -k 0 exits 2" $? 2
"$PM" dupes --threshold 65 2>/dev/null; eq "dupes --threshold 65 exits 2" $? 2
"$PM" search text "x" --db "$T/none.db" 2>/dev/null; eq "search on a missing store exits 3 (not found)" $? 3

PHOTOS="$CORPUS/photos"
if [ ! -d "$PHOTOS" ] || ! command -v vips >/dev/null; then
  echo "skip photo tests: $PHOTOS or the vips CLI not found"
  echo "search: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]; exit
fi

# ---- search image: edited copies find their original ----
O="$T/photos"
"$PM" run "$PHOTOS" --pipeline hashes --out "$O" --quiet
eq "photos processed" $? 0
DB="$O/pixmill.db"
eq "one built-in vector per photo" \
  "$(py "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"select count(*) from embeddings where model='builtin-v1' and dim=176 and length(vec)=704\").fetchone()[0])" "$DB")" \
  "$(ls "$PHOTOS" | wc -l)"
E="$T/edits"; mkdir -p "$E"
for f in "$PHOTOS"/*; do
  b=$(basename "${f%.*}")
  w=$(vipsheader -f width "$f" 2>/dev/null); h=$(vipsheader -f height "$f" 2>/dev/null)
  vips flip "$f" "$E/$b=flip.jpg" horizontal 2>/dev/null
  vips crop "$f" "$E/$b=crop.jpg" $((w / 20)) $((h / 20)) $((w * 9 / 10)) $((h * 9 / 10)) 2>/dev/null
  vips copy "$f" "$E/$b=q40.jpg[Q=40]" 2>/dev/null
  vips resize "$f" "$E/$b=half.jpg" 0.5 2>/dev/null
done
eq "4 edits per photo made" "$(ls "$E" | wc -l)" $(($(ls "$PHOTOS" | wc -l) * 4))
found=0 missed=0 phash_found=0
for e in "$E"/*; do
  [ -n "${SEARCH_EDITS:-}" ] && [ "$((found + missed))" -ge "$SEARCH_EDITS" ] && break
  b=$(basename "$e"); orig=${b%=*}
  top=$("$PM" search image "$e" --db "$DB" -k 3 --json 2>"$T/search.err" | py "
import json,sys,os
j=json.load(sys.stdin)
e=j['embedding']; p=j['phash']
name=lambda h: os.path.splitext(os.path.basename(h['image']))[0]
print(name(e[0]), name(p[0]) if p else '-', '%.3f' % e[0]['score'])")
  set -- $top
  if [ "${1:-}" = "$orig" ]; then found=$((found + 1)); else missed=$((missed + 1)); echo "  $b: top hit ${1:-none}"; fi
  [ "${2:-}" = "$orig" ] && phash_found=$((phash_found + 1))
done
eq "search image: every edited copy finds its original first (by embedding)" "$missed" 0
echo "     ($found edits found; pHash alone ranks the original first for $phash_found)"
# the same photo as an item reference: left out of its own results
first=$(ls "$PHOTOS" | head -1)
"$PM" search image "$first" --db "$DB" --json >"$T/byitem.json" 2>"$T/byitem.err"
eq "search image ITEM (key) exits 0" $? 0
eq "an item is not its own hit" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
print(sum(h['key']==sys.argv[2] for h in j['embedding']+j['phash']))" "$T/byitem.json" "$first")" 0
eq "an item query has its stored vector" "$(py "import json,sys; print(json.load(open(sys.argv[1]))['query']['model'])" "$T/byitem.json")" builtin-v1
"$PM" search image no-such-item --db "$DB" 2>/dev/null; eq "unknown item exits 3" $? 3
"$PM" search image "$PHOTOS/$first" --db "$DB" -k 2 >"$T/table.txt"
check "table output has both lists" grep -q "by perceptual hash" "$T/table.txt"
eq "a stored file scores 1.0 against itself" "$("$PM" search image "$PHOTOS/$first" --db "$DB" -k 1 --json | py "import json,sys; print(round(json.load(sys.stdin)['embedding'][0]['score'],2))")" 1.0

# ---- dupes on a seeded set ----
D="$T/dupes"; mkdir -p "$D"
P1="$PHOTOS/mate_Dune.jpg" P2="$PHOTOS/opencv_fruits.jpg"
cp "$P1" "$D/a.jpg"; cp "$P1" "$D/a-copy1.jpg"; cp "$P1" "$D/a-copy2.jpg"
cp "$P2" "$D/b.jpg"
vips resize "$P2" "$D/b-half.jpg" 0.5 2>/dev/null
vips gaussblur "$P2" "$D/b-blur.jpg" 1.5 2>/dev/null
for u in tuxpaint_rocks.jpg skimage_coffee.png lomiri16_Bridge_by_Sander_Klootwijk.jpg palapeli_european-honey-bee.jpg; do
  cp "$PHOTOS/$u" "$D/u-$u"
done
"$PM" run "$D" --out "$T/dout" --pipeline hashes --quiet
"$PM" dupes --db "$T/dout/pixmill.db" --json >"$T/dupes.json"
eq "dupes exits 0" $? 0
eq "dupes: one exact group of the 3 identical files" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
print([sorted(i['key'] for i in g['items']) for g in j['exact']])" "$T/dupes.json")" "[['a-copy1.jpg', 'a-copy2.jpg', 'a.jpg']]"
eq "dupes: one near group: the photo, its half-size and blurred copies" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
print([sorted(m['items'][0]['key'] for m in g['members']) for g in j['near']])" "$T/dupes.json")" "[['b-blur.jpg', 'b-half.jpg', 'b.jpg']]"
eq "dupes: keeps the original (most pixels, then sharpest)" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
g=j['near'][0]; k=[m for m in g['members'] if m['keep']]
print(len(k), k[0]['items'][0]['key'], k[0]['sha256']==g['keep'])" "$T/dupes.json")" "1 b.jpg True"
eq "dupes: the blurred copy is less sharp" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
m={x['items'][0]['key']:x for x in j['near'][0]['members']}
print(m['b-blur.jpg']['sharpness'] < m['b.jpg']['sharpness'])" "$T/dupes.json")" True
eq "dupes --threshold 0: only identical hashes grouped" "$("$PM" dupes --db "$T/dout/pixmill.db" --threshold 0 --json | py "
import json,sys; j=json.load(sys.stdin)
print(sum(m['distance'] for g in j['near'] for m in g['members']))")" 0
eq "dupes --threshold 64: every distinct image in one group" "$("$PM" dupes --db "$T/dout/pixmill.db" --threshold 64 --json | py "
import json,sys; j=json.load(sys.stdin)
print(len(j['near']), len(j['near'][0]['members']) == j['sources'], j['sources'])")" "1 True 8"
"$PM" dupes --db "$T/dout/pixmill.db" >"$T/dupes.txt"
check "dupes table names the kept file" grep -q "keep .*b.jpg" "$T/dupes.txt"
eq "dupes --job 99: nothing" "$("$PM" dupes --db "$T/dout/pixmill.db" --job 99 --json | py "import json,sys; j=json.load(sys.stdin); print(len(j['exact'])+len(j['near']), j['items'])")" "0 0"
"$PM" search image "b.jpg" --db "$T/dout/pixmill.db" -k 2 --json >"$T/bnear.json"
eq "search image by key: b's copies are its two nearest" "$(py "
import json,sys; j=json.load(open(sys.argv[1]))
print(sorted(h['key'] for h in j['embedding']))" "$T/bnear.json")" "['b-blur.jpg', 'b-half.jpg']"

# ---- search text: titles, categories, OCR text ----
C="$T/cat.csv"
{
  echo "id,image,title,price,category"
  echo "p1,$PHOTOS/mate_Dune.jpg,Red teapot,10,kitchen"
  echo "p2,$PHOTOS/opencv_fruits.jpg,Blue teapot,12,kitchen"
  echo "p3,$PHOTOS/tuxpaint_rocks.jpg,Garden chair,30,garden"
  echo "p4,$PHOTOS/skimage_coffee.png,Recipe card,1,cards"
} >"$C"
"$PM" run "$C" --out "$T/tout" --pipeline hashes --quiet
TDB="$T/tout/pixmill.db"
# what the ocr stage stores: meta.ocr.text of the item's asset
py "
import sqlite3,sys; c=sqlite3.connect(sys.argv[1])
c.execute(\"update assets set meta_json=json_set(coalesce(meta_json,'{}'),'\$.ocr.text','Preheat the oven. A pot of tea, or a teapot.') where id=(select asset_id from items where record_id='p4')\")
c.commit()" "$TDB"
st() { "$PM" search text "$@" --db "$TDB" --json | py "import json,sys; print(' '.join(h['id'] for h in json.load(sys.stdin)['results']))"; }
eq "search text: teapot in titles and in OCR text" "$(st teapot | tr ' ' '\n' | sort | tr '\n' ' ')" "p1 p2 p4 "
eq "search text: titles rank above image text" "$(st teapot | awk '{print $3}')" p4
eq "search text --category kitchen" "$(st teapot --category kitchen | tr ' ' '\n' | sort | tr '\n' ' ')" "p1 p2 "
eq "search text --has-text" "$(st teapot --has-text)" p4
eq "search text: OCR-only words" "$(st "preheat oven")" p4
eq "search text --job 99: no hits" "$(st teapot --job 99)" ""
eq "search text --limit 1" "$(st teapot --limit 1 | wc -w)" 1
eq "search text: snippet marks the match" "$("$PM" search text preheat --db "$TDB" --json | py "import json,sys; print(json.load(sys.stdin)['results'][0]['snippet'])")" "[Preheat] the oven. A pot of tea, or a teapot."
"$PM" search text "preheat" --db "$TDB" >"$T/text.txt"
check "search text table shows the snippet" grep -q "\[Preheat\]" "$T/text.txt"
"$PM" search text '"*' --db "$TDB" 2>/dev/null; eq "search text without words exits 2" $? 2

# ---- an ONNX model through the embed stage (tests/ml/make_tiny_model.py) ----
M="$T/model"; mkdir -p "$M"
if { python3 "$ROOT/tests/ml/make_tiny_model.py" "$M" || /usr/bin/python3 "$ROOT/tests/ml/make_tiny_model.py" "$M"; } >/dev/null 2>&1; then
  printf '{"model": "tiny.onnx", "input": "pixels", "output": "embedding", "size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}' >"$M/desc.json"
  printf '{"name": "tiny", "stages": [{"stage": "embed", "model": "%s"}, {"stage": "phash"}]}' "$M/desc.json" >"$M/pipe.json"
  mkdir -p "$M/img"; for f in mate_Dune.jpg opencv_fruits.jpg tuxpaint_rocks.jpg; do cp "$PHOTOS/$f" "$M/img/"; done
  "$PM" run "$M/img" --pipeline "$M/pipe.json" --out "$M/out" --quiet
  eq "model pipeline: 3 images done" $? 0
  eq "model vectors: 3 of 16 floats under the model's id" "$(py "
import sqlite3,sys; c=sqlite3.connect(sys.argv[1])
print(c.execute(\"select count(*), min(dim), max(length(model)) from embeddings where model <> 'builtin-v1'\").fetchone())" "$M/out/pixmill.db")" "(3, 16, 16)"
  eq "model pipeline: the model file's id is part of the pipeline (and its hash)" "$(py "
import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1])
p=json.loads(c.execute('select pipeline_json from jobs').fetchone()[0])
m=c.execute(\"select distinct model from embeddings\").fetchall()
print([s.get('model_id') for s in p['stages'] if s['stage']=='embed'] == [m[0][0]], len(m))" "$M/out/pixmill.db")" "True 1"
  "$PM" search image "$PHOTOS/opencv_fruits.jpg" --model "$M/desc.json" --db "$M/out/pixmill.db" -k 1 --json >"$T/model.json"
  eq "search image --model: the stored copy scores 1.0, model id kept" "$(py "
import json,sys; j=json.load(open(sys.argv[1])); h=j['embedding'][0]
print(h['key'], round(h['score'], 3), j['query']['dim'], len(j['query']['model']))" "$T/model.json")" "opencv_fruits.jpg 1.0 16 16"
  "$PM" search image opencv_fruits.jpg --db "$M/out/pixmill.db" --json >"$T/model2.json"
  eq "search image ITEM without --model: no built-in vectors there, pHash only" "$(py "
import json,sys; j=json.load(open(sys.argv[1])); print(len(j['embedding']), len(j['phash']))" "$T/model2.json")" "0 2"
else
  echo "skip ONNX model tests: python3-onnx not found"
fi

# ---- the catalog pipeline without a vision endpoint ----
# (with one: tests/dashboard/run.sh, against the vision stand-in)
K="$T/catalog"; mkdir -p "$K/in"
cp "$PHOTOS/opencv_fruits.jpg" "$PHOTOS/tuxpaint_jellyfish.jpg" "$K/in/"
env -u PIXMILL_VISION_URL -u PIXMILL_VISION_MODEL \
  "$PM" run "$K/in" --pipeline catalog --out "$K/out" --progress none >"$K/out.txt" 2>"$K/err.txt"
eq "catalog pipeline without a vision endpoint: exit 0" $? 0
check "catalog: a note says the analyze stage is skipped" grep -q "analyze stage is skipped" "$K/err.txt"
eq "catalog: thumbnails 256 and 1024, OCR, pHash, colours, sharpness, embedding; no caption" "$(py "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print(len(rows), all(sorted(o['name'] for o in r['outputs']) == ['1024.webp', '256.webp'] and 'ocr' in r and r.get('phash') and r.get('colors') and r.get('sharpness') is not None and 'caption' not in r for r in rows))" "$K/out/manifests/job1-run1.jsonl")" "2 True"
eq "catalog: the stored pipeline has no analyze stage" "$(py "
import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1])
print([s['stage'] for s in json.loads(c.execute('select pipeline_json from jobs').fetchone()[0])['stages']])" "$K/out/pixmill.db")" \
  "['thumbnail', 'phash', 'colors', 'quality', 'ocr', 'embed']"
env -u PIXMILL_VISION_URL -u PIXMILL_VISION_MODEL \
  "$PM" run "$K/in" --pipeline catalog --out "$K/out" --json >"$K/run2.json" 2>"$K/err2.txt"
eq "catalog: a second run does nothing; --json stays clean JSON on stdout" \
  "$(py "import json,sys; print(json.load(open(sys.argv[1]))['done'])" "$K/run2.json")" 0

# ---- the edge corpus through the embed stage ----
if [ -d "$CORPUS/edge" ]; then
  X="$T/edge"
  timeout 300 "$PM" run "$CORPUS/edge" --all-files --pipeline hashes --out "$X" --quiet
  rc=$?
  check "edge corpus with embed: exit 0 or 1, not a crash (rc $rc)" test "$rc" -le 1
  eq "edge: every done image has a vector" "$(py "
import sqlite3,sys; c=sqlite3.connect(sys.argv[1])
print(c.execute(\"select count(*) from assets a where not exists (select 1 from embeddings e where e.sha256=a.sha256)\").fetchone()[0])" "$X/pixmill.db")" 0
  for f in "$CORPUS"/edge/*; do
    timeout 60 "$PM" search image "$f" --db "$X/pixmill.db" >/dev/null 2>&1; rc=$?
    if [ "$rc" -gt 5 ]; then bad "search image $(basename "$f") crashed or hung (rc $rc)"; fi
  done
  ok "edge: search image never crashes or hangs"
else
  echo "skip edge corpus tests: $CORPUS/edge not found"
fi

echo "search: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
