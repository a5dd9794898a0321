//! End to end, the way a user works: `helm install` the chart, `kubectl apply -f`
//! the manifests kept in `features/`, read `kubectl get features` and
//! `kubectl get featureruns`, switch a phase with `kubectl patch` and watch the
//! rollout, `helm upgrade` with changed values, `helm uninstall`; and a
//! prototyping-phase FeatureRun whose runner pod calls the local model (and
//! embeds with the image's own embedding model).
//!
//! Each test installs its own release into its own namespace (watching only
//! that namespace, so nothing cluster-scoped is created besides the shared
//! CRDs and the release's FlowSchema and priority level, named after the
//! namespace and removed by `helm uninstall`). Needs the cluster and the project images (`scripts/test.sh` brings
//! both), helm (`kind-tests/cluster.sh build`) and, for the prototyping test,
//! the local model (`scripts/llm.sh start` with `EOL_LLM_HOST=0.0.0.0`, so pods
//! reach it through their gateway).

#[allow(dead_code)] // The runner's tracing tests use the rest.
#[path = "../../runner-image/tests/common/jaeger.rs"]
mod jaeger;

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::cli::{get_row, headers, helm, kubectl, must, repo_root, table, text};
use eol_kind_tests::release::{RELEASE, repo_path, with_release};
use eol_kind_tests::{
    assert_succeeded, client, condition, feature_ready, install_crds, run_finished, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;

/// Long enough for a cold runner pod and the managed Redis on a busy node.
const TIMEOUT: Duration = Duration::from_secs(240);

fn ready_with(feature: &Feature, replicas: i32) -> bool {
    feature_ready(feature)
        && feature
            .status
            .as_ref()
            .is_some_and(|s| s.ready_replicas == replicas)
}

#[tokio::test]
async fn a_user_installs_applies_switches_upgrades_and_uninstalls() {
    with_release("user", vec![], |client, ns| async move {
        // As features/manifests/inventory-feature.yaml says: the source from the .eol file.
        let from_file = format!(
            "--from-file=inventory.eol={}",
            repo_path("features/examples/inventory.eol")
        );
        must(
            kubectl(
                &[
                    "create",
                    "configmap",
                    "inventory-source",
                    "-n",
                    &ns,
                    &from_file,
                ],
                None,
            ),
            "kubectl create configmap",
        );
        must(
            kubectl(
                &[
                    "apply",
                    "-n",
                    &ns,
                    "-f",
                    &repo_path("features/manifests/inventory-feature.yaml"),
                    "-f",
                    &repo_path("features/manifests/inventory-run.yaml"),
                ],
                None,
            ),
            "kubectl apply",
        );

        let runs: Api<FeatureRun> = Api::namespaced(client.clone(), &ns);
        let done = wait_for(&runs, "restock-ab-123", TIMEOUT, run_finished).await;
        let status = assert_succeeded(done, str::to_owned);
        assert_eq!(
            status.summary.and_then(|s| s.output),
            Some(serde_json::json!({"sku": "AB-123", "level": 3}))
        );
        assert_eq!(
            headers("featureruns", &ns),
            [
                "NAME", "FEATURE", "PHASE", "STATUS", "PASSED", "FAILED", "DURATION", "AGE"
            ]
        );
        let row = get_row("featureruns", &ns, "restock-ab-123", false);
        assert_eq!(row["FEATURE"], "inventory", "{row:?}");
        assert_eq!(row["PHASE"], "implementation", "{row:?}");
        assert_eq!(row["STATUS"], "Succeeded", "{row:?}");
        assert!(row["DURATION"].ends_with('s'), "{row:?}");
        // An operation run has no test counts.
        assert_eq!(
            (row["PASSED"].as_str(), row["FAILED"].as_str()),
            ("", ""),
            "{row:?}"
        );

        let features: Api<Feature> = Api::namespaced(client.clone(), &ns);
        let ready = wait_for(&features, "inventory", TIMEOUT, |f| ready_with(f, 2)).await;
        // The operator pod checked the Python itself (its image has Python 3):
        // an unchecked source says so in SpecValid's message.
        let (_, _, spec_valid) =
            condition(&ready.status.unwrap().conditions, "SpecValid").expect("SpecValid");
        assert_eq!(spec_valid, "the source parses; phase implementation");
        // DESIRED (spec.phase) is a wide column; AGREEMENT is a shadow
        // switch's, BUDGET the budget window's spend.
        assert_eq!(
            headers("features", &ns),
            [
                "NAME",
                "PHASE",
                "READY",
                "REPLICAS",
                "AGREEMENT",
                "BUDGET",
                "AGE"
            ]
        );
        let row = get_row("features", &ns, "inventory", false);
        assert_eq!(row["PHASE"], "implementation", "{row:?}");
        assert_eq!(row["READY"], "True", "{row:?}");
        assert_eq!(row["REPLICAS"], "2", "{row:?}");

        // A phase switch by kubectl patch is a rollout of the Deployment.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let before = deployments.get("inventory").await.expect("the Deployment");
        must(
            kubectl(
                &[
                    "patch",
                    "feature",
                    "inventory",
                    "-n",
                    &ns,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"spec":{"phase":"hybrid"}}"#,
                ],
                None,
            ),
            "kubectl patch",
        );
        let rollout = must(
            kubectl(
                &[
                    "rollout",
                    "status",
                    "deployment/inventory",
                    "-n",
                    &ns,
                    "--timeout=240s",
                ],
                None,
            ),
            "kubectl rollout status",
        );
        assert!(rollout.contains("successfully rolled out"), "{rollout}");
        let switched = wait_for(&features, "inventory", TIMEOUT, |f| {
            ready_with(f, 2)
                && f.status.as_ref().is_some_and(|s| {
                    s.phase == Some(eol_core::Phase::Hybrid)
                        && condition(&s.conditions, "PhaseSwitch")
                            .is_some_and(|c| c.1 == "Complete")
                })
        })
        .await;
        let after = deployments.get("inventory").await.expect("the Deployment");
        assert!(
            after.metadata.generation > before.metadata.generation,
            "the Deployment's template changed"
        );
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let sets = replica_sets
            .list(&ListParams::default().labels("app.kubernetes.io/instance=inventory"))
            .await
            .expect("list ReplicaSets");
        let mut replicas: Vec<i32> = sets
            .items
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .collect();
        replicas.sort();
        assert_eq!(replicas, [0, 2], "old ReplicaSet scaled to 0, new to 2");
        assert_eq!(
            switched.status.and_then(|s| s.config),
            after
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("eol.dev/config-hash").cloned())
        );
        let row = get_row("features", &ns, "inventory", true);
        assert_eq!(
            (row["PHASE"].as_str(), row["DESIRED"].as_str()),
            ("hybrid", "hybrid")
        );

        // helm upgrade with changed values rolls the operator, which keeps working.
        let chart = repo_path("charts/eol");
        must(
            helm(&[
                "upgrade",
                RELEASE,
                &chart,
                "--namespace",
                &ns,
                "--reuse-values",
                "--set",
                "concurrency=4",
                "--set",
                "logging.level=debug",
                "--wait",
                "--timeout",
                "180s",
            ]),
            "helm upgrade",
        );
        let operator = deployments
            .get(RELEASE)
            .await
            .expect("the operator Deployment");
        let env: BTreeMap<String, String> = operator
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers[0].env.clone().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        assert_eq!(
            env.get("EOL_CONCURRENCY").map(String::as_str),
            Some("4"),
            "{env:?}"
        );
        let history = must(
            helm(&["history", RELEASE, "--namespace", &ns]),
            "helm history",
        );
        assert_eq!(table(&history).len(), 2, "{history}");
        // The stock added by the first run is in the namespace's Redis.
        let level_run = r#"
apiVersion: eol.dev/v1alpha1
kind: FeatureRun
metadata:
  name: after-upgrade
spec:
  featureRef: inventory
  operation: stock_level
  input: {sku: AB-123}
"#;
        must(
            kubectl(&["apply", "-n", &ns, "-f", "-"], Some(level_run)),
            "kubectl apply",
        );
        let done = wait_for(&runs, "after-upgrade", TIMEOUT, run_finished).await;
        let row = get_row("featureruns", &ns, "after-upgrade", false);
        assert_eq!(row["STATUS"], "Succeeded", "{row:?} {:?}", done.status);
        assert_eq!(row["PHASE"], "hybrid", "{row:?}");
        assert_eq!(
            done.status.and_then(|s| s.summary).and_then(|s| s.output),
            Some(serde_json::json!({"sku": "AB-123", "level": 3}))
        );

        // helm uninstall removes the release's objects and leaves what the
        // chart README says stays: the CRDs, the Redis volume, the user's objects.
        must(
            helm(&[
                "uninstall",
                RELEASE,
                "--namespace",
                &ns,
                "--wait",
                "--timeout",
                "120s",
            ]),
            "helm uninstall",
        );
        let release_objects = must(
            kubectl(
                &[
                    "get",
                    "deployments,services,serviceaccounts,roles,rolebindings,configmaps,secrets",
                    "-n",
                    &ns,
                    "-l",
                    &format!("app.kubernetes.io/instance={RELEASE}"),
                    "-o",
                    "name",
                ],
                None,
            ),
            "kubectl get",
        );
        assert_eq!(release_objects.trim(), "", "left by helm uninstall");
        let flow = format!("{RELEASE}-{ns}");
        let flow_objects = must(
            kubectl(
                &[
                    "get",
                    "flowschema,prioritylevelconfiguration",
                    &flow,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ],
                None,
            ),
            "kubectl get",
        );
        assert_eq!(flow_objects.trim(), "", "left by helm uninstall");
        assert!(deployments.get_opt(RELEASE).await.expect("get").is_none());
        let crds = must(
            kubectl(
                &[
                    "get",
                    "crd",
                    "features.eol.dev",
                    "featureruns.eol.dev",
                    "-o",
                    "name",
                ],
                None,
            ),
            "kubectl get crd",
        );
        assert_eq!(crds.lines().count(), 2, "{crds}");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        assert!(
            claims
                .get_opt("data-eol-redis-0")
                .await
                .expect("get")
                .is_some()
        );
        assert!(features.get_opt("inventory").await.expect("get").is_some());
    })
    .await;
}

