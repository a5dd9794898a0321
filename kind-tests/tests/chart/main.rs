//! The Helm chart `charts/eol`: `helm lint --strict`; default and non-default
//! renders validated by the real API server (server-side dry-run, strict field
//! validation, `restricted` PodSecurity) in fresh `eol-chart-*` namespaces; the
//! values schema refusing typos and wrong types; `charts/eol/crds` equal to
//! `crds/`; and least-privilege RBAC, checked rule by rule and then probed on
//! the cluster with SubjectAccessReviews against the operator's actual calls;
//! finally a real `helm install` whose operator pod runs a Feature and a
//! FeatureRun end to end, and a `helm uninstall` that leaves what the README says;
//! and the operator's own API Priority and Fairness objects, rendered and then
//! classifying the operator's requests on the cluster.
//!
//! Needs helm from the cache (`kind-tests/cluster.sh build`) and the cluster
//! (`kind-tests/cluster.sh up`). kubectl turns helm's YAML into JSON offline
//! (`kubectl label --local`; this crate has no YAML parser) and runs the dry-runs.
//!
//! One module a subject: `rendering` (lint, NOTES, CRD copies and the values
//! schema, offline), `dry_runs` (renders through the API server), `rbac` (rule
//! by rule, then SubjectAccessReviews), `install` (`helm install` and
//! `uninstall` on the cluster) and `flow_control` (the FlowSchema, offline and
//! on the cluster). What they share is here.

mod dry_runs;
mod flow_control;
mod install;
mod rbac;
mod rendering;

use eol_kind_tests::cli::{helm, repo_root, run, text, tools};
use eol_kind_tests::{client, create_namespace, delete_namespace, keep_namespaces, rethrow};
use kube::Client;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;

/// The release name every render uses.
const RELEASE: &str = "eol";
/// What `fullname` gives for [`RELEASE`] (the release name contains the chart name).
const FULLNAME: &str = "eol";

/// Non-default values: one namespace watched, NetworkPolicy, ServiceMonitor,
/// PodMonitor and Grafana dashboard, two replicas, an external Redis, model
/// defaults with an API-key Secret, an embeddings API with its own API-key
/// Secret, a trace collector.
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
flowControl:
  matchingPrecedence: 500
  nominalConcurrencyShares: 5
  lendablePercent: 0
  queuing:
    queues: 8
    handSize: 2
    queueLengthLimit: 20
serviceMonitor:
  enabled: true
  labels:
    release: prometheus
podMonitor:
  enabled: true
  scrapeTimeout: 10s
  labels:
    release: prometheus
dashboards:
  enabled: true
  annotations:
    grafana_folder: EOL
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
  otel:
    peers:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: monitoring
otel:
  endpoint: http://jaeger-collector.monitoring:4318
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

/// The cluster-scoped FlowSchema and PriorityLevelConfiguration `.0` of a
/// release installed by a test: deleted when this is dropped, however the test
/// ends (deleting the test's namespace leaves them), unless `EOL_KEEP_NAMESPACES=1`.
struct FlowControlObjects(String);

impl Drop for FlowControlObjects {
    fn drop(&mut self) {
        if keep_namespaces() {
            eprintln!(
                "kept FlowSchema and PriorityLevelConfiguration {} (EOL_KEEP_NAMESPACES=1)",
                self.0
            );
            return;
        }
        let _ = run(
            &tools().kubectl,
            &[
                "delete",
                "flowschema,prioritylevelconfiguration",
                &self.0,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
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
