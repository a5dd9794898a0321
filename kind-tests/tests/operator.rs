//! The operator on the real local cluster: Features become served Deployments,
//! FeatureRuns become runner pods (one per attempt) with Tekton-style status, phase switches are gated by
//! the tests. Each test runs in its own namespace with its own operator.
#![allow(clippy::unwrap_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, call, feature, feature_run, first_answer,
};
use eol_kind_tests::{
    TestEnv, assert_succeeded, condition, feature_ready, in_namespace, run_finished, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use std::time::Duration;

/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn the_crds_are_installed_with_their_columns() {
    in_namespace("crds", |env| async move {
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(env.client.clone());
        let fr = crds.get("featureruns.eol.dev").await.unwrap();
        let names = fr.spec.names.clone();
        assert_eq!(names.short_names, Some(vec!["fr".to_owned()]));
        assert_eq!(names.categories, Some(vec!["eol".to_owned()]));
        let columns: Vec<String> = fr.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(columns, [
                "Feature", "Phase", "Status", "Passed", "Failed", "Duration", "Tokens", "Cost", "Age"
            ]);
        // CEL rules are enforced by the API server: operation and tests together are refused.
        let both = feature_run("both", serde_json::json!({"featureRef": "f", "tests": true, "operation": "x"}));
        let err = env
            .api::<FeatureRun>()
            .create(&Default::default(), &both)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("set either operation"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_featurerun_of_an_implementation_feature_succeeds_with_its_summary() {
    in_namespace("run", |env| async move {
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 0}))).await;
        env.create(&feature_run("restock", serde_json::json!({
            "featureRef": "inventory", "operation": "add_stock", "input": {"sku": "AB-123", "quantity": 3}
        })))
        .await;
        env.create(&feature_run("tests", serde_json::json!({"featureRef": "inventory", "tests": true}))).await;
        let runs = env.api::<FeatureRun>();
        let done = wait_for(&runs, "restock", READY_TIMEOUT, run_finished).await;
        let status = assert_succeeded(done, str::to_owned);
        let summary = status.summary.unwrap();
        assert_eq!(summary.output, Some(serde_json::json!({"sku": "AB-123", "level": 3})));
        assert!(summary.duration.is_some());
        assert_eq!(summary.result_key.as_deref(), Some("eol:inventory:runs:restock"));
        assert_eq!(status.phase, Some(eol_core::Phase::Implementation));
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert_eq!(status.pod_name.as_deref(), Some("restock-1"));

        let tests = wait_for(&runs, "tests", READY_TIMEOUT, run_finished).await.status.unwrap();
        let summary = tests.summary.unwrap();
        assert_eq!(condition(&tests.conditions, "Succeeded").unwrap().1, "Succeeded");
        assert_eq!((summary.tests_passed, summary.tests_failed), (Some(3), Some(0)));
        // Exactly one pod per run, created directly (no Job), reading the
        // Feature's own ConfigMap (no ConfigMap per run).
        let pods = env
            .api::<Pod>()
            .list(&ListParams::default().labels("app.kubernetes.io/name=eol-run"))
            .await
            .unwrap();
        let mut names: Vec<String> = pods.items.iter().map(|p| p.name_any()).collect();
        names.sort();
        assert_eq!(names, ["restock-1", "tests-1"]);
        assert!(pods.items.iter().all(|p| p.owner_references()[0].kind == "FeatureRun"));
        assert!(env.api::<Job>().list(&ListParams::default()).await.unwrap().items.is_empty());
        let cms = env.api::<ConfigMap>().list(&ListParams::default()).await.unwrap();
        assert!(
            cms.items.iter().all(|c| c.name_any() != "restock" && c.name_any() != "tests"),
            "no ConfigMap per run"
        );
        // The managed Redis runs with a persistent volume and a generated password.
        let redis = env.api::<StatefulSet>().get("eol-redis").await.unwrap();
        assert_eq!(redis.spec.unwrap().volume_claim_templates.unwrap().len(), 1);
    })
    .await;
}

/// The runner pods of `run`, by name.
async fn run_pods(env: &TestEnv, run: &str) -> Vec<String> {
    let list = env
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name=eol-run,app.kubernetes.io/instance={run}"
        )))
        .await
        .unwrap();
    let mut names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn retries_timeouts_cancel_ttl_and_history_limits_hold_with_pods_made_directly() {
    in_namespace("semantics", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "replicas": 0, "successfulRunsHistoryLimit": 1}),
        ))
        .await;
        let runs = env.api::<FeatureRun>();
        // An input the operation's schema refuses fails every attempt: one pod each.
        env.create(&feature_run("bad", serde_json::json!({
            "featureRef": "inventory", "operation": "stock_level", "input": {"sku": 5}, "retries": 1
        })))
        .await;
        // Cancelled while its pod starts.
        env.create(&feature_run("stopped", serde_json::json!({
            "featureRef": "inventory", "operation": "stock_level", "input": {"sku": "A"}
        })))
        .await;
        // A second is not enough to start a runner.
        env.create(&feature_run("late", serde_json::json!({
            "featureRef": "inventory", "operation": "stock_level", "input": {"sku": "A"}, "timeoutSeconds": 1
        })))
        .await;
        wait_for(&env.api::<Pod>(), "stopped-1", READY_TIMEOUT, |_| true).await;
        runs.patch("stopped", &Default::default(), &kube::api::Patch::Merge(serde_json::json!({"spec": {"cancel": true}})))
            .await
            .unwrap();

        let bad = wait_for(&runs, "bad", READY_TIMEOUT, run_finished).await.status.unwrap();
        let (status, reason, message) = condition(&bad.conditions, "Succeeded").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Failed"), "{message}");
        assert!(message.contains("sku"), "the runner's error names the field: {message}");
        assert_eq!(bad.pod_name.as_deref(), Some("bad-2"));
        assert_eq!(run_pods(&env, "bad").await, ["bad-1", "bad-2"], "one pod per attempt, retries + 1");

        let stopped = wait_for(&runs, "stopped", READY_TIMEOUT, run_finished).await.status.unwrap();
        assert_eq!(condition(&stopped.conditions, "Succeeded").unwrap().1, "Cancelled");
        let start = std::time::Instant::now();
        while !run_pods(&env, "stopped").await.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(60), "the cancelled run's pod stays");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let late = wait_for(&runs, "late", READY_TIMEOUT, run_finished).await.status.unwrap();
        let (_, reason, message) = condition(&late.conditions, "Succeeded").unwrap();
        assert_eq!(reason, "TimedOut", "{message}");
        assert!(message.contains("1s"), "{message}");

        // TTL: the pods go, the run stays.
        env.create(&feature_run("brief", serde_json::json!({
            "featureRef": "inventory", "operation": "stock_level", "input": {"sku": "A"}, "ttlSecondsAfterFinished": 1
        })))
        .await;
        let brief = wait_for(&runs, "brief", READY_TIMEOUT, run_finished).await;
        assert_succeeded(brief, str::to_owned);
        let start = std::time::Instant::now();
        while !run_pods(&env, "brief").await.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(60), "the finished run's pod outlived its TTL");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(runs.get_opt("brief").await.unwrap().is_some(), "the run itself stays");

        // History limit 1 for successes: after one more success only the newest is left
        // ("brief" was the only success so far).
        env.create(&feature_run("newest", serde_json::json!({
            "featureRef": "inventory", "operation": "stock_level", "input": {"sku": "A"}
        })))
        .await;
        let newest = wait_for(&runs, "newest", READY_TIMEOUT, run_finished).await;
        assert_succeeded(newest, str::to_owned);
        let start = std::time::Instant::now();
        loop {
            let mut left: Vec<String> = runs.list(&ListParams::default()).await.unwrap().items.iter().map(|r| r.name_any()).collect();
            left.sort();
            // Failures have no limit here: they all stay.
            if left == ["bad", "late", "newest", "stopped"] {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "runs left: {left:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_feature_becomes_ready_with_two_replicas_answering_through_its_service() {
    in_namespace("ready", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 2}),
        ))
        .await;
        let f = wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        let status = f.status.unwrap();
        assert_eq!(status.phase, Some(eol_core::Phase::Implementation));
        assert_eq!(
            status.operation_phases.get("reserve").map(String::as_str),
            Some("implementation")
        );
        for c in ["SpecValid", "ModelConfigured", "PhaseSwitch"] {
            assert_eq!(condition(&status.conditions, c).unwrap().0, "True", "{c}");
        }
        // kube-proxy programs the new endpoints a moment after the pods are Ready.
        let resp = first_answer(
            &env,
            "inventory",
            "add_stock",
            serde_json::json!({"sku": "AB-1", "quantity": 4}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["level"], 4, "{body}");
        let bad = call(
            &env,
            "inventory",
            "add_stock",
            serde_json::json!({"sku": "x"}),
        )
        .await
        .unwrap();
        assert_eq!(
            bad.status(),
            422,
            "input not matching the schema is refused"
        );
    })
    .await;
}

