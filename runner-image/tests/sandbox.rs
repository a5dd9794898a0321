//! The implementation engine against hostile and broken code, on real Python and Redis.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use eol_core::{Phase, parse_feature};
use eol_runner::engine::{ExecError, Runtime};
use eol_runner::sandbox::{BridgeError, FailureKind, RedisBridge};
use eol_runner::store::{LocalRedis, RedisStore};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A bridge for code that must not touch Redis: any command is refused.
struct NoRedis;
impl RedisBridge for NoRedis {
    fn execute(
        &self,
        c: Vec<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, BridgeError>> + Send + '_>> {
        Box::pin(async move {
            Err(BridgeError::refused(format!(
                "no Redis in this test (asked for {c:?})"
            )))
        })
    }
}

async fn call_kind(
    pool: &eol_runner::sandbox::WorkerPool,
    code: &str,
    function: &str,
) -> Result<Value, (FailureKind, String)> {
    pool.call(code, function, &json!({}), &NoRedis)
        .await
        .map(|o| o.value)
        .map_err(|f| (f.kind, f.message))
}

const OK: &str = "def ok():\n    return {\"fine\": True}\n";

async fn assert_recovers(pool: &eol_runner::sandbox::WorkerPool) {
    assert_eq!(
        call_kind(pool, OK, "ok")
            .await
            .expect("the next call succeeds"),
        json!({"fine": true})
    );
}

#[tokio::test]
async fn static_checks_report_every_problem_with_its_line() {
    let pool = common::pool(1).await;
    let code = "import os\nimport subprocess, json\nfrom socket import socket\n\ndef f(x):\n    eval('1')\n    y = ().__class__.__base__.__subclasses__()\n    return open('/etc/passwd')\n";
    let errors = pool.check(code, "f", &["x".into()]).await.unwrap();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    let text: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert!(text.iter().any(|m| m.contains("'os'")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("'subprocess'")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("'socket'")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("eval")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("__class__")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("open")), "{text:?}");
    assert!(
        lines.contains(&1)
            && lines.contains(&2)
            && lines.contains(&3)
            && lines.contains(&6)
            && lines.contains(&7)
            && lines.contains(&8),
        "{errors:?}"
    );

    let syntax = pool.check("def f(:\n", "f", &[]).await.unwrap();
    assert_eq!(syntax.len(), 1);
    assert_eq!(syntax[0].line, 1);
    assert!(syntax[0].message.contains("syntax"), "{syntax:?}");

    let signature = pool
        .check("def g(a):\n    return {}\n", "f", &["a".into()])
        .await
        .unwrap();
    assert!(
        signature[0].message.contains("function 'f' is not defined"),
        "{signature:?}"
    );
    let params = pool
        .check(
            "def f(a, b):\n    return {}\n",
            "f",
            &["a".into(), "c".into()],
        )
        .await
        .unwrap();
    assert!(!params.is_empty(), "mismatched parameters must be reported");
}

#[tokio::test]
async fn forbidden_code_is_refused_at_call_time_too() {
    let pool = common::pool(1).await;
    for (code, needle) in [
        ("import os\ndef f():\n    return os.fork()\n", "'os'"),
        (
            "def f():\n    return ().__class__.__base__.__subclasses__()\n",
            "__class__",
        ),
        (
            "def f():\n    return (x for x in []).gi_frame.f_globals\n",
            "gi_frame",
        ),
        ("import random\ndef f():\n    return random._os\n", "_os"),
        ("def f():\n    return exec('import os')\n", "exec"),
        ("import ctypes\ndef f():\n    return 1\n", "'ctypes'"),
        ("import importlib\ndef f():\n    return 1\n", "'importlib'"),
        ("def f():\n    return __import__('os')\n", "__import__"),
    ] {
        let (kind, message) = call_kind(&pool, code, "f").await.expect_err(code);
        assert_eq!(kind, FailureKind::Forbidden, "{code}: {message}");
        assert!(message.contains(needle), "{code}: {message}");
    }
    // Names built at run time get past the static check, not past the run-time one.
    let (kind, message) = call_kind(
        &pool,
        "def f():\n    return getattr((), '__cl' + 'ass__')\n",
        "f",
    )
    .await
    .unwrap_err();
    assert_eq!(kind, FailureKind::Exception, "{message}");
    let (kind, message) = call_kind(
        &pool,
        "import uuid\ndef f():\n    return str(uuid.os)\n",
        "f",
    )
    .await
    .unwrap_err();
    assert_eq!(kind, FailureKind::Exception, "{message}");
    assert!(message.contains("AttributeError"), "{message}");
    assert_recovers(&pool).await;
}

