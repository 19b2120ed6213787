#!/usr/bin/env bash
# test.sh — the README's second command and what CI runs: installs the
# dependencies, builds with warnings as errors, and runs every tier:
#   1. unit tests (tests/unit) and CLI tests (tests/cli), release build,
#      the network tests (tests/cli/test_network.sh), the HTTP API tests
#      (tests/serve/test_api.sh), a real Prometheus scraping `serve`
#      (tests/serve/test_prometheus.sh) and the dashboard in headless
#      Chromium (tests/dashboard/run.sh)
#   2. the crash-resume test (kill -9 at several points, exactly-once)
#   3. unit, CLI, network and API tests again under ASan+UBSan
#   4. each libFuzzer target for a short time (FUZZ_SECONDS, default 30)
#   5. clang-format check
# Ends with the line "N passed, N failed" summed over every tier.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
export PIXMILL_CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
# LeakSanitizer: report our leaks, not the one-time allocations that glib,
# fontconfig and libvips' type system make and never free.
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

scripts/install-deps.sh || { echo "dependency install failed"; exit 1; }

total_pass=0 total_fail=0
tally() { # tally LOGFILE: adds the "N passed, N failed" lines of a log
  local p f
  p=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$1" | awk '{s+=$1} END {print s+0}')
  f=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$1" | awk '{s+=$3} END {print s+0}')
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}
step_fail() { echo "FAIL: $*"; total_fail=$((total_fail + 1)); }
LOGS=$(mktemp -d)

run_tier() { # run_tier NAME BUILD_DIR
  local name=$1 b=$2
  echo "== $name: unit tests"
  for t in "$b"/tests/test_*; do
    "$t" >"$LOGS/$name-$(basename "$t").log" 2>&1 || step_fail "$name $(basename "$t") (exit $?)"
    tail -n 20 "$LOGS/$name-$(basename "$t").log" | grep -E 'passed|FAIL|failed|ERROR' | tail -n 5
    tally "$LOGS/$name-$(basename "$t").log"
  done
  echo "== $name: CLI tests"
  tests/cli/test_cli.sh "$b/pixmill" >"$LOGS/$name-cli.log" 2>&1 || step_fail "$name CLI tests"
  grep -E '^FAIL|passed' "$LOGS/$name-cli.log"
  tally "$LOGS/$name-cli.log"
  echo "== $name: network tests (local origin, injected faults, kill -9)"
  tests/cli/test_network.sh "$b/pixmill" >"$LOGS/$name-net.log" 2>&1 || step_fail "$name network tests"
  grep -E '^FAIL|passed' "$LOGS/$name-net.log"
  tally "$LOGS/$name-net.log"
  echo "== $name: HTTP API tests (pixmill serve on loopback)"
  tests/serve/test_api.sh "$b/pixmill" >"$LOGS/$name-api.log" 2>&1 || step_fail "$name API tests"
  grep -E '^FAIL|passed' "$LOGS/$name-api.log"
  tally "$LOGS/$name-api.log"
}

echo "== build (release, -Werror)"
make -j"$(nproc)" all >"$LOGS/build.log" 2>&1 || { cat "$LOGS/build.log"; echo "0 passed, 1 failed"; exit 1; }
run_tier release build

echo "== a real Prometheus server scrapes pixmill serve"
tests/serve/test_prometheus.sh build/pixmill >"$LOGS/prometheus.log" 2>&1 || step_fail "Prometheus test"
grep -E '^FAIL|passed' "$LOGS/prometheus.log"
tally "$LOGS/prometheus.log"

echo "== dashboard end to end (headless Chromium)"
mkdir -p test-output
tests/dashboard/run.sh test-output >"$LOGS/dashboard.log" 2>&1 || step_fail "dashboard e2e"
grep -E '^FAIL|passed|failed' "$LOGS/dashboard.log" | tail -n 5
tally "$LOGS/dashboard.log"

echo "== crash-resume test"
tests/cli/test_resume.sh build/pixmill >"$LOGS/resume.log" 2>&1 || step_fail "crash-resume test"
grep -E '^FAIL|passed' "$LOGS/resume.log"
tally "$LOGS/resume.log"

echo "== build (ASan+UBSan)"
if make -j"$(nproc)" SAN=1 all >"$LOGS/build-asan.log" 2>&1; then
  run_tier asan build-asan
else
  tail -n 30 "$LOGS/build-asan.log"; step_fail "ASan build"
fi

echo "== fuzz (${FUZZ_SECONDS}s per target)"
if make -j"$(nproc)" fuzz >"$LOGS/build-fuzz.log" 2>&1; then
  for f in build-fuzz/fuzz_*; do
    n=$(basename "$f")
    seeds=fuzz/corpus/${n#fuzz_}
    work=$(mktemp -d)
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
    # image fuzzer: seed with the small real files of the edge corpus
    if [ "$n" = fuzz_image ] && [ -d "$PIXMILL_CORPUS/edge" ]; then
      find "$PIXMILL_CORPUS/edge" -type f -size -64k -exec cp {} "$work"/ \;
    fi
    if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 "$work" >"$LOGS/$n.log" 2>&1; then
      echo "ok   $n: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$LOGS/$n.log" | tail -1)"
      total_pass=$((total_pass + 1))
    else
      tail -n 40 "$LOGS/$n.log"; step_fail "fuzzer $n found a crash"
    fi
    rm -rf "$work"
  done
else
  tail -n 30 "$LOGS/build-fuzz.log"; step_fail "fuzz build"
fi

echo "== clang-format"
if clang-format --dry-run -Werror $(find src tests fuzz bench -name '*.[ch]') >"$LOGS/format.log" 2>&1; then
  echo "ok   clang-format"; total_pass=$((total_pass + 1))
else
  head -n 20 "$LOGS/format.log"; step_fail "clang-format (run: make format)"
fi

rm -rf "$LOGS"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
