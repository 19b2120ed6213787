#!/usr/bin/env bash
# test.sh — the README's second command and what CI runs: installs the
# dependencies, builds with warnings as errors, and runs every tier:
#   1. unit tests (tests/unit) and CLI tests (tests/cli), release build,
#      the network tests (tests/cli/test_network.sh), the search tests
#      (tests/cli/test_search.sh), the HTTP API tests
#      (tests/serve/test_api.sh), a real Prometheus scraping `serve`
#      (tests/serve/test_prometheus.sh) and the dashboard in headless
#      Chromium (tests/dashboard/run.sh)
#      and the analyze stage against a local vision test server
#      (tests/vision/test_analyze.sh)
#   2. the crash-resume test (kill -9 at several points, exactly-once)
#   2a. PostgreSQL store: a real server from Debian's packages, the store
#       conformance suite on it and a CLI round trip (tests/store/pg.sh);
#       the fleet: `run --enqueue-only` and several `pixmill worker`s on one
#       store, SQLite and PostgreSQL, a worker killed with SIGKILL, SIGTERM,
#       priorities, hostile queue rows (tests/fleet/test_fleet.sh)
#   2a'. fleet: PostgreSQL restarted under running workers
#       (tests/fleet/test_pg_restart.sh) and workers on two simulated hosts
#       (network namespaces on a veth bridge, tests/fleet/test_multihost.sh;
#       SKIP without root)
#       Redis: a fleet sharing rate limits, cache and progress through a
#       real redis-server, and Redis killed mid-run (tests/redis/test_redis.sh)
#   2b. OCR: recipe cards rendered and scored (tests/ocr/run.sh)
#   2c. ads: a products CSV through the ads pipeline, every ad OCR'd
#       (tests/ads/run.sh); image candidates ranked and verified, early
#       termination, placeholders, stats, the output lock
#       (tests/ads/test_ranking.sh)
#   3. unit, CLI, network, API and search tests again under ASan+UBSan,
#      the store conformance suite on PostgreSQL and the Redis fleet tests
#   4. each libFuzzer target for a short time (FUZZ_SECONDS, default 20;
#      FUZZ_JOBS at a time, default one per core)
#   5. clang-format check
# Ends with the line "N passed, N failed" summed over every tier.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
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
# suite LOG WHAT CMD...: runs one test script (output in $LOGS/LOG.log),
# shows its FAIL/SKIP/summary lines (or those matching $SHOW) and adds its
# counts; a non-zero exit is one more failure, named WHAT, and shows the
# log's last 40 lines (the server logs a failing suite prints).
suite() {
  local log=$1 what=$2
  shift 2
  if ! "$@" >"$LOGS/$log.log" 2>&1; then
    step_fail "$what"
    echo "---- last lines of its log ----"
    tail -n 40 "$LOGS/$log.log"
    echo "----"
  fi
  grep -E "${SHOW:-^FAIL|^SKIP|passed}" "$LOGS/$log.log"
  tally "$LOGS/$log.log"
}
LOGS=$(mktemp -d)
# sec NAME: starts a section; prints how long the previous one took, so a
# CI log shows where the time goes.
SEC_NAME= SEC_T=0
sec() {
  [ -n "$SEC_NAME" ] && echo "   ($((SECONDS - SEC_T)) s)"
  SEC_NAME=$1 SEC_T=$SECONDS
  echo "== $1"
}

