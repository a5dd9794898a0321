//! The shadow decisions, on fixtures of the inventory example.

use super::*;
use crate::conditions;
use crate::pod::ModelSettings;
use crate::source::prepare;
use eol_core::shadow::{Disagreement, OperationTally, Verdict};

const SOURCE: &str = include_str!("../../../../features/examples/inventory.eol");

fn feature(rollout: serde_json::Value) -> Feature {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1", "generation": 2},
        "spec": {"source": {"inline": SOURCE}, "replicas": 2, "rollout": rollout}
    }))
    .expect("a Feature")
}

fn shadowed() -> Feature {
    feature(
        serde_json::json!({"strategy": "Shadow", "shadow": {"minSamples": 20, "minAgreement": 95.0, "window": "10m"}}),
    )
}

fn prepared(f: &Feature) -> Prepared {
    prepare(f, SOURCE, &ModelSettings::default()).expect("valid")
}

fn serving(operation_phases: &[(&str, &str)]) -> FeatureStatus {
    FeatureStatus {
        last_good_config: Some("good000000".into()),
        config: Some("good000000".into()),
        operation_phases: operation_phases
            .iter()
            .map(|(o, p)| ((*o).to_owned(), (*p).to_owned()))
            .collect(),
        ..FeatureStatus::default()
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_770_000_000 + seconds).expect("a time")
}

