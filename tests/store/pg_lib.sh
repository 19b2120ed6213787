# pg_lib.sh — starts and stops a throwaway PostgreSQL server for the tests:
# Debian's postgresql binaries (initdb, pg_ctl), a data directory in a new
# temporary folder, listening on 127.0.0.1 (only, unless PG_LISTEN below)
# on a free port, with trust authentication for the superuser "pixmill"
# (fsync off unless PG_FSYNC=on: test data is throwaway). Source it, then:
#   pg_start        sets PG_URL (postgresql://pixmill@127.0.0.1:PORT) and
#                   PG_DIR; returns non-zero if the server would not start
#   pg_createdb N   creates database N (prints nothing)
#   pg_stop         stops the server and removes PG_DIR (also on EXIT if
#                   the caller's trap calls it)
#   pg_restart [S [MODE]]  stops the server (MODE fast, the default: every
#                   session is cut; immediate: a crash, recovery at start),
#                   waits S seconds (default 0), starts it again on the
#                   same port with the same settings
#   pg_down [MODE]  the first half of pg_restart: stops the server (MODE as
#                   above), keeping PG_DIR
#   pg_up           the second half: starts it again as it was
# Optional, set before pg_start (the defaults keep loopback only):
#   PG_LISTEN=ADDRS  listen_addresses beside 127.0.0.1, comma-separated
#                    (e.g. a veth address for clients in other network
#                    namespaces: tests/fleet/test_multihost.sh)
#   PG_HBA="LINE;LINE"  pg_hba.conf lines added before the defaults, e.g.
#                    "host all all 10.1.2.0/24 trust"
#   PG_MAX_CONN=N    max_connections [the server's default, 100]
# initdb refuses to run as root, so as root the server runs as the user
# "nobody" (which owns PG_DIR); otherwise as the calling user.
# shellcheck shell=bash
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_DIR= PG_URL= PG_PORT= PG_OPTS=

pg_as() { # pg_as CMD...: runs CMD as the server's owner
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "pg_lib: no PostgreSQL server binaries (apt-get install postgresql)" >&2
    return 1
  fi
  PG_DIR=$(mktemp -d /tmp/pixmill-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown nobody "$PG_DIR"
  if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U pixmill --auth=trust \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    return 1
  fi
  if [ -n "${PG_HBA:-}" ]; then
    local hba=$PG_DIR/data/pg_hba.conf
    { tr ';' '\n' <<<"$PG_HBA"; cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
    [ "$(id -u)" = 0 ] && chown nobody "$hba"
  fi
  local try
  for try in 1 2 3; do
    PG_PORT=$(pg_free_port)
    PG_OPTS="-c listen_addresses=127.0.0.1${PG_LISTEN:+,$PG_LISTEN} -p $PG_PORT -c unix_socket_directories='$PG_DIR' -c fsync=${PG_FSYNC:-off}${PG_MAX_CONN:+ -c max_connections=$PG_MAX_CONN}"
    if pg_up; then
      PG_URL="postgresql://pixmill@127.0.0.1:$PG_PORT"
      return 0
    fi
  done
  tail -n 20 "$PG_DIR/server.log" >&2
  return 1
}

pg_psql() { # pg_psql DB SQL: runs SQL as the superuser, prints unaligned rows
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$PG_URL/$1" -c "$2"
}

pg_createdb() {
  pg_psql postgres "CREATE DATABASE \"$1\""
}

pg_down() {
  [ -n "$PG_DIR" ] || return 1
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m "${1:-fast}" -w -t 30 stop >/dev/null 2>&1
}

pg_up() {
  [ -n "$PG_DIR" ] || return 1
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
    -o "$PG_OPTS" start >/dev/null 2>&1
}

pg_restart() {
  pg_down "${2:-fast}" || return 1
  sleep "${1:-0}"
  pg_up
}

pg_stop() {
  [ -n "$PG_DIR" ] || return 0
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
  fi
  rm -rf "$PG_DIR"
  PG_DIR=
}

# pg_start_or_exit: pg_start for a suite (tests/cli/lib.sh's ok/bad
# loaded): a server that does not start is one failure and the suite ends.
pg_start_or_exit() {
  if ! pg_start; then
    bad "PostgreSQL server did not start (is the postgresql package installed?)"
    echo "$pass passed, $fail failed"
    exit 1
  fi
  ok "PostgreSQL listening at $PG_URL"
}

# pg_suite_cleanup [PID...]: a suite's EXIT trap: stops the given
# background processes (empty ones skipped), the server and removes $T.
pg_suite_cleanup() {
  local p
  for p in "$@"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  pg_stop
  rm -rf "$T"
}

# pg_unit NAME BINARY: runs a unit-test binary with PIXMILL_TEST_PG set
# (log in $T/unit.log): it must reach its PostgreSQL cases and exit 0; its
# failure lines and its own "N passed" line (for test.sh's tally) are shown.
pg_unit() {
  local name=$1 bin=$2 rc
  PIXMILL_TEST_PG=$PG_URL "$bin" >"$T/unit.log" 2>&1
  rc=$?
  grep -E 'FAIL|CHECK failed|failed|ERROR' "$T/unit.log" | grep -v ' 0 failed' | head -n 20
  grep -q -- '-- PostgreSQL' "$T/unit.log" && ok "$name ran the PostgreSQL cases" ||
    bad "$name did not reach the PostgreSQL cases"
  eq "$name exit status" "$rc" 0
  grep -E "^tests/unit/$(basename "$bin").c: [0-9]+ passed" "$T/unit.log"
}
