//! The serving side of a shadow: a serving pod watches for a candidate's
//! offer, copies a sample of its successful calls to the candidate off the
//! response path, and records each verdict in one Redis transaction.

use super::now_rfc3339;
use crate::metrics::{ShadowMetrics, ShadowOperationLabels, ShadowVerdictLabels};
use crate::store::RedisStore;
use eol_core::shadow::{
    MAX_SAMPLES_KEPT, Offer, Sample, ShadowAnswer, ShadowRequest, Verdict, WRONG_CANDIDATE,
    count_field, counts_key, disagreements_key, offer_key, samples_key,
};
use serde_json::Value;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How often a serving pod looks for an offer.
pub const OFFER_POLL: Duration = Duration::from_secs(2);
/// Copies in flight at once; a sample beyond this is dropped (and counted),
/// so a slow candidate never holds the serving pod's memory or its callers.
pub const MAX_IN_FLIGHT: usize = 64;
/// Why a copy has no answer of the candidate.
#[derive(Debug)]
enum Unanswered {
    /// The candidate failed or could not be reached: the verdict `error`.
    Failed(String),
    /// Only a pod of another candidate answered: no verdict of this one.
    Elsewhere(String),
}

/// The first wait before a copy that was not delivered is sent again.
const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The last wait: connection failures are retried for 1.5 s in all.
const CONNECT_RETRY_LAST: Duration = Duration::from_millis(800);

/// A serving pod's copier of calls to the current shadow candidate, if any.
pub struct ShadowSender {
    pub(super) feature: String,
    pub(super) store: Arc<RedisStore>,
    offer: RwLock<Option<Arc<Offer>>>,
    pub(super) client: reqwest::Client,
    in_flight: Arc<Semaphore>,
    pub(super) metrics: ShadowMetrics,
}

impl ShadowSender {
    /// A sender for `feature`'s calls, reading offers from and writing verdicts to `store`.
    pub fn new(feature: &str, store: Arc<RedisStore>, metrics: ShadowMetrics) -> Self {
        Self {
            feature: feature.to_owned(),
            store,
            offer: RwLock::new(None),
            client: reqwest::Client::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics,
        }
    }

    /// Reads the offer every [`OFFER_POLL`], for ever.
    pub async fn watch_offers(&self) {
        loop {
            self.refresh_offer().await;
            tokio::time::sleep(OFFER_POLL).await;
        }
    }

