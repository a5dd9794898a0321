//! Prototyping benchmark, side by side in one run:
//! 1. the engine's own overhead (prompt build, request, validation) against a raw
//!    HTTP request with the same body to the same scripted server (target <= 1.2x);
//! 2. with EOL_LLM_BASE_URL set (e.g. `eval "$(scripts/llm.sh start)"`): the same
//!    operation in both phases on the local model, prototyping / implementation.
//!
//! Run with `cargo bench -p eol-runner --bench prototype`.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/common/scripted_llm.rs"]
mod scripted_llm;

use eol_core::{CompiledSchema, Phase, parse_feature};
use eol_runner::engine::Runtime;
use eol_runner::llm::{ChatClient, LlmSettings, ResponseFormatMode};
use eol_runner::prototype::Prototyper;
use eol_runner::sandbox::{Interpreter, SandboxLimits, WorkerPool};
use eol_runner::store::RedisStore;
use scripted_llm::{Scripted, ScriptedServer};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features/examples");
        let src = std::fs::read_to_string(examples.join("support-triage.eol")).expect("example");
        let feature = parse_feature("support-triage.eol", &src).expect("parses");
        let op = feature.operation("classify_ticket").expect("op").clone();
        let output = CompiledSchema::new(&op.output.value).expect("schema");
        let input = json!({"subject": "App crashes", "body": "It closes when I open it."});
        let n = 400;

        // 1. Engine overhead against a raw request, interleaved.
        let server = ScriptedServer::start(vec![Scripted::answer("{\"label\": \"bug\"}"); 2 * n + 20]).await;
        let settings = LlmSettings {
            response_format: ResponseFormatMode::JsonObjectWithSchema,
            ..scripted_llm::scripted_settings(&server.url)
        };
        let prototyper = Prototyper::new(ChatClient::new(settings).expect("client"));
        let (messages, _) = prototyper.messages(&feature, &op, &input).expect("prompt");
        let body = json!({"model": "scripted", "messages": messages, "temperature": 0.0, "max_tokens": 64, "stream": false,
            "response_format": {"type": "json_object", "schema": op.output.value}});
        let http = reqwest::Client::new();
        let url = format!("{}/chat/completions", server.url);
        let (mut raw, mut engine) = (Vec::new(), Vec::new());
        for i in 0..n + 10 {
            let t = Instant::now();
            let resp = http.post(&url).json(&body).send().await.expect("raw request");
            let _: serde_json::Value = resp.json().await.expect("raw json");
            let raw_time = t.elapsed();
            let t = Instant::now();
            prototyper.execute(&feature, &op, &input, &output).await.expect("engine call");
            let engine_time = t.elapsed();
            if i >= 10 {
                raw.push(raw_time);
                engine.push(engine_time);
            }
        }
        let (raw, engine) = (p50(raw), p50(engine));
        println!("raw HTTP request (p50):           {:>9.1} us", raw.as_secs_f64() * 1e6);
        println!("engine execute (p50):            {:>9.1} us", engine.as_secs_f64() * 1e6);
        println!("ratio engine / raw:              {:>9.3} (target <= 1.2)", engine.as_secs_f64() / raw.as_secs_f64());

        // 2. Both phases on the local model.
        let Ok(Some(local)) = LlmSettings::from_env(None) else {
            println!("local model: EOL_LLM_BASE_URL not set; start it with: eval \"$(scripts/llm.sh start)\"");
            return;
        };
        let src = std::fs::read_to_string(examples.join("blog-publisher.eol")).expect("example");
        let blog = parse_feature("blog-publisher.eol", &src).expect("parses");
        let python = Interpreter::discover(None).expect("python3");
        let pool = WorkerPool::start(python, SandboxLimits::default(), 1).await.expect("pool");
        let store = Arc::new(RedisStore::new(std::env::var("REDIS_URL").ok()));
        let runtime = Runtime::load("blog-publisher.eol", blog, pool, store)
            .await
            .expect("loads")
            .with_model(Some(Arc::new(Prototyper::new(ChatClient::new(local).expect("client")))));
        let input = json!({"title": "Hello, World"});
        let mut proto = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let r = runtime.execute("slugify", &input, Some(Phase::Prototyping)).await;
            proto.push(t.elapsed());
            if let Err(e) = r {
                println!("  (a prototyped call failed: {e})");
            }
        }
        let mut implemented = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            runtime.execute("slugify", &input, Some(Phase::Implementation)).await.expect("implemented call");
            implemented.push(t.elapsed());
        }
        let (proto, implemented) = (p50(proto), p50(implemented));
        println!("slugify prototyping (p50, local model): {:>10.1} ms", proto.as_secs_f64() * 1e3);
        println!("slugify implementation (p50, sandbox):  {:>10.3} ms", implemented.as_secs_f64() * 1e3);
        println!("ratio prototyping / implementation:     {:>10.0}x", proto.as_secs_f64() / implemented.as_secs_f64());
    });
}
