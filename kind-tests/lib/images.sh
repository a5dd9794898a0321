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
REDIS_IMAGE="${REDIS_IMAGE:-ghcr.io/eol-dev/redis-stack:8.2.3}"
# Bump when a recipe below changes, so cached archives are rebuilt.
RUNNER_RECIPE=1
REDIS_RECIPE=1
# The uid/gid both images run as (distroless' "nonroot").
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

# Adds a passwd/group entry for the image's user.
_add_user() { # mounted rootfs name home
  echo "$2:x:$IMAGE_UID:$IMAGE_UID:$2:$3:/usr/sbin/nologin" >>"$1/etc/passwd"
  echo "$2:x:$IMAGE_UID:" >>"$1/etc/group"
}

# The `eol` binary the runner image ships: $EOL_RUNNER_BINARY as given, else
# `cargo build --release` (a no-op when up to date, so the image never carries
# a stale binary) into $CARGO_TARGET_DIR.
runner_binary() {
  if [[ -n "${EOL_RUNNER_BINARY:-}" ]]; then
    [[ -x "$EOL_RUNNER_BINARY" ]] || die "EOL_RUNNER_BINARY=$EOL_RUNNER_BINARY is not an executable"
    echo "$EOL_RUNNER_BINARY"; return 0
  fi
  local target="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}" bin
  bin="$target/release/eol"
  if have cargo; then
    log "cargo build --release -p eol-runner (CARGO_TARGET_DIR=$target)"
    (cd "$EOL_REPO_ROOT" && CARGO_TARGET_DIR="$target" nice -n 19 cargo build --release --quiet -p eol-runner >&2) ||
      die "the eol binary did not build"
  elif [[ -x "$bin" ]]; then
    log "cargo not found: using the existing $bin"
  else
    die "no $bin and no cargo to build it (or set EOL_RUNNER_BINARY)"
  fi
  echo "$bin"
}

_runner_archive() { # binary
  echo "$IMAGE_CACHE/eol-runner-$EOL_VERSION-r$RUNNER_RECIPE-$(sha256sum "$1" | cut -c1-16).tar"
}

_redis_archive() {
  echo "$IMAGE_CACHE/redis-stack-${REDIS_IMAGE##*:}-r$REDIS_RECIPE-$(basename "$("$EOL_REPO_ROOT/scripts/redis.sh" path)").tar"
}

# The runner: `eol` plus Python 3 for the sandbox's `python3 -I -S` workers
# (python3-minimal and the stdlib, no pip) and the CA certificates HTTPS model
# endpoints are verified against; uid 65532, WORKDIR /work.
build_runner_image() { # prints the archive path
  apt_ensure buildah binutils; mkdir -p "$IMAGE_CACHE"
  local bin tar; bin=$(runner_binary); tar=$(_runner_archive "$bin")
  [[ -s "$tar" ]] && { _ensure_stored "$RUNNER_IMAGE" "$tar"; echo "$tar"; return 0; }
  build_base_image
  local tmp c m; tmp=$(mktemp -d)
  # Debug info is for profiling builds, not pods: a panic still names the functions.
  objcopy --strip-debug "$bin" "$tmp/eol"
  c=$(buildah from --quiet "$BASE_IMAGE")
  log "apt-get install python3-minimal libpython3.11-stdlib ca-certificates in $RUNNER_IMAGE"
  buildah run --network host "$c" -- sh -c 'apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-minimal libpython3.11-stdlib ca-certificates >/dev/null &&
    apt-get clean' >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; buildah rm "$c" >/dev/null; die "apt-get failed"; }
  m=$(buildah mount "$c")
  _slim_rootfs "$m"
  _add_user "$m" eol /work
  install -d -o "$IMAGE_UID" -g "$IMAGE_UID" "$m/work"
  install -m 0755 "$tmp/eol" "$m/usr/local/bin/eol"
  buildah umount "$c" >/dev/null
  buildah config --cmd '[]' "$c" # first, or the base's /bin/bash would be the entrypoint's argument
  buildah config --user "$IMAGE_UID:$IMAGE_UID" --workingdir /work --entrypoint '["/usr/local/bin/eol"]' \
    --label org.opencontainers.image.title=eol-runner \
    --label org.opencontainers.image.version="$EOL_VERSION" "$c"
  # One squashed layer: the docs and translations removed above then take no space.
  _commit_replacing "$c" "$RUNNER_IMAGE" "$tar"
  find "$IMAGE_CACHE" -maxdepth 1 -name 'eol-runner-*.tar' ! -path "$tar" -delete
  rm -rf "$tmp"
  log "built $RUNNER_IMAGE ($(du -m "$tar" | cut -f1) MiB, $tar)"
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

# Builds both project images (cached) and prints, for `eval`, their names and archives.
project_images() {
  local runner redis
  runner=$(build_runner_image); redis=$(build_redis_image)
  echo "export EOL_RUNNER_IMAGE=$RUNNER_IMAGE"
  echo "export EOL_RUNNER_IMAGE_ARCHIVE=$runner"
  echo "export EOL_REDIS_IMAGE=$REDIS_IMAGE"
  echo "export EOL_REDIS_IMAGE_ARCHIVE=$redis"
}

# load-image arguments with the project images resolved to their archives:
# `project` is both; a project image's name is its (built if needed) archive.
resolve_image_refs() { # refs...
  local ref
  for ref in "$@"; do
    case "$ref" in
      project) build_runner_image; build_redis_image ;;
      "$RUNNER_IMAGE") build_runner_image ;;
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
