//! The shadow endpoints of `eol serve`: a candidate's copied calls, its
//! tally and its canary share; other pods answer them 404, and a candidate
//! answers 401 to a request without the shadow's token
//! ([`eol_core::shadow::TOKEN_HEADER`]).

use super::{AppState, Readiness, ShadowRole, json_error};
use crate::shadow::Candidate;
use crate::shadow::candidate::CanaryError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eol_core::shadow::{CanaryWeight, ShadowRequest};
use std::sync::Arc;

/// The candidate this pod is, if it is one.
pub(super) fn candidate_of(state: &AppState) -> Option<&Arc<Candidate>> {
    match &state.shadow {
        ShadowRole::Candidate(candidate) => Some(candidate),
        _ => None,
    }
}

/// What the shadow endpoints of a pod that is not a candidate answer.
pub(super) fn not_a_candidate() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_a_shadow_candidate",
        format!(
            "this pod is not a shadow candidate ({} is not set)",
            eol_core::shadow::env::ID
        ),
    )
}

/// A 409 `wrong_candidate` when this pod is the candidate of another shadow
/// than `id` names (a call or copy meant for a newer or older candidate
/// behind the same Service); `None` otherwise.
pub(super) fn wrong_candidate(state: &AppState, id: Option<&str>) -> Option<Response> {
    let mine = &candidate_of(state)?.settings().id;
    let id = id.filter(|id| id != mine)?;
    Some(json_error(
        StatusCode::from_u16(eol_core::shadow::WRONG_CANDIDATE).unwrap_or(StatusCode::CONFLICT),
        "wrong_candidate",
        format!("this pod is the candidate of shadow {mine}, not of shadow {id}"),
    ))
}

/// A 401 unless `headers` carry the shadow's token (a 503 when it cannot be
/// read): only the serving pods (from the offer) and the operator (from
/// Redis) have it.
async fn unauthorized(
    state: &AppState,
    candidate: &Candidate,
    headers: &HeaderMap,
) -> Option<Response> {
    let presented = headers
        .get(eol_core::shadow::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    match candidate.token(&state.runtime).await {
        Ok(token) if token.matches(presented) => None,
        Ok(_) => Some(json_error(
            StatusCode::UNAUTHORIZED,
            "shadow_unauthorized",
            format!(
                "the shadow endpoints of candidate {} answer only its Feature's serving pods and the operator: the request has no valid {} header",
                candidate.settings().id,
                eol_core::shadow::TOKEN_HEADER
            ),
        )),
        Err(e) => Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            format!("the shadow's token cannot be read from Redis: {e}"),
        )),
    }
}

/// `POST /v1/shadow/{op}`: a serving pod's call, run here and compared.
pub(super) async fn shadow_call(
    State(state): State<Arc<AppState>>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(candidate) = candidate_of(&state) else {
        return not_a_candidate();
    };
    let request: ShadowRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!(
                    "the request body is not a shadow request ({{\"input\", \"output\"}}): {e}"
                ),
            );
        }
    };
    // A copy meant for another candidate first: its serving pod tries again
    // elsewhere on a 409, and this pod's token is not that shadow's.
    if let Some(refused) = wrong_candidate(&state, request.id.as_deref()) {
        return refused;
    }
    if let Some(refused) = unauthorized(&state, candidate, &headers).await {
        return refused;
    }
    let feature = state.runtime.feature();
    let Some(op) = feature.operation(&operation) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_operation",
            format!(
                "feature '{}' has no operation '{operation}' (it has: {})",
                feature.name(),
                feature.operation_names().join(", ")
            ),
        );
    };
    let answer = candidate.answer(&state.runtime, op, &request).await;
    (StatusCode::OK, Json(answer)).into_response()
}

/// `PUT /v1/shadow/canary`: the operator sets the canary share; the answer is
/// the offer with it (published at once when this candidate is ready).
pub(super) async fn shadow_canary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(candidate) = candidate_of(&state) else {
        return not_a_candidate();
    };
    if let Some(refused) = unauthorized(&state, candidate, &headers).await {
        return refused;
    }
    let weight: CanaryWeight = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not a canary weight ({{\"id\", \"percent\"}}): {e}"),
            );
        }
    };
    let ready = matches!(state.readiness.lock().as_deref(), Ok(Readiness::Ready));
    match candidate.set_canary(&state.runtime, &weight, ready).await {
        Ok(offer) => (StatusCode::OK, Json(offer)).into_response(),
        Err(e @ CanaryError::Percent(_)) => {
            json_error(StatusCode::BAD_REQUEST, "invalid_percent", e.to_string())
        }
        Err(e @ CanaryError::WrongShadow { .. }) => {
            json_error(StatusCode::CONFLICT, "wrong_shadow", e.to_string())
        }
        Err(e @ CanaryError::Publish(_)) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())
        }
    }
}

/// `GET /v1/shadow/tally`: the verdicts the serving pods recorded.
pub(super) async fn shadow_tally(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let Some(candidate) = candidate_of(&state) else {
        return not_a_candidate();
    };
    if let Some(refused) = unauthorized(&state, candidate, &headers).await {
        return refused;
    }
    match candidate.tally(&state.runtime).await {
        Ok(tally) => (StatusCode::OK, Json(tally)).into_response(),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
    }
}
