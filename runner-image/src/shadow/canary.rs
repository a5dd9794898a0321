//! The serving side of a canary: a serving pod forwards the offer's canary
//! share of its live calls to the candidate's own call endpoint and returns
//! the candidate's answer. A candidate that fails such a call (a 5xx, no
//! answer within the offer's timeout) never shows: the serving pod answers
//! the call itself. Every forwarded call is counted in Redis
//! (`<operation>:canary_routed`, and `<operation>:canary_failed` when the
//! candidate failed it), off the response path.

use super::serving::{ShadowSender, sampled};
use crate::metrics::CanaryLabels;
use crate::store::RedisStore;
use axum::body::Bytes;
use eol_core::shadow::{
    CanaryOutcome, Offer, SHADOW_ID_HEADER, WRONG_CANDIDATE, canary_field, counts_key,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds between two warnings about a failing canary candidate (the others
/// are logged at debug): a dead candidate must not flood the log.
pub const WARN_EVERY_SECONDS: u64 = 10;

/// The candidate's answer to a forwarded call (a 2xx or 4xx), for the caller as is.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryReply {
    /// The shadow's id, for the caller ([`eol_core::shadow::CANARY_HEADER`]).
    pub id: String,
    /// The candidate's status.
    pub status: u16,
    /// The candidate's content type, if it gave one.
    pub content_type: Option<String>,
    /// The candidate's `x-eol-cache` header, if any.
    pub cache: Option<String>,
    /// The candidate's body, unchanged.
    pub body: Bytes,
}

impl ShadowSender {
    /// Forwards a live call of `operation` (its request `body`, unchanged) to
    /// the canary candidate when the offer in force covers `operation`, has a
    /// canary share and the draw falls within it, with the caller's
    /// `authorization` (a candidate of an authenticated Feature checks the
    /// caller as the serving pod did). `None`: the serving pod answers the
    /// call itself (not forwarded, or the candidate failed it).
    pub async fn forward(
        &self,
        operation: &str,
        body: &Bytes,
        authorization: Option<&str>,
    ) -> Option<CanaryReply> {
        let offer = self.current()?;
        // `sampled` draws nothing at 0 (a shadow only).
        if !(offer.covers(operation) && sampled(offer.canary_percent)) {
            return None;
        }
        let result = send(&self.client, &offer, operation, body, authorization).await;
        if let Err(Unsent::Elsewhere) = result {
            // Not this candidate's answer, nor its failure: not counted.
            tracing::debug!(id = %offer.id, operation, "a canary call reached another candidate's pod; answered here");
            return None;
        }
        self.count(&offer, operation, result.is_err());
        match result {
            Ok(reply) => Some(reply),
            Err(Unsent::Failed(why)) => {
                warn_failure(&offer.id, operation, &why);
                None
            }
            Err(Unsent::Elsewhere) => None,
        }
    }

    /// Counts one forwarded call in the metrics and, in a task of its own so
    /// that a slow Redis never delays the caller, in the shadow's counts.
    fn count(&self, offer: &Arc<Offer>, operation: &str, failed: bool) {
        let outcomes: &[CanaryOutcome] = if failed {
            &[CanaryOutcome::Routed, CanaryOutcome::Failed]
        } else {
            &[CanaryOutcome::Routed]
        };
        for outcome in outcomes {
            self.metrics
                .canary_requests
                .get_or_create(&CanaryLabels {
                    operation: operation.to_owned(),
                    outcome: metric_outcome(*outcome).to_owned(),
                })
                .inc();
        }
        let (store, feature, offer) = (self.store.clone(), self.feature.clone(), offer.clone());
        let operation = operation.to_owned();
        tokio::spawn(async move {
            if let Err(error) = write(&store, &feature, &offer, &operation, failed).await {
                tracing::warn!(%error, id = %offer.id, operation, "failed to count a canary call; it is not counted");
            }
        });
    }
}

/// The outcome as the metric labels it (`routed`, `failed`).
pub fn metric_outcome(outcome: CanaryOutcome) -> &'static str {
    let key = outcome.as_str();
    key.strip_prefix("canary_").unwrap_or(key)
}

/// Why a forwarded call has no answer of the candidate.
#[derive(Debug)]
enum Unsent {
    /// The candidate failed it (a 5xx, no connection, no answer or body
    /// within the offer's timeout).
    Failed(String),
    /// A pod of another candidate refused it ([`WRONG_CANDIDATE`]).
    Elsewhere,
}

