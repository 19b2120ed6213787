#!/usr/bin/env bash
# test_queue_prune.sh — `pixmill queue prune` on an SQLite store: usage
# errors (exit 2), a missing or unreachable --db (3, 4), a --job that does
# not exist (3) or is not finished (2); then a real `run --enqueue-only` of
# the example catalog and `worker --exit-when-idle`, a dry run that deletes
# nothing, the prune itself (text and --json figures, rows and events gone,
# items kept, another job's rows kept), what `status` says of a pruned job
# (text, --json, --item), a re-enqueue of the same job afterwards; and a
# job cancelled on `serve --enqueue` (DELETE /api/jobs/ID) leaving no
# queued row.
# Usage: tests/cli/test_queue_prune.sh PIXMILL_BINARY
# shellcheck shell=bash
set -uo pipefail
cd "$(dirname "$0")/../.."
PM=${1:-build/pixmill}
. tests/cli/lib.sh
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
SRV=
cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

# ---- usage ----
"$PM" queue >/dev/null 2>"$T/e"; eq "no action: exit 2" $? 2
check "no action: says what is expected" grep -q "expected an action: prune" "$T/e"
"$PM" queue frob >/dev/null 2>"$T/e"; eq "unknown action: exit 2" $? 2
"$PM" queue prune extra >/dev/null 2>"$T/e"; eq "extra argument: exit 2" $? 2
for d in 5w -1d "" 1e400 7dd nan; do
  "$PM" queue prune --older-than "$d" >/dev/null 2>"$T/e"
  eq "--older-than '$d': exit 2" $? 2
done
check "--older-than: the message names the forms" grep -q "7d, 12h, 30m or 90s" "$T/e"
"$PM" queue prune --job abc >/dev/null 2>&1; eq "--job abc: exit 2" $? 2
"$PM" queue prune --job 0 >/dev/null 2>&1; eq "--job 0: exit 2" $? 2
"$PM" queue prune --bogus >/dev/null 2>&1; eq "unknown option: exit 2" $? 2
"$PM" queue --help >"$T/h"; eq "--help: exit 0" $? 0
check "--help lists --older-than, --dry-run, --job, --json, --db" bash -c \
  "grep -q -- --older-than '$T/h' && grep -q -- --dry-run '$T/h' && grep -q -- --job '$T/h' && grep -q -- --json '$T/h' && grep -q -- --db '$T/h'"
check "pixmill help lists queue" bash -c "'$PM' help | grep -q '^  queue'"

# ---- a bad --db ----
"$PM" queue prune --db "$T/none.db" >/dev/null 2>"$T/e"
eq "missing SQLite file: exit 3" $? 3
check "missing SQLite file: none created" test ! -e "$T/none.db"
check "missing SQLite file: says so" grep -q "none.db" "$T/e"
"$PM" queue prune --db "postgres://nobody@127.0.0.1:1/none?connect_timeout=2" >/dev/null 2>"$T/e"
eq "unreachable PostgreSQL: exit 4" $? 4
check "unreachable PostgreSQL: a store error on stderr" grep -q "pixmill queue:" "$T/e"

# ---- a real enqueue + worker on SQLite ----
"$PM" run examples/catalog.csv --out "$T/out" --enqueue-only --json >"$T/enq.json" 2>/dev/null
eq "enqueue-only exits 0" $? 0
DB=$T/out/pixmill.db
J=$(jq_ "$T/enq.json" "d['job']")
N=$(jq_ "$T/enq.json" "d['enqueued']")
"$PM" worker --db "$DB" --exit-when-idle --id wq >/dev/null 2>"$T/w.err"
eq "worker exits 0" $? 0
eq "the job is done" "$(db "$DB" "SELECT state FROM jobs WHERE id = $J")" "done"
eq "its queue rows are done" "$(db "$DB" "SELECT count(*) FROM queue WHERE job_id = $J AND state = 'done'")" "$N"
EV=$(db "$DB" "SELECT count(*) FROM queue_events WHERE job_id = $J")
check "it has events ($EV)" test "$EV" -ge "$N"
KEY=$(db "$DB" "SELECT key FROM queue WHERE job_id = $J ORDER BY ordinal LIMIT 1")
"$PM" status --db "$DB" --job "$J" --item "$KEY" >/dev/null; eq "item history before the prune" $? 0
# a second job, enqueued, not run: "queued"
{ echo image; echo "http://127.0.0.1:9/a.jpg"; echo "http://127.0.0.1:9/b.jpg"; } >"$T/two.csv"
"$PM" run "$T/two.csv" --out "$T/out" --enqueue-only --json >"$T/enq2.json" 2>/dev/null
J2=$(jq_ "$T/enq2.json" "d['job']")
eq "second job queued with 2 rows" "$(db "$DB" "SELECT state FROM jobs WHERE id = $J2") $(db "$DB" "SELECT count(*) FROM queue WHERE job_id = $J2")" "queued 2"

# ---- hostile --job ----
"$PM" queue prune --db "$DB" --job 999 >/dev/null 2>"$T/e"; eq "--job 999: exit 3" $? 3
check "--job 999: names the job" grep -q "no job 999" "$T/e"
"$PM" queue prune --db "$DB" --job "$J2" --older-than 0 >/dev/null 2>"$T/e"; eq "--job of a queued job: exit 2" $? 2
check "--job of a queued job: says it is queued" grep -q "is queued" "$T/e"

# ---- the default age (7d) keeps a job finished just now ----
"$PM" queue prune --db "$DB" >"$T/o"; eq "default age: exit 0" $? 0
check "default age: nothing to prune" grep -q "nothing to prune" "$T/o"
eq "default age: rows kept" "$(db "$DB" "SELECT count(*) FROM queue")" "$((N + 2))"

