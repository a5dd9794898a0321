//! Model fallbacks with real processes: `eol serve` and `eol run` on two
//! scripted servers, a primary that fails and then recovers and a fallback.
//! During the failure the fallback answers; after the cooldown the primary is
//! asked again; which model answered is in the trace, the run report and the
//! metrics. An error of the request itself (400) does not fall back.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_runner::store::LocalRedis;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FEATURE: &str = "---\nname: greeter\nphase: prototyping\n---\n# Greeter\n\n## Operations\n\n### greet\nGreets someone by name.\n\nInput:\n```yaml\ntype: object\nproperties:\n  name: {type: string}\nrequired: [name]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  greeting: {type: string}\nrequired: [greeting]\n```\n";

const PRIMARY: &str = "gpt-primary";
const FALLBACK: &str = "gpt-backup";
/// Seconds a failing model cools down in these tests.
const COOLDOWN: &str = "1";

fn feature_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.eol"), FEATURE).unwrap();
    dir
}

fn greeting() -> Scripted {
    Scripted::answer(r#"{"greeting": "hi"}"#)
}

/// `eol` in `dir` on `primary`, falling back to `fallback`, with no HTTP
/// retries (each failure is one request) and a 1 s cooldown.
fn eol(
    dir: &std::path::Path,
    primary: &ScriptedServer,
    fallback: &ScriptedServer,
) -> tokio::process::Command {
    let routes = json!([{"base_url": fallback.url, "model": FALLBACK}]).to_string();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    command
        .current_dir(dir)
        .env_remove("REDIS_URL")
        .env("EOL_LLM_BASE_URL", &primary.url)
        .env("EOL_LLM_MODEL", PRIMARY)
        .env("EOL_LLM_FALLBACKS", routes)
        .env("EOL_LLM_COOLDOWN", COOLDOWN)
        .env("EOL_LLM_MAX_RETRIES", "0")
        // No semantic cache: every call reaches a model.
        .env("EOL_EMBEDDINGS", "off")
        .kill_on_drop(true);
    command
}

struct Server {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An `eol serve` of the feature in `dir` on `redis`, ready.
async fn serve(
    dir: &std::path::Path,
    primary: &ScriptedServer,
    fallback: &ScriptedServer,
    redis: &LocalRedis,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = eol(dir, primary, fallback)
        .env("REDIS_URL", &redis.url)
        .args([
            "serve",
            "greeter.eol",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.url)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "eol serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn greet(server: &Server, name: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/operations/greet", server.url))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The value of the metric line starting with `series` (labels included), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How many requests (primary, fallback) got so far.
fn asked(primary: &ScriptedServer, fallback: &ScriptedServer) -> (usize, usize) {
    (primary.request_count(), fallback.request_count())
}

#[tokio::test]
async fn the_fallback_answers_while_the_primary_fails_and_the_primary_is_asked_after_the_cooldown()
{
    let redis = common::local_redis();
    let dir = feature_dir();
    // The primary fails twice (its first request, and its first after a
    // cooldown), then recovers.
    let primary = ScriptedServer::start(vec![
        Scripted::error(500, "overloaded"),
        Scripted::error(503, "still overloaded"),
        greeting(),
        greeting(),
    ])
    .await;
    let fallback = ScriptedServer::start(vec![greeting(), greeting(), greeting()]).await;
    let server = serve(dir.path(), &primary, &fallback, &redis).await;

    // The primary fails: the same call goes to the fallback at once.
    assert_eq!(greet(&server, "a").await, 200);
    assert_eq!(asked(&primary, &fallback), (1, 1));
    // The primary cools down: the fallback alone is asked.
    assert_eq!(greet(&server, "b").await, 200);
    assert_eq!(asked(&primary, &fallback), (1, 2));
    // After the cooldown the primary is asked again; still failing, it cools down again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(greet(&server, "c").await, 200);
    assert_eq!(asked(&primary, &fallback), (2, 3));
    // Recovered: after the next cooldown the primary answers, and goes on answering.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(greet(&server, "d").await, 200);
    assert_eq!(asked(&primary, &fallback), (3, 3));
    assert_eq!(greet(&server, "e").await, 200);
    assert_eq!(asked(&primary, &fallback), (4, 3));
    // Every request to the fallback is the same request the primary got.
    assert_eq!(
        fallback.request(0)["messages"],
        primary.request(0)["messages"]
    );
    assert_eq!(fallback.request(0)["model"], FALLBACK);
    assert_eq!(primary.request(0)["model"], PRIMARY);

    // Tokens by the model that answered (11 in, 7 out each), and the fallbacks.
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tokens = |model: &str| {
        metric(
            &text,
            &format!(
                "eol_llm_tokens_total{{operation=\"greet\",direction=\"in\",model=\"{model}\"}}"
            ),
        )
    };
    assert_eq!(tokens(FALLBACK), 33.0, "{text}");
    assert_eq!(tokens(PRIMARY), 22.0, "{text}");
    let series = format!("eol_llm_fallbacks_total{{from=\"{PRIMARY}\",to=\"{FALLBACK}\"}}");
    assert_eq!(metric(&text, &series), 3.0, "{text}");
}

/// `eol run greet --output json` on the two servers: its exit status, its JSON
/// output, its report, and everything it printed.
async fn run(primary: &ScriptedServer, fallback: &ScriptedServer) -> (bool, Value, Value, String) {
    let dir = feature_dir();
    let report = dir.path().join("report.json");
    let out = eol(dir.path(), primary, fallback)
        .args([
            "run",
            "greeter.eol",
            "--operation",
            "greet",
            "--input",
            r#"{"name": "Ada"}"#,
            "--output",
            "json",
        ])
        .arg("--report-file")
        .arg(&report)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let report = std::fs::read(&report)
        .ok()
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or(Value::Null);
    (out.status.success(), result, report, printed)
}

#[tokio::test]
async fn a_run_names_the_fallback_that_answered_in_its_trace_and_report() {
    let primary = ScriptedServer::start(vec![Scripted::error(500, "down")]).await;
    let fallback = ScriptedServer::start(vec![greeting()]).await;
    let (ok, result, report, printed) = run(&primary, &fallback).await;
    assert!(ok, "eol run failed: {printed}");
    assert_eq!(asked(&primary, &fallback), (1, 1));
    assert_eq!(result["output"], json!({"greeting": "hi"}), "{result}");
    assert_eq!(result["trace"]["model"], FALLBACK, "{result}");
    assert_eq!(result["trace"]["fallbacks"], 1, "{result}");
    assert_eq!(report["model"], FALLBACK, "{report}");
    assert_eq!(report["tokens"], 18, "{report}");

    // The primary answering: it is the one named, and nothing fell back.
    let primary = ScriptedServer::start(vec![greeting()]).await;
    let fallback = ScriptedServer::start(vec![]).await;
    let (ok, result, report, printed) = run(&primary, &fallback).await;
    assert!(ok, "eol run failed: {printed}");
    assert_eq!(asked(&primary, &fallback), (1, 0));
    assert_eq!(result["trace"]["model"], PRIMARY, "{result}");
    assert_eq!(result["trace"]["fallbacks"], 0, "{result}");
    assert_eq!(report["model"], PRIMARY, "{report}");
}

#[tokio::test]
async fn an_error_of_the_request_itself_does_not_fall_back() {
    let primary = ScriptedServer::start(vec![Scripted::error(400, "unknown role 'wizard'")]).await;
    let fallback = ScriptedServer::start(vec![greeting()]).await;
    let (ok, _, report, printed) = run(&primary, &fallback).await;
    assert!(!ok, "a 400 should fail the run");
    assert_eq!(asked(&primary, &fallback), (1, 0), "{printed}");
    assert!(printed.contains("400"), "{printed}");
    assert_eq!(report.get("model"), None, "{report}");
}

#[tokio::test]
async fn when_every_model_fails_the_run_fails_with_the_last_error() {
    let primary = ScriptedServer::start(vec![Scripted::error(500, "primary down")]).await;
    let fallback = ScriptedServer::start(vec![Scripted::error(502, "backup down")]).await;
    let (ok, _, _, printed) = run(&primary, &fallback).await;
    assert!(!ok, "the run should fail");
    assert_eq!(asked(&primary, &fallback), (1, 1));
    assert!(printed.contains("backup down"), "{printed}");
}
