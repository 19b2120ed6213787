# lib.sh — shared helpers of the shell test suites: counters and checks.
# Source it after setting nothing; it defines pass/fail counters, ok, bad,
# check and eq, a temporary folder $T removed on exit, and helpers for
# suites with a local test server (control, nlog, logq, db).
# shellcheck shell=bash
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...: passes if COMMAND succeeds
  local d=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
eq() { # eq DESCRIPTION GOT WANT
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}
# For suites with a local test server that logs one JSON line per request
# to $LOG and takes injected faults on POST $BASE/control
# (tests/vision/server.py, tests/providers/server.py):
control() { # control JSON: sets the server's injected faults
  python3 -c "import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1]+'/control', data=sys.argv[2].encode(), method='POST')).read()" "$BASE" "$1"
}
nlog() { wc -l <"$LOG" | tr -d ' '; } # requests logged so far
# logq START PYEXPR: evaluates PYEXPR over L, the log records from line START on
logq() {
  python3 -c "
import json, sys, statistics
L = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
print($2)" "$LOG" "$1"
}
# db SQLITE_FILE SQL: the first column of the first row, "" if none
db() { python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone(); print(r[0] if r else '')" "$1" "$2"; }