# ---- dry run ----
"$PM" queue prune --db "$DB" --older-than 0 --dry-run --json >"$T/dry.json"
eq "dry run: exit 0" $? 0
eq "dry run: figures" "$(jq_ "$T/dry.json" "(d['dry_run'], d['jobs'], d['rows'], d['events'])")" "(True, 1, $N, $EV)"
eq "dry run: nothing deleted" "$(db "$DB" "SELECT count(*) FROM queue") $(db "$DB" "SELECT count(*) FROM queue_events WHERE job_id = $J")" "$((N + 2)) $EV"
"$PM" queue prune --db "$DB" --older-than 0s --dry-run >"$T/o"
check "dry run text: would delete" grep -q "would delete $N queue rows and $EV events of 1 finished job" "$T/o"

# ---- prune ----
"$PM" queue prune --db "$DB" --older-than 0 --json >"$T/p.json"; eq "prune: exit 0" $? 0
eq "prune: figures" "$(jq_ "$T/p.json" "(d['dry_run'], d['jobs'], d['rows'], d['events'], d['older_than'])")" "(False, 1, $N, $EV, '0')"
eq "prune: the job's rows and events are gone" "$(db "$DB" "SELECT count(*) FROM queue WHERE job_id = $J") $(db "$DB" "SELECT count(*) FROM queue_events WHERE job_id = $J")" "0 0"
eq "prune: the queued job's rows stay" "$(db "$DB" "SELECT count(*) FROM queue WHERE job_id = $J2")" 2
eq "prune: the items stay" "$(db "$DB" "SELECT count(*) FROM items WHERE job_id = $J AND state = 'done'")" "$N"
"$PM" queue prune --db "$DB" --older-than 0 >"$T/o"; eq "prune again: exit 0" $? 0
check "prune again: nothing to prune" grep -q "nothing to prune" "$T/o"

# ---- status of a pruned job ----
"$PM" status --db "$DB" --job "$J" >"$T/s.txt"; eq "status: exit 0" $? 0
check "status text: queue pruned" grep -q "queue: pruned" "$T/s.txt"
check "status text: items as before" grep -q "items $N  done $N  failed 0" "$T/s.txt"
"$PM" status --db "$DB" --job "$J" --json >"$T/s.json"
eq "status json: pruned, no negative figures" "$(jq_ "$T/s.json" "(d['jobs'][0]['queue']['pruned'], min(v for k, v in d['jobs'][0]['queue'].items() if isinstance(v, int) and not isinstance(v, bool)) >= 0, d['jobs'][0]['queue']['queued'])")" "(True, True, 0)"
"$PM" status --db "$DB" --job "$J" --item "$KEY" >/dev/null 2>"$T/e"
eq "item history after the prune: exit 3" $? 3
check "item history after the prune: says pruned" grep -q "queue was pruned" "$T/e"

# ---- re-enqueue of the pruned job: every item is done, nothing queued ----
"$PM" run examples/catalog.csv --out "$T/out" --enqueue-only --json >"$T/enq3.json" 2>/dev/null
eq "re-enqueue: exit 0, same job, 0 added" "$? $(jq_ "$T/enq3.json" "(d['job'], d['enqueued'])")" "0 ($J, 0)"
eq "re-enqueue: the job is done again, no rows" "$(db "$DB" "SELECT state FROM jobs WHERE id = $J") $(db "$DB" "SELECT count(*) FROM queue WHERE job_id = $J")" "done 0"
"$PM" status --db "$DB" --job "$J" --json >"$T/s2.json"
eq "re-enqueue: no longer marked pruned" "$(jq_ "$T/s2.json" "d['jobs'][0]['queue']['pruned']")" False

# ---- serve --enqueue: DELETE of a queued job leaves no queued row ----
"$PM" serve --enqueue --db "$T/sv.db" --data "$T/sv" --listen 127.0.0.1:0 --port-file "$T/sv.port" >"$T/sv.log" 2>&1 &
SRV=$!
for _ in $(seq 100); do [ -s "$T/sv.port" ] && break; sleep 0.1; done
A="http://127.0.0.1:$(cat "$T/sv.port")"
{ echo image; for i in $(seq 20); do echo "http://127.0.0.1:9/i$i.jpg"; done; } >"$T/sv.csv"
curl -s -o "$T/sv.json" -X POST --data-binary @"$T/sv.csv" -H 'Content-Type: text/csv' "$A/api/jobs" 2>/dev/null
JS=$(jq_ "$T/sv.json" "d['id']")
for _ in $(seq 100); do
  [ "$(db "$T/sv.db" "SELECT enqueued FROM jobs WHERE id = $JS")" = 1 ] && break
  sleep 0.1
done
eq "serve: 20 rows queued" "$(db "$T/sv.db" "SELECT count(*) FROM queue WHERE job_id = $JS AND state = 'queued'")" 20
code=$(curl -s -o "$T/del.json" -w '%{http_code}' -X DELETE "$A/api/jobs/$JS" 2>/dev/null)
eq "serve: DELETE answers 202, cancelled" "$code $(jq_ "$T/del.json" "d['state']")" "202 cancelled"
eq "serve: no row of it stays queued, no event left" "$(db "$T/sv.db" "SELECT count(*) FROM queue WHERE job_id = $JS") $(db "$T/sv.db" "SELECT count(*) FROM queue_events WHERE job_id = $JS")" "0 0"
"$PM" status --db "$T/sv.db" --job "$JS" --json >"$T/sv-s.json"
eq "serve: status shows 0 queued" "$(jq_ "$T/sv-s.json" "(d['jobs'][0]['state'], d['jobs'][0]['queue']['queued'])")" "('cancelled', 0)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
