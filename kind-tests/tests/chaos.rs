//! Chaos on the real local cluster (step 12): the control plane's components
//! restarted and the namespace's Redis pod deleted while Features switch
//! phase, FeatureRuns burst and callers call; the operator killed at random
//! points twenty times in a row; the model endpoint down for 30 s. Every
//! case prints its figures (`cargo test -p eol-kind-tests --test chaos --
//! --nocapture`); `EOL_CHAOS_LONG=1` runs the long form (every fault twice,
//! the second time as a crash, and longer).
//!
//! The tests of this file take turns (one lock): a restarted API server is
//! everyone's.
#![allow(clippy::unwrap_used)]

use eol_core::Phase;
use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::chaos::{
    Outcome, Relay, Request, Traffic, cluster_ip, long_form, node_ip, restart_component, settled,
    summarize,
};
use eol_kind_tests::fixtures::{
    CALL_LIMIT, INVENTORY, INVENTORY_TESTS, call, caller_token, feature, feature_run, first_answer,
    namespace_redis, redis_timeouts_allowed,
};
use eol_kind_tests::pressure::{fill_scratch, running_pod, waiting_feature};
use eol_kind_tests::{
    condition, feature_ready, in_namespace, in_namespace_with, run_finished, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One chaos case at a time: they share the control plane.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The faults of the first case, in order: the control plane's and node's
/// components (restarted by `cluster.sh restart`), then the Redis pod.
const FAULTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kubelet",
    "containerd",
    "redis-pod",
];

/// Whether `fault` runs: all of them unless `EOL_CHAOS_FAULTS` names some
/// (comma-separated), to replay one.
fn chosen(fault: &str) -> bool {
    std::env::var("EOL_CHAOS_FAULTS")
        .map_or(true, |list| list.split(',').any(|f| f.trim() == fault))
}

fn other(phase: Phase) -> Phase {
    if phase == Phase::Hybrid {
        Phase::Implementation
    } else {
        Phase::Hybrid
    }
}

async fn switch_to(env: &eol_kind_tests::TestEnv, name: &str, phase: Phase) {
    env.api::<Feature>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"phase": phase}})),
        )
        .await
        .unwrap_or_else(|e| panic!("switching {name} to {phase:?}: {e}"));
}

/// The Feature serves `phase` from `replicas` ready pods and its last switch is complete.
fn switched(f: &Feature, phase: Phase, replicas: i32) -> bool {
    let s = f.status.as_ref();
    s.is_some_and(|s| s.phase == Some(phase) && s.ready_replicas == replicas)
        && s.and_then(|s| condition(&s.conditions, "PhaseSwitch"))
            .is_none_or(|c| c.1 == "Complete")
        && feature_ready(f)
}

