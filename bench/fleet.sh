#!/usr/bin/env bash
# fleet.sh — scale-out benchmark of `pixmill worker` (issue 7): how the
# items/s of a network-bound catalog grow with the number of worker
# processes sharing one PostgreSQL queue. Never a timed test.
#
# A catalog of N distinct URLs is served by the test origin
# (tests/fetch/origin.c on loopback) with 200 ms added to every answer,
# over small JPEGs (distinct 128x128 tiles of the example photos),
# so each item costs little CPU and a worker is bound by its fixed number
# of transfers in flight: that is how 2 cores stand in for more machines.
# For each fleet size W in $FLEET (default "1 2 4") a fresh database is
# made, the catalog enqueued once (`run --enqueue-only`), then W
# `pixmill worker --exit-when-idle` processes start together, each with
# the same fixed concurrency ($WORKER_ARGS: 2 image threads, 8 transfers
# at once, no per-host rate limit, so the single origin host is not the
# bottleneck). Measured per fleet size: drain time (workers started to
# the last item done), items/s, scaling efficiency against W x the
# 1-worker rate, CPU ms per item (user+sys of the workers), the largest
# peak RSS of a worker, the most connections to the database at once and
# the most claims one worker held at once (sampled every 0.5 s),
# the database size after (pg_database_size) and bytes per item, WAL
# bytes per item, and per table the bytes per row
# (pg_total_relation_size / rows).
#
# Usage: N=6000 bench/fleet.sh [OUT_DIR]   (N default 100000)
# Environment: N, DISTINCT (distinct images, default min(N, 20000)), FLEET ("1 2 4"), LATENCY_MS (200), PIXMILL
# (build/pixmill), WORKER_ARGS, PG_FSYNC (on: a durable server),
# NO_APPEND=1 (do not append the figures to docs/BENCHMARKS.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
N=${N:-100000}
FLEET=${FLEET:-1 2 4}
LATENCY_MS=${LATENCY_MS:-200}
OUT=${1:-bench/results/fleet-$(date +%Y%m%d-%H%M%S)}
PM=$(realpath "${PIXMILL:-build/pixmill}")
read -r -a WARGS <<<"${WORKER_ARGS:---workers 2 --max-transfers 8 --per-host 8 --per-host-rps 0}"
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
T=$OUT/tmp
mkdir -p "$T"
export PG_FSYNC=${PG_FSYNC:-on} PG_MAX_CONN=${PG_MAX_CONN:-200}
. tests/store/pg_lib.sh
. tests/fleet/harness.sh
KEEP=1 # $T is under $OUT: kept with the results
fh_traps

