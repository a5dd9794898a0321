//! The chart rendered offline: `helm lint --strict`, the NOTES `helm install`
//! prints, `charts/eol/crds` equal to `crds/`, the values schema refusing
//! typos, wrong types and literal keys, and the optional PodMonitor and
//! Grafana dashboard. No cluster needed.

use crate::{
    CUSTOM_VALUES, RELEASE, chart_dir, find, helm_stdout, kind, name, namespace_of, objects, one,
    template, values_file,
};
use eol_kind_tests::cli::{helm, repo_root, text};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

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

/// The NOTES line about the Features' metrics.
fn feature_metrics_line(notes: &str) -> String {
    notes
        .lines()
        .find(|l| l.starts_with("Feature metrics:"))
        .unwrap_or_else(|| panic!("no Feature metrics line in:\n{notes}"))
        .to_owned()
}

#[test]
fn the_notes_say_where_feature_metrics_go() {
    let default = feature_metrics_line(&notes(&[]));
    assert!(default.contains("podMonitor.enabled=true"), "{default}");
    assert!(default.contains("dashboards.enabled=true"), "{default}");
    let on = feature_metrics_line(&notes(&[
        "--set",
        "podMonitor.enabled=true",
        "--set",
        "dashboards.enabled=true",
        "--set",
        "dashboards.namespace=monitoring",
    ]));
    assert!(on.contains("PodMonitor eol-system/eol-features"), "{on}");
    assert!(on.contains("ConfigMap monitoring/eol-dashboards"), "{on}");
}

/// The pod label of a Feature's runner pods that holds the Feature's name
/// (`app.kubernetes.io/instance`, operator/src/feature/children.rs `selector`),
/// as Prometheus' Kubernetes discovery names it.
const FEATURE_NAME_META_LABEL: &str = "__meta_kubernetes_pod_label_app_kubernetes_io_instance";

#[test]
fn the_pod_monitor_and_the_dashboard_are_off_by_default() {
    let rendered = objects(&template("eol-system", &[]));
    assert!(find(&rendered, "PodMonitor").is_empty());
    assert!(
        find(&rendered, "ConfigMap").is_empty(),
        "no dashboard ConfigMap by default"
    );
}

#[test]
fn the_web_dashboard_is_off_by_default_and_its_viewer_role_only_reads_the_proxy() {
    let operator_env = |rendered: &[Value]| -> Value {
        one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].clone()
    };
    let env_value = |env: &Value, key: &str| -> Option<String> {
        env.as_array()?
            .iter()
            .find(|e| e["name"] == key)
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    };
    let off = objects(&template("eol-system", &[]));
    assert_eq!(
        env_value(&operator_env(&off), "EOL_DASHBOARD").as_deref(),
        Some("false")
    );
    assert!(
        !off.iter().any(|o| name(o).ends_with("-dashboard-viewer")),
        "no viewer Role while the dashboard is off"
    );
    let on = objects(&template(
        "eol-system",
        &[
            "--set",
            "webDashboard.enabled=true",
            "--set",
            "webDashboard.sampleSeconds=5",
            "--set",
            "webDashboard.samples=720",
        ],
    ));
    let env = operator_env(&on);
    for (key, value) in [
        ("EOL_DASHBOARD", "true"),
        ("EOL_DASHBOARD_SAMPLE_SECONDS", "5"),
        ("EOL_DASHBOARD_SAMPLES", "720"),
    ] {
        assert_eq!(env_value(&env, key).as_deref(), Some(value), "{key}");
    }
    let role = on
        .iter()
        .find(|o| kind(o) == "Role" && name(o) == "eol-dashboard-viewer")
        .expect("the viewer Role");
    assert_eq!(namespace_of(role), "eol-system");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["services/proxy"],
                "resourceNames": ["eol-metrics", "eol-metrics:metrics"], "verbs": ["get"]}]),
        "get on the metrics Service's proxy, nothing else"
    );
    let no_role = objects(&template(
        "eol-system",
        &[
            "--set",
            "webDashboard.enabled=true",
            "--set",
            "webDashboard.viewerRole.create=false",
        ],
    ));
    assert!(
        !no_role
            .iter()
            .any(|o| name(o).ends_with("-dashboard-viewer"))
    );
}