#[tokio::test]
async fn an_infinite_loop_hits_the_cpu_limit_and_the_pool_recovers() {
    let pool = common::pool(1).await;
    let started = Instant::now();
    let (kind, message) = call_kind(&pool, "def f():\n    while True:\n        pass\n", "f")
        .await
        .unwrap_err();
    assert_eq!(kind, FailureKind::CpuLimit, "{message}");
    assert!(
        started.elapsed().as_secs_f64() < 4.0,
        "took {:?}",
        started.elapsed()
    );
    assert_recovers(&pool).await;
}

#[tokio::test]
async fn a_call_past_the_wall_clock_limit_is_killed_and_replaced() {
    let pool = common::pool(1).await;
    let before = pool.idle_worker_pids();
    let (kind, message) = call_kind(
        &pool,
        "import time\ndef f():\n    time.sleep(60)\n    return {}\n",
        "f",
    )
    .await
    .unwrap_err();
    assert_eq!(kind, FailureKind::Timeout, "{message}");
    assert_recovers(&pool).await;
    let after = pool.idle_worker_pids();
    assert!(
        !after.is_empty() && after != before,
        "the worker was replaced: {before:?} -> {after:?}"
    );
    for pid in before {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "old worker {pid} still running"
        );
    }
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit_and_the_pool_recovers() {
    let pool = common::pool(1).await;
    for code in [
        "def f():\n    return len('a' * (10 ** 10))\n",
        "def f():\n    x = []\n    while True:\n        x.append(' ' * 10 ** 6)\n",
    ] {
        let (kind, message) = call_kind(&pool, code, "f").await.unwrap_err();
        assert_eq!(kind, FailureKind::MemoryLimit, "{code}: {message}");
        assert_recovers(&pool).await;
    }
}

#[tokio::test]
async fn workers_are_confined_by_the_kernel() {
    let pool = common::pool(1).await;
    assert!(
        pool.network_isolated(),
        "workers should get a network namespace of their own on this machine"
    );
    let pid = pool.idle_worker_pids()[0];
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .split_whitespace()
            .rev()
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(limit("Max processes"), "0", "{limits}");
    assert_eq!(
        limit("Max address space"),
        (256u64 * 1024 * 1024).to_string(),
        "{limits}"
    );
    assert_eq!(limit("Max core file size"), "0", "{limits}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    if unsafe_euid_is_root() {
        assert!(
            uid_line.contains("65534"),
            "workers started by root run as nobody: {uid_line}"
        );
    }
}

fn unsafe_euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn exceptions_report_their_line_and_print_output_is_kept() {
    let pool = common::pool(1).await;
    let failure = pool
        .call(
            "def f(x):\n    print('about to fail')\n    raise ValueError('bad ' + x)\n",
            "f",
            &json!({"x": "url"}),
            &NoRedis,
        )
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(failure.message, "ValueError: bad url");
    assert_eq!(failure.line, Some(3));
    let ok = pool
        .call(
            "def f():\n    print('hi')\n    return [1, 2]\n",
            "f",
            &json!({}),
            &NoRedis,
        )
        .await
        .unwrap();
    assert_eq!(ok.value, json!([1, 2]));
    assert_eq!(ok.stdout, "hi\n");
    let (kind, _) = call_kind(&pool, "def f():\n    return {1, 2}\n", "f")
        .await
        .unwrap_err();
    assert_eq!(kind, FailureKind::BadOutput);
}

const FEATURE: &str = r#"---
name: counter
phase: implementation
---
# Counter
## Operations
### bump
Adds `by` to the counter `name` and returns the new value.

Input:
```yaml
type: object
properties:
  name: {type: string, minLength: 1}
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

### broken
Returns a string where the schema wants an integer.

Input:
```yaml
type: object
```

Output:
```yaml
type: object
properties:
  value: {type: integer}
