//! What the model costs, counted where users see it: `eol run` and `eol test`
//! print and report the tokens and cost of the run; two `eol serve` replicas on
//! one real Redis add every reply (failed answers too) to usage counters that
//! either one answers at `/v1/usage`, and to `eol_llm_tokens_total` and
//! `eol_llm_cost_total`. The model is the scripted server, whose every answer
//! uses 11 prompt and 7 completion tokens.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_core::cost::FeatureUsage;
use eol_runner::store::LocalRedis;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FEATURE: &str = "---\nname: greeter\nphase: prototyping\n---\n# Greeter\n\n## Operations\n\n### greet\nGreets someone by name.\n\nInput:\n```yaml\ntype: object\nproperties:\n  name: {type: string}\nrequired: [name]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  greeting: {type: string}\nrequired: [greeting]\n```\n";

const TESTS: &str = "---\nfeature: greeter\n---\n\n## greets Ada\nOperation: greet\nInput:\n```yaml\nname: Ada\n```\nExpect:\n```yaml\ngreeting: hi\n```\n";

/// The model's name and price: $0.15 per million prompt tokens, $0.60 per million completion tokens.
const MODEL: &str = "gpt-test";
const PRICES: &str = r#"{"gpt-test": {"input": 0.15, "output": 0.6}}"#;
/// One scripted answer: 11 × 150 + 7 × 600 nano-dollars.
const ANSWER_NANOS: f64 = 5_850.0;

fn feature_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.eol"), FEATURE).unwrap();
    std::fs::write(dir.path().join("greeter.test.eol"), TESTS).unwrap();
    dir
}

