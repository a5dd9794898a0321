//! Secrets never leak into what anyone with read access to a namespace sees:
//! after a Feature served calls that failed against a model (with its API
//! key), after FeatureRuns (a pod each, and one in mode Queue) failed, and
//! after the namespace's Redis pod was deleted under them, neither the API
//! key nor the Redis password appears in any pod log, pod status (termination
//! messages included), event, Feature or FeatureRun, ConfigMap, workload, or
//! the operator's own log.
#![allow(clippy::unwrap_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::fixtures::{feature, feature_run, first_answer};
use eol_kind_tests::{in_namespace, run_finished, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, LogParams};
use serde_json::json;
use std::time::Duration;

/// A prototyped operation (the model answers it) and an implemented one
/// (Redis), with no tests: the pod is ready without the model.
const SOURCE: &str = "---\nname: notes\nphase: hybrid\n---\n# Notes\n\n## Operations\n\n### summarize\nPhase: prototyping\n\nSummarizes a text in one sentence.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  summary: {type: string}\nrequired: [summary]\n```\n\n### count\nPhase: implementation\n\nCounts a call.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  calls: {type: integer}\nrequired: [calls]\n```\n\n```python\ndef count():\n    return {\"calls\": redis.incr(\"calls\")}\n```\n";

/// Where `needle` occurs in `texts` (by name).
fn leaks<'a>(texts: &'a [(String, String)], needle: &str) -> Vec<&'a str> {
    texts
        .iter()
        .filter(|(_, text)| text.contains(needle))
        .map(|(name, _)| name.as_str())
        .collect()
}

#[tokio::test]
async fn secret_values_appear_nowhere_in_the_namespaces_state_after_failures() {
    in_namespace("secrets", |env| async move {
        let api_key = format!("sk-eol-{:032x}", rand::random::<u128>());
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "model-key"}, "stringData": {"api-key": api_key}
        }))
        .unwrap();
        env.create(&secret).await;
        // A model that is not there: every prototyped call fails, key in hand.
        env.create(&feature(
            "notes",
            json!({"source": {"inline": SOURCE}, "replicas": 1, "access": {"anonymous": true},
                   "model": {"baseUrl": "http://127.0.0.1:9/v1", "name": "nowhere",
                             "apiKeySecretRef": {"name": "model-key", "key": "api-key"}}}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "notes", Duration::from_secs(180), eol_kind_tests::feature_ready).await;
        first_answer(&env, "notes", "count", json!({})).await;
        let (mut failed, mut counted) = (0, 0);
        for _ in 0..5 {
            let r = eol_kind_tests::fixtures::call(&env, "notes", "summarize", json!({"text": "a b c"})).await.unwrap();
            failed += usize::from(!r.status().is_success());
        }
        assert_eq!(failed, 5, "calls to a model that is not there fail");

        // Runs: one in a pod of its own, one queued to the serving pod.
        for (name, mode) in [("pod-run", "Pod"), ("queued-run", "Queue")] {
            env.create(&feature_run(
                name,
                json!({"featureRef": "notes", "operation": "summarize", "mode": mode,
                       "input": {"text": "a b c"}, "timeoutSeconds": 120}),
            ))
            .await;
        }
        let runs = env.api::<FeatureRun>();
        for name in ["pod-run", "queued-run"] {
            wait_for(&runs, name, Duration::from_secs(150), run_finished).await;
        }

        // The Redis pod goes away under calls and comes back.
        let pods = env.api::<Pod>();
        pods.delete("eol-redis-0", &DeleteParams::default()).await.unwrap();
        for _ in 0..20 {
            let r = eol_kind_tests::fixtures::call(&env, "notes", "count", json!({})).await;
            counted += usize::from(r.is_ok_and(|r| r.status().is_success()));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        env.create(&feature_run(
            "after-redis",
            json!({"featureRef": "notes", "operation": "count", "mode": "Queue", "input": {}, "timeoutSeconds": 120}),
        ))
        .await;
        wait_for(&runs, "after-redis", Duration::from_secs(150), run_finished).await;

        // Everything a reader of the namespace sees, as text.
        let redis_secret = env.api::<Secret>().get("eol-redis").await.unwrap();
        let data = redis_secret.data.unwrap();
        let password = String::from_utf8(data["password"].0.clone()).unwrap();
        let url = String::from_utf8(data["url"].0.clone()).unwrap();
        assert!(url.contains(&password) && password.len() >= 16, "the Redis password");
        let mut texts: Vec<(String, String)> = Vec::new();
        let all = ListParams::default();
        for pod in pods.list(&all).await.unwrap() {
            let name = pod.metadata.name.clone().unwrap();
            texts.push((format!("pod {name}"), serde_json::to_string(&pod).unwrap()));
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                for previous in [false, true] {
                    let params = LogParams { container: Some(container.name.clone()), previous, ..LogParams::default() };
                    if let Ok(log) = pods.logs(&name, &params).await {
                        texts.push((format!("log {name}/{}{}", container.name, if previous { " (previous)" } else { "" }), log));
                    }
                }
            }
        }
        macro_rules! objects {
            ($($kind:ty),*) => {$(
                for object in env.api::<$kind>().list(&all).await.unwrap() {
                    texts.push((format!("{} {}", stringify!($kind), object.metadata.name.clone().unwrap_or_default()), serde_json::to_string(&object).unwrap()));
                }
            )*};
        }
        objects!(Event, Feature, FeatureRun, ConfigMap, Deployment, ReplicaSet, StatefulSet, Service);
        let log = std::env::temp_dir().join(format!("{}-operator.log", env.namespace));
        texts.push(("the operator's log".to_owned(), std::fs::read_to_string(&log).unwrap()));
        // The search finds what it looks for: the Secrets themselves hold them.
        let secrets = [("model-key", serde_json::to_string(&env.api::<Secret>().get("model-key").await.unwrap()).unwrap())];
        let encoded = |v: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(v)
        };
        assert!(secrets[0].1.contains(&encoded(&api_key)), "the search decodes nothing: it looks for both forms");
        let mut found = Vec::new();
        for (what, needle) in [("the API key", api_key.clone()), ("the Redis password", password.clone())] {
            for form in [needle.clone(), encoded(&needle)] {
                let at = leaks(&texts, &form);
                if !at.is_empty() {
                    found.push(format!("{what} in {at:?}"));
                }
            }
        }
        let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
        assert!(found.is_empty(), "secrets leaked: {}", found.join("; "));
        // The failures happened, where they would have shown a secret.
        let reason = |run: &FeatureRun| {
            run.status.as_ref().and_then(|s| eol_kind_tests::condition(&s.conditions, "Succeeded")).map(|(_, r, m)| (r, m))
        };
        let pod_run = runs.get("pod-run").await.unwrap();
        let queued = runs.get("queued-run").await.unwrap();
        let after = runs.get("after-redis").await.unwrap();
        for run in [&pod_run, &queued] {
            assert_eq!(reason(run).map(|(r, _)| r).as_deref(), Some("Failed"), "{:?}", reason(run));
        }
        assert_eq!(reason(&after).map(|(r, _)| r).as_deref(), Some("Succeeded"), "{:?}", reason(&after));
        eprintln!(
            "evidence: {} texts, {bytes} bytes searched (pod logs and statuses, events, objects, the operator's log); neither secret found; \
             5 failed model calls, runs in a pod {:?} and queued {:?}, {counted}/20 counts through the Redis restart",
            texts.len(),
            reason(&pod_run),
            reason(&queued),
        );
    })
    .await;
}
