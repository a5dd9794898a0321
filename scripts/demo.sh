#!/usr/bin/env bash
# The main job: EOL's operator on the project's local Kubernetes, end to end.
#
#   scripts/demo.sh           build and bring up the local cluster, load the images, `helm install` the
#                             operator, apply an example Feature and FeatureRuns, call the Feature's
#                             Service, and switch a phase as a rolling update watched live; the cluster
#                             and the local model it uses stay up afterwards
#   scripts/demo.sh --down    stop what the tour left up (the cluster and the local model)
#   scripts/demo.sh --local   the local CLI tour instead: `eol` on the examples, no cluster
#                             (scripts/demo-local.sh; it stops everything it started)
#
# Every step prints a line with the elapsed time; builds show their own output.
# A failed or interrupted run stops everything this run started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}"
case "${1:-}" in
  --local) exec scripts/demo-local.sh ;;
  --down)
    scripts/llm.sh stop
    kind-tests/cluster.sh down
    echo "demo.sh: the cluster and the local model are stopped"
    exit 0 ;;
  "") ;;
  *) sed -n '4,11p' "$0" >&2; exit 2 ;;
esac
source scripts/lib/progress.sh

NS=eol-demo
LOGS="$HOME/.cache/eol/demo-logs"
mkdir -p "$LOGS"