#[tokio::test]
async fn an_invalid_source_is_reported_and_nothing_is_created() {
    in_namespace("invalid", |env| async move {
        let broken = INVENTORY.replace("phase: implementation", "phase: sometimes");
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": broken}}),
        ))
        .await;
        let (status, reason, message) = spec_valid(&env, "inventory").await;
        assert_eq!((status.as_str(), reason.as_str()), ("False", "ParseError"));
        assert!(
            message.contains("spec.source.inline:5:"),
            "located: {message}"
        );
        assert!(message.contains("sometimes"), "{message}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        nothing_created(&env).await;
    })
    .await;
}

/// The Feature's `SpecValid` condition, once it has one.
async fn spec_valid(env: &TestEnv, name: &str) -> (String, String, String) {
    let f = wait_for(&env.api::<Feature>(), name, Duration::from_secs(60), |f| {
        f.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "SpecValid"))
            .is_some()
    })
    .await;
    condition(&f.status.unwrap().conditions, "SpecValid").unwrap()
}

/// Asserts that the operator created nothing in the test's namespace.
async fn nothing_created(env: &TestEnv) {
    assert!(
        env.api::<Deployment>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        env.api::<Service>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let cms = env
        .api::<ConfigMap>()
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=eol-operator"))
        .await
        .unwrap();
    assert!(
        cms.items.is_empty(),
        "{:?}",
        cms.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn python_the_sandbox_refuses_makes_the_spec_invalid_and_creates_nothing() {
    in_namespace("badcode", |env| async move {
        // A forbidden import in add_stock, a syntax error in stock_level: both
        // passed the operator before and crash-looped the pods with an empty
        // termination message.
        let bad = INVENTORY
            .replacen(
                "def add_stock(sku, quantity):",
                "import os\n\ndef add_stock(sku, quantity):",
                1,
            )
            .replacen("def stock_level(sku):", "def stock_level(sku)", 1);
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": bad}, "tests": INVENTORY_TESTS}),
        ))
        .await;
        let (status, reason, message) = spec_valid(&env, "inventory").await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "CodeInvalid"),
            "{message}"
        );
        // The same located errors `eol check` gives, in the Feature's terms.
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 2, "{message}");
        assert!(
            lines[0].starts_with("Feature eol-it-badcode-")
                && lines[0].contains(
                    " spec.source.inline:38:8: operation 'add_stock': import of 'os' is not allowed"
                ),
            "{message}"
        );
        assert!(
            lines[1].contains(":67:") && lines[1].contains("operation 'stock_level': syntax error"),
            "{message}"
        );
        let events = eol_kind_tests::fixtures::events_about(&env, "Feature", "inventory").await;
        assert!(events.iter().any(|(r, _)| r == "CodeInvalid"), "{events:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        nothing_created(&env).await;
    })
    .await;
}