run_tier() { # run_tier NAME BUILD_DIR
  local name=$1 b=$2
  sec "$name: unit tests"
  for t in "$b"/tests/test_*; do
    local log="$LOGS/$name-$(basename "$t").log" rc=0
    "$t" >"$log" 2>&1 || rc=$?
    tail -n 20 "$log" | grep -E 'passed|FAIL|failed|ERROR|SKIP' | tail -n 5
    if [ "$rc" -ne 0 ]; then
      step_fail "$name $(basename "$t") (exit $rc)"
      # a sanitizer report from its start (stack frames push the summary
      # line far down), otherwise the log's last lines
      if grep -q -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$log"; then
        grep -m 1 -A 60 -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$log"
      else
        tail -n 40 "$log"
      fi
    fi
    tally "$log"
  done
  sec "$name: CLI tests"
  suite $name-cli "$name CLI tests" tests/cli/test_cli.sh "$b/pixmill"
  sec "$name: status of queue jobs (tests/cli/test_status_queue.sh)"
  suite $name-status-queue "$name status queue tests" tests/cli/test_status_queue.sh "$b/pixmill"
  sec "$name: queue prune and cancel (tests/cli/test_queue_prune.sh)"
  suite $name-queue-prune "$name queue prune tests" tests/cli/test_queue_prune.sh "$b/pixmill"
  sec "$name: models command (install errors, licence opt-in, ISNet mask)"
  suite $name-models "$name models tests" tests/cli/test_models.sh "$b/pixmill"
  sec "$name: network tests (local origin, injected faults, kill -9)"
  suite $name-net "$name network tests" tests/cli/test_network.sh "$b/pixmill"
  sec "$name: https origin (nginx, HTTP/2, a CA of our own)"
  suite $name-tls "$name TLS tests" tests/cli/test_tls.sh "$b/pixmill"
  sec "$name: HTTP API tests (pixmill serve on loopback)"
  suite $name-api "$name API tests" tests/serve/test_api.sh "$b/pixmill"
  sec "$name: search tests (search image/text, dupes, embed on the edge corpus)"
  # under ASan only the first 16 of the 112 edited copies are searched
  suite $name-search "$name search tests" env SEARCH_EDITS=$([ "$name" = asan ] && echo 16) tests/cli/test_search.sh "$b/pixmill"
}

sec "build (release, -Werror)"
make -j"$(nproc)" all >"$LOGS/build.log" 2>&1 || { cat "$LOGS/build.log"; echo "0 passed, 1 failed"; exit 1; }
# The ISNet model (AGPL-3.0, so an explicit opt-in) for the isnet tests:
# downloaded once into the models folder (a no-op when it is there with the
# right SHA-256). Without it those tests print SKIP.
sec "ISNet model (pixmill models install isnet)"
build/pixmill models install isnet --accept-license >"$LOGS/models.log" 2>&1 ||
  { tail -n 5 "$LOGS/models.log"; step_fail "models install isnet"; }
run_tier release build

sec "a real Prometheus server scrapes pixmill serve"
suite prometheus "Prometheus test" tests/serve/test_prometheus.sh build/pixmill

sec "dashboard end to end (headless Chromium)"
mkdir -p test-output
tests/dashboard/run.sh test-output >"$LOGS/dashboard.log" 2>&1
rc=$?
grep -E '^FAIL|passed|failed' "$LOGS/dashboard.log" | tail -n 5
before=$total_fail
tally "$LOGS/dashboard.log"
# A failure is counted once: by its "N failed" line, or (when the run
# failed without one, e.g. the server did not exit 0) here.
[ "$rc" -ne 0 ] && [ "$total_fail" -eq "$before" ] && step_fail "dashboard e2e (exit $rc)"

sec "vision model analysis (analyze stage, local OpenAI-compatible test server)"
suite vision "vision tests" tests/vision/test_analyze.sh build/pixmill

sec "image search providers (--search-provider, local Google CSE / Bing v7 test server)"
suite providers "provider tests" tests/providers/test_providers.sh build/pixmill

sec "crash-resume test"
suite resume "crash-resume test" tests/cli/test_resume.sh build/pixmill

sec "PostgreSQL store: conformance suite and CLI round trip (tests/store/pg.sh)"
suite pg "PostgreSQL store tests" tests/store/pg.sh build

sec "store connection pool: unit test on SQLite and PostgreSQL, serve --db-pool 1 under concurrent requests (tests/serve/test_pool.sh)"
suite pool "store pool tests" tests/serve/test_pool.sh build

sec "fleet: pixmill worker on a shared store (SQLite; PostgreSQL: SIGKILL, SIGSTOP, SIGTERM, priority)"
suite fleet "fleet tests" tests/fleet/test_fleet.sh build

sec "fleet: PostgreSQL restarted under 3 workers (tests/fleet/test_pg_restart.sh)"
suite pg-restart "PostgreSQL restart test" tests/fleet/test_pg_restart.sh build/pixmill
sec "fleet: two hosts in network namespaces, one queue (tests/fleet/test_multihost.sh)"
suite multihost "multi-host test" tests/fleet/test_multihost.sh build/pixmill

sec "Redis fleet: shared rate limit, kill -9 mid-run, bad URLs, shared cache, pub/sub (tests/redis/test_redis.sh)"
suite redis "Redis fleet tests" tests/redis/test_redis.sh build/pixmill

