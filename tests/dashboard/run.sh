#!/usr/bin/env bash
# tests/dashboard/run.sh [OUTDIR] — the dashboard's end-to-end test.
#
# Starts `$PIXMILL serve` (default build/pixmill) on a free loopback port
# with a fresh data folder, waits for /health/ready, and runs e2e.mjs in
# headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core
# from tests/dashboard/node_modules: `npm ci` there, which
# scripts/install-deps.sh does). e2e.mjs submits a 3-row CSV catalog of
# photos from ../shared/corpus/photos through the page's form, watches the
# job reach 100%, checks the gallery and the text search, and saves
# OUTDIR/dashboard.png (default build/test-output/dashboard). A second
# server with an API key in its config (and public_assets off) checks the
# page under authentication: it asks for the key, and the gallery shows an
# output fetched with the key (a plain <img> would get 401). Then both
# servers get SIGTERM and must drain and exit 0.
#
# Prints e2e.mjs's "dashboard e2e: N passed, M failed"; exits non-zero on
# any failure. Environment: PIXMILL, PIXMILL_CORPUS, CHROMIUM.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/build/test-output/dashboard}
PIXMILL=${PIXMILL:-$ROOT/build/pixmill}
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

die() {
	echo "dashboard e2e: $*" >&2
	echo "dashboard e2e: 0 passed, 1 failed"
	exit 1
}

command -v node >/dev/null || die "node not found: run scripts/install-deps.sh"
[ -d "$HERE/node_modules/playwright-core" ] ||
	die "playwright-core missing: run scripts/install-deps.sh (npm ci in tests/dashboard/)"
[ -x "$CHROMIUM" ] || die "$CHROMIUM not found: run scripts/install-deps.sh (Debian chromium)"
[ -x "$PIXMILL" ] || die "$PIXMILL not found: build it first (make)"
"$PIXMILL" help serve >/dev/null 2>&1 || die "$PIXMILL has no serve command"
[ -d "$CORPUS/photos" ] || die "no photos in $CORPUS/photos (set PIXMILL_CORPUS)"

mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pixmill-dashboard.XXXXXX")
PID=
PID2=
cleanup() {
	for p in "$PID" "$PID2"; do
		if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null
			wait "$p" 2>/dev/null
		fi
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The catalog: 3 photos by absolute path. One title carries HTML, which the
# page must show as text; QUERY is a word of another title.
mapfile -t photos < <(find "$CORPUS/photos" -maxdepth 1 -type f \
	\( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | LC_ALL=C sort | head -n 3)
[ "${#photos[@]}" -eq 3 ] || die "need 3 photos in $CORPUS/photos"
CATALOG=$TMP/e2e-catalog.csv
{
	echo "id,title,image"
	echo "e2e-1,Zanzibar lighthouse at dusk,\"${photos[0]}\""
	echo "e2e-2,Meadow <b>bold</b> & sons,\"${photos[1]}\""
	echo "e2e-3,Quiet harbour morning,\"${photos[2]}\""
} >"$CATALOG"

# A free port: port 0 and --port-file when the server has it (no race),
# else ask the kernel for one and hope nobody takes it meanwhile.
PORT_FILE=$TMP/port
if "$PIXMILL" help serve 2>&1 | grep -q -- '--port-file'; then
	LISTEN=127.0.0.1:0
	PORT_ARGS=(--port-file "$PORT_FILE")
else
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	LISTEN=127.0.0.1:$PORT
	PORT_ARGS=()
	echo "$PORT" >"$PORT_FILE"
fi

"$PIXMILL" serve --listen "$LISTEN" --data "$TMP/data" --workers 2 \
	"${PORT_ARGS[@]}" >"$OUT/server.log" 2>&1 &
PID=$!

# Wait (30 s at most) for the port, then for /health/ready.
ready=0
for _ in $(seq 1 300); do
	kill -0 "$PID" 2>/dev/null || break
	if [ -s "$PORT_FILE" ]; then
		PORT=$(tr -dc 0-9 <"$PORT_FILE")
		if python3 - "$PORT" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/health/ready" % sys.argv[1], timeout=2)
EOF
			ready=1
			break
		fi
	fi
	sleep 0.1
done
if [ "$ready" != 1 ]; then
	tail -n 20 "$OUT/server.log" >&2
	die "server did not get ready (log: $OUT/server.log)"
fi

# The second server: an API key is needed for everything but the page.
API_KEY=pm-dashboard-e2e-key-$$-0123456789
KEY_SHA=$(printf %s "$API_KEY" | "$PIXMILL" hash-key) || die "hash-key failed"
printf '{"api_keys": [{"name": "e2e", "sha256": "%s"}]}\n' "$KEY_SHA" >"$TMP/auth.json"
"$PIXMILL" serve --listen 127.0.0.1:0 --port-file "$TMP/port2" --data "$TMP/data2" \
	--workers 1 --config "$TMP/auth.json" >"$OUT/server-auth.log" 2>&1 &
PID2=$!
PORT2=
for _ in $(seq 1 300); do
	kill -0 "$PID2" 2>/dev/null || break
	PORT2=$(tr -dc 0-9 2>/dev/null <"$TMP/port2")
	[ -n "$PORT2" ] && python3 - "$PORT2" <<'EOF' 2>/dev/null && break
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/health/ready" % sys.argv[1], timeout=2)
EOF
	PORT2=
	sleep 0.1
done
[ -n "$PORT2" ] || die "the server with an API key did not get ready (log: $OUT/server-auth.log)"

BASE_URL=http://127.0.0.1:$PORT CATALOG=$CATALOG ITEMS=3 QUERY=Zanzibar \
	AUTH_BASE_URL=http://127.0.0.1:$PORT2 API_KEY=$API_KEY UPLOAD=${photos[0]} \
	OUTDIR=$OUT node "$HERE/e2e.mjs"
rc=$?

# Graceful stop: SIGTERM drains; the process must exit 0 within 30 s.
kill -TERM "$PID"
stopped=0
for _ in $(seq 1 300); do
	kill -0 "$PID" 2>/dev/null || { stopped=1; break; }
	sleep 0.1
done
if [ "$stopped" = 1 ]; then
	wait "$PID"
	src=$?
	PID=
	if [ "$src" != 0 ]; then
		echo "FAIL server exited $src after SIGTERM (log: $OUT/server.log)"
		rc=1
	fi
else
	echo "FAIL server still running 30 s after SIGTERM (log: $OUT/server.log)"
	rc=1
fi
kill -TERM "$PID2"
for _ in $(seq 1 300); do
	kill -0 "$PID2" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$PID2" 2>/dev/null; then
	echo "FAIL server with a key still running 30 s after SIGTERM (log: $OUT/server-auth.log)"
	rc=1
else
	wait "$PID2"
	src=$?
	PID2=
	if [ "$src" != 0 ]; then
		echo "FAIL server with a key exited $src after SIGTERM (log: $OUT/server-auth.log)"
		rc=1
	fi
fi
[ "$rc" = 0 ] && echo "screenshot: $OUT/dashboard.png"
exit "$rc"
