//! Async calls through `eol serve` on a real Redis: queued with `Prefer:
//! respond-async`, refused with 429 when the queue is full, deduplicated by
//! idempotency keys, answered by whichever replica is ready, and taken over
//! (`XAUTOCLAIM`) when the pod running one dies.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::server::{Server, audit_records, metrics, post, start_with, wait_ready};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Inventory tests that fail: a server with them is never ready, so it queues
/// calls but runs none.
const FAILING_TESTS: &str = "---\nfeature: inventory\n---\n\n## fails on purpose\nOperation: stock_level\nInput:\n```yaml\nsku: NO-SUCH-SKU-42\n```\nExpect:\n```yaml\nlevel: 7\n```\n";

/// Counts each start of a call in Redis, then sleeps.
const NAPPER: &str = "---\nname: napper\nphase: implementation\n---\n# Napper\n\n## Operations\n\n### nap\nCounts a start, then sleeps.\n\nInput:\n```yaml\ntype: object\nproperties:\n  tag: {type: string}\n  seconds: {type: number}\nrequired: [tag, seconds]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  starts: {type: integer}\nrequired: [starts]\n```\n\n```python\nimport time\n\ndef nap(tag, seconds):\n    starts = redis.incr(f\"starts:{tag}\")\n    time.sleep(seconds)\n    return {\"starts\": starts}\n```\n";

