#!/usr/bin/env bash
# Smoke tests of the kind-tests cluster: brings it up (idempotently), checks
# what the project's end-to-end tests rely on, then tears it down and checks
# that no process it started is left. Last line: "N passed, N failed".
#
#   SMOKE_KEEP=1  keep the cluster afterwards (skips the `down` check)
#   SMOKE_DEBUG=1 keep each test's namespace
#   SMOKE_ONLY=name[,name]  run only these tests (e.g. service-dns)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="$HERE/cluster.sh"
source "$HERE/lib/common.sh"
source "$HERE/lib/local.sh"

passed=0 failed=0 failures=()
say() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Without a cluster nothing else can run: report that as the one failure.
t0=$SECONDS
if ! up_log=$("$CLUSTER" up 2>&1 && "$CLUSTER" images 2>&1 && "$CLUSTER" load-image "$BUSYBOX_IMAGE" 2>&1); then
  say "FAIL cluster-up"; printf '%s\n' "$up_log" | tail -30 | sed 's/^/    /'
  echo "0 passed, 1 failed"; exit 1
fi
say "cluster up in $((SECONDS - t0))s"
MODE=$("$CLUSTER" mode)
eval "$("$CLUSTER" env)"
BUSYBOX="$BUSYBOX_IMAGE"

# Run one test function in a fresh namespace; dump the namespace on failure.
run_test() { # name function
  local name=$1 fn=$2 ns="smoke-$1"
  [[ -z "${SMOKE_ONLY:-}" || ",$SMOKE_ONLY," == *",$name,"* ]] || return 0
  say "RUN  $name"
  kubectl delete ns "$ns" --ignore-not-found --wait=true >/dev/null
  kubectl create ns "$ns" >/dev/null
  # Admission needs the namespace's default ServiceAccount before pods are made.
  for _ in $(seq 30); do kubectl -n "$ns" get sa default >/dev/null 2>&1 && break; sleep 1; done
  # errexit only holds in a subshell that is not itself tested with || or if.
  local out rc
  set +e
  out=$(set -e; NS=$ns; "$fn" 2>&1)
  rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1)); say "PASS $name"
    printf '%s\n' "$out" | sed -n 's/^evidence: /    /p'
  else
    failed=$((failed + 1)); failures+=("$name"); say "FAIL $name (exit $rc)"
    printf '%s\n' "$out" | sed 's/^/    /'
    echo "    --- namespace $ns:"
    kubectl -n "$ns" get all,pvc,events -o wide 2>&1 | sed 's/^/    /'
    kubectl -n "$ns" describe pods 2>&1 | tail -40 | sed 's/^/    /'
  fi
  [[ "${SMOKE_DEBUG:-0}" == 1 ]] || kubectl delete ns "$ns" --wait=false >/dev/null 2>&1 || true
}

fail() { echo "assertion failed: $*" >&2; return 1; }

# ---------------------------------------------------------------- tests

test_node_and_version() {
  local nodes ready server
  nodes=$(kubectl get nodes -o name | wc -l)
  [[ "$nodes" == 1 ]] || fail "expected 1 node, got $nodes"
  ready=$(kubectl get nodes -o jsonpath='{.items[0].status.conditions[?(@.type=="Ready")].status}')
  [[ "$ready" == True ]] || fail "node not Ready: $ready"
  server=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1)
  echo "evidence: $(kubectl get nodes --no-headers | tr -s ' '); server $server"
  [[ "$server" == v1.34.* ]] || fail "server version $server is not v1.34.x"
}

# A Pod from an image built here (buildah FROM the debootstrap Debian base),
# loaded under a short Docker-Hub-style name as a Helm chart would use it.
test_local_image_pod() {
  local img=eol-smoke/hello:1 c
  c=$(buildah from --quiet "$BASE_IMAGE")
  buildah config --cmd '["/bin/sh","-c","echo hello-from-local-image debian=$(cat /etc/debian_version)"]' "$c"
  buildah commit --quiet "$c" "$img" >/dev/null
  buildah rm "$c" >/dev/null
  "$CLUSTER" load-image "$img" 2>/dev/null
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - {name: hello, image: $img, imagePullPolicy: IfNotPresent}
YAML
  kubectl -n "$NS" wait pod/hello --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s
  local logs; logs=$(kubectl -n "$NS" logs hello)
  echo "evidence: kubectl logs hello: $logs"
  grep -q '^hello-from-local-image debian=12' <<<"$logs"
}