/// The `--set` values of the README's "A model on this machine" commands,
/// expanded by the shell as the user's would be: `NODE_IP` and
/// `EOL_LLM_BASE_URL` as the commands before them set them.
fn readme_model_values(base_url: &str, node_ip: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("the README");
    let section = readme
        .split_once("**A model on this machine.**")
        .map(|(_, rest)| rest)
        .expect("the README says how pods reach a model on this machine");
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("with commands");
    assert!(
        block.contains("EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start"),
        "the model listens beyond loopback: {block}"
    );
    let command = block.replace("\\\n", " ");
    let helm_line = command
        .lines()
        .find(|l| l.trim_start().starts_with("helm install"))
        .expect("a helm install command");
    let words: Vec<&str> = helm_line.split_whitespace().collect();
    let values: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "--set")
        .map(|w| {
            let out = std::process::Command::new("bash")
                .args(["-c", &format!("printf %s {}", w[1])])
                .env("NODE_IP", node_ip)
                .env("EOL_LLM_BASE_URL", base_url)
                .output()
                .expect("bash");
            text(&out.stdout)
        })
        .collect();
    for key in ["model.baseUrl=", "model.name=", "model.responseFormat="] {
        assert!(
            values.iter().any(|v| v.starts_with(key)),
            "{key} in {values:?}"
        );
    }
    values
}

