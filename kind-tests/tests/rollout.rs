//! Phase switches on the real local cluster: a rolling update that serves
//! throughout, a first rollout that never becomes ready, and a failed switch
//! that is rolled back at its deadline. Each test runs in its own namespace
//! with its own operator.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::cli::get_row;
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, call, events_about, feature, first_answer, switch_conditions_until,
};
use eol_kind_tests::{condition, feature_ready, in_namespace, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The inventory feature with an implementation that fails one of its tests:
/// unknown SKUs report stock 1.
fn failing_tests_source() -> String {
    let broken = INVENTORY.replace("else 0}", "else 1}");
    assert_ne!(broken, INVENTORY);
    broken
}

/// The replicas of the ReplicaSet running configuration `hash`, if it exists.
async fn replicas_of(env: &eol_kind_tests::TestEnv, hash: &str) -> Option<i32> {
    let sets = env
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!("eol.dev/config-hash={hash}")))
        .await
        .unwrap();
    sets.items
        .first()
        .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
}

#[tokio::test]
async fn a_phase_switch_rolls_over_with_zero_failed_requests() {
    in_namespace("switch", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 2}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        let before = env.api::<Deployment>().get("inventory").await.unwrap();
        // The loop measures the switch, not kube-proxy catching up with the first pods.
        first_answer(&env, "inventory", "stock_level", serde_json::json!({"sku": "AB-1"})).await;

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
async fn a_first_rollout_that_never_becomes_ready_says_nothing_served_and_shows_its_phase() {
    in_namespace("first", |env| async move {
        // No spec.phase: the phase comes from the file. The tests never pass.
        env.create(&feature(
            "inventory",
            serde_json::json!({
                "source": {"inline": failing_tests_source()}, "tests": INVENTORY_TESTS,
                "replicas": 1, "rollout": {"progressDeadlineSeconds": 25}
            }),
        ))
        .await;
        // (First it may wait for the namespace's Redis to be ready.)
        let rolling =
            |c: &(String, String, String)| c.1 == "Progressing" && c.2.starts_with("rolling out");
        let (_, seen) = switch_conditions_until(&env, "inventory", READY_TIMEOUT, |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| rolling(&c))
        })
        .await;
        let (status, _, message) = seen.iter().find(|c| rolling(c)).cloned().unwrap();
        assert_eq!(status, "Unknown", "{message}");
        // Nothing served before this rollout: no "previous pods keep serving".
        assert!(
            message.ends_with("0/1 new pods ready; no pods served before"),
            "{message}"
        );

        // kubectl get shows where the feature is going before any pod is ready
        // (PHASE and DESIRED were blank).
        let row = get_row("features", &env.namespace, "inventory", true);
        assert_eq!(
            (
                row["PHASE"].as_str(),
                row["DESIRED"].as_str(),
                row["READY"].as_str()
            ),
            ("implementation", "implementation", "False"),
            "{row:?}"
        );

        let (_, seen) = switch_conditions_until(&env, "inventory", Duration::from_secs(120), |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| c.1 == "Failed")
        })
        .await;
        let (_, _, message) = seen.last().unwrap().clone();
        assert!(
            message.contains("an unknown SKU has no stock"),
            "the failing test is named: {message}"
        );
        assert!(
            message.ends_with("; no pods serve the feature"),
            "{message}"
        );
        let events = events_about(&env, "Feature", "inventory").await;
        let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
        assert!(
            reasons.contains(&"PhaseSwitchStarted") && reasons.contains(&"PhaseSwitchFailed"),
            "{events:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_switch_is_rolled_back_at_its_deadline_and_stays_rolled_back() {
    const DEADLINE: u64 = 30;
    in_namespace("rollback", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({
                "source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1,
                "rollout": {"autoRollback": true, "progressDeadlineSeconds": DEADLINE}
            }),
        ))
        .await;
        let features = env.api::<Feature>();
        let good = wait_for(&features, "inventory", READY_TIMEOUT, feature_ready).await;
        let good_config = good.status.unwrap().config.unwrap();
        let started = Instant::now();
        features
            .patch(
                "inventory",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"source": {"inline": failing_tests_source()}}})),
            )
            .await
            .unwrap();
        let (f, seen) = switch_conditions_until(&env, "inventory", Duration::from_secs(150), |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| c.1 == "RolledBack")
        })
        .await;
        let took = started.elapsed();
        let status = f.status.unwrap();
        let failed_config = status.failed_config.clone().expect("the failed configuration is on record");
        // While it rolled out, the old pod was ready and the new one not: 0 new
        // pods ready (the old ready pod was counted as new).
        let progressing: Vec<&String> = seen.iter().filter(|c| c.1 == "Progressing").map(|c| &c.2).collect();
        assert!(!progressing.is_empty(), "{seen:?}");
        for message in &progressing {
            assert!(
                message.contains(&format!("(config {failed_config}): 0/1 new pods ready; the previous pods (config {good_config}) keep serving")),
                "{message}"
            );
        }
        let (_, _, message) = condition(&status.conditions, "PhaseSwitch").unwrap();
        assert!(message.contains("an unknown SKU has no stock"), "the failing test is named: {message}");
        // One deadline, not two: the new ReplicaSet was scaled 1->0->1 and its clock restarted.
        eprintln!("rolled back {:.1}s after the switch (deadline {DEADLINE}s)", took.as_secs_f64());
        assert!(took < Duration::from_secs(DEADLINE * 3 / 2 + 10), "rolled back after {took:?}");
        // The status is written before the Deployment goes back (so a failed
        // rollback is retried), and the Deployment controller then scales the
        // failed ReplicaSet down: that takes a moment after `RolledBack`.
        let scaled_down = Instant::now();
        while replicas_of(&env, &failed_config).await.unwrap_or(0) != 0 {
            assert!(
                scaled_down.elapsed() < Duration::from_secs(30),
                "the failed configuration's ReplicaSet was not scaled down 30 s after RolledBack"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("its ReplicaSet was scaled down {:.1}s after RolledBack", scaled_down.elapsed().as_secs_f64());
        // And it stays rolled back for longer than another deadline.
        let watch_until = Instant::now() + Duration::from_secs(DEADLINE + 5);
        while Instant::now() < watch_until {
            assert_eq!(replicas_of(&env, &failed_config).await.unwrap_or(0), 0, "the failed configuration is rolled out again");
            let s = features.get("inventory").await.unwrap().status.unwrap();
            assert_eq!(condition(&s.conditions, "PhaseSwitch").unwrap().1, "RolledBack");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The events tell the story, naming the target of the switch.
        let events = events_about(&env, "Feature", "inventory").await;
        let started: Vec<&String> = events.iter().filter(|(r, _)| r == "PhaseSwitchStarted").map(|(_, n)| n).collect();
        assert!(started.iter().any(|n| n.contains(&failed_config)), "{events:?}");
        let rolled = events.iter().position(|(r, _)| r == "RolledBack").unwrap_or_else(|| panic!("no RolledBack event: {events:?}"));
        assert!(events[rolled].1.contains(&good_config), "{events:?}");
        assert!(
            events[rolled..].iter().all(|(r, _)| r != "PhaseSwitchStarted"),
            "no switch is announced for the rollback: {events:?}"
        );
        // The old pods served throughout, and the Deployment is back on the last good config.
        let back = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.config.as_deref() == Some(good_config.as_str()))
        })
        .await;
        assert_eq!(back.status.unwrap().last_good_config, Some(good_config.clone()));
        let resp = call(&env, "inventory", "stock_level", serde_json::json!({"sku": "NEW-1"})).await.unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["level"], 0, "the good implementation answers: {body}");
    })
    .await;
}