#[test]
fn the_pod_monitor_scrapes_every_features_runner_pods_with_a_feature_label() {
    let rendered = objects(&template(
        "eol-system",
        &[
            "--set",
            "podMonitor.enabled=true",
            "--set",
            "podMonitor.labels.release=prometheus",
            "--set",
            "podMonitor.interval=15s",
            "--set",
            "podMonitor.scrapeTimeout=10s",
        ],
    ));
    let monitor = one(&rendered, "PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(name(monitor), "eol-features");
    assert_eq!(namespace_of(monitor), "eol-system");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let spec = &monitor["spec"];
    // The operator watches every namespace: so does the PodMonitor.
    assert_eq!(spec["namespaceSelector"], json!({"any": true}));
    // Serving pods and shadow/canary candidates, not FeatureRun pods (the labels
    // of operator/src/pod/mod.rs `labels`, feature/children.rs `COMPONENT` and
    // feature/shadow/mod.rs `CANDIDATE_COMPONENT`).
    assert_eq!(
        spec["selector"],
        json!({
            "matchLabels": {"app.kubernetes.io/managed-by": "eol-operator"},
            "matchExpressions": [{
                "key": "app.kubernetes.io/name",
                "operator": "In",
                "values": ["eol-feature", "eol-feature-candidate"],
            }],
        })
    );
    assert_eq!(
        FEATURE_NAME_META_LABEL,
        format!(
            "__meta_kubernetes_pod_label_{}",
            "app.kubernetes.io/instance".replace(['.', '/'], "_")
        )
    );
    // The runner's port (operator/src/pod/runner.rs HTTP_PORT_NAME) and path;
    // the Feature's name becomes the label the dashboard filters by.
    assert_eq!(
        spec["podMetricsEndpoints"],
        json!([{
            "port": "http",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "relabelings": [{
                "sourceLabels": [FEATURE_NAME_META_LABEL],
                "targetLabel": "feature",
            }],
        }])
    );

    // One namespace watched: only that one is scraped; an explicit selector wins.
    let watched = objects(&template(
        "eol-system",
        &[
            "--set",
            "podMonitor.enabled=true",
            "--set",
            "watchNamespace=team-a",
        ],
    ));
    assert_eq!(
        one(&watched, "PodMonitor")["spec"]["namespaceSelector"],
        json!({"matchNames": ["team-a"]})
    );
    let chosen = objects(&template(
        "eol-system",
        &[
            "--set",
            "podMonitor.enabled=true",
            "--set",
            "watchNamespace=team-a",
            "--set",
            "podMonitor.namespaceSelector.matchNames[0]=team-b",
        ],
    ));
    assert_eq!(
        one(&chosen, "PodMonitor")["spec"]["namespaceSelector"],
        json!({"matchNames": ["team-b"]})
    );
}

/// The dashboard as the chart holds it.
fn dashboard_file() -> Value {
    let path = chart_dir().join("dashboards/eol.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn the_dashboard_configmap_holds_the_dashboard_for_the_grafana_sidecar() {
    let rendered = objects(&template(
        "eol-system",
        &[
            "--set",
            "dashboards.enabled=true",
            "--set",
            "dashboards.annotations.grafana_folder=EOL",
        ],
    ));
    let map = one(&rendered, "ConfigMap");
    assert_eq!(name(map), "eol-dashboards");
    assert_eq!(namespace_of(map), "eol-system");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "EOL");
    let data = map["data"].as_object().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["eol.json"]);
    let shipped: Value = serde_json::from_str(data["eol.json"].as_str().expect("a string"))
        .expect("the ConfigMap holds JSON");
    assert!(
        shipped == dashboard_file(),
        "the ConfigMap's eol.json is not charts/eol/dashboards/eol.json"
    );

    // Grafana's namespace, and the sidecar's own label.
    let rendered = objects(&template(
        "eol-system",
        &[
            "--set",
            "dashboards.enabled=true",
            "--set",
            "dashboards.namespace=monitoring",
            "--set",
            "dashboards.labels.grafana_dashboard=null",
            "--set",
            "dashboards.labels.dashboards=eol",
        ],
    ));
    let map = one(&rendered, "ConfigMap");
    assert_eq!(namespace_of(map), "monitoring");
    let labels = map["metadata"]["labels"].as_object().expect("labels");
    assert_eq!(labels.get("dashboards"), Some(&json!("eol")));
    assert!(!labels.contains_key("grafana_dashboard"), "{labels:?}");
}