#[tokio::test]
async fn runner_pods_carry_the_feature_resources_else_the_operator_default() {
    in_namespace("resources", |env| async move {
        let own = serde_json::json!({"requests": {"cpu": "50m", "memory": "300Mi"}, "limits": {"memory": "900Mi"}});
        env.create(&feature("sized", serde_json::json!({"source": {"inline": INVENTORY}, "resources": own, "replicas": 1})))
            .await;
        env.create(&feature("plain", serde_json::json!({"source": {"inline": INVENTORY.replace("name: inventory", "name: plain")}, "replicas": 1})))
            .await;
        env.create(&feature_run("sized-run", serde_json::json!({"featureRef": "sized", "operation": "stock_level", "input": {"sku": "AB-1"}})))
            .await;
        let runs = env.api::<FeatureRun>();
        let done = wait_for(&runs, "sized-run", READY_TIMEOUT, run_finished).await;
        let run_pod = assert_succeeded(done, str::to_owned).pod_name.unwrap();
        for name in ["sized", "plain"] {
            wait_for(&env.api::<Feature>(), name, READY_TIMEOUT, feature_ready).await;
        }
        // What the kubelet runs: the pods as the API server has them.
        let pods = env.api::<k8s_openapi::api::core::v1::Pod>();
        let resources_of = |pod: k8s_openapi::api::core::v1::Pod| {
            serde_json::to_value(pod.spec.unwrap().containers[0].resources.clone()).unwrap()
        };
        let serving = |feature: &'static str| {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={feature}")))
                    .await
                    .unwrap();
                assert_eq!(list.items.len(), 1, "one pod of {feature}");
                list.items.into_iter().next().unwrap()
            }
        };
        assert_eq!(resources_of(serving("sized").await), own, "the Feature's spec.resources");
        assert_eq!(resources_of(pods.get(&run_pod).await.unwrap()), own, "its FeatureRun's pod too");
        // The operator's default (--runner-resources): requests only.
        assert_eq!(
            resources_of(serving("plain").await),
            serde_json::json!({"requests": {"cpu": "100m", "memory": "256Mi"}})
        );
    })
    .await;
}

