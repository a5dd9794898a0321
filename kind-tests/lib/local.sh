# A real single-node cluster from local processes (the approach of Kubernetes'
# hack/local-up-cluster.sh): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd, kubelet and kube-proxy on this host, CoreDNS as a pod.
# Sourced by cluster.sh.

# Every process we start is put into this pids cgroup (cgroup v1; children such
# as containerd shims inherit it). `down` kills by recorded pid, then kills any
# pid still listed here or under kubepods: a record, not a name match.
# On cgroup v2 the same is done in the unified hierarchy (written for such
# hosts, exercised only on this project's cgroup v1 machines).
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  CGROUP_BASE=/sys/fs/cgroup; CGROUP_TAG='0::'
  PODS_MEMORY=/sys/fs/cgroup/kubepods/memory.current
else
  CGROUP_BASE=/sys/fs/cgroup/pids; CGROUP_TAG='[0-9]*:pids:'
  PODS_MEMORY=/sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes
fi
TRACK_CGROUP=$CGROUP_BASE/eol-kind
PODS_CGROUP=$CGROUP_BASE/kubepods
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
CONTAINERD_SOCK="$STATE_DIR/containerd/containerd.sock"
BRIDGE=eol0

node_ip() {
  if [[ -n "${NODE_IP:-}" ]]; then echo "$NODE_IP"; return; fi
  local dev
  dev=$(ip -4 route show default | awk '{for (i=1;i<NF;i++) if ($i=="dev") print $(i+1); exit}')
  ip -4 -o addr show dev "${dev:-lo}" | awk '{sub(/\/.*/, "", $4); print $4; exit}'
}

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
crictl_() { CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCK" "$CRICTL_BIN/crictl" --timeout 30s "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

proc_pid() { cat "$PID_DIR/$1.pid" 2>/dev/null; }

# Alive and still ours: the pid must still sit in our tracking cgroup, which
# guards against a recycled pid.
proc_alive() {
  local pid; pid=$(proc_pid "$1") || return 1
  [[ -n "$pid" ]] && grep -qx "${CGROUP_TAG}/eol-kind" "/proc/$pid/cgroup" 2>/dev/null
}

start_proc() { # name binary args...
  local name=$1; shift
  if proc_alive "$name"; then log "$name already running (pid $(proc_pid "$name"))"; return 0; fi
  rm -f "$PID_DIR/$name.pid"
  # The child joins the cgroup and records its own pid before exec, so the
  # recorded pid is the component itself. setsid detaches it from our terminal.
  setsid bash -c 'echo $$ >"$1" && echo $$ >"$2" && shift 2 && exec "$@"' _ \
    "$TRACK_CGROUP/cgroup.procs" "$PID_DIR/$name.pid" "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  for _ in $(seq 50); do [[ -s "$PID_DIR/$name.pid" ]] && break; sleep 0.1; done
  [[ -s "$PID_DIR/$name.pid" ]] || die "$name did not start (see $LOG_DIR/$name.log)"
  log "started $name (pid $(proc_pid "$name"), log $LOG_DIR/$name.log)"
}

stop_proc() { # name: TERM, then KILL after a grace period
  local name=$1 pid i t0=$SECONDS
  proc_alive "$name" || { rm -f "$PID_DIR/$name.pid"; return 0; }
  pid=$(proc_pid "$name")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do proc_alive "$name" || break; sleep 0.1; done
  if proc_alive "$name"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$PID_DIR/$name.pid"
  log "stopped $name (pid $pid, $((SECONDS - t0))s)"
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < timeout)) || die "timed out after ${timeout}s waiting for $what (logs: $LOG_DIR)"
    sleep 1
  done
}