# Two replicas behind a Service, reached by DNS name from a Job's pod; both
# replicas must answer (kube-proxy balances across endpoints).
test_service_dns() {
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: $BUSYBOX
        imagePullPolicy: IfNotPresent
        command: ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
YAML
  kubectl -n "$NS" rollout status deploy/web --timeout=120s
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: client}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: client
        image: $BUSYBOX
        imagePullPolicy: IfNotPresent
        command: ["/bin/sh", "-c"]
        # Ask until both replicas have answered (kube-proxy may still be adding
        # the second endpoint). busybox 1.35 wget segfaults with -T: use timeout.
        args:
        - |
          set -e
          nslookup web.$NS.svc.cluster.local
          seen=""
          for i in \$(seq 1 100); do
            h=\$(timeout 5 wget -qO- http://web.$NS.svc.cluster.local/) || { sleep 0.5; continue; }
            case " \$seen " in *" \$h "*) ;; *) seen="\$seen \$h" ;; esac
            [ \$(echo \$seen | wc -w) -ge 2 ] && break
            sleep 0.2
          done
          echo "backends:\$seen after \$i requests"
YAML
  kubectl -n "$NS" wait job/client --for=condition=Complete --timeout=120s
  local out; out=$(kubectl -n "$NS" logs job/client)
  echo "$out"
  local backends; backends=$(echo "$out" | sed -n 's/^backends://p' | grep -o 'web-[a-z0-9-]*' | sort -u | wc -l)
  echo "evidence: $(echo "$out" | grep -m1 '^Address: 10\.96') for web.$NS.svc.cluster.local; $(echo "$out" | grep '^backends:')"
  [[ "$backends" == 2 ]] || fail "expected answers from 2 replicas: ${out##*backends:}"
}

# A StatefulSet's volumeClaimTemplate gets a bound PVC from the default
# StorageClass; data survives deleting the pod.
test_statefulset_pvc() {
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: $BUSYBOX
        imagePullPolicy: IfNotPresent
        command: ["/bin/sh", "-c", "exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 100Mi}}
YAML
  kubectl -n "$NS" rollout status sts/db --timeout=120s
  kubectl -n "$NS" wait pvc/data-db-0 --for=jsonpath='{.status.phase}'=Bound --timeout=60s
  kubectl -n "$NS" get pvc data-db-0
  local uid1; uid1=$(kubectl -n "$NS" get pod db-0 -o jsonpath='{.metadata.uid}')
  local before; before=$(kubectl -n "$NS" exec db-0 -- sh -c 'echo "persisted-$RANDOM" > /data/marker && cat /data/marker')
  kubectl -n "$NS" delete pod db-0 --wait=true
  for _ in $(seq 60); do
    [[ "$(kubectl -n "$NS" get pod db-0 -o jsonpath='{.metadata.uid}' 2>/dev/null)" != "$uid1" ]] && break; sleep 1
  done
  kubectl -n "$NS" wait pod/db-0 --for=condition=Ready --timeout=120s
  local after; after=$(kubectl -n "$NS" exec db-0 -- cat /data/marker)
  echo "evidence: $(kubectl -n "$NS" get pvc data-db-0 --no-headers | tr -s ' '); before: $before after pod deletion: $after"
  [[ -n "$before" && "$after" == "$before" ]] || fail "data did not survive the pod"
}

test_rolling_update() {
  kubectl -n "$NS" create deployment roll --image="$BUSYBOX" --replicas=2 -- /bin/sh -c 'exec sleep 3600'
  kubectl -n "$NS" patch deployment roll --type=json \
    -p '[{"op":"add","path":"/spec/template/spec/containers/0/imagePullPolicy","value":"IfNotPresent"},{"op":"add","path":"/spec/template/spec/terminationGracePeriodSeconds","value":1}]'
  kubectl -n "$NS" rollout status deploy/roll --timeout=120s
  local revpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}' rev0 rev
  rev0=$(kubectl -n "$NS" get deploy roll -o jsonpath="$revpath")
  kubectl -n "$NS" set env deploy/roll ROLLED=yes
  kubectl -n "$NS" rollout status deploy/roll --timeout=120s
  rev=$(kubectl -n "$NS" get deploy roll -o jsonpath="$revpath")
  [[ "$rev" == $((rev0 + 1)) ]] || fail "revision went from $rev0 to $rev"
  local rs; rs=$(kubectl -n "$NS" get rs -l app=roll -o jsonpath='{range .items[*]}{.spec.template.spec.containers[0].env[0].value}={.spec.replicas}{" "}{end}')
  [[ "$rs" == *"yes=2"* && "$rs" == *"=0"* ]] || fail "replica sets not rolled over: $rs"
  local updated; updated=$(kubectl -n "$NS" get deploy roll -o jsonpath='{.status.updatedReplicas}/{.status.availableReplicas}')
  echo "evidence: revision $rev0 -> $rev, updated/available $updated, replica sets (ROLLED=replicas): $rs"
  [[ "$updated" == 2/2 ]] || fail "rollout incomplete: $updated"
}

