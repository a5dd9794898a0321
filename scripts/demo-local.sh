#!/usr/bin/env bash
# The main job: build `eol` and run the example features end to end, with the
# embedded defaults: a local Redis (started by `eol` itself and stopped
# afterwards), the local model (llama.cpp + SmolLM2) and the local embedding
# model (all-MiniLM-L6-v2), all installed into ~/.cache/eol.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}"

scripts/redis.sh install
scripts/embedding-model.sh install
scripts/llm.sh install
cargo build --quiet --release -p eol-runner
# Set before anything starts, so a failure in between stops what did start.
# Absolute paths: the demo changes directory below, and a relative one left both running.
root=$PWD
trap '"$root"/scripts/llm.sh stop >/dev/null 2>&1 || true; "$root"/scripts/redis.sh stop >/dev/null 2>&1 || true' EXIT
# One Redis for the whole demo, so the second run below finds the first one's cache.
eval "$(scripts/redis.sh start)"
eval "$(scripts/llm.sh start)"
eol="$CARGO_TARGET_DIR/release/eol"
cd features/examples

step() { printf '\n$ %s\n' "$*"; "$@"; }
step "$eol" check inventory.eol blog-publisher.eol support-triage.eol
step "$eol" run blog-publisher.eol --operation slugify --input '{"title": "Crème brûlée: a how-to!"}'
step "$eol" run inventory.eol --operation add_stock --input '{"sku": "DEMO-1", "quantity": 3}'
step "$eol" test inventory.test.eol --coverage
# A prototyped operation on the local model; the same ticket again is answered
# by the semantic cache (see "cache" in the JSON) without calling the model.
ticket='{"subject": "App crashes on login", "body": "Since the update the app closes as soon as I log in."}'
step "$eol" --output json run support-triage.eol --operation classify_ticket --input "$ticket"
step "$eol" --output json run support-triage.eol --operation classify_ticket --input "$ticket"
# The hybrid example: implemented and prototyped operations, checked by their tests
# (SmolLM2-135M is tiny: a prototyped case may fail on its answer).
step "$eol" test blog-publisher.test.eol --coverage ||
  echo "(a prototyped case failed on the tiny local model's answer; point EOL_LLM_BASE_URL at a larger model)"
