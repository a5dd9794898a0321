//! OpenTelemetry tracing as an operator of EOL sees it: `eol run` and
//! `eol serve` as real processes exporting to a real Jaeger v2 of the test's
//! own, traces read back through Jaeger's query API; and tracing off.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::jaeger::{Jaeger, Span, Trace};
use common::scripted_llm::{Scripted, ScriptedServer};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Variables of the test's own environment that would change what is traced.
const CLEARED: &[&str] = &[
    "REDIS_URL",
    "EOL_LLM_BASE_URL",
    "EOL_LLM_MODEL",
    "EOL_REPORT_FILE",
    "EOL_RUN_ID",
    "EOL_LOG_FORMAT",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "TRACEPARENT",
    "TRACESTATE",
];

/// A W3C traceparent for a new trace: (trace id, parent span id, header value).
fn new_traceparent() -> (String, String, String) {
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let span = format!("{:016x}", rand::random::<u64>() | 1);
    let header = format!("00-{trace}-{span}-01");
    (trace, span, header)
}

/// A service name no other test uses.
fn service(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A chat completion from model `model` answering `content`, with these token counts.
fn reply(content: &str, model: &str, input: u64, output: u64) -> Scripted {
    let body = json!({
        "id": "chatcmpl-t", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
    });
    Scripted {
        body: body.to_string(),
        ..Scripted::answer("")
    }
}

/// `eol` with `args` in `dir`, embeddings off, the test's own variables cleared, then `env`.
async fn eol(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    cmd.args(args).current_dir(dir).env("EOL_EMBEDDINGS", "off");
    for name in CLEARED {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("eol runs");
    assert!(
        out.status.success(),
        "eol {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts `child`'s parent is `parent`.
fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        child.parent().as_deref(),
        Some(parent.id().as_str()),
        "span '{}' is not a child of '{}'",
        child.name(),
        parent.name()
    );
}

#[tokio::test]
async fn a_prototyped_run_is_one_trace_under_the_callers_span() {
    let jaeger = Jaeger::start();
    let llm = ScriptedServer::start(vec![reply(
        r#"{"label": "bug"}"#,
        "scripted-2026-01",
        123,
        45,
    )])
    .await;
    let (trace_id, parent_id, traceparent) = new_traceparent();
    let name = service("eol-run");
    eol(
        &common::examples(),
        &[
            "run",
            "support-triage.eol",
            "--operation",
            "classify_ticket",
            "--input",
            r#"{"subject": "App crashes", "body": "It crashes on start"}"#,
        ],
        &[
            ("EOL_LLM_BASE_URL", &llm.url),
            ("EOL_LLM_MODEL", "triage-model"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &jaeger.otlp_url),
            ("OTEL_SERVICE_NAME", &name),
            ("TRACEPARENT", &traceparent),
        ],
    )
    .await;
    // `eol run` has exited: every span must already be in Jaeger (flushed on exit).
    let trace = jaeger
        .trace(&trace_id, |t| {
            !t.named("support-triage.classify_ticket").is_empty()
                && !t.named("chat triage-model").is_empty()
        })
        .await;
    let operation = trace.one("support-triage.classify_ticket");
    assert_eq!(operation.trace_id(), trace_id);
    assert_eq!(
        operation.parent().as_deref(),
        Some(parent_id.as_str()),
        "the operation span's parent is the TRACEPARENT span"
    );
    assert_eq!(trace.service(&operation), name);
    assert_eq!(operation.text("eol.feature"), "support-triage");
    assert_eq!(operation.text("eol.operation"), "classify_ticket");
    assert_eq!(operation.text("eol.phase"), "prototyping");
    // Embeddings are off, so no semantic cache was asked.
    assert_eq!(operation.text("eol.cache"), "none");
    assert_eq!(operation.tag("error.type"), None);

    let chat = trace.one("chat triage-model");
    assert_eq!(chat.trace_id(), trace_id);
    assert_child(&chat, &operation);
    assert_eq!(chat.text("span.kind"), "client");
    assert_eq!(chat.text("gen_ai.operation.name"), "chat");
    assert_eq!(chat.text("gen_ai.provider.name"), "openai");
    assert_eq!(chat.text("gen_ai.request.model"), "triage-model");
    assert_eq!(chat.text("gen_ai.response.model"), "scripted-2026-01");
    assert_eq!(chat.int("gen_ai.usage.input_tokens"), Some(123));
    assert_eq!(chat.int("gen_ai.usage.output_tokens"), Some(45));
    assert!(
        chat.text("gen_ai.response.finish_reasons").contains("stop"),
        "{:?}",
        chat.tag("gen_ai.response.finish_reasons")
    );
    let port = llm.url.trim_start_matches("http://127.0.0.1:");
    let port = port.split('/').next().unwrap();
    assert_eq!(chat.text("server.address"), "127.0.0.1");
    assert_eq!(chat.int("server.port"), port.parse().ok());
}

#[tokio::test]
async fn a_tool_call_is_a_span_between_the_models_answers() {
    let jaeger = Jaeger::start();
    let llm = ScriptedServer::start(vec![
        Scripted::tool_call("redis__get", r#"{"key": "greeting"}"#),
        reply(r#"{"label": "question"}"#, "scripted", 20, 3),
    ])
    .await;
    let (trace_id, _, traceparent) = new_traceparent();
    eol(
        &common::examples(),
        &[
            "run",
            "support-triage.eol",
            "--operation",
            "classify_ticket",
            "--input",
            r#"{"subject": "How do I export?", "body": "Where is the button?"}"#,
        ],
        &[
            ("EOL_LLM_BASE_URL", &llm.url),
            ("EOL_LLM_MODEL", "triage-model"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &jaeger.otlp_url),
            ("OTEL_SERVICE_NAME", &service("eol-tools")),
            ("TRACEPARENT", &traceparent),
        ],
    )
    .await;
    assert_eq!(llm.request_count(), 2, "the model was asked twice");
    let trace = jaeger
        .trace(&trace_id, |t| {
            t.named("chat triage-model").len() == 2
                && !t.named("execute_tool redis__get").is_empty()
                && !t.named("support-triage.classify_ticket").is_empty()
        })
        .await;
    let operation = trace.one("support-triage.classify_ticket");
    let tool = trace.one("execute_tool redis__get");
    assert_child(&tool, &operation);
    assert_eq!(tool.text("gen_ai.operation.name"), "execute_tool");
    assert_eq!(tool.text("gen_ai.tool.name"), "redis__get");
    assert_eq!(tool.text("mcp.method.name"), "tools/call");
    assert_eq!(tool.tag("error.type"), None, "the tool answered");
    let chats = trace.named("chat triage-model");
    for chat in &chats {
        assert_child(chat, &operation);
    }
    let mut tokens: Vec<Option<i64>> = chats
        .iter()
        .map(|c| c.int("gen_ai.usage.input_tokens"))
        .collect();
    tokens.sort();
    assert_eq!(tokens, [Some(5), Some(20)], "each answer's own count");
    let reasons: Vec<String> = chats
        .iter()
        .map(|c| c.text("gen_ai.response.finish_reasons"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("tool_calls")),
        "{reasons:?}"
    );
}

/// A feature with one operation that answers and one that raises.
const PROBE: &str = r#"---
name: tracing-probe
version: 0.1.0
description: Echoes, or fails
phase: implementation
---

# Tracing probe

## Operations

### echo

Returns the text.

Input:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

Output:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

```python
def echo(text):
    return {"text": text}
```

### fail

Always fails.

Input:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

Output:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

```python
def fail(text):
    raise ValueError("no " + text)
```
"#;

#[tokio::test]
async fn an_implemented_call_has_a_sandbox_span_and_a_failure_names_its_kind() {
    let jaeger = Jaeger::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.eol"), PROBE).unwrap();
    let run = |operation: &'static str, traceparent: String| {
        let dir = dir.path().to_owned();
        let endpoint = jaeger.otlp_url.clone();
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
            cmd.args([
                "run",
                "probe.eol",
                "--operation",
                operation,
                "--input",
                r#"{"text": "hi"}"#,
            ])
            .current_dir(dir);
            for name in CLEARED {
                cmd.env_remove(name);
            }
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_SERVICE_NAME", "eol-probe")
                .env("TRACEPARENT", traceparent)
                .output()
                .await
                .expect("eol runs")
        }
    };
    let (ok_trace, _, ok_parent) = new_traceparent();
    let out = run("echo", ok_parent).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (failed_trace, _, failed_parent) = new_traceparent();
    let out = run("fail", failed_parent).await;
    assert!(!out.status.success(), "the failing operation failed");

    let both =
        |t: &Trace, op: &str| !t.named(op).is_empty() && !t.named("sandbox.execute").is_empty();
    let trace = jaeger
        .trace(&ok_trace, |t| both(t, "tracing-probe.echo"))
        .await;
    let operation = trace.one("tracing-probe.echo");
    assert_eq!(operation.text("eol.phase"), "implementation");
    assert_eq!(operation.text("eol.cache"), "none");
    let sandbox = trace.one("sandbox.execute");
    assert_child(&sandbox, &operation);
    assert_eq!(sandbox.text("eol.operation"), "echo");
    assert_eq!(sandbox.tag("error.type"), None);

    let trace = jaeger
        .trace(&failed_trace, |t| both(t, "tracing-probe.fail"))
        .await;
    let operation = trace.one("tracing-probe.fail");
    let sandbox = trace.one("sandbox.execute");
    assert_child(&sandbox, &operation);
    for span in [&operation, &sandbox] {
        assert_eq!(span.text("error.type"), "exception", "{}", span.name());
        assert_eq!(span.text("otel.status_code"), "ERROR", "{}", span.name());
    }
    assert!(
        operation.text("otel.status_description").contains("no hi"),
        "the status says what failed: {}",
        operation.text("otel.status_description")
    );
}

/// `eol serve` on `file` in the examples, with `env`; its stderr goes to `log`.
struct Server {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Server {
    /// SIGTERM, so `eol serve` stops the local Redis it started; SIGKILL after 5 s.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

impl Server {
    async fn start(file: &str, log: &Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
        cmd.args([
            "serve",
            file,
            "--no-test-gate",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(common::examples())
        .env("EOL_EMBEDDINGS", "off");
        for name in CLEARED {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/readyz", server.url))
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "eol serve did not become ready; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The names of the process's threads (`/proc/PID/task/*/comm`).
    fn threads(&self) -> Vec<String> {
        let pid = self.child.id().expect("the server runs");
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }
}

/// The JSON log lines of `log` whose message contains `needle`.
fn log_lines(log: &Path, needle: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .collect()
}

/// Two invalid answers, then a valid one: the second invalid answer is logged
/// ("invalid model answer; asking again") inside the operation span.
fn answers_after_two_invalid() -> Vec<Scripted> {
    vec![
        reply("not json", "scripted", 10, 2),
        reply("still not json", "scripted", 10, 3),
        reply(r#"{"label": "billing"}"#, "scripted", 10, 4),
    ]
}

const INVALID_ANSWER_LOG: &str = "invalid model answer";

/// The name of the batch exporter's thread as `comm` shows it (15 bytes).
const EXPORTER_THREAD: &str = "OpenTelemetry.T";

async fn post_traced(server: &Server, traceparent: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/operations/classify_ticket", server.url))
        .header("content-type", "application/json")
        .header("traceparent", traceparent)
        .body(r#"{"subject": "Invoice", "body": "I was charged twice"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_served_call_joins_the_callers_trace_and_its_logs_carry_the_ids() {
    let jaeger = Jaeger::start();
    let llm = ScriptedServer::start(answers_after_two_invalid()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let name = service("eol-serve");
    let server = Server::start(
        "support-triage.eol",
        &log,
        &[
            ("EOL_LLM_BASE_URL", &llm.url),
            ("EOL_LLM_MODEL", "triage-model"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &jaeger.otlp_url),
            ("OTEL_SERVICE_NAME", &name),
            // The standard batch setting, so the spans leave while the server runs.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("EOL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    assert!(
        server.threads().iter().any(|t| t == EXPORTER_THREAD),
        "tracing on: the batch exporter runs ({:?})",
        server.threads()
    );
    let (trace_id, parent_id, traceparent) = new_traceparent();
    assert_eq!(post_traced(&server, &traceparent).await, 200);
    let trace = jaeger
        .trace(&trace_id, |t| {
            !t.named("support-triage.classify_ticket").is_empty()
                && t.named("chat triage-model").len() == 3
                && !t.named("POST /v1/operations/{operation}").is_empty()
        })
        .await;
    let request = trace.one("POST /v1/operations/{operation}");
    assert_eq!(
        request.parent().as_deref(),
        Some(parent_id.as_str()),
        "the request span is a child of the caller's span"
    );
    assert_eq!(request.text("span.kind"), "server");
    assert_eq!(request.int("http.response.status_code"), Some(200));
    assert_eq!(trace.service(&request), name);
    let operation = trace.one("support-triage.classify_ticket");
    assert_child(&operation, &request);
    for chat in trace.named("chat triage-model") {
        assert_child(&chat, &operation);
    }

    let lines = log_lines(&log, INVALID_ANSWER_LOG);
    assert_eq!(lines.len(), 1, "one invalid answer was logged: {lines:?}");
    assert_eq!(lines[0]["trace_id"], json!(trace_id), "{}", lines[0]);
    assert_eq!(lines[0]["span_id"], json!(operation.id()), "{}", lines[0]);
    // A line outside any call belongs to no trace.
    let ready = log_lines(&log, "ready");
    assert!(
        !ready.is_empty() && ready.iter().all(|l| l.get("trace_id").is_none()),
        "{ready:?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_logs_carry_no_ids() {
    let llm = ScriptedServer::start(answers_after_two_invalid()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let server = Server::start(
        "support-triage.eol",
        &log,
        &[
            ("EOL_LLM_BASE_URL", &llm.url),
            ("EOL_LLM_MODEL", "triage-model"),
            ("OTEL_SERVICE_NAME", "eol-untraced"),
            ("EOL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let (_, _, traceparent) = new_traceparent();
    assert_eq!(post_traced(&server, &traceparent).await, 200);
    assert!(
        !server.threads().iter().any(|t| t == EXPORTER_THREAD),
        "tracing off: no exporter thread ({:?})",
        server.threads()
    );
    let lines = log_lines(&log, INVALID_ANSWER_LOG);
    assert_eq!(lines.len(), 1, "the call was logged: {lines:?}");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("OpenTelemetry"),
        "nothing about an exporter in the log"
    );
}

/// An async call (`Prefer: respond-async`) is one trace too: the request that
/// queued it under the caller's span, then, when a worker takes it from the
/// queue, a `queue {op}` consumer span under that request, with the
/// operation and its sandbox run beneath.
#[tokio::test]
async fn a_queued_call_joins_the_trace_of_the_request_that_queued_it() {
    let jaeger = Jaeger::start();
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let name = service("eol-queue");
    let server = Server::start(
        "inventory.eol",
        &log,
        &[
            ("REDIS_URL", &redis.url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &jaeger.otlp_url),
            ("OTEL_SERVICE_NAME", &name),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let (trace_id, parent_id, traceparent) = new_traceparent();
    let client = reqwest::Client::new();
    let queued = client
        .post(format!("{}/v1/operations/add_stock", server.url))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .header("traceparent", &traceparent)
        .body(r#"{"sku": "TRACED-1", "quantity": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status().as_u16(), 202);
    let id = queued.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record: Value = client
            .get(format!("{}/v1/results/{id}", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if record["state"] == "done" {
            assert_eq!(record["status"], json!(200), "{record}");
            break;
        }
        assert!(Instant::now() < deadline, "not answered: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = jaeger
        .trace(&trace_id, |t| {
            !t.named("sandbox.execute").is_empty()
                && !t.named("queue add_stock").is_empty()
                && !t.named("POST /v1/operations/{operation}").is_empty()
        })
        .await;
    let request = trace.one("POST /v1/operations/{operation}");
    assert_eq!(request.parent().as_deref(), Some(parent_id.as_str()));
    assert_eq!(request.int("http.response.status_code"), Some(202));
    let consumer = trace.one("queue add_stock");
    assert_child(&consumer, &request);
    assert_eq!(consumer.text("span.kind"), "consumer");
    assert_eq!(consumer.text("eol.call_id"), id);
    let operation = trace.one("inventory.add_stock");
    assert_child(&operation, &consumer);
    assert_eq!(operation.text("eol.phase"), "implementation");
    assert_child(&trace.one("sandbox.execute"), &operation);
    assert_eq!(trace.service(&consumer), name);
}
