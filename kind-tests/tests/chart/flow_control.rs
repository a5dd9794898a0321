//! The operator's own API Priority and Fairness objects: rendered offline
//! (subject, precedence, rules, the toggle and the values), then installed
//! with the chart, where the API server classifies requests made as the
//! operator's ServiceAccount by them (the `X-Kubernetes-PF-*-UID` response
//! headers) and counts the operator pod's own requests under them
//! (`apiserver_flowcontrol_dispatched_requests_total`).

use crate::{
    FULLNAME, FlowControlObjects, RELEASE, chart_dir, find, in_namespaces, kind, name, objects,
    one, template,
};
use eol_core::crd::Feature;
use eol_kind_tests::cli::{helm, text};
use eol_kind_tests::fixtures::INVENTORY;
use eol_kind_tests::{client_as, condition, install_crds, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use kube::api::{ListParams, PostParams};
use kube::client::Body;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::time::{Duration, Instant};

/// The precedence of the built-in FlowSchema `service-accounts`, which would
/// otherwise classify the operator's requests (into `workload-low`).
const SERVICE_ACCOUNTS_PRECEDENCE: i64 = 9000;

/// The name the chart gives both objects of release [`RELEASE`] in `namespace`.
fn flow_name(namespace: &str) -> String {
    format!("{FULLNAME}-{namespace}")
}

#[test]
fn the_flow_schema_matches_the_operators_service_account_before_the_built_in_schemas() {
    let rendered = objects(&template("eol-system", &[]));
    let level = one(&rendered, "PriorityLevelConfiguration");
    let schema = one(&rendered, "FlowSchema");
    assert_eq!(name(level), "eol-eol-system");
    assert_eq!(name(schema), "eol-eol-system");
    assert_eq!(
        level["spec"],
        json!({"type": "Limited", "limited": {
            "nominalConcurrencyShares": 20, "lendablePercent": 50,
            "limitResponse": {"type": "Queue",
                "queuing": {"queues": 16, "handSize": 4, "queueLengthLimit": 50}}}})
    );
    let spec = &schema["spec"];
    assert_eq!(spec["priorityLevelConfiguration"]["name"], name(level));
    let precedence = spec["matchingPrecedence"].as_i64().expect("a precedence");
    assert!(
        precedence < SERVICE_ACCOUNTS_PRECEDENCE,
        "{precedence}: the built-in service-accounts schema (9000) would match first"
    );
    assert_eq!(spec["distinguisherMethod"], json!({"type": "ByUser"}));
    let account = one(&rendered, "ServiceAccount");
    assert_eq!(
        spec["rules"],
        json!([{
            "subjects": [{"kind": "ServiceAccount", "serviceAccount":
                {"name": name(account), "namespace": "eol-system"}}],
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                "clusterScope": true, "namespaces": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        }])
    );

    // A ServiceAccount the chart does not create: the subject follows it.
    let rendered = objects(&template(
        "ops",
        &[
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.name=eol-operator",
            "--set",
            "flowControl.nominalConcurrencyShares=5",
            "--set",
            "flowControl.matchingPrecedence=8999",
            "--set",
            "flowControl.queuing.queueLengthLimit=10",
        ],
    ));
    let schema = one(&rendered, "FlowSchema");
    assert_eq!(name(schema), "eol-ops");
    assert_eq!(
        schema["spec"]["rules"][0]["subjects"],
        json!([{"kind": "ServiceAccount", "serviceAccount": {"name": "eol-operator", "namespace": "ops"}}])
    );
    assert_eq!(schema["spec"]["matchingPrecedence"], 8999);
    let limited = &one(&rendered, "PriorityLevelConfiguration")["spec"]["limited"];
    assert_eq!(limited["nominalConcurrencyShares"], 5);
    assert_eq!(limited["limitResponse"]["queuing"]["queueLengthLimit"], 10);

    // Off: neither object.
    let rendered = objects(&template(
        "eol-system",
        &["--set", "flowControl.enabled=false"],
    ));
    assert!(
        rendered
            .iter()
            .all(|o| !matches!(kind(o), "FlowSchema" | "PriorityLevelConfiguration")),
        "flowControl.enabled=false still renders APF objects"
    );
    assert_eq!(find(&rendered, "Deployment").len(), 1);
}

/// `flow_schema` and `priority_level` of one request `path` made by `client`:
/// the uids the API server puts in its response headers.
async fn classified(client: &Client, path: &str) -> (String, String, u16) {
    let request = http::Request::get(path)
        .body(Body::empty())
        .expect("a request");
    let response = client.send(request).await.expect("an answer");
    let header = |h: &str| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (
        header("X-Kubernetes-PF-FlowSchema-UID"),
        header("X-Kubernetes-PF-PriorityLevel-UID"),
        response.status().as_u16(),
    )
}

/// The API server's `apiserver_flowcontrol_dispatched_requests_total` of
/// `flow_schema`, summed over its series (by priority level).
async fn dispatched(admin: &Client, flow_schema: &str) -> f64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let metrics = admin.request_text(request).await.expect("/metrics");
    let label = format!("flow_schema=\"{flow_schema}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_flowcontrol_dispatched_requests_total{"))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator's own count of its API requests (`eol_operator_api_requests_total`,
