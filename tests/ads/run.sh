#!/usr/bin/env bash
# run.sh — end-to-end test of the ads pipeline (cutout fast + compose):
# `pixmill run products.csv --pipeline ads` over a small products CSV with
# local images (examples/images and the corpus photos); every product must
# get one ad per shipped template at the template's size; two rows with the
# same image but different text must get different ads, two identical rows
# one; then every ad is OCR'd with the tesseract CLI (English) and must show
# the product's title and its formatted price (case and white space
# normalised, a small edit distance allowed); then the edge corpus goes
# through the ads pipeline (each file done or failed with a reason, never a
# crash), and a bad template fails the run's start with a clear message.
#
# usage: tests/ads/run.sh PIXMILL   (e.g. build/pixmill, build-asan/pixmill)
# Env: PIXMILL_CORPUS (default ../shared/corpus), ADS_EDGE_ONLY=1 (the
# edge corpus and error checks only, for the ASan build).
# Prints "ok"/"FAIL" lines and ends with "N passed, N failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PIXMILL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
export PIXMILL_TEMPLATES=$ROOT/templates
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

if [ -z "${ADS_EDGE_ONLY:-}" ]; then
  IM=$ROOT/examples/images
  PH=$CORPUS/photos
  # a studio shot (a product on white): the fast cut-out takes it, and
  # the ads use the cut-out
  vips black "$T/b.v" 800 600 --bands 3 && vips linear "$T/b.v" "$T/w.v" 1 255 --uchar &&
    vips draw_circle "$T/w.v" "30 90 200" 400 300 180 --fill &&
    vips draw_rect "$T/w.v" "220 120 20" 330 80 140 60 --fill &&
    vips copy "$T/w.v" "$T/studio.jpg" || bad "could not make the studio shot"
  # id,image,title,price,currency,brand: English titles (OCR'd), two rows
  # sharing an image with different titles (p1, p2), two identical rows
  # (p3, p3b), non-Latin titles (rendered, not OCR'd: eng only).
  cat >"$T/products.csv" <<EOF
id,image,title,price,currency,brand
p1,$IM/opencv_fruits.jpg,Fresh fruit basket,12.99,USD,FreshCo
p2,$IM/opencv_fruits.jpg,Organic citrus selection,8.50,EUR,FreshCo
p3,$IM/tuxpaint_jellyfish.jpg,Jellyfish wall poster,24.00,GBP,SeaArt
p3b,$IM/tuxpaint_jellyfish.jpg,Jellyfish wall poster,24.00,GBP,SeaArt
p4,$IM/palapeli_castle-maintenon.jpg,Castle jigsaw puzzle,1234.5,EUR,Palapeli
p5,$PH/mate_Dune.jpg,Desert dune canvas print,1980,JPY,Mate
p6,$PH/lxqt_Butterfly-Kenneth-Wimer.jpg,Бабочка постер на холсте,990,CHF,Лето
p7,$IM/tuxpaint_wool_mill_machine.jpg,羊毛纺织机模型 ウール,45,EUR,
p8,$T/studio.jpg,Blue ceramic bowl,15,EUR,Acme
EOF
  if "$PIXMILL" run "$T/products.csv" --pipeline ads -o "$T/out" --workers 2 --quiet >"$T/run.log" 2>&1; then
    ok "pixmill run --pipeline ads exited 0"
  else
    bad "pixmill run --pipeline ads: exit $?"; cat "$T/run.log"
  fi
  # One ad per template, of the template's size, for every product; the
  # dedup facts; the list of (file, title, price) for OCR.
  python3 - "$T/out" "$ROOT" >"$T/check.txt" <<'PY'
import glob, json, os, subprocess, sys
out, root = sys.argv[1], sys.argv[2]
sizes = {}
for f in glob.glob(os.path.join(root, "templates", "*.json")):
    t = json.load(open(f))
    sizes["ad-%dx%d.jpg" % (t["canvas"]["width"], t["canvas"]["height"])] = t