required: [value]
```

```python
def broken():
    return {"value": "seven"}
```

### keys_seen
Lists which of the given keys exist.

Input:
```yaml
type: object
properties:
  name: {type: string}
```

Output:
```yaml
type: object
```

```python
def keys_seen(name):
    return {"exists": redis.exists("counter:" + name), "raw": redis.get("counter:" + name)}
```
"#;

#[tokio::test]
async fn schemas_are_enforced_on_input_and_output() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", FEATURE).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(1).await, store)
        .await
        .unwrap();

    let err = runtime
        .execute("bump", &json!({"name": "", "by": "x"}), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    let msg = err.to_string();
    assert!(
        msg.starts_with("feature 'counter', operation 'bump': the input does not match"),
        "{msg}"
    );
    assert!(msg.contains("/by") && msg.contains("/name"), "{msg}");

    let err = runtime
        .execute("broken", &json!({}), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_output");
    assert!(err.to_string().contains("\"seven\""), "{err}");

    let err = runtime.execute("nope", &json!({}), None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("has no operation 'nope' (it has: bump, broken, keys_seen)"),
        "{err}"
    );

    let err = runtime
        .execute(
            "bump",
            &json!({"name": "a", "by": 1}),
            Some(Phase::Prototyping),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::NoModel { .. }), "{err}");
    assert!(err.to_string().contains("EOL_LLM_BASE_URL"), "{err}");
}

#[tokio::test]
async fn redis_is_reached_through_the_host_under_the_feature_prefix() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", FEATURE).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(2).await, store.clone())
        .await
        .unwrap();
    let out = runtime
        .execute("bump", &json!({"name": "a", "by": 5}), None)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"value": 5}));
    let out = runtime
        .execute("bump", &json!({"name": "a", "by": 2}), None)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"value": 7}));
    // The key lives under the feature's prefix, and nowhere else.
    let keys = common::all_keys(&store).await;
    assert_eq!(keys, ["eol:counter:counter:a"]);
    let seen = runtime
        .execute("keys_seen", &json!({"name": "a"}), None)
        .await
        .unwrap();
    assert_eq!(seen.output, json!({"exists": 1, "raw": "7"}));
}

#[tokio::test]
async fn redis_going_away_fails_the_call_clearly_and_loses_nothing() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", FEATURE).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(1).await, store)
        .await
        .unwrap();
    runtime
        .execute("bump", &json!({"name": "kept", "by": 41}), None)
        .await
        .unwrap();

    // Freeze the server: it stops answering, as a Redis that went away does.
    let pid = redis.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let err = runtime
        .execute("bump", &json!({"name": "kept", "by": 1}), None)
        .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let err = err.expect_err("a call while Redis is unreachable must fail, never succeed");
    let msg = err.to_string();
    assert!(
        msg.starts_with("feature 'counter', operation 'bump' failed"),
        "{msg}"
    );
    assert!(msg.contains("TimeoutError"), "{msg}");

    // Back again: the next call succeeds and the earlier data is intact.
    let mut value = None;
    for _ in 0..20 {
        match runtime
            .execute("keys_seen", &json!({"name": "kept"}), None)
            .await
        {
            Ok(out) => {
                value = Some(out.output);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
    let raw = value.expect("Redis came back")["raw"]
        .as_str()
        .map(str::to_owned);
    assert!(
        raw.as_deref() == Some("41") || raw.as_deref() == Some("42"),
        "data intact: {raw:?}"
    );
}

#[tokio::test]
async fn redis_commands_outside_the_allow_list_are_refused() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let bridge = store.bridge("counter");
    let err = bridge.execute(vec![json!("FLUSHALL")]).await.unwrap_err();
    assert!(err.message.contains("'FLUSHALL' is not allowed"), "{err}");
    let err = bridge
        .execute(vec![json!("KEYS"), json!("*")])
        .await
        .unwrap_err();
    assert!(
        err.message.contains("not allowed") && err.message.contains("SCAN"),
        "{err}"
    );
    let err = bridge
        .execute(vec![json!("GET"), json!("eol:shop:cart")])
        .await
        .unwrap_err();
    assert!(
        err.message.contains("'eol:shop:cart'") && err.message.contains("'eol:counter:'"),
        "{err}"
    );
}

/// The code of every family: one function per family, written against redis-py.
const FAMILIES: &str = include_str!("redis_families.py");

/// What real redis-py returns for them (written by redis_families_redis_py.py).
const FAMILIES_EXPECTED: &str = include_str!("redis_families.expected.json");

const REFUSALS: &str = r#"
def refusals():
    out = {}
    attempts = {
        "keys": lambda: redis.keys("*"),
        "flushall": lambda: redis.flushall(),
        "config": lambda: redis.execute_command("CONFIG", "GET", "*"),
        "eval": lambda: redis.execute_command("EVAL", "return 1", 0),
        "other_feature": lambda: redis.get("eol:shop:cart"),
        "other_scan": lambda: list(redis.scan_iter("eol:shop:*")),
        "sort_by": lambda: redis.sort("nums", by="weight_*"),
        "blocking": lambda: redis.xread({"events": "0-0"}, block=10),
        "other_db": lambda: redis.copy("a", "b", destination_db=1),
        "watch": lambda: redis.pipeline().watch("a"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            out[name] = "ran"
        except redis.RedisError as exc:
            out[name] = [isinstance(exc, redis.exceptions.NoPermissionError), str(exc)]
    try:
        redis.pipeline().set("ran", 1).get("eol:shop:secret").execute()
        out["pipeline"] = "ran"
    except redis.NoPermissionError as exc:
        out["pipeline"] = str(exc)
    out["nothing_ran"] = redis.exists("ran") == 0
    out["own_prefix"] = [redis.set("eol:families:full", "1"), redis.get("full")]
    try:
        redis.set("bad", None)
    except redis.DataError as exc:
        out["none"] = str(exc)
    return out


def search():
    redis.hset("doc:1", mapping={"title": "Redis streams explained"})
    redis.hset("doc:2", mapping={"title": "Sorted sets"})
    found = redis.ft("articles").search("@title:streams")
    return {"total": found.total, "docs": [[d.id, d.title] for d in found.docs]}
"#;

fn families_feature() -> String {
    let mut text = String::from("---\nname: families\nphase: implementation\n---\n## Operations\n");
    let ops: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, Value>>(FAMILIES_EXPECTED)
            .unwrap()
            .keys()
            .cloned()
            .chain(["refusals".to_owned(), "search".to_owned()])
            .collect();
    for op in ops {
        text.push_str(&format!(
            "### {op}\nRuns the family.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\n```\n\n```python\n{FAMILIES}\n{REFUSALS}\n```\n\n"
        ));
    }
    text
}

