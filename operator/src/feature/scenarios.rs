//! Scenarios of the Feature reconciler against a mocked API server (the
//! `ApiServerVerifier` of `crate::fixtures`): each lists, in order, the
//! requests one reconcile makes, and fails on any other. They go past the
//! early exits: a new Feature, a phase change, a missed deadline, a rollback
//! and what follows it, pruning, a Secret that appears, invalid sources.

use super::children::CONFIG_HASH;
use super::controller::reconcile;
use crate::config::OperatorConfig;
use crate::context::Context;
use crate::fixtures::{ApiServerVerifier, Expect, condition, not_found};
use crate::pod::ModelSettings;
use crate::source::prepare;
use eol_core::crd::Feature;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const SOURCE: &str = include_str!("../../../features/examples/inventory.eol");
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const STATUS: &str = "/apis/eol.dev/v1alpha1/namespaces/shop/features/inventory/status";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/inventory";
const SERVICE: &str = "/api/v1/namespaces/shop/services/inventory";
const CONFIG_MAPS: &str = "/api/v1/namespaces/shop/configmaps";
const REPLICA_SETS: &str = "/apis/apps/v1/namespaces/shop/replicasets";
const PODS: &str = "/api/v1/namespaces/shop/pods";

/// A context whose namespace `shop` already has its reviewer identity (the
/// first scenario of a namespace shows those requests).
fn context(config: OperatorConfig) -> (Arc<Context>, ApiServerVerifier) {
    let (ctx, server) = crate::fixtures::context(config);
    ctx.access_applied.note("shop", std::time::Instant::now());
    (ctx, server)
}

/// What the API server answers a status patch with: the object.
fn stored() -> Value {
    json!({"apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": "inventory", "namespace": "shop"}, "spec": {"source": {"inline": ""}}})
}

fn feature_with(spec: Value, status: Value) -> Arc<Feature> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1", "generation": 2},
            "spec": spec, "status": status
        }))
        .expect("a Feature"),
    )
}

fn feature(spec: Value) -> Arc<Feature> {
    feature_with(spec, json!({}))
}

/// An operator with an external Redis: no managed Redis requests.
fn external_redis() -> OperatorConfig {
    OperatorConfig {
        external_redis_secret: Some("redis-url".into()),
        ..OperatorConfig::default()
    }
}

/// The configuration hash the operator computes for `feature`.
fn hash_of(feature: &Feature) -> String {
    prepare(feature, SOURCE, &ModelSettings::default())
        .expect("valid")
        .config_hash
}

/// A Deployment as the API server returns it from an apply: the applied
/// template's hash, and `status`.
fn deployment_reply(hash: &str, status: Value) -> (u16, Value) {
    (
        200,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "inventory", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 1, "selector": {},
                     "template": {"metadata": {"annotations": {CONFIG_HASH: hash}}}},
            "status": status}),
    )
}

/// A rollout that has just started: one new pod, not ready.
fn progressing() -> Value {
    json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1})
}

fn complete() -> Value {
    json!({"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1})
}

fn deadline_exceeded() -> Value {
    json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"inventory-2\" has timed out progressing."}]})
}

/// A ReplicaSet of configuration `hash` with `ready` pods.
fn replica_set(hash: &str, ready: i32) -> Value {
    json!({"metadata": {"name": format!("inventory-{hash}")},
        "spec": {"selector": {}, "template": {
            "metadata": {"labels": {"pod-template-hash": "x", CONFIG_HASH: hash},
                         "annotations": {CONFIG_HASH: hash}},
            "spec": {"containers": [{"name": "runner", "image": "old"}]}}},
        "status": {"replicas": 1, "readyReplicas": ready}})
}

fn list(kind: &str, items: Vec<Value>) -> (u16, Value) {
    (
        200,
        json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items}),
    )
}

fn echo() -> (u16, Value) {
    (200, json!({"metadata": {"name": "x"}}))
}

