#!/usr/bin/env bash
# run.sh — HTTP library comparison for `pixmill serve`: libmicrohttpd,
# civetweb and h2o (Debian 12 packages), with nginx as the static-file
# reference, on the same machine and in the same run.
#
# Usage: bench/httplib/run.sh [OUT_DIR]   (default bench/results/httplib-<date>)
#
# Builds bench/httplib/{mhd,civetweb,h2o}.c into OUT_DIR/bin (-O2 -Wall
# -Wextra -Werror), makes a 512-px WebP from PHOTO into OUT_DIR, then for
# ROUNDS rounds starts each server in turn (so that machine noise spreads
# over all of them rather than hitting one), warms it up (WARM seconds per
# path) and runs `wrk -t2 -c64 -dDURs --latency` on /health and /file.
# wrk and the server share the machine's cores, as in the issue.
# Per server and path: median req/s and median p99 latency over the rounds,
# server CPU time per request (utime+stime of the server's processes over
# the measured run / requests), peak RSS (VmHWM; nginx: sum over master and
# workers). Writes OUT_DIR/results.md, OUT_DIR/raw.csv and wrk's output.
#
# Environment: ROUNDS=3 DUR=10 WARM=2 CONNS=64 THREADS=2
#   SERVERS="mhd-pool mhd-pool-turbo mhd-tpc civetweb civetweb-nagle h2o nginx"
#   (also: civetweb-2, civetweb with 2 worker threads)
#   PHOTO=../shared/corpus/photos/digikam_body-background_iphone7_p3.jpg
#   QUIET_PCT=25 QUIET_WAIT=90: before each measured run, wait (at most
#   QUIET_WAIT s) until the machine's CPU use over 1 s, with the server idle,
#   is below QUIET_PCT %; the machine is shared, and the figure seen is kept
#   in raw.csv (busy_before_pct) with the share of CPU others took during
#   the run (other_cpu_pct).
# Timings are for people to read; no test asserts on them.
# bench/httplib/slowloris.py PORT is a separate qualitative check (slow
# clients against each server's connection model); findings are in
# docs/bench-httplib.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
WARM=${WARM:-2}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SERVERS=${SERVERS:-"mhd-pool mhd-pool-turbo mhd-tpc civetweb civetweb-nagle h2o nginx"}
QUIET_PCT=${QUIET_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-90}
PHOTO=${PHOTO:-$ROOT/../shared/corpus/photos/digikam_body-background_iphone7_p3.jpg}
OUT=${1:-bench/results/httplib-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"/bin "$OUT"/wrk
OUT=$(realpath "$OUT")
SRC=$ROOT/bench/httplib
CFLAGS="-std=gnu11 -O2 -Wall -Wextra -Werror"
PORT0=18700
CLK=$(getconf CLK_TCK)

for t in wrk nginx vipsthumbnail pkg-config python3 curl; do
  command -v "$t" >/dev/null || { echo "missing: $t"; exit 2; }
done

echo "== build"
set -e
cc $CFLAGS -o "$OUT/bin/mhd" "$SRC/mhd.c" $(pkg-config --cflags --libs libmicrohttpd) -lpthread
cc $CFLAGS -o "$OUT/bin/civetweb" "$SRC/civetweb.c" -lcivetweb -lpthread
cc $CFLAGS -o "$OUT/bin/h2o" "$SRC/h2o.c" $(pkg-config --cflags --libs libh2o-evloop) -lpthread
set +e

FILE=$OUT/thumb.webp
vipsthumbnail "$PHOTO" -s 512 -o "$FILE[Q=80,strip]" 2>/dev/null || { echo "vipsthumbnail failed"; exit 2; }
FILE_BYTES=$(stat -c %s "$FILE")

# nginx: 2 workers, sendfile, no access log; everything under a temp prefix.
NGX=$(mktemp -d /tmp/pixmill-httplib-nginx.XXXXXX)
trap 'rm -rf "$NGX"' EXIT
chmod 755 "$NGX"
nginx_conf() { # nginx_conf PORT
  cat >"$NGX/nginx.conf" <<EOF
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $NGX/body;
  proxy_temp_path $NGX/proxy;
  fastcgi_temp_path $NGX/fastcgi;
  uwsgi_temp_path $NGX/uwsgi;
  scgi_temp_path $NGX/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /file { alias $FILE; default_type image/webp; }
    # A constant string: nginx cannot build the JSON per request, so this
    # row is a ceiling for "tiny response", not a like-for-like handler.
    location = /health { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
EOF
}

SERVER_PID=
start_server() { # start_server NAME PORT
  local name=$1 port=$2 log=$OUT/$1.log
  case $name in
  mhd-pool) "$OUT/bin/mhd" "$port" "$FILE" pool 2>>"$log" & ;;
  mhd-pool-turbo) "$OUT/bin/mhd" "$port" "$FILE" pool-turbo 2>>"$log" & ;;
  mhd-tpc) "$OUT/bin/mhd" "$port" "$FILE" tpc 2>>"$log" & ;;
  civetweb) "$OUT/bin/civetweb" "$port" "$FILE" "$CONNS" 2>>"$log" & ;;
  civetweb-nagle) "$OUT/bin/civetweb" "$port" "$FILE" "$CONNS" 0 2>>"$log" & ;;
  civetweb-2) "$OUT/bin/civetweb" "$port" "$FILE" 2 2>>"$log" & ;;
  h2o) "$OUT/bin/h2o" "$port" "$FILE" 2 2>>"$log" & ;;
  nginx) nginx_conf "$port"; nginx -p "$NGX" -c "$NGX/nginx.conf" -g 'daemon off;' 2>>"$log" & ;;
  *) echo "unknown server $name"; return 1 ;;
  esac
  SERVER_PID=$!
  local i
  for i in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return 0
    sleep 0.1
  done
  echo "$name did not come up"; return 1
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

