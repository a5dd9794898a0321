//! The Helm chart `charts/eol`: `helm lint --strict`; default and non-default
//! renders validated by the real API server (server-side dry-run, strict field
//! validation, `restricted` PodSecurity) in fresh `eol-chart-*` namespaces; the
//! values schema refusing typos and wrong types; `charts/eol/crds` equal to
//! `crds/`; and least-privilege RBAC, checked rule by rule and then probed on
//! the cluster with SubjectAccessReviews against the operator's actual calls;
//! finally a real `helm install` whose operator pod runs a Feature and a
//! FeatureRun end to end, and a `helm uninstall` that leaves what the README says.
//!
//! Needs helm from the cache (`kind-tests/cluster.sh build`) and the cluster
//! (`kind-tests/cluster.sh up`). kubectl turns helm's YAML into JSON offline
//! (`kubectl label --local`; this crate has no YAML parser) and runs the dry-runs.

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::cli::{helm, repo_root, run, text, tools};
use eol_kind_tests::{
    assert_succeeded, client, create_namespace, delete_namespace, feature_ready, install_crds,
    keep_namespaces, rethrow, run_finished, wait_for,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The release name every render uses.
const RELEASE: &str = "eol";
/// What `fullname` gives for [`RELEASE`] (the release name contains the chart name).
const FULLNAME: &str = "eol";

/// Non-default values: one namespace watched, NetworkPolicy, ServiceMonitor,
/// two replicas, an external Redis, model defaults with an API-key Secret, an
/// embeddings API with its own API-key Secret.
const CUSTOM_VALUES: &str = r#"
replicaCount: 2
runner:
  logLevel: info,eol_vector=debug
  resources:
    requests: {cpu: 250m, memory: 512Mi}
    limits: {memory: 2Gi}
redis:
  existingSecret: redis-url
model:
  baseUrl: http://llm.models.svc:8080/v1
  name: qwen2.5
  responseFormat: json_object
  apiKey:
    existingSecret: llm-credentials
    key: token
embeddings:
  local: false
  baseUrl: http://embeddings.models.svc:8080/v1
  model: nomic-embed-text
  apiKey:
    existingSecret: embed-credentials
    key: embed-token
serviceMonitor:
  enabled: true
  labels:
    release: prometheus
networkPolicy:
  enabled: true
  model:
    cidrs: ["10.20.0.0/16"]
    peers:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: models
        podSelector:
          matchLabels:
            app: vllm
    ports:
      - port: 8080
  embeddings:
    cidrs: ["10.30.0.0/16"]
    ports:
      - port: 8081
  externalRedis:
    cidrs: ["192.168.10.0/24"]
logging:
  format: text
  level: info,kube=debug
extraEnv:
  - name: HTTPS_PROXY
    value: http://proxy.internal:3128
"#;

fn chart_dir() -> PathBuf {
    repo_root().join("charts/eol")
}

/// A values file in the temp directory.
fn values_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("eol-chart-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, content).expect("write a values file");
    path
}

/// `helm template` of the chart; panics with helm's message on failure.
fn template(namespace: &str, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    helm_stdout(&args)
}

/// helm's stdout; panics with helm's message on failure.
fn helm_stdout(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// helm's YAML as JSON objects. kubectl parses it offline: `label --local`
/// removing a label nobody sets changes nothing but an empty `labels` map.
fn objects(yaml: &str) -> Vec<Value> {
    let out = run(
        &tools().kubectl,
        &[
            "label",
            "--local",
            "-f",
            "-",
            "-o",
            "json",
            "eol.dev/chart-test-none-",
        ],
        Some(yaml),
    );
    assert!(
        out.status.success(),
        "kubectl could not parse the rendered chart: {}\n{yaml}",
        text(&out.stderr)
    );
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("kubectl prints JSON objects"))
        .collect()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace_of(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind_: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind(o) == kind_).collect()
}

fn one<'a>(objects: &'a [Value], kind_: &str) -> &'a Value {
    let found = find(objects, kind_);
    assert_eq!(found.len(), 1, "expected one {kind_}, got {}", found.len());
    found[0]
}

