# redis_lib.sh — starts and stops throwaway redis-server processes for the
# tests: Debian's redis-server, no persistence, listening on 127.0.0.1 only
# on a free port, its files in a new temporary folder. Source it, then:
#   redis_start NAME [ARGS...]  starts one (extra redis-server ARGS, e.g.
#                               --requirepass X); sets REDIS_URL, REDIS_PORT
#                               and REDIS_PID, and remembers it by NAME;
#                               non-zero if it would not start
#   redis_kill NAME             kill -9 (a crash: no goodbye to clients)
#   redis_pause NAME / redis_resume NAME
#                               SIGSTOP / SIGCONT: a server that accepts
#                               connections (the kernel does) but never
#                               answers
#   redis_stop_all              stops every one started and removes their
#                               folders (call it from the caller's EXIT trap)
# shellcheck shell=bash
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli)}
REDIS_URL= REDIS_PORT= REDIS_PID=
declare -A REDIS_PIDS=()
REDIS_DIRS=()

redis_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

redis_start() {
  local name=$1 dir try; shift
  if [ -z "$REDIS_SERVER" ] || [ -z "$REDIS_CLI" ]; then
    echo "redis_lib: no redis-server/redis-cli (apt-get install redis-server)" >&2
    return 1
  fi
  dir=$(mktemp -d /tmp/pixmill-redis.XXXXXX)
  REDIS_DIRS+=("$dir")
  for try in 1 2 3; do
    REDIS_PORT=$(redis_free_port)
    "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
      --appendonly no --dir "$dir" --logfile "$dir/server.log" \
      --daemonize no "$@" >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do
      # PING answers PONG, or NOAUTH when a password is required: up
      if "$REDIS_CLI" -p "$REDIS_PORT" ping 2>/dev/null | grep -qE 'PONG|NOAUTH'; then
        REDIS_PIDS[$name]=$REDIS_PID
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null
  done
  tail -n 20 "$dir/server.log" >&2
  return 1
}

redis_kill() {
  local pid=${REDIS_PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "REDIS_PIDS[$1]"
}

redis_pause() { [ -n "${REDIS_PIDS[$1]:-}" ] && kill -STOP "${REDIS_PIDS[$1]}"; }
redis_resume() { [ -n "${REDIS_PIDS[$1]:-}" ] && kill -CONT "${REDIS_PIDS[$1]}"; }

redis_stop_all() {
  local n
  for n in "${!REDIS_PIDS[@]}"; do
    kill -CONT "${REDIS_PIDS[$n]}" 2>/dev/null # a paused one too
    kill "${REDIS_PIDS[$n]}" 2>/dev/null
    wait "${REDIS_PIDS[$n]}" 2>/dev/null
  done
  REDIS_PIDS=()
  for n in "${REDIS_DIRS[@]}"; do rm -rf "$n"; done
  REDIS_DIRS=()
}