/// The requests that apply the children of configuration `hash`, the
/// Deployment answering with `deployment_status`.
fn applies(hash: &str, deployment_status: Value) -> Vec<Expect> {
    let cm = format!("{CONFIG_MAPS}/inventory-{hash}");
    let owned = hash.to_owned();
    vec![
        Expect::new("PATCH", cm, echo()).checking(move |cm| {
            assert_eq!(cm["metadata"]["labels"][CONFIG_HASH], owned.as_str());
            assert_eq!(cm["immutable"], true);
            assert!(cm["data"]["feature.eol"].is_string());
        }),
        Expect::new(
            "PATCH",
            DEPLOYMENT,
            deployment_reply(hash, deployment_status),
        ),
        Expect::new("PATCH", SERVICE, echo())
            .checking(|svc| assert_eq!(svc["spec"]["ports"][0]["port"], 80)),
    ]
}

fn events_reason(expected: &'static str) -> Expect {
    Expect::new("POST", EVENTS, (201, json!({})))
        .checking(move |e| assert_eq!(e["reason"], expected, "{e}"))
}

/// What follows the applies of a first rollout: the ReplicaSets and
/// ConfigMaps read, the status written, the event that it started.
fn rollout_started() -> Vec<Expect> {
    vec![
        Expect::new("GET", REPLICA_SETS, list("ReplicaSetList", vec![])),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())),
        events_reason("PhaseSwitchStarted"),
    ]
}

async fn reconciled(f: Arc<Feature>, ctx: Arc<Context>) -> Action {
    reconcile(f, ctx).await.expect("reconciled")
}

