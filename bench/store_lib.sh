# store_lib.sh — the set-up bench/store.sh and bench/queue.sh share: checks
# the build, compiles bench/NAME.c against $BUILD/libpixmill.a with the
# Makefile's flags into $W/NAME, and starts a durable PostgreSQL (fsync on,
# like a real server; tests/store/pg_lib.sh's test default is off) that is
# stopped, with $W removed, on exit. Source it, then: bench_store_setup NAME
# shellcheck shell=bash
BUILD=${BUILD:-build}
bench_store_setup() {
  [ -f "$BUILD/libpixmill.a" ] || { echo "build first: make BUILD=$BUILD"; exit 2; }
  . tests/store/pg_lib.sh
  W=$(mktemp -d)
  trap 'pg_stop; rm -rf "$W"' EXIT
  mkvar() { make --no-print-directory BUILD="$BUILD" -f Makefile -f <(printf 'pv:\n\t@echo $(%s)\n' "$1") pv; }
  # shellcheck disable=SC2046
  cc $(mkvar CFLAGS) -o "$W/$1" "bench/$1.c" "$BUILD/libpixmill.a" $(mkvar LDLIBS) ||
    { echo "$1 did not build"; exit 2; }
  PG_FSYNC=on pg_start || { echo "PostgreSQL did not start"; exit 2; }
}