/// A Redis of its own, a store on it, and the families feature loaded.
async fn families_runtime() -> (LocalRedis, Arc<RedisStore>, Runtime) {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("families.eol", &families_feature()).unwrap();
    let runtime = Runtime::load(
        "families.eol",
        feature,
        common::pool(1).await,
        store.clone(),
    )
    .await
    .unwrap();
    (redis, store, runtime)
}

#[tokio::test]
async fn code_written_against_redis_py_runs_unchanged_for_every_family() {
    let (_redis, store, runtime) = families_runtime().await;
    let expected: serde_json::Map<String, Value> = serde_json::from_str(FAMILIES_EXPECTED).unwrap();
    let mut conn = store.connection().await.unwrap();
    for (family, want) in expected {
        let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
        let out = runtime
            .execute(&family, &json!({}), None)
            .await
            .unwrap_or_else(|e| panic!("{family}: {e}"));
        for (name, text) in want.as_object().unwrap() {
            assert_eq!(out.output[name], *text, "{family}: {name}");
        }
        // Everything the family wrote is under the feature's prefix.
        let keys = common::all_keys(&store).await;
        assert!(
            keys.iter().all(|k| k.starts_with("eol:families:")),
            "{family}: {keys:?}"
        );
    }
}

#[tokio::test]
async fn search_results_come_back_as_redis_py_documents() {
    let (_redis, store, runtime) = families_runtime().await;
    // Indexes are made outside the sandbox (FT.CREATE is not in the table), under the prefix.
    common::create_title_index(&store, "eol:families:articles", "eol:families:doc:").await;
    let out = runtime.execute("search", &json!({}), None).await.unwrap();
    assert_eq!(
        out.output,
        json!({"total": 1, "docs": [["doc:1", "Redis streams explained"]]})
    );
}

