//! The operator on the real local cluster: Features become served Deployments,
//! FeatureRuns become Jobs with Tekton-style status, phase switches are gated by
//! the tests. Each test runs in its own namespace with its own operator.
#![allow(clippy::unwrap_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::{
    TestEnv, assert_succeeded, condition, feature_ready, in_namespace, run_finished, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const SOURCE: &str = include_str!("../../features/examples/inventory.eol");
const TESTS: &str = include_str!("../../features/examples/inventory.test.eol");
/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

fn feature(name: &str, spec: serde_json::Value) -> Feature {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn feature_run(name: &str, spec: serde_json::Value) -> FeatureRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// POSTs to the Feature's Service (its ClusterIP, reachable from the node).
async fn call(
    env: &TestEnv,
    service: &str,
    op: &str,
    input: serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    let svc = env.api::<Service>().get(service).await.unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    reqwest::Client::new()
        .post(format!("http://{ip}/v1/operations/{op}"))
        .timeout(Duration::from_secs(10))
        .json(&input)
        .send()
        .await
}

/// The Service's first successful answer. Until kube-proxy has programmed a
/// new Service, its address is not routed to the pods at all: connections
/// are refused, or leave through the default route (where this machine's
/// egress proxy answered 404). So: retry, for a while, anything but a 200.
async fn first_answer(env: &TestEnv, op: &str, input: serde_json::Value) -> reqwest::Response {
    let start = std::time::Instant::now();
    loop {
        let last = match call(env, "inventory", op, input.clone()).await {
            Ok(resp) if resp.status() == 200 => return resp,
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the Service did not answer within 20 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

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
        assert_eq!(columns, ["Feature", "Phase", "Status", "Passed", "Failed", "Duration", "Age"]);
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
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": SOURCE}, "tests": TESTS, "replicas": 0}))).await;
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
        assert!(status.pod_name.unwrap().starts_with("restock-"));

        let tests = wait_for(&runs, "tests", READY_TIMEOUT, run_finished).await.status.unwrap();
        let summary = tests.summary.unwrap();
        assert_eq!(condition(&tests.conditions, "Succeeded").unwrap().1, "Succeeded");
        assert_eq!((summary.tests_passed, summary.tests_failed), (Some(3), Some(0)));
        // Exactly one Job per run.
        let jobs = env.api::<Job>().list(&ListParams::default()).await.unwrap();
        let mut names: Vec<String> = jobs.items.iter().map(|j| j.name_any()).collect();
        names.sort();
        assert_eq!(names, ["restock", "tests"]);
        // The managed Redis runs with a persistent volume and a generated password.
        let redis = env.api::<StatefulSet>().get("eol-redis").await.unwrap();
        assert_eq!(redis.spec.unwrap().volume_claim_templates.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_feature_becomes_ready_with_two_replicas_answering_through_its_service() {
    in_namespace("ready", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": SOURCE}, "tests": TESTS, "replicas": 2}),
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
async fn a_phase_switch_rolls_over_with_zero_failed_requests() {
    in_namespace("switch", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": SOURCE}, "tests": TESTS, "replicas": 2}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        let before = env.api::<Deployment>().get("inventory").await.unwrap();
        // The loop measures the switch, not kube-proxy catching up with the first pods.
        first_answer(&env, "stock_level", serde_json::json!({"sku": "AB-1"})).await;

        // A bounded request loop runs through the whole switch.
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let looping = {
            let (env, stop, ok, failed) = (env.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for _ in 0..5000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match call(
                        &env,
                        "inventory",
                        "stock_level",
                        serde_json::json!({"sku": "AB-1"}),
                    )
                    .await
                    {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            // When, to line up with pod and endpoint events.
                            let at = k8s_openapi::jiff::Timestamp::now();
                            errors.push(format!("{at} {other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                errors
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        features
            .patch(
                "inventory",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"phase": "hybrid"}})),
            )
            .await
            .unwrap();
        let f = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            let s = f.status.as_ref();
            s.is_some_and(|s| s.phase == Some(eol_core::Phase::Hybrid) && s.ready_replicas == 2)
                && s.and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                    .is_some_and(|c| c.1 == "Complete")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, Ordering::Relaxed);
        let errors = looping.await.unwrap();
        let after = env.api::<Deployment>().get("inventory").await.unwrap();
        let hash = |d: &Deployment| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()["eol.dev/config-hash"]
                .clone()
        };
        assert_ne!(hash(&before), hash(&after), "the switch rolled the pods");
        assert_eq!(f.status.unwrap().config, Some(hash(&after)));
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        eprintln!("requests through the switch: {ok} ok, {failed} failed");
        assert!(ok > 50, "the loop ran through the switch ({ok} requests)");
        assert_eq!(failed, 0, "failed requests: {errors:?}");
    })
    .await;
}

#[tokio::test]
async fn a_switch_whose_tests_fail_stalls_is_reported_and_rolls_back() {
    in_namespace("rollback", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({
                "source": {"inline": SOURCE}, "tests": TESTS, "replicas": 1,
                "rollout": {"autoRollback": true, "progressDeadlineSeconds": 30}
            }),
        ))
        .await;
        let features = env.api::<Feature>();
        let good = wait_for(&features, "inventory", READY_TIMEOUT, feature_ready).await;
        let good_config = good.status.unwrap().config.unwrap();
        // An implementation that breaks a test: unknown SKUs report stock 1.
        let broken = SOURCE.replace("else 0}", "else 1}");
        assert_ne!(broken, SOURCE);
        features
            .patch(
                "inventory",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"source": {"inline": broken}}})),
            )
            .await
            .unwrap();
        let f = wait_for(&features, "inventory", Duration::from_secs(150), |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| c.1 == "RolledBack")
        })
        .await;
        let status = f.status.unwrap();
        let (_, _, message) = condition(&status.conditions, "PhaseSwitch").unwrap();
        assert!(
            message.contains("an unknown SKU has no stock"),
            "the failing test is named: {message}"
        );
        assert!(status.failed_config.is_some());
        // The old pods served throughout, and the Deployment is back on the last good config.
        let back = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f)
                && f.status
                    .as_ref()
                    .is_some_and(|s| s.config.as_deref() == Some(good_config.as_str()))
        })
        .await;
        assert_eq!(
            back.status.unwrap().last_good_config,
            Some(good_config.clone())
        );
        let resp = call(
            &env,
            "inventory",
            "stock_level",
            serde_json::json!({"sku": "NEW-1"}),
        )
        .await
        .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["level"], 0, "the good implementation answers: {body}");
    })
    .await;
}

