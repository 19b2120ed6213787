#!/usr/bin/env bash
# test_tls.sh — https origins: a real nginx (Debian's package) on loopback
# with a certificate from a CA made here, serving HTTP/2. pixmill must
# verify the certificate (refusing it without the CA, with a clear reason),
# trust it with --ca-file, speak HTTP/2 and multiplex many requests over
# few connections, and apply a --host-limit override.
#
# Usage: tests/cli/test_tls.sh PIXMILL_BINARY
# Ends with "tls: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_tls.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/cli/lib.sh"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || { echo "FAIL nginx not installed (scripts/install-deps.sh installs it)"; echo "tls: 0 passed, 1 failed"; exit 1; }
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
trap '[ -f "$T/nginx.pid" ] && kill "$(cat "$T/nginx.pid")" 2>/dev/null; rm -rf "$T"' EXIT

# A CA and a server certificate for localhost and 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pixmill test CA" \
  -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$T/srv.key" -out "$T/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
  -days 2 -extfile "$T/ext" -out "$T/srv.pem" 2>/dev/null
check "a CA and a server certificate were made" test -s "$T/srv.pem"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$T/ngx"
cat >"$T/nginx.conf" <<CONF
worker_processes 1;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  log_format t '\$server_protocol \$connection \$request_uri \$status';
  client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx;
  uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  types { image/jpeg jpg; }
  server {
    listen 127.0.0.1:$PORT ssl http2;
    ssl_certificate $T/srv.pem;
    ssl_certificate_key $T/srv.key;
    access_log $T/access.log t;
    root $ROOT/examples/images;
  }
}
CONF
"$NGINX" -c "$T/nginx.conf" -e "$T/error.log" 2>"$T/nginx.err" || { echo "FAIL nginx did not start: $(cat "$T/nginx.err")"; echo "tls: $pass passed, $((fail + 1)) failed"; exit 1; }
for _ in $(seq 50); do [ -s "$T/nginx.pid" ] && break; sleep 0.1; done
U="https://localhost:$PORT"
{ echo "id,image"; for i in $(seq 40); do echo "p$i,$U/opencv_fruits.jpg?tag=$i"; done; } >"$T/cat.csv"
cd "$ROOT"

# 1. Without the CA: refused, each item with the verification failure.
"$PM" run "$T/cat.csv" --out "$T/o1" --allow-host localhost --max-attempts 1 -p bench/peer.json --json >"$T/o1.json" 2>/dev/null
rc=$?
eq "untrusted certificate: every item fails, exit 1" "$rc $(jq_ "$T/o1.json" "d['failed']")" "1 40"
reason=$("$PM" dlq list --db "$T/o1/pixmill.db" --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(d[0]['error'] if d else '')" )
check "untrusted certificate: the reason names the certificate ($reason)" grep -qi "certificate" <<<"$reason"

# 2. With --ca-file: all done, over HTTP/2, on few connections.
: >"$T/access.log"
"$PM" run "$T/cat.csv" --out "$T/o2" --allow-host localhost --ca-file "$T/ca.pem" -p bench/peer.json --json >"$T/o2.json" 2>"$T/o2.err"
eq "trusted with --ca-file: 40 done" "$(jq_ "$T/o2.json" "(d['done'], d['failed'])")" "(40, 0)"
kill -USR1 "$(cat "$T/nginx.pid")" 2>/dev/null; sleep 0.3
eq "nginx saw 40 requests" "$(grep -c ' 200$' "$T/access.log")" 40
eq "every request was HTTP/2" "$(awk '{print $1}' "$T/access.log" | sort -u)" "HTTP/2.0"
conns=$(awk '{print $2}' "$T/access.log" | sort -u | wc -l)
check "multiplexed: 40 requests on at most 2 connections (saw $conns)" test "$conns" -le 2

# 3. --host-limit: with no global rate limit (--per-host-rps 0), an
# override of 1 transfer at a time and 10 req/s for this host. 20 requests
# then take at least 1.9 s (the burst is 1); without the override they
# take a fraction of a second. Only this lower bound is checked, which a
# slow machine cannot break.
head -n 21 "$T/cat.csv" >"$T/cat20.csv"
t0=$(date +%s.%N)
"$PM" run "$T/cat20.csv" --out "$T/o3" --allow-host localhost --ca-file "$T/ca.pem" --per-host-rps 0 \
  --host-limit "nothere.example=64,*.other.example=2,localhost=1/10" -p bench/peer.json --json >"$T/o3.json" 2>/dev/null
t1=$(date +%s.%N)
eq "--host-limit localhost=1/10: 20 done" "$(jq_ "$T/o3.json" "d['done']")" 20
check "--host-limit: 20 requests at 10/s took at least 1.5 s ($(python3 -c "print(round($t1-$t0,2))") s)" \
  python3 -c "import sys; sys.exit(0 if $t1 - $t0 >= 1.5 else 1)"
"$PM" run "$T/cat.csv" --out "$T/o4" --host-limit "localhost=0" -p bench/peer.json >/dev/null 2>"$T/o4.err"
eq "--host-limit with a bad value: usage error, exit 2" "$?" 2
check "--host-limit with a bad value: says what it wants" grep -q "HOST=N\[/RPS\]" "$T/o4.err"

echo "tls: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
