# KEDA's CRDs only (ScaledObject, TriggerAuthentication, ...), for tests that
# create KEDA objects without running KEDA. They come from KEDA's Go module,
# whose zip carries config/crd/bases/. Sourced by cluster.sh.
#
# KEDA_VERSION (lib/common.sh) is v2.21.0: v2.21.1 is served too, but its
# go.mod says `go 1.27.4`, and `go mod download` refuses it with the machine's
# Go 1.26 (GOTOOLCHAIN=local), or first fetches a whole 1.27 toolchain (auto)
# just to unpack YAML. Its CRDs and redis-streams scaler are byte-identical.
KEDA_MODULE=github.com/kedacore/keda/v2

# The module's directory in the Go module cache (read-only, shared with every
# other Go build here), downloaded once.
keda_module_dir() {
  ensure_go
  local dir out err
  # Outside any module, and never switching toolchains for a download.
  if ! out=$(cd / && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$KEDA_MODULE@$KEDA_VERSION" 2>&1); then
    err=$(echo "$out" | sed -n 's/.*"Error": "\(.*\)".*/\1/p' | head -1)
    die "keda: go mod download $KEDA_MODULE@$KEDA_VERSION failed: ${err:-$(echo "$out" | tail -1)}"
  fi
  dir=$(echo "$out" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [[ -d "$dir/config/crd/bases" ]] || die "keda: no config/crd/bases in $KEDA_MODULE@$KEDA_VERSION ($dir)"
  echo "$dir"
}

# Paths of the CRDs the tests use, one a line: ScaledObject, then
# TriggerAuthentication and ClusterTriggerAuthentication when the version has them.
keda_crd_files() {
  local bases f
  # `|| exit`: errexit does not reach into the command substitutions this runs in.
  bases="$(keda_module_dir)/config/crd/bases" || exit 1
  [[ -f "$bases/keda.sh_scaledobjects.yaml" ]] || die "keda: no keda.sh_scaledobjects.yaml in $bases"
  for f in scaledobjects triggerauthentications clustertriggerauthentications; do
    [[ -f "$bases/keda.sh_$f.yaml" ]] && echo "$bases/keda.sh_$f.yaml"
  done
  return 0
}

# Server-side apply: the ScaledObject CRD is too large for the
# last-applied-configuration annotation of a client-side apply.
keda_apply_crds() {
  local list files=() f args=()
  list=$(keda_crd_files) || exit 1
  mapfile -t files <<<"$list"
  for f in "${files[@]}"; do args+=(-f "$f"); done
  kctl get --raw /readyz >/dev/null 2>&1 || die "keda-crds: the cluster is not reachable (cluster.sh up)"
  kctl apply --server-side --field-manager=eol-kind "${args[@]}" >&2 || die "keda-crds: server-side apply of ${files[*]} failed"
  kctl wait --for=condition=Established --timeout=60s "${args[@]}" >/dev/null ||
    die "keda-crds: the CRDs did not become Established"
  log "keda-crds: KEDA $KEDA_VERSION CRDs applied: ${files[*]##*/}"
}