/// The operator container's environment as name -> value (or the valueFrom JSON).
fn env(objects: &[Value]) -> BTreeMap<String, String> {
    let deployment = one(objects, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e["valueFrom"].to_string());
            (e["name"].as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

/// Server-side dry-run of `objects` with strict field validation; returns
/// kubectl's stderr (warnings). Panics with the server's refusal.
fn dry_run(objects: &[&Value]) -> String {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = run(
        &tools().kubectl,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--force-conflicts",
            "--field-manager=eol-chart-test",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "the API server refused the rendered chart:\n{stderr}\n{}",
        text(&out.stdout)
    );
    let applied = text(&out.stdout);
    assert_eq!(
        applied.matches("(server dry run)").count(),
        objects.len(),
        "every object was dry-run applied:\n{applied}"
    );
    stderr
}

/// Fresh namespaces `eol-chart-<test>-<i>-<n>` (PodSecurity `restricted`
/// enforced and warned) for `body`; deleted afterwards unless `EOL_KEEP_NAMESPACES=1`.
async fn in_namespaces<F, Fut>(test: &str, count: usize, body: F)
where
    F: FnOnce(Client, Vec<String>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    let suffix = rand::random::<u32>() % 100_000;
    let names: Vec<String> = (0..count)
        .map(|i| format!("eol-chart-{test}-{i}-{suffix}"))
        .collect();
    for ns in &names {
        let labels = json!({
            "eol.dev/test": "chart",
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        });
        create_namespace(&client, ns, labels).await;
    }
    let outcome = tokio::spawn(body(client.clone(), names.clone())).await;
    if keep_namespaces() {
        eprintln!("kept namespaces {names:?} (EOL_KEEP_NAMESPACES=1)");
    } else {
        for ns in &names {
            delete_namespace(&client, ns).await;
        }
    }
    rethrow(outcome);
}

#[test]
fn chart_lints_strict_with_default_and_custom_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let custom = values_file("lint", CUSTOM_VALUES);
    for extra in [
        vec![],
        vec![
            "-f",
            custom.to_str().expect("utf-8 path"),
            "--set",
            "watchNamespace=team-a",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend(extra);
        let out = helm(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "helm {} failed:\n{stdout}\n{}",
            args.join(" "),
            text(&out.stderr)
        );
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
        assert!(!stdout.contains("[WARNING]"), "{stdout}");
    }
}

/// The NOTES `helm install` prints, rendered offline with `extra` values.
fn notes(extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        "eol-system",
        "--dry-run=client",
    ];
    args.extend_from_slice(extra);
    let stdout = helm_stdout(&args);
    stdout
        .split_once("NOTES:")
        .map(|(_, notes)| notes.to_owned())
        .unwrap_or_else(|| panic!("no NOTES in:\n{stdout}"))
}

/// The NOTES line about embeddings.
fn embeddings_line(notes: &str) -> String {
    notes
        .lines()
        .find(|l| l.starts_with("Embeddings:"))
        .unwrap_or_else(|| panic!("no Embeddings line in:\n{notes}"))
        .to_owned()
}

#[test]
fn the_notes_say_how_runner_pods_embed() {
    // By default pods embed with the image's model: the NOTES said "off".
    let default = embeddings_line(&notes(&[]));
    assert!(default.contains("local all-MiniLM-L6-v2"), "{default}");
    assert!(!default.contains("off"), "{default}");
    let off = embeddings_line(&notes(&["--set", "embeddings.local=false"]));
    assert!(off.contains("off in runner pods"), "{off}");
    let api = embeddings_line(&notes(&[
        "--set",
        "embeddings.baseUrl=http://embed.models.svc:8080/v1",
    ]));
    assert!(api.contains("http://embed.models.svc:8080/v1"), "{api}");
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated = repo_root().join("crds");
    let copied = chart_dir().join("crds");
    let yaml_files = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let files = yaml_files(&generated);
    assert!(!files.is_empty(), "no CRDs in {}", generated.display());
    assert_eq!(
        yaml_files(&copied),
        files,
        "charts/eol/crds must hold exactly the files of crds/"
    );
    for file in files {
        let a = std::fs::read(generated.join(&file)).expect("read a generated CRD");
        let b = std::fs::read(copied.join(&file)).expect("read the chart's CRD");
        assert!(
            a == b,
            "charts/eol/crds/{file} drifted from crds/{file}: run `cp crds/*.yaml charts/eol/crds/`"
        );
    }
}

#[test]
fn values_schema_rejects_typos_wrong_types_and_literal_keys() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for (set, expected) in [
        ("replicaCont=2", "replicaCont"),
        ("replicaCount=two", "/replicaCount"),
        ("redis.storageClas=fast", "storageClas"),
        ("serviceMonitor.enabled=yes", "/serviceMonitor/enabled"),
        ("model.responseFormat=xml", "/model/responseFormat"),
        // The API key only ever comes from a Secret.
        ("model.apiKey.value=sk-123", "value"),
        ("embeddings.apiKey.value=sk-123", "value"),
        ("embeddings.baseUrl=embeddings.local", "/embeddings/baseUrl"),
        ("embeddings.local=maybe", "/embeddings/local"),
        ("runner.resources.request.cpu=1", "request"),
        (
            "networkPolicy.embeddings.cidrs[0]=not-a-cidr",
            "/networkPolicy/embeddings/cidrs/0",
        ),
        (
            "networkPolicy.model.cidrs[0]=not-a-cidr",
            "/networkPolicy/model/cidrs/0",
        ),
    ] {
        let out = helm(&["template", RELEASE, chart, "--set", set]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "--set {set} rendered without complaint"
        );
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(expected),
            "--set {set}: the error should name {expected}:\n{stderr}"
        );
    }
    // The template's own checks: a NetworkPolicy needs a namespace to go to.
    let out = helm(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "networkPolicy.enabled=true",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("networkPolicy.namespaces"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn default_values_render_and_pass_a_server_side_dry_run() {
    in_namespaces("defaults", 1, |_client, namespaces| async move {
        let ns = &namespaces[0];
        let objects = objects(&template(ns, &["--include-crds"]));
        let kinds: BTreeSet<&str> = objects.iter().map(kind).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "ClusterRole",
                "ClusterRoleBinding",
                "CustomResourceDefinition",
                "Deployment",
                "Role",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ]),
            "no PDB, ServiceMonitor or NetworkPolicy by default"
        );
        assert_eq!(find(&objects, "CustomResourceDefinition").len(), 2);

        let deployment = one(&objects, "Deployment");
        assert_eq!(name(deployment), FULLNAME);
        assert_eq!(deployment["spec"]["replicas"], 1);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "ghcr.io/eol-dev/eol-operator:0.1.0");
        assert_eq!(container["args"], json!(["run"]));
        assert_eq!(pod["automountServiceAccountToken"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let sc = &container["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(container[probe]["httpGet"]["path"], "/healthz");
            assert_eq!(container[probe]["httpGet"]["port"], "metrics");
        }
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        assert!(container["resources"]["limits"]["memory"].is_string());

        let env = env(&objects);
        for (k, v) in [
            ("EOL_LEADER_ELECTION", "true"),
            ("EOL_OPERATOR_LISTEN", "0.0.0.0:8080"),
            ("EOL_LOG_FORMAT", "json"),
            ("EOL_CONCURRENCY", "8"),
            ("EOL_RUNNER_IMAGE", "ghcr.io/eol-dev/eol-runner:0.1.0"),
            (
                "EOL_RUNNER_RESOURCES",
                r#"{"requests":{"cpu":"100m","memory":"256Mi"}}"#,
            ),
            ("EOL_REDIS_IMAGE", "ghcr.io/eol-dev/redis-stack:8.2.3"),
            ("EOL_REDIS_STORAGE", "1Gi"),
            ("EOL_IMAGE_PULL_POLICY", "IfNotPresent"),
            ("EOL_PROGRESS_DEADLINE_SECONDS", "180"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(env["POD_NAMESPACE"].contains("metadata.namespace"));
        assert!(env["POD_NAME"].contains("metadata.name"));
        for unset in [
            "EOL_WATCH_NAMESPACE",
            "EOL_EXTERNAL_REDIS_SECRET",
            "EOL_MODEL_BASE_URL",
            "EOL_MODEL_API_KEY_SECRET",
            "EOL_REDIS_STORAGE_CLASS",
            // No embeddings API: runner pods embed with the image's local model.
            "EOL_LOCAL_EMBEDDINGS",
            // Runner pods log at their own level.
            "EOL_RUNNER_LOG",
            "EOL_EMBEDDING_BASE_URL",
            "EOL_EMBEDDING_MODEL",
            "EOL_EMBEDDING_API_KEY_SECRET",
        ] {
            assert!(!env.contains_key(unset), "{unset} is not set by default");
        }
        assert_eq!(
            one(&objects, "ServiceAccount")["automountServiceAccountToken"],
            false
        );

        let all: Vec<&Value> = objects.iter().collect();
        let warnings = dry_run(&all);
        assert!(
            !warnings.contains("PodSecurity"),
            "the operator pod must meet the restricted profile:\n{warnings}"
        );
    })
    .await;
}

#[tokio::test]
async fn custom_values_render_and_pass_a_server_side_dry_run() {
    in_namespaces("custom", 2, |_client, namespaces| async move {
        let (ns, watched) = (&namespaces[0], &namespaces[1]);
        let custom = values_file("custom", CUSTOM_VALUES);
        let watch = format!("watchNamespace={watched}");
        let objects = objects(&template(
            ns,
            &[
                "--include-crds",
                "-f",
                custom.to_str().expect("utf-8 path"),
                "--set",
                &watch,
            ],
        ));

        // Namespace-scoped permissions only.
        assert!(find(&objects, "ClusterRole").is_empty());
        assert!(find(&objects, "ClusterRoleBinding").is_empty());
        let deployment = one(&objects, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pdb = one(&objects, "PodDisruptionBudget");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );

        let env = env(&objects);
        for (k, v) in [
            ("EOL_WATCH_NAMESPACE", watched.as_str()),
            ("EOL_EXTERNAL_REDIS_SECRET", "redis-url"),
            ("EOL_MODEL_BASE_URL", "http://llm.models.svc:8080/v1"),
            ("EOL_MODEL_NAME", "qwen2.5"),
            ("EOL_MODEL_RESPONSE_FORMAT", "json_object"),
            ("EOL_MODEL_API_KEY_SECRET", "llm-credentials/token"),
            (
                "EOL_EMBEDDING_BASE_URL",
                "http://embeddings.models.svc:8080/v1",
            ),
            ("EOL_EMBEDDING_MODEL", "nomic-embed-text"),
            ("EOL_LOCAL_EMBEDDINGS", "false"),
            ("EOL_RUNNER_LOG", "info,eol_vector=debug"),
            (
                "EOL_RUNNER_RESOURCES",
                r#"{"limits":{"memory":"2Gi"},"requests":{"cpu":"250m","memory":"512Mi"}}"#,
            ),
            (
                "EOL_EMBEDDING_API_KEY_SECRET",
                "embed-credentials/embed-token",
            ),
            ("EOL_LOG_FORMAT", "text"),
            ("RUST_LOG", "info,kube=debug"),
            ("HTTPS_PROXY", "http://proxy.internal:3128"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        // An external Redis: no managed-Redis settings.
        assert!(!env.contains_key("EOL_REDIS_IMAGE"));

        // The runner NetworkPolicy: in the watched namespace, egress only.
        let policy = one(&objects, "NetworkPolicy");
        assert_eq!(namespace_of(policy), watched);
        let spec = &policy["spec"];
        assert_eq!(spec["policyTypes"], json!(["Egress"]));
        assert_eq!(
            spec["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
            "eol-operator"
        );
        assert_eq!(
            spec["podSelector"]["matchExpressions"][0]["values"],
            json!(["eol-feature", "eol-run"])
        );
        let egress = spec["egress"].as_array().expect("egress rules");
        let ports: Vec<String> = egress
            .iter()
            .map(|rule| rule["ports"].to_string())
            .collect();
        assert_eq!(
            egress.len(),
            4,
            "DNS, external Redis, model, embeddings: {egress:#?}"
        );
        assert!(ports[0].contains("53") && ports[0].contains("UDP") && ports[0].contains("TCP"));
        assert_eq!(egress[1]["to"][0]["ipBlock"]["cidr"], "192.168.10.0/24");
        assert_eq!(egress[1]["ports"][0]["port"], 6379);
        assert_eq!(egress[2]["to"][0]["ipBlock"]["cidr"], "10.20.0.0/16");
        assert_eq!(
            egress[2]["to"][1]["podSelector"]["matchLabels"]["app"],
            "vllm"
        );
        assert_eq!(egress[2]["ports"][0]["port"], 8080);
        assert_eq!(egress[3]["to"][0]["ipBlock"]["cidr"], "10.30.0.0/16");
        assert_eq!(
            egress[3]["ports"],
            json!([{"port": 8081, "protocol": "TCP"}])
        );

        // The ServiceMonitor CRD is not installed on this cluster (and installing
        // the Prometheus Operator's CRD for one test would change a shared
        // cluster), so it is checked structurally: it selects the metrics Service,
        // whose port it names, and that Service selects the operator pods.
        let monitor = one(&objects, "ServiceMonitor");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(namespace_of(monitor), ns);
        assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            json!([ns])
        );
        let service = one(&objects, "Service");
        let service_labels = service["metadata"]["labels"].as_object().expect("labels");
        let selector = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("the ServiceMonitor selects by labels");
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(service_labels.get(k), Some(v), "the Service lacks {k}={v}");
        }
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
        assert_eq!(endpoint["path"], "/metrics");
        let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .expect("pod labels");
        for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(pod_labels.get(k), Some(v), "operator pods lack {k}={v}");
        }
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");

        // Everything else goes to the API server.
        let known: Vec<&Value> = objects
            .iter()
            .filter(|o| kind(o) != "ServiceMonitor")
            .collect();
        let warnings = dry_run(&known);
        assert!(!warnings.contains("PodSecurity"), "{warnings}");
    })
    .await;
}

/// `(apiGroup, resource, verb)` with the resourceNames it is limited to (empty: any).
type Grants = BTreeMap<(String, String, String), Vec<String>>;

/// Every rule of `role`, refusing wildcards and non-resource URLs.
fn grants(role: &Value) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{}: {rule}",
            name(role)
        );
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("strings").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (groups, resources, verbs, names) = (
            list("apiGroups"),
            list("resources"),
            list("verbs"),
            list("resourceNames"),
        );
        for item in groups.iter().chain(&resources).chain(&verbs).chain(&names) {
            assert!(!item.contains('*'), "a wildcard in {}: {rule}", name(role));
        }
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    let previous = out.insert((g.clone(), r.clone(), v.clone()), names.clone());
                    assert!(
                        previous.is_none(),
                        "{g}/{r} {v} granted twice in {}",
                        name(role)
                    );
                }
            }
        }
    }
    out
}

