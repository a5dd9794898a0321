# NetworkPolicy enforcement for the local cluster: kube-network-policies
# (sigs.k8s.io/kube-network-policies) as one more local process, as metrics-server
# is in lib/metrics.sh. Upstream runs it as a privileged hostNetwork DaemonSet pod;
# here the node is this host, so it runs on the host, in the host's network
# namespace. Sourced by cluster.sh.
#
#   netpol up       build (cached), RBAC and token, start the engine, send pod traffic to it;
#                   idempotent, waits until it listens on its nfqueue
#   netpol down     stop sending traffic to it, stop it, remove every netfilter object it or
#                   `up` made, delete its RBAC (`down` does the host part too)
#   netpol status   pid, its nfqueue, how traffic reaches it, verdict counters, the policies
#   netpol build    build only
#
# How it enforces: a netfilter rule hands the first packet of each new pod
# connection to an NFQUEUE; the engine reads it in user space, evaluates the
# NetworkPolicies of the source pod (egress) and of the destination pod
# (ingress), and answers accept or drop. Later packets of an accepted connection
# pass in the kernel (conntrack ESTABLISHED). Pods are on the bridge eol0
# (lib/local.sh); bridged pod-to-pod packets reach the IPv4 hooks through
# br_netfilter (net.bridge.bridge-nf-call-iptables=1, set by host_setup).
#
# Two ways the packets reach the queue:
# - its own nftables table `inet kube-network-policies` (chain postrouting, hook
#   postrouting, priority srcnat - 5; sets podips-v4/podips-v6 of the pods selected
#   by a policy; chain prerouting only with --netfilter-bug-1766-fix, off here on
#   kernels >= 6.12). It uses the nftables `queue` expression (nft_queue), which
#   this project's machines lack: their kernel has no modules and
#   CONFIG_NFT_QUEUE unset, so the kernel refuses the engine's whole batch
#   ("netlink receive: no such file or directory"), the table never exists, the
#   engine logs the error at every sync and enforces nothing.
# - so, when that table is absent once the engine listens, `up` adds the same
#   diversion with iptables (iptables-nft, the NFQUEUE target through nft_compat,
#   which these kernels have): chain EOL-NETPOL in table mangle, jumped to from
#   POSTROUTING (priority -150: after kube-proxy's DNAT, before its masquerade,
#   as upstream's srcnat - 5). It differs from upstream in two ways: it sends
#   every new pod connection to the engine, not only those of pods a policy
#   selects (pods without policies are accepted by the engine, one round trip
#   later), and always with --queue-bypass: while no program listens on the
#   queue, packets pass unfiltered instead of every pod connection dropping.
# As upstream: traffic from sockets of root on the host is never queued (kubelet
# probes, the tests' own clients), and packets delivered to the host itself
# (pods to the API server via 10.96.0.1, to metrics-server) never pass
# postrouting, so egress to the node is not enforced.
#
# Identity: the engine only reads rest.InClusterConfig (no --kubeconfig flag):
# the token and CA at /var/run/secrets/kubernetes.io/serviceaccount and
# KUBERNETES_SERVICE_HOST/PORT. It runs in a mount namespace of its own (slave
# propagation, so host unmounts still reach it), with a tmpfs over /run that
# holds only that directory, bound to $STATE_DIR/netpol/serviceaccount: nothing
# is written under the host's /run. The token is the ServiceAccount
# kube-system/kube-network-policies's (manifests/kube-network-policies.yaml,
# upstream's RBAC), requested by `up` (TokenRequest, EOL_NETPOL_TOKEN_DURATION);
# the engine rereads the file, so a later `up` renews it in place.
# NRI (pod IPs straight from the runtime) needs containerd >= 1.7 with NRI on;
# Debian's containerd 1.6 has none, the engine logs that once and uses the API
# server's pod IPs (v0.8.0's --disable-nri flag is parsed but not used).

