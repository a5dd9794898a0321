//! The call path of `POST /v1/operations/{op}`: the caller checked, the
//! body read, the call answered (or queued, or sent to the canary), its
//! audit record written; and the JSON errors every endpoint answers with.

use super::audit::{self, AuditRecord};
use super::auth::{Caller, Refusal};
use super::{
    AnsweredPhase, AppState, CACHE_HEADER, ErrorKind, ShadowRole, UNKNOWN_OPERATION, queue, shadow,
};
use crate::engine::ExecError;
use crate::metrics::{ErrorLabels, OperationLabels};
use crate::shadow::canary::CanaryReply;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eol_core::shadow::CANARY_HEADER;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use serde_json::{Value, json};
use std::sync::Arc;

/// The HTTP status of an operation call's error.
pub(super) fn status_of(error: &ExecError) -> StatusCode {
    match error {
        ExecError::UnknownOperation { .. } => StatusCode::NOT_FOUND,
        ExecError::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ExecError::NoModel { .. } | ExecError::NoCode { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ExecError::Prototype { .. } => StatusCode::BAD_GATEWAY,
        ExecError::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        ExecError::InvalidOutput { .. } | ExecError::Sandbox { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// `POST /v1/operations/{op}` in an HTTP server span, a child of the caller's
/// span when the request carries W3C `traceparent` (and `tracestate`): the
/// caller checked (when auth is on), the call answered, its audit record written.
pub(super) async fn call_operation(
    State(state): State<Arc<AppState>>,
    Path(operation): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    use eol_core::process::otel;
    let started = std::time::Instant::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let parent = otel::Parent::Remote(header(otel::TRACEPARENT), header(otel::TRACESTATE));
    let span = otel::OtelSpan::start(parent, || {
        SpanBuilder::from_name("POST /v1/operations/{operation}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.route", "/v1/operations/{operation}"),
                KeyValue::new("eol.operation", operation.clone()),
            ])
    });
    let authorization = header(axum::http::header::AUTHORIZATION.as_str());
    let (caller, input, response) = span
        .instrument(async {
            // A canary call meant for another candidate behind the same Service
            // (this pod is stopping, or not yet the one offered): its serving pod
            // answers it instead.
            if let Some(refused) =
                shadow::wrong_candidate(&state, header(eol_core::shadow::SHADOW_ID_HEADER))
            {
                return (CallerOf::Anonymous, None, refused);
            }
            // The caller first: a refused call's body is never read.
            let caller = match &state.reviewer {
                None => None,
                Some(reviewer) => match reviewer.authorize(authorization, &operation).await {
                    Ok(caller) => Some(caller),
                    Err(refusal) => {
                        let status = StatusCode::from_u16(refusal.status())
                            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                        let mut response = error_response(
                            &state,
                            &operation,
                            status,
                            refusal.kind(),
                            refusal.message().to_owned(),
                        );
                        if status == StatusCode::SERVICE_UNAVAILABLE {
                            // The API server is away for a moment (a restart): ask again soon.
                            response.headers_mut().insert(
                                axum::http::header::RETRY_AFTER,
                                axum::http::HeaderValue::from(1u64),
                            );
                        }
                        let caller = match refusal {
                            Refusal::Forbidden(caller, _) => CallerOf::Refused(caller),
                            _ => CallerOf::Anonymous,
                        };
                        return (caller, None, response);
                    }
                },
            };
            if let Some(caller) = &caller {
                span.set("enduser.id", caller.user.clone());
            }
            let caller = caller.map_or(CallerOf::Anonymous, CallerOf::Known);
            let input = match read_body(body).await {
                Ok(input) => input,
                Err((status, kind, message)) => {
                    let response = error_response(&state, &operation, status, kind, message);
                    return (caller, None, response);
                }
            };
            let response = if queue::wants_async(&headers, query.as_deref()) {
                queue::enqueue(&state, &caller, &operation, &input, &headers).await
            } else {
                answer_call(
                    state.clone(),
                    operation.clone(),
                    input.clone(),
                    authorization,
                )
                .await
            };
            (caller, Some(input), response)
        })
        .await;
    let status = response.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    // A server span fails on 5xx only; a 4xx is the caller's error (HTTP conventions).
    if status.is_server_error() {
        span.record_error(status.as_str(), "");
    }
    if state.auditor.is_on() {
        let input = input.as_deref().map(|body| AuditedInput {
            sha256: audit::sha256_hex(body),
            input: state.auditor.includes_input().then(|| {
                serde_json::from_slice(body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
            }),
        });
        let call_id = (response.status() == StatusCode::ACCEPTED)
            .then(|| response.headers().get(axum::http::header::LOCATION))
            .flatten()
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_owned);
        audit_call(
            &state,
            &caller,
            &operation,
            &response,
            input,
            call_id.as_deref(),
            started,
            &span,
        );
    }
    response
}

/// A call's input as its audit record shows it.
pub(super) struct AuditedInput {
    /// The SHA-256 of the request body, hex.
    pub(super) sha256: String,
    /// The input itself, only when the Feature asks.
    pub(super) input: Option<Value>,
}

/// The most a call's body may hold (larger: 413).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How long a client may take to send a call's body (longer: 408), so a slow
/// client cannot hold a connection and its buffer open.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The request body, at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
pub(super) async fn read_body(
    body: axum::body::Body,
) -> Result<axum::body::Bytes, (StatusCode, &'static str, String)> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.to_string().contains("length limit") => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over {MAX_BODY_BYTES} bytes"),
        )),
        Ok(Err(e)) => Err((
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the request body could not be read: {e}"),
        )),
        Err(_elapsed) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Who made a call, as far as it is known.
pub(super) enum CallerOf {
    /// A caller the API server named.
    Known(Arc<Caller>),
    /// A caller the API server named and RBAC refused.
    Refused(Caller),
    /// No check (an anonymous feature), or a token that was not accepted.
    Anonymous,
}

impl CallerOf {
    /// The caller's identity (`system:anonymous` when none is known).
    pub(super) fn identity(&self) -> &Caller {
        static ANONYMOUS: std::sync::LazyLock<Caller> = std::sync::LazyLock::new(Caller::anonymous);
        match self {
            CallerOf::Known(caller) => caller,
            CallerOf::Refused(caller) => caller,
            CallerOf::Anonymous => &ANONYMOUS,
        }
    }
}

/// Writes the audit record of a call answered with `response`; `call_id`:
/// the async call it queued or ran.
#[allow(clippy::too_many_arguments)]
pub(super) fn audit_call(
    state: &AppState,
    caller: &CallerOf,
    operation: &str,
    response: &Response,
    input: Option<AuditedInput>,
    call_id: Option<&str>,
    started: std::time::Instant,
    span: &eol_core::process::otel::OtelSpan,
) {
    let who = caller.identity();
    let status = response.status();
    let outcome = match response.extensions().get::<ErrorKind>() {
        Some(ErrorKind(kind)) => kind.as_str(),
        None if status == StatusCode::ACCEPTED => "queued",
        None if status.is_success() => "ok",
        None => "error",
    };
    let (input_sha256, input) = match input {
        Some(AuditedInput { sha256, input }) => (Some(sha256), input),
        None => (None, None),
    };
    state.auditor.write(&AuditRecord {
        time: audit::now(),
        record: "eol.audit",
        user: &who.user,
        groups: &who.groups,
        feature: state.runtime.feature().name(),
        operation,
        phase: response
            .extensions()
            .get::<AnsweredPhase>()
            .map(|AnsweredPhase(p)| p.clone()),
        outcome,
        status: status.as_u16(),
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
        input_sha256,
        trace_id: span.trace_id(),
        call_id,
        input,
    });
}

/// The call answered, by this pod or (its canary share) by the candidate, to
/// which the caller's `authorization` goes along: it checks the caller too.
pub(super) async fn answer_call(
    state: Arc<AppState>,
    operation: String,
    body: axum::body::Bytes,
    authorization: Option<&str>,
) -> Response {
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                &state,
                &operation,
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not JSON: {e}"),
            );
        }
    };
    // A canary's share of the calls is answered by the candidate, unless it fails.
    if let ShadowRole::Serving(sender) = &state.shadow
        && let Some(reply) = sender.forward(&operation, &body, authorization).await
    {
        return canary_response(reply);
    }
    match state.runtime.execute(&operation, &input, None).await {
        Ok(mut exec) => {
            // Off the response path: a verdict for the semantic cache's error bound.
            state
                .runtime
                .settle_in_background(exec.semantic_check.take());
            let labels = OperationLabels {
                operation: operation.clone(),
                phase: exec.phase.to_string(),
            };
            state
                .metrics
                .execution_duration
                .get_or_create(&labels)
                .observe(exec.duration.as_secs_f64());
            if let ShadowRole::Serving(sender) = &state.shadow {
                sender.copy(&operation, &input, &exec.output);
            }
            let mut response = (StatusCode::OK, Json(exec.output)).into_response();
            response
                .extensions_mut()
                .insert(AnsweredPhase(exec.phase.to_string()));
            if let Some(hit) = &exec.cache {
                // Which cache answered, for clients and tests (`semantic` or `result`).
                response
                    .headers_mut()
                    .insert(CACHE_HEADER, axum::http::HeaderValue::from_static(hit.kind));
            }
            response
        }
        Err(e) => {
            let status = status_of(&e);
            let mut response = error_response(&state, &operation, status, e.kind(), e.to_string());
            if let ExecError::BudgetExceeded { retry_after, .. } = &e {
                // When the window ends and the budget resets.
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(*retry_after),
                );
            }
            response
        }
    }
}