/// Waits until every FeatureRun of the namespace has finished; returns them.
async fn all_finished(
    env: &eol_kind_tests::TestEnv,
    count: usize,
    timeout: Duration,
) -> Vec<FeatureRun> {
    let runs = env.api::<FeatureRun>();
    let start = Instant::now();
    loop {
        if let Ok(list) = runs.list(&ListParams::default()).await {
            let finished = list.items.iter().filter(|r| run_finished(r)).count();
            if finished == count && list.items.len() == count {
                return list.items;
            }
            assert!(
                start.elapsed() < timeout,
                "{finished}/{count} runs finished after {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `(succeeded, failed with reason and message)` of finished runs.
fn outcomes_of(runs: &[FeatureRun]) -> (Vec<&FeatureRun>, Vec<(String, String, String)>) {
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for run in runs {
        let (s, reason, message) = run
            .status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Succeeded"))
            .expect("a finished run has its Succeeded condition");
        if s == "True" {
            succeeded.push(run);
        } else {
            failed.push((run.metadata.name.clone().unwrap(), reason, message));
        }
    }
    (succeeded, failed)
}

/// The failed calls of a loop, as `at status kind` lines.
fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(|o| format!("{:.1}s {:?} {:?}", o.at.as_secs_f64(), o.status, o.error))
        .collect()
}

/// The runner pods of the namespace's FeatureRuns.
async fn run_pods(env: &eol_kind_tests::TestEnv) -> Vec<Pod> {
    env.api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=eol-run"))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn control_plane_restarts_and_a_lost_redis_pod_under_switches_runs_and_calls_lose_nothing() {
    let _turn = SERIAL.lock().await;
    in_namespace("chaos-cp", |env| async move {
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 2}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            switched(f, Phase::Implementation, 2)
        })
        .await;
        first_answer(&env, "inventory", "stock_level", json!({"sku": "AB-1"})).await;
        // Data written before the faults, which the Redis pod's deletion must keep (AOF on its volume).
        let kept = call(
            &env,
            "inventory",
            "add_stock",
            json!({"sku": "KEPT-1", "quantity": 7}),
        )
        .await
        .unwrap();
        assert_eq!(kept.status(), 200);

        // Callers call all along; the Service's address and the token are
        // looked up once, so the loop needs no API server.
        let ip = cluster_ip(&env, "inventory").await;
        let request = Request {
            url: format!("http://{ip}/v1/operations/stock_level"),
            token: Some(caller_token(&env).await),
            body: Arc::new(|_| json!({"sku": "AB-1"})),
            timeout: Duration::from_secs(30),
        };
        let traffic = Traffic::start(
            request,
            CALLERS,
            Duration::from_millis(50),
            50_000,
            Duration::from_secs(1800),
        );
        // When each fault began and ended, on the callers' clock.
        let mut windows: Vec<Window> = Vec::new();

        let rounds = if long_form() { 2 } else { 1 };
        let per_fault = 6;
        let (mut phase, mut created) = (Phase::Implementation, 0);
        let mut figures = Vec::new();
        for round in 0..rounds {
            for fault in FAULTS.into_iter().filter(|f| chosen(f)) {
                // Each fault lands in a switch in progress and a burst of runs.
                phase = other(phase);
                switch_to(&env, "inventory", phase).await;
                for _ in 0..per_fault {
                    env.create(&feature_run(
                        &format!("burst-{created:03}"),
                        json!({"featureRef": "inventory", "operation": "add_stock",
                               "input": {"sku": "BURST-1", "quantity": 1}, "timeoutSeconds": 600}),
                    ))
                    .await;
                    created += 1;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                // The second round crashes the components (SIGKILL).
                let crash = round == 1;
                let began = traffic.began.elapsed();
                let took = if fault == "redis-pod" {
                    let started = Instant::now();
                    let pods = env.api::<Pod>();
                    // The second round deletes it at once (grace 0), as a node crash would.
                    let params = if crash {
                        DeleteParams::default().grace_period(0)
                    } else {
                        DeleteParams::default()
                    };
                    pods.delete("eol-redis-0", &params).await.unwrap();
                    // Back when its replacement is ready.
                    wait_for(&pods, "eol-redis-0", READY_TIMEOUT, |p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                    })
                    .await;
                    started.elapsed()
                } else {
                    restart_component(fault, crash).await
                };
                let switching = Instant::now();
                windows.push(Window {
                    fault: fault.to_owned(),
                    began,
                    ended: traffic.began.elapsed(),
                    took,
                });
                wait_for(&features, "inventory", READY_TIMEOUT, |f| {
                    switched(f, phase, 2)
                })
                .await;
                figures.push(format!(
                    "{fault}{}: back in {:.1} s, switch to {phase:?} complete {:.1} s later",
                    match (crash, fault) {
                        (false, _) => "",
                        (true, "redis-pod") => " (grace 0)",
                        (true, _) => " (SIGKILL)",
                    },
                    took.as_secs_f64(),
                    switching.elapsed().as_secs_f64()
                ));
            }
        }

        // The API server once more, with no switch under way: every serving
        // pod has reviewed the caller (called here pod by pod, as the
        // Service's callers reach them all), and answers from that review.
        let token = caller_token(&env).await;
        let serving =
            env.api::<Pod>()
                .list(&ListParams::default().labels(
                    "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=eol-feature",
                ))
                .await
                .unwrap();
        let mut known = 0;
        for pod in serving
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                continue;
            };
            let answer = reqwest::Client::new()
                .post(format!("http://{ip}:8080/v1/operations/stock_level"))
                .bearer_auth(&token)
                .json(&json!({"sku": "AB-1"}))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "serving pod {ip}");
            known += 1;
        }
        assert_eq!(known, 2, "both serving pods know the caller");
        let began = traffic.began.elapsed();
        let took = restart_component("kube-apiserver", false).await;
        windows.push(Window {
            fault: "kube-apiserver, no switch".to_owned(),
            began,
            ended: traffic.began.elapsed(),
            took,
        });
        figures.push(format!(
            "kube-apiserver with no switch under way: back in {:.1} s",
            took.as_secs_f64()
        ));
        // The cluster serves new Services again (DNS and kube-proxy) before the next test.
        let settling = settled(&env, json!({"app.kubernetes.io/name": "eol-redis"}), 6379).await;
        figures.push(format!(
            "a new Service resolved and routed {:.1} s after that",
            settling.as_secs_f64()
        ));

        let runs = all_finished(&env, created, Duration::from_secs(600)).await;
        let (succeeded, failed) = outcomes_of(&runs);
        // A run that did not succeed says why, in words a user can act on.
        for (name, reason, message) in &failed {
            assert!(
                !reason.is_empty() && message.len() > 10,
                "run {name} failed without a clear reason: {reason:?} {message:?}"
            );
        }
        // None doubled: each succeeded run saw a level of its own, and the
        // stock holds exactly one unit per succeeded run (none lost).
        let mut levels: Vec<i64> = succeeded
            .iter()
            .filter_map(|r| r.status.as_ref()?.summary.as_ref()?.output.as_ref()?["level"].as_i64())
            .collect();
        levels.sort();
        let distinct = levels.windows(2).all(|w| w[0] < w[1]);
        assert!(
            distinct && levels.len() == succeeded.len(),
            "levels of the succeeded runs: {levels:?}"
        );
        let mut redis = namespace_redis(&env).await;
        let stock: i64 = redis::cmd("GET")
            .arg("eol:inventory:stock:BURST-1")
            .query_async(&mut redis)
            .await
            .unwrap();
        let kept: i64 = redis::cmd("GET")
            .arg("eol:inventory:stock:KEPT-1")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(kept, 7, "the data written before the Redis pod's deletion");
        // A failed run may have added its unit before it failed (at least
        // once); it never adds two.
        let lost_or_doubled = stock - succeeded.len() as i64;
        assert!(
            (0..=failed.len() as i64).contains(&lost_or_doubled),
            "stock {stock} after {} succeeded and {} failed runs",
            succeeded.len(),
            failed.len()
        );
        // One pod per run: none started twice by a restarted control plane.
        let pods = run_pods(&env).await;
        let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
        for pod in &pods {
            let owner = pod
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| o.name.clone());
            *per_run.entry(owner.unwrap_or_default()).or_default() += 1;
        }
        assert_eq!(per_run.len(), created, "a pod for every run: {per_run:?}");
        assert!(
            per_run.values().all(|n| *n == 1),
            "pods per run: {per_run:?}"
        );
        // The last switch left one set of pods serving.
        let sets = env
            .api::<ReplicaSet>()
            .list(&ListParams::default())
            .await
            .unwrap();
        let serving: Vec<_> = sets
            .items
            .iter()
            .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
            .collect();
        assert_eq!(
            serving.len(),
            1,
            "one ReplicaSet serving after the last switch"
        );
        let deployment = env.api::<Deployment>().get("inventory").await.unwrap();
        assert_eq!(deployment.status.and_then(|s| s.ready_replicas), Some(2));

        let outcomes = traffic.stop().await;
        let summary = summarize(
            &outcomes,
            outcomes.last().map_or(1.0, |o| o.at.as_secs_f64()),
        );
        // A failed call belongs to the latest fault that had begun when it was
        // sent (the faults follow each other closely: a call sent as one
        // fault ends may be caught by the next).
        let mut failed_by_fault: BTreeMap<Option<usize>, Vec<&Outcome>> = BTreeMap::new();
        for o in outcomes.iter().filter(|o| !o.ok()) {
            failed_by_fault
                .entry(fault_of(&windows, o))
                .or_default()
                .push(o);
        }
        let name =
            |window: &Option<usize>| window.map_or("no fault", |i| windows[i].fault.as_str());
        eprintln!("chaos (control plane, Redis pod):");
        for line in &figures {
            eprintln!("  {line}");
        }
        eprintln!(
            "  runs: {} created, {} succeeded, {} failed {:?}; stock {stock}",
            created,
            succeeded.len(),
            failed.len(),
            failed
        );
        eprintln!(
            "  calls through it all: {} sent, {} failed {:?}, p50 {:?}, p99 {:?}",
            summary.calls,
            summary.failed,
            failed_by_fault
                .iter()
                .map(|(w, v)| (name(w), v.len()))
                .collect::<Vec<_>>(),
            summary.p50,
            summary.p99
        );
        assert!(
            summary.calls > 200,
            "the callers called throughout ({} calls)",
            summary.calls
        );
        // Only two faults may fail calls, each in one way. The API server's
        // absence: 503 `auth_unavailable` (with Retry-After), from serving
        // pods that came up in a switch during it and had not yet reviewed
        // the caller. A Redis pod away for longer than a call may run: a call
        // whose Redis command waited out that limit ends as 500 `timeout`
        // naming the Redis (seen in .ci/run: the pod was back in 14.7 s, where
        // it usually is in about 2 s; traced in tests/pods.rs's case of the
        // same fault: the Node authorizer refused the kubelet the new pod's PVC
        // until its graph had the pod, and the kubelet tried it 10 s later). Any other failure fails the case.
        for (window, calls) in &failed_by_fault {
            let allowed = |o: &Outcome| match window.map(|i| &windows[i]) {
                Some(w) if w.fault == "kube-apiserver" => {
                    o.status == Some(503)
                        && o.error
                            .as_deref()
                            .is_some_and(|e| e.starts_with("auth_unavailable"))
                }
                Some(w) if w.fault == "redis-pod" && w.took > CALL_LIMIT => {
                    o.status == Some(500)
                        && o.error.as_deref().is_some_and(|e| {
                            e.starts_with("timeout") && e.contains("feature's Redis reachable")
                        })
                }
                _ => false,
            };
            assert!(
                calls.iter().all(|o| allowed(o)),
                "calls failed during {}: {:?}",
                name(window),
                failures(&outcomes)
            );
            // Each caller's timeouts used up 10 s of the Redis pod's absence each.
            if let Some(w) = window.map(|i| &windows[i])
                && w.fault == "redis-pod"
            {
                let most = redis_timeouts_allowed(w.took, CALLERS);
                assert!(
                    calls.len() <= most,
                    "{} calls timed out while the Redis pod was away {:.1} s (at most {most})",
                    calls.len(),
                    w.took.as_secs_f64()
                );
            }
        }
    })
    .await;
}

