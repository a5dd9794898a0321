#!/usr/bin/env bash
# The main job as a new user meets it, checked: `scripts/demo.sh` twice in a
# row, then `scripts/demo.sh --down`. After the second run nothing of the first
# may still run beside it (no second model server, no port-forward, no build,
# no local Redis; one operator, its release upgraded in place), and after
# `--down` nothing of the demo runs at all, so the test suite that follows
# meets a clean machine. Ends with `N passed, N failed` (scripts/test.sh adds it
# to its own).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR="${EOL_TEST_LOGS:-$HOME/.cache/eol/test-logs}"
mkdir -p "$LOG_DIR"
passed=0 failed=0
check() { # check DESCRIPTION COMMAND...: one line per check
  if "${@:2}"; then
    passed=$((passed + 1)); echo "ok      $1"
  else
    failed=$((failed + 1)); echo "FAILED  $1"
  fi
}
none() { ! pgrep -f "$1" >/dev/null; }     # no process matches
count() { pgrep -f "$1" | wc -l; }         # processes matching
demo_run() { # demo_run N: runs the demo, keeping its output; prints its time
  local start=$SECONDS status=0
  scripts/demo.sh >"$LOG_DIR/demo-$1.log" 2>&1 || status=$?
  echo "demo run $1: exit $status in $((SECONDS - start)) s (log: $LOG_DIR/demo-$1.log)"
  [ "$status" -eq 0 ] || tail -n 40 "$LOG_DIR/demo-$1.log"
  return "$status"
}
# kubectl and helm of the cluster's version, and its kubeconfig.
eval "$(kind-tests/cluster.sh env)"

check "first demo run succeeds" demo_run 1
model_pid=$(cat "$HOME/.cache/eol/run/llm.pid" 2>/dev/null || echo none)
second_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1
check "second demo run succeeds" demo_run 2

check "one local model server runs (the first run's, reused)" \
  test "$(count 'llama_cpp.server')" -eq 1 -a "$(cat "$HOME/.cache/eol/run/llm.pid" 2>/dev/null)" = "$model_pid"
check "no kubectl port-forward is left" none 'kubectl port-forward'
check "no build is left running" none 'cluster.sh build|llm.sh install|cargo build'
check "no local Redis runs (the cluster's operator runs Redis)" bash -c '! scripts/redis.sh status >/dev/null'
check "one kube-apiserver runs" test "$(count '/kube-apiserver ')" -eq 1
check "the release was upgraded in place (revision 2, deployed)" \
  bash -c "helm status eol -n eol-system -o json | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r[\"version\"] == 2 and r[\"info\"][\"status\"] == \"deployed\" else 1)'"
check "one operator pod runs" \
  test "$(kubectl get pods -n eol-system -l app.kubernetes.io/component=operator --field-selector=status.phase=Running -o name | wc -l)" -eq 1
check "the FeatureRun is the second run's" \
  test "$(kubectl get featurerun restock-ab-123 -n eol-demo -o jsonpath='{.metadata.creationTimestamp}')" \> "$second_start"
check "the second run switched the phase back" \
  test "$(kubectl get feature inventory -n eol-demo -o jsonpath='{.status.phase}')" = implementation
check "the dashboard answers through the API server and shows the inventory Feature" \
  bash -c "kubectl get --raw /api/v1/namespaces/eol-system/services/eol-metrics:metrics/proxy/dashboard/api/state | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(f[\"name\"] == \"inventory\" and f[\"status\"][\"phase\"] == \"implementation\" for f in s[\"features\"]) else 1)'"

start=$SECONDS
scripts/demo.sh --down >"$LOG_DIR/demo-down.log" 2>&1
echo "demo --down: $((SECONDS - start)) s"
check "after --down the cluster is down" bash -c '! kind-tests/cluster.sh status >/dev/null 2>&1'
for component in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy containerd; do
  check "after --down no $component runs" none "/$component( |$)"
done
check "after --down no model server runs" none 'llama_cpp.server'
check "after --down no redis-server runs" none 'redis-server'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