#[tokio::test]
async fn admin_and_cross_feature_commands_are_refused_from_python() {
    let (_redis, _store, runtime) = families_runtime().await;
    let out = runtime
        .execute("refusals", &json!({}), None)
        .await
        .unwrap()
        .output;
    let refused = |name: &str, words: &[&str]| {
        let entry = &out[name];
        assert_eq!(entry[0], json!(true), "{name}: {entry}");
        let text = entry[1].as_str().unwrap_or_default();
        for w in words {
            assert!(text.contains(w), "{name}: {text}");
        }
    };
    refused("keys", &["'KEYS' is not allowed", "SCAN"]);
    refused("flushall", &["'FLUSHALL' is not allowed"]);
    refused("config", &["'CONFIG' is not allowed"]);
    refused("eval", &["'EVAL' is not allowed", "scripts"]);
    refused("other_feature", &["'eol:shop:cart'", "'eol:families:'"]);
    refused("other_scan", &["'eol:shop:*'"]);
    refused("sort_by", &["SORT", "BY"]);
    refused("blocking", &["BLOCK"]);
    refused("other_db", &["COPY", "DB"]);
    assert!(
        out["watch"][1]
            .as_str()
            .unwrap_or_default()
            .contains("WATCH is not available"),
        "{}",
        out["watch"]
    );
    let pipeline = out["pipeline"].as_str().unwrap_or_default();
    assert!(
        pipeline.contains("command #2") && pipeline.contains("'eol:shop:secret'"),
        "{pipeline}"
    );
    assert_eq!(
        out["nothing_ran"],
        json!(true),
        "a refused pipeline runs nothing"
    );
    assert_eq!(out["own_prefix"], json!([true, "1"]));
    assert!(
        out["none"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid input of type: 'NoneType'"),
        "{}",
        out["none"]
    );
}

const HOSTILE: &str = r#"---
name: hostile
phase: implementation
---
## Operations
### spin
Loops forever.

Input:
```yaml
type: object
```

Output:
```yaml
type: object
```

```python
def spin():
    while True:
        pass
```

### hog
Allocates without bound.

Input:
```yaml
type: object
```

Output:
```yaml
type: object
```

```python
def hog():
    blocks = []
    while True:
        blocks.append(bytearray(10 ** 7))
```

### fine
Answers.

Input:
```yaml
type: object
```

Output:
```yaml
type: object
properties:
  ok: {type: boolean}
required: [ok]
```

```python
def fine():
    return {"ok": True}
```
"#;

#[tokio::test]
async fn hostile_operations_fail_naming_feature_operation_and_cause() {
    let redis = common::local_redis();
    let feature = parse_feature("hostile.eol", HOSTILE).unwrap();
    let runtime = Runtime::load(
        "hostile.eol",
        feature,
        common::pool(1).await,
        common::store(&redis),
    )
    .await
    .unwrap();
    for (op, cause) in [
        ("spin", "(cpu_limit): CPU time limit"),
        ("hog", "(memory_limit): memory limit exceeded"),
    ] {
        let err = runtime
            .execute(op, &json!({}), None)
            .await
            .expect_err("a killed call is a failure");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "feature 'hostile', operation '{op}' failed {cause}"
            )),
            "{msg}"
        );
        let next = runtime
            .execute("fine", &json!({}), None)
            .await
            .expect("the pool recovers");
        assert_eq!(next.output, json!({"ok": true}));
    }
}

#[tokio::test]
async fn unsafe_code_is_refused_when_the_feature_loads_with_its_place_in_the_file() {
    let redis = common::local_redis();
    let src = HOSTILE.replace("def fine():\n", "import os\n\ndef fine():\n    os.fork()\n");
    let feature = parse_feature("hostile.eol", &src).unwrap();
    let err = Runtime::load(
        "hostile.eol",
        feature,
        common::pool(1).await,
        common::store(&redis),
    )
    .await
    .err()
    .expect("a fork attempt is refused before anything runs");
    let line = src.lines().position(|l| l == "import os").unwrap() + 1;
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "hostile.eol:{line}:8: operation 'fine': import of 'os' is not allowed"
        )),
        "{text}"
    );
}
