#!/usr/bin/env bash
# pg.sh — the PostgreSQL store tests: starts a real PostgreSQL server from
# Debian's packages (tests/store/pg_lib.sh: temp dir, 127.0.0.1, free
# port), then
#   1. the store conformance suite (BUILD/tests/test_store with
#      PIXMILL_TEST_PG: every conformance case on SQLite and PostgreSQL,
#      plus the PostgreSQL-only cases);
#   2. a CLI round trip: the example catalog plus two failing rows through
#      `run`, then `status`, `search text`, `dlq list`, `dlq retry`, a
#      resumed re-run and `serve` (health, text search, the gallery
#      /api/images), each against postgres:// and against an SQLite file,
#      comparing what they report;
# and stops the server and removes its directory.
# Usage: tests/store/pg.sh BUILD_DIR (e.g. build or build-asan);
# PG_UNIT_ONLY=1 runs part 1 only (the ASan tier: ~15 s).
# shellcheck shell=bash
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
PM=$PWD/$B/pixmill
. tests/cli/lib.sh
. tests/store/pg_lib.sh
SRV_PID=
trap 'pg_suite_cleanup "$SRV_PID"' EXIT

pg_start_or_exit

# ---- 1. conformance suite ----
pg_unit "conformance suite" "$B/tests/test_store"

if [ -n "${PG_UNIT_ONLY:-}" ]; then
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit
fi

# ---- 2. CLI round trip, PostgreSQL beside SQLite ----
cp -r examples "$T/ex"
printf 'not an image at all\n' >"$T/ex/images/corrupt.jpg"
{ cat examples/catalog.csv
  echo 'sku-bad1,images/missing.jpg,Missing picture,1.00,misc,Nobody,red'
  echo 'sku-bad2,images/corrupt.jpg,Broken picture,1.00,misc,Nobody,red'
} >"$T/ex/catalog.csv"
pg_createdb rt
# trust authentication accepts any password: this one must never appear
PGDB="postgresql://pixmill:pw-Secret-42@${PG_URL#postgresql://pixmill@}/rt"
SQDB=$T/sq.db

# run_both TAG ARGS...: runs pixmill ARGS --db D for each store D;
# output in $T/TAG.pg, $T/TAG.sq, exit codes in $T/TAG.pg.rc, ...
run_both() {
  local tag=$1; shift
  "$PM" "$@" --db "$PGDB" >"$T/$tag.pg" 2>&1; echo $? >"$T/$tag.pg.rc"
  "$PM" "$@" --db "$SQDB" >"$T/$tag.sq" 2>&1; echo $? >"$T/$tag.sq.rc"
}
same_rc() { eq "$1: same exit status" "$(cat "$T/$1.pg.rc")" "$(cat "$T/$1.sq.rc")"; }

"$PM" run "$T/ex/catalog.csv" --db "$PGDB" --out "$T/out-pg" >"$T/run.pg" 2>&1
echo $? >"$T/run.pg.rc"
"$PM" run "$T/ex/catalog.csv" --db "$SQDB" --out "$T/out-sq" >"$T/run.sq" 2>&1
echo $? >"$T/run.sq.rc"
same_rc run
eq "run exits 1 (items failed)" "$(cat "$T/run.pg.rc")" 1
grep -q 'database postgresql://pixmill:\*\*\*@' "$T/run.pg" && ok "run names the database, password masked" ||
  bad "run summary: $(grep database "$T/run.pg")"
eq "same outputs written" "$(cd "$T/out-pg" && find . -name '*.webp' | sort | md5sum)" \
  "$(cd "$T/out-sq" && find . -name '*.webp' | sort | md5sum)"

# status: the job's counts
counts() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]
print(j["state"], j["runs"], j["items"], j["done"], j["failed"], j["duplicates"],
      ",".join(f["code"] + ":" + str(f["count"]) for f in j["failures"]))' "$1"; }
run_both status status --json
same_rc status
eq "status: same job counts" "$(counts "$T/status.pg")" "$(counts "$T/status.sq")"
eq "status: counts" "$(counts "$T/status.pg")" "done 1 8 6 2 1 not_found:1,unsupported:1"

# search text: the same hits in the same order, with snippets
hits() { python3 -c 'import json,sys
for h in json.load(open(sys.argv[1]))["results"]: print(h["key"], h["snippet"])' "$1"; }
for q in fruit "basket gift" poster picture; do
  run_both search search text "$q" --json
  same_rc search
  eq "search text '$q': same hits and snippets" "$(hits "$T/search.pg")" "$(hits "$T/search.sq")"
done
eq "search text fruit: two hits" "$(hits "$T/search.pg" >/dev/null; run_both search search text fruit --json; hits "$T/search.pg" | wc -l)" 2
run_both search search text fruit --category posters --json
eq "search --category filters" "$(hits "$T/search.pg" | wc -l)" 0

# dlq: the failed rows, then retry them
dlq_keys() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); d=d.get("items", d) if isinstance(d, dict) else d
print(" ".join(sorted(i["key"] + "=" + i["code"] for i in d)))' "$1"; }
run_both dlq dlq list --json
same_rc dlq
eq "dlq list: same failed items" "$(dlq_keys "$T/dlq.pg")" "$(dlq_keys "$T/dlq.sq")"
eq "dlq list: the two bad rows" "$(dlq_keys "$T/dlq.pg" | wc -w)" 2
run_both retry dlq retry
same_rc retry
run_both dlq2 dlq list --json
eq "dlq retry empties the dead-letter queue" "$(dlq_keys "$T/dlq2.pg")" ""

