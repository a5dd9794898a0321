//! Async calls over HTTP, and the workers that answer them.
//!
//! `POST /v1/operations/{op}` with `Prefer: respond-async` (or `?mode=async`)
//! checks the call (the operation exists, the input matches its schema),
//! enqueues it ([`crate::queue`]) and answers 202 with the call's id and
//! `Location: /v1/results/{id}`. An `Idempotency-Key` header (scoped to the
//! caller) makes a retried POST return the first call's id instead of
//! enqueueing again; the same key with another input is refused (422). A full
//! queue answers 429 with `Retry-After`.
//!
//! `GET /v1/results/{id}` answers the call's record to the caller who made it:
//! `state: queued` (with `Retry-After`), then `state: done` with the status,
//! output or error a synchronous call would have had.
//!
//! Every ready serving pod runs workers reading the stream through the shared
//! consumer group, renews its claim on what it runs, and takes over the calls
//! of pods that stopped renewing theirs.

use super::{AppState, CallerOf, ErrorKind, Readiness, ShadowRole, error_response, json_error};
use crate::engine::ExecError;
use crate::metrics::{OperationLabels, QueueCallLabels};
use crate::queue::{CallRecord, CallState, Delivery, Enqueued, Queue, QueuedCall, Taken};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eol_core::process::otel::{OtelSpan, Parent};
use eol_core::runner_contract::queue::{IDEMPOTENCY_KEY_HEADER, RESPOND_ASYNC, RESULTS_PATH};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest idempotency key taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// How long a worker's read waits for a new call before it looks again.
const READ_BLOCK: Duration = Duration::from_secs(2);

/// Whether the request asks for an async call: `Prefer: respond-async`
/// (RFC 7240) or the query `mode=async`.
pub(super) fn wants_async(headers: &HeaderMap, query: Option<&str>) -> bool {
    let preferred = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.split(';')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case(RESPOND_ASYNC))
        });
    preferred
        || query.is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.eq_ignore_ascii_case("mode=async"))
        })
}

/// Enqueues a call checked by [`super::call_operation`] (caller and body).
pub(super) async fn enqueue(
    state: &Arc<AppState>,
    caller: &CallerOf,
    operation: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Response {
    let Some(queue) = &state.queue else {
        return no_queue(state, operation);
    };
    let input: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                state,
                operation,
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not JSON: {e}"),
            );
        }
    };
    // Checked now, so the caller hears of a wrong call at once, not in its result.
    if let Err(e) = state.runtime.check_call(operation, &input) {
        return error_response(
            state,
            operation,
            super::status_of(&e),
            e.kind(),
            e.to_string(),
        );
    }
    let idempotency = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Some(key),
            _ => {
                return error_response(
                    state,
                    operation,
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    format!(
                        "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ),
                );
            }
        },
    };
    let who = caller.identity();
    // A key is the caller's own: two callers choosing the same key do not meet.
    let scoped = idempotency.map(|key| format!("{}\n{key}", who.user));
    let input_sha256 = super::audit::sha256_hex(body);
    let call = QueuedCall {
        id: crate::queue::new_id(),
        operation: operation.to_owned(),
        input,
        user: who.user.clone(),
        groups: who.groups.clone(),
        traceparent: eol_core::process::otel::OtelSpan::current_headers()
            .into_iter()
            .find(|(name, _)| *name == eol_core::process::otel::TRACEPARENT)
            .map(|(_, value)| value),
    };
    match queue.enqueue(&call, &input_sha256, scoped.as_deref()).await {
        Ok(Enqueued::Accepted { .. }) => accepted(&call.id, false),
        Ok(Enqueued::Existing {
            id,
            input_sha256: seen,
        }) if seen == input_sha256 => accepted(&id, true),
        Ok(Enqueued::Existing { .. }) => error_response(
            state,
            operation,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a call with another input; use a new key".to_owned(),
        ),
        Ok(Enqueued::Full { depth }) => {
            queue_metrics(state).rejected.inc();
            let mut response = error_response(
                state,
                operation,
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "the queue of feature '{}' is full ({depth} calls waiting or running, at most {}); retry later",
                    state.runtime.feature().name(),
                    queue.settings().max_length
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(state)));
            response
        }
        Err(e) => error_response(
            state,
            operation,
            StatusCode::SERVICE_UNAVAILABLE,
            "redis",
            format!("the call could not be queued: {e}"),
        ),
    }
}

