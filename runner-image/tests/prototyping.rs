//! The prototyping engine: protocol edge cases against a scripted server, and
//! the whole path against the real local model when one is running.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer, scripted_settings};
use eol_core::{CompiledSchema, parse_feature};
use eol_runner::engine::Runtime;
use eol_runner::llm::{ChatClient, LlmSettings, ResponseFormatMode};
use eol_runner::prototype::{MAX_TOOL_ROUNDS, PromptContext, PrototypeError, Prototyper, Tools};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FEATURE: &str = r#"---
name: triage
phase: prototyping
---
# Triage

Tickets come from customers.

## Operations

### classify
Pick one label for the ticket.

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
  label: {type: string, enum: [bug, billing, question]}
required: [label]
```
"#;

fn settings(url: &str) -> LlmSettings {
    LlmSettings {
        price: None,
        prices: Default::default(),
        api_key: Some("sk-test".into()),
        timeout: Duration::from_millis(800),
        max_retries: 2,
        context_window: 2048,
        ..scripted_settings(url)
    }
}

struct Fixture {
    feature: eol_core::Feature,
    output: CompiledSchema,
}

fn fixture() -> Fixture {
    let feature = parse_feature("triage.eol", FEATURE).unwrap();
    let output = CompiledSchema::new(&feature.operations[0].output.value).unwrap();
    Fixture { feature, output }
}

async fn classify(p: &Prototyper, f: &Fixture) -> Result<serde_json::Value, PrototypeError> {
    let op = &f.feature.operations[0];
    p.execute(
        &f.feature,
        op,
        &json!({"text": "the app crashes"}),
        &f.output,
    )
    .await
    .map(|(v, _)| v)
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_retried_with_the_problem_fed_back() {
    let server = ScriptedServer::start(vec![
        Scripted::answer("I think it is a bug."),
        Scripted::answer("{\"label\": \"bug\"}"),
    ])
    .await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let f = fixture();
    let (value, trace) = p
        .execute(
            &f.feature,
            &f.feature.operations[0],
            &json!({"text": "x"}),
            &f.output,
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"label": "bug"}));
    assert_eq!(trace.attempts, 2);
    assert_eq!(trace.spend.usage.prompt_tokens, 22);
    let second = server.request(1);
    let last = second["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("not JSON"), "{last}");
    // The request carried the schema, the model settings and the key was sent, not logged.
    let first = server.request(0);
    assert_eq!(first["response_format"]["type"], "json_schema");
    assert_eq!(first["seed"], 1);
}

#[tokio::test]
async fn a_wrong_schema_every_time_ends_in_a_clear_error() {
    let wrong = Scripted::answer("{\"label\": \"urgent\"}");
    let server = ScriptedServer::start(vec![wrong.clone(), wrong.clone(), wrong]).await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let err = classify(&p, &fixture()).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_answer");
    assert!(
        err.to_string().contains("in 3 attempts") && err.to_string().contains("/label"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_time_the_server_asks() {
    let server = ScriptedServer::start(vec![
        Scripted::error(429, "slow down").with_header("Retry-After", "1"),
        Scripted::answer("{\"label\": \"billing\"}"),
    ])
    .await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let started = Instant::now();
    assert_eq!(
        classify(&p, &fixture()).await.unwrap(),
        json!({"label": "billing"})
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = ScriptedServer::start(vec![
        Scripted::error(500, "boom"),
        Scripted::error(503, "busy"),
        Scripted::error(502, "bad gateway"),
    ])
    .await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let err = classify(&p, &fixture()).await.unwrap_err();
    assert_eq!(server.request_count(), 3, "first try and two retries");
    assert_eq!(err.kind(), "llm_api_error", "{err}");
    assert!(err.to_string().contains("502"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let slow = Scripted::answer("{\"label\": \"bug\"}").after(Duration::from_secs(5));
    let server = ScriptedServer::start(vec![slow.clone(), slow.clone(), slow]).await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let started = Instant::now();
    let err = classify(&p, &fixture()).await.unwrap_err();
    assert_eq!(err.kind(), "llm_timeout", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_reported_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p =
        Prototyper::new(ChatClient::new(settings(&format!("http://127.0.0.1:{port}/v1"))).unwrap());
    let started = Instant::now();
    let err = classify(&p, &fixture()).await.unwrap_err();
    assert_eq!(err.kind(), "llm_unreachable", "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_refused_response_format_falls_back_and_is_remembered() {
    let server = ScriptedServer::start(vec![
        Scripted::error(400, "response_format type json_schema is not supported"),
        Scripted::answer("{\"label\": \"question\"}"),
        Scripted::answer("{\"label\": \"bug\"}"),
    ])
    .await;
    let client = ChatClient::new(settings(&server.url)).unwrap();
    let p = Prototyper::new(client);
    let f = fixture();
    assert_eq!(
        classify(&p, &f).await.unwrap(),
        json!({"label": "question"})
    );
    assert_eq!(
        p.client().response_format_mode(),
        ResponseFormatMode::JsonObjectWithSchema
    );
    assert_eq!(server.request(1)["response_format"]["type"], "json_object");
    assert!(server.request(1)["response_format"]["schema"].is_object());
    classify(&p, &f).await.unwrap();
    assert_eq!(
        server.request(2)["response_format"]["type"],
        "json_object",
        "the fallback is remembered"
    );
}

#[tokio::test]
async fn a_prompt_too_large_for_the_context_window_is_refused_before_sending() {
    let server = ScriptedServer::start(vec![]).await;
    let mut s = settings(&server.url);
    s.context_window = 300;
    let p = Prototyper::new(ChatClient::new(s).unwrap());
    let f = fixture();
    let big = "x".repeat(5000);
    let err = p
        .execute(
            &f.feature,
            &f.feature.operations[0],
            &json!({"text": big}),
            &f.output,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "context_overflow", "{err}");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn shared_context_is_trimmed_to_fit_and_the_trace_says_so() {
    let long_prose = (0..40)
        .map(|i| format!("Paragraph {i}: {}", "words ".repeat(40)))
        .collect::<Vec<_>>()
        .join("\n\n");
    let src = FEATURE.replace("Tickets come from customers.", &long_prose);
    let feature = parse_feature("triage.eol", &src).unwrap();
    let server = ScriptedServer::start(vec![Scripted::answer("{\"label\": \"bug\"}")]).await;
    let mut s = settings(&server.url);
    s.context_window = 1200;
    let p = Prototyper::new(ChatClient::new(s).unwrap());
    let output = CompiledSchema::new(&feature.operations[0].output.value).unwrap();
    let (_, trace) = p
        .execute(
            &feature,
            &feature.operations[0],
            &json!({"text": "x"}),
            &output,
        )
        .await
        .unwrap();
    let note = trace.context_note.expect("context was dropped");
    assert!(note.contains("of 40 context paragraphs"), "{note}");
    let system = server.request(0)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        system.contains("Paragraph 0:") && !system.contains("Paragraph 39:"),
        "the first paragraphs are kept"
    );
}

/// A tool box for the loop's edge cases: one tool, `kv__get`, which needs a `key`.
struct OneTool;
impl Tools for OneTool {
    fn definitions(&self) -> Vec<serde_json::Value> {
        vec![
            json!({"type": "function", "function": {"name": "kv__get", "description": "Reads a key",
            "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}}}),
        ]
    }
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            if name != "kv__get" {
                return Err(format!("unknown tool '{name}' (known: kv__get)"));
            }
            let args: serde_json::Value = serde_json::from_str(arguments)
                .map_err(|e| format!("arguments are not JSON: {e}"))?;
            let key = args["key"]
                .as_str()
                .ok_or("argument 'key' (a string) is required")?;
            Ok(format!("{{\"{key}\": \"bug\"}}"))
        })
    }
}

#[tokio::test]
async fn tool_results_and_tool_errors_are_fed_back_to_the_model() {
    let server = ScriptedServer::start(vec![
        Scripted::tool_call("kv__get", "{\"key\": \"last\"}"),
        Scripted::tool_call("shell__rm", "{}"),
        Scripted::tool_call("kv__get", "not json"),
        Scripted::answer("{\"label\": \"bug\"}"),
    ])
    .await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let f = fixture();
    let (value, trace) = p
        .execute_with(
            &f.feature,
            &f.feature.operations[0],
            &json!({"text": "x"}),
            &f.output,
            Some(&OneTool),
            &PromptContext::Ranked(&[]),
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"label": "bug"}));
    assert_eq!(trace.tool_calls, ["kv__get", "shell__rm", "kv__get"]);
    let last = server.request(3);
    let tool_msgs: Vec<String> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tool_msgs[0], "{\"last\": \"bug\"}");
    assert!(
        tool_msgs[1].starts_with("error: unknown tool 'shell__rm'"),
        "{tool_msgs:?}"
    );
    assert!(
        tool_msgs[2].starts_with("error: arguments are not JSON"),
        "{tool_msgs:?}"
    );
    assert!(server.request(0)["tools"].is_array());
}

#[tokio::test]
async fn endless_tool_calls_are_cut_off_and_an_answer_is_demanded() {
    let mut script =
        vec![Scripted::tool_call("kv__get", "{\"key\": \"k\"}"); MAX_TOOL_ROUNDS as usize];
    script.push(Scripted::answer("{\"label\": \"question\"}"));
    let server = ScriptedServer::start(script).await;
    let p = Prototyper::new(ChatClient::new(settings(&server.url)).unwrap());
    let f = fixture();
    let (value, trace) = p
        .execute_with(
            &f.feature,
            &f.feature.operations[0],
            &json!({"text": "x"}),
            &f.output,
            Some(&OneTool),
            &PromptContext::Ranked(&[]),
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"label": "question"}));
    assert_eq!(trace.tool_calls.len(), MAX_TOOL_ROUNDS as usize);
    let final_request = server.request(MAX_TOOL_ROUNDS as usize);
    assert!(
        final_request.get("tools").is_none(),
        "no tools are offered once the limit is reached"
    );
    assert!(
        final_request["messages"]
            .to_string()
            .contains("tool-call limit is reached")
    );
}

/// The whole path on the real local model (llama.cpp + SmolLM2), started by scripts/test.sh.
#[tokio::test]
async fn the_local_model_returns_schema_valid_output() {
    let Some(settings) = LlmSettings::from_env(None).unwrap() else {
        panic!(
            "EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model (scripts/llm.sh start) for this test"
        );
    };
    let p = Prototyper::new(ChatClient::new(settings).unwrap());
    let f = fixture();
    for text in [
        "The app crashes when I open it",
        "I was charged twice this month",
    ] {
        let (value, trace) = p
            .execute(
                &f.feature,
                &f.feature.operations[0],
                &json!({"text": text}),
                &f.output,
            )
            .await
            .unwrap();
        assert!(f.output.violations(&value).is_empty(), "{value}");
        assert!(
            trace.spend.usage.prompt_tokens > 0 && trace.spend.usage.completion_tokens > 0,
            "{trace:?}"
        );
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn references_become_context_and_prototyped_calls_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let src = FEATURE
        .replace(
            "phase: prototyping\n",
            "phase: prototyping\ncontext:\n  - notes.md\n",
        )
        .replace(
            "Tickets come from customers.",
            "Tickets come from customers. See @docs/policy.md and @feature:billing.",
        );
    write(dir.path(), "triage.eol", &src);
    write(
        dir.path(),
        "docs/policy.md",
        "Refunds are never promised by support.",
    );
    write(dir.path(), "notes.md", "Weekend tickets wait until Monday.");
    write(
        dir.path(),
        "billing.eol",
        "---\nname: billing\nphase: prototyping\n---\n# Billing\n\nInvoices are monthly.\n\n## Operations\n\n### invoice\nMakes an invoice.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\n```\n",
    );
    let file = dir.path().join("triage.eol");
    let feature = parse_feature("triage.eol", &src).unwrap();
    let server = ScriptedServer::start(vec![Scripted::answer("{\"label\": \"billing\"}")]).await;
    let redis = common::local_redis();
    let model = Arc::new(Prototyper::new(
        ChatClient::new(settings(&server.url)).unwrap(),
    ));
    let runtime = Runtime::load(
        file.to_str().unwrap(),
        feature.clone(),
        common::pool(1).await,
        common::store(&redis),
    )
    .await
    .unwrap()
    .with_model(Some(model));
    let input = json!({"text": "charged twice"});
    let exec = runtime.execute("classify", &input, None).await.unwrap();
    assert_eq!(exec.output, json!({"label": "billing"}));
    assert_eq!(exec.trace.unwrap().spend.usage.completion_tokens, 7);

    let system = server.request(0)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    for expected in [
        "Refunds are never promised",
        "Weekend tickets wait",
        "Invoices are monthly",
        "Operation invoice: Makes an invoice.",
    ] {
        assert!(
            system.contains(expected),
            "{expected:?} missing from the prompt:\n{system}"
        );
    }
    let examples = runtime.examples("classify", 10).await.unwrap();
    assert_eq!(
        examples,
        [json!({"input": input, "output": {"label": "billing"}})]
    );

    // A reference that cannot be read: `eol check` reports it where it was written,
    // and a running feature goes on without it, saying so in the trace.
    std::fs::remove_file(dir.path().join("docs/policy.md")).unwrap();
    let err = eol_runner::context::resolve_all(file.to_str().unwrap(), &feature)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("triage.eol:9:34:")
            && err.contains("reference 'docs/policy.md' cannot be read"),
        "{err}"
    );
    let server = ScriptedServer::start(vec![Scripted::answer("{\"label\": \"bug\"}")]).await;
    let model = Arc::new(Prototyper::new(
        ChatClient::new(settings(&server.url)).unwrap(),
    ));
    let runtime = Runtime::load(
        file.to_str().unwrap(),
        feature,
        common::pool(1).await,
        common::store(&redis),
    )
    .await
    .unwrap()
    .with_model(Some(model));
    let trace = runtime
        .execute("classify", &input, None)
        .await
        .unwrap()
        .trace
        .unwrap();
    let note = trace.context_note.unwrap();
    assert!(
        note.contains("unreadable references") && note.contains("docs/policy.md"),
        "{note}"
    );
}

#[tokio::test]
async fn the_most_relevant_context_is_kept_when_not_all_fits() {
    let server = ScriptedServer::start(vec![]).await;
    let mut s = settings(&server.url);
    s.context_window = 1000;
    let p = Prototyper::new(ChatClient::new(s).unwrap());
    let f = fixture();
    let filler = "Unrelated remarks about gardening, weather and holidays. ".repeat(20);
    let docs = [eol_runner::prototype::ContextDoc {
        name: "guide.md".into(),
        text: format!(
            "{filler}\n\nA crash label applies when the application crashes on start.\n\n{filler}"
        ),
    }];
    let (messages, note) = p
        .messages_with(
            &f.feature,
            &f.feature.operations[0],
            &json!({"text": "the application crashes"}),
            &PromptContext::Ranked(&docs),
        )
        .unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("crash label applies"), "{system}");
    assert!(note.is_some_and(|n| n.starts_with("left out")));
}