# DISTINCT (default N, at most 20000) distinct small JPEGs: the example
# photos, shifted by (sx, sy) pixels, cut into 128x128 tiles (vips
# dzsave; ~158 tiles per shift), so that every item is a new source and
# costs its decode and encodes, as distinct product photos would (the
# worker dedups identical bytes; `--no-dedup` is a run option only)
DISTINCT=${DISTINCT:-$((N < 20000 ? N : 20000))}
IMG=$T/img
mkdir -p "$IMG" "$T/tiles"
k=0
while [ "$(find "$IMG" -name '*.jpg' | wc -l)" -lt "$DISTINCT" ]; do
  sx=$((k % 128)) sy=$(((5 * (k % 128) + 37 * (k / 128)) % 128))
  for f in examples/images/*.jpg; do
    b=$(basename "$f" .jpg) w=$(vipsheader -f width "$f") h=$(vipsheader -f height "$f")
    vips extract_area "$f" "$T/tiles/s.v" "$sx" "$sy" $((w - sx)) $((h - sy)) &&
      vips dzsave "$T/tiles/s.v" "$T/tiles/$b-$sx-$sy" --layout google --tile-size 128 \
        --overlap 0 --depth one --suffix ".jpg[Q=85]" || exit 1
  done
  (cd "$T/tiles" && for t in */0/*/*.jpg; do mv "$t" "$IMG/${t//\//_}"; done)
  rm -rf "${T:?}/tiles/"*
  k=$((k + 1))
done
rm -rf "$T/tiles"
pg_start || { echo "PostgreSQL did not start"; exit 1; }
FH_IMAGES=$IMG fh_origin origin --latency "$LATENCY_MS" --max-conns 4096 || exit 1
BASE="http://127.0.0.1:$FH_PORT"
FH_IMAGES=$IMG fh_catalog "$BASE" "$N" >"$OUT/cat.csv"
LOAD0=$(uptime)
DATE0=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null)
echo "fleet bench: N=$N, latency $LATENCY_MS ms, worker args: ${WARGS[*]}"
echo "start: $DATE0, $LOAD0"

now() { date +%s.%N; }
for W in $FLEET; do
  db=fleet_$W
  pg_createdb "$db"
  # WAL from here: the schema (a few kB), the enqueue and the work
  wal0=$(fh_sql postgres "SELECT pg_current_wal_lsn()")
  t0=$(now)
  "$PM" run "$OUT/cat.csv" --db "$PG_URL/$db" --out "$T/out-$W" --enqueue-only \
    --allow-private --no-dedup --json >"$OUT/enqueue-$W.json" 2>"$OUT/enqueue-$W.err" ||
    { echo "enqueue failed: $(tail -n 3 "$OUT/enqueue-$W.err")"; exit 1; }
  t1=$(now)
  WPIDS=()
  for i in $(seq "$W"); do
    /usr/bin/time -f "%e %U %S %M" -o "$OUT/w$W-$i.time" \
      "$PM" worker --db "$PG_URL/$db" --id "w$W-$i" --out "$T/out-$W" --exit-when-idle \
      --allow-private --json "${WARGS[@]}" >"$OUT/w$W-$i.json" 2>"$OUT/w$W-$i.err" &
    WPIDS+=($!)
  done
  t2=$(now) conns=0 held=0 t3=
  while :; do
    n_done=$(fh_sql "$db" "SELECT count(*) FROM items") || n_done=0
    c=$(fh_sql postgres "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'") || c=0
    [ "$c" -gt "$conns" ] && conns=$c
    h=$(fh_sql "$db" "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM queue
      WHERE state = 'claimed' GROUP BY lease_owner) x") || h=0
    [ "$h" -gt "$held" ] && held=$h
    if [ "$n_done" -ge "$N" ]; then t3=$(now); break; fi
    fh_alive || { t3=$(now); break; }
    sleep 0.5
  done
  for p in "${WPIDS[@]}"; do wait "$p"; done
  WPIDS=()
  t4=$(now)
  wal1=$(fh_sql postgres "SELECT pg_current_wal_lsn()")
  fh_sql "$db" "SELECT state, count(*) FROM items GROUP BY 1 ORDER BY 1" >"$OUT/states-$W.txt"
  fh_sql "$db" "SELECT pg_database_size('$db'), pg_wal_lsn_diff('$wal1', '$wal0')" >"$OUT/size-$W.txt"
  # bytes per row of every table of ours, indexes and TOAST included
  fh_sql "$db" "SELECT c.relname, pg_total_relation_size(c.oid), c.reltuples::bigint
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC" >"$OUT/tables-$W.raw"
  # exact row counts (reltuples is an estimate)
  while read -r rel bytes _; do
    rows=$(fh_sql "$db" "SELECT count(*) FROM \"$rel\"")
    echo "$rel $bytes $rows"
  done <"$OUT/tables-$W.raw" >"$OUT/tables-$W.txt"
  echo "$W $t0 $t1 $t2 $t3 $t4 $conns $held" >"$OUT/times-$W.txt"
  echo "W=$W: $(cat "$OUT/states-$W.txt" | tr '\n' ' ') drained in $(python3 -c "print(f'{$t3-$t2:.1f}')") s"
done
LOAD1=$(uptime)

python3 - "$OUT" "$N" "$FLEET" "$LATENCY_MS" >"$OUT/report.md" <<'EOF'
import sys, glob
out, n, fleet, lat = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
rows, base = [], None
for w in fleet:
    W, t0, t1, t2, t3, t4, conns, held = open(f"{out}/times-{w}.txt").read().split()
    W = int(W); t0, t1, t2, t3, t4 = map(float, (t0, t1, t2, t3, t4))
    states = dict(l.split() for l in open(f"{out}/states-{w}.txt") if l.strip())
    done = int(states.get("done", 0)); failed = int(states.get("failed", 0))
    size, wal = map(int, open(f"{out}/size-{w}.txt").read().split())
    cpu = rss = 0
    for f in glob.glob(f"{out}/w{w}-*.time"):
        e, u, s, m = open(f).read().split()[-4:]
        cpu += float(u) + float(s); rss = max(rss, int(m))
    drain = t3 - t2
    rate = (done + failed) / drain
    if base is None and W == 1:
        base = rate
    eff = rate / (W * base) if base else float("nan")
    rows.append((W, t1 - t0, drain, t4 - t2, done, failed, rate, eff,
                 1000 * cpu / max(1, done + failed), rss / 1024, int(conns), int(held),
                 size / 2**20, size / max(1, done + failed), wal / max(1, done + failed)))
print(f"N = {n} URLs, {lat} ms origin latency\n")
print("| workers | enqueue s | drain s | wall to exit s | done / failed | items/s | efficiency vs W x 1 | CPU ms/item | peak RSS MiB (largest worker) | DB connections (max) | claims held by one worker (max) | DB size MiB | DB bytes/item | WAL bytes/item |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]} / {r[5]} | {r[6]:.1f} | {r[7]:.2f} | {r[8]:.1f} | {r[9]:.0f} | {r[10]} | {r[11]} | {r[12]:.1f} | {r[13]:,.0f} | {r[14]:,.0f} |")
w = fleet[-1]
print(f"\nBytes per row by table (fleet of {w}; pg_total_relation_size, indexes and TOAST included):\n")
print("| table | MiB | rows | bytes/row | bytes/item |")
print("|---|---|---|---|---|")
for l in open(f"{out}/tables-{w}.txt"):
    rel, b, r = l.split(); b, r = int(b), int(r)
    if b == 0:
        continue
    print(f"| {rel} | {b / 2**20:.2f} | {r} | {b / r if r else 0:,.0f} | {b / n:,.0f} |")
EOF
{
  echo
  echo "### Run of $DATE0 (commit $COMMIT)"
  echo
  echo "Command: \`N=$N FLEET=\"$FLEET\" bench/fleet.sh\` (worker args: \`${WARGS[*]}\`, PostgreSQL fsync=$PG_FSYNC)."
  echo "Load before: \`${LOAD0#*load average: }\`; after: \`${LOAD1#*load average: }\` (uptime)."
  echo
  cat "$OUT/report.md"
} >"$OUT/section.md"
cat "$OUT/section.md"
if [ -z "${NO_APPEND:-}" ]; then
  cat "$OUT/section.md" >>docs/BENCHMARKS.md
  echo "(appended to docs/BENCHMARKS.md)"
fi
