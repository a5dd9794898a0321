//! A real `helm install` whose operator pod runs a Feature and a FeatureRun end
//! to end, and a `helm uninstall` that leaves what the README says.

use crate::{
    FULLNAME, FlowControlObjects, RELEASE, chart_dir, in_namespaces, objects, one, template,
};
use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::cli::{helm, text};
use eol_kind_tests::{assert_succeeded, feature_ready, install_crds, run_finished, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::time::Duration;

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

/// The chart's PodMonitor for a release watching `ns` (rendered: the cluster has
/// no Prometheus Operator CRDs) selects the one serving pod of Feature
/// `feature` there, and nothing else the operator runs (its own pod, Redis,
/// FeatureRun pods); the pod has the port it names; the label it relabels into
/// `feature` holds the Feature's name; and scraping the pod as Prometheus
/// would, after a call, gives the call's metrics.
async fn scraped_by_the_pod_monitor(client: &Client, pods: &Api<Pod>, ns: &str, feature: &str) {
    let watch = format!("watchNamespace={ns}");
    let rendered = objects(&template(
        ns,
        &["--set", &watch, "--set", "podMonitor.enabled=true"],
    ));
    let monitor = &one(&rendered, "PodMonitor")["spec"];
    assert_eq!(monitor["namespaceSelector"], json!({"matchNames": [ns]}));
    let selector = &monitor["selector"];
    let mut terms: Vec<String> = selector["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in selector["matchExpressions"]
        .as_array()
        .expect("matchExpressions")
    {
        assert_eq!(e["operator"], "In");
        let values: Vec<&str> = e["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        terms.push(format!(
            "{} in ({})",
            e["key"].as_str().unwrap_or_default(),
            values.join(",")
        ));
    }
    let all = pods.list(&ListParams::default()).await.expect("list pods");
    let selected = pods
        .list(&ListParams::default().labels(&terms.join(",")))
        .await
        .expect("list pods");
    let names = |list: &[Pod]| -> Vec<String> {
        list.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(
        selected.items.len(),
        1,
        "the PodMonitor ({}) should select the Feature's one pod: {:?} of {:?}",
        terms.join(","),
        names(&selected.items),
        names(&all.items)
    );
    let pod = &selected.items[0];

    let endpoint = &monitor["podMetricsEndpoints"][0];
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| Some(p.name.as_deref().unwrap_or_default()) == endpoint["port"].as_str())
        .unwrap_or_else(|| panic!("the pod has no port {}", endpoint["port"]))
        .container_port;
    let relabel = &endpoint["relabelings"][0];
    assert_eq!(relabel["targetLabel"], "feature");
    let source = relabel["sourceLabels"][0].as_str().expect("a source label");
    // Prometheus' Kubernetes discovery: every pod label, sanitized.
    let relabeled = pod.metadata.labels.iter().flatten().find_map(|(k, v)| {
        let meta = format!(
            "__meta_kubernetes_pod_label_{}",
            k.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        (meta == source).then_some(v.as_str())
    });
    assert_eq!(
        relabeled,
        Some(feature),
        "{source} of {:?}",
        pod.metadata.labels
    );

    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the pod has an IP");
    let base = format!("http://{ip}:{port}");
    let http = reqwest::Client::new();
    // The Feature checks callers (the default): the pod reviews this token
    // with the chart's reviewer role, bound by the operator with the chart's RBAC.
    let caller = eol_kind_tests::fixtures::CALLER;
    eol_kind_tests::fixtures::service_account_with_access(client, ns, caller, Some(&[])).await;
    let token = eol_kind_tests::fixtures::token(
        client,
        ns,
        caller,
        eol_core::runner_contract::DEFAULT_AUDIENCE,
    )
    .await;
    let anonymous = http
        .post(format!("{base}/v1/operations/add_stock"))
        .json(&json!({"sku": "SCRAPE-1", "quantity": 1}))
        .send()
        .await
        .expect("call the pod");
    assert_eq!(anonymous.status(), 401, "a call without a token");
    let answer = http
        .post(format!("{base}/v1/operations/add_stock"))
        .bearer_auth(&token)
        .json(&json!({"sku": "SCRAPE-1", "quantity": 1}))
        .send()
        .await
        .expect("call the pod");
    assert_eq!(answer.status(), 200);
    let path = endpoint["path"].as_str().expect("a path");
    let scrape = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("scrape the pod")
        .text()
        .await
        .expect("the scrape's text");
    assert!(
        scrape.contains(
            r#"eol_execution_duration_seconds_count{operation="add_stock",phase="implementation"} 1"#
        ),
        "{scrape}"
    );
}

#[tokio::test]
async fn helm_install_runs_the_operator_and_uninstall_leaves_crds_and_redis_volumes() {
    in_namespaces("install", 1, |client, namespaces| async move {
        let ns = namespaces[0].clone();
        // The CRDs are shared with the other cluster tests: installed once, never by this release.
        install_crds(&client).await;

        // One namespace for everything: the release, the watched namespace, the
        // Lease and the Features, so nothing cluster-scoped is created but the
        // release's FlowSchema, priority level and runner ClusterRoles (named
        // after the namespace), and the operator's reviewer binding (owned by
        // the namespace).
        let flow = format!("{FULLNAME}-{ns}");
        let _cleanup = FlowControlObjects(flow.clone());
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

        let source = include_str!("../../../features/examples/inventory.eol");
        let tests = include_str!("../../../features/examples/inventory.test.eol");
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
        scraped_by_the_pod_monitor(&client, &pods, &ns, "inventory").await;
        assert!(
            !log.contains("forbidden") && !log.contains("Forbidden"),
            "the chart's RBAC refused a call:\n{log}"
        );
        // The runner egress policy lets serving pods reach the API server, at
        // the `kubernetes` Service's endpoints Helm looked up at install.
        let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
            Api::namespaced(client.clone(), "default");
        let api_ips: Vec<String> = endpoints
            .get("kubernetes")
            .await
            .expect("the kubernetes Endpoints")
            .subsets
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.addresses.unwrap_or_default())
            .map(|a| format!("{}/32", a.ip))
            .collect();
        let policy =
            Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(client.clone(), &ns)
                .get(&format!("{FULLNAME}-runner-egress"))
                .await
                .expect("the runner egress NetworkPolicy");
        let allowed: Vec<String> = policy
            .spec
            .and_then(|s| s.egress)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|rule| rule.to.unwrap_or_default())
            .filter_map(|peer| peer.ip_block.map(|b| b.cidr))
            .collect();
        assert!(
            !api_ips.is_empty() && api_ips.iter().all(|ip| allowed.contains(ip)),
            "the API server {api_ips:?} is not among the allowed {allowed:?}"
        );
        // The operator bound the namespace's reviewer account to the chart's
        // reviewer role (the call above was reviewed with it), owned by the Namespace.
        let reviewer = format!("{FULLNAME}-{ns}-runner-reviewer");
        let binding = Api::<ClusterRoleBinding>::all(client.clone())
            .get(&format!("{reviewer}:{ns}"))
            .await
            .expect("the operator's reviewer binding");
        assert_eq!(binding.role_ref.name, reviewer);
        assert_eq!(
            binding.metadata.owner_references.unwrap_or_default()[0].kind,
            "Namespace"
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
        let schemas: Api<FlowSchema> = Api::all(client.clone());
        assert!(schemas.get_opt(&flow).await.expect("get").is_none());
        let levels: Api<PriorityLevelConfiguration> = Api::all(client.clone());
        assert!(levels.get_opt(&flow).await.expect("get").is_none());
        // The chart's Roles and ClusterRoles go (the test's own caller Role stays).
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let left: Vec<String> = roles
            .list(&ListParams::default())
            .await
            .expect("list roles")
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .filter(|n| n != eol_kind_tests::fixtures::CALLER)
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
        for role in [&reviewer, &format!("{FULLNAME}-{ns}-runner-access")] {
            assert!(
                cluster_roles.get_opt(role).await.expect("get").is_none(),
                "{role}"
            );
        }
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