/// An async call: status, headers and JSON answer.
async fn post_async(
    server: &Server,
    op: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/operations/{op}", server.url))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

/// `GET /v1/results/{id}`: status, headers and JSON answer.
async fn result(server: &Server, id: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::get(format!("{}/v1/results/{id}", server.url))
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

/// The record of call `id` once it is done (within `within`).
async fn done(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, record) = result(server, id).await;
        assert_eq!(status, 200, "{record}");
        if record["state"] == "done" {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "call {id} not answered within {within:?}: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an unlabelled metric in `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_full_queue_refuses_with_429_keys_deduplicate_and_another_replica_answers_each_call_once()
{
    let redis = common::local_redis();
    let examples = common::examples();
    let feature = std::fs::read_to_string(examples.join("inventory.eol")).unwrap();
    let (idle_dir, ready_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(idle_dir.path().join("inventory.eol"), &feature).unwrap();
    std::fs::write(idle_dir.path().join("inventory.test.eol"), FAILING_TESTS).unwrap();
    std::fs::write(ready_dir.path().join("inventory.eol"), &feature).unwrap();
    std::fs::copy(
        examples.join("inventory.test.eol"),
        ready_dir.path().join("inventory.test.eol"),
    )
    .unwrap();
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("EOL_QUEUE_MAX_LENGTH", "10"),
    ];

    // A replica whose tests fail takes calls into the queue but runs none.
    let idle = start_with(idle_dir.path(), "inventory.eol", &env, Stdio::null()).await;
    assert_eq!(wait_ready(&idle).await.0, 503);
    let calls = (0..25).map(|n| {
        let idle = &idle;
        async move {
            let body = format!(r#"{{"sku": "Q-{n:03}", "quantity": 1}}"#);
            let key = format!("key-{n}");
            (n, post_async(idle, "add_stock", &body, Some(&key)).await)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut accepted = std::collections::BTreeMap::new();
    let mut refused = Vec::new();
    for (n, (status, headers, body)) in answers {
        match status {
            202 => {
                let id = body["id"].as_str().unwrap().to_owned();
                assert_eq!(body["state"], "queued");
                assert_eq!(
                    headers["location"].to_str().unwrap(),
                    format!("/v1/results/{id}")
                );
                assert_eq!(headers["preference-applied"], "respond-async");
                accepted.insert(n, id);
            }
            429 => {
                assert_eq!(body["error"]["kind"], "queue_full", "{body}");
                let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
                refused.push(n);
            }
            other => panic!("call {n}: {other} {body}"),
        }
    }
    assert_eq!((accepted.len(), refused.len()), (10, 15), "{accepted:?}");
    assert_eq!(
        metric(&metrics(&idle).await, "eol_queue_rejected_total"),
        Some(15.0)
    );

    // A retry with the same key and input gets the same call; another input is refused.
    let (&n, first_id) = accepted.iter().next().unwrap();
    let body = format!(r#"{{"sku": "Q-{n:03}", "quantity": 1}}"#);
    let key = format!("key-{n}");
    let (status, headers, again) = post_async(&idle, "add_stock", &body, Some(&key)).await;
    assert_eq!(
        (status, again["id"].as_str()),
        (202, Some(first_id.as_str()))
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    let other = r#"{"sku": "Q-999", "quantity": 1}"#;
    let (status, _, err) = post_async(&idle, "add_stock", other, Some(&key)).await;
    assert_eq!(
        (status, &err["error"]["kind"]),
        (422, &json!("idempotency_key_reused"))
    );
    // Wrong calls are refused at once, not queued.
    let (status, _, err) = post_async(&idle, "restock", "{}", None).await;
    assert_eq!(
        (status, &err["error"]["kind"]),
        (404, &json!("unknown_operation"))
    );
    let (status, _, err) = post_async(&idle, "add_stock", r#"{"sku": "Q-1"}"#, None).await;
    assert_eq!(
        (status, &err["error"]["kind"]),
        (422, &json!("invalid_input"))
    );
    // `?mode=async` asks the same.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/operations/add_stock?mode=async", idle.url))
        .body(r#"{"sku": "Q-500", "quantity": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429, "still full");

    // Queued, not answered: 200 with the state and a Retry-After; unknown ids 404.
    let (status, headers, record) = result(&idle, first_id).await;
    assert_eq!((status, &record["state"]), (200, &json!("queued")));
    assert_eq!(headers["retry-after"], "1");
    let (status, _, err) = result(&idle, "0123456789abcdef0123456789abcdef").await;
    assert_eq!(
        (status, &err["error"]["kind"]),
        (404, &json!("unknown_call"))
    );

    // A ready replica answers every accepted call, each once.
    let mut ready = start_with(
        ready_dir.path(),
        "inventory.eol",
        &[env[0], env[1], ("EOL_AUDIT", "stdout")],
        Stdio::piped(),
    )
    .await;
    let stdout = ready.child.stdout.take().unwrap();
    assert_eq!(wait_ready(&ready).await, (200, "ready".to_owned()));
    for (n, id) in &accepted {
        // Either replica reads results: they are in the shared Redis.
        let record = done(&idle, id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(
            record["output"],
            json!({"sku": format!("Q-{n:03}"), "level": 1})
        );
        assert_eq!(
            (record["attempts"].as_u64(), record["phase"].as_str()),
            (Some(1), Some("implementation"))
        );
    }
    // Nothing a refused call asked for ran.
    for n in &refused {
        let (status, level) =
            post(&ready, "stock_level", &format!(r#"{{"sku": "Q-{n:03}"}}"#)).await;
        assert_eq!((status, &level["level"]), (200, &json!(0)), "Q-{n:03}");
    }
    // One audit record per run, naming its call; then the sync calls above.
    let records = audit_records(stdout, accepted.len()).await;
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, accepted.values().map(String::as_str).collect());
    assert!(
        records
            .iter()
            .all(|r| r["outcome"] == "ok" && r["status"] == 200 && r["user"] == "system:anonymous"),
        "{records:?}"
    );
    // The depth every replica reports comes down to 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics(&ready).await, "eol_queue_depth") != Some(0.0) {
        assert!(Instant::now() < deadline, "{}", metrics(&ready).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = metrics(&ready).await;
    assert!(
        text.contains(r#"eol_queue_calls_total{operation="add_stock",outcome="ok"} 10"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_call_of_a_killed_replica_is_taken_over_by_another_after_the_claim_time() {
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("napper.eol"), NAPPER).unwrap();
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("EOL_QUEUE_CLAIM_AFTER_SECONDS", "2"),
        ("EOL_QUEUE_CONCURRENCY", "1"),
    ];
    let mut first = start_with(dir.path(), "napper.eol", &env, Stdio::null()).await;
    assert_eq!(wait_ready(&first).await.0, 200);
    let (status, _, queued) =
        post_async(&first, "nap", r#"{"tag": "t1", "seconds": 3}"#, None).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().unwrap().to_owned();

    // Killed while it runs the call (its start is counted in Redis).
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let starts: Option<u32> = redis::cmd("GET")
            .arg("eol:napper:starts:t1")
            .query_async(&mut conn)
            .await
            .unwrap();
        if starts == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    // Another replica takes it over once the claim runs out, and answers it.
    let second = start_with(dir.path(), "napper.eol", &env, Stdio::null()).await;
    assert_eq!(wait_ready(&second).await.0, 200);
    let record = done(&second, &id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], 200, "{record}");
    // At least once: the killed run had started it.
    assert_eq!(record["output"], json!({"starts": 2}));
    assert_eq!(record["attempts"], 2);
    assert_eq!(
        metric(&metrics(&second).await, "eol_queue_reclaimed_total"),
        Some(1.0)
    );
    // The entry is gone: nothing is pending, nothing waits.
    let (len, pending): (u64, Vec<Value>) = (
        redis::cmd("XLEN")
            .arg("eol-queue:napper")
            .query_async(&mut conn)
            .await
            .unwrap(),
        redis::cmd("XPENDING")
            .arg("eol-queue:napper")
            .arg("eol-workers")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|v| json!(format!("{v:?}")))
            .collect(),
    );
    assert_eq!((len, pending.len()), (0, 0), "{pending:?}");
}
