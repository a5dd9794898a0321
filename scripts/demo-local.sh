#!/usr/bin/env bash
# The local tour (`scripts/demo.sh --local`): build `eol` and run the example
# features end to end on this machine, with the embedded defaults: a local
# Redis, the local model (llama.cpp + SmolLM2) and the local embedding model
# (all-MiniLM-L6-v2), all installed into ~/.cache/eol and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}"
source scripts/lib/progress.sh

step "install Redis 8 and the embedding model (cached in ~/.cache/eol)"
stream "Redis" scripts/redis.sh install
stream "embedding model" scripts/embedding-model.sh install
step "install the local model (llama.cpp + SmolLM2; minutes cold)"
stream "local model" scripts/llm.sh install
step "build eol (cargo build --release -p eol-runner)"
stream "cargo build" cargo build --release -p eol-runner
# Set before anything starts, so a failure in between stops what did start, and
# only that: a server that already ran (the cluster tour's model) keeps running.
# Absolute paths: the demo changes directory below, and a relative one left both running.
root=$PWD
stop_llm=1 stop_redis=1
scripts/llm.sh status >/dev/null && stop_llm=0
scripts/redis.sh status >/dev/null && stop_redis=0
stop_started() {
  if [ "$stop_llm" = 1 ]; then "$root"/scripts/llm.sh stop >/dev/null 2>&1 || true; fi
  if [ "$stop_redis" = 1 ]; then "$root"/scripts/redis.sh stop >/dev/null 2>&1 || true; fi
}
trap stop_started EXIT
trap 'exit 130' INT TERM
# One Redis for the whole demo, so the second run below finds the first one's cache.
step "start Redis and the local model"
eval "$(scripts/redis.sh start)"
eval "$(scripts/llm.sh start)"
eol="$CARGO_TARGET_DIR/release/eol"
cd features/examples

# Each command as typed, with the elapsed time.
run() { printf '\n%s $ %s\n' "$(stamp)" "$*"; "$@"; }
run "$eol" check inventory.eol blog-publisher.eol support-triage.eol
run "$eol" run blog-publisher.eol --operation slugify --input '{"title": "Crème brûlée: a how-to!"}'
run "$eol" run inventory.eol --operation add_stock --input '{"sku": "DEMO-1", "quantity": 3}'
run "$eol" test inventory.test.eol --coverage
# A prototyped operation on the local model; the same ticket again is answered
# by the semantic cache (see "cache" in the JSON) without calling the model.
ticket='{"subject": "App crashes on login", "body": "Since the update the app closes as soon as I log in."}'
run "$eol" --output json run support-triage.eol --operation classify_ticket --input "$ticket"
run "$eol" --output json run support-triage.eol --operation classify_ticket --input "$ticket"
# The hybrid example: implemented and prototyped operations, checked by their tests
# (SmolLM2-135M is tiny: a prototyped case may fail on its answer).
run "$eol" test blog-publisher.test.eol --coverage ||
  echo "(a prototyped case failed on the tiny local model's answer; point EOL_LLM_BASE_URL at a larger model)"
printf '\n%s done; what the tour started is stopped on exit\n' "$(stamp)"