/// The canary candidate's answer, for the caller as it gave it, with its id.
pub(super) fn canary_response(reply: CanaryReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, reply.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            axum::http::header::CONTENT_TYPE.as_str(),
            reply.content_type,
        ),
        (CACHE_HEADER, reply.cache),
        (CANARY_HEADER, Some(reply.id)),
    ] {
        // A value that is not a valid header (never seen) is left out, not an error.
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    response
}

pub(super) fn error_response(
    state: &AppState,
    operation: &str,
    status: StatusCode,
    kind: &str,
    message: String,
) -> Response {
    count_error(state, operation, kind);
    json_error(status, kind, message)
}

/// Counts a failed call in `eol_errors_total`.
pub(super) fn count_error(state: &AppState, operation: &str, kind: &str) {
    // The path is the caller's to choose: a name the feature does not have
    // gets one label, so callers cannot grow the metrics without bound.
    let known = state.runtime.feature().operation(operation).is_some();
    state
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            operation: if known { operation } else { UNKNOWN_OPERATION }.to_owned(),
            kind: kind.to_owned(),
        })
        .inc();
}

/// An error as JSON with a stable `kind`, like the operations' errors.
pub(super) fn json_error(status: StatusCode, kind: &str, message: String) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": { "kind": kind, "message": message } })),
    )
        .into_response();
    response.extensions_mut().insert(ErrorKind(kind.to_owned()));
    response
}
