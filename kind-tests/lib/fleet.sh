# A fleet of fake nodes for scale tests: kwok (sigs.k8s.io/kwok) as one more
# local process against the local control plane. The API server, scheduler and
# controller-manager stay the real ones; kwok only plays the kubelet of the
# nodes annotated kwok.x-k8s.io/node=fake, moving their pods through the
# stages in manifests/kwok-stages.yaml. Sourced by cluster.sh.
#
#   fleet up N     exactly N fake nodes kwok-node-0..N-1 (adds or removes), kwok running
#   fleet down     stop kwok, delete the fake nodes, force-remove the pods bound to them
#   fleet status   kwok's pid and RSS, the fake nodes, the pods bound to them

FLEET_NODE_PREFIX=kwok-node-
# What marks a fake node: kwok manages nodes with this annotation, `fleet`
# finds them by the label, and the taint keeps every pod without a toleration
# on the real node.
FLEET_ANNOTATION=kwok.x-k8s.io/node=fake
FLEET_LABEL=type=kwok
FLEET_TAINT_KEY=kwok.x-k8s.io/node
# Each fake node's capacity (= allocatable): far more than the real node's,
# so only the scheduler's own limits count.
FLEET_NODE_CPU=32
FLEET_NODE_MEMORY=256Gi
FLEET_NODE_PODS=250
# How long a pod with restartPolicy Never (a FeatureRun's runner pod, a Job's
# pod) runs on a fake node before it succeeds.
FLEET_RUN_SECONDS="${EOL_FLEET_RUN_SECONDS:-1}"
# kwok's own HTTP server (healthz, metrics) and the kubelet port its nodes
# advertise: the API server's log and exec requests for pods on fake nodes
# reach it and fail at once (TLS to a plain HTTP server) instead of hanging.
FLEET_KWOK_PORT="${EOL_FLEET_KWOK_PORT:-10247}"
# Pod IPs of fake pods: outside the real node's 10.244.0.0/24 and the Service
# range, and routed nowhere while the fleet is up (fleet_route).
FLEET_POD_CIDR="${EOL_FLEET_POD_CIDR:-10.245.0.0/16}"
FLEET_STAGES="$STATE_DIR/kwok-stages.yaml"

build_kwok() {
  build_go_module kwok "$KWOK_VERSION" "$KWOK_BIN" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok
}

fleet() {
  local sub="${1:-}"; shift || true
  case "$sub" in
    up) fleet_up "$@" ;;
    down) fleet_down ;;
    status) fleet_status ;;
    *) die "usage: cluster.sh fleet up N | down | status" ;;
  esac
}

# The fake nodes that exist, one name a line.
fleet_nodes() {
  kctl get nodes -l "$FLEET_LABEL" -o name | sed 's|^node/||' | grep "^$FLEET_NODE_PREFIX" || true
}