# Pids recorded by cgroup membership: our tracking cgroup and the pod cgroups
# the kubelet made (kubepods), recursively.
tracked_pids() {
  local d
  for d in "$TRACK_CGROUP" "$PODS_CGROUP"; do
    [[ -d "$d" ]] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# ---------------------------------------------------------------- configs

# true when this process may not lower its oom_score_adj (no CAP_SYS_RESOURCE).
restrict_oom() {
  local cap; cap=$(awk '/^CapEff/{print $2}' /proc/self/status)
  if (( (0x$cap >> 24) & 1 )); then echo false; else echo true; fi
}

write_configs() {
  mkdir -p "$STATE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,kubelet.conf.d,pod-logs,etcd}
  cat >"$STATE_DIR/containerd/config.toml" <<EOT
version = 2
root = "$STATE_DIR/containerd/root"
state = "$STATE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE (missing from this machine's bounding set) runc
  # cannot lower oom_score_adj below its parent's; the kubelet asks for -998 for
  # the pause container. Clamp to containerd's own value instead of failing.
  restrict_oom_score_adj = $(restrict_oom)
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 host without systemd as init: the kubelet uses cgroupfs too.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
EOT
  # Pods on a Linux bridge with host-local IPAM. No ipMasq: pods talk only to
  # the node and each other, and no masquerade rule outlives the cluster.
  cat >"$STATE_DIR/cni/net.d/10-eol-bridge.conflist" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "eol-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE_DIR/cni/ipam"
      }
    }
  ]
}
EOT
  cat >"$STATE_DIR/kubelet/config.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI_DIR/kubelet.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
# This kernel mounts cgroup v1; v1.34 still supports it when this is false.
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
# Pods get only the cluster's DNS, never the host's upstream resolvers.
resolvConf: ""
podLogsDir: $STATE_DIR/pod-logs
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# A test node on a shared disk: percentages of a large volume (2% of 250 GB is
# 5 GB) tainted the node with disk-pressure while gigabytes were still free, so
# the thresholds are absolute. Image GC is off: the project images are loaded,
# never pulled, and a collected one could not come back.
evictionHard: {memory.available: "100Mi", nodefs.available: "512Mi", imagefs.available: "512Mi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
serializeImagePulls: false
EOT
  cat >"$STATE_DIR/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
# NodePorts answer on the node IP only (and loopback is not used for them).
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# 0 leaves the host's nf_conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0}
EOT
}

# ---------------------------------------------------------------- host setup

host_setup() {
  mkdir -p "$TRACK_CGROUP"
  # Pod traffic is routed through the host; bridged traffic must hit iptables
  # so ClusterIP DNAT works between pods on the same bridge.
  if [[ ! -f "$STATE_DIR/ip_forward.orig" ]]; then
    sysctl -n net.ipv4.ip_forward >"$STATE_DIR/ip_forward.orig"
  fi
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
    log "warning: net.bridge.bridge-nf-call-iptables not settable (br_netfilter missing?)"
}

# ---------------------------------------------------------------- up

# Starts one of COMPONENTS with its flags and waits until it serves: used by
# `up` and by `restart` (the chaos tests), so a restarted component runs
# exactly as the first one did.
start_component() { # name
  case "$1" in
    etcd)
      start_proc etcd "$ETCD_BIN/etcd" --name "$NODE_NAME" --data-dir "$STATE_DIR/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
      wait_for "etcd" 60 curl -fsS http://127.0.0.1:2379/health
      ;;
    kube-apiserver)
      start_proc kube-apiserver "$K8S_BIN/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 \
        --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --client-ca-file="$PKI_DIR/ca.crt" \
        --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
        --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
        --kubelet-preferred-address-types=InternalIP \
        --service-account-key-file="$PKI_DIR/sa.pub" \
        --service-account-signing-key-file="$PKI_DIR/sa.key" \
        --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
        --requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
        --proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true --profiling=false
      wait_for "kube-apiserver /readyz" 120 kctl get --raw /readyz
      ;;
    kube-controller-manager)
      start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
        --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false \
        --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
        --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
        --use-service-account-credentials=true \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --enable-hostpath-provisioner=true
      ;;
    kube-scheduler)
      # A StatefulSet pod scheduled in the instant before its claim exists is parked
      # as "unbound PVC ... not found" and, here, not requeued when the claim binds
      # (seen with v1.34.4): let parked pods be retried after 10 s instead of 5 min.
      start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
        --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false \
        --pod-max-in-unschedulable-pods-duration=10s
      ;;
    containerd)
      start_proc containerd /usr/bin/containerd --config "$STATE_DIR/containerd/config.toml"
      wait_for "containerd" 60 ctr_ version
      ;;
    kubelet)
      # kubelet.conf.d: drop-ins over config.yaml (lib/pressure.sh's thresholds).
      mkdir -p "$STATE_DIR/kubelet.conf.d"
      start_proc kubelet "$K8S_BIN/kubelet" --config="$STATE_DIR/kubelet/config.yaml" \
        --config-dir="$STATE_DIR/kubelet.conf.d" --kubeconfig="$STATE_DIR/kubelet.kubeconfig" --root-dir="$STATE_DIR/kubelet" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
      wait_for "kubelet /healthz" 60 curl -fsS http://127.0.0.1:10248/healthz
      ;;
    kube-proxy)
      start_proc kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE_DIR/kube-proxy.yaml"
      ;;
    *) die "unknown component $1 (one of ${COMPONENTS[*]})" ;;
  esac
}

