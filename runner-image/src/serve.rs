//! `eol serve`: a feature over HTTP — the contract of a Feature's pods.
//!
//! `POST /v1/operations/{op}` (JSON in and out, errors as JSON with a stable
//! `kind`), `/healthz`, `/readyz` (ready once the feature is loaded and, unless
//! disabled, its tests pass in the serving phase), `/metrics`, and graceful
//! shutdown that lets in-flight calls finish. A shadow candidate also answers
//! `POST /v1/shadow/{op}`, `GET /v1/shadow/tally` and `PUT /v1/shadow/canary`
//! (the canary share the operator sets); a serving pod copies a sample of its
//! calls to the candidate on offer and, when the offer has a canary share,
//! forwards that share of its calls to the candidate and returns its answer
//! (header `x-eol-canary`), answering itself when the candidate fails
//! ([`crate::shadow`]).
//!
//! With Kubernetes auth ([`auth`]), an operation call needs a bearer token
//! whose identity RBAC allows to `invoke` it (401 and 403 otherwise), and every
//! call leaves an [`audit`] record.
//!
//! This module holds the server (its state, routes, start, readiness, usage
//! and metrics); `call` the path of an operation call and the JSON errors;
//! `queue` queued calls and their results; `shadow` the candidate's endpoints.

pub mod audit;
pub mod auth;
mod call;
pub mod listen;
mod queue;
mod shadow;

use crate::engine::Runtime;
use crate::metrics::{QueueMetrics, ServeMetrics, ShadowMetrics};
use crate::queue::{Queue, QueueSettings};
use crate::shadow::{Candidate, CandidateSettings, ShadowSender};
use crate::testing::{self, Verdict};
use audit::{AuditSettings, Auditor};
use auth::Reviewer;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use call::{
    AuditedInput, CallerOf, audit_call, call_operation, count_error, error_response, json_error,
    status_of,
};
use eol_core::TestSuite;
use eol_core::cost::USAGE_PATH;
use eol_core::runner_contract::{HEALTH_PATH, READY_PATH};
use eol_core::shadow::{CANARY_PATH, SHADOW_PATH, TALLY_PATH};
use prometheus_client::registry::Registry;
use shadow::{candidate_of, shadow_call, shadow_canary, shadow_tally};

pub use call::{BODY_TIMEOUT, MAX_BODY_BYTES};
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Whether the server takes traffic, and if not, why.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// The tests are still running.
    Testing,
    /// Ready to serve.
    Ready,
    /// The tests failed in the serving phase: never ready (the old pods keep serving).
    TestsFailed(String),
}

struct AppState {
    runtime: Arc<Runtime>,
    metrics: ServeMetrics,
    registry: Registry,
    readiness: Mutex<Readiness>,
    shadow: ShadowRole,
    /// Checks callers; `None`: anyone may call.
    reviewer: Option<Reviewer>,
    auditor: Auditor,
    /// The feature's queue of async calls; `None` without a shared Redis.
    queue: Option<Queue>,
    queue_metrics: QueueMetrics,
    /// A running average of a queued call's time here, in ms (for `Retry-After`).
    queue_call_millis: AtomicU64,
    /// Stopping: every response says `Connection: close` (see [`DRAIN`]).
    draining: std::sync::atomic::AtomicBool,
}

/// What `eol serve` does besides answering calls.
#[derive(Debug)]
pub struct ServeOptions {
    /// The tests gating readiness: it becomes ready only once every case passes in the serving phase.
    pub suite: Option<TestSuite>,
    /// Serve as a shadow candidate (see [`crate::shadow`]).
    pub candidate: Option<CandidateSettings>,
    /// Check callers with the Kubernetes API; `None`: anyone may call.
    pub reviewer: Option<Reviewer>,
    /// Where each call's audit record goes.
    pub audit: AuditSettings,
    /// How async calls are queued and answered.
    pub queue: QueueSettings,
    /// How long a stopping server goes on answering, with `Connection: close`,
    /// before it closes its listener and idle connections ([`DRAIN`]; none
    /// for `eol dev`, whose one caller has no other pod to move to).
    pub drain: std::time::Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            suite: None,
            candidate: None,
            reviewer: None,
            audit: AuditSettings::default(),
            queue: QueueSettings::default(),
            drain: DRAIN,
        }
    }
}

/// The phase that answered a call, on its response (for the audit record).
#[derive(Debug, Clone)]
struct AnsweredPhase(String);

/// The error kind a response carries, on it (for the audit record).
#[derive(Debug, Clone)]
struct ErrorKind(String);