fleet_node_manifest() { # name
  cat <<EOT
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations:
    ${FLEET_ANNOTATION%%=*}: ${FLEET_ANNOTATION#*=}
  labels:
    ${FLEET_LABEL%%=*}: ${FLEET_LABEL#*=}
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
spec:
  taints:
  - {key: $FLEET_TAINT_KEY, value: fake, effect: NoSchedule}
status:
  capacity: {cpu: "$FLEET_NODE_CPU", memory: $FLEET_NODE_MEMORY, pods: "$FLEET_NODE_PODS"}
  allocatable: {cpu: "$FLEET_NODE_CPU", memory: $FLEET_NODE_MEMORY, pods: "$FLEET_NODE_PODS"}
---
EOT
}

# Force-removes the pods bound to the nodes named in $@ (their kubelet is fake
# or gone, so a graceful delete would never finish): one delete-collection
# request per namespace and node, as kubectl deletes one pod per request at 5
# requests a second (300 pods took 60 s; this way 5-11 s, the API server's time,
# and no faster with the requests in parallel).
fleet_remove_pods_on() {
  (($# == 0)) && return 0
  local nodes=" $* " ns node n=0
  local -A pairs=()
  while read -r ns node; do
    [[ -n "$node" && "$nodes" == *" $node "* ]] || continue
    pairs["$ns $node"]=1; n=$((n + 1))
  done < <(kctl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.spec.nodeName}{"\n"}{end}')
  for ns in "${!pairs[@]}"; do
    node=${ns#* }; ns=${ns%% *}
    kctl delete --raw "/api/v1/namespaces/$ns/pods?fieldSelector=spec.nodeName%3D$node&gracePeriodSeconds=0" >/dev/null ||
      log "warning: could not remove the pods of $ns on $node"
  done
  ((n == 0)) || log "fleet: force-removed $n pods from fake nodes"
}

# Deletes the named fake nodes, then the pods still bound to them.
fleet_remove_nodes() {
  (($# == 0)) && return 0
  kctl delete node "$@" --ignore-not-found --wait=false >/dev/null
  fleet_remove_pods_on "$@"
  log "fleet: removed $# nodes"
}

# Nothing listens on a fake pod's IP, but a connection to it (the operator
# asking an unready pod's /readyz, a Service's ClusterIP through kube-proxy)
# would leave through the default route, where this machine's egress proxy
# answered HTTP 404. An unreachable route makes it fail at once, on the host.
fleet_route() { # add | del
  if [[ $1 == add ]]; then
    ip route replace unreachable "$FLEET_POD_CIDR"
  else
    ip route del unreachable "$FLEET_POD_CIDR" 2>/dev/null || true
  fi
}

fleet_start_kwok() {
  local ms stages
  ms=$(awk -v s="$FLEET_RUN_SECONDS" 'BEGIN { printf "%d", s * 1000 }')
  stages=$(sed "s/@RUN_MILLISECONDS@/$ms/" "$HERE/manifests/kwok-stages.yaml")
  # A running kwok with other stages (another EOL_FLEET_RUN_SECONDS) is restarted.
  if proc_alive kwok && [[ "$stages" != "$(cat "$FLEET_STAGES" 2>/dev/null)" ]]; then stop_proc kwok; fi
  printf '%s\n' "$stages" >"$FLEET_STAGES"
  start_proc kwok "$KWOK_BIN/kwok" --kubeconfig="$KUBECONFIG_ADMIN" --config="$FLEET_STAGES" \
    --manage-nodes-with-annotation-selector="$FLEET_ANNOTATION" \
    --node-lease-duration-seconds=40 --cidr="$FLEET_POD_CIDR" \
    --node-ip=127.0.0.1 --node-port="$FLEET_KWOK_PORT" --server-address="127.0.0.1:$FLEET_KWOK_PORT"
  wait_for "kwok healthz" 60 curl -fsS "http://127.0.0.1:$FLEET_KWOK_PORT/healthz"
}

# Whether the fleet's first N nodes (kwok-node-0..N-1) are all Ready.
fleet_all_ready() {
  local n=$1 ready
  ready=$(kctl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk -v p="$FLEET_NODE_PREFIX" -v n="$n" '$2 == "True" { i = substr($1, length(p) + 1); if (i ~ /^[0-9]+$/ && i + 0 < n) c++ } END { print c + 0 }')
  ((ready == n))
}

fleet_up() {
  local n="${1:-}" t0=$SECONDS i
  [[ "$n" =~ ^[0-9]+$ ]] || die "usage: cluster.sh fleet up N (N fake nodes)"
  [[ "$FLEET_RUN_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "EOL_FLEET_RUN_SECONDS must be a number of seconds"
  proc_alive kube-apiserver || die "the local cluster is not up (cluster.sh up)"
  build_kwok
  fleet_route add
  fleet_start_kwok
  local manifest=""
  for ((i = 0; i < n; i++)); do
    manifest+=$(fleet_node_manifest "$FLEET_NODE_PREFIX$i")$'\n'
  done
  ((n == 0)) || printf '%s' "$manifest" | kctl apply -f - >/dev/null
  # Nodes beyond N, from an earlier `fleet up` with a larger N.
  local extra=() name
  while read -r name; do
    [[ -n "$name" ]] || continue
    i=${name#"$FLEET_NODE_PREFIX"}
    [[ "$i" =~ ^[0-9]+$ ]] && ((i < n)) || extra+=("$name")
  done < <(fleet_nodes)
  fleet_remove_nodes "${extra[@]}"
  # One list per try: `kubectl wait` on many nodes spends its timeout on them one by one.
  ((n == 0)) || wait_for "$n fake nodes Ready" 120 fleet_all_ready "$n"
  log "fleet: $n fake nodes Ready in $((SECONDS - t0))s (kwok pid $(proc_pid kwok), log $LOG_DIR/kwok.log)"
}

fleet_down() {
  fleet_route del
  [[ -d "$STATE_DIR" ]] || { log "fleet: no local cluster"; return 0; }
  stop_proc kwok
  rm -f "$FLEET_STAGES"
  if kctl get --raw /readyz >/dev/null 2>&1; then
    local names=()
    mapfile -t names < <(fleet_nodes)
    fleet_remove_nodes "${names[@]}"
  fi
  log "fleet: down"
}

fleet_status() {
  if proc_alive kwok; then
    echo "kwok: running pid $(proc_pid kwok) rss $(($(awk '/VmRSS/{print $2}' "/proc/$(proc_pid kwok)/status") / 1024)) MiB, log $LOG_DIR/kwok.log"
  else
    echo "kwok: not running"
  fi
  local names=() ready
  mapfile -t names < <(fleet_nodes)
  ready=$(kctl get nodes -l "$FLEET_LABEL" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  echo "fake nodes: ${#names[@]} (${ready} Ready)"
  local pods
  pods=$(kctl get pods -A -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | grep -c "^$FLEET_NODE_PREFIX" || true)
  echo "pods bound to fake nodes: $pods"
}