/// What the operator calls (operator/src), as `(group, resource, verbs)`.
/// Keep in step with the comment in charts/eol/templates/rbac.yaml.
fn expected_grants(managed_redis: bool) -> Grants {
    let mut expected = Grants::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str], names: &[&str]| {
        for verb in verbs {
            expected.insert(
                (group.to_owned(), resource.to_owned(), (*verb).to_owned()),
                names.iter().map(|n| (*n).to_owned()).collect(),
            );
        }
    };
    // runtime.rs watchers; run/controller.rs reads the Feature.
    add("eol.dev", "features", &["get", "list", "watch"], &[]);
    add("eol.dev", "featureruns", &["list", "watch"], &[]);
    // write_status in both controllers.
    add("eol.dev", "features/status", &["patch"], &[]);
    add("eol.dev", "featureruns/status", &["patch"], &[]);
    // controller_owner_ref sets blockOwnerDeletion.
    add("eol.dev", "features/finalizers", &["update"], &[]);
    add("eol.dev", "featureruns/finalizers", &["update"], &[]);
    add(
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
        &[],
    );
    add(
        "",
        "services",
        &["get", "list", "watch", "create", "patch"],
        &[],
    );
    add("", "pods", &["list"], &[]);
    add("", "secrets", &["get"], &[]);
    add(
        "apps",
        "deployments",
        &["list", "watch", "create", "patch"],
        &[],
    );
    add("apps", "replicasets", &["list"], &[]);
    add(
        "batch",
        "jobs",
        &["get", "list", "watch", "create", "delete"],
        &[],
    );
    add("events.k8s.io", "events", &["create", "patch"], &[]);
    if managed_redis {
        add("", "secrets", &["create"], &[]);
        add("", "secrets", &["patch"], &["eol-redis"]);
        add(
            "apps",
            "statefulsets",
            &["get", "create", "patch"],
            &["eol-redis"],
        );
        // runtime.rs: the Redis readiness cache.
        add("apps", "statefulsets", &["list", "watch"], &[]);
    }
    expected
}

