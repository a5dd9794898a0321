# Node pressure for the resource-fault tests (local mode): the kubelet's hard
# eviction thresholds are raised to just under what the node has free, so a
# test can starve the node of memory or disk with a pod's few hundred MiB or
# GiB instead of filling the shared machine. A drop-in in the kubelet's
# --config-dir holds them; the kubelet restarts to read it (pods keep running
# through that).
#
#   pressure on [memory.available=Q] [nodefs.available=Q]
#   pressure off           thresholds back, images the kubelet reclaimed loaded again
#   pressure status        the drop-in and the node's pressure conditions

PRESSURE_DROPIN="$STATE_DIR/kubelet.conf.d/50-pressure.conf"

pressure() {
  local sub=${1:-}; shift || true
  case "$sub" in
    on) pressure_on "$@" ;;
    off) pressure_off ;;
    status)
      if [[ -f "$PRESSURE_DROPIN" ]]; then sed -n 's/^evictionHard: /thresholds: /p' "$PRESSURE_DROPIN"; else echo "thresholds: the cluster's own"; fi
      kctl get node "$NODE_NAME" -o jsonpath='{range .status.conditions[*]}{.type}={.status}{"\n"}{end}' | grep Pressure ;;
    *) die "pressure on [memory.available=Q] [nodefs.available=Q] | off | status" ;;
  esac
}

pressure_on() {
  proc_alive kubelet || die "pressure: the kubelet is not running (is the cluster up?)"
  # The cluster's own thresholds (write_configs) unless named here.
  local memory=100Mi nodefs=512Mi arg
  for arg in "$@"; do
    case "$arg" in
      memory.available=?*) memory=${arg#*=} ;;
      nodefs.available=?*) nodefs=${arg#*=} ;;
      *) die "pressure on: unknown threshold '$arg' (memory.available=Q or nodefs.available=Q)" ;;
    esac
  done
  mkdir -p "$(dirname "$PRESSURE_DROPIN")"
  cat >"$PRESSURE_DROPIN" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionHard: {memory.available: "$memory", nodefs.available: "$nodefs", imagefs.available: "512Mi"}
# The node leaves the pressure condition 5 s after the signal does (default
# 5 min), so a test sees the node recover.
evictionPressureTransitionPeriod: 5s
# The kubelet measures emptyDirs every 5 s (default 1 min), so it ranks pods
# for eviction by what they hold now.
volumeStatsAggPeriod: 5s
EOT
  restart_component kubelet
  log "eviction thresholds: memory.available<$memory nodefs.available<$nodefs"
}

pressure_off() {
  if [[ -f "$PRESSURE_DROPIN" ]]; then
    rm -f "$PRESSURE_DROPIN"
    restart_component kubelet
  fi
  local ref name
  [[ -f "$LOADED_IMAGES" ]] || return 0
  while read -r ref; do
    name=$(image_name "$ref")
    if ! CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCK" "$CRICTL_BIN/crictl" inspecti "$name" >/dev/null 2>&1; then
      log "the kubelet reclaimed $name: loading it again"
      load_image_local "$ref"
    fi
  done <"$LOADED_IMAGES"
  log "eviction thresholds: the cluster's own"
}