test_failing_job() {
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: fails, image: $BUSYBOX, imagePullPolicy: IfNotPresent, command: ["/bin/sh", "-c", "echo about to fail; exit 3"]}
YAML
  kubectl -n "$NS" wait job/fails --for=condition=Failed --timeout=120s
  local code
  code=$(kubectl -n "$NS" get pods -l job-name=fails -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
  local logs; logs=$(kubectl -n "$NS" logs job/fails)
  echo "evidence: job condition Failed=$(kubectl -n "$NS" get job fails -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}'), pod exit code $code, logs: $logs"
  [[ "$logs" == "about to fail" ]] || fail "unexpected logs: $logs"
  [[ "$code" == 3 ]] || fail "expected exit code 3, got '$code'"
}

# The project's CRDs install on the real API server: printer columns, CEL rules
# and `kubectl explain` docs work as users will see them.
test_eol_crds() {
  local crds; crds="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crds/eol.dev_v1alpha1.yaml"
  kubectl apply --server-side -f "$crds" >/dev/null
  kubectl wait --for condition=established crd/features.eol.dev crd/featureruns.eol.dev --timeout=60s >/dev/null
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: eol.dev/v1alpha1
kind: FeatureRun
metadata: {name: tests-run}
spec: {featureRef: inventory, tests: true}
YAML
  local columns; columns=$(kubectl -n "$NS" get fr | sed -n 1p | tr -s ' ')
  [[ "$columns" == "NAME FEATURE PHASE STATUS PASSED FAILED DURATION AGE" ]] || fail "unexpected columns: $columns"
  local refused
  refused=$(kubectl -n "$NS" apply -f - 2>&1 <<YAML || true
apiVersion: eol.dev/v1alpha1
kind: FeatureRun
metadata: {name: bad-run}
spec: {featureRef: inventory, tests: true, operation: add_stock, retries: 99}
YAML
)
  [[ "$refused" == *"set either operation (with input) or tests: true"* && "$refused" == *"retries must be between 0 and 10"* ]] \
    || fail "CEL rules did not refuse the bad run: $refused"
  local moved
  moved=$(kubectl -n "$NS" patch fr tests-run --type=merge -p '{"spec":{"featureRef":"other"}}' 2>&1 || true)
  [[ "$moved" == *"featureRef is immutable"* ]] || fail "featureRef changed: $moved"
  local explain; explain=$(kubectl explain feature.spec.source)
  [[ "$explain" == *"inline text, or a ConfigMap key holding it"* ]] || fail "kubectl explain lacks the field docs"
  echo "evidence: CRDs established; kubectl get fr columns: $columns; CEL refused both rules and the featureRef change; explain shows docs"
}

# The project's images (runner, operator, Redis), built on first use (cached by
# the binaries' hashes; a cold release build takes minutes) and loaded; sets
# EOL_RUNNER_IMAGE, EOL_OPERATOR_IMAGE and EOL_REDIS_IMAGE.
use_project_images() {
  local env
  env=$(timeout 1800 "$CLUSTER" project-images) || fail "the project images did not build or load"
  eval "$env"
}

# The restricted pod security profile every project pod runs under.
RESTRICTED_POD='securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}'
RESTRICTED_CONTAINER='securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}'