#[tokio::test]
async fn a_new_feature_creates_its_config_map_deployment_and_service() {
    let (ctx, server) = context(external_redis());
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let mut expected = applies(&hash, json!({}));
    expected[1] =
        Expect::new("PATCH", DEPLOYMENT, deployment_reply(&hash, json!({}))).checking(|d| {
            assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
            let c = &d["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["args"][0], "serve");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        });
    let target = hash.clone();
    expected.extend([
        Expect::new("GET", REPLICA_SETS, list("ReplicaSetList", vec![])),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())).checking(move |patch| {
            let switch = condition(&patch, "PhaseSwitch");
            assert_eq!(switch["reason"], "Progressing");
            let message = switch["message"].as_str().expect("message");
            assert!(
                message.contains(&format!(
                    "(config {target}): 0/1 new pods ready; no pods served before"
                )),
                "{message}"
            );
            // Before any pod served, the columns show where the feature is going.
            assert_eq!(patch["status"]["phase"], "implementation");
            assert_eq!(patch["status"]["desiredPhase"], "implementation");
            assert_eq!(condition(&patch, "SpecValid")["status"], "True");
            assert_eq!(condition(&patch, "Ready")["reason"], "NotReady");
        }),
        events_reason("PhaseSwitchStarted"),
    ]);
    let verify = server.run(expected);
    let action = reconciled(f, ctx).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn the_first_authenticated_feature_of_a_namespace_applies_its_reviewer_identity() {
    let (ctx, server) = crate::fixtures::context(external_redis());
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let binding = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/eol-runner-reviewer:shop";
    let mut expected = vec![
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/serviceaccounts/eol-runner",
            not_found("serviceaccounts"),
        ),
        Expect::new(
            "PATCH",
            "/api/v1/namespaces/shop/serviceaccounts/eol-runner",
            echo(),
        )
        .checking(|sa| assert_eq!(sa["automountServiceAccountToken"], false)),
        Expect::new("GET", binding, not_found("clusterrolebindings")),
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop",
            (200, json!({"metadata": {"name": "shop", "uid": "ns-uid"}})),
        ),
        Expect::new("PATCH", binding, echo()).checking(|b| {
            assert_eq!(b["roleRef"]["name"], "eol-runner-reviewer");
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": "eol-runner", "namespace": "shop"}])
            );
            assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "ns-uid");
        }),
    ];
    expected.extend(applies(&hash, json!({})));
    expected[6] =
        Expect::new("PATCH", DEPLOYMENT, deployment_reply(&hash, json!({}))).checking(|d| {
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], "eol-runner");
            assert_eq!(pod["automountServiceAccountToken"], true);
        });
    expected.extend(rollout_started());
    let verify = server.run(expected);
    reconciled(f.clone(), ctx.clone()).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_reviewer_identity_in_place_is_only_read() {
    let (ctx, server) = crate::fixtures::context(external_redis());
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let binding = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/eol-runner-reviewer:shop";
    let mut expected = vec![
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/serviceaccounts/eol-runner",
            (
                200,
                json!({"metadata": {"name": "eol-runner", "namespace": "shop"}}),
            ),
        ),
        Expect::new(
            "GET",
            binding,
            (
                200,
                json!({"metadata": {"name": "eol-runner-reviewer:shop",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "shop", "uid": "ns-uid"}]},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "eol-runner-reviewer"},
                "subjects": [{"kind": "ServiceAccount", "name": "eol-runner", "namespace": "shop"}]}),
            ),
        ),
    ];
    expected.extend(applies(&hash, json!({})));
    expected.extend(rollout_started());
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_new_feature_only_reads_the_namespaces_existing_redis() {
    use crate::redis::tests::{json_of, stored as stored_redis};
    use crate::redis::{secret, service, stateful_set};
    let (ctx, server) = context(OperatorConfig::default());
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let (code, mut ready) = stored_redis(json_of(&stateful_set("shop", &ctx.config)), vec![]);
    ready["status"] = json!({"replicas": 1, "readyReplicas": 1});
    // Three reads and no write: the Redis carries no per-Feature owner
    // reference, so the namespace's 1,000th Feature costs it nothing.
    let mut expected = vec![
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/secrets/eol-redis",
            stored_redis(json_of(&secret("shop", "pw")), vec![]),
        ),
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/services/eol-redis",
            stored_redis(json_of(&service("shop")), vec![]),
        ),
        Expect::new(
            "GET",
            "/apis/apps/v1/namespaces/shop/statefulsets/eol-redis",
            (code, ready),
        ),
    ];
    expected.extend(applies(&hash, json!({})));
    expected.extend(rollout_started());
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn without_its_python_the_operator_accepts_the_source_and_says_the_code_is_unchecked() {
    // --python / EOL_PYTHON names an interpreter that is not there.
    let config = OperatorConfig {
        python: "/nonexistent/python3".into(),
        ..external_redis()
    };
    let (ctx, server) = context(config);
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let mut expected = applies(&hash, json!({}));
    expected.extend([
        Expect::new("GET", REPLICA_SETS, list("ReplicaSetList", vec![])),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "SpecValid");
            assert_eq!(c["status"], "True");
            let message = c["message"].as_str().expect("message");
            assert!(
                message.contains(
                    "its Python was not checked here (failed to start /nonexistent/python3"
                ),
                "{message}"
            );
        }),
        events_reason("CodeNotChecked"),
        events_reason("PhaseSwitchStarted"),
    ]);
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_phase_change_rolls_and_names_its_target() {
    let (ctx, server) = context(external_redis());
    let plain = feature(json!({"source": {"inline": SOURCE}}));
    let old = hash_of(&plain);
    let f = feature_with(
        json!({"source": {"inline": SOURCE}, "phase": "prototyping", "model": {"baseUrl": "http://llm/v1"}}),
        json!({"phase": "implementation", "config": old, "lastGoodConfig": old, "readyReplicas": 1,
            "conditions": [{"type": "PhaseSwitch", "status": "True", "reason": "Complete",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    let model = ModelSettings {
        base_url: Some("http://llm/v1".into()),
        ..ModelSettings::default()
    };
    let new = prepare(&f, SOURCE, &model).expect("valid").config_hash;
    assert_ne!(old, new);
    let mut expected = applies(&new, progressing());
    let (target, previous) = (new.clone(), old.clone());
    expected.extend([
        Expect::new(
            "GET",
            REPLICA_SETS,
            list("ReplicaSetList", vec![replica_set(&old, 1), replica_set(&new, 0)]),
        ),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())).checking(move |patch| {
            let message = condition(&patch, "PhaseSwitch")["message"]
                .as_str()
                .expect("message")
                .to_owned();
            // The old pod is ready, the new one is not: 0 new pods ready.
            assert!(
                message.contains(&format!("phase prototyping (config {target}): 0/1 new pods ready; the previous pods (config {previous}) keep serving")),
                "{message}"
            );
            // Still serving the old phase until the switch completes.
            assert_eq!(patch["status"]["phase"], "implementation");
            assert_eq!(patch["status"]["desiredPhase"], "prototyping");
        }),
    ]);
    let named = new.clone();
    expected.push(
        Expect::new("POST", EVENTS, (201, json!({}))).checking(move |e| {
            assert_eq!(e["reason"], "PhaseSwitchStarted");
            assert!(e["note"].as_str().expect("note").contains(&named), "{e}");
        }),
    );
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_rollout_past_its_deadline_is_reported_failed() {
    let (ctx, server) = context(external_redis());
    let f = feature(json!({"source": {"inline": SOURCE}}));
    let hash = hash_of(&f);
    let mut expected = applies(&hash, deadline_exceeded());
    expected.extend([
        // The new pods are asked why they are not ready (none has an IP here).
        Expect::new("GET", PODS, list("PodList", vec![])),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "PhaseSwitch");
            assert_eq!(
                (c["status"].as_str(), c["reason"].as_str()),
                (Some("False"), Some("Failed"))
            );
            let message = c["message"].as_str().expect("message");
            assert!(message.contains("has timed out progressing"), "{message}");
            assert!(message.ends_with("no pods serve the feature"), "{message}");
        }),
        events_reason("PhaseSwitchFailed"),
    ]);
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn auto_rollback_restores_the_last_served_configuration_and_holds_the_failed_one_back() {
    let (ctx, server) = context(external_redis());
    let plain = feature(json!({"source": {"inline": SOURCE}}));
    let good = hash_of(&plain);
    let spec = json!({"source": {"inline": SOURCE}, "phase": "prototyping",
        "model": {"baseUrl": "http://llm/v1"}, "rollout": {"autoRollback": true}});
    // The watch cache's Feature: it never sees the status written below.
    let cached = json!({"phase": "implementation", "config": good, "lastGoodConfig": good,
        "readyReplicas": 1, "conditions": [{"type": "PhaseSwitch", "status": "Unknown",
        "reason": "Progressing", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    let f = feature_with(spec, cached);
    let model = ModelSettings {
        base_url: Some("http://llm/v1".into()),
        ..ModelSettings::default()
    };
    let failed = prepare(&f, SOURCE, &model).expect("valid").config_hash;
    let sets = || {
        list(
            "ReplicaSetList",
            vec![replica_set(&good, 1), replica_set(&failed, 0)],
        )
    };
    let mut expected = applies(&failed, deadline_exceeded());
    let (g, x) = (good.clone(), failed.clone());
    expected.extend([
        Expect::new("GET", PODS, list("PodList", vec![])),
        Expect::new("GET", REPLICA_SETS, sets()),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        // The status first: a failed rollback is finished by the next reconcile.
        Expect::new("PATCH", STATUS, (200, stored())).checking(move |patch| {
            let c = condition(&patch, "PhaseSwitch");
            assert_eq!(c["reason"], "RolledBack");
            assert_eq!(patch["status"]["failedConfig"], x.as_str());
            assert_eq!(
                patch["status"]["config"],
                g.as_str(),
                "the Deployment runs it again"
            );
            let message = c["message"].as_str().expect("message");
            assert!(
                message.contains(&format!("rolled back to phase implementation (config {g})")),
                "{message}"
            );
        }),
        Expect::new("PATCH", DEPLOYMENT, deployment_reply(&good, progressing())).checking({
            let good = good.clone();
            move |d| {
                let t = &d["spec"]["template"];
                assert_eq!(t["metadata"]["annotations"][CONFIG_HASH], good.as_str());
                assert!(t["metadata"]["labels"]["pod-template-hash"].is_null());
            }
        }),
        events_reason("RolledBack"),
    ]);
    // The next reconcile, woken by the Deployment, gets the same stale
    // Feature: it must keep the last good configuration (not roll the
    // failed one out again and restart its deadline), and raise no event.
    let cm = format!("{CONFIG_MAPS}/inventory-{failed}");
    let kept = good.clone();
    expected.extend([
        Expect::new("PATCH", cm, echo()),
        Expect::new("GET", REPLICA_SETS, sets()),
        Expect::new("PATCH", DEPLOYMENT, deployment_reply(&good, progressing())).checking(
            move |d| {
                let hash = &d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH];
                assert_eq!(
                    hash,
                    kept.as_str(),
                    "the failed configuration stays held back"
                );
            },
        ),
        Expect::new("PATCH", SERVICE, echo()),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
    ]);
    let verify = server.run(expected);
    reconciled(f.clone(), ctx.clone()).await;
    let action = reconciled(f, ctx).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn config_maps_of_configurations_no_longer_needed_are_pruned() {
    let (ctx, server) = context(external_redis());
    let f = feature_with(
        json!({"source": {"inline": SOURCE}}),
        json!({"phase": "implementation", "config": "aaaaaaaaaa", "lastGoodConfig": "aaaaaaaaaa"}),
    );
    let hash = hash_of(&f);
    let cm = |h: &str, uid: &str| {
        json!({"metadata": {"name": format!("inventory-{h}"), "labels": {CONFIG_HASH: h},
            "ownerReferences": [{"apiVersion": "eol.dev/v1alpha1", "kind": "Feature", "name": "inventory", "uid": uid}]}})
    };
    let mut expected = applies(&hash, complete());
    expected.extend([
        Expect::new(
            "GET",
            CONFIG_MAPS,
            list(
                "ConfigMapList",
                vec![
                    cm(&hash, "u1"),
                    cm("aaaaaaaaaa", "u1"),
                    cm("bbbbbbbbbb", "u1"),
                    cm("cccccccccc", "other"),
                ],
            ),
        ),
        // The new configuration completed: the old ones are no longer
        // needed. Another Feature's ConfigMap stays.
        Expect::new(
            "DELETE",
            format!("{CONFIG_MAPS}/inventory-aaaaaaaaaa"),
            echo(),
        ),
        Expect::new(
            "DELETE",
            format!("{CONFIG_MAPS}/inventory-bbbbbbbbbb"),
            echo(),
        ),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            assert_eq!(condition(&patch, "PhaseSwitch")["reason"], "Complete");
            assert_eq!(condition(&patch, "Ready")["status"], "True");
        }),
        events_reason("PhaseSwitchComplete"),
    ]);
    let verify = server.run(expected);
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_missing_model_secret_holds_the_rollout_until_it_appears() {
    let config = OperatorConfig {
        model_base_url: Some("http://llm/v1".into()),
        ..external_redis()
    };
    let (ctx, server) = context(config);
    let spec = json!({
        "source": {"inline": SOURCE}, "phase": "prototyping",
        "model": {"apiKeySecretRef": {"name": "llm", "key": "api-key"}}
    });
    let f = feature(spec.clone());
    let secret = "/api/v1/namespaces/shop/secrets/llm";
    let mut expected = vec![
        Expect::new("GET", secret, not_found("secrets \"llm\"")),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "ModelConfigured");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "SecretNotFound");
            assert!(c["message"].as_str().expect("message").contains("shop/llm"));
            assert_eq!(condition(&patch, "SpecValid")["status"], "True");
        }),
        events_reason("SecretNotFound"),
    ];
    // Looked for again: now it exists, and the rollout goes ahead.
    let model = ModelSettings::resolve(&f.spec, &ctx.config);
    let hash = prepare(&f, SOURCE, &model).expect("valid").config_hash;
    expected.push(Expect::new(
        "GET",
        secret,
        (200, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm"}, "data": {"api-key": "a2V5"}})),
    ));
    expected.extend(applies(&hash, json!({})));
    expected.extend([
        Expect::new("GET", REPLICA_SETS, list("ReplicaSetList", vec![])),
        Expect::new("GET", CONFIG_MAPS, list("ConfigMapList", vec![])),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "ModelConfigured");
            assert_eq!(
                (c["status"].as_str(), c["reason"].as_str()),
                (Some("True"), Some("Configured"))
            );
        }),
        events_reason("PhaseSwitchStarted"),
    ]);
    let verify = server.run(expected);
    let action = reconciled(f.clone(), ctx.clone()).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    reconciled(f, ctx).await;
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn a_missing_fallback_model_secret_is_reported_like_the_primary_one() {
    let config = OperatorConfig {
        model_base_url: Some("http://llm/v1".into()),
        ..external_redis()
    };
    let (ctx, server) = context(config);
    let f = feature(json!({
        "source": {"inline": SOURCE}, "phase": "prototyping",
        "model": {
            "apiKeySecretRef": {"name": "llm", "key": "api-key"},
            "fallbacks": [{"baseUrl": "https://backup/v1", "name": "backup",
                "apiKeySecretRef": {"name": "backup", "key": "token"}}]
        }
    }));
    let verify = server.run(vec![
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/secrets/llm",
            (200, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm"}, "data": {"api-key": "a2V5"}})),
        ),
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/secrets/backup",
            not_found("secrets \"backup\""),
        ),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "ModelConfigured");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "SecretNotFound");
            let message = c["message"].as_str().expect("message");
            assert!(
                message.contains("fallback model API key Secret shop/backup has no key 'token'"),
                "{message}"
            );
        }),
        events_reason("SecretNotFound"),
    ]);
    let action = reconciled(f, ctx).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn an_invalid_source_is_reported_and_nothing_is_created() {
    let (ctx, server) = context(OperatorConfig::default());
    let broken = "---\nname: inventory\nphase: nope\n---\n# x\n";
    let verify = server.run(vec![
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "SpecValid");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "ParseError");
            let message = c["message"].as_str().expect("message");
            assert!(
                message.starts_with("Feature shop/inventory spec.source.inline:3:"),
                "{message}"
            );
            assert_eq!(patch["status"]["observedGeneration"], 2);
        }),
        Expect::new("POST", EVENTS, (201, json!({}))).checking(|e| {
            assert_eq!(e["reason"], "ParseError");
            assert_eq!(e["type"], "Warning");
        }),
    ]);
    let action = reconciled(feature(json!({"source": {"inline": broken}})), ctx).await;
    assert_eq!(
        action,
        Action::await_change(),
        "an invalid spec waits for a change"
    );
    verify.await.expect("the API calls were as expected");
}