lines = [json.loads(l) for m in glob.glob(os.path.join(out, "manifests", "*.jsonl")) for l in open(m)]
by_id = {d.get("id"): d for d in lines}
res = []
def say(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
for pid in ["p1", "p2", "p3", "p3b", "p4", "p5", "p6", "p7", "p8"]:
    d = by_id.get(pid)
    if not d or d.get("status", "done") not in ("done", "ok") and d.get("error"):
        say(False, "%s: not done: %s" % (pid, d and d.get("error")))
        continue
    outs = {o["name"]: o for o in d.get("outputs", [])}
    if d.get("duplicate"):
        # the writer records the owner's outputs only for the owner; a
        # duplicate shares its asset (same sha256)
        say(d.get("sha256") == by_id["p3"].get("sha256"), "%s: duplicate of p3 (same image, same text)" % pid)
        continue
    for name, t in sizes.items():
        o = outs.get(name)
        if not o:
            say(False, "%s: no %s (has %s)" % (pid, name, sorted(outs)))
            continue
        path = os.path.join(out, o["path"])
        w = int(subprocess.check_output(["vipsheader", "-f", "width", path]))
        h = int(subprocess.check_output(["vipsheader", "-f", "height", path]))
        good = (w, h) == (t["canvas"]["width"], t["canvas"]["height"])
        say(good, "%s: %s is %dx%d" % (pid, name, w, h))
        ads = d.get("ads", {}).get("templates", {}).get(t["name"], {})
        price = ads.get("price", {}).get("text", "")
        res.append((pid, path, t["name"], price))
say(by_id.get("p8", {}).get("ads", {}).get("product") == "cutout",
    "studio shot: the ads use the cut-out (%s)" % by_id.get("p8", {}).get("ads", {}).get("product"))
say(by_id.get("p1", {}).get("ads", {}).get("product") == "image",
    "busy photo: the cut-out is skipped, the ads use the image")
say(by_id["p1"].get("sha256") != by_id["p2"].get("sha256"),
    "same image, different titles: different assets")
say(by_id["p3b"].get("duplicate") is True or by_id["p3"].get("duplicate") is True,
    "same image, same text: one asset, the other row a duplicate")
with open(os.path.join(out, "ocr.tsv"), "w") as f:
    for r in res:
        f.write("\t".join(r) + "\n")
PY
  cat "$T/check.txt"
  pass=$((pass + $(grep -c '^ok' "$T/check.txt"))); fail=$((fail + $(grep -c '^FAIL' "$T/check.txt")))

  # OCR every English ad: the title and the price must be in it.
  if command -v tesseract >/dev/null; then
    python3 - "$T/out/ocr.tsv" "$T/products.csv" >"$T/ocr.txt" <<'PY'
import csv, subprocess, sys, unicodedata
def norm(s):
    s = unicodedata.normalize("NFKC", s).lower()
    return " ".join(s.split())
def squash(s):  # price: no spaces at all (NBSP, narrow NBSP, OCR gaps)
    return "".join(norm(s).split())
def dist(a, b):  # Levenshtein
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
def find(needle, hay, k):  # best substring edit distance <= k
    n = len(needle)
    best = min((dist(needle, hay[i:i + m]) for m in (n - 1, n, n + 1)
                for i in range(0, max(1, len(hay) - m + 1))), default=n)
    return best <= k, best
rows = {r["id"]: r for r in csv.DictReader(open(sys.argv[2]))}
for line in open(sys.argv[1]):
    pid, path, tpl, price = line.rstrip("\n").split("\t")
    title = rows[pid]["title"]
    if not title.isascii():
        continue  # eng traineddata only
    # sparse text (psm 11); global Otsu, local Sauvola (a busy photo
    # beside the text shifts a global threshold), and inverted (light
    # text on a dark background)
    inv = path + ".neg.png"
    subprocess.run(["vips", "invert", path, inv], check=True)
    txt = ""
    for src, extra in ((path, []), (path, ["-c", "thresholding_method=2"]), (inv, [])):
        txt += "\n" + subprocess.run(["tesseract", src, "-", "--psm", "11"] + extra,
                                      capture_output=True, text=True).stdout
    t_ok, t_d = find(norm(title), norm(txt), max(2, len(title) // 10))
    p_ok, p_d = find(squash(price), squash(txt), 1)
    print(("ok   " if t_ok else "FAIL ") + "OCR %s %s: title %r (distance %d)" % (pid, tpl, title, t_d))
    print(("ok   " if p_ok else "FAIL ") + "OCR %s %s: price %r (distance %d)" % (pid, tpl, price, p_d))
    if not (t_ok and p_ok):
        print("     OCR text: %r" % norm(txt)[:400])
PY
    cat "$T/ocr.txt"
    pass=$((pass + $(grep -c '^ok' "$T/ocr.txt"))); fail=$((fail + $(grep -c '^FAIL' "$T/ocr.txt")))
  else
    echo "SKIP OCR of the ads: no tesseract CLI (apt-get install tesseract-ocr tesseract-ocr-eng)"
  fi
fi

# The edge corpus through the ads pipeline: every file done or failed with
# a reason; pixmill exits 0 or 1 (some items failed), never a signal.
mkdir -p "$T/edge"
cp "$CORPUS"/edge/* "$T/edge/"
"$PIXMILL" run "$T/edge" --pipeline ads -o "$T/edge-out" --workers 2 --quiet --json >"$T/edge.json" 2>"$T/edge.log"
rc=$?
if [ "$rc" -lt 2 ]; then ok "edge corpus through ads: exit $rc"; else bad "edge corpus through ads: exit $rc"; tail -n 20 "$T/edge.log"; fi
n=$(ls "$T/edge" | wc -l)
got=$(cat "$T"/edge-out/manifests/*.jsonl 2>/dev/null | wc -l)
if [ "$got" -eq "$n" ]; then ok "edge corpus: $got of $n files recorded"; else bad "edge corpus: $got of $n files recorded"; fi
if cat "$T"/edge-out/manifests/*.jsonl | python3 -c '
import json, sys
bad = [d for d in map(json.loads, sys.stdin) if d.get("error") is not None and not d["error"]]
sys.exit(1 if bad else 0)'; then ok "edge corpus: every failure has a reason"; else bad "edge corpus: a failure without a reason"; fi

# A hostile template fails the run's start with a clear message (exit 3).
printf '{"canvas":{"width":999999,"height":10}}' >"$T/huge.json"
printf '{"name":"t","stages":[{"stage":"compose","templates":["%s"]}]}' "$T/huge.json" >"$T/pipe.json"
echo "id,image,title" >"$T/one.csv"
echo "x,$ROOT/examples/images/opencv_fruits.jpg,T" >>"$T/one.csv"
"$PIXMILL" run "$T/one.csv" --pipeline "$T/pipe.json" -o "$T/bad-out" --quiet >"$T/bad.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "canvas.width" "$T/bad.log"; then ok "hostile template refused (exit $rc): $(head -c 160 "$T/bad.log")"; else bad "hostile template: exit $rc: $(cat "$T/bad.log")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
