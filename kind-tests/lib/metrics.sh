# metrics-server (sigs.k8s.io/metrics-server) as one more local process against
# the local cluster, as kwok is in lib/fleet.sh: it serves metrics.k8s.io/v1beta1
# through the API server's aggregation layer (`kubectl top`, CPU/memory
# HorizontalPodAutoscalers). A host process needs no image and no pod network;
# manifests/metrics-server.yaml registers it with a selector-less Service whose
# EndpointSlice points at the node IP. Sourced by cluster.sh.
#
#   metrics up       build (cached), start metrics-server, register it; waits for pod metrics
#   metrics down     unregister the APIService, stop metrics-server
#   metrics status   pid, APIService condition, `kubectl top pods -A`

# Port on the node IP (the kubelet has 10250, kwok's fake nodes 10247).
METRICS_PORT="${EOL_METRICS_PORT:-4443}"
# How often the kubelets are scraped (metrics-server's minimum is 10s, its
# default 60s); a pod's CPU shows after two scrapes. 15s is upstream's manifest.
METRICS_RESOLUTION="${EOL_METRICS_RESOLUTION:-15s}"
METRICS_KUBECONFIG="$STATE_DIR/metrics-server.kubeconfig"
METRICS_APISERVICE=v1beta1.metrics.k8s.io

build_metrics_server() {
  # The version ldflags are those of metrics-server's Makefile (client-go's version package).
  build_go_module metrics-server "$METRICS_SERVER_VERSION" "$METRICS_SERVER_BIN" \
    sigs.k8s.io/metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
}

metrics() {
  local sub="${1:-}"; shift || true
  case "$sub" in
    up) metrics_up ;;
    down) metrics_down ;;
    status) metrics_status ;;
    *) die "usage: cluster.sh metrics up | down | status" ;;
  esac
}

# One certificate, CN system:metrics-server, signed by the cluster CA: its
# client identity towards the API server and the kubelet (whose x509 authn
# trusts that CA), and its serving certificate for the Service's DNS name, which
# the aggregator checks against the APIService's caBundle (no insecureSkipTLSVerify).
metrics_pki() {
  _cert metrics-server "/CN=system:metrics-server" \
    "DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.$CLUSTER_DOMAIN,IP:$NODE_IP"
  _kubeconfig "$METRICS_KUBECONFIG" metrics-server "https://127.0.0.1:6443"
}

metrics_manifest() {
  sed -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@PORT@|$METRICS_PORT|g" \
    -e "s|@CA_BUNDLE@|$(base64 -w0 "$PKI_DIR/ca.crt")|g" "$HERE/manifests/metrics-server.yaml"
}

# Running pods of the real node, namespace/name, sorted (fake kwok nodes have no kubelet to scrape).
metrics_running_pods() {
  kctl get pods -A --field-selector="status.phase=Running,spec.nodeName=$NODE_NAME" \
    -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' | sort
}

# Pods that GET /apis/metrics.k8s.io/v1beta1/pods lists with a CPU usage, namespace/name, sorted.
metrics_pods_with_usage() {
  kctl get pods.metrics.k8s.io -A \
    -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.containers[0].usage.cpu}{"\n"}{end}' |
    awk 'NF == 2 {print $1}' | sort
}

# Waits until every pod Running on the node when it was called (and still
# running) has metrics. Pods started later are not waited for: other work may
# start pods all the time.
metrics_wait_pods() {
  local timeout=$1 t0=$SECONDS want now have missing
  want=$(metrics_running_pods) || die "metrics: cannot list the running pods"
  while :; do
    have=$(metrics_pods_with_usage 2>/dev/null || true)
    now=$(metrics_running_pods 2>/dev/null || true)
    missing=$(comm -12 <(echo "$want") <(echo "$now") | comm -23 - <(echo "$have") | grep . || true)
    [[ -n "$have" && -z "$missing" ]] && break
    if ((SECONDS - t0 >= timeout)); then
      [[ -n "$have" ]] || die "metrics: no pod has metrics after ${timeout}s (GET /apis/metrics.k8s.io/v1beta1/pods; log $LOG_DIR/metrics-server.log)"
      # A pod whose container is not running (crash loop) has no usage; the API itself works.
      log "metrics: warning: after ${timeout}s still no metrics for: $(echo "$missing" | tr '\n' ' ')"
      break
    fi
    sleep 2
  done
  log "metrics: usage for $(echo "$have" | grep -c .) pods after $((SECONDS - t0))s"
}

# /livez over TLS verified by the cluster CA; gives up at once if the process exits.
metrics_wait_live() {
  local timeout=$1 t0=$SECONDS
  until curl -fsS -o /dev/null --cacert "$PKI_DIR/ca.crt" "https://$NODE_IP:$METRICS_PORT/livez" 2>/dev/null; do
    proc_alive metrics-server ||
      die "metrics-server exited: $(grep -E '^(panic|Error|[EF][0-9]{4} )' "$LOG_DIR/metrics-server.log" | tail -1) (log $LOG_DIR/metrics-server.log)"
    ((SECONDS - t0 < timeout)) || die "metrics-server: no answer on https://$NODE_IP:$METRICS_PORT/livez after ${timeout}s (log $LOG_DIR/metrics-server.log)"
    sleep 1
  done
}

