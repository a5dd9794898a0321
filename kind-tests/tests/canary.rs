//! Canary switches on the real local cluster (`spec.rollout.strategy:
//! Canary`) of a hybrid Feature, operation by operation: only `stock_level`
//! is canaried, so `add_stock` calls are never forwarded. A candidate that
//! agrees steps through 20% and 50% of the live calls and promotes itself;
//! one that fails a fifth of the calls is rolled back on its error rate, and
//! the serving pods answer the calls it failed. A request loop runs through
//! both with no failed request.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_core::shadow::CANARY_HEADER;
use eol_kind_tests::cli::get_row;
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, agreeing_inventory, call, events_about, feature, first_answer,
    inventory_returning, namespace_redis, serving_hash, set_source,
};
use eol_kind_tests::{TestEnv, condition, feature_ready, in_namespace, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The example as a hybrid feature: each operation names its phase.
fn hybrid(source: &str) -> String {
    let mut out = source.replacen("phase: implementation", "phase: hybrid", 1);
    for op in ["add_stock", "stock_level", "reserve"] {
        out = out.replacen(
            &format!("### {op}\n"),
            &format!("### {op}\n\nPhase: implementation\n"),
            1,
        );
    }
    assert_eq!(
        out.matches("Phase: implementation").count(),
        3,
        "the fixture changed"
    );
    out
}

/// Fails (a Python error, a 500) for SKUs `AB-…3` and `AB-…7`: a fifth of
/// `AB-1`..`AB-N`. The tests use no such SKU, so the candidate becomes ready.
fn failing_source() -> String {
    let source = inventory_returning(
        "    if sku.startswith(\"AB-\") and sku[-1] in \"37\":\n        raise RuntimeError(\"no level for \" + sku)\n    return {\"sku\": sku, \"level\": int(value) if value is not None else 0}",
    );
    hybrid(&source)
}

fn canaried(source: &str) -> serde_json::Value {
    serde_json::json!({
        "source": {"inline": source},
        "tests": INVENTORY_TESTS,
        "replicas": 3,
        "rollout": {
            "strategy": "Canary",
            "shadow": {"samplePercent": 100.0, "minAgreement": 95.0, "minSamples": 10, "window": "10m", "operations": ["stock_level"]},
            "canary": {"steps": [20, 50], "stepDuration": "15s", "minRequests": 15, "maxErrorPercent": 5.0}
        }
    })
}

/// What the loop saw: calls answered per operation, and per operation those
/// a candidate answered (header `x-eol-canary`), by canary id.
#[derive(Default, Debug)]
struct Seen {
    ok: BTreeMap<String, usize>,
    by_candidate: BTreeMap<(String, String), usize>,
    failures: Vec<String>,
}

/// A loop of calls through the Feature's Service: `stock_level` of SKUs
/// `AB-1`, `AB-2`, ... and, every third call, `add_stock` of `ZZ-1`.
struct Loop {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Loop {
    fn start(env: &TestEnv) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = {
            let (env, stop, seen) = (env.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                for i in 1..=40_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (op, input) = if i % 3 == 0 {
                        (
                            "add_stock",
                            serde_json::json!({"sku": "ZZ-1", "quantity": 1}),
                        )
                    } else {
                        ("stock_level", serde_json::json!({"sku": format!("AB-{i}")}))
                    };
                    let result = call(&env, "inventory", op, input).await;
                    {
                        let mut seen = seen.lock().unwrap();
                        match result {
                            Ok(r) if r.status() == 200 => {
                                *seen.ok.entry(op.to_owned()).or_default() += 1;
                                if let Some(id) = r.headers().get(CANARY_HEADER) {
                                    let id = id.to_str().unwrap_or_default().to_owned();
                                    *seen.by_candidate.entry((op.to_owned(), id)).or_default() += 1;
                                }
                            }
                            other => seen.failures.push(format!(
                                "{} {op} #{i}: {other:?}",
                                k8s_openapi::jiff::Timestamp::now()
                            )),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        Self { stop, seen, task }
    }

    /// Calls a candidate answered so far for `op` under canary `id`.
    fn by_candidate(&self, op: &str, id: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.by_candidate
            .get(&(op.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

fn shadow_state(f: &Feature) -> Option<String> {
    f.status.as_ref()?.shadow.as_ref().map(|s| s.state.clone())
}

#[tokio::test]
async fn a_canary_steps_up_and_promotes_itself_and_a_failing_one_is_rolled_back_with_zero_failed_requests()
 {
    in_namespace("canary", |env| async move {
        env.create(&feature("inventory", canaried(&hybrid(INVENTORY))))
            .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 3)
        })
        .await;
        let first = serving_hash(&env, "inventory").await;
        first_answer(
            &env,
            "inventory",
            "stock_level",
            serde_json::json!({"sku": "AB-0"}),
        )
        .await;
        let looping = Loop::start(&env);

        // 1. An agreeing candidate: 20%, then 50% of the stock_level calls, then promoted.
        set_source(&env, "inventory", &hybrid(&agreeing_inventory())).await;
        let stepping = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            f.status
                .as_ref()
                .and_then(|s| s.shadow.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.step == 1)
        })
        .await;
        let shadow = stepping.status.clone().unwrap().shadow.unwrap();
        let switch = condition(&stepping.status.unwrap().conditions, "PhaseSwitch").unwrap();
        assert_eq!(
            (switch.0.as_str(), switch.1.as_str()),
            ("Unknown", "Canary"),
            "{switch:?}"
        );
        let canary = shadow.canary.clone().unwrap();
        assert_eq!(canary.weight, 50.0, "{canary:?}");
        assert!(
            canary.step_start_routed >= 15,
            "step 1 had its minRequests: {canary:?}"
        );
        // The candidate runs 3 x 50% = 2 pods (read back from the cluster),
        // which all offer the share the operator set on one of them.
        let candidate = env
            .api::<Deployment>()
            .get("inventory-candidate")
            .await
            .unwrap();
        assert_eq!(candidate.spec.and_then(|s| s.replicas), Some(2));
        assert_eq!(candidate.status.and_then(|s| s.ready_replicas), Some(2));
        let mut conn = namespace_redis(&env).await;
        let shared: Option<String> = redis::cmd("GET")
            .arg(eol_core::shadow::canary_key("inventory", &shadow.id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(shared.as_deref(), Some("50"));
        // The candidate answers live calls: the callers see its header.
        let seen_at_step = looping.by_candidate("stock_level", &shadow.id);
        assert!(
            seen_at_step > 0,
            "no call was answered by the candidate yet"
        );
        let row = get_row("features", &env.namespace, "inventory", true);
        assert!(
            row.get("CANARY").is_some_and(|c| c.contains("% of calls")),
            "kubectl get features -o wide shows the canary: {row:?}"
        );
        let done = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            let s = f.status.as_ref();
            shadow_state(f).as_deref() == Some("Promoted")
                && s.and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                    .is_some_and(|c| c.1 == "Complete")
                && s.is_some_and(|s| s.ready_replicas == 3)
        })
        .await;
        let status = done.status.unwrap();
        let shadow = status.shadow.unwrap();
        let canary = shadow.canary.clone().unwrap();
        eprintln!(
            "promoted canary: {canary:?}; operations {:?}",
            shadow.operations
        );
        assert_eq!(canary.weight, 0.0, "the canary ended: {canary:?}");
        assert_eq!(canary.failed, 0, "{canary:?}");
        assert!(canary.routed >= 30, "two steps of minRequests: {canary:?}");
        // Operation by operation: only stock_level was sampled and forwarded.
        let names: Vec<&str> = shadow.operations.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["stock_level"], "{:?}", shadow.operations);
        let op = &shadow.operations[0];
        assert!(op.samples >= 10 && op.agree == op.samples, "{op:?}");
        assert_eq!(op.canary_routed, canary.routed);
        assert_eq!(
            serving_hash(&env, "inventory").await,
            shadow.candidate,
            "the candidate serves"
        );
        let events = events_about(&env, "Feature", "inventory").await;
        for reason in ["CanaryStep", "CanaryPromoted"] {
            assert!(
                events.iter().any(|(r, _)| r == reason),
                "{reason}: {events:#?}"
            );
        }
        let promoted_id = shadow.id.clone();
        let promoted = shadow.candidate.clone();
        assert_ne!(promoted, first);

        // 2. A candidate failing a fifth of the stock_level calls: rolled back
        // on its error rate (minSamples out of reach, so the agreement gate,
        // which its failures also fail, cannot decide first).
        env.api::<Feature>()
            .patch(
                "inventory",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {
                    "source": {"inline": failing_source()},
                    "rollout": {"shadow": {"minSamples": 100_000}}
                }})),
            )
            .await
            .unwrap();
        let rolled_back = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| c.0 == "False")
        })
        .await;
        let status = rolled_back.status.unwrap();
        let switch = condition(&status.conditions, "PhaseSwitch").unwrap();
        assert_eq!(switch.1, "CanaryErrors", "{switch:?}");
        assert!(switch.2.contains("the canary is rolled back"), "{switch:?}");
        let shadow = status.shadow.unwrap();
        let canary = shadow.canary.clone().unwrap();
        eprintln!("rolled back canary: {canary:?}");
        assert_eq!(shadow.state, "RolledBack");
        assert_eq!(canary.weight, 0.0);
        assert!(canary.routed >= 15 && canary.failed > 0, "{canary:?}");
        assert_eq!(
            status.failed_config.as_deref(),
            Some(shadow.candidate.as_str())
        );
        assert_eq!(
            serving_hash(&env, "inventory").await,
            promoted,
            "the promoted configuration keeps serving"
        );
        let events = events_about(&env, "Feature", "inventory").await;
        assert!(
            events
                .iter()
                .any(|(r, n)| r == "CanaryRolledBack" && n.contains("live calls")),
            "{events:#?}"
        );
        wait_for(
            &env.api::<Deployment>(),
            "inventory-candidate",
            Duration::from_secs(30),
            |d| d.spec.as_ref().and_then(|s| s.replicas) == Some(0),
        )
        .await;
        // Calls go on, answered by the serving pods only.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = looping.by_candidate("stock_level", &shadow.id);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            looping.by_candidate("stock_level", &shadow.id),
            after,
            "no call reaches a rolled-back candidate"
        );
        let seen = looping.finish().await;
        eprintln!("loop: {seen:?}");
        assert!(
            seen.failures.is_empty(),
            "failed requests: {:#?}",
            seen.failures
        );
        assert!(
            seen.by_candidate.keys().all(|(op, _)| op == "stock_level"),
            "add_stock is never forwarded: {:?}",
            seen.by_candidate
        );
        assert!(
            seen.ok.get("add_stock").copied().unwrap_or(0) > 20,
            "{seen:?}"
        );
        assert!(
            seen.by_candidate
                .get(&("stock_level".to_owned(), promoted_id))
                .copied()
                .unwrap_or(0)
                > 0,
            "{seen:?}"
        );
    })
    .await;
}