fn lease_grants() -> Grants {
    let mut g = Grants::new();
    let lease = |verb: &str| {
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            verb.to_owned(),
        )
    };
    g.insert(lease("create"), vec![]);
    g.insert(lease("get"), vec!["eol-operator".to_owned()]);
    g.insert(lease("patch"), vec!["eol-operator".to_owned()]);
    g
}

#[test]
fn rbac_is_least_privilege_in_both_scopes() {
    let release_ns = "eol-system";
    for (sets, managed_redis) in [
        (vec![], true),
        (vec!["--set", "watchNamespace=team-a"], true),
        (vec!["--set", "redis.existingSecret=redis-url"], false),
        (
            vec![
                "--set",
                "watchNamespace=team-a",
                "--set",
                "redis.existingSecret=redis-url",
            ],
            false,
        ),
    ] {
        let objects = objects(&template(release_ns, &sets));
        let scoped = sets.iter().any(|s| s.starts_with("watchNamespace"));
        let (main_kind, main_ns) = if scoped {
            ("Role", "team-a")
        } else {
            ("ClusterRole", "")
        };
        if scoped {
            assert!(
                find(&objects, "ClusterRole").is_empty()
                    && find(&objects, "ClusterRoleBinding").is_empty(),
                "{sets:?}: watching one namespace grants nothing cluster-wide"
            );
        }
        let roles: Vec<&Value> = objects
            .iter()
            .filter(|o| matches!(kind(o), "Role" | "ClusterRole"))
            .collect();
        assert_eq!(
            roles.len(),
            2,
            "{sets:?}: the operator's role and the Lease role"
        );
        let main = roles
            .iter()
            .find(|r| kind(r) == main_kind && name(r) == FULLNAME)
            .unwrap_or_else(|| panic!("{sets:?}: no {main_kind} {FULLNAME}"));
        assert_eq!(namespace_of(main), main_ns);
        let lease_role = roles
            .iter()
            .find(|r| name(r) == format!("{FULLNAME}-leader-election"))
            .expect("the leader-election Role");
        assert_eq!(kind(lease_role), "Role");
        assert_eq!(
            namespace_of(lease_role),
            release_ns,
            "the Lease permission only in the release namespace"
        );

        let granted = grants(main);
        for ((group, resource, verb), names) in &granted {
            if resource == "secrets" {
                assert!(
                    verb == "get"
                        || (managed_redis && verb == "create")
                        || (managed_redis && verb == "patch" && *names == ["eol-redis"]),
                    "{sets:?}: secrets {verb} {names:?} is more than the operator needs"
                );
            }
            assert!(
                group != "coordination.k8s.io",
                "{sets:?}: Leases only in the release namespace"
            );
        }
        assert_eq!(
            granted,
            expected_grants(managed_redis),
            "{sets:?}: the rules differ from the operator's calls"
        );
        assert_eq!(grants(lease_role), lease_grants());

        // Each binding ties its role to the chart's ServiceAccount.
        for binding in objects
            .iter()
            .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
        {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": release_ns}])
            );
            assert!(
                roles.iter().any(|r| kind(r) == binding["roleRef"]["kind"]
                    && name(r) == binding["roleRef"]["name"]
                    && namespace_of(r) == namespace_of(binding)),
                "{sets:?}: {} refers to no role of the chart",
                name(binding)
            );
        }
    }
    // Leader election off: no Lease permission at all.
    let objects = objects(&template(
        release_ns,
        &["--set", "leaderElection.enabled=false"],
    ));
    assert!(
        !objects.iter().any(|o| name(o).ends_with("leader-election")),
        "no Lease role without leader election"
    );
}

