# harness.sh — shared pieces of the fleet tests that start their own
# servers (tests/fleet/test_multihost.sh, tests/fleet/test_pg_restart.sh)
# and of bench/fleet.sh: the test origin, URL catalogs and the
# exactly-once checks on the PostgreSQL store. Source it after
# tests/cli/lib.sh (for ok/bad/eq and $T) and tests/store/pg_lib.sh.
#   fh_origin NAME [OPTIONS]  starts BUILD/tests/origin (or $PIXMILL_ORIGIN)
#                  serving examples/images, with OPTIONS (e.g. --bind ADDR
#                  --latency MS); sets FH_PORT; its pid goes to FH_PIDS
#   fh_catalog BASE N [ROOT]  prints a CSV catalog of N distinct URLs,
#                  BASE/file/IMG?tag=I, cycling through the .jpg files of
#                  ROOT (default examples/images)
#   fh_sql DB SQL  runs SQL on database DB of the test server ($PG_URL),
#                  prints unaligned rows
#   fh_stop        kills what fh_origin started (by pid)
# shellcheck shell=bash
FH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FH_PIDS=() FH_PORT=

fh_origin() {
  local name=$1; shift
  local bin=${PIXMILL_ORIGIN:-$(dirname "$PM")/tests/origin}
  "$bin" --root "${FH_IMAGES:-$FH_ROOT/examples/images}" --die-with-parent \
    --port-file "$T/$name.port" "$@" 0 >/dev/null 2>"$T/$name.err" &
  FH_PIDS+=($!)
  FH_PORT=
  for _ in $(seq 100); do
    FH_PORT=$(head -n 1 "$T/$name.port" 2>/dev/null)
    [ -n "$FH_PORT" ] && return 0
    sleep 0.1
  done
  echo "origin $bin did not start: $(cat "$T/$name.err" 2>/dev/null)" >&2
  return 1
}

fh_catalog() {
  IMGDIR=${3:-${FH_IMAGES:-$FH_ROOT/examples/images}} python3 - "$1" "$2" <<'EOF'
import os, sys
base, n = sys.argv[1], int(sys.argv[2])
imgs = sorted(f for f in os.listdir(os.environ["IMGDIR"]) if f.endswith(".jpg"))
print("id,image,title")
for i in range(n):
    print(f"p{i},{base}/file/{imgs[i % len(imgs)]}?tag={i},product {i}")
EOF
}

fh_sql() {
  "$PG_BIN/psql" -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 "$PG_URL/$1" -c "$2"
}

fh_stop() {
  local p
  for p in "${FH_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  FH_PIDS=()
}
