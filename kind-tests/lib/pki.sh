# Certificates, service-account keys and kubeconfigs for the local cluster,
# made with openssl. Sourced by cluster.sh. Idempotent: existing files are kept.

_cert() { # name subject [san] [ca]  -> $PKI_DIR/name.{key,crt}, signed by ca (default: the cluster CA)
  local name=$1 subj=$2 san=${3:-} ca=${4:-ca} ext="$PKI_DIR/$1.ext"
  [[ -s "$PKI_DIR/$name.crt" ]] && return 0
  openssl genrsa -out "$PKI_DIR/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$san" ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$ext"
}

_kubeconfig() { # file user-cert-name server
  local file=$1 cert=$2 server=$3
  [[ -s "$file" ]] && return 0
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$cert.key")
contexts:
- name: $CLUSTER_NAME
  context: {cluster: $CLUSTER_NAME, user: $cert}
current-context: $CLUSTER_NAME
KC
  chmod 600 "$file"
}

make_pki() {
  mkdir -p "$PKI_DIR"; chmod 700 "$PKI_DIR"
  local ca
  # front-proxy-ca signs the apiserver's identity towards aggregated API
  # servers; components read it from extension-apiserver-authentication.
  for ca in ca front-proxy-ca; do
    [[ -s "$PKI_DIR/$ca.crt" ]] && continue
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=eol-kind-$ca" \
      -keyout "$PKI_DIR/$ca.key" -out "$PKI_DIR/$ca.crt" 2>/dev/null
  done
  _cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$NODE_IP,IP:$FIRST_SERVICE_IP"
  _cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  _cert admin "/O=system:masters/CN=kubernetes-admin"
  _cert controller-manager "/CN=system:kube-controller-manager"
  _cert scheduler "/CN=system:kube-scheduler"
  _cert kube-proxy "/CN=system:kube-proxy"
  _cert front-proxy-client "/CN=front-proxy-client" "" front-proxy-ca
  _cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  if [[ ! -s "$PKI_DIR/sa.key" ]]; then
    openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  fi
  local local_api="https://127.0.0.1:6443"
  _kubeconfig "$KUBECONFIG_ADMIN" admin "$local_api"
  _kubeconfig "$STATE_DIR/controller-manager.kubeconfig" controller-manager "$local_api"
  _kubeconfig "$STATE_DIR/scheduler.kubeconfig" scheduler "$local_api"
  _kubeconfig "$STATE_DIR/kube-proxy.kubeconfig" kube-proxy "$local_api"
  _kubeconfig "$STATE_DIR/kubelet.kubeconfig" kubelet "$local_api"
}