/// all methods), from its `/metrics` at `pod_ip` (pod addresses are routed
/// from the node the tests run on).
async fn requests_counted(pod_ip: &str) -> f64 {
    let url = format!("http://{pod_ip}:8080/metrics");
    let metrics = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("the metrics text");
    metrics
        .lines()
        .filter(|l| l.starts_with("eol_operator_api_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_operators_requests_are_classified_by_its_flow_schema() {
    in_namespaces("flow", 1, |admin, namespaces| async move {
        let ns = namespaces[0].clone();
        install_crds(&admin).await;
        let flow = flow_name(&ns);
        // Cluster-scoped: deleting the namespace would leave them.
        let _cleanup = FlowControlObjects(flow.clone());
        let chart = chart_dir();
        let watch = format!("watchNamespace={ns}");
        let install = helm(&[
            "install",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            &ns,
            "--skip-crds",
            "--set",
            &watch,
            "--wait",
            "--timeout",
            "180s",
        ]);
        assert!(
            install.status.success(),
            "helm install failed (the images must be loaded: kind-tests/cluster.sh load-image project): {}",
            text(&install.stderr)
        );

        // Both objects, and the schema pointing at an existing level.
        let schemas: Api<FlowSchema> = Api::all(admin.clone());
        let levels: Api<PriorityLevelConfiguration> = Api::all(admin.clone());
        let schema = wait_for(&schemas, &flow, Duration::from_secs(30), |s| {
            s.status.as_ref().is_some_and(|st| {
                st.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_.as_deref() == Some("Dangling") && c.status.as_deref() == Some("False"))
            })
        })
        .await;
        let level = levels.get(&flow).await.expect("the priority level");
        let (schema_uid, level_uid) = (
            schema.uid().expect("a uid"),
            level.uid().expect("a uid"),
        );

        // As the operator's ServiceAccount: a call it makes (list Features),
        // one its RBAC refuses (list Secrets; classification comes before
        // authorization) and a non-resource URL all land in the operator's
        // FlowSchema and priority level.
        let user = format!("system:serviceaccount:{ns}:{FULLNAME}");
        let operator = client_as(&user).await;
        for path in [
            format!("/apis/eol.dev/v1alpha1/namespaces/{ns}/features"),
            format!("/api/v1/namespaces/{ns}/secrets"),
            "/version".to_owned(),
        ] {
            let (fs, pl, status) = classified(&operator, &path).await;
            assert_eq!(
                (fs.as_str(), pl.as_str()),
                (schema_uid.as_str(), level_uid.as_str()),
                "GET {path} as {user} (HTTP {status}) was not classified by {flow}"
            );
            eprintln!("GET {path} as {user}: HTTP {status}, FlowSchema {fs}, PriorityLevel {pl}");
        }
        // The admin (system:masters) is not: it stays exempt.
        let (fs, _, _) = classified(&admin, &format!("/api/v1/namespaces/{ns}/pods")).await;
        assert!(!fs.is_empty() && fs != schema_uid, "the admin's request: {fs}");

        // The operator pod's own requests: nobody else is that ServiceAccount
        // now, so what the API server dispatches under the schema from here
        // on is the operator's. It leads, then reconciles a new Feature.
        let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
        wait_for(&leases, "eol-operator", Duration::from_secs(60), |l| {
            l.spec.as_ref().and_then(|s| s.holder_identity.as_ref()).is_some()
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
        let operator_pod = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .expect("list operator pods")
            .items
            .into_iter()
            .next()
            .expect("the operator pod");
        let pod_ip = operator_pod
            .status
            .and_then(|s| s.pod_ip)
            .expect("the operator pod's IP");
        let before = dispatched(&admin, &flow).await;
        let counted_before = requests_counted(&pod_ip).await;
        let features: Api<Feature> = Api::namespaced(admin.clone(), &ns);
        let feature: Feature = serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory"},
            "spec": {"source": {"inline": INVENTORY}, "replicas": 0}
        }))
        .expect("a Feature");
        let start = Instant::now();
        features
            .create(&PostParams::default(), &feature)
            .await
            .expect("create the Feature");
        wait_for(&features, "inventory", Duration::from_secs(120), |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some()
        })
        .await;
        let after = dispatched(&admin, &flow).await;
        let counted_after = requests_counted(&pod_ip).await;
        eprintln!(
            "apiserver_flowcontrol_dispatched_requests_total{{flow_schema=\"{flow}\"}}: {before} -> {after} \
             while the operator reconciled the Feature ({:?}); the operator's own \
             eol_operator_api_requests_total: {counted_before} -> {counted_after}",
            start.elapsed()
        );
        // At least the reconcile's reads and writes before the status: the
        // Redis Secret, Service and StatefulSet (each read, then created),
        // and the status patch.
        assert!(
            after - before >= 7.0,
            "the operator's requests were not dispatched under {flow}: {before} -> {after}"
        );

        let uninstall = helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"]);
        assert!(uninstall.status.success(), "{}", text(&uninstall.stderr));
        assert!(schemas.get_opt(&flow).await.expect("get").is_none());
        assert!(levels.get_opt(&flow).await.expect("get").is_none());
    })
    .await;
}
