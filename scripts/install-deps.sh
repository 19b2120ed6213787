#!/usr/bin/env bash
# install-deps.sh — installs what pixmill needs to build and test, from
# Debian's packages only. Idempotent; run as root (or with sudo available).
set -euo pipefail
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential pkg-config git
  libvips-dev libvips-tools      # image decode/resize/encode
  libsqlite3-dev sqlite3         # embedded store
  libpq-dev postgresql           # PostgreSQL store (--db postgres://) and its test server
  libhiredis-dev redis-server    # optional shared cache and rate limits (worker --redis) and its test server
  iproute2                       # ip netns/veth for the multi-host test
  libjansson-dev                 # JSON
  libjemalloc-dev                # allocator (libvips fragments glibc malloc)
  libssl-dev                     # SHA-256 (libcrypto, SHA-NI)
  libcurl4-openssl-dev           # http(s) sources (curl multi)
  clang libclang-rt-14-dev       # fuzzers (libFuzzer)
  clang-format                   # style check
  python3                        # test helpers
  python3-onnx python3-numpy     # tests/ml/make_tiny_model.py (the test ONNX model)
  libtesseract-dev tesseract-ocr tesseract-ocr-eng  # ocr stage (C API; the CLI for bench/ocr.sh)
  fonts-dejavu-core fonts-liberation fonts-freefont-ttf  # fonts for the rendered OCR test cards
  fonts-noto-core fonts-wqy-microhei  # ad templates: Noto Sans (Latin, Greek, Cyrillic); WenQuanYi Micro Hei (CJK, Hangul fallback)
  libmicrohttpd-dev              # pixmill serve: HTTP server
  zlib1g-dev libbrotli-dev libzstd-dev  # serve: gzip, brotli, zstd
  wrk nginx                      # serve benchmarks (wrk; nginx as the peer)
  prometheus                     # promtool + a real scrape in the tests
  chromium                       # dashboard end-to-end test (headless)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The dashboard (web/: uPlot, embedded in the binary at build time) and its
# end-to-end test (tests/dashboard/: playwright-core driving Debian's
# chromium). No third-party code is kept in the repository: each folder's
# package.json pins exact versions and its package-lock.json the integrity
# hashes, and `npm ci` fetches exactly those. Skipped when node_modules
# already holds what the lock file says.
command -v npm >/dev/null || {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for d in web tests/dashboard; do
  if ! node -e '
    const [lock, have] = process.argv.slice(1).map((f) => require(f).packages || {});
    delete lock[""];
    const same = Object.keys(lock).length === Object.keys(have).length &&
      Object.entries(lock).every(([k, v]) => have[k] && have[k].version === v.version &&
                                             have[k].integrity === v.integrity);
    process.exit(same ? 0 : 1);' "$ROOT/$d/package-lock.json" "$ROOT/$d/node_modules/.package-lock.json" 2>/dev/null
  then
    (cd "$ROOT/$d" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
      { echo "npm ci in $d failed"; exit 1; }
  fi
done

# ONNX Runtime (isnet cut-out, ONNX embedding models): headers and
# libonnxruntime.so from npm, pinned by version and SHA-256, into deps/.
"$ROOT/scripts/fetch-ort.sh" || { echo "fetching ONNX Runtime failed"; exit 1; }