#[tokio::test]
async fn a_prototyping_featurerun_calls_the_local_model_from_its_pod() {
    let url = std::env::var("EOL_LLM_BASE_URL").expect(
        "EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model \
         (EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start) for this test",
    );
    let client = client().await;
    let host = eol_kind_tests::chaos::node_ip(&client).await;
    // The model settings are the README's, as a user copies them.
    let mut values = readme_model_values(&url, &host);
    let model_url = values[0].clone();
    values.push("runner.logLevel=info".to_owned());
    // A trace backend the operator and the pods export to, through the chart.
    let jaeger = jaeger::Jaeger::start_on("0.0.0.0");
    values.push(format!("otel.endpoint=http://{host}:{}", jaeger.otlp_port));
    let traceparent = Traceparent::new();
    // A price for the README's model: runs and the Feature report what it costs.
    values.push(format!("model.prices.smollm2.input={PRICE_IN}"));
    values.push(format!("model.prices.smollm2.output={PRICE_OUT}"));
    with_release("model", values, |client, ns| async move {
        let source =
            std::fs::read_to_string(repo_root().join("features/examples/support-triage.eol"))
                .expect("the example");
        // The document its prose references (`@docs/refund-policy.md`) goes along.
        let policy =
            std::fs::read_to_string(repo_root().join("features/examples/docs/refund-policy.md"))
                .expect("the referenced document");
        let feature: Feature = serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "support-triage"},
            "spec": {"source": {"inline": source}, "phase": "prototyping", "replicas": 1,
                     "documents": {"docs/refund-policy.md": policy}}
        }))
        .expect("a Feature");
        let features: Api<Feature> = Api::namespaced(client.clone(), &ns);
        features
            .create(&PostParams::default(), &feature)
            .await
            .expect("create the Feature");
        let run = r#"