fn tally(id: &str, ops: &[(&str, u64, u64, u64)]) -> Tally {
    Tally {
        id: id.into(),
        operations: ops
            .iter()
            .map(|(op, agree, disagree, error)| OperationTally {
                operation: (*op).into(),
                agree: *agree,
                disagree: *disagree,
                error: *error,
                ..OperationTally::default()
            })
            .collect(),
        disagreements: vec![Disagreement {
            operation: "reserve".into(),
            at: "2026-12-03T10:00:00Z".into(),
            verdict: Verdict::Disagree,
            input: Some(r#"{"sku":"A-10","quantity":5}"#.into()),
            serving: Some(r#"{"ok":true}"#.into()),
            candidate: Some(r#"{"ok":false}"#.into()),
            reason: "ok: values differ".into(),
        }],
    }
}

#[test]
fn a_shadow_runs_only_under_the_shadow_strategy_with_another_configuration_serving() {
    let f = shadowed();
    let p = prepared(&f);
    assert!(wanted(&f, &serving(&[]), &p));
    // The first rollout has nothing to compare with.
    assert!(!wanted(&f, &FeatureStatus::default(), &p));
    // The rolling strategy (the default) never shadows.
    let rolling = feature(serde_json::json!({"autoRollback": true}));
    assert!(!wanted(&rolling, &serving(&[]), &prepared(&rolling)));
    // Already serving this configuration.
    let mut same = serving(&[]);
    same.last_good_config = Some(p.config_hash.clone());
    assert!(!wanted(&f, &same, &p));
    // Held before: not retried until the spec changes.
    let mut held = serving(&[]);
    held.failed_config = Some(p.config_hash.clone());
    assert!(!wanted(&f, &held, &p));
    // Promoted: the rolling update takes over.
    let mut promoted = serving(&[]);
    promoted.shadow = Some(ShadowStatus {
        candidate: p.config_hash.clone(),
        state: state::PROMOTED.into(),
        ..ShadowStatus::default()
    });
    assert!(!wanted(&f, &promoted, &p));
}

#[test]
fn the_operations_shadowed_are_those_whose_phase_changes() {
    let f = shadowed();
    let p = prepared(&f);
    let spec = settings(&f).expect("shadow settings");
    let previous = serving(&[
        ("add_stock", "implementation"),
        ("stock_level", "implementation"),
        ("reserve", "prototyping"),
    ]);
    assert_eq!(operations(&spec, &previous, &p), ["reserve"]);
    // Nothing changes phase (code changed): every operation.
    let same = serving(&[
        ("add_stock", "implementation"),
        ("stock_level", "implementation"),
        ("reserve", "implementation"),
    ]);
    assert!(operations(&spec, &same, &p).is_empty());
    let listed = ShadowSpec {
        operations: vec!["add_stock".into()],
        ..spec
    };
    assert_eq!(operations(&listed, &previous, &p), ["add_stock"]);
}

#[test]
fn a_shadow_in_progress_keeps_its_id_and_a_new_one_starts_afresh() {
    let f = shadowed();
    let p = prepared(&f);
    let started = begin(&serving(&[]), &p, at(0));
    assert_eq!(
        started.id,
        format!("{}-{}", p.config_hash, at(0).as_second())
    );
    assert_eq!(started.state, state::STARTING);
    let mut previous = serving(&[]);
    previous.shadow = Some(ShadowStatus {
        state: state::SAMPLING.into(),
        ..started.clone()
    });
    assert_eq!(begin(&previous, &p, at(60)).id, started.id);
    // A held shadow is over; trying the same configuration again (after
    // the spec changed back and forth) counts from zero.
    previous.shadow = Some(ShadowStatus {
        state: state::HELD.into(),
        ..started.clone()
    });
    assert_ne!(begin(&previous, &p, at(60)).id, started.id);
}

#[test]
fn the_candidate_is_selected_apart_and_carries_the_shadow_settings() {
    let f = feature(
        serde_json::json!({"strategy": "Shadow", "shadow": {"samplePercent": 25.0, "redactInputs": true, "timeoutSeconds": 3}}),
    );
    let p = prepared(&f);
    let spec = settings(&f).expect("shadow settings");
    let config = OperatorConfig::default();
    let desired = children::pod_template(
        &f,
        &p,
        &ModelSettings::default(),
        crate::redis::url_secret(&config),
        &config,
    );
    let status = begin(&serving(&[]), &p, at(0));
    let template = candidate_template(&f, desired, &spec, &status, &["reserve".into()]);
    let d = serde_json::to_value(candidate_deployment(&f, template, &config)).expect("json");
    assert_eq!(d["metadata"]["name"], "inventory-candidate");
    assert_eq!(d["spec"]["replicas"], 1);
    let selector = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(selector["app.kubernetes.io/name"], CANDIDATE_COMPONENT);
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], CANDIDATE_COMPONENT);
    // The Feature's Service selects name=eol-feature: never the candidate.
    let main = serde_json::to_value(children::service(&f)).expect("json");
    assert_ne!(
        main["spec"]["selector"]["app.kubernetes.io/name"],
        labels["app.kubernetes.io/name"]
    );
    let env: BTreeMap<String, String> = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(env[env::ID], status.id);
    assert_eq!(env[env::URL], "http://inventory-candidate.shop.svc:8080");
    assert_eq!(env[env::SAMPLE_PERCENT], "25");
    assert_eq!(env[env::OPERATIONS], "reserve");
    assert_eq!(env[env::PREVIEW_BYTES], "0", "redactInputs shows no input");
    assert_eq!(env[env::TIMEOUT_SECONDS], "3");
    let s = serde_json::to_value(candidate_service(&f)).expect("json");
    assert_eq!(s["metadata"]["name"], "inventory-candidate");
    assert_eq!(
        s["spec"]["selector"]["app.kubernetes.io/name"],
        CANDIDATE_COMPONENT
    );
    assert_eq!(s["spec"]["ports"][0]["port"], 8080);
}

fn sampled(ops: &[(&str, u64, u64, u64)], started: i64) -> ShadowStatus {
    let mut s = ShadowStatus {
        candidate: "cand000000".into(),
        id: "cand000000-1".into(),
        started_at: Some(Time(at(started))),
        state: state::SAMPLING.into(),
        ..ShadowStatus::default()
    };
    fill(&mut s, tally("cand000000-1", ops), &[]);
    s
}

#[test]
fn the_verdict_is_taken_at_min_samples_per_operation_and_overall() {
    let spec = settings(&shadowed()).expect("shadow settings");
    let now = at(60);
    assert!(matches!(
        evaluate(&spec, &sampled(&[("reserve", 19, 0, 0)], 0), now),
        Outcome::Wait(_)
    ));
    assert!(matches!(
        evaluate(&spec, &sampled(&[("reserve", 20, 0, 0)], 0), now),
        Outcome::Promote(_)
    ));
    // 19 of 20 is exactly 95%.
    assert!(matches!(
        evaluate(&spec, &sampled(&[("reserve", 19, 1, 0)], 0), now),
        Outcome::Promote(_)
    ));
    // Failures of the candidate count against it.
    let Outcome::Hold(why) = evaluate(&spec, &sampled(&[("reserve", 16, 2, 2)], 0), now) else {
        panic!("held")
    };
    assert_eq!(
        why,
        "the candidate agreed below minAgreement 95%: reserve agreed on 80.0% of 20"
    );
    // Overall 96%, but one operation is far off.
    let Outcome::Hold(why) = evaluate(
        &spec,
        &sampled(&[("reserve", 45, 0, 0), ("add_stock", 3, 2, 0)], 0),
        now,
    ) else {
        panic!("held")
    };
    assert!(why.contains("add_stock agreed on 60.0% of 5"), "{why}");
    // Too few samples by the end of the window.
    let Outcome::Hold(why) = evaluate(&spec, &sampled(&[("reserve", 5, 0, 0)], 0), at(600)) else {
        panic!("held")
    };
    assert!(
        why.starts_with("only 5 of minSamples 20 samples came within the window of 10m"),
        "{why}"
    );
    assert_eq!(window("90s"), Some(Duration::from_secs(90)));
    assert_eq!(window("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(window("10"), None);
}

fn observed(rollout: Rollout, tally: Result<Tally, String>) -> ShadowObserved {
    ShadowObserved {
        rollout,
        tally,
        operations: vec!["reserve".into()],
        ready_replicas: 2,
        serving: "good000000".into(),
    }
}

fn decided(previous: &FeatureStatus, seen: ShadowObserved, now: Timestamp) -> Decision {
    decided_for(&shadowed(), previous, seen, now)
}

fn decided_for(
    f: &Feature,
    previous: &FeatureStatus,
    seen: ShadowObserved,
    now: Timestamp,
) -> Decision {
    let p = prepared(f);
    let spec = settings(f).expect("shadow settings");
    let status = begin(previous, &p, now);
    let id = status.id.clone();
    let seen = ShadowObserved {
        tally: seen.tally.map(|t| Tally { id, ..t }),
        ..seen
    };
    let base = FeatureStatus {
        observed_generation: Some(2),
        ..previous.clone()
    };
    decide(
        Decision {
            status: base,
            events: Vec::new(),
            roll_back_to: None,
            requeue: Requeue::OnChange,
        },
        f,
        &p,
        &spec,
        status,
        seen,
        now,
    )
}

#[test]
fn a_disagreeing_candidate_is_held_with_its_disagreements_and_the_old_pods_keep_serving() {
    let previous = serving(&[("reserve", "prototyping")]);
    let starting = decided(
        &previous,
        observed(
            Rollout::Progressing {
                new_ready: 0,
                wanted: 1,
            },
            Err("not ready".into()),
        ),
        at(0),
    );
    let switch =
        conditions::get(&starting.status.conditions, condition::PHASE_SWITCH).expect("PhaseSwitch");
    assert_eq!(
        (switch.status.as_str(), switch.reason.as_str()),
        ("Unknown", "Shadowing")
    );
    assert_eq!(starting.events[0].reason, shadow_event::STARTED);
    assert_eq!(starting.status.config.as_deref(), Some("good000000"));

    let held = decided(
        &starting.status,
        observed(Rollout::Complete, Ok(tally("", &[("reserve", 16, 4, 0)]))),
        at(30),
    );
    let switch =
        conditions::get(&held.status.conditions, condition::PHASE_SWITCH).expect("PhaseSwitch");
    assert_eq!(
        (switch.status.as_str(), switch.reason.as_str()),
        ("False", "Disagreement")
    );
    assert!(
        switch
            .message
            .contains(r#"reserve {"sku":"A-10","quantity":5}: ok: values differ"#),
        "{}",
        switch.message
    );
    let shadow = held.status.shadow.as_ref().expect("shadow status");
    assert_eq!(shadow.state, state::HELD);
    assert_eq!(shadow.agreement.as_deref(), Some("80.0% of 20"));
    assert_eq!(shadow.operations[0].samples, 20);
    assert_eq!(shadow.disagreements.len(), 1);
    assert_eq!(
        held.status.failed_config.as_deref(),
        Some(shadow.candidate.as_str())
    );
    assert_eq!(held.status.config.as_deref(), Some("good000000"));
    assert!(
        held.events
            .iter()
            .any(|e| e.warning && e.reason == "Disagreement")
    );
    // The next reconcile sees the configuration held back, keeps the
    // reason, and raises nothing new.
    let f = shadowed();
    let p = prepared(&f);
    assert!(decide::held_back(&held.status, &p));
    let again = decide::rollout(
        Decision {
            status: held.status.clone(),
            events: Vec::new(),
            roll_back_to: None,
            requeue: Requeue::OnChange,
        },
        &f,
        &held.status,
        &p,
        decide::Observed {
            target: "good000000".into(),
            rollout: Rollout::Complete,
            pods_say: None,
            ready_replicas: 2,
        },
    );
    let switch =
        conditions::get(&again.status.conditions, condition::PHASE_SWITCH).expect("PhaseSwitch");
    assert_eq!(switch.reason, "Disagreement");
    assert!(again.events.is_empty());
}

#[test]
fn an_agreeing_candidate_is_promoted_once() {
    let previous = serving(&[("reserve", "prototyping")]);
    let sampling = decided(
        &previous,
        observed(Rollout::Complete, Ok(tally("", &[("reserve", 10, 0, 0)]))),
        at(0),
    );
    let shadow = sampling.status.shadow.as_ref().expect("shadow");
    assert_eq!(shadow.state, state::SAMPLING);
    assert_eq!(shadow.started_at, Some(Time(at(0))));
    let switch =
        conditions::get(&sampling.status.conditions, condition::PHASE_SWITCH).expect("PhaseSwitch");
    assert!(
        switch
            .message
            .contains("10/20 samples, 100.0% agreed, 600s of the window left"),
        "{}",
        switch.message
    );
    let promoted = decided(
        &sampling.status,
        observed(Rollout::Complete, Ok(tally("", &[("reserve", 20, 0, 0)]))),
        at(90),
    );
    let shadow = promoted.status.shadow.as_ref().expect("shadow");
    assert_eq!(shadow.state, state::PROMOTED);
    assert_eq!(
        shadow.started_at,
        Some(Time(at(0))),
        "the window starts once"
    );
    assert!(
        promoted
            .events
            .iter()
            .any(|e| e.reason == shadow_event::PROMOTED)
    );
    assert!(promoted.status.failed_config.is_none());
    let f = shadowed();
    assert!(
        !wanted(&f, &promoted.status, &prepared(&f)),
        "the rolling update takes over"
    );
}

#[test]
fn a_candidate_that_never_becomes_ready_fails_the_switch() {
    let previous = serving(&[("reserve", "prototyping")]);
    let failed = decided(
        &previous,
        observed(
            Rollout::Failed {
                message: "ReplicaSet timed out".into(),
            },
            Err("not ready".into()),
        ),
        at(0),
    );
    let switch =
        conditions::get(&failed.status.conditions, condition::PHASE_SWITCH).expect("PhaseSwitch");
    assert_eq!(
        (switch.status.as_str(), switch.reason.as_str()),
        ("False", "Failed")
    );
    assert!(failed.status.failed_config.is_some());
    assert_eq!(
        failed.status.shadow.as_ref().map(|s| s.state.as_str()),
        Some(state::FAILED)
    );
}

fn canaried() -> Feature {
    feature(serde_json::json!({
        "strategy": "Canary",
        "shadow": {"minSamples": 10, "minAgreement": 95.0, "window": "30m"},
        "canary": {"steps": [10, 50], "stepDuration": "1m", "minRequests": 20, "maxErrorPercent": 5.0}
    }))
}

/// A tally of `reserve` with `agree` agreeing samples and `routed`/`failed` forwarded calls.
fn canary_tally(agree: u64, routed: u64, failed: u64) -> Tally {
    Tally {
        id: String::new(),
        operations: vec![OperationTally {
            operation: "reserve".into(),
            agree,
            canary_routed: routed,
            canary_failed: failed,
            ..OperationTally::default()
        }],
        disagreements: Vec::new(),
    }
}

#[test]
fn a_canary_steps_up_then_promotes_and_its_weight_ends_at_0() {
    let f = canaried();
    let previous = serving(&[("reserve", "prototyping")]);
    // Ready: the first step starts at 10%.
    let first = decided_for(
        &f,
        &previous,
        observed(Rollout::Complete, Ok(canary_tally(0, 0, 0))),
        at(0),
    );
    let shadow = first.status.shadow.clone().expect("a shadow");
    let canary = shadow.canary.clone().expect("a canary");
    assert_eq!((canary.step, canary.weight), (0, 10.0));
    let switch = conditions::get(&first.status.conditions, condition::PHASE_SWITCH).expect("set");
    assert_eq!(switch.reason, shadow_reason::CANARY);
    // 25 calls but under a minute: stay.
    let waiting = decided_for(
        &f,
        &first.status,
        observed(Rollout::Complete, Ok(canary_tally(5, 25, 0))),
        at(30),
    );
    let canary = waiting
        .status
        .shadow
        .clone()
        .and_then(|s| s.canary)
        .expect("a canary");
    assert_eq!((canary.step, canary.routed), (0, 25));
    assert_eq!(
        canary.progress.as_deref(),
        Some("10% of calls, 0.0% of 25 failed")
    );
    // A minute and 25 calls: on to 50%, announced.
    let stepped = decided_for(
        &f,
        &waiting.status,
        observed(Rollout::Complete, Ok(canary_tally(8, 25, 1))),
        at(61),
    );
    let canary = stepped
        .status
        .shadow
        .clone()
        .and_then(|s| s.canary)
        .expect("a canary");
    assert_eq!(
        (canary.step, canary.weight, canary.step_start_routed),
        (1, 50.0, 25)
    );
    assert!(
        stepped
            .events
            .iter()
            .any(|e| e.reason == shadow_event::CANARY_STEP),
        "{:?}",
        stepped.events
    );
    // The last step needs its own 20 calls and minute.
    let early = decided_for(
        &f,
        &stepped.status,
        observed(Rollout::Complete, Ok(canary_tally(12, 40, 1))),
        at(130),
    );
    assert_eq!(
        early.status.shadow.as_ref().map(|s| s.state.as_str()),
        Some(state::SAMPLING)
    );
    let done = decided_for(
        &f,
        &early.status,
        observed(Rollout::Complete, Ok(canary_tally(12, 45, 1))),
        at(125 + 61),
    );
    let shadow = done.status.shadow.clone().expect("a shadow");
    assert_eq!(shadow.state, state::PROMOTED);
    assert_eq!(shadow.canary.map(|c| c.weight), Some(0.0));
    assert!(
        done.events
            .iter()
            .any(|e| e.reason == shadow_event::CANARY_PROMOTED),
        "{:?}",
        done.events
    );
    // No rollback is needed: the serving Deployment kept its configuration.
    assert_eq!(done.status.config.as_deref(), Some("good000000"));
}

#[test]
fn a_canary_that_fails_too_many_calls_is_rolled_back_and_held() {
    let f = canaried();
    let previous = serving(&[("reserve", "prototyping")]);
    let first = decided_for(
        &f,
        &previous,
        observed(Rollout::Complete, Ok(canary_tally(0, 0, 0))),
        at(0),
    );
    // 2 of 19 failed: under minRequests, no verdict yet.
    let early = decided_for(
        &f,
        &first.status,
        observed(Rollout::Complete, Ok(canary_tally(3, 19, 2))),
        at(20),
    );
    assert_eq!(
        early.status.shadow.as_ref().map(|s| s.state.as_str()),
        Some(state::SAMPLING)
    );
    // 2 of 20 is 10%, over maxErrorPercent 5.
    let failed = decided_for(
        &f,
        &early.status,
        observed(Rollout::Complete, Ok(canary_tally(3, 20, 2))),
        at(25),
    );
    let shadow = failed.status.shadow.clone().expect("a shadow");
    assert_eq!(shadow.state, state::ROLLED_BACK);
    assert_eq!(shadow.canary.map(|c| c.weight), Some(0.0));
    let switch = conditions::get(&failed.status.conditions, condition::PHASE_SWITCH).expect("set");
    assert_eq!(switch.status, "False");
    assert_eq!(switch.reason, shadow_reason::CANARY_ERRORS);
    assert!(
        switch
            .message
            .starts_with("the candidate failed 2 of 20 live calls (10.0%, maxErrorPercent 5%)"),
        "{}",
        switch.message
    );
    assert_eq!(
        failed.status.failed_config.as_deref(),
        Some(shadow.candidate.as_str())
    );
    assert!(
        failed
            .events
            .iter()
            .any(|e| e.warning && e.reason == shadow_event::CANARY_ROLLED_BACK),
        "{:?}",
        failed.events
    );
}

#[test]
fn a_disagreeing_canary_is_rolled_back_with_reason_disagreement() {
    let f = canaried();
    let previous = serving(&[("reserve", "prototyping")]);
    let first = decided_for(
        &f,
        &previous,
        observed(Rollout::Complete, Ok(canary_tally(0, 0, 0))),
        at(0),
    );
    let mut t = canary_tally(7, 5, 0);
    t.operations[0].disagree = 3;
    let held = decided_for(
        &f,
        &first.status,
        observed(Rollout::Complete, Ok(t)),
        at(10),
    );
    let shadow = held.status.shadow.clone().expect("a shadow");
    assert_eq!(shadow.state, state::ROLLED_BACK);
    let switch = conditions::get(&held.status.conditions, condition::PHASE_SWITCH).expect("set");
    assert_eq!(
        (switch.status.as_str(), switch.reason.as_str()),
        ("False", shadow_reason::DISAGREEMENT)
    );
    assert!(
        switch.message.contains("the canary is rolled back"),
        "{}",
        switch.message
    );
}

#[test]
fn a_canary_candidate_gets_the_replicas_its_largest_step_needs() {
    assert_eq!(
        candidate_replicas(&shadowed()),
        1,
        "a shadow samples with one pod"
    );
    let sized = |replicas: i32, steps: serde_json::Value| {
        let mut f = feature(serde_json::json!({"strategy": "Canary", "canary": {"steps": steps}}));
        f.spec.replicas = replicas;
        candidate_replicas(&f)
    };
    assert_eq!(sized(2, serde_json::json!([10, 50])), 1);
    assert_eq!(sized(3, serde_json::json!([10, 50])), 2);
    assert_eq!(sized(10, serde_json::json!([5, 25, 75])), 8);
    assert_eq!(sized(0, serde_json::json!([50])), 1, "at least one pod");
}