/// Whether the chart's ServiceAccount may do `verb` on `resource`.
async fn allowed(
    client: &Client,
    user: &str,
    namespace: &str,
    (group, resource, verb, name): (&str, &str, &str, &str),
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                verb: Some(verb.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn rbac_allows_the_operators_calls_and_refuses_the_rest() {
    in_namespaces("rbac", 2, |client, namespaces| async move {
        let (ns, watched) = (namespaces[0].clone(), namespaces[1].clone());
        let watch = format!("watchNamespace={watched}");
        // Only the namespaced RBAC objects are created for real (in the test's
        // namespaces); nothing cluster-scoped is left behind.
        let rbac = template(
            &ns,
            &[
                "--set",
                &watch,
                "--show-only",
                "templates/serviceaccount.yaml",
                "--show-only",
                "templates/rbac.yaml",
            ],
        );
        let out = run(
            &tools().kubectl,
            &[
                "apply",
                "--server-side",
                "--field-manager=eol-chart-test",
                "-f",
                "-",
            ],
            Some(&rbac),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let user = format!("system:serviceaccount:{ns}:{FULLNAME}");

        // Each call in operator/src, in the watched namespace.
        let calls = [
            ("eol.dev", "features", "list", ""),
            ("eol.dev", "features", "watch", ""),
            ("eol.dev", "features", "get", "inventory"),
            ("eol.dev", "featureruns", "list", ""),
            ("eol.dev", "featureruns", "watch", ""),
            ("eol.dev", "features/status", "patch", "inventory"),
            ("eol.dev", "featureruns/status", "patch", "run-1"),
            ("", "configmaps", "get", "inventory-source"),
            ("", "configmaps", "create", "run-1"),
            ("", "configmaps", "patch", "inventory-abc123"),
            ("", "configmaps", "delete", "inventory-abc123"),
            ("", "services", "patch", "inventory"),
            ("", "services", "create", "inventory"),
            ("", "services", "get", "eol-redis"),
            ("", "pods", "list", ""),
            ("", "secrets", "get", "llm-credentials"),
            ("", "secrets", "get", "eol-redis"),
            ("", "secrets", "create", ""),
            ("", "secrets", "patch", "eol-redis"),
            ("apps", "deployments", "patch", "inventory"),
            ("apps", "deployments", "create", "inventory"),
            ("apps", "replicasets", "list", ""),
            ("apps", "statefulsets", "get", "eol-redis"),
            ("apps", "statefulsets", "create", "eol-redis"),
            ("apps", "statefulsets", "patch", "eol-redis"),
            ("apps", "statefulsets", "list", ""),
            ("apps", "statefulsets", "watch", ""),
            ("batch", "jobs", "get", "run-1"),
            ("batch", "jobs", "create", ""),
            ("batch", "jobs", "delete", "run-1"),
            ("events.k8s.io", "events", "create", ""),
            ("events.k8s.io", "events", "patch", "inventory.1"),
        ];
        for call in calls {
            assert!(
                allowed(&client, &user, &watched, call).await,
                "the operator needs {call:?} in {watched}"
            );
        }
        for call in [
            ("coordination.k8s.io", "leases", "create", ""),
            ("coordination.k8s.io", "leases", "get", "eol-operator"),
            ("coordination.k8s.io", "leases", "patch", "eol-operator"),
        ] {
            assert!(
                allowed(&client, &user, &ns, call).await,
                "the operator needs {call:?} in {ns}"
            );
        }

        // And nothing beyond them.
        let refused = [
            ("", "secrets", "list", ""),
            ("", "secrets", "watch", ""),
            ("", "secrets", "update", "eol-redis"),
            ("", "secrets", "delete", "eol-redis"),
            ("", "secrets", "patch", "llm-credentials"),
            ("apps", "statefulsets", "create", "postgres"),
            ("apps", "statefulsets", "delete", "eol-redis"),
            ("apps", "deployments", "delete", "inventory"),
            ("", "pods", "delete", "inventory-1"),
            ("", "pods", "create", ""),
            ("", "pods/exec", "create", "inventory-1"),
            ("eol.dev", "features", "update", "inventory"),
            ("eol.dev", "features", "delete", "inventory"),
            ("eol.dev", "featureruns", "create", ""),
            ("", "serviceaccounts", "create", ""),
            ("rbac.authorization.k8s.io", "roles", "create", ""),
            ("coordination.k8s.io", "leases", "create", ""),
        ];
        for call in refused {
            assert!(
                !allowed(&client, &user, &watched, call).await,
                "{call:?} in {watched} is more than the operator needs"
            );
        }
        for call in [
            ("coordination.k8s.io", "leases", "patch", "someone-else"),
            ("", "configmaps", "list", ""),
            ("", "secrets", "get", "anything"),
        ] {
            assert!(
                !allowed(&client, &user, &ns, call).await,
                "{call:?} in the release namespace {ns} is more than the operator needs"
            );
        }
        // Nothing cluster-wide when one namespace is watched.
        for call in [
            ("eol.dev", "features", "list", ""),
            ("", "namespaces", "list", ""),
        ] {
            assert!(
                !allowed(&client, &user, "", call).await,
                "{call:?} cluster-wide with watchNamespace set"
            );
        }

        // The StatefulSet rule is limited by name: a Server-Side Apply that
        // creates is authorized as `create` of that name, so the operator's own
        // apply passes (dry-run, as the ServiceAccount) and another name does not.
        let statefulset = |sts: &str| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": sts, "namespace": watched},
                "spec": {"serviceName": sts, "selector": {"matchLabels": {"app": sts}},
                    "template": {"metadata": {"labels": {"app": sts}},
                        "spec": {"containers": [{"name": "redis", "image": "redis-stack"}]}}}})
            .to_string()
        };
        let as_operator = format!("--as={user}");
        let apply = |body: String| {
            run(
                &tools().kubectl,
                &[
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--field-manager=eol-operator",
                    &as_operator,
                    "-f",
                    "-",
                ],
                Some(&body),
            )
        };
        let ok = apply(statefulset("eol-redis"));
        assert!(ok.status.success(), "{}", text(&ok.stderr));
        let refused = apply(statefulset("postgres"));
        assert!(!refused.status.success());
        assert!(
            text(&refused.stderr).contains("forbidden"),
            "{}",
            text(&refused.stderr)
        );
    })
    .await;
}

