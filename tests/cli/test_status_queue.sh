#!/usr/bin/env bash
# test_status_queue.sh — `pixmill status` for jobs in the shared queue: the
# queue line (text) and "queue" object (--json) of a queue job, the item
# attempt history (--job J --item KEY, text and --json), its usage errors,
# and a job never enqueued shown exactly as before (no queue line or key).
# The queue state is written into the SQLite store with python3's sqlite3
# (the rows `pixmill worker` would leave), after a real run of the example
# catalog made the store.
# Usage: tests/cli/test_status_queue.sh PIXMILL_BINARY
# shellcheck shell=bash
set -uo pipefail
cd "$(dirname "$0")/../.."
PM=${1:-build/pixmill}
. tests/cli/lib.sh
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$PM" run examples/catalog.csv --out "$T/out" --quiet
eq "run exits 0" $? 0
DB=$T/out/pixmill.db
"$PM" status --db "$DB" >"$T/plain.txt"
"$PM" status --db "$DB" --json >"$T/plain.json"
check "a job never enqueued has no queue line" bash -c "! grep -q 'queue:' '$T/plain.txt'"
eq "a job never enqueued has no queue key" "$(jq_ "$T/plain.json" "'queue' in d['jobs'][0]")" False

# job 1 as workers would leave it: 6 done, one queued, one claimed by w1
# whose first lease expired once; enqueue complete with 8 records
python3 - "$DB" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
now = time.time()
db.execute("UPDATE jobs SET enqueued = 1, enqueue_total = 8 WHERE id = 1")
keys = [r[0] for r in db.execute("SELECT key FROM items WHERE job_id = 1")]
for i, k in enumerate(keys):
    db.execute("INSERT INTO queue (job_id, key, ordinal, state, attempts,"
               " lease_owner, record_json, created, updated)"
               " VALUES (1, ?, ?, 'done', 1, 'w2', '{}', ?, ?)", (k, i, now, now))
db.execute("INSERT INTO queue (job_id, key, ordinal, record_json, created, updated)"
           " VALUES (1, 'waiting', 10, '{}', ?, ?)", (now, now))
db.execute("INSERT INTO queue (job_id, key, ordinal, state, attempts, lease_owner,"
           " lease_until, record_json, created, updated)"
           " VALUES (1, 'busy', 11, 'claimed', 2, 'w1', ?, '{}', ?, ?)",
           (now + 60, now, now))
qid = db.execute("SELECT id FROM queue WHERE key = 'busy'").fetchone()[0]
for ev, w, dt, det in [("claimed", "w1", -3, None), ("expired", "w1", -2, None),
                       ("claimed", "w1", -1, None)]:
    db.execute("INSERT INTO queue_events (queue_id, job_id, key, event, worker, at,"
               " detail) VALUES (?, 1, 'busy', ?, ?, ?, ?)", (qid, ev, w, now + dt, det))
db.commit()
PY
eq "queue rows written" $? 0

"$PM" status --db "$DB" >"$T/q.txt"; eq "status exits 0" $? 0
check "text: queue line" grep -q "queue: queued 1  claimed 1  workers 1  expired 1  retried 0  enqueue complete (8 records)" "$T/q.txt"
check "text: the item counts as before" grep -q "items 6  done 6  failed 0" "$T/q.txt"
"$PM" status --db "$DB" --json >"$T/q.json"; eq "status --json exits 0" $? 0
eq "json: queue.queued" "$(jq_ "$T/q.json" "d['jobs'][0]['queue']['queued']")" 1
eq "json: queue.claimed" "$(jq_ "$T/q.json" "d['jobs'][0]['queue']['claimed']")" 1
eq "json: queue.workers" "$(jq_ "$T/q.json" "d['jobs'][0]['queue']['workers']")" 1
eq "json: queue.done" "$(jq_ "$T/q.json" "d['jobs'][0]['queue']['done']")" 6
eq "json: queue.expired" "$(jq_ "$T/q.json" "d['jobs'][0]['queue']['expired']")" 1
eq "json: queue.enqueued, total" "$(jq_ "$T/q.json" "(d['jobs'][0]['queue']['enqueued'], d['jobs'][0]['queue']['total'])")" "(True, 8)"
eq "json: items unchanged" "$(jq_ "$T/q.json" "d['jobs'][0]['items']")" 6
"$PM" status --db "$DB" --job 1 --json >"$T/q1.json"
eq "--job: that job only" "$(jq_ "$T/q1.json" "[j['id'] for j in d['jobs']]")" "[1]"
"$PM" status --db "$DB" --job 99 >/dev/null 2>&1
check "--job of no job fails" test $? -ne 0

"$PM" status --db "$DB" --job 1 --item busy >"$T/h.txt"; eq "history exits 0" $? 0
eq "history: three events, in order" "$(awk 'NR > 1 {print $3 "/" $4}' "$T/h.txt" | paste -sd' ')" "claimed/w1 expired/w1 claimed/w1"
"$PM" status --db "$DB" --job 1 --item busy --json >"$T/h.json"
eq "history --json" "$(jq_ "$T/h.json" "[e['event'] for e in d['events']]")" "['claimed', 'expired', 'claimed']"
eq "history --json key" "$(jq_ "$T/h.json" "(d['job'], d['key'], d['events'][1]['worker'], d['events'][0]['detail'])")" "(1, 'busy', 'w1', None)"
"$PM" status --db "$DB" --job 1 --item nosuch >/dev/null 2>"$T/h.err"
check "history of an item never enqueued fails" test $? -ne 0
check "... and says so" grep -q "no queue history" "$T/h.err"
"$PM" status --db "$DB" --item busy >/dev/null 2>&1
eq "--item without --job is a usage error" $? 2

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