/// This pod's part in a shadow switch.
enum ShadowRole {
    /// A candidate: answers copied calls and shows the tally; never copies its own calls.
    Candidate(Arc<Candidate>),
    /// A serving pod on a shared Redis: copies calls to the candidate on offer.
    Serving(Arc<ShadowSender>),
    /// A serving pod on a Redis of its own, which no candidate can reach.
    None,
}

/// The `operation` label of errors of calls to an operation the feature does not have.
pub const UNKNOWN_OPERATION: &str = "(unknown)";

/// The response header naming the cache that answered a call.
pub const CACHE_HEADER: &str = "x-eol-cache";

/// How long a stopping server keeps serving with `Connection: close` on
/// every response before it closes its idle connections (the default of
/// [`ServeOptions::drain`]).
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// While draining, tells the caller to open its next connection elsewhere.
async fn close_when_draining(
    State(state): State<Arc<AppState>>,
    mut response: Response,
) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/operations/{operation}", post(call_operation))
        // An operation named `tally` is still copied: POST goes to the call.
        .route(
            TALLY_PATH,
            get(shadow_tally).post(|state, headers, body| {
                shadow_call(state, Path("tally".to_owned()), headers, body)
            }),
        )
        // Likewise `canary`: PUT sets the weight, POST is a copied call.
        .route(
            CANARY_PATH,
            put(shadow_canary).post(|state, headers, body| {
                shadow_call(state, Path("canary".to_owned()), headers, body)
            }),
        )
        .route(SHADOW_PATH, post(shadow_call))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(readyz))
        .route("/metrics", get(metrics))
        .route(USAGE_PATH, get(usage))
        .route(
            &format!("{}/{{id}}", eol_core::runner_contract::queue::RESULTS_PATH),
            get(queue::result),
        )
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            close_when_draining,
        ))
        .with_state(state)
}

/// Serves `runtime` on `listener` until `shutdown` resolves; in-flight calls finish first.
pub async fn serve(
    runtime: Arc<Runtime>,
    options: ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut registry = Registry::with_prefix("eol");
    let metrics = ServeMetrics::register(&mut registry);
    if let Some(model) = runtime.model() {
        model.routes().set_metrics(metrics.llm.clone());
    }
    registry.register_collector(Box::new(crate::caches::CacheMetrics(
        runtime.caches().clone(),
    )));
    let ServeOptions {
        suite,
        candidate,
        reviewer,
        audit,
        queue,
        drain,
    } = options;
    let queue_metrics = QueueMetrics::register(&mut registry);
    // Async calls need a Redis every replica shares.
    let queue = runtime
        .store()
        .is_configured()
        .then(|| Queue::new(runtime.store().clone(), runtime.feature().name(), queue));
    let auditor = Auditor::new(audit, runtime.feature().name(), runtime.store().clone());
    let shadow = match candidate {
        Some(settings) => ShadowRole::Candidate(Arc::new(Candidate::new(settings))),
        None if runtime.store().is_configured() => {
            ShadowRole::Serving(Arc::new(ShadowSender::new(
                runtime.feature().name(),
                runtime.store().clone(),
                ShadowMetrics::register(&mut registry),
            )))
        }
        None => ShadowRole::None,
    };
    let state = Arc::new(AppState {
        runtime,
        metrics,
        registry,
        readiness: Mutex::new(Readiness::Testing),
        shadow,
        reviewer,
        auditor,
        queue,
        queue_metrics,
        queue_call_millis: AtomicU64::new(0),
        draining: std::sync::atomic::AtomicBool::new(false),
    });
    let (stop_workers, stopping) = tokio::sync::watch::channel(false);
    start_shadow(&state, stopping.clone());
    let workers = queue::start_workers(&state, stopping);
    let gate = state.clone();
    tokio::spawn(async move {
        let verdict = match suite {
            None => Readiness::Ready,
            Some(suite) => test_gate_through_outages(&gate.runtime, &suite).await,
        };
        match &verdict {
            Readiness::TestsFailed(why) => {
                tracing::warn!(feature = %gate.runtime.feature().name(), %why, "not ready: tests failed")
            }
            _ => tracing::info!(feature = %gate.runtime.feature().name(), "ready"),
        }
        if let Ok(mut r) = gate.readiness.lock() {
            *r = verdict;
        }
    });
    let leaving = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Workers take no new call from now on; the ones they run finish.
        let _ = stop_workers.send(true);
        // Callers' kept-alive connections move to other pods before the
        // idle ones are closed (a request sent on a connection as it closes
        // fails at the caller).
        leaving
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(drain).await;
        if let Some(candidate) = candidate_of(&leaving) {
            candidate.withdraw(&leaving.runtime).await;
        }
    };
    let served = listen::serve(listener, router(state), shutdown).await;
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    served
}