#[tokio::test]
async fn deleting_a_feature_removes_its_children() {
    in_namespace("delete", |env| async move {
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": INVENTORY}, "replicas": 1}))).await;
        wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, feature_ready).await;
        env.api::<Feature>().delete("inventory", &DeleteParams::foreground()).await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let deployments = env.api::<Deployment>().list(&ListParams::default()).await.unwrap().items.len();
            let services = env.api::<Service>().list(&ListParams::default()).await.unwrap().items.len();
            let cms = env.api::<ConfigMap>().list(&ListParams::default().labels("app.kubernetes.io/name=eol-feature")).await.unwrap().items.len();
            let redis = env.api::<StatefulSet>().list(&ListParams::default()).await.unwrap().items.len();
            if deployments + services + cms + redis == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "left behind: {deployments} Deployments, {services} Services, {cms} ConfigMaps, {redis} StatefulSets"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn killing_the_operator_mid_burst_leaves_exactly_one_pod_per_run() {
    in_namespace("burst", |env| async move {
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": INVENTORY}, "replicas": 0}))).await;
        let runs = env.api::<FeatureRun>();
        for i in 0..50 {
            env.create(&feature_run(&format!("burst-{i:02}"), serde_json::json!({
                "featureRef": "inventory", "operation": "add_stock", "input": {"sku": "BURST-1", "quantity": 1}
            })))
            .await;
            if i == 20 {
                // Mid-burst, mid-reconcile: the operator dies without warning.
                env.operator.lock().await.kill().await;
            }
            if i == 30 {
                env.operator.lock().await.restart();
            }
        }
        let start = std::time::Instant::now();
        loop {
            let list = runs.list(&ListParams::default()).await.unwrap();
            let finished = list.items.iter().filter(|r| run_finished(r)).count();
            if finished == 50 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(420), "{finished}/50 runs finished");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let list = runs.list(&ListParams::default()).await.unwrap();
        let succeeded = list
            .items
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| condition(&s.conditions, "Succeeded")).is_some_and(|c| c.0 == "True"))
            .count();
        assert_eq!(succeeded, 50);
        let pods = env
            .api::<Pod>()
            .list(&ListParams::default().labels("app.kubernetes.io/name=eol-run"))
            .await
            .unwrap();
        assert_eq!(pods.items.len(), 50, "exactly one pod per FeatureRun");
        // Every run added one unit: nothing ran twice.
        let mut levels: Vec<i64> = list
            .items
            .iter()
            .filter_map(|r| r.status.as_ref()?.summary.as_ref()?.output.as_ref()?["level"].as_i64())
            .collect();
        levels.sort();
        assert_eq!(levels, (1..=50).collect::<Vec<i64>>(), "each run incremented once");
    })
    .await;
}

