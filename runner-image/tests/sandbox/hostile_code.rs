//! Hostile and broken code: static checks and run-time refusals, the CPU,
//! wall-clock and memory limits (the pool recovers), kernel confinement of the
//! workers, exceptions and print output, schemas on input and output, and unsafe
//! code refused when the feature loads.

use crate::{FEATURE, common};
use eol_core::{Phase, parse_feature};
use eol_runner::engine::{ExecError, Runtime};
use eol_runner::sandbox::{BridgeError, FailureKind, RedisBridge};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
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
    // A spin is stopped by its CPU limit, or, on a machine too loaded to
    // give it that much CPU in time (seen in CI), by the wall-clock limit.
    for (op, causes) in [
        (
            "spin",
            &[
                "(cpu_limit): CPU time limit",
                "(timeout): the call ran longer than",
            ][..],
        ),
        ("hog", &["(memory_limit): memory limit exceeded"][..]),
    ] {
        let err = runtime
            .execute(op, &json!({}), None)
            .await
            .expect_err("a killed call is a failure");
        let msg = err.to_string();
        assert!(
            causes.iter().any(|cause| msg.starts_with(&format!(
                "feature 'hostile', operation '{op}' failed {cause}"
            ))),
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

#[tokio::test]
async fn the_probes_hostile_corpus_is_held_case_by_case() {
    // The corpus `eol sandbox-probe` runs in a serving pod (kind-tests), here on this machine.
    let pool = common::pool(1).await;
    let report = eol_runner::sandbox::probe::probe(&pool).await;
    let escaped: Vec<_> = report.findings.iter().filter(|f| !f.held).collect();
    assert!(
        escaped.is_empty(),
        "cases not held as expected: {escaped:#?}"
    );
    assert!(report.recovered && report.held());
    assert_eq!(
        report.findings.len(),
        eol_runner::sandbox::probe::CORPUS.len()
    );
}

/// A Redis that never answers, as a connection to a Redis pod that went away.
struct Silent;
impl RedisBridge for Silent {
    fn execute(
        &self,
        _: Vec<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, BridgeError>> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_call_out_of_time_while_redis_does_not_answer_names_redis() {
    let pool = common::pool(1).await;
    let failure = pool
        .call(
            "def f():\n    return {'v': redis.get('k')}\n",
            "f",
            &json!({}),
            &Silent,
        )
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{}", failure.message);
    assert!(
        failure.message.contains("while a Redis command had waited")
            && failure
                .message
                .contains("is the feature's Redis reachable?"),
        "{}",
        failure.message
    );
    // Code that is slow on its own is not blamed on Redis.
    let failure = pool
        .call(
            "import time\ndef f():\n    time.sleep(60)\n    return {}\n",
            "f",
            &json!({}),
            &Silent,
        )
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(!failure.message.contains("Redis"), "{}", failure.message);
    assert_recovers(&pool).await;
}
