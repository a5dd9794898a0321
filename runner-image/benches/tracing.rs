//! Tracing overhead, side by side in one run: a warm implemented call
//! (sandbox) and a prototyped call (scripted model server), each in three
//! modes taking turns call by call:
//!
//! - **off**: the production subscriber without an endpoint, no tracer
//!   installed (what a runner without `OTEL_EXPORTER_OTLP_ENDPOINT` does);
//! - **sampled out**: the same spans made by an OpenTelemetry SDK tracer whose
//!   sampler drops them all (`always_off`): the SDK's own floor, what making
//!   a span and its context costs before anything is recorded or exported;
//! - **exported**: the production subscriber and tracer exporting to a real
//!   Jaeger v2 through the batch exporter.
//!
//! Each kind of call runs back to back (the worker and the caches warm, as
//! for a pod serving one operation), then the two spans of an implemented
//! call alone, outside any call (the least tracing can add to one). Reports
//! p50 and p99 per mode and each traced mode's ratio to off (target <= 1.05).
//!
//! Needs Jaeger (`EOL_JAEGER_BIN`, or `kind-tests/cluster.sh build`) and Python.
//! Run with `cargo bench -p eol-runner --bench tracing`.
//! `EOL_BENCH_PROFILE_SPANS=N` runs only the two spans, traced, N times, for a
//! profiler (`perf record`) to see where their time goes.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/common/scripted_llm.rs"]
mod scripted_llm;

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/common/jaeger.rs"]
mod jaeger;