/// The callers calling all through the control-plane case.
const CALLERS: usize = 2;

/// One fault of the control-plane case, on the callers' clock.
struct Window {
    /// The fault (`FAULTS`, or the API server's restart with no switch).
    fault: String,
    /// When it began.
    began: Duration,
    /// When the component was back (the Redis pod: its replacement ready).
    ended: Duration,
    /// How long it was away.
    took: Duration,
}

/// The window a failed call belongs to: the latest fault that had begun by
/// the time the call was sent (give or take 1 s) and had not been over for
/// more than 10 s.
fn fault_of(windows: &[Window], call: &Outcome) -> Option<usize> {
    windows.iter().rposition(|w| {
        call.at + Duration::from_secs(1) >= w.began && call.at <= w.ended + Duration::from_secs(10)
    })
}

/// The hash of the configuration a Deployment's pods run.
fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("eol.dev/config-hash")
        .cloned()
}

#[tokio::test]
async fn the_operator_killed_twenty_times_at_random_points_leaves_the_right_state() {
    let _turn = SERIAL.lock().await;
    // A short Lease: a killed leader leaves it held, and its successor waits it out.
    in_namespace_with("chaos-op", &[("EOL_LEASE_SECONDS", "3")], |env| async move {
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| switched(f, Phase::Implementation, 1)).await;

        // The operator dies (SIGKILL) at a random moment of its leadership,
        // 20 times in a row, and comes back after a random pause, while the
        // work below lands.
        let kills = 20;
        let killer = {
            let operator = env.operator.clone();
            tokio::spawn(async move {
                let log = operator.lock().await.log.clone();
                let leaderships = || std::fs::read_to_string(&log).unwrap_or_default().matches(" leading identity=").count();
                let mut lives = Vec::new();
                // Leaderships seen before the running operator's own.
                let mut earlier = 0;
                for _ in 0..kills {
                    // Kill a leader, not a replica waiting for the Lease.
                    let waiting = Instant::now();
                    while leaderships() <= earlier && waiting.elapsed() < Duration::from_secs(60) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let life = Duration::from_millis(rand::random_range(0..2000));
                    tokio::time::sleep(life).await;
                    operator.lock().await.kill().await;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..800))).await;
                    earlier = leaderships();
                    operator.lock().await.restart();
                    lives.push(life);
                }
                lives
            })
        };
        let count = if long_form() { 60 } else { 30 };
        for i in 0..count {
            env.create(&feature_run(
                &format!("run-{i:03}"),
                json!({"featureRef": "inventory", "operation": "add_stock",
                       "input": {"sku": "KILL-1", "quantity": 1}, "timeoutSeconds": 900}),
            ))
            .await;
            if i == count / 3 {
                switch_to(&env, "inventory", Phase::Hybrid).await;
            }
            if i == 2 * count / 3 {
                env.create(&feature(
                    "second",
                    json!({"source": {"inline": INVENTORY.replace("name: inventory", "name: second")},
                           "tests": INVENTORY_TESTS.replace("feature: inventory", "feature: second"), "replicas": 1}),
                ))
                .await;
            }
            // Spread over the kills (about 4 s each: the Lease, a life, a pause).
            tokio::time::sleep(Duration::from_millis(2000)).await;
        }
        let lives = killer.await.unwrap();
        // The Lease as the operator wrote it: held 3 s without renewal (`EOL_LEASE_SECONDS`).
        let lease = env
            .api::<k8s_openapi::api::coordination::v1::Lease>()
            .get("eol-operator")
            .await
            .unwrap();
        assert_eq!(lease.spec.and_then(|s| s.lease_duration_seconds), Some(3));
        let settled = Instant::now();

        // The final state: every run succeeded once, with one pod; the switch
        // done; the Feature created among the kills serving.
        let runs = all_finished(&env, count, Duration::from_secs(900)).await;
        let (succeeded, failed) = outcomes_of(&runs);
        assert!(failed.is_empty(), "runs that failed: {failed:?}");
        let mut levels: Vec<i64> = succeeded
            .iter()
            .filter_map(|r| r.status.as_ref()?.summary.as_ref()?.output.as_ref()?["level"].as_i64())
            .collect();
        levels.sort();
        assert_eq!(levels, (1..=count as i64).collect::<Vec<_>>(), "each run added its unit once");
        let pods = run_pods(&env).await;
        assert_eq!(pods.len(), count, "exactly one pod per run");
        for (name, phase) in [("inventory", Phase::Hybrid), ("second", Phase::Implementation)] {
            let f = wait_for(&features, name, READY_TIMEOUT, |f| switched(f, phase, 1)).await;
            let deployment = env.api::<Deployment>().get(name).await.unwrap();
            assert_eq!(config_hash(&deployment), f.status.unwrap().config, "{name} runs what its status says");
            let sets = env
                .api::<ReplicaSet>()
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
                .await
                .unwrap();
            let serving = sets.items.iter().filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0).count();
            assert_eq!(serving, 1, "{name}: one ReplicaSet serving");
        }
        let shortest = lives.iter().min().unwrap();
        let longest = lives.iter().max().unwrap();
        eprintln!(
            "chaos (operator): killed {kills} times {shortest:?}..{longest:?} into its leadership; {count} runs succeeded once each, \
             the switch and the new Feature done, all settled {:.1} s after the last restart",
            settled.elapsed().as_secs_f64()
        );
    })
    .await;
}

