# Container images built with no registry: buildah from `scratch`, exported
# as docker-archive tarballs (tagged, so `ctr images import` keeps the name).
# Sourced by cluster.sh.


# A cached archive is the source of truth; put the image back into buildah's
# storage when that was wiped, so later builds can use it as a FROM.
_ensure_stored() { # image tarball
  buildah inspect --type image "$1" >/dev/null 2>&1 || buildah pull --quiet "docker-archive:$2" >/dev/null
}

# Commit a working container and export it to a tagged archive in the cache.
_commit_and_export() { # container image tarball
  buildah commit --quiet "$1" "$2" >/dev/null
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
