//! Retries for model requests: exponential backoff with full jitter, honouring
//! `Retry-After`, on 429, 5xx, connection errors and timeouts.

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use rand::Rng;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

tokio::task_local! {
    /// Retries made for the request being sent in this task (read by the client).
    pub(crate) static RETRIES: std::cell::Cell<u32>;
}

/// A tower retry policy for OpenAI-compatible APIs.
#[derive(Clone, Debug)]
pub struct BackoffPolicy {
    max_retries: u32,
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl BackoffPolicy {
    /// At most `max_retries` retries after the first attempt.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            attempt: 0,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }

    /// The wait before retry number `attempt` (0-based): a `Retry-After` the
    /// server sent wins (capped), otherwise a random wait up to base * 2^attempt.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.cap);
        }
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }
}

/// `Retry-After` as seconds (the form model APIs send).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn retryable(result: &Result<reqwest::Response, OpenAIError>) -> bool {
    match result {
        Ok(r) => r.status().as_u16() == 429 || r.status().is_server_error(),
        Err(OpenAIError::Reqwest(e)) => e.is_connect() || e.is_timeout(),
        Err(_) => false,
    }
}

impl tower::retry::Policy<HttpRequestFactory, reqwest::Response, OpenAIError> for BackoffPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<reqwest::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if self.attempt >= self.max_retries || !retryable(result) {
            return None;
        }
        let wait = self.delay(self.attempt, result.as_ref().ok().and_then(retry_after));
        tracing::warn!(
            attempt = self.attempt + 1,
            wait_ms = wait.as_millis() as u64,
            "retrying the model request"
        );
        self.attempt += 1;
        // Outside a counting scope (e.g. a bare client) there is nothing to count into.
        let _ = RETRIES.try_with(|r| r.set(r.get() + 1));
        Some(Box::pin(tokio::time::sleep(wait)))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_backoff_grows_with_jitter() {
        let p = BackoffPolicy::new(3);
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(999))),
            Duration::from_secs(20)
        );
        for attempt in 0..4 {
            let ceiling = Duration::from_millis(200 * 2u64.pow(attempt));
            let d = p.delay(attempt, None);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }
}