#[test]
fn the_dashboard_reads_the_chosen_prometheus_and_filters_by_namespace_and_feature() {
    let dashboard = dashboard_file();
    assert_eq!(dashboard["uid"], "eol-features");
    assert!(
        dashboard["schemaVersion"]
            .as_i64()
            .expect("a schemaVersion")
            >= 36
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |n: &str| {
        variables
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no variable {n}"))
    };
    let source = variable("datasource");
    assert_eq!(
        (&source["type"], &source["query"]),
        (&json!("datasource"), &json!("prometheus"))
    );
    for (n, label) in [("namespace", "namespace"), ("feature", "feature")] {
        let v = variable(n);
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], "${datasource}");
        let query = v["query"]["query"].as_str().expect("a query");
        assert!(
            query.starts_with("label_values(") && query.ends_with(&format!(", {label})")),
            "{query}"
        );
    }
    // The feature choices follow the namespace choice.
    assert!(
        variable("feature")["query"]["query"]
            .as_str()
            .is_some_and(|q| q.contains("namespace=~\"$namespace\"")),
    );

    // Every panel queries the chosen data source; ids are unique; panels sit in the grid.
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_i64().expect("an id")),
            "panel id of {title:?} repeated"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_i64().unwrap(), grid["w"].as_i64().unwrap());
        assert!(
            x >= 0 && w > 0 && x + w <= 24,
            "{title:?} leaves the grid: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title:?}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title:?} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title:?}");
            assert!(
                target["expr"].as_str().is_some_and(|e| e.contains("eol_")),
                "{title:?}"
            );
            queried += 1;
        }
    }
    assert!(queried >= 15, "{queried} queries");
    // What the issue asked for, by the metrics each needs.
    let exprs: String = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "sum by (operation, phase) (rate(eol_execution_duration_seconds_count",
        "histogram_quantile(0.95, sum by (phase, le) (rate(eol_execution_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (phase, le)",
        "eol_errors_total",
        "sum by (direction, model) (rate(eol_llm_tokens_total",
        "sum by (model) (rate(eol_llm_cost_total",
        "sum by (model) (increase(eol_llm_cost_total",
        "eol_llm_fallbacks_total",
        "sum by (type) (rate(eol_cache_hits_total{hit=\"true\"",
        "eol_shadow_comparisons_total{verdict=\"agree\"",
        "eol_canary_requests_total{outcome=\"routed\"",
        "eol_canary_requests_total{outcome=\"failed\"",
    ] {
        assert!(exprs.contains(needed), "no query has {needed:?}");
    }
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
        // A host without a scheme is no OTLP/HTTP base URL.
        ("otel.endpoint=jaeger:4318", "/otel/endpoint"),
        ("otel.runners=yes", "/otel/runners"),
        // After the built-in service-accounts FlowSchema: never matched.
        (
            "flowControl.matchingPrecedence=9000",
            "/flowControl/matchingPrecedence",
        ),
        (
            "flowControl.nominalConcurrencyShares=0",
            "/flowControl/nominalConcurrencyShares",
        ),
        ("flowControl.enable=false", "enable"),
        ("podMonitor.enable=true", "'enable'"),
        ("podMonitor.interval=soon", "/podMonitor/interval"),
        (
            "podMonitor.namespaceSelector.matchName[0]=team-a",
            "'matchName'",
        ),
        ("dashboards.enable=true", "'enable'"),
        ("dashboards.label.grafana_dashboard=1", "'label'"),
        ("dashboards.namespace=Monitoring", "/dashboards/namespace"),
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
