//! Async calls on the cluster: a thousand calls queued on the namespace's
//! Redis stream while a serving pod's process is killed (SIGKILL, as a crash
//! would) in the middle of its calls. The other pod takes the killed pod's
//! calls over (`XAUTOCLAIM`); every call is answered exactly once, and only
//! the calls the killed pod was running ran twice.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, caller_token, feature, first_answer, namespace_redis,
    service_account_with_access,
};
use eol_kind_tests::{feature_ready, in_namespace, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CALLS: usize = 1000;
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Inventory whose `add_stock` takes 50 ms, so the queue is deep and every
/// worker busy when the pod is killed.
fn slow_inventory() -> String {
    let line = r#"    level = redis.incr(f"stock:{sku}", quantity)"#;
    let source = INVENTORY.replace(
        line,
        &format!("    import time\n    time.sleep(0.05)\n{line}"),
    );
    assert_ne!(source, INVENTORY, "the fixture changed");
    source
}

/// Kills the `eol serve` process of `pod` with SIGKILL: no graceful stop, so
/// the calls it runs stay pending in the consumer group. The local cluster's
/// containers are processes of this host, found by their `HOSTNAME` (the pod name).
fn kill_serving_process(pod: &str) -> i32 {
    let wanted = format!("HOSTNAME={pod}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !args.iter().any(|a| *a == b"serve") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            // SAFETY: kill(2) with a pid read from /proc; at worst it no longer exists.
            assert_eq!(
                unsafe { libc::kill(pid, libc::SIGKILL) },
                0,
                "kill -9 {pid}"
            );
            return pid;
        }
    }
    panic!(
        "no `eol serve` process of pod {pod} on this host: this test needs the local cluster (kind-tests/cluster.sh in local mode)"
    )
}