sec "OCR: 44 rendered recipe cards (accuracy, ingredient F1), edge corpus"
SHOW='^FAIL|passed|char accuracy' suite ocr "OCR tests" tests/ocr/run.sh build/pixmill

sec "ads: products CSV -> ads per template (sizes, dedup), OCR'd title and price, edge corpus"
suite ads "ads tests" tests/ads/run.sh build/pixmill
sec "ads: candidate ranking, verification, placeholders, stats (test origin, vision test server)"
suite ads-ranking "ads ranking tests" tests/ads/test_ranking.sh build/pixmill

sec "build (ASan+UBSan)"
if make -j"$(nproc)" SAN=1 all >"$LOGS/build-asan.log" 2>&1; then
  run_tier asan build-asan
  sec "asan: store conformance suite on PostgreSQL"
  suite asan-pg "asan PostgreSQL store tests" env PG_UNIT_ONLY=1 tests/store/pg.sh build-asan
  sec "asan: store connection pool (tests/serve/test_pool.sh)"
  suite asan-pool "asan store pool tests" tests/serve/test_pool.sh build-asan
  sec "asan: Redis fleet tests (tests/redis/test_redis.sh)"
  suite asan-redis "asan Redis fleet tests" tests/redis/test_redis.sh build-asan/pixmill
  sec "asan: OCR on the edge corpus and error paths"
  suite asan-ocr "asan OCR tests" env OCR_EDGE_ONLY=1 tests/ocr/run.sh build-asan/pixmill
  sec "asan: image search providers"
  suite asan-providers "asan provider tests" tests/providers/test_providers.sh build-asan/pixmill
  sec "asan: ads pipeline on the edge corpus and a hostile template"
  suite asan-ads "asan ads tests" env ADS_EDGE_ONLY=1 tests/ads/run.sh build-asan/pixmill
  sec "asan: ads candidate ranking, verification and placeholders"
  suite asan-ads-ranking "asan ads ranking tests" env PIXMILL_ORIGIN=build/tests/origin tests/ads/test_ranking.sh build-asan/pixmill
else
  tail -n 30 "$LOGS/build-asan.log"; step_fail "ASan build"
fi

sec "fuzz (${FUZZ_SECONDS}s per target, $FUZZ_JOBS at a time)"
fuzz_one() { # fuzz_one TARGET: runs one fuzzer; its log and "ok"/"fail" go to $LOGS
  local f=$1 n work seeds
  n=$(basename "$f")
  seeds=fuzz/corpus/${n#fuzz_}
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  # image fuzzer: seed with the small real files of the edge corpus
  if [ "$n" = fuzz_image ] && [ -d "$PIXMILL_CORPUS/edge" ]; then
    find "$PIXMILL_CORPUS/edge" -type f -size -64k -exec cp {} "$work"/ \;
  fi
  if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 "$work" >"$LOGS/$n.log" 2>&1; then
    echo ok >"$LOGS/$n.result"
  else
    echo fail >"$LOGS/$n.result"
  fi
  rm -rf "$work"
}
if make -j"$(nproc)" fuzz >"$LOGS/build-fuzz.log" 2>&1; then
  # Fuzzers are CPU-bound and single-threaded: one per core.
  for f in build-fuzz/fuzz_*; do
    while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n; done
    fuzz_one "$f" &
  done
  wait
  for f in build-fuzz/fuzz_*; do
    n=$(basename "$f")
    if [ "$(cat "$LOGS/$n.result" 2>/dev/null)" = ok ]; then
      echo "ok   $n: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$LOGS/$n.log" | tail -1)"
      total_pass=$((total_pass + 1))
    else
      tail -n 40 "$LOGS/$n.log"; step_fail "fuzzer $n found a crash"
    fi
  done
else
  tail -n 30 "$LOGS/build-fuzz.log"; step_fail "fuzz build"
fi

sec "clang-format"
if clang-format --dry-run -Werror $(find src tests fuzz bench -name '*.[ch]') >"$LOGS/format.log" 2>&1; then
  echo "ok   clang-format"; total_pass=$((total_pass + 1))
else
  head -n 20 "$LOGS/format.log"; step_fail "clang-format (run: make format)"
fi

sec "end"
rm -rf "$LOGS"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
