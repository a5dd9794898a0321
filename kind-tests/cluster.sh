#!/usr/bin/env bash
# Entry point for the kind-tests cluster: a kind cluster where a Docker engine
# works and kind is installed, otherwise a real single-node Kubernetes from
# local processes (see README.md).
#
#   cluster.sh up                 bring the cluster up (idempotent; cleans crash leftovers)
#   cluster.sh down               stop every process `up` started and remove the state
#   cluster.sh status             component pids, log directory, nodes
#   cluster.sh env                print `export KUBECONFIG=...` (and PATH for kubectl v1.34 and helm)
#   cluster.sh load-image REF...  import images (buildah/docker names or archive files; `project`: the runner, operator and Redis images)
#   cluster.sh build [core]       build and cache binaries (helm and kwok included) and base images only;
#                                 `core`: only what `up` needs, and helm (the demo)
#   cluster.sh memory             resident memory of the cluster's processes
#   cluster.sh images             build only the busybox and Debian base images (in buildah storage)
#   cluster.sh project-images     build the runner, operator and Redis images (cached), load them and the tests' busybox image if a cluster is up; prints `export EOL_RUNNER_IMAGE=...` etc.
#   cluster.sh fleet up N         kwok with exactly N fake nodes kwok-node-0..N-1 (label type=kwok, taint kwok.x-k8s.io/node=fake:NoSchedule);
#                                 their pods become Running+Ready, restartPolicy Never pods succeed after EOL_FLEET_RUN_SECONDS (1) with a runner's report
#   cluster.sh fleet down         stop kwok, delete the fake nodes, force-remove their pods (`down` stops kwok too)
#   cluster.sh fleet status       kwok's pid, fake nodes, pods bound to them
#   cluster.sh metrics up         metrics-server (a local process) behind metrics.k8s.io/v1beta1: kubectl top, CPU HPAs;
#                                 idempotent, waits until the running pods have metrics
#   cluster.sh metrics down       unregister metrics.k8s.io and stop metrics-server (`down` stops it too)
#   cluster.sh metrics status     metrics-server's pid, the APIService, kubectl top pods -A
#   cluster.sh netpol up          NetworkPolicy enforcement: kube-network-policies (a local process) fed pod traffic through an nfqueue;
#                                 idempotent, waits until it listens (lib/netpol.sh says how packets reach it)
#   cluster.sh netpol down        stop it and remove its netfilter objects and RBAC (`down` stops it too)
#   cluster.sh netpol status      its pid, nfqueue, diversion rules and verdict counters, the NetworkPolicies
#   cluster.sh netpol build       build and cache it only
#   cluster.sh keda-crds          server-side apply KEDA's ScaledObject/TriggerAuthentication CRDs (no KEDA runs)
#   cluster.sh restart NAME [--kill]  stop one component (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#                                 containerd, kubelet, kube-proxy; --kill: SIGKILL, as a crash) and start it again with
#                                 its flags; returns once it serves (the chaos tests)
#   cluster.sh pressure on [memory.available=Q] [nodefs.available=Q]  the kubelet's hard eviction thresholds raised
#                                 (a drop-in, kubelet restarted); `pressure off`: undone, images the kubelet reclaimed
#                                 loaded again; `pressure status`: the drop-in, the node's pressure conditions
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/build.sh"
source "$HERE/lib/images.sh"
source "$HERE/lib/pki.sh"
source "$HERE/lib/local.sh"
source "$HERE/lib/kind.sh"
source "$HERE/lib/fleet.sh"
source "$HERE/lib/metrics.sh"
source "$HERE/lib/netpol.sh"
source "$HERE/lib/keda.sh"
source "$HERE/lib/pressure.sh"

# EOL_CLUSTER_MODE=kind|local forces a mode; otherwise kind when usable, except
# that a local cluster already running is always the one addressed.
mode() {
  if [[ -n "${EOL_CLUSTER_MODE:-}" ]]; then echo "$EOL_CLUSTER_MODE"
  elif [[ -d "$STATE_DIR" ]]; then echo local
  elif kind_available; then echo kind
  else echo local; fi
}

[[ $EUID -eq 0 ]] || [[ "${1:-}" == env ]] || die "the local cluster needs root (containerd, iptables, mounts)"

cmd="${1:-}"; shift || true
case "$cmd:$(mode)" in
  up:kind) kind_up ;;
  up:local) local_up ;;
  down:kind) kind_down ;;
  down:local) local_down ;;
  status:kind) kind_status ;;
  status:local) status_local ;;
  env:kind)
    echo "export KUBECONFIG=$KIND_KUBECONFIG"
    echo "export PATH=$HELM_BIN:\$PATH" ;;
  env:local)
    echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
    echo "export PATH=$K8S_BIN:$CRICTL_BIN:$HELM_BIN:\$PATH"
    echo "export CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_SOCK" ;;
  load-image:*)
    refs=$(resolve_image_refs "$@")
    # shellcheck disable=SC2086 # one ref per line, none with spaces
    if [[ "$(mode)" == kind ]]; then kind_load_image $refs; else load_image_local $refs; fi ;;
  memory:local) memory_local ;;
  memory:kind) echo "memory: see docker stats for the kind node container" ;;
  mode:*) mode ;;
  images:*) build_test_images ;;
  project-images:*)
    # Built, then loaded when a cluster is up; the export lines go last, to stdout.
    env=$(project_images); eval "$env"
    # The cluster tests' in-cluster client (sh, wget): named in common.sh, so loaded with the rest.
    apt_ensure buildah busybox-static; build_busybox_image >&2
    busybox="$IMAGE_CACHE/busybox.tar"
    if [[ "$(mode)" == kind ]] && kind_exists; then
      kind_load_image "$EOL_RUNNER_IMAGE_ARCHIVE" "$EOL_OPERATOR_IMAGE_ARCHIVE" "$EOL_REDIS_IMAGE_ARCHIVE" "$busybox" >&2
    elif [[ "$(mode)" == local ]] && proc_alive containerd; then
      load_image_local "$EOL_RUNNER_IMAGE_ARCHIVE" "$EOL_OPERATOR_IMAGE_ARCHIVE" "$EOL_REDIS_IMAGE_ARCHIVE" "$busybox"
    else
      log "no cluster up: images built, not loaded"
    fi
    echo "$env" ;;
  fleet:local) fleet "$@" ;;
  fleet:kind) die "fleet: only with the local cluster (kwok runs as a local process against it)" ;;
  metrics:local) metrics "$@" ;;
  metrics:kind) die "metrics: only with the local cluster (metrics-server runs as a local process against it)" ;;
  netpol:local) netpol "$@" ;;
  netpol:kind) die "netpol: only with the local cluster (kube-network-policies runs as a local process on the node)" ;;
  keda-crds:local) keda_apply_crds ;;
  restart:local) restart_component "$@" ;;
  pressure:local) pressure "$@" ;;
  pressure:kind) die "pressure: only with the local cluster (it restarts the kubelet with other thresholds)" ;;
  restart:kind) die "restart: only with the local cluster (its components are local processes)" ;;
  keda-crds:kind) die "keda-crds: written for the local cluster only (not tried with kind)" ;;
  build:*)
    apt_ensure buildah gcc libc6-dev busybox-static debootstrap
    # `build core`: what `up` and the demo need (no test tools).
    if [[ "${1:-}" == core ]]; then build_core; else build_all; build_krew; fi
    build_helm; build_images ;;
  *) sed -n '6,35p' "$0" >&2; exit 2 ;;
esac