apiVersion: eol.dev/v1alpha1
kind: FeatureRun
metadata:
  name: classify
  annotations:
    eol.dev/traceparent: TRACEPARENT
spec:
  featureRef: support-triage
  operation: classify_ticket
  input:
    subject: App crashes on start
    body: Since the last update the app closes as soon as I open it.
  timeoutSeconds: 180
"#;
        let run = run.replace("TRACEPARENT", &traceparent.header());
        must(
            kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&run)),
            "kubectl apply",
        );
        let runs: Api<FeatureRun> = Api::namespaced(client.clone(), &ns);
        let done = wait_for(&runs, "classify", TIMEOUT, run_finished).await;
        let status = assert_succeeded(done, |message| format!("the run on {model_url}: {message}"));
        assert_eq!(status.phase, Some(eol_core::Phase::Prototyping));
        let summary = status.summary.expect("a summary");
        // The runner checked the model's answer against the output schema.
        let label = summary
            .output
            .as_ref()
            .and_then(|o| o.get("label"))
            .and_then(|l| l.as_str());
        assert!(label.is_some_and(|l| !l.is_empty()), "{:?}", summary.output);
        assert!(
            summary.tokens.unwrap_or(0) > 0,
            "the model was called: {summary:?}"
        );
        let row = get_row("featureruns", &ns, "classify", false);
        assert_eq!(
            (row["PHASE"].as_str(), row["STATUS"].as_str()),
            ("prototyping", "Succeeded")
        );
        let pod = status.pod_name.expect("a pod");
        assert!(pod.starts_with("classify-"), "{pod}");
        // No embeddings API is configured: the pod embedded the feature's prose and
        // the referenced document (beside the feature file, so never "cannot be
        // read") with the all-MiniLM-L6-v2 its image ships, for the call's vector
        // context; `runner.logLevel=info` shows it.
        let logs = must(kubectl(&["logs", "-n", &ns, &pod], None), "kubectl logs");
        let indexed = logs
            .lines()
            .find(|l| l.contains("context indexed"))
            .unwrap_or_else(|| panic!("no \"context indexed\" in the runner's log:\n{logs}"));
        assert!(
            indexed.contains("support-triage@") && !indexed.contains("added=0"),
            "{indexed}"
        );
        assert!(
            logs.contains("\"label\"")
                && !logs.contains("no embedding model")
                && !logs.contains("cannot be read"),
            "the runner's log:\n{logs}"
        );
        the_run_is_traced(&jaeger, &traceparent, &ns, &pod, &summary).await;
        let spent = run_cost(&client, &ns, &summary, &pod).await;
        let ip = feature_usage_counts(&client, &ns, spent).await;
        a_spent_budget_refuses_calls(&client, &ns, &ip).await;
    })
    .await;
}

/// A W3C trace context made up by the test: the span a FeatureRun's spans are children of.
struct Traceparent {
    trace_id: String,
    span_id: String,
}

impl Traceparent {
    fn new() -> Self {
        // Never all zeros (an invalid id): the top bit is set.
        Self {
            trace_id: format!("{:032x}", rand::random::<u128>() | (1 << 127)),
            span_id: format!("{:016x}", rand::random::<u64>() | (1 << 63)),
        }
    }