/// Queues call `n` (retrying, with the same idempotency key, whatever did not
/// answer 202); its id and how many tries it took.
async fn submit(client: &reqwest::Client, base: &str, token: &str, n: usize) -> (String, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        let sent = client
            .post(format!("{base}/v1/operations/add_stock"))
            .bearer_auth(token)
            .header("prefer", "respond-async")
            .header("idempotency-key", format!("call-{n}"))
            .json(&json!({"sku": format!("Q-{n:04}"), "quantity": 1}))
            .send()
            .await;
        let last = match sent {
            Ok(r) if r.status() == 202 => {
                let body: Value = r.json().await.unwrap();
                return (body["id"].as_str().unwrap().to_owned(), tries);
            }
            Ok(r) => format!(
                "HTTP {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            tries < 40,
            "call {n} not queued after {tries} tries: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The record of call `id` once answered.
async fn answered(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = client
            .get(format!("{base}/v1/results/{id}"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(r) = got
            && r.status() == 200
        {
            let record: Value = r.json().await.unwrap();
            if record["state"] == "done" {
                return record;
            }
        }
        assert!(Instant::now() < deadline, "call {id} not answered in 300 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_thousand_async_calls_with_a_pod_killed_midway_are_each_answered_once() {
    in_namespace("queue", |env| async move {
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": slow_inventory()}, "tests": INVENTORY_TESTS, "replicas": 2,
                   "queue": {"claimAfterSeconds": 5, "concurrency": 4, "maxLength": 5000,
                             "resultTTLSeconds": 1800}}),
        ))
        .await;
        wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        first_answer(&env, "inventory", "stock_level", json!({"sku": "WARM-1"})).await;
        // The settings reached the pods.
        let pods = env.api::<Pod>();
        let serving = pods
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=inventory"))
            .await
            .unwrap()
            .items;
        let env_of = |pod: &Pod| -> BTreeMap<String, String> {
            pod.spec.as_ref().unwrap().containers[0]
                .env
                .iter()
                .flatten()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect()
        };
        let vars = env_of(&serving[0]);
        assert_eq!(vars.get("EOL_QUEUE_CLAIM_AFTER_SECONDS").map(String::as_str), Some("5"));
        assert_eq!(vars.get("EOL_QUEUE_CONCURRENCY").map(String::as_str), Some("4"));
        assert_eq!(vars.get("EOL_QUEUE_MAX_LENGTH").map(String::as_str), Some("5000"));
        assert_eq!(vars.get("EOL_QUEUE_RESULT_TTL_SECONDS").map(String::as_str), Some("1800"));
        let victim = serving[0].metadata.name.clone().unwrap();
        let survivor_ip = serving[1].status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();

        let ip = env.api::<Service>().get("inventory").await.unwrap().spec.unwrap().cluster_ip.unwrap();
        let base = format!("http://{ip}");
        let token = caller_token(&env).await;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

        // A thousand calls, 32 at a time; the victim dies once 300 are queued.
        let queued = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let submitting = {
            let (client, base, token, queued) = (client.clone(), base.clone(), token.clone(), queued.clone());
            tokio::spawn(async move {
                futures::stream::iter(0..CALLS)
                    .map(|n| {
                        let (client, base, token, queued) =
                            (client.clone(), base.clone(), token.clone(), queued.clone());
                        async move {
                            let (id, tries) = submit(&client, &base, &token, n).await;
                            queued.fetch_add(1, Ordering::Relaxed);
                            (n, id, tries)
                        }
                    })
                    .buffer_unordered(32)
                    .collect::<Vec<_>>()
                    .await
            })
        };
        // Midway: once 300 calls are answered (queued, and no longer in the stream).
        let mut redis = namespace_redis(&env).await;
        let answered_before_kill = loop {
            let waiting: u64 = redis::cmd("XLEN").arg("eol-queue:inventory").query_async(&mut redis).await.unwrap();
            let answered = queued.load(Ordering::Relaxed).saturating_sub(waiting as usize);
            if answered >= 300 {
                break answered;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "300 calls not answered in 120 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let pid = kill_serving_process(&victim);
        let killed_at = started.elapsed();
        // The depth autoscalers read, on the other pod's /metrics (measured each second).
        let text = client.get(format!("http://{survivor_ip}:8080/metrics")).send().await.unwrap().text().await.unwrap();
        let depth: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("eol_queue_depth ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no eol_queue_depth: {text}"));
        assert!(depth > 0.0, "eol_queue_depth {depth} while calls wait");
        let submitted = submitting.await.unwrap();
        let all_queued = started.elapsed();
        let ids: BTreeMap<usize, String> = submitted.iter().map(|(n, id, _)| (*n, id.clone())).collect();
        assert_eq!(ids.len(), CALLS);
        let distinct: std::collections::BTreeSet<&String> = ids.values().collect();
        assert_eq!(distinct.len(), CALLS, "each call has an id of its own");
        let retried = submitted.iter().filter(|(_, _, tries)| *tries > 1).count();

        // Every call is answered.
        let records: Vec<(usize, Value)> = futures::stream::iter(ids.clone())
            .map(|(n, id)| {
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                async move { (n, answered(&client, &base, &token, &id).await) }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let all_answered = started.elapsed();

        // Each exactly once: one done record per call, its answer from the
        // last run; a call ran twice only when the killed pod had started it.
        let keys: Vec<String> = (0..CALLS).map(|n| format!("eol:inventory:stock:Q-{n:04}")).collect();
        let levels: Vec<Option<i64>> = redis::cmd("MGET").arg(&keys).query_async(&mut redis).await.unwrap();
        let (mut twice, mut taken_over) = (0, 0);
        for (n, record) in &records {
            assert_eq!((record["status"].as_u64(), record["id"].as_str()), (Some(200), Some(ids[n].as_str())), "{record}");
            assert_eq!(record["output"]["sku"], format!("Q-{n:04}"));
            let level = levels[*n].unwrap_or_else(|| panic!("call {n} never ran"));
            let attempts = record["attempts"].as_i64().unwrap();
            assert_eq!(record["output"]["level"].as_i64(), Some(level), "{record}");
            assert!((1..=attempts).contains(&level), "call {n} ran {level} times in {attempts} attempts");
            twice += usize::from(level == 2);
            taken_over += usize::from(attempts >= 2);
        }
        assert!(taken_over >= 1, "the killed pod was running no call: nothing was taken over");
        assert!(twice <= taken_over && taken_over <= 4, "{twice} ran twice, {taken_over} taken over (the pod ran at most 4 at once)");
        // Nothing is left waiting or pending.
        let length: u64 = redis::cmd("XLEN").arg("eol-queue:inventory").query_async(&mut redis).await.unwrap();
        let pending: redis::Value = redis::cmd("XPENDING").arg("eol-queue:inventory").arg("eol-workers").query_async(&mut redis).await.unwrap();
        assert_eq!(length, 0);
        assert!(matches!(&pending, redis::Value::Array(v) if v.first() == Some(&redis::Value::Int(0))), "{pending:?}");
        // The killed container came back (a restart, not a new pod).
        let victim_pod = pods.get(&victim).await.unwrap();
        let restarts = victim_pod.status.unwrap().container_statuses.unwrap()[0].restart_count;
        assert!(restarts >= 1, "the killed container was not restarted");

        // A result is its caller's: another caller allowed to invoke learns
        // nothing of it; no token is 401.
        service_account_with_access(&env.client, &env.namespace, "other", Some(&[])).await;
        let other = eol_kind_tests::fixtures::token(&env.client, &env.namespace, "other", "eol.dev").await;
        let first = &ids[&0];
        let r = client.get(format!("{base}/v1/results/{first}")).bearer_auth(&other).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["kind"], "unknown_call");
        let r = client.get(format!("{base}/v1/results/{first}")).send().await.unwrap();
        assert_eq!(r.status(), 401);

        eprintln!(
            "evidence: {CALLS} calls queued in {:.1} s ({retried} retried with their key), pod {victim} (pid {pid}) killed at {:.1} s with {answered_before_kill} answered (eol_queue_depth {depth}), \
             all answered at {:.1} s; {taken_over} taken over from the killed pod, {twice} of them ran twice; container restarts {restarts}",
            all_queued.as_secs_f64(),
            killed_at.as_secs_f64(),
            all_answered.as_secs_f64()
        );
    })
    .await;
}

#[tokio::test]
async fn feature_runs_in_queue_mode_are_answered_by_the_serving_pods_with_no_pod_each() {
    use eol_core::crd::FeatureRun;
    use eol_kind_tests::fixtures::feature_run;
    use eol_kind_tests::{assert_succeeded, condition, run_finished};
    const RUNS: usize = 20;
    in_namespace("queuerun", |env| async move {
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1}),
        ))
        .await;
        wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, feature_ready).await;
        // Tests need a pod of their own: the API server refuses them in mode Queue.
        let refused = env
            .api::<FeatureRun>()
            .create(
                &Default::default(),
                &feature_run("tests", json!({"featureRef": "inventory", "tests": true, "mode": "Queue"})),
            )
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("mode Queue runs one operation"), "{refused}");

        let started = Instant::now();
        for n in 0..RUNS {
            env.create(&feature_run(
                &format!("add-{n}"),
                // A timeout, which once ended mode-Queue runs at once (no start time yet).
                json!({"featureRef": "inventory", "mode": "Queue", "operation": "add_stock",
                       "input": {"sku": format!("RUN-{n:02}"), "quantity": n + 1}, "timeoutSeconds": 120}),
            ))
            .await;
        }
        // An input the schema refuses: the serving pod's answer fails the run.
        env.create(&feature_run(
            "bad-input",
            json!({"featureRef": "inventory", "mode": "Queue", "operation": "add_stock",
                   "input": {"sku": "RUN-X", "quantity": 0}}),
        ))
        .await;
        let runs = env.api::<FeatureRun>();
        for n in 0..RUNS {
            let run = wait_for(&runs, &format!("add-{n}"), Duration::from_secs(120), run_finished).await;
            let status = assert_succeeded(run, |m| format!("add-{n}: {m}"));
            let output = status.summary.and_then(|s| s.output).expect("an output");
            assert_eq!(output, json!({"sku": format!("RUN-{n:02}"), "level": n + 1}));
            assert_eq!(status.call_id.as_deref().map(str::len), Some(32), "the call id");
            assert!(status.pod_name.is_none());
        }
        let all_done = started.elapsed();
        let bad = wait_for(&runs, "bad-input", Duration::from_secs(60), run_finished).await;
        let (state, reason, message) = condition(&bad.status.unwrap().conditions, "Succeeded").unwrap();
        assert_eq!((state.as_str(), reason.as_str()), ("False", "Failed"), "{message}");
        assert!(message.contains("HTTP 422 (invalid_input)"), "{message}");

        // No runner pod was made: only the serving pod and the Redis run.
        let pods = env.api::<Pod>().list(&Default::default()).await.unwrap().items;
        let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        assert!(
            names.iter().all(|n| n.starts_with("inventory-") || n.starts_with("eol-redis-")),
            "{names:?}"
        );
        // The serving pod's audit records name the run as the caller.
        let serving = names.iter().find(|n| n.starts_with("inventory-")).unwrap();
        let log = env.api::<Pod>().logs(serving, &Default::default()).await.unwrap();
        let callers = log
            .lines()
            .filter(|l| l.contains(&format!("system:featurerun:{}:add-", env.namespace)))
            .count();
        assert_eq!(callers, RUNS, "audit records of the runs' calls");
        eprintln!("evidence: {RUNS} FeatureRuns in mode Queue succeeded {:.1} s after the first was created, with no pod each", all_done.as_secs_f64());
    })
    .await;
}
