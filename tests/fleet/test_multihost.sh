#!/usr/bin/env bash
# test_multihost.sh — several machines sharing one queue, simulated on one:
# two network namespaces ("hosts" A and B), each joined by a veth pair to
# a bridge in the root namespace on a private /24. PostgreSQL
# (tests/store/pg_lib.sh, also listening on the bridge address, pg_hba
# trusting the subnet) and the test origin (tests/fetch/origin.c --bind)
# run in the root namespace; the workers run inside the namespaces
# (`ip netns exec NS pixmill worker ...`) and reach both only across the
# veth links (the namespaces' own loopback has neither). A catalog of URLs
# is enqueued once (`run --enqueue-only`), workers on both hosts drain it,
# and the test asserts that every item is done exactly once (one item row
# and one "done" event per key, each URL fetched once), that workers on
# both hosts did work, and that both links carried the traffic.
# Namespaces, links and servers are removed on exit, also on failure.
#
# Usage: tests/fleet/test_multihost.sh [PIXMILL_BINARY]   (run as root)
# Environment: MULTIHOST_N (URLs, default 600); FLEET_NET_ONLY=1 checks
# the network harness only (psql and curl from the namespaces, no pixmill).
# Without the right to create network namespaces it prints "SKIP: ..."
# and exits 0 without counting a pass. Ends with "multihost: N passed, N
# failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PM=$(realpath "${1:-build/pixmill}")
N=${MULTIHOST_N:-600}
. tests/cli/lib.sh
. tests/store/pg_lib.sh
. tests/fleet/harness.sh

P=$$
NS=("pm${P}a" "pm${P}b")
BR="pm${P}br"
cleanup() {
  local p ns
  for ns in "${NS[@]}"; do
    # anything this test started inside the namespace (by pid)
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip link del "${ns}v" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  fh_cleanup
}
fh_traps cleanup
finish() { echo "multihost: $pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }
skip() { echo "SKIP: $*"; exit 0; }

# ---- the network: a bridge, two namespaces, a veth pair each ----
[ "$(id -u)" = 0 ] || skip "network namespaces need root (uid $(id -u))"
command -v ip >/dev/null || skip "no ip command (iproute2)"
if ! err=$(ip netns add "${NS[0]}" 2>&1); then
  skip "ip netns add is not permitted here: $err"
fi
# a /24 that no interface of this machine uses yet
SUB=
for try in 0 1 2 3 4 5 6 7; do
  cand="10.$((200 + (P + try) % 50)).$(((P / 50 + try) % 250 + 1))"
  ip -4 addr | grep -q "inet $cand\." || { SUB=$cand; break; }
done
[ -n "$SUB" ] || skip "no free 10.x.y.0/24 for the test network"
HOST=$SUB.1
setup_net() {
  ip link add "$BR" type bridge || return 1
  ip addr add "$HOST/24" dev "$BR" || return 1
  ip link set "$BR" up || return 1
  local i ns
  for i in 0 1; do
    ns=${NS[$i]}
    [ "$i" = 0 ] || ip netns add "$ns" || return 1
    ip link add "${ns}v" type veth peer name eth0 netns "$ns" || return 1
    ip link set "${ns}v" master "$BR" up || return 1
    ip -n "$ns" addr add "$SUB.$((i + 2))/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up || return 1
    ip -n "$ns" link set lo up || return 1
  done
}
if ! err=$(setup_net 2>&1); then
  skip "could not build the veth network: $err"
fi
ok "network: bridge $BR at $HOST/24, namespaces ${NS[*]} at $SUB.2 and $SUB.3"

# ---- servers in the root namespace, on the bridge address ----
PG_LISTEN=$HOST PG_HBA="host all all $SUB.0/24 trust"
fh_pg fleet || { bad "PostgreSQL server did not start"; finish; }
DB_HOST="postgresql://pixmill@$HOST:$PG_PORT/fleet" # as the hosts see it
fh_origin net --bind "$HOST" --latency 200 || { bad "origin did not start"; finish; }
OPORT=$FH_PORT
BASE="http://$HOST:$OPORT"

rx_bytes() { cat "/sys/class/net/$1/statistics/rx_bytes"; }
declare -A rx0
for ns in "${NS[@]}"; do rx0[$ns]=$(rx_bytes "${ns}v"); done

# Each host reaches PostgreSQL and the origin across its link, and not on
# its own loopback (so the workers below really use the links).
for ns in "${NS[@]}"; do
  got=$(ip netns exec "$ns" "$PG_BIN/psql" -X -A -t "$DB_HOST" -c "SELECT 1" 2>&1)
  eq "$ns: PostgreSQL at $HOST:$PG_PORT answers across the link" "$got" 1
  ip netns exec "$ns" "$PG_BIN/psql" -X -A -t "postgresql://pixmill@127.0.0.1:$PG_PORT/fleet" \
    -c "SELECT 1" >/dev/null 2>&1 && bad "$ns: PostgreSQL is reachable on the namespace's loopback" ||
    ok "$ns: no PostgreSQL on the namespace's own loopback"
  code=$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' -m 10 "$BASE/file/opencv_fruits.jpg?tag=probe-$ns")
  eq "$ns: the origin at $BASE answers across the link" "$code" 200
done
eq "origin bound to $HOST only: not on 127.0.0.1" \
  "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$OPORT/count")" 000