/// A prototyped operation (the model answers) and an implemented one, with
/// no tests: the pods are ready without the model.
const NOTES: &str = "---\nname: notes\nphase: hybrid\n---\n# Notes\n\n## Operations\n\n### summarize\nPhase: prototyping\n\nSummarizes a text in one short sentence.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  summary: {type: string}\nrequired: [summary]\n```\n\n### count\nPhase: implementation\n\nCounts a call.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  calls: {type: integer}\nrequired: [calls]\n```\n\n```python\ndef count():\n    return {\"calls\": redis.incr(\"calls\")}\n```\n";

#[tokio::test]
async fn prototyped_calls_fail_with_one_kind_while_the_model_is_down_and_recover() {
    let _turn = SERIAL.lock().await;
    let url = std::env::var("EOL_LLM_BASE_URL").expect(
        "EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model \
         (EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start) for this test",
    );
    let target = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    in_namespace("chaos-llm", |env| async move {
        // The pods reach the local model through a relay the test can take down.
        let mut relay = Relay::start(&target).await;
        let host = node_ip(&env.client).await;
        env.create(&feature(
            "notes",
            json!({"source": {"inline": NOTES}, "replicas": 1, "access": {"anonymous": true},
                   "model": {"baseUrl": format!("http://{host}:{}/v1", relay.port), "name": "smollm2"}}),
        ))
        .await;
        wait_for(&env.api::<Feature>(), "notes", READY_TIMEOUT, feature_ready).await;
        first_answer(&env, "notes", "count", json!({})).await;
        let ip = cluster_ip(&env, "notes").await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        // Distinct texts: no cache answers for the model.
        let mut n = 0;
        let mut call = async |op: &str| {
            n += 1;
            let body = if op == "summarize" {
                json!({"text": format!("Ticket {n}: the parcel came two days late and the box was crushed.")})
            } else {
                json!({})
            };
            let sent = Instant::now();
            let resp = http.post(format!("http://{ip}/v1/operations/{op}")).json(&body).send().await;
            let (status, kind) = match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    (Some(status), v["error"]["kind"].as_str().map(str::to_owned))
                }
                Err(e) => (None, Some(format!("transport: {e}"))),
            };
            (status, kind, sent.elapsed())
        };
        for _ in 0..2 {
            let (status, kind, _) = call("summarize").await;
            assert_eq!(status, Some(200), "with the model up: {kind:?}");
        }

        relay.down().await;
        let down = Instant::now();
        let (mut during, mut counted) = (Vec::new(), 0);
        while down.elapsed() < Duration::from_secs(30) {
            during.push(call("summarize").await);
            let (status, _, _) = call("count").await;
            counted += usize::from(status == Some(200));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        relay.up().await;
        let up = Instant::now();
        let recovered = loop {
            let (status, kind, _) = call("summarize").await;
            if status == Some(200) {
                break up.elapsed();
            }
            assert!(up.elapsed() < Duration::from_secs(120), "no recovery 120 s after the model came back: {status:?} {kind:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for _ in 0..2 {
            let (status, kind, _) = call("summarize").await;
            assert_eq!(status, Some(200), "after the model came back: {kind:?}");
        }

        let kinds: std::collections::BTreeSet<_> = during.iter().map(|(s, k, _)| (*s, k.clone())).collect();
        let slowest = during.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
        eprintln!(
            "chaos (model down 30 s): {} prototyped calls failed as {kinds:?}, slowest {slowest:?}; \
             {counted} implemented calls answered meanwhile; recovered {recovered:?} after the model came back",
            during.len()
        );
        assert!(during.len() >= 5, "calls were made while the model was down: {}", during.len());
        assert_eq!(kinds.len(), 1, "one status and kind while the model is down: {kinds:?}");
        let (status, kind) = kinds.into_iter().next().unwrap();
        assert_eq!((status, kind.as_deref()), (Some(502), Some("llm_unreachable")));
        assert_eq!(counted, during.len(), "the implemented operation answered throughout");
    })
    .await;
}