# The server's processes: itself and (nginx) its workers.
server_pids() { echo "$SERVER_PID"; ps --ppid "$SERVER_PID" -o pid= 2>/dev/null; }
cpu_ticks() { # utime+stime of every server process, in clock ticks
  local p s=0
  for p in $(server_pids); do
    # fields after the ")" of comm: utime is the 12th, stime the 13th
    s=$((s + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo $s
}
peak_rss_kb() {
  local p s=0
  for p in $(server_pids); do
    s=$((s + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status")))
  done
  echo $s
}

# Busy and total ticks of the whole machine (/proc/stat "cpu" line).
sys_ticks() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }

# Waits until the machine is quiet (see QUIET_PCT); prints the last busy %.
wait_quiet() {
  local end=$((SECONDS + QUIET_WAIT)) b0 t0 b1 t1 pct
  while :; do
    read -r b0 t0 < <(sys_ticks); sleep 1; read -r b1 t1 < <(sys_ticks)
    pct=$(( 100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    if [ "$pct" -lt "$QUIET_PCT" ] || [ $SECONDS -ge $end ]; then echo "$pct"; return; fi
    sleep 2
  done
}

# wrk's latency to ms ("1.23ms", "870.00us", "1.01s").
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }

echo "server,round,path,req_s,p50_ms,p99_ms,requests,errors,non2xx,cpu_us_per_req,peak_rss_kb,server_cpu_pct,wrk_cpu_pct,other_cpu_pct,load1,busy_before_pct" >"$OUT/raw.csv"
{
  echo "# HTTP library benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Versions: libmicrohttpd $(pkg-config --modversion libmicrohttpd), civetweb $(dpkg-query -W -f='${Version}' libcivetweb1 2>/dev/null), libh2o-evloop $(dpkg-query -W -f='${Version}' libh2o-evloop0.13 2>/dev/null), $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
  echo "Load: wrk -t$THREADS -c$CONNS -d${DUR}s --latency (keep-alive), ${WARM}s warm-up per path, $ROUNDS rounds, servers interleaved; /file = $FILE_BYTES-byte WebP"
  echo
} >"$OUT/results.md"

port=$PORT0
for r in $(seq "$ROUNDS"); do
  for s in $SERVERS; do
    port=$((port + 1))
    echo "== round $r: $s (port $port, $(date +%T))"
    start_server "$s" "$port" || { stop_server; continue; }
    for path in /health /file; do
      url=http://127.0.0.1:$port$path
      busy=$(wait_quiet)
      wrk -t"$THREADS" -c"$CONNS" -d"${WARM}s" "$url" >/dev/null 2>&1
      tag=$s-${path#/}-$r
      load1=$(cut -d' ' -f1 /proc/loadavg)
      c0=$(cpu_ticks)
      read -r b0 t0 < <(sys_ticks)
      /usr/bin/time -f '%U %S' -o "$OUT/wrk/$tag.time" \
        wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency "$url" >"$OUT/wrk/$tag.txt" 2>&1
      read -r b1 t1 < <(sys_ticks)
      c1=$(cpu_ticks)
      # Shares of the machine's CPU (100% = every core for the whole run):
      # the server, wrk, and everything else (other sessions, plus kernel
      # work such as loopback softirqs not charged to either process).
      read -r spct wpct opct < <(awk -v c=$((c1 - c0)) -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v k="$CLK" \
        '{w = ($1 + $2) * k; printf "%.0f %.0f %.0f\n", 100 * c / t, 100 * w / t, 100 * (b - c - w) / t}' "$OUT/wrk/$tag.time")
      w=$OUT/wrk/$tag.txt
      rps=$(awk '/^Requests\/sec/ {print $2}' "$w")
      n=$(awk '/requests in/ {print $1}' "$w")
      p50=$(awk '$1 == "50%" {print $2}' "$w" | to_ms)
      p99=$(awk '$1 == "99%" {print $2}' "$w" | to_ms)
      err=$(awk '/Socket errors/ {gsub(",",""); print $4 + $6 + $8 + $10}' "$w")
      non2=$(awk '/Non-2xx/ {print $NF}' "$w")
      cpu=$(awk -v t=$((c1 - c0)) -v n="${n:-0}" -v k="$CLK" 'BEGIN {if (n > 0) printf "%.1f", t / k / n * 1e6; else print "nan"}')
      echo "$s,$r,$path,${rps:-0},${p50:-nan},${p99:-nan},${n:-0},${err:-0},${non2:-0},$cpu,$(peak_rss_kb),$spct,$wpct,$opct,$load1,$busy" >>"$OUT/raw.csv"
      printf '   %-8s %10s req/s  p99 %s ms  cpu %s us/req  errors %s non2xx %s  cpu%% server %s wrk %s other %s (busy before %s)\n' \
        "$path" "$rps" "$p99" "$cpu" "${err:-0}" "${non2:-0}" "$spct" "$wpct" "$opct" "$busy"
    done
    stop_server
  done
done

python3 - "$OUT" "$SERVERS" >>"$OUT/results.md" <<'EOF'
import csv, statistics, sys
out, servers = sys.argv[1], sys.argv[2].split()
rows = list(csv.DictReader(open(out + "/raw.csv")))
def med(s, path, k):
    v = [float(r[k]) for r in rows if r["server"] == s and r["path"] == path]
    return statistics.median(v) if v else float("nan")
def tot(s, k):
    return sum(int(float(r[k])) for r in rows if r["server"] == s)
base = "mhd-pool" if "mhd-pool" in servers else servers[0]
print("| server | /health req/s | ×%s | p99 ms | CPU µs/req | /file req/s | ×%s | p99 ms | CPU µs/req | peak RSS MB | errors | other CPU %% |" % (base, base))
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in servers:
    h, f = med(s, "/health", "req_s"), med(s, "/file", "req_s")
    hb, fb = med(base, "/health", "req_s"), med(base, "/file", "req_s")
    rss = max((float(r["peak_rss_kb"]) for r in rows if r["server"] == s), default=0) / 1024
    oth = [float(r["other_cpu_pct"]) for r in rows if r["server"] == s]
    print("| %s | %.0f | %.2f | %.2f | %.1f | %.0f | %.2f | %.2f | %.1f | %.1f | %d | %.0f–%.0f |" % (
        s, h, h / hb, med(s, "/health", "p99_ms"), med(s, "/health", "cpu_us_per_req"),
        f, f / fb, med(s, "/file", "p99_ms"), med(s, "/file", "cpu_us_per_req"),
        rss, tot(s, "errors") + tot(s, "non2xx"), min(oth), max(oth)))
print()
print("req/s and p99: medians over the rounds; ×%s: ratio of medians. CPU µs/req: the"
      " server's own CPU time (all threads/processes) per request, median. Peak RSS:"
      " the highest VmHWM over the rounds (nginx: master + workers summed, shared pages"
      " counted per process). errors: wrk socket errors + non-2xx, all rounds. other CPU:"
      " range over the measured runs of the machine's CPU used by neither the server nor"
      " wrk (other sessions on the shared machine, and kernel work not charged to either)"
      " in %% of both cores; high values mean a contaminated run." % base)
print()
print("Per round (req/s):")
print()
for s in servers:
    for p in ("/health", "/file"):
        v = [r["req_s"] for r in rows if r["server"] == s and r["path"] == p]
        print("- %s %s: %s" % (s, p, ", ".join("%.0f" % float(x) for x in v)))
EOF
echo "== done: $OUT/results.md"
cat "$OUT/results.md"