# Stops a running component (SIGTERM, then SIGKILL after 10 s; with --kill at
# once, as a crash) and starts it again with the same flags. Pods keep
# running through a kubelet or containerd restart: their shims are separate
# processes.
restart_component() { # name [--kill]
  local name=${1:-} t0=$SECONDS pid
  [[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "restart: name one of ${COMPONENTS[*]}"
  proc_alive "$name" || die "restart: $name is not running (is the cluster up? kind-tests/cluster.sh status)"
  if [[ "${2:-}" == --kill ]]; then
    pid=$(proc_pid "$name"); kill -KILL "$pid"
    for _ in $(seq 50); do proc_alive "$name" || break; sleep 0.1; done
    rm -f "$PID_DIR/$name.pid"; log "killed $name (pid $pid)"
  else
    stop_proc "$name"
  fi
  NODE_IP=$(cat "$STATE_DIR/node-ip")
  start_component "$name"
  log "restarted $name in $((SECONDS - t0))s"
}

components_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do proc_alive "$c" || return 1; done
  kctl get --raw /readyz >/dev/null 2>&1
}

local_up() {
  local t0=$SECONDS
  apt_ensure containerd runc containernetworking-plugins iptables conntrack buildah \
    busybox-static openssl gcc libc6-dev debootstrap iproute2 util-linux ethtool socat
  build_core # the tests' tools (kwok, metrics-server, ...) come with `build` or their own commands
  build_images
  if [[ -d "$STATE_DIR" ]] && components_healthy; then
    # A pressure test that died before restoring the kubelet's thresholds
    # (lib/pressure.sh) would leave them just under what the node has free.
    if [[ -f "$PRESSURE_DROPIN" ]]; then
      log "the kubelet's eviction thresholds were left raised: restoring them"; pressure_off
    fi
    log "cluster already up"; status_local; return 0
  fi
  if [[ -d "$STATE_DIR" || -d "$TRACK_CGROUP" ]]; then
    log "leftovers of an earlier cluster found (crash or partial up): cleaning them first"
    local_down
  fi
  NODE_IP=$(node_ip); [[ -n "$NODE_IP" ]] || die "cannot determine the node IP"
  mkdir -p "$STATE_DIR" "$PID_DIR"
  # Logs survive `down` for post-mortems; each `up` starts them afresh.
  rm -rf "$LOG_DIR.prev"; [[ -d "$LOG_DIR" ]] && mv "$LOG_DIR" "$LOG_DIR.prev"
  mkdir -p "$LOG_DIR"
  echo "$NODE_IP" >"$STATE_DIR/node-ip"
  host_setup
  make_pki
  write_configs

  local c
  for c in etcd kube-apiserver kube-controller-manager; do start_component "$c"; done
  # The built-in hostPath provisioner makes root-owned 0750 directories, and
  # fsGroup does not apply to hostPath: non-root pods (the managed Redis) could
  # not write their volume. Open them up as kind's local-path provisioner does (0777).
  mkdir -p /tmp/hostpath_pv
  start_proc hostpath-permissions /bin/bash -c \
    'while sleep 0.5; do find /tmp/hostpath_pv -mindepth 1 -maxdepth 1 -type d ! -perm 0777 -exec chmod 0777 {} + 2>/dev/null; done'
  for c in kube-scheduler containerd; do start_component "$c"; done
  local tar
  for tar in "$IMAGE_CACHE/pause.tar" "$IMAGE_CACHE/coredns-$COREDNS_VERSION.tar"; do
    ctr_ images import "$tar" >/dev/null
    echo "$tar" >>"$LOADED_IMAGES"
  done
  for c in kubelet kube-proxy; do start_component "$c"; done

  wait_for "node $NODE_NAME Ready" 180 kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  apply_addons
  wait_for "CoreDNS ready" 180 kctl -n kube-system rollout status deploy/coredns --timeout=5s
  echo "$((SECONDS - t0))" >"$STATE_DIR/up-seconds"
  log "cluster up in $((SECONDS - t0))s"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

apply_addons() {
  sed -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$HERE/manifests/coredns.yaml" | kctl apply -f - >/dev/null
  kctl apply -f "$HERE/manifests/storage.yaml" >/dev/null
}

# ---------------------------------------------------------------- down

# The kubelet installs a few chains of its own (canaries for kube-proxy, a
# localnet firewall) that `kube-proxy --cleanup` leaves behind.
remove_kubelet_chains() {
  local ipt t
  for ipt in iptables ip6tables; do
    have "$ipt" || continue
    while "$ipt" -w -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    "$ipt" -w -F KUBE-FIREWALL 2>/dev/null && "$ipt" -w -X KUBE-FIREWALL 2>/dev/null
    for t in mangle nat filter; do
      "$ipt" -w -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true
      "$ipt" -w -t "$t" -X KUBE-IPTABLES-HINT 2>/dev/null || true
    done
  done
  return 0
}

local_down() {
  if [[ ! -d "$STATE_DIR" && ! -d "$TRACK_CGROUP" ]]; then log "no local cluster to tear down"; return 0; fi
  # kwok (a fleet, lib/fleet.sh) and the kubelet first, so nothing restarts what we stop next;
  # metrics-server (lib/metrics.sh) too, which would only log failed scrapes from here on;
  # kube-network-policies (lib/netpol.sh): its diversion rules go first, then the engine.
  stop_proc kwok
  stop_proc metrics-server
  if declare -F netpol_stop_local >/dev/null; then netpol_stop_local; fi
  if declare -F fleet_route >/dev/null; then fleet_route del; fi
  stop_proc kubelet
  if proc_alive containerd; then
    # Stops every pod sandbox through CRI, so CNI tears down their networking.
    local t0=$SECONDS
    crictl_ rmp --all --force >/dev/null 2>&1 || log "warning: crictl rmp failed; killing containers instead"
    log "removed all pod sandboxes ($((SECONDS - t0))s)"
  fi
  stop_proc kube-proxy
  # Remove the KUBE-* iptables chains kube-proxy installed, then the kubelet's.
  [[ -x "$K8S_BIN/kube-proxy" ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_kubelet_chains
  local c
  for c in containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_proc "$c"; done
  # Whatever is still in our cgroups (shims, container processes) was started by us.
  local pid left
  for pid in $(tracked_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do left=$(tracked_pids); [[ -z "$left" ]] && break; sleep 0.1; done
  [[ -z "$left" ]] || log "warning: processes still in cluster cgroups: $left"
  log "no tracked process left; removing mounts, network and cgroups"
  # Mounts made by containerd and the kubelet, deepest first.
  # (`|| true`: with nothing mounted, grep's status 1 would end `down` here under pipefail.)
  { findmnt -rn -o TARGET | grep -E "^$STATE_DIR/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Pod network namespaces created by containerd's CRI (its fixed location).
  for m in /var/run/netns/cni-*; do
    [[ -e "$m" ]] || continue
    umount "$m" 2>/dev/null || true; rm -f "$m"
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  # The kubelet's pod cgroups, leaves first, in every hierarchy.
  local h
  for h in /sys/fs/cgroup/*/kubepods "$PODS_CGROUP" "$TRACK_CGROUP"; do
    [[ -d "$h" ]] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [[ -f "$STATE_DIR/ip_forward.orig" ]]; then sysctl -qw net.ipv4.ip_forward="$(cat "$STATE_DIR/ip_forward.orig")"; fi
  rm -rf "$STATE_DIR" /tmp/hostpath_pv
  log "local cluster removed (logs kept in $LOG_DIR)"
}

# ---------------------------------------------------------------- status

status_local() {
  if [[ ! -d "$STATE_DIR" ]]; then echo "local cluster: down (logs: $LOG_DIR)"; return 3; fi
  local c rc=0
  echo "local cluster state: $STATE_DIR"
  echo "logs:                $LOG_DIR"
  echo "kubeconfig:          $KUBECONFIG_ADMIN"
  for c in "${COMPONENTS[@]}"; do
    if proc_alive "$c"; then
      printf '  %-24s running  pid %-8s rss %s MiB\n' "$c" "$(proc_pid "$c")" \
        "$(($(awk '/VmRSS/{print $2}' "/proc/$(proc_pid "$c")/status") / 1024))"
    else
      printf '  %-24s STOPPED\n' "$c"; rc=1
    fi
  done
  # A fleet (lib/fleet.sh) is optional: shown only while it runs.
  proc_alive kwok && printf '  %-24s running  pid %-8s (fleet: cluster.sh fleet status)\n' kwok "$(proc_pid kwok)"
  proc_alive metrics-server && printf '  %-24s running  pid %-8s (cluster.sh metrics status)\n' metrics-server "$(proc_pid metrics-server)"
  proc_alive kube-network-policies && printf '  %-24s running  pid %-8s (cluster.sh netpol status)\n' kube-network-policies "$(proc_pid kube-network-policies)"
  kctl get nodes -o wide 2>/dev/null || rc=1
  return $rc
}

# Resident memory: control plane, node daemons, everything else we track
# (containerd shims), and the kubelet's pod cgroup.
memory_local() {
  _rss() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
  local c cp=0 node=0 all=0 pid
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    proc_alive "$c" && cp=$((cp + $(_rss "$(proc_pid "$c")")))
  done
  for c in containerd kubelet kube-proxy; do
    proc_alive "$c" && node=$((node + $(_rss "$(proc_pid "$c")")))
  done
  for pid in $(find "$TRACK_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null); do
    all=$((all + $(_rss "$pid")))
  done
  local pods=0
  [[ -f "$PODS_MEMORY" ]] && pods=$(($(cat "$PODS_MEMORY") / 1024))
  echo "RSS MiB: control plane $((cp / 1024)) (etcd, apiserver, controller-manager, scheduler);" \
    "node $((node / 1024)) (containerd, kubelet, kube-proxy); shims $(((all - cp - node) / 1024));" \
    "pods cgroup $((pods / 1024))"
}

# ---------------------------------------------------------------- images

# The name an image ref loads as: an archive's first tag, else the ref itself.
image_name() {
  if [[ -f "$1" ]]; then
    tar -xOf "$1" manifest.json 2>/dev/null | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p'
  else
    echo "$1"
  fi
}

# Import an image into the node's containerd: a docker/OCI archive path, or
# the name of an image in buildah's local storage (exported first).
load_image_local() {
  proc_alive containerd || die "cluster is not up"
  local ref tar tmp
  for ref in "$@"; do
    if [[ -f "$ref" ]]; then
      tar=$ref
    else
      tmp=$(mktemp -d); tar="$tmp/image.tar"
      buildah push --quiet "$ref" "docker-archive:$tar:$ref" >/dev/null || die "no image $ref in buildah storage"
    fi
    ctr_ images import "$tar" | sed 's/^/  /' >&2
    # containerd's CRI learns of imported images asynchronously; wait until it
    # reports the new image id, or a pod created right away may get the old one.
    local cfg name
    cfg=$(tar -xOf "$tar" manifest.json 2>/dev/null | sed -n 's/.*"Config":"\([0-9a-f]*\)\.json".*/\1/p')
    name=$(image_name "$tar")
    if [[ -n "$cfg" && -n "$name" ]]; then
      wait_for "CRI to see $name" 30 bash -c '"$@" | grep -q "\"id\": \"sha256:'"$cfg"'\""' _ \
        env CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCK" "$CRICTL_BIN/crictl" inspecti "$name"
    fi
    [[ -n "${tmp:-}" ]] && rm -rf "$tmp"
    grep -qxF "$ref" "$LOADED_IMAGES" 2>/dev/null || echo "$ref" >>"$LOADED_IMAGES"
    log "loaded $ref"
  done
}
