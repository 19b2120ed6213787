#!/usr/bin/env python3
"""eval.py — scores OCR and recipe extraction on the rendered test cards.

Reads the cards' truth (CARDS/cards.tsv, CARDS/<card>.txt and the
ingredient truth in tests/ocr/recipes.txt) and either a pixmill manifest
(--manifest: the "ocr" and "recipe" facts of each item) or a folder of
plain-text OCR outputs (--text-dir: <card>.txt, e.g. from the tesseract
CLI). Reports, per variant and overall:
  - character accuracy: 1 - Levenshtein(ocr, truth) / len(truth), on text
    with every run of whitespace folded to one space (clamped at 0);
  - ingredient precision/recall/F1 (manifest only): a parsed ingredient
    matches an unmatched truth one when quantity (and range end) agree
    within 0.01, the unit agrees, and the lower-cased names are at least
    80% similar (1 - edit distance / longer length).
With --min-char / --min-f1, prints "ok"/"FAIL" lines and a final
"N passed, N failed" line, and exits 1 on a failure. --json FILE writes
the numbers. Standard library only; one thread.
"""
import argparse
import csv
import json
import os
import re
import sys


def lev(a, b):
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def norm_text(s):
    return re.sub(r"\s+", " ", s or "").strip()


def char_acc(ocr, truth):
    o, t = norm_text(ocr), norm_text(truth)
    if not t:
        return 1.0 if not o else 0.0
    return max(0.0, 1.0 - lev(o, t) / len(t))


def norm_name(s):
    s = (s or "").lower()
    s = re.sub(r"[^a-z0-9 ]+", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def load_truth(path):
    truth, rid, in_truth = {}, None, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("=== "):
                rid, in_truth = line[4:].strip(), False
                truth[rid] = []
            elif line.startswith("--- truth"):
                in_truth = True
            elif in_truth and rid and line and not line.startswith("#"):
                q, qmax, unit, name = line.split("|")
                truth[rid].append({
                    "qty": float(q) if q else None,
                    "qty_max": float(qmax) if qmax else None,
                    "unit": unit or None,
                    "name": name,
                })
    return truth


def qty_eq(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) < 0.01


def ingr_match(p, t):
    if not qty_eq(p.get("qty"), t["qty"]):
        return False
    if not qty_eq(p.get("qty_max"), t["qty_max"]):
        return False
    if (p.get("unit") or None) != t["unit"]:
        return False
    a, b = norm_name(p.get("name")), norm_name(t["name"])
    if not a or not b:
        return False
    return 1 - lev(a, b) / max(len(a), len(b)) >= 0.8


def score_ingredients(pred, truth):
    used = [False] * len(truth)
    tp = 0
    for p in pred:
        for i, t in enumerate(truth):
            if not used[i] and ingr_match(p, t):
                used[i] = True
                tp += 1
                break
    return tp, len(pred), len(truth)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", required=True)
    ap.add_argument("--recipes", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "recipes.txt"))
    ap.add_argument("--manifest")
    ap.add_argument("--text-dir")
    ap.add_argument("--min-char", type=float)
    ap.add_argument("--min-char-variant", type=float)
    ap.add_argument("--min-f1", type=float)
    ap.add_argument("--json")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    truth = load_truth(a.recipes)
    with open(os.path.join(a.cards, "cards.tsv"), encoding="utf-8") as f:
        cards = list(csv.DictReader(f, delimiter="\t"))
    got = {}
    if a.manifest:
        with open(a.manifest, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                got[os.path.basename(d.get("image", ""))] = d
    res = {"cards": 0, "missing": 0, "by_variant": {}}
    tot_acc, tp, npred, ntruth = 0.0, 0, 0, 0
    per_var = {}
    for c in cards:
        name = c["file"]
        with open(os.path.join(a.cards, name + ".txt"), encoding="utf-8") as f:
            ttext = f.read()
        pred_ingr = []
        if a.text_dir:
            try:
                with open(os.path.join(a.text_dir, name + ".txt"),
                          encoding="utf-8", errors="replace") as f:
                    otext = f.read()
            except OSError:
                otext = ""
                res["missing"] += 1
        else:
            d = got.get(name)
            if not d or d.get("state") != "done":
                res["missing"] += 1
                d = {}
            otext = (d.get("ocr") or {}).get("text", "")
            pred_ingr = (d.get("recipe") or {}).get("ingredients", [])
        acc = char_acc(otext, ttext)
        v = per_var.setdefault(c["variant"], {"n": 0, "acc": 0.0, "tp": 0,
                                              "pred": 0, "truth": 0})
        v["n"] += 1
        v["acc"] += acc
        tot_acc += acc
        res["cards"] += 1
        if a.manifest:
            t, p, n = score_ingredients(pred_ingr, truth[c["recipe"]])
            v["tp"] += t
            v["pred"] += p
            v["truth"] += n
            tp, npred, ntruth = tp + t, npred + p, ntruth + n
        if a.verbose:
            print(f"{name}: char {acc:.3f}", file=sys.stderr)

    def prf(t, p, n):
        pr = t / p if p else 0.0
        rc = t / n if n else 0.0
        return pr, rc, (2 * pr * rc / (pr + rc) if pr + rc else 0.0)

    res["char_accuracy"] = tot_acc / max(1, res["cards"])
    for k, v in sorted(per_var.items()):
        e = {"cards": v["n"], "char_accuracy": v["acc"] / v["n"]}
        if a.manifest:
            e["precision"], e["recall"], e["f1"] = prf(v["tp"], v["pred"],
                                                        v["truth"])
        res["by_variant"][k] = e
    if a.manifest:
        res["precision"], res["recall"], res["f1"] = prf(tp, npred, ntruth)
        res["ingredients"] = {"truth": ntruth, "parsed": npred, "matched": tp}
    print(f"cards {res['cards']} (missing {res['missing']}), "
          f"char accuracy {res['char_accuracy']:.4f}" +
          (f", ingredients P {res['precision']:.3f} R {res['recall']:.3f} "
           f"F1 {res['f1']:.3f} ({tp}/{ntruth} matched, {npred} parsed)"
           if a.manifest else ""))
    for k, e in res["by_variant"].items():
        print(f"  {k:8s} cards {e['cards']:2d}  char {e['char_accuracy']:.4f}" +
              (f"  P {e['precision']:.3f} R {e['recall']:.3f} F1 {e['f1']:.3f}"
               if a.manifest else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)

    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print(("ok   " if ok else "FAIL ") + what)
        if ok:
            passed += 1
        else:
            failed += 1

    if a.min_char is not None or a.min_f1 is not None:
        check(res["missing"] == 0, f"every card has a result ({res['missing']} missing)")
    if a.min_char is not None:
        check(res["char_accuracy"] >= a.min_char,
              f"char accuracy {res['char_accuracy']:.4f} >= {a.min_char}")
    if a.min_char_variant is not None:
        for k, e in res["by_variant"].items():
            check(e["char_accuracy"] >= a.min_char_variant,
                  f"{k} char accuracy {e['char_accuracy']:.4f} >= "
                  f"{a.min_char_variant}")
    if a.min_f1 is not None:
        check(res.get("f1", 0) >= a.min_f1,
              f"ingredient F1 {res.get('f1', 0):.3f} >= {a.min_f1}")
    if passed + failed:
        print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
