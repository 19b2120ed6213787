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
  libjansson-dev                 # JSON
  libjemalloc-dev                # allocator (libvips fragments glibc malloc)
  libssl-dev                     # SHA-256 (libcrypto, SHA-NI)
  libcurl4-openssl-dev           # http(s) sources (curl multi)
  clang libclang-rt-14-dev       # fuzzers (libFuzzer)
  clang-format                   # style check
  python3                        # test helpers
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