    /// The `traceparent` value (version 00, sampled).
    fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// The run's spans, exported by its pod through the chart's `otel.endpoint`,
/// read back from Jaeger: the operation span a child of the FeatureRun's
/// `eol.dev/traceparent`, the model request a child of it with the GenAI
/// attributes and the tokens the status reports, the pod and namespace as
/// resource attributes; and the operator's reconcile spans beside them.
async fn the_run_is_traced(
    jaeger: &jaeger::Jaeger,
    parent: &Traceparent,
    ns: &str,
    pod: &str,
    summary: &eol_core::crd::RunSummary,
) {
    const OPERATION: &str = "support-triage.classify_ticket";
    let trace = jaeger
        .trace(&parent.trace_id, |t| {
            !t.named(OPERATION).is_empty()
                && t.spans().iter().any(|s| s.name().starts_with("chat "))
        })
        .await;
    let operation = trace.one(OPERATION);
    assert_eq!(operation.parent().as_deref(), Some(parent.span_id.as_str()));
    assert_eq!(operation.text("eol.feature"), "support-triage");
    assert_eq!(operation.text("eol.operation"), "classify_ticket");
    assert_eq!(operation.text("eol.phase"), "prototyping");
    assert_eq!(trace.service(&operation), "eol-runner");
    let chats: Vec<_> = trace
        .spans()
        .into_iter()
        .filter(|s| s.name().starts_with("chat "))
        .collect();
    for chat in &chats {
        assert_eq!(chat.parent(), Some(operation.id()), "{chat:?}");
        assert_eq!(chat.text("gen_ai.operation.name"), "chat");
        assert!(!chat.text("gen_ai.request.model").is_empty(), "{chat:?}");
        assert!(
            chat.tag("gen_ai.response.finish_reasons").is_some(),
            "{chat:?}"
        );
    }
    // Every model request of the run is a span, and their tokens are the run's.
    let tokens = |key: &str| chats.iter().filter_map(|c| c.int(key)).sum::<i64>();
    assert_eq!(
        (
            Some(tokens("gen_ai.usage.input_tokens")),
            Some(tokens("gen_ai.usage.output_tokens"))
        ),
        (summary.input_tokens, summary.output_tokens),
        "the chat spans' tokens against the run's summary"
    );
    // The resource attributes the pod read from itself.
    let process = &trace.0["processes"][operation.0["processID"].as_str().unwrap_or_default()];
    let resource: BTreeMap<String, String> = process["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t["key"].as_str()?.to_owned(),
                t["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(
        resource.get("k8s.pod.name").map(String::as_str),
        Some(pod),
        "{resource:?}"
    );
    assert_eq!(
        resource.get("k8s.namespace.name").map(String::as_str),
        Some(ns),
        "{resource:?}"
    );
    // The operator, told by the same chart value, traces its reconciles.
    let services = jaeger.services().await;
    assert!(
        services.iter().any(|s| s == "eol-operator"),
        "the operator's spans reached Jaeger: {services:?}"
    );
}

/// The chart's price of `smollm2`, USD per million prompt and completion
/// tokens (whole numbers: `helm --set` passes a fraction as a string, which the
/// values schema refuses; values files and `--set-json` take any number).
const PRICE_IN: f64 = 1.0;
const PRICE_OUT: f64 = 2.0;

/// The cost of `input` and `output` tokens at the chart's price.
fn priced(input: i64, output: i64) -> f64 {
    (input as f64 * PRICE_IN + output as f64 * PRICE_OUT) / 1e6
}

/// The run's tokens and cost as its status and `kubectl get featureruns -o
/// wide` show them, at the price its pod was given; returns its prompt tokens.
async fn run_cost(
    client: &Client,
    ns: &str,
    summary: &eol_core::crd::RunSummary,
    pod: &str,
) -> i64 {
    let (input, output) = (
        summary.input_tokens.expect("prompt tokens in the summary"),
        summary
            .output_tokens
            .expect("completion tokens in the summary"),
    );
    assert_eq!(Some(input + output), summary.tokens, "{summary:?}");
    let cost = summary.cost.expect("a cost: the chart prices smollm2");
    // Each request's cost is rounded to the nano-dollar.
    assert!((cost - priced(input, output)).abs() < 1e-8, "{summary:?}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let env = pods
        .get(pod)
        .await
        .expect("the run's pod")
        .spec
        .expect("spec")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let prices = env.iter().find(|e| e.name == "EOL_LLM_PRICES");
    assert_eq!(
        prices.and_then(|e| e.value.as_deref()),
        Some(r#"{"smollm2":{"input":1.0,"output":2.0}}"#),
        "the pod's env: {env:?}"
    );
    let row = get_row("featureruns", ns, "classify", true);
    assert_eq!(row["TOKENS"], (input + output).to_string(), "{row:?}");
    let shown: f64 = row["COST"].parse().expect("a number in COST");
    assert!((shown - cost).abs() < 1e-9, "{row:?}");
    input
}

/// A token of a ServiceAccount RBAC allows to call every Feature of `ns`.
async fn caller_token(client: &Client, ns: &str) -> String {
    use eol_kind_tests::fixtures::{CALLER, service_account_with_access, token};
    service_account_with_access(client, ns, CALLER, Some(&[])).await;
    token(
        client,
        ns,
        CALLER,
        eol_core::runner_contract::DEFAULT_AUDIENCE,
    )
    .await
}

/// A call to the Feature's Service, then its `status.usage`: the run's model
/// use and the call's, summed by the serving pod from the namespace's Redis.
/// Returns the Service's address.
async fn feature_usage_counts(client: &Client, ns: &str, run_input: i64) -> String {
    let features: Api<Feature> = Api::namespaced(client.clone(), ns);
    wait_for(&features, "support-triage", TIMEOUT, |f| ready_with(f, 1)).await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    let ip = services
        .get("support-triage")
        .await
        .expect("the Feature's Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let input =
        serde_json::json!({"subject": "Refund", "body": "I was charged twice for one order."});
    let token = caller_token(client, ns).await;
    let started = std::time::Instant::now();
    loop {
        // Until kube-proxy routes a new Service, calls fail: retry for a while.
        let answer = reqwest::Client::new()
            .post(format!("http://{ip}/v1/operations/classify_ticket"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(120))
            .json(&input)
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == 200 => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(60),
                "the Service did not answer: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The operator reads the usage once a minute.
    let counted = |f: &Feature| {
        f.status
            .as_ref()
            .and_then(|s| s.usage.as_ref())
            .is_some_and(|u| u.usage.last_hour.input_tokens > run_input)
    };
    let feature = wait_for(
        &features,
        "support-triage",
        Duration::from_secs(150),
        counted,
    )
    .await;
    let usage = feature.status.and_then(|s| s.usage).expect("a usage").usage;
    let hour = &usage.last_hour;
    assert!(
        hour.requests >= 2,
        "the run's request and the call's: {usage:?}"
    );
    assert!(
        (hour.cost - priced(hour.input_tokens, hour.output_tokens)).abs()
            < 1e-9 * hour.requests as f64,
        "{usage:?}"
    );
    assert_eq!(usage.last_day, usage.last_hour, "all within the hour");
    let row = get_row("features", ns, "support-triage", true);
    let shown: f64 = row["COST-1D"].parse().expect("a number in COST-1D");
    assert!(shown > 0.0, "{row:?}");
    ip
}

/// A budget of one token an hour, already spent by the calls before: the
/// rolled-out pods refuse calls (429, `budget_exceeded`), and the Feature
/// shows `BudgetExceeded=True`, a Warning event and the BUDGET column.
async fn a_spent_budget_refuses_calls(client: &Client, ns: &str, ip: &str) {
    must(
        kubectl(
            &[
                "patch",
                "feature",
                "support-triage",
                "-n",
                ns,
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"budget":{"tokens":1,"per":"hour"}}}"#,
            ],
            None,
        ),
        "kubectl patch",
    );
    // The budget reaches pods through their environment: wait until the
    // rolled-out pod alone serves.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rolled_out = |d: &Deployment| {
        let budgeted = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| {
                p.containers[0]
                    .env
                    .iter()
                    .flatten()
                    .any(|e| e.name == "EOL_BUDGET")
            });
        let status = d.status.clone().unwrap_or_default();
        budgeted
            && status.observed_generation == d.metadata.generation
            && (
                status.replicas,
                status.updated_replicas,
                status.ready_replicas,
            ) == (Some(1), Some(1), Some(1))
    };
    wait_for(&deployments, "support-triage", TIMEOUT, rolled_out).await;
    // Tickets unlike each other and the ones before: a semantic-cache hit
    // costs nothing and is never refused, so each must ask the model.
    let tickets = [
        ("Login", "I cannot log in since yesterday."),
        ("Export", "How do I export my data to a spreadsheet?"),
        ("Dark mode", "Please add a dark theme to the dashboard."),
        ("Invoice", "My invoice shows the wrong company address."),
        (
            "Slow search",
            "Search takes a whole minute to show results.",
        ),
    ];
    let mut answered = Vec::new();
    let mut refused = None;
    let token = caller_token(client, ns).await;
    for (subject, body) in tickets {
        let r = reqwest::Client::new()
            .post(format!("http://{ip}/v1/operations/classify_ticket"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(120))
            .json(&serde_json::json!({"subject": subject, "body": body}))
            .send()
            .await
            .expect("the Feature's Service answers");
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
        answered.push(r.status());
    }
    // The first call on the budgeted pod spends past the one token and the
    // next is refused; a call or two before may still reach the old pod
    // while kube-proxy catches up with the rollout (the overshoot bound is
    // runner-image/tests/spend.rs's burst test).
    let refused = refused
        .unwrap_or_else(|| panic!("none of {} calls was refused: {answered:?}", tickets.len()));
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"]["kind"], "budget_exceeded", "{body}");
    let features: Api<Feature> = Api::namespaced(client.clone(), ns);
    let spent = |f: &Feature| {
        f.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "BudgetExceeded"))
            .is_some_and(|c| c.0 == "True")
    };
    let feature = wait_for(&features, "support-triage", Duration::from_secs(150), spent).await;
    let c = feature
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "BudgetExceeded"))
        .expect("the BudgetExceeded condition");
    assert!(
        c.2.contains("/1 tokens per hour (window hour:") && c.1 == "Exceeded",
        "{c:?}"
    );
    let row = get_row("features", ns, "support-triage", false);
    assert!(row["BUDGET"].ends_with("/1 tokens per hour"), "{row:?}");
    let events = must(
        kubectl(
            &[
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                "reason=BudgetExceeded",
                "-o",
                "name",
            ],
            None,
        ),
        "kubectl get events",
    );
    assert!(!events.trim().is_empty(), "no BudgetExceeded event");
}