# A Redis pod from the project's image behind Service `redis`, its password in
# Secret `redis`; waits until it is Ready.
redis_pod() {
  kubectl -n "$NS" create secret generic redis --from-literal=password="smoke-$RANDOM$RANDOM" >/dev/null
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: redis, labels: {app: redis}}
spec:
  $RESTRICTED_POD
  terminationGracePeriodSeconds: 1
  containers:
  - name: redis
    image: $EOL_REDIS_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    env:
    - name: REDIS_PASSWORD
      valueFrom: {secretKeyRef: {name: redis, key: password}}
    args: ["--requirepass", "\$(REDIS_PASSWORD)", "--appendonly", "yes", "--dir", "/data"]
    ports: [{containerPort: 6379}]
    readinessProbe: {tcpSocket: {port: 6379}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  selector: {app: redis}
  ports: [{port: 6379}]
YAML
  kubectl -n "$NS" wait pod/redis --for=condition=Ready --timeout=120s >/dev/null
  # Ready is not yet reachable: wait until the Service's name resolves to its
  # ClusterIP (CoreDNS caches a namespace's earlier `redis` for 30 s) and
  # kube-proxy forwards it. The full name: the short one is the pod's own in /etc/hosts.
  local i ip name="redis.$NS.svc.$CLUSTER_DOMAIN"
  ip=$(kubectl -n "$NS" get svc redis -o jsonpath='{.spec.clusterIP}')
  for i in $(seq 60); do
    kubectl -n "$NS" exec redis -- timeout 2 bash -c \
      '[[ "$(getent hosts "$0")" == "$1 "* ]] && exec 3<>"/dev/tcp/$1/6379"' "$name" "$ip" 2>/dev/null && return 0
    sleep 1
  done
  fail "Service redis ($ip) not reachable by name after ${i}s"
}

# Waits until a pod has run to completion, either way; fails on timeout.
wait_finished() { # pod seconds
  local phase i
  for i in $(seq "$2"); do
    phase=$(kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.phase}')
    [[ "$phase" == Succeeded || "$phase" == Failed ]] && return 0
    sleep 1
  done
  fail "pod $1 still $phase after ${2}s"
}

# Redis commands sent from inside the Redis pod (the image has bash, not redis-cli).
redis_exec() { # commands (inline syntax, one per argument)
  kubectl -n "$NS" exec redis -- timeout 10 bash -c \
    'exec 3<>/dev/tcp/127.0.0.1/6379; printf "%s\r\n" "$@" QUIT >&3; cat <&3' _ "$@" | tr -d '\r'
}

# The Redis image: a restricted pod with --requirepass answers PING only after
# AUTH, and has the search and JSON modules loaded.
test_redis_image() {
  use_project_images
  redis_pod
  local pass out
  pass=$(kubectl -n "$NS" get secret redis -o jsonpath='{.data.password}' | base64 -d)
  out=$(redis_exec PING)
  [[ "$out" == *NOAUTH* ]] || fail "PING without AUTH was not refused: $out"
  out=$(redis_exec "AUTH $pass" PING "MODULE LIST" "JSON.SET smoke \$ '{\"a\":1}'" 'JSON.GET smoke $.a' "CONFIG GET appendonly")
  echo "$out"
  grep -qx '+PONG' <<<"$out" || fail "no PONG: $out"
  grep -qx 'search' <<<"$out" || fail "module search not loaded: $out"
  grep -qx 'ReJSON' <<<"$out" || fail "module ReJSON not loaded: $out"
  grep -qx '\[1\]' <<<"$out" || fail "JSON.GET did not answer [1]: $out"
  local uid; uid=$(kubectl -n "$NS" exec redis -- id -u)
  [[ "$uid" == 65532 ]] || fail "runs as uid $uid"
  echo "evidence: $EOL_REDIS_IMAGE as uid $uid (restricted, read-only root): NOAUTH before AUTH, then PONG; MODULE LIST: $(grep -x 'search\|ReJSON' <<<"$out" | paste -sd, -); JSON.GET \$.a -> [1]; appendonly $(grep -A2 -x appendonly <<<"$out" | tail -1)"
}