NETPOL_NAME=kube-network-policies
# The nfqueue number; the engine's default is 100, upstream's DaemonSet uses 98.
NETPOL_QUEUE="${EOL_NETPOL_QUEUE:-100}"
# Its Prometheus /metrics (kube_network_policies_packet_count{verdict}, ...), on loopback.
NETPOL_METRICS_PORT="${EOL_NETPOL_METRICS_PORT:-9080}"
# 2 is upstream's DaemonSet: one "Evaluating packet" line and its verdict per queued packet.
NETPOL_VERBOSITY="${EOL_NETPOL_VERBOSITY:-2}"
# true: --fail-open (packets beyond a full queue, and unparsable ones, are accepted).
NETPOL_FAIL_OPEN="${EOL_NETPOL_FAIL_OPEN:-false}"
NETPOL_TOKEN_DURATION="${EOL_NETPOL_TOKEN_DURATION:-24h}"
NETPOL_DIR="$STATE_DIR/netpol"
NETPOL_SA_DIR="$NETPOL_DIR/serviceaccount"
# The engine's own table (family inet), its name in v0.8.0's networkpolicy.Config.
NETPOL_TABLE=kube-network-policies
NETPOL_CHAIN=EOL-NETPOL
# The jump from mangle POSTROUTING, exactly as added and deleted.
NETPOL_JUMP=(POSTROUTING -m comment --comment "kube-network-policies (kind-tests/lib/netpol.sh)" -j "$NETPOL_CHAIN")

build_kube_network_policies() {
  # The command is package main in cmd/ (upstream's Makefile builds cmd/main.go);
  # it has no version variable to set.
  build_go_module kube-network-policies "$KUBE_NETWORK_POLICIES_VERSION" "$NETPOL_BIN" \
    sigs.k8s.io/kube-network-policies sigs.k8s.io/kube-network-policies/cmd
}

netpol() {
  local sub="${1:-}"; shift || true
  case "$sub" in
    up) netpol_up ;;
    down) netpol_down ;;
    status) netpol_status ;;
    build) build_kube_network_policies ;;
    *) die "usage: cluster.sh netpol up | down | status | build" ;;
  esac
}