/// 202 for call `id`, pointing at its result.
fn accepted(id: &str, replayed: bool) -> Response {
    let location = format!("{RESULTS_PATH}/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "state": "queued", "location": location })),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(
        "preference-applied",
        HeaderValue::from_static(RESPOND_ASYNC),
    );
    if replayed {
        // The call the key led to the first time (not a new one).
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The seconds a refused caller should wait: about one call's time here (a
/// slot frees then), 1 to 60.
fn retry_after(state: &AppState) -> u64 {
    let millis = state.queue_call_millis.load(Ordering::Relaxed);
    millis.div_ceil(1000).clamp(1, 60)
}

fn no_queue(state: &AppState, operation: &str) -> Response {
    error_response(
        state,
        operation,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_shared_redis",
        "async calls need a Redis shared by the feature's pods (REDIS_URL)".to_owned(),
    )
}

fn queue_metrics(state: &AppState) -> &crate::metrics::QueueMetrics {
    &state.queue_metrics
}

/// `GET /v1/results/{id}`: the call's record, for the caller who made it.
pub(super) async fn result(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(queue) = &state.queue else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_shared_redis",
            "async calls need a Redis shared by the feature's pods (REDIS_URL)".to_owned(),
        );
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.reviewer.is_some() && authorization.is_none() {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no bearer token: send `Authorization: Bearer <token>`".to_owned(),
        );
    }
    let unknown = || {
        json_error(
            StatusCode::NOT_FOUND,
            "unknown_call",
            format!("no call '{id}' (results are kept for a set time after they are answered)"),
        )
    };
    let record = match queue.record(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => return unknown(),
        Err(e) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis",
                format!("the result could not be read: {e}"),
            );
        }
    };
    if let Some(reviewer) = &state.reviewer {
        match reviewer.authorize(authorization, &record.operation).await {
            // Someone else's call is not theirs to see, nor to know of.
            Ok(caller) if caller.user != record.user => return unknown(),
            Ok(_) => {}
            Err(refusal) => {
                let status = StatusCode::from_u16(refusal.status())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return json_error(status, refusal.kind(), refusal.message().to_owned());
            }
        }
    }
    let queued = record.state == CallState::Queued;
    let mut response = (StatusCode::OK, Json(record)).into_response();
    if queued {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    }
    response
}

/// Starts this pod's workers, unless it is a shadow candidate or has no
/// shared Redis; they begin once the pod is ready and stop when `stop` turns
/// true, finishing the calls they run.
pub(super) fn start_workers(
    state: &Arc<AppState>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let queue = state.queue.clone()?;
    if matches!(state.shadow, ShadowRole::Candidate(_)) {
        return None;
    }
    let state = state.clone();
    Some(tokio::spawn(async move {
        let mut ready_stop = stop.clone();
        // A pod whose tests have not passed must not answer calls.
        loop {
            match state.readiness.lock().map(|r| r.clone()) {
                Ok(Readiness::Ready) => break,
                Ok(Readiness::TestsFailed(_)) | Err(_) => return,
                Ok(Readiness::Testing) => {}
            }
            if stopping(&mut ready_stop, Duration::from_millis(200)).await {
                return;
            }
        }
        let consumer = consumer_name();
        tracing::info!(stream = %queue.stream(), %consumer, workers = queue.settings().concurrency, "answering async calls");
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..queue.settings().concurrency {
            tasks.spawn(worker(
                state.clone(),
                queue.clone(),
                format!("{consumer}-{n}"),
                stop.clone(),
            ));
        }
        tasks.spawn(reclaimer(
            state.clone(),
            queue,
            format!("{consumer}-r"),
            stop,
        ));
        while tasks.join_next().await.is_some() {}
    }))
}