fn greeting() -> Scripted {
    Scripted::answer(r#"{"greeting": "hi"}"#)
}

/// `eol` in `dir` on the scripted model, with `vars` over the model settings.
fn eol(
    dir: &std::path::Path,
    llm: &ScriptedServer,
    vars: &[(&str, &str)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    command
        .current_dir(dir)
        .env_remove("REDIS_URL")
        .env("EOL_LLM_BASE_URL", &llm.url)
        .env("EOL_LLM_MODEL", MODEL)
        .env("EOL_LLM_PRICES", PRICES)
        // No semantic cache: every call reaches the model.
        .env("EOL_EMBEDDINGS", "off")
        .kill_on_drop(true);
    for (k, v) in vars {
        command.env(k, v);
    }
    command
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12_f64.max(b.abs() * 1e-9)
}

#[tokio::test]
async fn a_run_prints_and_reports_its_tokens_and_cost() {
    let dir = feature_dir();
    let llm = ScriptedServer::start(vec![greeting()]).await;
    let report = dir.path().join("report.json");
    let out = eol(dir.path(), &llm, &[])
        .args([
            "run",
            "greeter.eol",
            "--operation",
            "greet",
            "--input",
            r#"{"name": "Ada"}"#,
        ])
        .arg("--report-file")
        .arg(&report)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eol run failed: {stderr}");
    assert!(
        stderr.contains("model gpt-test: 1 requests, 11 tokens in, 7 out, $0.000006"),
        "no cost line in: {stderr}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["tokens"], 18, "{report}");
    assert_eq!(report["inputTokens"], 11, "{report}");
    assert_eq!(report["outputTokens"], 7, "{report}");
    let cost = report["cost"].as_f64().unwrap();
    assert!(close(cost, ANSWER_NANOS / 1e9), "cost {cost} in {report}");

    // A model without a price: the tokens count, the cost is said to be unknown.
    let llm = ScriptedServer::start(vec![greeting()]).await;
    let out = eol(dir.path(), &llm, &[("EOL_LLM_MODEL", "unpriced")])
        .args([
            "run",
            "greeter.eol",
            "--operation",
            "greet",
            "--input",
            r#"{"name": "Ada"}"#,
        ])
        .arg("--report-file")
        .arg(dir.path().join("report2.json"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eol run failed: {stderr}");
    assert!(
        stderr.contains("model unpriced: 1 requests, 11 tokens in, 7 out, cost unknown (no price for model 'unpriced'"),
        "{stderr}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report2.json")).unwrap()).unwrap();
    assert_eq!(report["tokens"], 18, "{report}");
    assert_eq!(report.get("cost"), None, "{report}");
}

#[tokio::test]
async fn a_test_suite_counts_every_answer_it_asked_for() {
    let dir = feature_dir();
    // The first answer does not match the Output schema: asked again, both count.
    let llm = ScriptedServer::start(vec![Scripted::answer("no JSON here"), greeting()]).await;
    let report = dir.path().join("report.json");
    let out = eol(dir.path(), &llm, &[])
        .args(["test", "greeter.test.eol"])
        .arg("--report-file")
        .arg(&report)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eol test failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(llm.request_count(), 2);
    assert!(
        stdout.contains("model gpt-test: 2 requests, 22 tokens in, 14 out, $0.000012"),
        "no cost line in: {stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["testsPassed"], 1, "{report}");
    assert_eq!(report["inputTokens"], 22, "{report}");
    assert!(
        close(report["cost"].as_f64().unwrap(), 2.0 * ANSWER_NANOS / 1e9),
        "{report}"
    );
}

struct Server {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The servers use the test's Redis, so there is no local Redis of theirs to stop.
        let _ = self.child.start_kill();
    }
}

/// An `eol serve` replica of the feature in `dir` on `redis`, ready.
async fn serve(dir: &std::path::Path, llm: &ScriptedServer, redis: &LocalRedis) -> Server {
    serve_with(dir, llm, redis, &[]).await
}

/// [`serve`] with more environment `vars`.
async fn serve_with(
    dir: &std::path::Path,
    llm: &ScriptedServer,
    redis: &LocalRedis,
    vars: &[(&str, &str)],
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // No tests beside it: the replica is ready at once, and asks the model nothing first.
    let serve_dir = tempfile::tempdir().unwrap().keep();
    std::fs::copy(dir.join("greeter.eol"), serve_dir.join("greeter.eol")).unwrap();
    let mut vars = vars.to_vec();
    vars.push(("REDIS_URL", &redis.url));
    let child = eol(&serve_dir, llm, &vars)
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

async fn call(server: &Server, name: &str) -> u16 {
    call_full(server, name).await.status().as_u16()
}

async fn call_full(server: &Server, name: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/operations/greet", server.url))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

/// The value of the metric line starting with `series` (labels included).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test]
async fn replicas_add_every_reply_to_one_usage_total_and_their_metrics() {
    let redis = common::local_redis();
    let dir = feature_dir();
    // 6 calls on the first replica, 4 on the second, then one call whose 3
    // answers are all invalid: it fails, and its 3 requests still count.
    let mut script: Vec<Scripted> = (0..10).map(|_| greeting()).collect();
    script.extend((0..3).map(|_| Scripted::answer("still no JSON")));
    let llm = ScriptedServer::start(script).await;
    let (a, b) = (
        serve(dir.path(), &llm, &redis).await,
        serve(dir.path(), &llm, &redis).await,
    );
    for i in 0..6 {
        assert_eq!(call(&a, &format!("a{i}")).await, 200);
    }
    for i in 0..4 {
        assert_eq!(call(&b, &format!("b{i}")).await, 200);
    }
    assert_eq!(call(&b, "invalid").await, 502);
    assert_eq!(llm.request_count(), 13);

    let usage: FeatureUsage = reqwest::get(format!("{}/v1/usage", a.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for window in [&usage.last_hour, &usage.last_day] {
        assert_eq!(window.requests, 13, "{usage:?}");
        assert_eq!(window.input_tokens, 13 * 11, "{usage:?}");
        assert_eq!(window.output_tokens, 13 * 7, "{usage:?}");
        assert!(close(window.cost, 13.0 * ANSWER_NANOS / 1e9), "{usage:?}");
        assert_eq!(window.unpriced_requests, 0);
    }
    // Either replica answers the same shared totals.
    let from_b: FeatureUsage = reqwest::get(format!("{}/v1/usage", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(from_b, usage);

    // Each replica's metrics count its own replies, by direction and model.
    let text = reqwest::get(format!("{}/metrics", a.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |name: &str, direction: &str| {
        format!("{name}{{operation=\"greet\",direction=\"{direction}\",model=\"{MODEL}\"}}")
    };
    assert_eq!(metric(&text, &series("eol_llm_tokens_total", "in")), 66.0);
    assert_eq!(metric(&text, &series("eol_llm_tokens_total", "out")), 42.0);
    assert!(close(
        metric(&text, &series("eol_llm_cost_total", "in")),
        6.0 * 11.0 * 0.15 / 1e6
    ));
    assert!(close(
        metric(&text, &series("eol_llm_cost_total", "out")),
        6.0 * 7.0 * 0.6 / 1e6
    ));
    let text = reqwest::get(format!("{}/metrics", b.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, &series("eol_llm_tokens_total", "in")), 77.0);
}

#[tokio::test]
async fn a_replica_without_a_shared_redis_says_it_has_no_usage() {
    let dir = feature_dir();
    let llm = ScriptedServer::start(vec![]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("greeter.eol"),
        serve_dir.path().join("greeter.eol"),
    )
    .unwrap();
    let _child = eol(serve_dir.path(), &llm, &[])
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
    let url = format!("http://127.0.0.1:{port}/v1/usage");
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        if let Ok(r) = reqwest::get(&url).await {
            break r;
        }
        assert!(Instant::now() < deadline, "eol serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "no_shared_redis", "{body}");
}

/// The budget of the burst test: 50 answers' worth of tokens an hour.
const BURST_BUDGET: i64 = 900;
/// Calls in flight at once on each replica.
const IN_FLIGHT: usize = 8;

#[tokio::test]
async fn a_budget_holds_across_two_replicas_under_a_burst_of_200_calls() {
    use futures::StreamExt;
    let redis = common::local_redis();
    let dir = feature_dir();
    let llm = ScriptedServer::start((0..200).map(|_| greeting()).collect()).await;
    let budget = format!(r#"{{"tokens": {BURST_BUDGET}, "per": "hour"}}"#);
    let vars = [("EOL_BUDGET", budget.as_str())];
    let replicas = [
        serve_with(dir.path(), &llm, &redis, &vars).await,
        serve_with(dir.path(), &llm, &redis, &vars).await,
    ];
    // 100 calls on each replica, IN_FLIGHT at a time on each.
    let calls = futures::stream::iter(0..200)
        .map(|i| {
            let server = &replicas[i % 2];
            async move { call_full(server, &format!("n{i}")).await }
        })
        .buffer_unordered(2 * IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut answered = 0i64;
    for response in calls {
        match response.status().as_u16() {
            200 => answered += 1,
            429 => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=3600).contains(&retry), "Retry-After {retry}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["kind"], "budget_exceeded", "{body}");
            }
            other => panic!("HTTP {other}: {}", response.text().await.unwrap()),
        }
    }
    let per_call = 18;
    let in_flight = (2 * IN_FLIGHT) as i64;
    // Every call starts while the budget is not spent: at least the budget's
    // worth; at most that plus the calls in flight when it was reached.
    assert!(
        (BURST_BUDGET / per_call..=BURST_BUDGET / per_call + in_flight).contains(&answered),
        "{answered} calls answered"
    );
    assert_eq!(
        llm.request_count() as i64,
        answered,
        "a refused call asks nothing"
    );
    let usage: FeatureUsage = reqwest::get(format!("{}/v1/usage", replicas[0].url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let budget = usage.budget.expect("the budget's state");
    assert_eq!(budget.spent.tokens, answered * per_call, "{budget:?}");
    assert!(budget.spent.tokens <= BURST_BUDGET + in_flight * per_call);
    assert!(budget.exceeded, "{budget:?}");
    assert_eq!(
        budget.summary,
        format!("{}/{BURST_BUDGET} tokens per hour", answered * per_call)
    );
    eprintln!(
        "budget {BURST_BUDGET} tokens: {answered} of 200 calls answered, {} tokens spent ({} over, {in_flight} calls in flight at most)",
        budget.spent.tokens,
        budget.spent.tokens - BURST_BUDGET
    );
}

/// The greeter with Python for `greet`, still prototyping, and `budget` in its frontmatter.
fn coded_feature_dir(budget: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = FEATURE.replace(
        "phase: prototyping\n",
        &format!("phase: prototyping\nbudget: {budget}\n"),
    ) + "\n```python\ndef greet(name):\n    return {\"greeting\": \"hello \" + name}\n```\n";
    std::fs::write(dir.path().join("greeter.eol"), source).unwrap();
    dir
}

/// `eol run` of `greet` on Ada with JSON output: the result, or the report's error kind.
async fn run_json(
    dir: &std::path::Path,
    llm: &ScriptedServer,
    vars: &[(&str, &str)],
) -> Result<Value, String> {
    let report = dir.join("report.json");
    let out = eol(dir, llm, vars)
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
    if out.status.success() {
        return Ok(serde_json::from_slice(&out.stdout).unwrap());
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    Err(format!(
        "{}: {}",
        report["errorKind"].as_str().unwrap_or(""),
        report["error"]
    ))
}

#[tokio::test]
async fn a_spent_budget_refuses_or_switches_to_the_implementation_or_a_cheaper_model() {
    let redis = common::local_redis();
    let vars = [("REDIS_URL", redis.url.as_str())];

    // From the frontmatter: the first call spends the 1-token budget, the next runs the Python.
    let dir = coded_feature_dir("{tokens: 1, per: day, on_exceeded: implementation}");
    let llm = ScriptedServer::start(vec![greeting()]).await;
    let first = run_json(dir.path(), &llm, &vars).await.unwrap();
    assert_eq!(
        (first["phase"].as_str(), &first["output"]),
        (Some("prototyping"), &json!({"greeting": "hi"}))
    );
    let second = run_json(dir.path(), &llm, &vars).await.unwrap();
    assert_eq!(
        (second["phase"].as_str(), &second["output"]),
        (Some("implementation"), &json!({"greeting": "hello Ada"}))
    );
    assert_eq!(llm.request_count(), 1);

    // From EOL_BUDGET (as the operator sets it), over the frontmatter's: a cheaper model.
    let budget = r#"{"tokens": 1, "per": "day", "onExceeded": "Model", "model": "cheap"}"#;
    let llm = ScriptedServer::start(vec![greeting()]).await;
    let vars = [("REDIS_URL", redis.url.as_str()), ("EOL_BUDGET", budget)];
    // The budget above is already spent today (the same feature, the same Redis).
    let cheap = run_json(dir.path(), &llm, &vars).await.unwrap();
    assert_eq!(cheap["phase"], "prototyping");
    assert_eq!(cheap["trace"]["model"], "cheap", "{cheap}");
    assert_eq!(llm.request(0)["model"], "cheap");
    // The run's spend is the cheaper model's, which answered.
    assert_eq!(cheap["spend"]["requests"], 1, "{cheap}");
    assert!(
        cheap["spend"]["usage"]["prompt_tokens"].as_u64() > Some(0),
        "{cheap}"
    );

    // Reject: the run fails with a stable kind, and the model is not asked.
    let llm = ScriptedServer::start(vec![greeting()]).await;
    let vars = [
        ("REDIS_URL", redis.url.as_str()),
        ("EOL_BUDGET", r#"{"tokens": 1}"#),
    ];
    let refused = run_json(dir.path(), &llm, &vars).await.unwrap_err();
    assert!(refused.starts_with("budget_exceeded: "), "{refused}");
    assert!(
        refused.contains("the model budget is spent (36/1 tokens per day)"),
        "{refused}"
    );
    assert_eq!(llm.request_count(), 0);

    // A budget that makes no sense is refused at start, naming where it came from.
    let vars = [
        ("REDIS_URL", redis.url.as_str()),
        ("EOL_BUDGET", r#"{"per": "day"}"#),
    ];
    let err = run_json(dir.path(), &llm, &vars).await.unwrap_err();
    assert!(
        err.contains("EOL_BUDGET") && err.contains("a budget needs tokens or cost"),
        "{err}"
    );
}