/// The background task of this pod's shadow role: publishing the offer, or
/// watching for one until the server stops.
fn start_shadow(state: &Arc<AppState>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let state = state.clone();
    match &state.shadow {
        ShadowRole::Candidate(candidate) => {
            let candidate = candidate.clone();
            tokio::spawn(async move {
                let ready = || matches!(state.readiness.lock().as_deref(), Ok(Readiness::Ready));
                candidate.publish_offers(&state.runtime, ready).await;
            });
        }
        ShadowRole::Serving(sender) => {
            let sender = sender.clone();
            // `eol dev` replaces servers in one process: none may leave its poller behind.
            tokio::spawn(async move {
                tokio::select! {
                    () = sender.watch_offers() => {}
                    _ = stopping.wait_for(|stop| *stop) => {}
                }
            });
        }
        ShadowRole::None => {}
    }
}

/// Runs of the tests after the first, when Redis may have spoiled a run.
const GATE_RETRIES: usize = 3;
/// The longest the gate waits for the feature's Redis to answer before it runs the tests again.
const GATE_REDIS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// [`test_gate`], run again (up to [`GATE_RETRIES`] times) when it failed
/// while the feature's Redis did not answer: a Redis pod that restarts under
/// a rollout fails the new pods' tests, not the feature. Each new run waits
/// until Redis answers a PING (at most [`GATE_REDIS_WAIT`]). A test that
/// fails with Redis up fails the gate at once.
async fn test_gate_through_outages(runtime: &Runtime, suite: &TestSuite) -> Readiness {
    let mut runs = 0;
    loop {
        let verdict = test_gate(runtime, suite).await;
        let Readiness::TestsFailed(why) = &verdict else {
            return verdict;
        };
        let store = runtime.store();
        if runs == GATE_RETRIES || !store.is_configured() {
            return verdict;
        }
        if redis_answers(store).await && !why.contains("Redis") {
            return verdict;
        }
        runs += 1;
        tracing::warn!(%why, run = runs, "tests failed while the feature's Redis was unreachable: running them again once it answers");
        let waiting = std::time::Instant::now();
        while !redis_answers(store).await && waiting.elapsed() < GATE_REDIS_WAIT {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Whether the feature's Redis answers a PING.
async fn redis_answers(store: &crate::store::RedisStore) -> bool {
    let Ok(mut conn) = store.connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

async fn test_gate(runtime: &Runtime, suite: &TestSuite) -> Readiness {
    let mut failures = Vec::new();
    // Replicas test at the same time, each in a keyspace of its own.
    let keyspace = testing::TestKeyspace::new(runtime.feature().name());
    for case in &suite.cases {
        let result = testing::run_case(runtime, &keyspace, case, None).await;
        if result.verdict == Verdict::Failed {
            failures.push(format!(
                "'{}': {}",
                case.title,
                result.reason.unwrap_or_default()
            ));
        }
    }
    keyspace.clear(runtime.store()).await;
    if failures.is_empty() {
        Readiness::Ready
    } else {
        Readiness::TestsFailed(failures.join("; "))
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let readiness = state
        .readiness
        .lock()
        .map(|r| r.clone())
        .unwrap_or(Readiness::Testing);
    match readiness {
        Readiness::Ready => (StatusCode::OK, "ready").into_response(),
        Readiness::Testing => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the tests are running",
        )
            .into_response(),
        Readiness::TestsFailed(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: tests failed: {why}"),
        )
            .into_response(),
    }
}

/// The feature's model use over the last hour and day, from the Redis
/// counters every replica adds to (503 without a shared Redis, or when it fails).
async fn usage(State(state): State<Arc<AppState>>) -> Response {
    let store = state.runtime.store();
    if !store.is_configured() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_shared_redis",
            "no usage: this server has no shared Redis (REDIS_URL)".to_owned(),
        );
    }
    let gate = state.runtime.model().and_then(|m| m.meter().budget());
    let read = async {
        let mut usage = crate::spend::read_usage_now(store, state.runtime.feature().name()).await?;
        if let Some(gate) = gate {
            usage.budget = Some(gate.state().await?);
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(usage)
    };
    match read.await {
        Ok(usage) => Json(usage).into_response(),
        Err(error) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis",
            format!("reading the usage counters failed: {error}"),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
