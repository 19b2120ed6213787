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
# The catalog views: a folder (examples/images, two corpus photos, a byte
# copy of one image, a mirrored copy of another, and a rendered text
# image) is catalogued with `pixmill run FOLDER --pipeline catalog` into a
# third data folder, the analyze stage talking to the local vision
# stand-in (tests/vision/server.py); a third server serves it, and e2e.mjs
# checks the gallery, its filters and search, and the image pages.
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
PID3=
VPID=
cleanup() {
	for p in "$PID" "$PID2" "$PID3" "$VPID"; do
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

# ready_port PID PORTFILE: prints the port once the server PID answers
# /health/ready (30 s at most); fails if it does not.
ready_port() {
	local port
	for _ in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || return 1
		port=$(tr -dc 0-9 2>/dev/null <"$2")
		if [ -n "$port" ] && python3 - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/health/ready" % sys.argv[1], timeout=2)
EOF
			echo "$port"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# The second server: an API key is needed for everything but the page.
API_KEY=pm-dashboard-e2e-key-$$-0123456789
KEY_SHA=$(printf %s "$API_KEY" | "$PIXMILL" hash-key) || die "hash-key failed"
printf '{"api_keys": [{"name": "e2e", "sha256": "%s"}]}\n' "$KEY_SHA" >"$TMP/auth.json"
"$PIXMILL" serve --listen 127.0.0.1:0 --port-file "$TMP/port2" --data "$TMP/data2" \
	--workers 1 --config "$TMP/auth.json" >"$OUT/server-auth.log" 2>&1 &
PID2=$!
PORT2=$(ready_port "$PID2" "$TMP/port2") ||
	die "the server with an API key did not get ready (log: $OUT/server-auth.log)"

# The catalog: a folder run through the catalog pipeline, with captions
# from the local vision stand-in, then served by a third server.
FOLDER=$TMP/folder
mkdir -p "$FOLDER" || die "cannot create $FOLDER"
cp "$ROOT"/examples/images/*.jpg "$FOLDER/" || die "no examples/images"
mapfile -t more < <(find "$CORPUS/photos" -maxdepth 1 -type f -iname '*.jpg' | LC_ALL=C sort | sed -n '4,5p')
[ "${#more[@]}" -eq 2 ] || die "need 5 photos in $CORPUS/photos"
cp "${more[@]}" "$FOLDER/"
cp "$FOLDER/opencv_fruits.jpg" "$FOLDER/fruits-copy.jpg"
vips flip "$FOLDER/palapeli_castle-maintenon.jpg" "$FOLDER/castle-mirror.jpg" horizontal ||
	die "vips flip failed (libvips-tools)"
vips text "$TMP/text.v" "Quarterly invoice for Zephyr Pumps" --dpi 200 &&
	vips invert "$TMP/text.v" "$TMP/inv.v" &&
	vips embed "$TMP/inv.v" "$FOLDER/invoice.png" 40 40 1000 200 --extend white ||
	die "cannot render the text image"
CAT_IMAGES=$(sha256sum "$FOLDER"/* | awk '{print $1}' | sort -u | wc -l)
python3 "$ROOT/tests/vision/server.py" --port-file "$TMP/vport" --log "$TMP/vision.jsonl" \
	2>"$OUT/vision-server.log" &
VPID=$!
for _ in $(seq 1 100); do [ -s "$TMP/vport" ] && break; sleep 0.1; done
[ -s "$TMP/vport" ] || die "the vision stand-in did not start (log: $OUT/vision-server.log)"
PIXMILL_VISION_URL=http://127.0.0.1:$(cat "$TMP/vport")/v1 PIXMILL_VISION_MODEL=e2e-vision \
	"$PIXMILL" run "$FOLDER" --pipeline catalog --out "$TMP/data3/out" \
	--db "$TMP/data3/pixmill.db" --workers 2 --quiet >"$OUT/catalog-run.log" 2>&1 ||
	die "pixmill run --pipeline catalog failed (log: $OUT/catalog-run.log)"
kill -TERM "$VPID" 2>/dev/null
wait "$VPID" 2>/dev/null
VPID=
"$PIXMILL" serve --listen 127.0.0.1:0 --port-file "$TMP/port3" --data "$TMP/data3" \
	--workers 1 >"$OUT/server-catalog.log" 2>&1 &
PID3=$!
PORT3=$(ready_port "$PID3" "$TMP/port3") ||
	die "the catalog server did not get ready (log: $OUT/server-catalog.log)"

BASE_URL=http://127.0.0.1:$PORT CATALOG=$CATALOG ITEMS=3 QUERY=Zanzibar \
	AUTH_BASE_URL=http://127.0.0.1:$PORT2 API_KEY=$API_KEY UPLOAD=${photos[0]} \
	CAT_BASE_URL=http://127.0.0.1:$PORT3 CAT_IMAGES=$CAT_IMAGES CAT_TEXT_FILE=invoice.png \
	CAT_TEXT_WORD=zephyr CAT_COPY=fruits-copy.jpg CAT_ORIGINAL=palapeli_castle-maintenon.jpg \
	CAT_MIRROR=castle-mirror.jpg OUTDIR=$OUT node "$HERE/e2e.mjs"
rc=$?

# Graceful stop: SIGTERM drains; each server must exit 0 within 30 s.
# stop_server PID WHAT LOG
stop_server() {
	local src
	kill -TERM "$1"
	for _ in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		echo "FAIL $2 still running 30 s after SIGTERM (log: $3)"
		return 1
	fi
	wait "$1"
	src=$?
	if [ "$src" != 0 ]; then
		echo "FAIL $2 exited $src after SIGTERM (log: $3)"
		return 1
	fi
	return 0
}
# (a server that did not stop stays in PID* for cleanup's SIGKILL)
if stop_server "$PID" server "$OUT/server.log"; then PID=; else rc=1; fi
if stop_server "$PID2" "server with a key" "$OUT/server-auth.log"; then PID2=; else rc=1; fi
if stop_server "$PID3" "catalog server" "$OUT/server-catalog.log"; then PID3=; else rc=1; fi
[ "$rc" = 0 ] && echo "screenshot: $OUT/dashboard.png"
exit "$rc"