curl -s -m 5 "$BASE/stats/reset" >/dev/null

if [ -n "${FLEET_NET_ONLY:-}" ]; then
  for ns in "${NS[@]}"; do
    d=$(($(rx_bytes "${ns}v") - rx0[$ns]))
    [ "$d" -gt 1000 ] && ok "$ns: its link carried $d bytes" || bad "$ns: its link carried only $d bytes"
  done
  finish
fi

# ---- the fleet: enqueue once, workers on both hosts ----
fh_enqueue fleet "$BASE" "$N"

# two workers on host A, one on host B, 4 transfers each (200 ms per
# answer, so ~20 items/s per worker, ~10 s for all). $N items leave a
# share for every worker that starts within the first seconds even if
# one claims far ahead (the first worker version held ~140 claims at
# once; the current one at most 2 x --batch)
# The output root is the one the job was enqueued with: the namespaces
# share this machine's file system, as real hosts would share a mount.
start_worker() { # start_worker NS ID
  ip netns exec "$1" "$PM" worker --db "$DB_HOST" --id "$2" --workers 2 --batch 4 \
    --max-transfers 4 --per-host 4 --per-host-rps 0 --lease 30 --out "$T/out" --allow-private --exit-when-idle --json >"$T/$2.json" 2>"$T/$2.err" &
  WPIDS+=($!)
}
start_worker "${NS[0]}" a1
start_worker "${NS[0]}" a2
start_worker "${NS[1]}" b1
fh_wait_workers 120 # --exit-when-idle: each exits once the queue is drained

# ---- exactly once ----
fh_exactly_once fleet "$N"
eq "origin: $N requests, each URL once" \
  "$(curl -s "$BASE/count" | python3 -c 'import json,sys; d=json.load(sys.stdin)["counts"]; print(sum(d.values()), max(d.values()))')" \
  "$N 1"

# ---- both hosts worked ----
fh_sql fleet "SELECT e.worker, count(*) FROM queue_events e WHERE e.event = 'done' GROUP BY e.worker ORDER BY 1" >"$T/by-worker"
cat "$T/by-worker"
a=$(awk '$1 ~ /^a/ {s += $2} END {print s + 0}' "$T/by-worker")
b=$(awk '$1 ~ /^b/ {s += $2} END {print s + 0}' "$T/by-worker")
[ "$a" -gt 0 ] && ok "host A's workers did $a items" || bad "host A's workers did nothing"
[ "$b" -gt 0 ] && ok "host B's workers did $b items" || bad "host B's workers did nothing"
eq "A + B = $N" "$((a + b))" "$N"
eq "the workers' --json summaries add up to $N done" \
  "$(fh_done_sum "$T"/[ab][12].json)" "$N"
for ns in "${NS[@]}"; do
  d=$(($(rx_bytes "${ns}v") - rx0[$ns]))
  # the bridge port's rx is what the namespace sent: requests, queries
  [ "$d" -gt 10000 ] && ok "$ns: its link carried $d bytes" || bad "$ns: its link carried only $d bytes"
done
finish
