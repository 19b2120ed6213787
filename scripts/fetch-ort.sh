#!/usr/bin/env bash
# fetch-ort.sh — fetches ONNX Runtime (C API headers + libonnxruntime.so,
# Linux x64) for the `isnet` cut-out engine and ONNX embedding models.
#
# Source: the npm package com.github.asus4.onnxruntime (a Unity plugin that
# ships the official ONNX Runtime builds), pinned below by version and by
# the SHA-256 of its tarball. `npm pack` downloads it into deps/cache/ (npm
# also checks the registry's sha512 integrity); this script checks the
# SHA-256, then extracts only
#   Plugins/Linux/x64/libonnxruntime.so   -> deps/onnxruntime/lib/
#   the C API headers (onnxruntime_*.h, from the package's Apple framework
#   folder: the headers are platform independent) -> deps/onnxruntime/include/
# deps/ is not committed (.gitignore). Idempotent: does nothing when
# deps/onnxruntime/VERSION already names this version and checksum.
# Called by scripts/install-deps.sh; needs npm, tar, sha256sum.
set -euo pipefail
PKG=com.github.asus4.onnxruntime
VER=0.4.9            # ships ONNX Runtime 1.29.0 (ORT_API_VERSION 29)
ORT_VER=1.29.0
SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/deps/onnxruntime
CACHE=$ROOT/deps/cache
STAMP="$PKG@$VER sha256=$SHA256 ort=$ORT_VER"

if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$STAMP" ] &&
   [ -f "$DEST/lib/libonnxruntime.so.$ORT_VER" ] && [ -f "$DEST/include/onnxruntime_c_api.h" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-ort: npm is needed (apt-get install npm)" >&2; exit 1; }

mkdir -p "$CACHE"
TGZ=$CACHE/$PKG-$VER.tgz
have_ok() { [ -f "$TGZ" ] && [ "$(sha256sum "$TGZ" | cut -d' ' -f1)" = "$SHA256" ]; }
if ! have_ok; then
  rm -f "$TGZ"
  echo "fetch-ort: npm pack $PKG@$VER (about 150 MB)"
  (cd "$CACHE" && npm pack "$PKG@$VER" --silent >/dev/null) ||
    { echo "fetch-ort: npm pack $PKG@$VER failed (network? registry?)" >&2; exit 1; }
  if ! have_ok; then
    echo "fetch-ort: SHA-256 mismatch for $TGZ" >&2
    echo "  expected $SHA256" >&2
    echo "  got      $(sha256sum "$TGZ" | cut -d' ' -f1)" >&2
    rm -f "$TGZ"; exit 1
  fi
fi

TMP=$(mktemp -d "$ROOT/deps/.ort.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
HDR='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'
tar -xzf "$TGZ" -C "$TMP" package/Plugins/Linux/x64/libonnxruntime.so "$HDR" \
  package/LICENSE package/ThirdPartyNotices.txt
mkdir -p "$TMP/out/lib" "$TMP/out/include"
# The library's SONAME is libonnxruntime.so.1 (what the binary asks for at
# run time); libonnxruntime.so is for the linker.
cp "$TMP/package/Plugins/Linux/x64/libonnxruntime.so" "$TMP/out/lib/libonnxruntime.so.$ORT_VER"
ln -s "libonnxruntime.so.$ORT_VER" "$TMP/out/lib/libonnxruntime.so.1"
ln -s "libonnxruntime.so.$ORT_VER" "$TMP/out/lib/libonnxruntime.so"
cp "$TMP/$HDR"/onnxruntime_*.h "$TMP/$HDR"/cpu_provider_factory.h "$TMP/out/include/"
cp "$TMP/package/LICENSE" "$TMP/package/ThirdPartyNotices.txt" "$TMP/out/"
grep -q "define ORT_API_VERSION $(echo "$ORT_VER" | cut -d. -f2)\$" "$TMP/out/include/onnxruntime_c_api.h" ||
  { echo "fetch-ort: headers are not ORT $ORT_VER" >&2; exit 1; }
echo "$STAMP" >"$TMP/out/VERSION"
rm -rf "$DEST"
mv "$TMP/out" "$DEST"
echo "fetch-ort: ONNX Runtime $ORT_VER in $DEST"