    /// Reads the offer once: a missing key means no candidate; an unreadable
    /// offer is logged and treated as none; a Redis failure keeps the last one
    /// (it expires from Redis on its own when the candidate stops refreshing).
    pub async fn refresh_offer(&self) {
        let key = offer_key(&self.feature);
        let raw = match self.read(&key).await {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(%error, key, "failed to read the shadow offer");
                return;
            }
        };
        let offer = raw.and_then(|raw| match serde_json::from_str::<Offer>(&raw) {
            Ok(offer) => Some(Arc::new(offer)),
            Err(error) => {
                tracing::warn!(%error, key, "the shadow offer is not readable; not shadowing");
                None
            }
        });
        let current = self.current().map(|o| o.id.clone());
        // A new candidate is used once it answers at its URL: its Service
        // may route to it a moment after it is ready (endpoints and proxy
        // rules lag), and copies sent before would count as its failures.
        let offer = match offer {
            Some(new) if current.as_ref() != Some(&new.id) => {
                if self.reachable(&new).await {
                    Some(new)
                } else {
                    tracing::info!(id = %new.id, url = %new.url, "the shadow candidate does not answer at its URL yet; not copying until it does");
                    None
                }
            }
            other => other,
        };
        let changed = current != offer.as_ref().map(|o| o.id.clone());
        if changed {
            match &offer {
                Some(o) => {
                    tracing::info!(id = %o.id, url = %o.url, sample_percent = o.sample_percent, canary_percent = o.canary_percent, "shadowing calls to a candidate")
                }
                None => tracing::info!("no shadow candidate: calls are no longer copied"),
            }
        }
        if let Ok(mut slot) = self.offer.write() {
            *slot = offer;
        }
    }

    /// Whether the candidate of `offer` answers its health check within a second.
    async fn reachable(&self, offer: &Offer) -> bool {
        let url = format!(
            "{}{}",
            offer.url.trim_end_matches('/'),
            eol_core::runner_contract::HEALTH_PATH
        );
        self.client
            .get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn read(&self, key: &str) -> Result<Option<String>, String> {
        let mut conn = self.store.connection().await.map_err(|e| e.to_string())?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }

    /// The offer in force.
    pub fn current(&self) -> Option<Arc<Offer>> {
        self.offer.read().ok().and_then(|o| o.clone())
    }

    /// After a successful call of `operation`: when the offer covers it and the
    /// sample falls this way, copies it to the candidate in a task of its own.
    /// Never waits: with too many copies in flight, the sample is dropped.
    pub fn copy(self: &Arc<Self>, operation: &str, input: &Value, output: &Value) {
        let Some(offer) = self.current() else { return };
        if !offer.covers(operation) || !sampled(offer.sample_percent) {
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.metrics
                .dropped
                .get_or_create(&ShadowOperationLabels {
                    operation: operation.to_owned(),
                })
                .inc();
            return;
        };
        let sender = self.clone();
        let request = ShadowRequest {
            input: input.clone(),
            output: output.clone(),
            id: Some(offer.id.clone()),
        };
        let operation = operation.to_owned();
        tokio::spawn(async move {
            let sample = sender.compare(&offer, &operation, request).await;
            drop(permit);
            if let Some(sample) = sample {
                sender.record(&offer, &sample).await;
            }
        });
    }

    /// The candidate's verdict on one copied call, as a sample; none when
    /// only pods of another candidate answered (not this one's verdict).
    async fn compare(
        &self,
        offer: &Offer,
        operation: &str,
        request: ShadowRequest,
    ) -> Option<Sample> {
        let started = Instant::now();
        let answer = match self.ask(offer, operation, &request).await {
            Err(Unanswered::Elsewhere(why)) => {
                tracing::info!(id = %offer.id, operation, %why, "a copy reached only another candidate's pod; not counted");
                return None;
            }
            Err(Unanswered::Failed(why)) => Err(why),
            Ok(answer) => Ok(answer),
        };
        self.metrics
            .duration
            .get_or_create(&ShadowOperationLabels {
                operation: operation.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        let answer = answer.unwrap_or_else(|why| ShadowAnswer {
            verdict: Verdict::Error,
            output: None,
            differences: Vec::new(),
            error: Some(why),
        });
        Some(Sample {
            operation: operation.to_owned(),
            at: now_rfc3339(),
            verdict: answer.verdict,
            input: request.input,
            serving: request.output,
            candidate: answer.output,
            differences: answer.differences,
            error: answer.error,
        })
    }

    /// The candidate's answer, or why there is none.
    async fn ask(
        &self,
        offer: &Offer,
        operation: &str,
        request: &ShadowRequest,
    ) -> Result<ShadowAnswer, Unanswered> {
        let url = format!("{}/v1/shadow/{operation}", offer.url.trim_end_matches('/'));
        let timeout =
            Duration::try_from_secs_f64(offer.timeout_seconds).unwrap_or(Duration::from_secs(10));
        // A copy that was never delivered (no connection), or that a pod of
        // another candidate refused, is tried again for a moment: for about
        // a second after a new candidate is ready, its Service may still
        // route to none or to the previous candidate's stopping pod (seen on
        // the cluster: 14 of 129 copies unreachable; one answered by the
        // previous candidate's code).
        let mut delay = CONNECT_RETRY_FIRST;
        let response = loop {
            let retry = match self
                .client
                .post(&url)
                .timeout(timeout)
                .header(eol_core::shadow::TOKEN_HEADER, &offer.token.0)
                .json(request)
                .send()
                .await
            {
                Ok(response) if response.status().as_u16() == WRONG_CANDIDATE => {
                    let body = response.text().await.unwrap_or_default();
                    Unanswered::Elsewhere(eol_core::shadow::preview(&body, 200))
                }
                Ok(response) => break response,
                Err(e) if e.is_connect() => Unanswered::Failed(format!(
                    "the candidate could not be reached at {url}: {}",
                    eol_core::causes(&e)
                )),
                Err(e) if e.is_timeout() => {
                    return Err(Unanswered::Failed(format!(
                        "the candidate did not answer within {timeout:?}"
                    )));
                }
                Err(e) => {
                    return Err(Unanswered::Failed(format!(
                        "the candidate could not be reached at {url}: {}",
                        eol_core::causes(&e)
                    )));
                }
            };
            if delay > CONNECT_RETRY_LAST {
                return Err(retry);
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        };
        let status = response.status();
        let failed = Unanswered::Failed;
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(failed(format!(
                "the candidate answered {status}: {}",
                eol_core::shadow::preview(&body, 200)
            )));
        }
        response.json::<ShadowAnswer>().await.map_err(|e| {
            failed(if e.is_timeout() {
                format!("the candidate did not answer within {timeout:?}")
            } else {
                format!("the candidate's answer is not a shadow answer: {e}")
            })
        })
    }

    /// Counts `sample` and keeps it, in one transaction: it is counted once or
    /// (when Redis fails) not at all.
    async fn record(&self, offer: &Offer, sample: &Sample) {
        self.metrics
            .comparisons
            .get_or_create(&ShadowVerdictLabels {
                operation: sample.operation.clone(),
                verdict: sample.verdict.as_str().to_owned(),
            })
            .inc();
        if let Err(error) = self.write(offer, sample).await {
            tracing::warn!(%error, id = %offer.id, operation = %sample.operation, "failed to record a shadow verdict; the sample is not counted");
        }
    }

    async fn write(&self, offer: &Offer, sample: &Sample) -> Result<(), String> {
        let entry = serde_json::to_string(sample).map_err(|e| e.to_string())?;
        let ttl = i64::try_from(offer.ttl_seconds).unwrap_or(i64::MAX);
        let counts = counts_key(&self.feature, &offer.id);
        let samples = samples_key(&self.feature, &offer.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hincr(&counts, count_field(&sample.operation, sample.verdict), 1)
            .expire(&counts, ttl)
            .lpush(&samples, &entry)
            .ltrim(&samples, 0, bound(MAX_SAMPLES_KEPT))
            .expire(&samples, ttl);
        if sample.verdict != Verdict::Agree {
            let disagreements = disagreements_key(&self.feature, &offer.id, &sample.operation);
            if offer.max_disagreements > 0 {
                pipe.lpush(&disagreements, &entry)
                    .ltrim(&disagreements, 0, bound(offer.max_disagreements))
                    .expire(&disagreements, ttl);
            }
        }
        let mut conn = self.store.connection().await.map_err(|e| e.to_string())?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The last index LTRIM keeps for a list of at most `kept` entries.
fn bound(kept: usize) -> isize {
    isize::try_from(kept).unwrap_or(isize::MAX) - 1
}

/// Whether this call is one of the `percent` drawn (copied, or forwarded to a canary).
pub(super) fn sampled(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && rand::random::<f64>() * 100.0 < percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_none_are_sampled_at_the_bounds() {
        assert!((0..1000).all(|_| sampled(100.0)));
        assert!(!(0..1000).any(|_| sampled(0.0)));
        let half = (0..10_000).filter(|_| sampled(50.0)).count();
        assert!((4000..6000).contains(&half), "{half}");
    }

    fn sender() -> ShadowSender {
        let metrics =
            ShadowMetrics::register(&mut prometheus_client::registry::Registry::default());
        ShadowSender::new("inventory", Arc::new(RedisStore::new(None)), metrics)
    }

    fn offer(url: String) -> Offer {
        Offer {
            id: "c-1".into(),
            url,
            sample_percent: 100.0,
            operations: Vec::new(),
            max_disagreements: 5,
            ttl_seconds: 60,
            timeout_seconds: 5.0,
            canary_percent: 0.0,
            token: Default::default(),
        }
    }

    fn request() -> ShadowRequest {
        ShadowRequest {
            input: serde_json::json!({"sku": "A-1"}),
            output: serde_json::json!({"level": 3}),
            id: Some("c-1".into()),
        }
    }

    /// A port nobody listens on (bound, then released).
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_candidate_that_starts_listening_a_moment_late_still_gets_the_copy() {
        let port = free_port();
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut socket, _) = listener.accept().await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            let body = r#"{"verdict":"agree","output":{"level":3}}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        });
        let url = format!("http://127.0.0.1:{port}");
        let answer = sender()
            .ask(&offer(url), "stock_level", &request())
            .await
            .expect("the copy is sent again once the port listens");
        assert_eq!(answer.verdict, Verdict::Agree);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_candidate_that_never_listens_is_an_error_naming_the_cause() {
        let url = format!("http://127.0.0.1:{}", free_port());
        let started = Instant::now();
        let why = sender()
            .ask(&offer(url.clone()), "stock_level", &request())
            .await
            .expect_err("nothing listens");
        let Unanswered::Failed(why) = why else {
            panic!("{why:?}")
        };
        assert!(
            why.starts_with(&format!("the candidate could not be reached at {url}/v1/shadow/stock_level: error sending request")),
            "{why}"
        );
        assert!(
            why.to_lowercase().contains("refused"),
            "the cause is named: {why}"
        );
        // Retried for 0.1 + 0.2 + 0.4 + 0.8 s, then given up.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }

    /// Answers one request per reply of `replies` (status, body), in turn,
    /// one connection each; returns the bodies of the requests it read.
    async fn scripted(
        listener: tokio::net::TcpListener,
        replies: Vec<(u16, &'static str)>,
    ) -> Vec<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut seen = Vec::new();
        for (status, body) in replies {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap();
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
        seen
    }

    #[tokio::test]
    async fn a_copy_another_candidate_refused_is_sent_again_and_never_counted_as_this_ones() {
        let wrong = r#"{"error":{"code":"wrong_candidate","message":"this pod is the candidate of shadow old-1, not of shadow c-1"}}"#;
        let agree = r#"{"verdict":"agree","output":{"level":3}}"#;
        // The previous candidate's stopping pod answers first, then the new one.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(scripted(listener, vec![(409, wrong), (200, agree)]));
        let answer = sender()
            .ask(&offer(url), "stock_level", &request())
            .await
            .expect("answered by the candidate on the second try");
        assert_eq!(answer.verdict, Verdict::Agree);
        let seen = server.await.unwrap();
        assert!(
            seen[0].contains(r#""id":"c-1""#),
            "the copy names its shadow: {}",
            seen[0]
        );
        // Only the other candidate answers: no verdict at all, not an error.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(scripted(listener, vec![(409, wrong); 5]));
        let sender = sender();
        let outcome = sender
            .ask(&offer(url.clone()), "stock_level", &request())
            .await;
        assert!(
            matches!(&outcome, Err(Unanswered::Elsewhere(why)) if why.contains("shadow old-1")),
            "{outcome:?}"
        );
        server.await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(scripted(listener, vec![(409, wrong); 5]));
        assert!(
            sender
                .compare(&offer(url), "stock_level", request())
                .await
                .is_none()
        );
        server.await.unwrap();
    }
}
