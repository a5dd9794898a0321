# Builds the cluster binaries from Go modules into the versioned cache.
# Sourced by cluster.sh. Each build is skipped when its outputs exist.

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

go_env() {
  ensure_go
  # auto: a local Go older than a module's `go` line fetches the right
  # toolchain from the Go module proxy (etcd 3.6.16 needs go >= 1.26).
  export CGO_ENABLED=0 GOFLAGS="-p=$GO_PARALLEL" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
}

# A Go that can switch toolchains (>= 1.21). Debian 12 only ships 1.19, which
# can still download the toolchain module itself from the Go module proxy.
ensure_go() {
  local v
  if have go; then
    v=$(go env GOVERSION 2>/dev/null); v=${v#go}
    [[ "$(printf '%s\n1.21\n' "${v%%[-rc]*}" | sort -V | head -1)" == 1.21 ]] && return 0
  else
    apt_ensure golang-go
  fi
  local tc="v0.0.1-$GO_BOOTSTRAP.linux-amd64" root="$CACHE_ROOT/go/$GO_BOOTSTRAP" dir
  if [[ ! -x "$root/bin/go" ]]; then
    log "bootstrapping $GO_BOOTSTRAP from the Go module proxy (golang.org/toolchain@$tc)"
    dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "golang.org/toolchain@$tc" |
      sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    [[ -f "$dir/bin/go" ]] || die "could not fetch golang.org/toolchain@$tc"
    # Module zips carry no file modes: restore the executables, as `go` does
    # when it switches toolchains itself.
    rm -rf "$root"; mkdir -p "${root%/*}"; cp -r "$dir" "$root"; chmod -R u+w "$root"
    chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
  fi
  export PATH="$root/bin:$PATH"
}

# `go install k8s.io/kubernetes/cmd/...@v` fails because upstream go.mod
# replaces its staging modules with ./staging paths. A helper module that
# requires k8s.io/kubernetes and maps every staging module to its published
# v0.<minor>.<patch> tag builds the same sources.
build_k8s() {
  local out="$K8S_BIN" c missing=0
  for c in "${K8S_COMMANDS[@]}"; do [[ -x "$out/$c" ]] || missing=1; done
  ((missing == 0)) && { log "k8s $K8S_VERSION binaries cached in $out"; return 0; }
  go_env
  local mod="$CACHE_ROOT/k8s/$K8S_VERSION/module"
  local staging_ver="v0.${K8S_VERSION#v1.}"
  mkdir -p "$mod" "$out"
  (
    cd "$mod" || exit 1
    [[ -f go.mod ]] || go mod init eol.local/k8s-build >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    local upstream
    upstream=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [[ -f "$upstream" ]] || die "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"
    # Every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.34.N`.
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1} $1 == "replace" && $3 == "=>" && $4 ~ /^\.\/staging\// {print $2}' "$upstream" |
      sort -u | while read -r m; do
        go mod edit -replace="$m=$m@$staging_ver"
      done
    local pkgs=() ldflags="-s -w" p
    for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    log "building ${K8S_COMMANDS[*]} $K8S_VERSION (go -p $GO_PARALLEL); this takes a while cold"
    local t0=$SECONDS
    nice -n 19 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
    log "k8s binaries built in $((SECONDS - t0))s"
    echo "$((SECONDS - t0))" >"$out/.build-seconds"
  )
}

# Builds one Go command as a dependency of a small helper module, cached by
# version: etcd's and CoreDNS's modules replace siblings with local paths, so
# `go install` cannot build them directly.
#   build_go_module NAME VERSION BIN_DIR MODULE PACKAGE [LDFLAGS]
build_go_module() {
  local name=$1 version=$2 bin_dir=$3 module=$4 package=$5 ldflags="-s -w ${6:-}"
  [[ -x "$bin_dir/$name" ]] && { log "$name $version cached in $bin_dir"; return 0; }
  go_env
  local mod="$CACHE_ROOT/$name/$version/module"
  mkdir -p "$mod" "$bin_dir"
  (
    cd "$mod" || exit 1
    [[ -f go.mod ]] || go mod init "eol.local/$name-build" >/dev/null 2>&1
    go mod edit -require="$module@$version"
    local t0=$SECONDS
    log "building $name $version"
    nice -n 19 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$bin_dir/$name" "$package"
    echo "$((SECONDS - t0))" >"$bin_dir/.build-seconds"
    log "$name built in $((SECONDS - t0))s"
  )
}

build_etcd() {
  build_go_module etcd "$ETCD_VERSION" "$ETCD_BIN" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
}

build_coredns() {
  build_go_module coredns "$COREDNS_VERSION" "$COREDNS_BIN" github.com/coredns/coredns github.com/coredns/coredns
}

# crictl (cri-tools) talks CRI to containerd: `down` uses it to stop pod
# sandboxes properly (CNI teardown included), and it is the standard debug tool.
build_crictl() {
  build_go_module crictl "$CRICTL_VERSION" "$CRICTL_BIN" sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# helm (v4) for the chart: helm.sh/helm/v4 has no local replaces, but building it
# through the helper module keeps one recipe and one cache layout. The version
# ldflags are the ones helm's Makefile sets for a tagged build, so `helm version`
# reports $HELM_VERSION (the commit is not in the module zip, so it stays empty).
build_helm() {
  build_go_module helm "$HELM_VERSION" "$HELM_BIN" helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}

# krew, kubectl's plugin manager: the tests install `kubectl eol` with it from
# the package `kubectl-eol/package.sh` makes, as a user would from an index.
build_krew() {
  build_go_module krew "$KREW_VERSION" "$KREW_BIN" sigs.k8s.io/krew sigs.k8s.io/krew/cmd/krew \
    "-X sigs.k8s.io/krew/internal/version.gitTag=$KREW_VERSION"
}

# Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger): an OpenTelemetry
# Collector distribution whose default config is all-in-one with in-memory
# storage, OTLP on :4317/:4318 and the query API on :16686.
build_jaeger() {
  build_go_module jaeger "$JAEGER_VERSION" "$JAEGER_BIN" github.com/jaegertracing/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
}

# What a cluster needs to come up.
build_core() {
  build_etcd
  build_coredns
  build_crictl
  build_k8s
}

# build_core and the tools of the cluster tests.
build_all() {
  build_core
  build_kwok # lib/fleet.sh
  build_metrics_server # lib/metrics.sh
  build_kube_network_policies # lib/netpol.sh
  build_jaeger
}
