#!/usr/bin/env bash
# test_resume.sh — crash-resume: kill -9 a run at several points, run the
# same command again until it finishes, and compare with an uninterrupted
# run: every item done exactly once, no duplicate rows, no stray temporary
# files, and an output tree byte-identical to the reference.
#
# Usage: tests/cli/test_resume.sh PIXMILL_BINARY
# Ends with "resume: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_resume.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
. "$ROOT/tests/cli/lib.sh"

# Images: the corpus photos when present, else the bundled examples.
if [ -d "$CORPUS/photos" ]; then IMGS=("$CORPUS"/photos/*); else IMGS=("$ROOT"/examples/images/*); fi
# 3 copies of each image under distinct ids and distinct file names: half
# the rows are byte-duplicates, which exercises dedup across crashes too.
mkdir -p "$T/img"
echo "id,image,title" >"$T/cat.csv"
n=0
for rep in 1 2 3; do
  for f in "${IMGS[@]}"; do
    n=$((n + 1))
    b=$(basename "$f")
    if [ "$rep" = 1 ]; then cp "$f" "$T/img/$b"; fi
    echo "p$n,img/$b,\"item $n, copy $rep\"" >>"$T/cat.csv"
  done
done
echo "catalog: $n rows"

# Reference: one uninterrupted run.
"$PM" run "$T/cat.csv" --out "$T/ref" --quiet -j 2
eq "reference run exits 0" $? 0

# Victim: killed at several points, then resumed until done.
kills=0
for delay in 0.05 0.3 0.8 1.5 0.15 2.5; do
  "$PM" run "$T/cat.csv" --out "$T/vic" --quiet -j 2 &
  pid=$!
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null
done
echo "killed $kills runs"
"$PM" run "$T/cat.csv" --out "$T/vic" --json -j 2 >"$T/final.json" 2>/dev/null
eq "resumed run exits 0" $? 0
check_db() {
  python3 - "$T/vic/pixmill.db" "$n" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); n = int(sys.argv[2])
items = c.execute("select count(*), count(distinct key), sum(state='done') from items").fetchone()
jobs = c.execute("select count(*) from jobs").fetchone()[0]
dup_assets = c.execute("select count(*) from (select sha256, pipeline_hash from assets group by 1, 2 having count(*) > 1)").fetchone()[0]
dup_outputs = c.execute("select count(*) from (select asset_id, name from outputs group by 1, 2 having count(*) > 1)").fetchone()[0]
print(items[0] == n, items[1] == n, items[2] == n, jobs == 1, dup_assets == 0, dup_outputs == 0)
EOF
}
eq "db: n rows, n distinct keys, all done, 1 job, no duplicate assets/outputs" "$(check_db)" "True True True True True True"
eq "no temporary files left" "$(find "$T/vic" -type f -name '*.tmp*' | wc -l)" 0
# No item is reported done by two runs' manifests.
eq "no key in two manifests" "$(cat "$T"/vic/manifests/*.jsonl | python3 -c "
import json,sys,collections
c=collections.Counter(json.loads(l)['key'] for l in sys.stdin if l.strip())
print(sum(1 for v in c.values() if v>1))")" 0
# Byte-identical outputs: the same files with the same bytes.
( cd "$T/ref" && find . -type f -name '*.webp' | sort ) >"$T/ref.list"
( cd "$T/vic" && find . -type f -name '*.webp' | sort ) >"$T/vic.list"
eq "same output files as the uninterrupted run" "$(diff "$T/ref.list" "$T/vic.list" >/dev/null && echo same)" same
eq "some outputs exist" "$(test -s "$T/ref.list" && echo yes)" yes
same=1
while read -r f; do cmp -s "$T/ref/$f" "$T/vic/$f" || { same=0; echo "differs: $f"; }; done <"$T/ref.list"
eq "outputs byte-identical" "$same" 1
# A further run does no image work.
"$PM" run "$T/cat.csv" --out "$T/vic" --json -j 2 >"$T/again.json" 2>/dev/null
eq "run after completion does no work" "$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['done'], d['already_done'])" "$T/again.json")" "0 $n"

echo "resume: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
