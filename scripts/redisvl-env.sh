#!/usr/bin/env bash
# A Python venv with RedisVL for the side-by-side semantic-cache evaluation
# (vector/benches/semantic_eval.rs, vector/eval/redisvl/). No torch, no
# sentence-transformers: the Rust bench embeds every text once with EOL's MiniLm
# and RedisVL reads those vectors through a custom vectorizer, so both caches
# see identical embeddings.
#
#   scripts/redisvl-env.sh install   create the venv (pinned redisvl) under $EOL_CACHE_DIR
#   scripts/redisvl-env.sh python    print the venv's python (what the bench runs;
#                                    EOL_REDISVL_PYTHON overrides it there)
set -euo pipefail

REDISVL_VERSION=0.28.0
CACHE="${EOL_CACHE_DIR:-$HOME/.cache/eol}"
DEST="$CACHE/redisvl/$REDISVL_VERSION"

log() { echo "redisvl-env.sh: $*" >&2; }

installed() {
  [ -x "$DEST/bin/python" ] && "$DEST/bin/python" -c "import redisvl, sys; sys.exit(redisvl.__version__ != '$REDISVL_VERSION')" 2>/dev/null
}

install() {
  if installed; then
    log "already installed in $DEST"
    return 0
  fi
  command -v python3 >/dev/null || { log "python3 (>= 3.9, with venv) is needed"; exit 1; }
  rm -rf "$DEST"
  mkdir -p "$(dirname "$DEST")"
  python3 -m venv "$DEST"
  "$DEST/bin/python" -m pip install --quiet --upgrade pip
  "$DEST/bin/python" -m pip install --quiet "redisvl==$REDISVL_VERSION"
  installed || { log "redisvl $REDISVL_VERSION did not import from $DEST"; exit 1; }
  log "installed redisvl $REDISVL_VERSION in $DEST"
}

case "${1:-}" in
  install) install ;;
  python) echo "$DEST/bin/python" ;;
  *) echo "usage: scripts/redisvl-env.sh install|python" >&2; exit 2 ;;
esac
