//! Default and non-default renders validated by the real API server
//! (server-side dry-run, strict field validation, `restricted` PodSecurity) in
//! fresh `eol-chart-*` namespaces.

use crate::{
    CUSTOM_VALUES, FULLNAME, find, in_namespaces, kind, name, namespace_of, objects, one, template,
    values_file,
};
use eol_kind_tests::cli::{run, text, tools};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

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
                "FlowSchema",
                "PriorityLevelConfiguration",
                "Role",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ]),
            "no PDB, ServiceMonitor, PodMonitor, dashboard ConfigMap or NetworkPolicy by default"
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

        // Namespace-scoped permissions, but for the runner reviewer and the
        // right to bind it (rbac.rs checks their rules).
        let names = |kind_: &str| -> Vec<String> {
            find(&objects, kind_)
                .iter()
                .map(|o| name(o).to_owned())
                .collect()
        };
        assert_eq!(
            names("ClusterRole"),
            [
                format!("{FULLNAME}-{ns}-runner-reviewer"),
                format!("{FULLNAME}-{ns}-runner-access")
            ]
        );
        assert_eq!(
            names("ClusterRoleBinding"),
            [format!("{FULLNAME}-{ns}-runner-access")]
        );
        let deployment = one(&objects, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pdb = one(&objects, "PodDisruptionBudget");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );

        // The operator's own API Priority and Fairness settings.
        let schema = one(&objects, "FlowSchema");
        assert_eq!(schema["spec"]["matchingPrecedence"], 500);
        let limited = &one(&objects, "PriorityLevelConfiguration")["spec"]["limited"];
        assert_eq!(
            (
                &limited["nominalConcurrencyShares"],
                &limited["lendablePercent"],
                &limited["limitResponse"]["queuing"],
            ),
            (
                &json!(5),
                &json!(0),
                &json!({"queues": 8, "handSize": 2, "queueLengthLimit": 20}),
            )
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
            // The operator traces its reconciles, and tells runner pods to.
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://jaeger-collector.monitoring:4318",
            ),
            (
                "EOL_RUNNER_OTEL_ENDPOINT",
                "http://jaeger-collector.monitoring:4318",
            ),
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
            json!(["eol-feature", "eol-feature-candidate", "eol-run"])
        );
        let egress = spec["egress"].as_array().expect("egress rules");
        let ports: Vec<String> = egress
            .iter()
            .map(|rule| rule["ports"].to_string())
            .collect();
        assert_eq!(
            egress.len(),
            6,
            "DNS, shadow candidates, external Redis, model, embeddings, traces: {egress:#?}"
        );
        assert!(ports[0].contains("53") && ports[0].contains("UDP") && ports[0].contains("TCP"));
        assert_eq!(
            egress[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
            "eol-feature-candidate"
        );
        assert_eq!(
            egress[1]["ports"],
            json!([{"port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(egress[2]["to"][0]["ipBlock"]["cidr"], "192.168.10.0/24");
        assert_eq!(egress[2]["ports"][0]["port"], 6379);
        assert_eq!(egress[3]["to"][0]["ipBlock"]["cidr"], "10.20.0.0/16");
        assert_eq!(
            egress[3]["to"][1]["podSelector"]["matchLabels"]["app"],
            "vllm"
        );
        assert_eq!(egress[3]["ports"][0]["port"], 8080);
        assert_eq!(egress[4]["to"][0]["ipBlock"]["cidr"], "10.30.0.0/16");
        assert_eq!(
            egress[4]["ports"],
            json!([{"port": 8081, "protocol": "TCP"}])
        );
        assert_eq!(
            egress[5]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "monitoring"
        );
        assert_eq!(
            egress[5]["ports"],
            json!([{"port": 4318, "protocol": "TCP"}])
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

        // The PodMonitor, likewise structurally: Feature pods of the watched namespace.
        let pod_monitor = one(&objects, "PodMonitor");
        assert_eq!(namespace_of(pod_monitor), ns);
        assert_eq!(pod_monitor["metadata"]["labels"]["release"], "prometheus");
        assert_eq!(
            pod_monitor["spec"]["namespaceSelector"],
            json!({"matchNames": [watched]})
        );
        assert_eq!(
            pod_monitor["spec"]["podMetricsEndpoints"][0]["port"],
            "http"
        );
        // The dashboard's ConfigMap is an ordinary object: it goes to the API server.
        let dashboards = one(&objects, "ConfigMap");
        assert_eq!(name(dashboards), format!("{FULLNAME}-dashboards"));
        assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");

        // Everything else goes to the API server.
        let known: Vec<&Value> = objects
            .iter()
            .filter(|o| !matches!(kind(o), "ServiceMonitor" | "PodMonitor"))
            .collect();
        let warnings = dry_run(&known);
        assert!(!warnings.contains("PodSecurity"), "{warnings}");
    })
    .await;
}
