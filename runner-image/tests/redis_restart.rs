//! Redis restarting under a loop of calls: the bridge sandboxed code uses, an
//! implementation operation and the MCP Redis tools go on without a failure.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use eol_core::parse_feature;
use eol_runner::engine::Runtime;
use eol_runner::mcp::RedisToolServer;
use eol_runner::sandbox::RedisBridge;
use eol_runner::store::LocalRedis;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const COUNTER: &str = r#"---
name: counter
phase: implementation
---
## Operations
### bump
Adds `by` to the counter `name` and returns the new value.

Input:
```yaml
type: object
properties:
  name: {type: string}
  by: {type: integer}
required: [name, by]
```

Output:
```yaml
type: object
properties:
  value: {type: integer}
required: [value]
```

```python
def bump(name, by):
    return {"value": redis.incr("counter:" + name, by)}
```

### remember
Stores `value` under `name` and reads it back.

Input:
```yaml
type: object
properties:
  name: {type: string}
  value: {type: string}
required: [name, value]
```

Output:
```yaml
type: object
```

```python
def remember(name, value):
    redis.set("memo:" + name, value, ex=60)
    redis.hset("memo:seen", name, value)
    return {"value": redis.get("memo:" + name), "seen": redis.hget("memo:seen", name)}
```
"#;

/// A Redis of the test's own that keeps what it acknowledged across restarts.
fn persistent_redis() -> LocalRedis {
    LocalRedis::start_persistent()
        .unwrap_or_else(|e| panic!("these tests need the local Redis: {e}"))
}

/// Restarts between calls, as the issue saw it: the first call after each
/// restart used to fail with "broken pipe" (8.3). Counters are not idempotent:
/// they go through because nothing was on the wire when Redis went away, and
/// each is counted exactly once.
#[tokio::test]
async fn calls_after_a_redis_restart_succeed() {
    let mut redis = persistent_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", COUNTER).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(1).await, store.clone())
        .await
        .unwrap();
    let bridge = store.bridge("counter");
    let tools = RedisToolServer::new(store.clone(), "counter");
    let restarts: u64 = 4;
    let mut failures = Vec::new();
    let mut n = 0i64;
    for round in 0..=restarts {
        if round > 0 {
            redis.restart(Duration::from_millis(300)).unwrap();
        }
        for _ in 0..10 {
            n += 1;
            let i = n;
            match runtime
                .execute("bump", &json!({"name": "a", "by": 1}), None)
                .await
            {
                Ok(out) => assert_eq!(out.output, json!({"value": i}), "round {round}"),
                Err(e) => failures.push(format!("round {round} bump {i}: {e}")),
            }
            match bridge.execute(vec![json!("INCR"), json!("direct")]).await {
                Ok(v) => assert_eq!(v, json!(i), "round {round}"),
                Err(e) => failures.push(format!("round {round} INCR {i}: {e}")),
            }
            let args = json!({"key": "tool", "by": 1})
                .as_object()
                .cloned()
                .unwrap();
            match tools.run("incr", args).await {
                Ok(v) => assert_eq!(v, json!(i), "round {round}"),
                Err(e) => failures.push(format!("round {round} tool incr {i}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert!(
        store.reconnects() >= restarts,
        "reconnected {} times",
        store.reconnects()
    );
}

/// Restarts while calls keep coming, with Redis down for a while each time:
/// calls that arrive while it is down wait for it; idempotent commands caught
/// on the wire when it died are sent again.
#[tokio::test]
async fn idempotent_calls_go_on_while_redis_restarts_under_them() {
    let redis = persistent_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", COUNTER).unwrap();
    let runtime = Arc::new(
        Runtime::load("counter.eol", feature, common::pool(2).await, store.clone())
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for worker in 0..2 {
        let (runtime, store, stop, calls) =
            (runtime.clone(), store.clone(), stop.clone(), calls.clone());
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let bridge = store.bridge("counter");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let value = format!("{worker}-{i}");
                match runtime
                    .execute(
                        "remember",
                        &json!({"name": format!("w{worker}"), "value": value}),
                        None,
                    )
                    .await
                {
                    Ok(out) => assert_eq!(out.output, json!({"value": value, "seen": value})),
                    Err(e) => failures.push(format!("remember {value}: {e}")),
                }
                let pipeline = vec![
                    vec![json!("SET"), json!(format!("p{worker}")), json!(value)],
                    vec![json!("GET"), json!(format!("p{worker}"))],
                ];
                match bridge.pipeline(pipeline, true).await {
                    Ok(replies) => assert_eq!(
                        replies
                            .into_iter()
                            .map(Result::unwrap)
                            .collect::<Vec<Value>>(),
                        [json!(true), json!(value)]
                    ),
                    Err(e) => failures.push(format!("transaction {value}: {e}")),
                }
                calls.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }
    let mut redis = redis;
    let restarts = 3;
    for _ in 0..restarts {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = calls.load(Ordering::SeqCst);
        redis = tokio::task::spawn_blocking(move || {
            redis.restart(Duration::from_millis(500)).unwrap();
            redis
        })
        .await
        .unwrap();
        assert!(calls.load(Ordering::SeqCst) >= before);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in loops {
        failures.extend(l.await.unwrap());
    }
    let total = calls.load(Ordering::SeqCst);
    assert!(total > 20, "only {total} calls ran");
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed: {failures:#?}",
        failures.len()
    );
    assert!(store.reconnects() >= restarts);
}