use eol_core::parse_feature;
use eol_core::process::otel::{self, OtelSpan, Parent};
use eol_core::process::{TelemetrySettings, subscriber};
use eol_runner::engine::Runtime;
use eol_runner::llm::ChatClient;
use eol_runner::prototype::Prototyper;
use eol_runner::sandbox::{Interpreter, SandboxLimits, WorkerPool};
use eol_runner::store::RedisStore;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, TracerProvider as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use scripted_llm::{Scripted, ScriptedServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::instrument::WithSubscriber;

/// Calls measured per kind and mode (after the warm-up).
const CALLS: usize = 3000;
const WARM_UP: usize = 50;

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// The modes taking turns; off first, the one the others are divided by.
const MODES: [&str; 3] = ["off", "sampled out", "exported"];

/// One line per traced mode and quantile: its latency beside off's, and the ratio.
fn report(kind: &str, mut times: [Vec<Duration>; 3]) {
    for t in &mut times {
        t.sort();
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let off = quantile(&times[0], q);
        for (mode, on) in MODES.iter().zip(&times).skip(1) {
            let on = quantile(on, q);
            println!(
                "{kind:<15} {name}: off {:>9.1} us   {mode:<11} {:>9.1} us   {:>+7.1} us   ratio {:.3}",
                us(off),
                us(on),
                us(on) - us(off),
                on.as_secs_f64() / off.as_secs_f64()
            );
        }
    }
}

fn main() {
    let jaeger = jaeger::Jaeger::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The production subscriber both ways, logs at the default level; only the exporter differs.
    let (off, _off_guard) = subscriber("warn", &TelemetrySettings::off("eol-bench"));
    let (on, mut on_guard) = subscriber(
        "warn",
        &TelemetrySettings::exporting_to(&jaeger.otlp_url, "eol-bench"),
    );
    assert!(on_guard.is_exporting(), "{:?}", on_guard.setup_error());
    let on_tracer = on_guard.tracer();
    // Spans made and dropped by the sampler: the SDK's cost with nothing recorded.
    let sampled_out = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .build();
    let sampled_out_tracer = Some(sampled_out.tracer("eol-bench"));
    rt.block_on(async {
        let examples =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features/examples");
        let src =
            std::fs::read_to_string(examples.join("blog-publisher.eol")).expect("the example");
        let feature = parse_feature("blog-publisher.eol", &src).expect("parses");
        let calls = MODES.len() * (CALLS + WARM_UP) + 10;
        let server =
            ScriptedServer::start(vec![Scripted::answer(r#"{"tags": ["rust"]}"#); calls]).await;
        let model = ChatClient::new(scripted_llm::scripted_settings(&server.url)).expect("client");
        let python = Interpreter::discover(None).expect("python3");
        let pool = WorkerPool::start(python, SandboxLimits::default(), 1)
            .await
            .expect("the sandbox pool");
        let store = Arc::new(RedisStore::new(None));
        let runtime = Runtime::load("blog-publisher.eol", feature, pool, store)
            .await
            .expect("loads")
            .with_model(Some(Arc::new(Prototyper::new(model))));
        let slug = json!({"title": "Hello, World"});
        let post = json!({"title": "Tracing", "text": "Spans, exported over OTLP."});

        let call = async |operation: &str,
                          input: &Value,
                          dispatch: &tracing::Dispatch,
                          tracer: &Option<SdkTracer>| {
            // What init_tracing installs with each subscriber.
            otel::install(tracer.clone());
            let t = Instant::now();
            runtime
                .execute(operation, input, None)
                .with_subscriber(dispatch.clone())
                .await
                .unwrap_or_else(|e| panic!("{operation} failed: {e}"));
            t.elapsed()
        };
        // The two spans of an implemented call (as engine.rs and the sandbox
        // make them) and nothing else: what tracing costs at the least,
        // however short the call.
        let spans_alone = async |tracer: &Option<SdkTracer>| {
            otel::install(tracer.clone());
            let t = Instant::now();
            let op = OtelSpan::start(Parent::Current, || {
                SpanBuilder::from_name("blog-publisher.slugify").with_attributes([
                    KeyValue::new("eol.feature", "blog-publisher"),
                    KeyValue::new("eol.operation", "slugify"),
                ])
            });
            op.instrument(async {
                op.set("eol.phase", "implementation");
                let sandbox = OtelSpan::start(Parent::Current, || {
                    SpanBuilder::from_name("sandbox.execute")
                        .with_attributes([KeyValue::new("eol.operation", "slugify")])
                });
                sandbox.instrument(async { std::hint::black_box(()) }).await;
                op.set("eol.cache", "none");
            })
            .await;
            drop(op);
            t.elapsed()
        };
        // A profiler's view of the spans alone (`perf record`): only them, traced, many times.
        if let Some(n) = std::env::var("EOL_BENCH_PROFILE_SPANS")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                total += spans_alone(&on_tracer).await;
            }
            println!(
                "two spans alone, traced, {n} times: {:.2} us each",
                total.as_secs_f64() * 1e6 / n as f64
            );
            return;
        }
        let none = None;
        let modes = [(&off, &none), (&on, &sampled_out_tracer), (&on, &on_tracer)];
        println!(
            "{CALLS} calls per kind and mode, back to back, the modes taking turns; \
             exported: to Jaeger (batch exporter)"
        );
        for kind in ["implementation", "prototyping", "two spans alone"] {
            let mut times: [Vec<Duration>; 3] = Default::default();
            for i in 0..CALLS + WARM_UP {
                // Rotate which mode goes first, so none always follows another.
                for k in 0..MODES.len() {
                    let m = (i + k) % MODES.len();
                    let (dispatch, tracer) = modes[m];
                    let took = match kind {
                        "implementation" => call("slugify", &slug, dispatch, tracer).await,
                        "prototyping" => call("suggest_tags", &post, dispatch, tracer).await,
                        _ => spans_alone(tracer).await,
                    };
                    if i >= WARM_UP {
                        times[m].push(took);
                    }
                }
            }
            report(kind, times);
        }
    });
    // Every span sent: the measurement exported what it says it did.
    otel::install(None);
    on_guard.shutdown();
    let services = rt.block_on(jaeger.services());
    assert!(
        services.iter().any(|s| s == "eol-bench"),
        "Jaeger received no spans of eol-bench (it knows {services:?})"
    );
    println!("Jaeger received the spans of eol-bench");
}