/// True when every field of `git` is in `live` with the same value (`live`
/// may add fields: defaults, status, server metadata).
fn subset_of(
    git: &serde_json::Value,
    live: &serde_json::Value,
    path: &str,
    diffs: &mut Vec<String>,
) {
    match (git, live) {
        (serde_json::Value::Object(g), serde_json::Value::Object(l)) => {
            for (k, v) in g {
                match l.get(k) {
                    Some(lv) => subset_of(v, lv, &format!("{path}.{k}"), diffs),
                    None => diffs.push(format!("{path}.{k}: in git, not in the live object")),
                }
            }
        }
        _ if git == live => {}
        _ => diffs.push(format!("{path}: git {git} != live {live}")),
    }
}

/// Argo CD compares what is in git with the live object: a field the API server
/// rewrites (a normalised quantity, a defaulted value that differs from what
/// git says) would keep an Application OutOfSync forever. Every manifest in
/// `features/manifests` goes through a server-side dry-run apply and must come
/// back with each of its fields unchanged.
#[tokio::test]
async fn git_manifests_come_back_unchanged_from_a_server_side_apply() {
    let client = client().await;
    install_crds(&client).await;
    let ns = format!("eol-e2e-gitops-{}", rand::random::<u32>() % 100_000);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create the namespace");
    let dir = repo_root().join("features/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("features/manifests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "the Feature and FeatureRun manifests: {files:?}"
    );
    let mut problems = Vec::new();
    for file in &files {
        let path = file.to_string_lossy();
        // The manifest as JSON, converted offline.
        let git = must(
            kubectl(
                &["create", "--dry-run=client", "-o", "json", "-f", &path],
                None,
            ),
            "kubectl create --dry-run=client",
        );
        let live = must(
            kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--field-manager",
                    "argocd-controller",
                    "-n",
                    &ns,
                    "-o",
                    "json",
                    "-f",
                    &path,
                ],
                None,
            ),
            "kubectl apply --server-side --dry-run=server",
        );
        let git: serde_json::Value = serde_json::from_str(&git).expect("JSON");
        let live: serde_json::Value = serde_json::from_str(&live).expect("JSON");
        let mut diffs = Vec::new();
        subset_of(&git["spec"], &live["spec"], "spec", &mut diffs);
        for key in ["labels", "annotations"] {
            subset_of(
                &git["metadata"][key],
                &live["metadata"][key],
                key,
                &mut diffs,
            );
        }
        if !diffs.is_empty() {
            problems.push(format!("{path}:\n  {}", diffs.join("\n  ")));
        }
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn subset_of_reports_rewritten_and_missing_fields() {
    let git = serde_json::json!({"resources": {"cpu": "1000m"}, "replicas": 2, "gone": true});
    let live = serde_json::json!({"resources": {"cpu": "1"}, "replicas": 2, "extra": 1});
    let mut diffs = Vec::new();
    subset_of(&git, &live, "spec", &mut diffs);
    assert_eq!(
        diffs,
        [
            "spec.gone: in git, not in the live object",
            "spec.resources.cpu: git \"1000m\" != live \"1\"",
        ]
    );
}