# The API server reaches metrics-server through the Service's ClusterIP, which
# only kube-proxy's DNAT rule makes local. A connection opened before that rule
# exists leaves by the default route, where this machine's egress proxy
# completes TLS and answers 404 to everything; the aggregator keeps that
# connection alive, so the APIService stayed FailedDiscoveryCheck (404) for
# good (seen when all was applied at once). So: wait until the ClusterIP
# reaches metrics-server (its certificate, verified), and drop any flow to it
# that was not DNATed (its reply source is the ClusterIP itself): its next
# packet is DNATed and reset, and the client reconnects.
metrics_wait_cluster_ip() {
  local timeout=$1 t0=$SECONDS ip
  ip=$(kctl -n kube-system get service metrics-server -o jsonpath='{.spec.clusterIP}') || die "metrics: no Service kube-system/metrics-server"
  until curl -fsS -o /dev/null --cacert "$PKI_DIR/ca.crt" --resolve "metrics-server.kube-system.svc:443:$ip" \
    https://metrics-server.kube-system.svc/livez 2>/dev/null; do
    ((SECONDS - t0 < timeout)) || die "metrics: ClusterIP $ip:443 does not reach metrics-server after ${timeout}s (kube-proxy rules? log $LOG_DIR/kube-proxy.log)"
    sleep 1
  done
  if have conntrack; then conntrack -D -p tcp -d "$ip" --dport 443 --reply-src "$ip" >/dev/null 2>&1 || true; fi
}

# Available, or a failure naming the APIService's own reason.
metrics_wait_available() {
  local timeout=$1 t0=$SECONDS
  until kctl wait --for=condition=Available "apiservice/$METRICS_APISERVICE" --timeout=5s >/dev/null 2>&1; do
    ((SECONDS - t0 < timeout)) || die "metrics: APIService $METRICS_APISERVICE not Available after ${timeout}s: $(kctl get apiservice "$METRICS_APISERVICE" \
      -o jsonpath='{.status.conditions[?(@.type=="Available")].reason}: {.status.conditions[?(@.type=="Available")].message}' 2>&1)"
  done
}

metrics_up() {
  local t0=$SECONDS
  proc_alive kube-apiserver || die "the local cluster is not up (cluster.sh up)"
  build_metrics_server
  NODE_IP=$(cat "$STATE_DIR/node-ip") || die "metrics: no $STATE_DIR/node-ip"
  metrics_pki
  metrics_manifest | kctl apply -l eol.dev/metrics-part=rbac -f - >/dev/null ||
    die "metrics: applying the RBAC of manifests/metrics-server.yaml failed"
  # The kubelet's serving certificate is from the cluster CA with the node IP
  # as SAN, so it is verified (no --kubelet-insecure-tls); the node's
  # InternalIP is that IP. Fake kwok nodes are skipped: nothing to scrape.
  start_proc metrics-server "$METRICS_SERVER_BIN/metrics-server" \
    --kubeconfig="$METRICS_KUBECONFIG" \
    --authentication-kubeconfig="$METRICS_KUBECONFIG" --authorization-kubeconfig="$METRICS_KUBECONFIG" \
    --bind-address="$NODE_IP" --secure-port="$METRICS_PORT" \
    --tls-cert-file="$PKI_DIR/metrics-server.crt" --tls-private-key-file="$PKI_DIR/metrics-server.key" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
    --kubelet-client-certificate="$PKI_DIR/metrics-server.crt" --kubelet-client-key="$PKI_DIR/metrics-server.key" \
    --kubelet-preferred-address-types=InternalIP --kubelet-use-node-status-port \
    --node-selector="${FLEET_LABEL%%=*}!=${FLEET_LABEL#*=}" \
    --metric-resolution="$METRICS_RESOLUTION"
  metrics_wait_live 60
  metrics_manifest | kctl apply -l eol.dev/metrics-part=service -f - >/dev/null ||
    die "metrics: applying the Service and EndpointSlice of manifests/metrics-server.yaml failed"
  metrics_wait_cluster_ip 60
  metrics_manifest | kctl apply -l eol.dev/metrics-part=apiservice -f - >/dev/null ||
    die "metrics: applying the APIService of manifests/metrics-server.yaml failed"
  metrics_wait_available 120
  metrics_wait_pods 180
  log "metrics: up in $((SECONDS - t0))s (metrics-server pid $(proc_pid metrics-server), log $LOG_DIR/metrics-server.log)"
}

metrics_down() {
  [[ -d "$STATE_DIR" ]] || { log "metrics: no local cluster"; return 0; }
  # Reverse order, the APIService first: one that is registered but
  # unavailable breaks discovery for every client and stalls namespace deletion.
  if kctl get --raw /readyz >/dev/null 2>&1; then
    local part
    NODE_IP=$(cat "$STATE_DIR/node-ip")
    for part in apiservice service rbac; do
      metrics_manifest | kctl delete --ignore-not-found -l "eol.dev/metrics-part=$part" -f - >/dev/null ||
        log "metrics: warning: could not delete the $part objects of manifests/metrics-server.yaml"
    done
  fi
  stop_proc metrics-server
  log "metrics: down"
}

metrics_status() {
  if proc_alive metrics-server; then
    echo "metrics-server: running pid $(proc_pid metrics-server) rss $(($(awk '/VmRSS/{print $2}' "/proc/$(proc_pid metrics-server)/status") / 1024)) MiB, log $LOG_DIR/metrics-server.log"
  else
    echo "metrics-server: not running"
  fi
  kctl get apiservice "$METRICS_APISERVICE" 2>/dev/null || echo "APIService $METRICS_APISERVICE: not registered"
  kctl top pods -A 2>&1 || true
}
