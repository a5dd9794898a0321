# The kind path, used where a Docker engine answers and `kind` is installed.
# It cannot be exercised on machines without Docker, so it stays thin: kind
# itself provides the node image, CoreDNS and a default "standard" StorageClass.
# Sourced by cluster.sh.

KIND_KUBECONFIG="$CACHE_ROOT/kind/kubeconfig"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:$K8S_VERSION}"

kind_available() { have kind && have docker && docker info >/dev/null 2>&1; }
kind_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }

kind_up() {
  mkdir -p "$(dirname "$KIND_KUBECONFIG")"
  if kind_exists; then
    log "kind cluster $CLUSTER_NAME already exists"
  else
    kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" \
      --kubeconfig "$KIND_KUBECONFIG" --wait 180s
  fi
  kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KIND_KUBECONFIG" >/dev/null
  echo "export KUBECONFIG=$KIND_KUBECONFIG"
}

kind_down() { kind_exists && kind delete cluster --name "$CLUSTER_NAME" || log "no kind cluster"; }

kind_status() {
  kind_exists || { echo "kind cluster $CLUSTER_NAME: down"; return 3; }
  echo "kind cluster: $CLUSTER_NAME (logs: kind export logs --name $CLUSTER_NAME)"
  echo "kubeconfig:   $KIND_KUBECONFIG"
  kubectl --kubeconfig "$KIND_KUBECONFIG" get nodes -o wide
}

kind_load_image() { # image names in Docker or buildah's storage, or archive paths
  local ref tmp
  for ref in "$@"; do
    if [[ -f "$ref" ]]; then kind load image-archive "$ref" --name "$CLUSTER_NAME"
    elif docker image inspect "$ref" >/dev/null 2>&1; then kind load docker-image "$ref" --name "$CLUSTER_NAME"
    else
      tmp=$(mktemp -d)
      buildah push --quiet "$ref" "docker-archive:$tmp/image.tar:$ref" >/dev/null
      kind load image-archive "$tmp/image.tar" --name "$CLUSTER_NAME"
      rm -rf "$tmp"
    fi
  done
}