/// The candidate's answer to `body` as a call of `operation`, or why there is none.
async fn send(
    client: &reqwest::Client,
    offer: &Offer,
    operation: &str,
    body: &Bytes,
    authorization: Option<&str>,
) -> Result<CanaryReply, Unsent> {
    let url = call_url(&offer.url, operation).map_err(Unsent::Failed)?;
    let timeout =
        Duration::try_from_secs_f64(offer.timeout_seconds).unwrap_or(Duration::from_secs(10));
    let timed_out = |e: &reqwest::Error| e.is_timeout();
    let mut request = client
        .post(url.clone())
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SHADOW_ID_HEADER, &offer.id);
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    // The candidate's spans join the caller's trace (nothing when tracing is off).
    for (name, value) in eol_core::process::otel::OtelSpan::current_headers() {
        request = request.header(name, value);
    }
    let response = request.body(body.clone()).send().await.map_err(|e| {
        Unsent::Failed(if timed_out(&e) {
            format!("the candidate did not answer within {timeout:?}")
        } else {
            format!("the candidate could not be reached at {url}: {e}")
        })
    })?;
    let status = response.status();
    if status.as_u16() == WRONG_CANDIDATE {
        return Err(Unsent::Elsewhere);
    }
    if !(status.is_success() || status.is_client_error()) {
        return Err(Unsent::Failed(format!("the candidate answered {status}")));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(reqwest::header::CONTENT_TYPE.as_str());
    let cache = header(crate::serve::CACHE_HEADER);
    let body = response.bytes().await.map_err(|e| {
        Unsent::Failed(if timed_out(&e) {
            format!("the candidate did not finish its answer within {timeout:?}")
        } else {
            format!("the candidate's answer could not be read: {e}")
        })
    })?;
    Ok(CanaryReply {
        id: offer.id.clone(),
        status: status.as_u16(),
        content_type,
        cache,
        body,
    })
}

/// The candidate's call endpoint of `operation` under its base URL `base`.
pub fn call_url(base: &str, operation: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| format!("the candidate's URL '{base}' is not a URL: {e}"))?;
    // Path segments are escaped, whatever the operation's name.
    url.path_segments_mut()
        .map_err(|()| format!("the candidate's URL '{base}' cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "operations", operation]);
    Ok(url)
}

/// Counts one forwarded call in one transaction, as the verdicts are written.
async fn write(
    store: &RedisStore,
    feature: &str,
    offer: &Offer,
    operation: &str,
    failed: bool,
) -> Result<(), String> {
    let ttl = i64::try_from(offer.ttl_seconds).unwrap_or(i64::MAX);
    let counts = counts_key(feature, &offer.id);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hincr(&counts, canary_field(operation, CanaryOutcome::Routed), 1);
    if failed {
        pipe.hincr(&counts, canary_field(operation, CanaryOutcome::Failed), 1);
    }
    pipe.expire(&counts, ttl);
    let mut conn = store.connection().await.map_err(|e| e.to_string())?;
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// Logs a failed canary call: a warning at most every [`WARN_EVERY_SECONDS`], else at debug.
fn warn_failure(id: &str, operation: &str, why: &str) {
    // One pod serves one feature, so one clock for the whole process is enough.
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    let due = now >= last.saturating_add(WARN_EVERY_SECONDS)
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if due {
        tracing::warn!(
            id,
            operation,
            why,
            "the canary candidate failed a call; the serving pod answered it (further failures are logged at debug for {WARN_EVERY_SECONDS} s)"
        );
    } else {
        tracing::debug!(
            id,
            operation,
            why,
            "the canary candidate failed a call; the serving pod answered it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_outcomes_have_no_canary_prefix() {
        assert_eq!(metric_outcome(CanaryOutcome::Routed), "routed");
        assert_eq!(metric_outcome(CanaryOutcome::Failed), "failed");
    }

    #[test]
    fn the_call_url_is_under_the_candidate_s_base_with_the_operation_escaped() {
        let url = |base: &str, op: &str| call_url(base, op).map(|u| u.to_string());
        assert_eq!(
            url("http://c:8080/", "double").as_deref(),
            Ok("http://c:8080/v1/operations/double")
        );
        assert_eq!(
            url("http://c/base", "a b").as_deref(),
            Ok("http://c/base/v1/operations/a%20b")
        );
        assert!(url("not a url", "x").is_err());
    }

    #[tokio::test]
    async fn a_candidate_nobody_listens_for_is_a_failure_not_a_reply() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let offer = canary_offer(format!("http://127.0.0.1:{port}"));
        let result = send(
            &reqwest::Client::new(),
            &offer,
            "double",
            &Bytes::new(),
            None,
        )
        .await;
        let Err(Unsent::Failed(why)) = result else {
            panic!("{result:?}")
        };
        assert!(
            why.starts_with("the candidate could not be reached at"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_call_another_candidate_refused_is_neither_an_answer_nor_a_failure() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap();
            let body = r#"{"error":{"kind":"wrong_candidate"}}"#;
            let reply = format!(
                "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        });
        let offer = canary_offer(url);
        let body = Bytes::from_static(br#"{"n": 1}"#);
        let result = send(&reqwest::Client::new(), &offer, "double", &body, None).await;
        assert!(matches!(result, Err(Unsent::Elsewhere)), "{result:?}");
        let request = server.await.unwrap();
        assert!(
            request.contains("x-eol-shadow-id: c-1"),
            "the call names its shadow: {request}"
        );
    }

    /// A canary of 100% at `url`, shadow `c-1`, waiting 1 s.
    fn canary_offer(url: String) -> Offer {
        Offer {
            id: "c-1".into(),
            url,
            sample_percent: 0.0,
            operations: Vec::new(),
            max_disagreements: 5,
            ttl_seconds: 60,
            timeout_seconds: 1.0,
            canary_percent: 100.0,
            token: Default::default(),
        }
    }
}