#[tokio::test]
async fn a_runner_pod_the_kubelet_evicts_is_retried_or_its_run_ends_evicted() {
    let _turn = SERIAL.lock().await;
    in_namespace("chaos-evict", |env| async move {
        // The runs' pods wait on a model that never answers (for the client's
        // 60 s timeout), long enough to be evicted.
        let _model = waiting_feature(&env).await;
        for (name, retries) in [("once", 0), ("twice", 1)] {
            env.create(&feature_run(
                name,
                json!({"featureRef": "ask", "operation": "answer", "input": {"question": "why?"},
                       "retries": retries, "timeoutSeconds": 600}),
            ))
            .await;
        }
        let runs = env.api::<FeatureRun>();
        let started = Instant::now();
        for name in ["once", "twice"] {
            let pod = running_pod(&env, name, 1).await;
            // Over the 256Mi cap of the pod's /tmp.
            fill_scratch(&env.namespace, &pod, 300).await;
        }
        // No retry left: the run ends Evicted, in the kubelet's words.
        let once = wait_for(&runs, "once", READY_TIMEOUT, run_finished).await;
        let took = started.elapsed();
        let (status, reason, message) = condition(&once.status.as_ref().unwrap().conditions, "Succeeded").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Evicted"), "{message}");
        assert!(message.starts_with("the node evicted the runner pod: "), "{message}");
        let pod = env.api::<Pod>().get(once.status.as_ref().unwrap().pod_name.as_ref().unwrap()).await.unwrap();
        let pod_status = pod.status.unwrap();
        assert_eq!(pod_status.reason.as_deref(), Some("Evicted"), "the kubelet evicted the pod");
        assert!(message.contains(pod_status.message.as_deref().unwrap_or("?")), "{message}");
        // A retry left: the run goes on in a new pod.
        let twice = wait_for(&runs, "twice", READY_TIMEOUT, |r| {
            r.status.as_ref().and_then(|s| s.pod_name.as_deref()).is_some_and(|p| p.ends_with("-2"))
        })
        .await;
        let (_, reason, note) = condition(&twice.status.as_ref().unwrap().conditions, "Succeeded").unwrap();
        assert!(reason == "Retrying" || reason == "Running" || reason == "Pending", "{reason}: {note}");
        let pods = run_pods(&env).await;
        let evicted = pods.iter().filter(|p| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")).count();
        assert_eq!(evicted, 2, "both first pods were evicted");
        eprintln!("chaos (eviction): runs' pods evicted for /tmp use; `once` ended Evicted after {took:?} ({message:?}); `twice` went on in pod {}", twice.status.as_ref().unwrap().pod_name.as_ref().unwrap());
        // Done: cancel the run still waiting on the hung model.
        runs.patch("twice", &PatchParams::default(), &Patch::Merge(json!({"spec": {"cancel": true}}))).await.unwrap();
        wait_for(&runs, "twice", READY_TIMEOUT, run_finished).await;
    })
    .await;
}