/// This pod's consumer name: its pod name (`HOSTNAME` in Kubernetes) and a
/// random part, so a restarted container is a new consumer.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "eol".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Reads new calls and answers them, one at a time, until `stop`.
async fn worker(state: Arc<AppState>, queue: Queue, consumer: String, stop: watch::Receiver<bool>) {
    let mut conn = None;
    // `has_changed` errs once the sender is gone (the server ended).
    while !*stop.borrow() && stop.has_changed().is_ok() {
        if conn.is_none() {
            match queue.worker_connection().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "async calls: no connection; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match queue.read(c, &consumer, READ_BLOCK).await {
            Ok(Some(delivery)) => answer(&state, &queue, &consumer, delivery).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "async calls: reading the queue failed; retrying");
                conn = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Every second: measures the queue for `eol_queue_depth`; every half claim
/// time: takes over and answers the calls of pods that stopped renewing them.
async fn reclaimer(
    state: Arc<AppState>,
    queue: Queue,
    consumer: String,
    mut stop: watch::Receiver<bool>,
) {
    let every = (queue.settings().claim_after / 2).max(Duration::from_secs(1));
    let mut last_claim = Instant::now();
    loop {
        if let Ok(depth) = queue.depth().await {
            queue_metrics(&state).depth.set(depth as i64);
        }
        if last_claim.elapsed() >= every {
            last_claim = Instant::now();
            match queue.reclaim(&consumer, queue.settings().concurrency).await {
                Ok(claimed) => {
                    for delivery in claimed {
                        tracing::info!(entry = %delivery.entry, "async calls: took over a call of a stopped pod");
                        queue_metrics(&state).reclaimed.inc();
                        answer(&state, &queue, &consumer, delivery).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "async calls: reclaiming failed"),
            }
        }
        if stopping(&mut stop, Duration::from_secs(1)).await {
            return;
        }
    }
}

/// Waits up to `wait` and says whether to stop: `stop` turned true, or its
/// sender is gone (the server ended).
async fn stopping(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    match tokio::time::timeout(wait, stop.changed()).await {
        Ok(Ok(())) => *stop.borrow(),
        Ok(Err(_closed)) => true,
        Err(_elapsed) => false,
    }
}

/// Runs one delivered call and stores its answer; a call answered already
/// (or whose record expired) is only acknowledged.
async fn answer(state: &Arc<AppState>, queue: &Queue, consumer: &str, delivery: Delivery) {
    let Delivery { entry, call } = delivery;
    let call = match call {
        Ok(call) => call,
        Err(why) => {
            tracing::warn!(%entry, %why, "async calls: dropping an unreadable entry");
            if let Err(e) = queue.drop_entry(&entry).await {
                tracing::warn!(%entry, error = %e, "async calls: dropping the entry failed");
            }
            return;
        }
    };
    let record = match queue.take(&call.id).await {
        Ok(Some(Taken::Run(record))) => record,
        Ok(Some(Taken::Answered) | None) => {
            if let Err(e) = queue.drop_entry(&entry).await {
                tracing::warn!(%entry, error = %e, "async calls: dropping the entry failed");
            }
            return;
        }
        // Left pending: it is taken over once its claim runs out.
        Err(e) => {
            tracing::warn!(id = %call.id, error = %e, "async calls: taking a call failed");
            return;
        }
    };
    // Renewed while it runs, so a long call is not taken by another pod.
    let renewing = {
        let (queue, consumer, entry) = (queue.clone(), consumer.to_owned(), entry.clone());
        let every = (queue.settings().claim_after / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = queue.renew(&consumer, &entry).await {
                    tracing::warn!(%entry, error = %e, "async calls: renewing a claim failed");
                }
            }
        })
    };
    let started = Instant::now();
    let parent = Parent::Remote(call.traceparent.as_deref(), None);
    let span = OtelSpan::start(parent, || {
        SpanBuilder::from_name(format!("queue {}", call.operation))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("eol.operation", call.operation.clone()),
                KeyValue::new("eol.call_id", call.id.clone()),
                KeyValue::new("enduser.id", call.user.clone()),
            ])
    });
    let mut result = span
        .instrument(state.runtime.execute(&call.operation, &call.input, None))
        .await;
    if let Ok(exec) = &mut result {
        state
            .runtime
            .settle_in_background(exec.semantic_check.take());
    }
    renewing.abort();
    let elapsed = started.elapsed();
    // A running average of a call's time, for Retry-After.
    let millis = elapsed.as_millis() as u64;
    let _ = state
        .queue_call_millis
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 {
                millis
            } else {
                (old * 7 + millis) / 8
            })
        });
    let answered = done(*record, &result);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    match &result {
        Ok(exec) => state
            .metrics
            .execution_duration
            .get_or_create(&OperationLabels {
                operation: call.operation.clone(),
                phase: exec.phase.to_string(),
            })
            .observe(exec.duration.as_secs_f64()),
        Err(e) => super::count_error(state, &call.operation, e.kind()),
    }
    queue_metrics(state)
        .calls
        .get_or_create(&QueueCallLabels {
            operation: call.operation.clone(),
            outcome: outcome.to_owned(),
        })
        .inc();
    match queue.answer(&entry, &answered).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(id = %call.id, "async calls: answered already by another pod; this answer dropped")
        }
        // Left pending: another pod runs it again once the claim runs out (at least once).
        Err(e) => tracing::warn!(id = %call.id, error = %e, "async calls: storing a result failed"),
    }
    if state.auditor.is_on() {
        let mut response = StatusCode::from_u16(answered.status.unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
        if let Err(e) = &result {
            response
                .extensions_mut()
                .insert(ErrorKind(e.kind().to_owned()));
        }
        if let Some(phase) = &answered.phase {
            response
                .extensions_mut()
                .insert(super::AnsweredPhase(phase.clone()));
        }
        let who = crate::serve::auth::Caller {
            user: call.user.clone(),
            groups: call.groups.clone(),
            uid: None,
            extra: None,
        };
        let input = super::AuditedInput {
            // The request body's digest, as the record of the request that queued it has it.
            sha256: answered.input_sha256.clone(),
            input: state.auditor.includes_input().then(|| call.input.clone()),
        };
        super::audit_call(
            state,
            &CallerOf::Known(Arc::new(who)),
            &call.operation,
            &response,
            Some(input),
            Some(&call.id),
            started,
            &span,
        );
    }
}

/// `record` answered with `result`.
fn done(
    mut record: CallRecord,
    result: &Result<crate::engine::Execution, ExecError>,
) -> CallRecord {
    record.state = CallState::Done;
    record.finished = Some(super::audit::now());
    match result {
        Ok(exec) => {
            record.status = Some(200);
            record.phase = Some(exec.phase.to_string());
            record.output = Some(exec.output.clone());
        }
        Err(e) => {
            record.status = Some(super::status_of(e).as_u16());
            record.error = Some(json!({ "kind": e.kind(), "message": e.to_string() }));
        }
    }
    record
}