netpol_kernel_at_least() { # major minor
  local v maj min
  v=$(uname -r); maj=${v%%.*}; v=${v#*.}; min=${v%%[!0-9]*}
  ((maj > $1 || (maj == $1 && min >= $2)))
}

# Its line in /proc/net/netfilter/nfnetlink_queue (queue, peer portid, queued,
# copy mode, copy range, queue dropped, user dropped, id sequence), or nothing.
netpol_queue_line() {
  awk -v q="$NETPOL_QUEUE" '$1 == q' /proc/net/netfilter/nfnetlink_queue 2>/dev/null
}
netpol_queue_bound() { [[ -n "$(netpol_queue_line)" ]]; }

netpol_own_table() { have nft && nft list table inet "$NETPOL_TABLE" >/dev/null 2>&1; }
netpol_shim_present() { iptables -w -t mangle -S "$NETPOL_CHAIN" >/dev/null 2>&1; }

netpol_log_hint() {
  grep -E '^[EF][0-9]{4} |panic|could not open nfqueue|Unauthorized|forbidden' "$LOG_DIR/$NETPOL_NAME.log" 2>/dev/null | tail -1
}

# The ServiceAccount's token, the cluster CA and the namespace, as a pod gets them.
# Written beside and renamed, so the engine never reads half a token.
netpol_token() {
  local token
  mkdir -p "$NETPOL_SA_DIR"
  token=$(kctl -n kube-system create token "$NETPOL_NAME" --duration="$NETPOL_TOKEN_DURATION") ||
    die "netpol: could not request a token for kube-system/$NETPOL_NAME"
  printf '%s' "$token" >"$NETPOL_SA_DIR/.token" && mv -f "$NETPOL_SA_DIR/.token" "$NETPOL_SA_DIR/token"
  cp "$PKI_DIR/ca.crt" "$NETPOL_SA_DIR/ca.crt"
  printf 'kube-system' >"$NETPOL_SA_DIR/namespace"
  chmod 600 "$NETPOL_SA_DIR/token"
}

netpol_start() {
  local args=(
    --hostname-override="$NODE_NAME"
    --nfqueue-id="$NETPOL_QUEUE"
    --metrics-bind-address="127.0.0.1:$NETPOL_METRICS_PORT"
    --v="$NETPOL_VERBOSITY"
  )
  [[ "$NETPOL_FAIL_OPEN" == true ]] && args+=(--fail-open)
  # The workaround queues DNS in a prerouting chain too; upstream's flag help:
  # not needed for kernels 6.12+, where the conntrack race is fixed.
  netpol_kernel_at_least 6 12 && args+=(--netfilter-bug-1766-fix=false)
  # env, unshare and sh each exec the next, so the recorded pid is the engine's.
  # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
  start_proc "$NETPOL_NAME" env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=6443 \
    unshare --mount --propagation slave -- /bin/sh -c '
      mount -t tmpfs -o mode=0755,size=1m eol-netpol /run &&
      mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
      mount --bind "$1" /run/secrets/kubernetes.io/serviceaccount &&
      shift && exec "$@"' sh "$NETPOL_SA_DIR" "$NETPOL_BIN/kube-network-policies" "${args[@]}"
}

# Listening: its informers synced (so its token and RBAC work), its first
# nftables sync tried, its queue bound, its /metrics answering.
netpol_wait_listening() {
  local timeout=$1 t0=$SECONDS
  until netpol_queue_bound && curl -fsS -o /dev/null "http://127.0.0.1:$NETPOL_METRICS_PORT/metrics" 2>/dev/null; do
    proc_alive "$NETPOL_NAME" || die "kube-network-policies exited: $(netpol_log_hint) (log $LOG_DIR/$NETPOL_NAME.log)"
    ((SECONDS - t0 < timeout)) ||
      die "kube-network-policies: not listening on nfqueue $NETPOL_QUEUE after ${timeout}s: $(netpol_log_hint) (log $LOG_DIR/$NETPOL_NAME.log)"
    sleep 1
  done
}

# mangle EOL-NETPOL: established flows and root's own sockets pass, the first
# packet of any other flow from or to a pod goes to the queue (see the top).
netpol_shim_add() {
  local q=(-j NFQUEUE --queue-num "$NETPOL_QUEUE" --queue-bypass)
  iptables -w -t mangle -N "$NETPOL_CHAIN" 2>/dev/null || iptables -w -t mangle -F "$NETPOL_CHAIN"
  iptables -w -t mangle -A "$NETPOL_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -w -t mangle -A "$NETPOL_CHAIN" -m owner --uid-owner 0 -j RETURN
  iptables -w -t mangle -A "$NETPOL_CHAIN" -s "$POD_CIDR" "${q[@]}"
  iptables -w -t mangle -A "$NETPOL_CHAIN" -d "$POD_CIDR" "${q[@]}"
  iptables -w -t mangle -C "${NETPOL_JUMP[@]}" 2>/dev/null || iptables -w -t mangle -A "${NETPOL_JUMP[@]}"
}

netpol_shim_del() {
  have iptables || return 0
  while iptables -w -t mangle -D "${NETPOL_JUMP[@]}" 2>/dev/null; do :; done
  if netpol_shim_present; then
    if ! { iptables -w -t mangle -F "$NETPOL_CHAIN" && iptables -w -t mangle -X "$NETPOL_CHAIN"; }; then
      log "netpol: warning: could not remove iptables chain mangle $NETPOL_CHAIN"
    fi
  fi
  return 0
}

netpol_up() {
  local t0=$SECONDS how
  proc_alive kube-apiserver || die "the local cluster is not up (cluster.sh up)"
  # nft: to see whether the engine's table exists, and for `down` to remove it.
  apt_ensure nftables iptables util-linux
  build_kube_network_policies
  kctl apply -f "$HERE/manifests/kube-network-policies.yaml" >/dev/null ||
    die "netpol: applying manifests/kube-network-policies.yaml failed"
  netpol_token
  if ! proc_alive "$NETPOL_NAME"; then
    if netpol_queue_bound; then
      die "netpol: nfqueue $NETPOL_QUEUE is bound by another program ($(netpol_queue_line)); choose another with EOL_NETPOL_QUEUE"
    fi
    netpol_start
  fi
  netpol_wait_listening 90
  if netpol_own_table; then
    netpol_shim_del
    how="its own nftables table inet $NETPOL_TABLE"
  else
    netpol_shim_add
    how="iptables mangle $NETPOL_CHAIN (the kernel refused the engine's nftables queue rules)"
    netpol_kernel_at_least 6 12 ||
      log "netpol: warning: kernel $(uname -r) < 6.12: parallel UDP DNS queries may be dropped (netfilter bug 1766)"
  fi
  log "netpol: up in $((SECONDS - t0))s (pid $(proc_pid "$NETPOL_NAME"), nfqueue $NETPOL_QUEUE via $how, log $LOG_DIR/$NETPOL_NAME.log)"
}

# The host side, no API call (local_down runs it too): stop diverting, stop the
# engine, remove what it may have left.
netpol_stop_local() {
  local pid
  netpol_shim_del
  if proc_alive "$NETPOL_NAME"; then
    pid=$(proc_pid "$NETPOL_NAME")
    # Only SIGINT makes it delete its table (then it sleeps 5 s); SIGTERM ends it at once.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 150); do proc_alive "$NETPOL_NAME" || break; sleep 0.1; done
    proc_alive "$NETPOL_NAME" || log "stopped $NETPOL_NAME (pid $pid, SIGINT)"
  fi
  stop_proc "$NETPOL_NAME"
  if have nft; then
    nft delete table inet "$NETPOL_TABLE" 2>/dev/null || true
  fi
  rm -rf "$NETPOL_DIR"
}

netpol_down() {
  netpol_stop_local
  if [[ -d "$STATE_DIR" ]] && kctl get --raw /readyz >/dev/null 2>&1; then
    kctl delete --ignore-not-found -f "$HERE/manifests/kube-network-policies.yaml" >/dev/null ||
      log "netpol: warning: could not delete the objects of manifests/kube-network-policies.yaml"
  fi
  log "netpol: down"
}

netpol_status() {
  local line
  if proc_alive "$NETPOL_NAME"; then
    echo "kube-network-policies: running pid $(proc_pid "$NETPOL_NAME") rss $(($(awk '/VmRSS/{print $2}' "/proc/$(proc_pid "$NETPOL_NAME")/status") / 1024)) MiB, log $LOG_DIR/$NETPOL_NAME.log"
  else
    echo "kube-network-policies: not running"
  fi
  if line=$(netpol_queue_line) && [[ -n "$line" ]]; then
    echo "$line" | awk '{print "nfqueue " $1 ": bound (peer portid " $2 ", waiting " $3 ", dropped (queue full) " $6 ", dropped (user) " $7 ", packets so far " $8 ")"}'
  else
    echo "nfqueue $NETPOL_QUEUE: not bound"
  fi
  if netpol_own_table; then
    echo "diversion: nftables table inet $NETPOL_TABLE"
    nft list table inet "$NETPOL_TABLE"
  elif netpol_shim_present; then
    echo "diversion: iptables mangle $NETPOL_CHAIN"
    iptables -w -t mangle -L "$NETPOL_CHAIN" -v -n -x
  else
    echo "diversion: none"
  fi
  curl -fsS "http://127.0.0.1:$NETPOL_METRICS_PORT/metrics" 2>/dev/null | grep '^kube_network_policies_packet_count' || true
  kctl get networkpolicies -A 2>&1 || true
}
