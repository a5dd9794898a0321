# Shared settings for the kind-tests cluster scripts. Sourced, not executed.
# Everything is keyed by version so a cache built once is reused, and a
# version bump builds beside the old one instead of overwriting it.

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.4}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
# Helm: lints, renders and installs charts/eol (the chart tests run it from the cache).
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
KREW_VERSION="${KREW_VERSION:-v0.4.3}"
# kwok: fake nodes for scale tests (`cluster.sh fleet`), from sigs.k8s.io/kwok/cmd/kwok.
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# metrics-server: the metrics.k8s.io API (kubectl top, CPU HorizontalPodAutoscalers), `cluster.sh metrics`.
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
# kube-network-policies: NetworkPolicy enforcement (`cluster.sh netpol`), from sigs.k8s.io/kube-network-policies/cmd.
KUBE_NETWORK_POLICIES_VERSION="${KUBE_NETWORK_POLICIES_VERSION:-v0.8.0}"
# KEDA: only its CRDs (ScaledObject, TriggerAuthentication), from the Go module
# github.com/kedacore/keda/v2 (`cluster.sh keda-crds`; lib/keda.sh says why not v2.21.1).
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
# Jaeger (v2, an OTLP receiver with a query API): the trace backend the tracing tests read spans from.
JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.1}"
COREDNS_IMAGE="${COREDNS_IMAGE:-registry.k8s.io/coredns/coredns:${COREDNS_VERSION}}"
BASE_IMAGE="${BASE_IMAGE:-localhost/eol/debian-base:bookworm}"
BUSYBOX_IMAGE="${BUSYBOX_IMAGE:-localhost/eol/busybox:1.35}"

CACHE_ROOT="${EOL_CACHE:-$HOME/.cache/eol}"
K8S_BIN="$CACHE_ROOT/k8s/$K8S_VERSION/bin"
ETCD_BIN="$CACHE_ROOT/etcd/$ETCD_VERSION/bin"
COREDNS_BIN="$CACHE_ROOT/coredns/$COREDNS_VERSION/bin"
CRICTL_BIN="$CACHE_ROOT/crictl/$CRICTL_VERSION/bin"
HELM_BIN="$CACHE_ROOT/helm/$HELM_VERSION/bin"
KREW_BIN="$CACHE_ROOT/krew/$KREW_VERSION/bin"
KWOK_BIN="$CACHE_ROOT/kwok/$KWOK_VERSION/bin"
JAEGER_BIN="$CACHE_ROOT/jaeger/$JAEGER_VERSION/bin"
METRICS_SERVER_BIN="$CACHE_ROOT/metrics-server/$METRICS_SERVER_VERSION/bin"
NETPOL_BIN="$CACHE_ROOT/kube-network-policies/$KUBE_NETWORK_POLICIES_VERSION/bin"
IMAGE_CACHE="$CACHE_ROOT/images"

# Runtime state of the local cluster: pids, certs, configs, logs, data.
# Removed by `down`; its presence after a crash is what `up` cleans first.
STATE_DIR="${EOL_CLUSTER_STATE:-/var/lib/eol-kind}"
# Logs outlive `down` (for post-mortems); each `up` moves the previous set to logs.prev.
LOG_DIR="${EOL_CLUSTER_LOGS:-/var/log/eol-kind}"
PID_DIR="$STATE_DIR/pids"
PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_ADMIN="$STATE_DIR/admin.kubeconfig"
# Every image archive or name loaded into the local node, one per line: under
# disk pressure the kubelet deletes unused images (containerd 1.6 pins none),
# and here they are loaded, never pulled, so `pressure off` loads them again.
LOADED_IMAGES="$STATE_DIR/loaded-images"

CLUSTER_NAME="${CLUSTER_NAME:-eol}"
NODE_NAME="${NODE_NAME:-eol-node}"
SERVICE_CIDR="10.96.0.0/16"
FIRST_SERVICE_IP="10.96.0.1"
DNS_SERVICE_IP="10.96.0.10"
POD_CIDR="10.244.0.0/24"
CLUSTER_DOMAIN="cluster.local"

# Used only where no Go >= 1.21 is installed (see ensure_go).
GO_BOOTSTRAP="${GO_BOOTSTRAP:-go1.26.8}"
# Go builds are heavy; stay polite to whoever else uses the machine.
GO_PARALLEL="${GO_PARALLEL:-2}"

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Install Debian packages only when one of them is missing.
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "apt-get install ${missing[*]}"
  if [[ ! -f /var/lib/apt/periodic/eol-updated ]] || ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
    apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/eol-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