# a re-run does only the retried rows (resume), on both stores
"$PM" run "$T/ex/catalog.csv" --db "$PGDB" --out "$T/out-pg" >"$T/rerun.pg" 2>&1
"$PM" run "$T/ex/catalog.csv" --db "$SQDB" --out "$T/out-sq" >"$T/rerun.sq" 2>&1
line() { grep -o '[0-9]* items read.*' "$1"; }
eq "re-run: same summary" "$(line "$T/rerun.pg")" "$(line "$T/rerun.sq")"
grep -q '6 already processed earlier' "$T/rerun.pg" && ok "re-run resumes: 6 done items skipped" ||
  bad "re-run: $(line "$T/rerun.pg")"
run_both status2 status --json
eq "status after re-run: run 2, same counts" "$(counts "$T/status2.pg")" "$(counts "$T/status2.sq")"

# serve_on DB TAG: serve on store DB in the background (SRV_PID), its URL
# in SURL once /health/ready answers 200; log in $T/serve-TAG.log
serve_on() {
  rm -f "$T/port"
  "$PM" serve --listen 127.0.0.1:0 --port-file "$T/port" --db "$1" --data "$T/srv-$2" >"$T/serve-$2.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 300); do [ -s "$T/port" ] && break; sleep 0.1; done
  SURL="http://127.0.0.1:$(head -n 1 "$T/port" 2>/dev/null)"
  for _ in $(seq 300); do
    [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$SURL/health/ready")" = 200 ] && break; sleep 0.1
  done
}
serve_stop() { kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null; SRV_PID=; }
# the gallery views compared between the stores (GET /api/images); the
# two runs made their assets in different orders (parallel workers), so a
# view is compared as a set (the order is the unit tests' business);
# limit=2 only by its count and cursor
GALLERY=("" "q=fruit" "q=basket+gift" "q=picture" "format=png" "format=jpeg" "has_text=true" "limit=2")
gallery() { # TAG: each view's images, one line each, in $T/gallery.TAG
  local g
  for g in "${GALLERY[@]}"; do
    curl -s -m 10 "$SURL/api/images?$g" | python3 -c 'import json,sys
d=json.load(sys.stdin); im=d["images"]
print("%s|%s|%d|%s" % (sys.argv[1], d["next_cursor"], len(im), " ; ".join(sorted(
"%s:%s:%s:%s:%s" % (i["sha256"][:12], i["format"], i["items"], i["has_text"],
(i["title"] or "").replace("\n", " ")) for i in im))))' "$g" 2>&1
  done >"$T/gallery.$1"
}

# serve on the PostgreSQL store: health, text search and the gallery
serve_on "$PGDB" pg
curl -s -m 10 "$SURL/health/ready" >"$T/health.json"
grep -q '"store":{"status":"ok"' "$T/health.json" && ok "serve: store ok on PostgreSQL" ||
  bad "serve health: $(head -c 300 "$T/health.json")"
curl -s -m 10 "$SURL/api/search/text?q=fruit" >"$T/http-search.json"
eq "serve: /api/search/text finds what the CLI finds" "$(hits "$T/http-search.json")" "$(hits "$T/search.pg" 2>/dev/null; run_both search search text fruit --json; hits "$T/search.pg")"
gallery pg
serve_stop
serve_on "$SQDB" sq
gallery sq
serve_stop
eq "serve: the gallery (/api/images) lists the same images on both stores" "$(grep -v '^limit=' "$T/gallery.pg")" "$(grep -v '^limit=' "$T/gallery.sq")"
for st in pg sq; do
  eq "serve: every gallery view answered on $st" "$(grep -cE '^[^|]*\|[^|]*\|[0-9]+\|' "$T/gallery.$st")" "${#GALLERY[@]}"
done
n_images() { grep "^$1|" "$T/gallery.pg" | cut -d'|' -f3; }
eq "serve: gallery of the example catalog: 5 images" "$(n_images '')" 5
eq "serve: gallery search 'fruit': 1 image" "$(n_images q=fruit)" 1
eq "serve: gallery search 'basket gift': 1 image" "$(n_images q=basket+gift)" 1
for st in pg sq; do
  eq "serve: gallery limit=2 on $st: a page of 2, next cursor 2" "$(grep '^limit=2|' "$T/gallery.$st" | cut -d'|' -f2,3)" "2|2"
done

eq "no sanitizer report in any output" "$(cat "$T"/*.pg "$T"/*.sq "$T"/serve-*.log | grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:')" 0
eq "the password appears in no output" "$(cat "$T"/*.pg "$T"/*.json "$T"/serve-*.log | grep -c 'pw-Secret-42')" 0

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