# The runner image as a FeatureRun's Job runs it: `eol run` of the inventory
# example (from a ConfigMap) under the restricted profile, against the Redis
# image; the report arrives as the termination message and the full result
# under its resultKey.
test_runner_image() {
  use_project_images
  redis_pod
  kubectl -n "$NS" create configmap feature \
    --from-file=inventory.eol="$HERE/../features/examples/inventory.eol" >/dev/null
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: run}
spec:
  $RESTRICTED_POD
  restartPolicy: Never
  containers:
  - name: eol
    image: $EOL_RUNNER_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    env:
    - name: REDIS_PASSWORD
      valueFrom: {secretKeyRef: {name: redis, key: password}}
    - {name: REDIS_URL, value: "redis://:\$(REDIS_PASSWORD)@redis:6379"}
    - {name: EOL_REPORT_FILE, value: /dev/termination-log}
    - {name: EOL_RUN_ID, value: smoke-run-1}
    - {name: EOL_WORKERS, value: "1"}
    args: [run, /feature/inventory.eol, --operation, add_stock, --input, '{"sku": "SMOKE-1", "quantity": 3}']
    volumeMounts:
    - {name: feature, mountPath: /feature, readOnly: true}
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: feature, configMap: {name: feature}}
  - {name: tmp, emptyDir: {}}
YAML
  wait_finished run 120
  [[ "$(kubectl -n "$NS" get pod run -o jsonpath='{.status.phase}')" == Succeeded ]] ||
    { kubectl -n "$NS" logs run; fail "the run did not succeed: $(kubectl -n "$NS" get pod run -o jsonpath='{.status.containerStatuses[0].state}')"; }
  local message; message=$(kubectl -n "$NS" get pod run -o jsonpath='{.status.containerStatuses[0].state.terminated.message}')
  echo "termination message: $message"
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["output"] == {"sku": "SMOKE-1", "level": 3}, r
assert r["duration"].endswith("s") and "error" not in r, r
assert r["resultKey"] == "eol:inventory:runs:smoke-run-1", r
' "$message" || fail "unexpected report: $message"
  local pass stored
  pass=$(kubectl -n "$NS" get secret redis -o jsonpath='{.data.password}' | base64 -d)
  stored=$(redis_exec "AUTH $pass" "GET eol:inventory:runs:smoke-run-1")
  grep -q '"output":{"level":3,"sku":"SMOKE-1"}' <<<"$stored" || fail "full result not in Redis: $stored"
  echo "evidence: $EOL_RUNNER_IMAGE (restricted, read-only root, /tmp emptyDir) ran add_stock: Succeeded, termination message $message; the full result is at its resultKey"
}

# The operator image under the restricted profile with its own user (no
# runAsUser): the real entrypoint prints the CRDs (the repository's
# crds/eol.dev_v1alpha1.yaml) and its version, the image's user is 65532, and
# the default command (`run`) stays up and serves /healthz (with the
# namespace's default ServiceAccount, so its watches are refused: this checks
# the image, not the operator's permissions).
test_operator_image() {
  use_project_images
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: operator-run}
spec:
  $RESTRICTED_POD
  terminationGracePeriodSeconds: 1
  containers:
  - name: operator
    image: $EOL_OPERATOR_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: operator}
spec:
  $RESTRICTED_POD
  restartPolicy: Never
  containers:
  - name: crd
    image: $EOL_OPERATOR_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    args: [crd]
  - name: version
    image: $EOL_OPERATOR_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    args: [--version]
  - name: id
    image: $EOL_OPERATOR_IMAGE
    imagePullPolicy: IfNotPresent
    $RESTRICTED_CONTAINER
    command: [id]