#[tokio::test]
async fn an_invalid_source_is_reported_and_nothing_is_created() {
    in_namespace("invalid", |env| async move {
        let broken = SOURCE.replace("phase: implementation", "phase: sometimes");
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": broken}}),
        ))
        .await;
        let f = wait_for(
            &env.api::<Feature>(),
            "inventory",
            Duration::from_secs(60),
            |f| {
                f.status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "SpecValid"))
                    .is_some()
            },
        )
        .await;
        let (status, reason, message) =
            condition(&f.status.unwrap().conditions, "SpecValid").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "ParseError"));
        assert!(
            message.contains("spec.source.inline:5:"),
            "located: {message}"
        );
        assert!(message.contains("sometimes"), "{message}");
        tokio::time::sleep(Duration::from_secs(3)).await;
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
        assert!(cms.items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn deleting_a_feature_removes_its_children() {
    in_namespace("delete", |env| async move {
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": SOURCE}, "replicas": 1}))).await;
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
async fn killing_the_operator_mid_burst_leaves_exactly_one_job_per_run() {
    in_namespace("burst", |env| async move {
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": SOURCE}, "replicas": 0}))).await;
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
        let jobs = env.api::<Job>().list(&ListParams::default()).await.unwrap();
        assert_eq!(jobs.items.len(), 50, "exactly one Job per FeatureRun");
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
            serde_json::json!({"source": {"inline": SOURCE}, "replicas": 0}),
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
            "eol_operator_api_requests_total{method=\"POST\"}",
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
            serde_json::json!({"source": {"inline": SOURCE}, "phase": "prototyping", "replicas": 0,
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