#[tokio::test]
async fn a_second_replica_waits_for_the_lease_and_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    in_namespace("leader", |env| async move {
        let leases = env.api::<Lease>();
        let holder = |l: &Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        };
        let first_pid = env.operator.lock().await.pid().unwrap();
        let first = format!("eol-operator-{first_pid}");
        wait_for(&leases, "eol-operator", Duration::from_secs(30), |l| {
            holder(l) == first
        })
        .await;

        let log = std::env::temp_dir().join(format!("{}-second.log", env.namespace));
        let mut second = eol_kind_tests::Operator::start(
            &env.namespace,
            log.clone(),
            &[("EOL_OPERATOR_LISTEN", "127.0.0.1:18092")],
        );
        let second_id = format!("eol-operator-{}", second.pid().unwrap());
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            holder(&leases.get("eol-operator").await.unwrap()),
            first,
            "one leader at a time"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("waiting for the leader Lease") && !text.contains("leading"),
            "{text}"
        );

        // The leader dies without releasing the Lease: the standby takes over once it expires.
        env.operator.lock().await.kill().await;
        wait_for(&leases, "eol-operator", Duration::from_secs(60), |l| {
            holder(l) == second_id
        })
        .await;
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "replicas": 0}),
        ))
        .await;
        env.create(&feature_run(
            "after",
            serde_json::json!({
                "featureRef": "inventory", "operation": "stock_level", "input": {"sku": "AB-1"}
            }),
        ))
        .await;
        let done = wait_for(
            &env.api::<FeatureRun>(),
            "after",
            READY_TIMEOUT,
            run_finished,
        )
        .await;
        assert_eq!(
            condition(&done.status.unwrap().conditions, "Succeeded")
                .unwrap()
                .1,
            "Succeeded"
        );

        // The new leader's /healthz and /metrics.
        let health = reqwest::get("http://127.0.0.1:18092/healthz")
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let metrics = reqwest::get("http://127.0.0.1:18092/metrics")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for series in [
            "eol_operator_reconciles_total{controller=\"featurerun\"}",
            "eol_operator_reconciles_total{controller=\"feature\"}",
            "eol_operator_reconcile_duration_seconds_count{controller=\"featurerun\"}",
            "eol_operator_api_requests_total{method=\"POST\",resource=\"pods\"}",
            "eol_operator_api_requests_total{method=\"PATCH\",resource=\"featureruns/status\"}",
        ] {
            assert!(
                metrics.contains(series),
                "{series} missing from:\n{metrics}"
            );
        }
        second.kill().await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_model_secret_is_reported_and_recovers_when_it_appears() {
    in_namespace("secret", |env| async move {
        // Prototyping needs the model: its API key is in a Secret that does not exist yet.
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "phase": "prototyping", "replicas": 0,
                "model": {"baseUrl": "http://llm.invalid/v1", "name": "m",
                          "apiKeySecretRef": {"name": "llm", "key": "api-key"}}}),
        ))
        .await;
        let features = env.api::<Feature>();
        let f = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "ModelConfigured"))
                .is_some_and(|c| c.0 == "False")
        })
        .await;
        let (_, reason, message) =
            condition(&f.status.unwrap().conditions, "ModelConfigured").unwrap();
        assert_eq!(reason, "SecretNotFound");
        assert!(message.contains("llm"), "{message}");
        // Nothing rolls out without the key.
        assert!(
            env.api::<Deployment>()
                .get_opt("inventory")
                .await
                .unwrap()
                .is_none()
        );
        // The Secret appears: the operator picks it up by itself.
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "llm"}, "stringData": {"api-key": "sk-test"}
            }))
            .unwrap();
        env.create(&secret).await;
        wait_for(&features, "inventory", Duration::from_secs(60), |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "ModelConfigured"))
                .is_some_and(|c| c.0 == "True")
        })
        .await;
        let deployment = wait_for(
            &env.api::<Deployment>(),
            "inventory",
            Duration::from_secs(30),
            |_| true,
        )
        .await;
        // The key reaches the pods only as a mounted Secret, never as a value.
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("sk-test"), "{text}");
        assert!(text.contains("\"secretName\":\"llm\""), "{text}");
    })
    .await;
}