YAML
  wait_finished operator 120
  local phase; phase=$(kubectl -n "$NS" get pod operator -o jsonpath='{.status.phase}')
  [[ "$phase" == Succeeded ]] ||
    fail "pod $phase: $(kubectl -n "$NS" get pod operator -o jsonpath='{range .status.containerStatuses[*]}{.name}: {.state}{"\n"}{end}')"
  local crds version id
  crds=$(kubectl -n "$NS" logs operator -c crd)
  version=$(kubectl -n "$NS" logs operator -c version)
  id=$(kubectl -n "$NS" logs operator -c id)
  diff <(printf '%s\n' "$crds") "$HERE/../crds/eol.dev_v1alpha1.yaml" >/dev/null ||
    fail "eol-operator crd differs from crds/eol.dev_v1alpha1.yaml: $(diff <(printf '%s\n' "$crds") "$HERE/../crds/eol.dev_v1alpha1.yaml" | head -5)"
  [[ "$version" == "eol-operator ${EOL_OPERATOR_IMAGE##*:}" ]] || fail "unexpected --version: $version"
  [[ "$id" == "uid=65532(eol) gid=65532(eol) groups=65532(eol)" ]] || fail "runs as $id"
  kubectl -n "$NS" wait pod/operator-run --for=condition=Ready --timeout=60s >/dev/null ||
    { kubectl -n "$NS" logs operator-run --tail=20; fail "eol-operator run did not become Ready"; }
  sleep 2 # still up a moment later
  local restarts; restarts=$(kubectl -n "$NS" get pod operator-run -o jsonpath='{.status.containerStatuses[0].restartCount}')
  [[ "$restarts" == 0 ]] || { kubectl -n "$NS" logs operator-run --previous --tail=20; fail "eol-operator run restarted $restarts times"; }
  local kinds; kinds=$(grep -A3 '^  names:' <<<"$crds" | sed -n 's/^ *kind: //p' | paste -sd, -)
  local config=""
  have buildah && config=", entrypoint/cmd $(buildah inspect --type image --format '{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}' "$EOL_OPERATOR_IMAGE" 2>/dev/null)"
  echo "evidence: $EOL_OPERATOR_IMAGE (restricted, read-only root, the image's own user): crd printed $(wc -l <<<"$crds") lines (kinds $kinds) = crds/eol.dev_v1alpha1.yaml; --version: $version; id: $id$config; \`run\` Ready on /healthz with 0 restarts"
}

# `down` must leave none of the processes the cluster started: every pid
# recorded in the pid files and every pid in the cluster's cgroups.
test_down_leaves_nothing() {
  if [[ "$MODE" == kind ]]; then
    "$CLUSTER" down
    ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME" || fail "kind cluster still listed"
    echo "evidence: kind cluster deleted"; return 0
  fi
  local before pid alive=()
  before=$( { cat "$STATE_DIR"/pids/*.pid; find "$TRACK_CGROUP" "$PODS_CGROUP" \
    -name cgroup.procs -exec cat {} + 2>/dev/null; } | sort -un)
  echo "evidence: tracked pids before down: $(echo $before)"
  [[ $(echo "$before" | wc -w) -ge 7 ]] || fail "expected at least 7 tracked processes"
  "$CLUSTER" down
  for _ in $(seq 20); do
    alive=()
    for pid in $before; do
      # A zombie awaiting its reaper (pid 1) is no longer running.
      [[ -e /proc/$pid ]] && [[ "$(awk '/^State/{print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]] && alive+=("$pid")
    done
    ((${#alive[@]} == 0)) && break; sleep 0.5
  done
  ((${#alive[@]} == 0)) || { ps -o pid,stat,cmd -p "${alive[*]}"; fail "processes left after down: ${alive[*]}"; }
  [[ ! -d "$STATE_DIR" ]] || fail "state dir $STATE_DIR still exists"
  ! ip link show eol0 >/dev/null 2>&1 || fail "bridge eol0 still exists"
  ! iptables-save | grep -q 'KUBE-' || fail "KUBE-* iptables chains left"
  echo "evidence: none alive after down; state dir, bridge and KUBE-* chains gone"
}

run_test node-version test_node_and_version
run_test local-image test_local_image_pod
run_test service-dns test_service_dns
run_test statefulset-pvc test_statefulset_pvc
run_test rolling-update test_rolling_update
run_test failing-job test_failing_job
run_test eol-crds test_eol_crds
run_test redis-image test_redis_image
run_test runner-image test_runner_image
run_test operator-image test_operator_image

say "memory after the tests: $("$CLUSTER" memory)"
if [[ "${SMOKE_KEEP:-0}" != 1 ]]; then
  # Not run in a namespace: it removes the cluster.
  say "RUN  down-leaves-nothing"
  set +e; out=$(set -e; test_down_leaves_nothing 2>&1); rc=$?; set -e
  if ((rc == 0)); then
    passed=$((passed + 1)); say "PASS down-leaves-nothing"
    printf '%s\n' "$out" | sed -n 's/^evidence: /    /p'
  else failed=$((failed + 1)); failures+=(down-leaves-nothing); say "FAIL down-leaves-nothing"; printf '%s\n' "$out" | sed 's/^/    /'; fi
fi

((failed == 0)) || say "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
