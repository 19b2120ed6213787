# store_lib.sh — the set-up bench/store.sh and bench/queue.sh share: checks
# the build, builds $BUILD/bench/NAME (the Makefile: bench/NAME.c and
# bench/bench_fixture.c against $BUILD/libpixmill.a) and copies it to
# $W/NAME, and starts a durable PostgreSQL (fsync on, like a real server;
# tests/store/pg_lib.sh's test default is off) that is stopped, with $W
# removed, on exit. Source it, then: bench_store_setup NAME
# shellcheck shell=bash
BUILD=${BUILD:-build}
bench_store_setup() {
  [ -f "$BUILD/libpixmill.a" ] || { echo "build first: make BUILD=$BUILD"; exit 2; }
  . tests/store/pg_lib.sh
  W=$(mktemp -d)
  trap 'pg_stop; rm -rf "$W"' EXIT
  make --no-print-directory BUILD="$BUILD" "$BUILD/bench/$1" >/dev/null && cp "$BUILD/bench/$1" "$W/$1" ||
    { echo "$1 did not build"; exit 2; }
  PG_FSYNC=on pg_start || { echo "PostgreSQL did not start"; exit 2; }
}
