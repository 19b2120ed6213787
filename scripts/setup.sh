#!/usr/bin/env bash
# setup.sh — the README's first command: install dependencies, build, and
# run the main job on the bundled example catalog (SQLite, no servers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make -j"$(nproc)" build/pixmill
rm -rf example-out
echo "== pixmill run examples/catalog.csv --out example-out"
build/pixmill run examples/catalog.csv --out example-out
echo "== pixmill status --db example-out/pixmill.db"
build/pixmill status --db example-out/pixmill.db
echo
echo "Thumbnails are under example-out/ (content-addressed), one manifest per run"
echo "under example-out/manifests/, records in example-out/pixmill.db."