/// Pods of `namespace` waiting on an image, as `pod: reason image`: there is no
/// registry here, so a missing image means it was not loaded into the node.
async fn image_pull_problems(client: &Client, namespace: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return vec![];
    };
    let mut problems = vec![];
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        let statuses = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        for c in statuses {
            let reason = c
                .state
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .unwrap_or_default();
            if matches!(
                reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull"
            ) {
                problems.push(format!("{name}: {reason} {}", c.image));
            }
        }
    }
    problems
}

/// The hint for [`image_pull_problems`], or nothing.
async fn image_hint(client: &Client, namespace: &str) -> String {
    let problems = image_pull_problems(client, namespace).await;
    if problems.is_empty() {
        return String::new();
    }
    format!(
        "pods wait for images the node lacks (there is no registry): {}; load them with \
         `kind-tests/cluster.sh load-image project`\n",
        problems.join("; ")
    )
}

#[tokio::test]
async fn helm_install_runs_the_operator_and_uninstall_leaves_crds_and_redis_volumes() {
    in_namespaces("install", 1, |client, namespaces| async move {
        let ns = namespaces[0].clone();
        // The CRDs are shared with the other cluster tests: installed once, never by this release.
        install_crds(&client).await;

        // One namespace for everything: the release, the watched namespace, the
        // Lease and the Features, so nothing cluster-scoped is created.
        let chart = chart_dir();
        let watch = format!("watchNamespace={ns}");
        let namespaces_value = format!("networkPolicy.namespaces[0]={ns}");
        let install = helm(&[
            "install",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            &ns,
            "--skip-crds",
            "--set",
            &watch,
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            &namespaces_value,
            "--wait",
            "--timeout",
            "180s",
        ]);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let operator_log = || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
                .await
                .expect("list operator pods");
            let mut text = String::new();
            for pod in list.items {
                let name = pod.metadata.name.unwrap_or_default();
                let log = pods
                    .logs(&name, &LogParams::default())
                    .await
                    .unwrap_or_else(|e| format!("(no log: {e})"));
                text.push_str(&format!("--- {name}\n{log}\n"));
            }
            text
        };
        if !install.status.success() {
            panic!(
                "helm install failed: {}\n{}{}",
                text(&install.stderr),
                image_hint(&client, &ns).await,
                operator_log().await
            );
        }
        assert!(text(&install.stdout).contains("NOTES:"));

        // The operator leads (the Lease names its pod), and reconciles: the
        // managed Redis, a served Feature whose tests pass, a FeatureRun's Job.
        let operator_pods = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .expect("list operator pods");
        assert_eq!(operator_pods.items.len(), 1);
        let pod_name = operator_pods.items[0]
            .metadata
            .name
            .clone()
            .unwrap_or_default();
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        wait_for(&leases, "eol-operator", Duration::from_secs(60), |l| {
            l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(pod_name.as_str())
        })
        .await;

        let source = include_str!("../../features/examples/inventory.eol");
        let tests = include_str!("../../features/examples/inventory.test.eol");
        let feature: Feature = serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory"},
            "spec": {"source": {"inline": source}, "tests": tests, "replicas": 1}
        }))
        .expect("a Feature");
        let run: FeatureRun = serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
            "metadata": {"name": "restock"},
            "spec": {"featureRef": "inventory", "operation": "add_stock",
                     "input": {"sku": "HELM-1", "quantity": 2}}
        }))
        .expect("a FeatureRun");
        let features: Api<Feature> = Api::namespaced(client.clone(), &ns);
        let runs: Api<FeatureRun> = Api::namespaced(client.clone(), &ns);
        features
            .create(&PostParams::default(), &feature)
            .await
            .expect("create the Feature");
        runs.create(&PostParams::default(), &run)
            .await
            .expect("create the FeatureRun");
        let timeout = Duration::from_secs(240);
        let done = tokio::time::timeout(
            timeout,
            // wait_for's own limit is later: on timeout the operator log is shown.
            wait_for(&runs, "restock", timeout * 2, run_finished),
        )
        .await;
        let log = operator_log().await;
        let Ok(done) = done else {
            panic!(
                "the FeatureRun did not finish\n{}operator log:\n{log}",
                image_hint(&client, &ns).await
            );
        };
        let status = assert_succeeded(done, |message| format!("{message}\n{log}"));
        assert_eq!(
            status.summary.and_then(|s| s.output),
            Some(json!({"sku": "HELM-1", "level": 2}))
        );
        let ready = wait_for(&features, "inventory", timeout, feature_ready).await;
        assert_eq!(ready.status.map(|s| s.ready_replicas), Some(1));
        assert!(
            !log.contains("forbidden") && !log.contains("Forbidden"),
            "the chart's RBAC refused a call:\n{log}"
        );
        // Events go through the Role too (events.k8s.io, create).
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let recorded = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        assert!(
            recorded.items.iter().any(|e| {
                e.reporting_controller.as_deref() == Some("eol-operator")
                    && e.reason.as_deref() == Some("Succeeded")
            }),
            "the operator recorded no event for the finished run\n{log}"
        );

        // Uninstall: the operator and its RBAC go; the Features (CRDs are
        // Helm's to install, never to delete) and the Redis volume stay.
        let uninstall = helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            &ns,
            "--wait",
            "--timeout",
            "120s",
        ]);
        assert!(uninstall.status.success(), "{}", text(&uninstall.stderr));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        assert!(deployments.get_opt(FULLNAME).await.expect("get").is_none());
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        assert!(
            roles
                .list(&ListParams::default())
                .await
                .expect("list roles")
                .items
                .is_empty()
        );
        assert!(features.get_opt("inventory").await.expect("get").is_some());
        assert!(
            deployments
                .get_opt("inventory")
                .await
                .expect("get")
                .is_some()
        );
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        assert!(
            claims
                .get_opt("data-eol-redis-0")
                .await
                .expect("get")
                .is_some()
        );
    })
    .await;
}