# What this run started, so that a failure or Ctrl-C stops exactly that.
started_cluster=0 started_llm=0 finished=0 background=() forward=''
cleanup() {
  local status=$? job
  for job in "${background[@]}"; do kill -- "-$job" 2>/dev/null || true; done
  if [ -n "$forward" ]; then kill "$forward" 2>/dev/null || true; fi
  if [ "$finished" = 1 ]; then return; fi
  printf '\n%s the demo did not finish (exit %d): stopping what it started\n' "$(stamp)" "$status" >&2
  if [ "$started_llm" = 1 ]; then "$root"/scripts/llm.sh stop || true; fi
  if [ "$started_cluster" = 1 ]; then "$root"/kind-tests/cluster.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "build what the cluster runs: its Kubernetes binaries (Go), the local model, and the project (cargo)"
kind-tests/cluster.sh status >/dev/null 2>&1 || started_cluster=1
# The Go and Python builds run while cargo builds; their logs are in $LOGS.
setsid kind-tests/cluster.sh build core >"$LOGS/cluster-build.log" 2>&1 &
background+=($!)
cluster_build=$!
setsid scripts/llm.sh install >"$LOGS/llm-install.log" 2>&1 &
background+=($!)
llm_install=$!
# The packages the images' build (kind-tests/lib/images.sh) builds, in one run,
# so that build finds everything done.
stream "cargo build" cargo build --release -p eol-runner -p eol-operator -p kubectl-eol
wait_job "$cluster_build" "$LOGS/cluster-build.log" "cluster binaries (kind-tests/cluster.sh build core)"
wait_job "$llm_install" "$LOGS/llm-install.log" "local model (scripts/llm.sh install)"
background=()

step "bring the cluster up (kind-tests/cluster.sh up)"
stream "cluster up" kind-tests/cluster.sh up
eval "$(kind-tests/cluster.sh env)"
export PATH="$CARGO_TARGET_DIR/release:$PATH" # kubectl finds the kubectl-eol plugin here

step "build and load the operator, runner and Redis images (cached by source)"
stream "images" bash -c 'kind-tests/cluster.sh project-images >"$1"' _ "$LOGS/images.env"

step "start the local model where the pods reach it (this machine is the node)"
scripts/llm.sh status >/dev/null || started_llm=1
eval "$(EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start)"
node_ip=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
model_url="http://$node_ip:${EOL_LLM_BASE_URL##*:}"
echo "    model: $model_url (SmolLM2-135M on llama.cpp)"

step "helm install the operator (charts/eol) into eol-system"
kubectl apply --server-side --force-conflicts -f charts/eol/crds/ >/dev/null
stream "helm" helm upgrade --install eol charts/eol --namespace eol-system --create-namespace \
  --set model.baseUrl="$model_url" --set model.name=smollm2 --set model.responseFormat=json_object \
  --set webDashboard.enabled=true --wait --timeout 180s
kubectl get pods -n eol-system

# Applies manifests from stdin with kubectl, printing what changed.
apply() { kubectl apply -n "$NS" -f - | sed 's/^/    /'; }
# wait_run NAME: polls FeatureRun NAME until its Succeeded condition is True or False.
wait_run() {
  local name=$1 status='' start=$SECONDS
  while :; do
    status=$(kubectl get featurerun "$name" -n "$NS" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')
    case "$status" in True | False) break ;; esac
    ((SECONDS - start < 240)) || { echo "FeatureRun $name did not end within 240 s" >&2; return 1; }
    sleep 1
  done
  kubectl get featurerun "$name" -n "$NS" \
    -o jsonpath='    {.status.conditions[?(@.type=="Succeeded")].reason} in {.status.summary.duration}: {.status.summary.output}{"\n"}'
  [ "$status" = True ]
}

step "kubectl apply the inventory Feature (its source: a ConfigMap made from features/examples/inventory.eol)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create configmap inventory-source -n "$NS" --from-file=inventory.eol=features/examples/inventory.eol \
  --dry-run=client -o yaml | apply
apply <features/manifests/inventory-feature.yaml
echo "    waiting for its pods to pass the feature's tests (the operator's Redis starts first on a new namespace)"
kubectl wait -n "$NS" feature/inventory --for=condition=Ready --timeout=300s | sed 's/^/    /'

step "kubectl apply a FeatureRun: add_stock, run once in a runner pod"
kubectl delete featurerun restock-ab-123 -n "$NS" --ignore-not-found --wait >/dev/null
apply <features/manifests/inventory-run.yaml
wait_run restock-ab-123

step "a prototyped operation on the model: the support-triage Feature (no serving pods) and a FeatureRun of classify_ticket"
kubectl create configmap support-triage-source -n "$NS" \
  --from-file=support-triage.eol=features/examples/support-triage.eol --dry-run=client -o yaml | apply
apply <features/manifests/support-triage-feature.yaml
kubectl delete featurerun classify-login-crash -n "$NS" --ignore-not-found --wait >/dev/null
apply <features/manifests/support-triage-run.yaml
wait_run classify-login-crash ||
  echo "    (the tiny local model's answer did not fit; a larger model does: helm upgrade ... --set model.baseUrl=...)"

step "kubectl get features,featureruns"
kubectl get features,featureruns -n "$NS"

step "call the Feature's Service as a ServiceAccount that RBAC allows to invoke it"
kubectl create serviceaccount demo-caller -n "$NS" --dry-run=client -o yaml | apply
# (kubectl warns that `invoke` is not a standard verb: the runner's access reviews ask for it.)
kubectl create role call-inventory -n "$NS" --verb=invoke --resource=features.eol.dev/operations \
  --resource-name=inventory --dry-run=client -o yaml 2>/dev/null | apply
kubectl create rolebinding demo-caller-inventory -n "$NS" --role=call-inventory \
  --serviceaccount="$NS:demo-caller" --dry-run=client -o yaml | apply
token=$(kubectl create token demo-caller -n "$NS" --audience eol.dev)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kubectl port-forward -n "$NS" svc/inventory "$port:80" >"$LOGS/port-forward.log" 2>&1 &
forward=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "    POST /v1/operations/stock_level {\"sku\": \"AB-123\"} through kubectl port-forward svc/inventory:"
python3 - "$port" "$token" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1:]
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1/operations/stock_level",
    data=json.dumps({"sku": "AB-123"}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=30) as answer:
    print(f"    {answer.status} {answer.read().decode()}")
PY
kill "$forward" 2>/dev/null || true
wait "$forward" 2>/dev/null || true
forward=''

current=$(kubectl get feature inventory -n "$NS" -o jsonpath='{.status.phase}')
next=hybrid
[ "$current" = hybrid ] && next=implementation
step "switch the inventory Feature to $next: a rolling update that completes once the tests pass in it (kubectl eol, watched live)"
kubectl eol switch inventory --to "$next" --watch -n "$NS"

finished=1
step "done in $(stamp). The cluster and the local model stay up:"
cat <<EOF
    eval "\$(kind-tests/cluster.sh env)"; export PATH="$CARGO_TARGET_DIR/release:\$PATH"
    kubectl eol get feature inventory -n $NS --watch
    kubectl get features,featureruns -n $NS
    kubectl port-forward -n eol-system svc/eol-metrics 8080   # the dashboard: http://localhost:8080/dashboard/
  Stop them with: scripts/demo.sh --down
EOF