#[tokio::test]
async fn python_that_fails_the_sandbox_check_is_refused_with_its_location() {
    let (ctx, server) = context(OperatorConfig::default());
    // A forbidden import and a syntax error, in the first two operations' code.
    let bad = SOURCE
        .replacen(
            "def add_stock(sku, quantity):",
            "import os\n\ndef add_stock(sku, quantity):",
            1,
        )
        .replacen("def stock_level(sku):", "def stock_level(sku)", 1);
    let verify = server.run(vec![
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            let c = condition(&patch, "SpecValid");
            assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("CodeInvalid")));
            let message = c["message"].as_str().expect("message");
            let lines: Vec<&str> = message.lines().collect();
            assert_eq!(lines.len(), 2, "{message}");
            assert!(
                lines[0].starts_with("Feature shop/inventory spec.source.inline:38:8: operation 'add_stock': import of 'os' is not allowed"),
                "{message}"
            );
            assert!(lines[1].contains(": operation 'stock_level': syntax error"), "{message}");
        }),
        events_reason("CodeInvalid"),
    ]);
    let action = reconciled(feature(json!({"source": {"inline": bad}})), ctx).await;
    assert_eq!(action, Action::await_change());
    verify.await.expect("nothing is created");
}

#[tokio::test]
async fn a_missing_source_config_map_is_looked_for_again() {
    let (ctx, server) = context(OperatorConfig::default());
    let verify = server.run(vec![
        Expect::new(
            "GET",
            "/api/v1/namespaces/shop/configmaps/src",
            not_found("configmaps \"src\""),
        ),
        Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
            assert_eq!(condition(&patch, "SpecValid")["reason"], "SourceNotFound")
        }),
        events_reason("SourceNotFound"),
    ]);
    let action = reconciled(
        feature(json!({"source": {"configMapKeyRef": {"name": "src", "key": "f.eol"}}})),
        ctx,
    )
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    verify.await.expect("the API calls were as expected");
}
