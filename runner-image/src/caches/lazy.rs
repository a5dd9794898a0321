//! A cache part started once, on first use; when starting fails, it stays off
//! for a while and is then tried again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A part started once, or the reason it is off and when to try again.
pub(super) struct Lazy<T> {
    state: tokio::sync::Mutex<Option<Arc<T>>>,
    failed: Mutex<Option<(String, Instant)>>,
    /// How long a failed start keeps the part off.
    pub(super) retry_after: Duration,
}

impl<T> Lazy<T> {
    /// A part not started yet, tried again `retry_after` after a failed start.
    pub(super) fn new(retry_after: Duration) -> Self {
        Self {
            state: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
            retry_after,
        }
    }

    /// The part, started with `start` if it is not yet and did not fail recently.
    pub(super) async fn get<F, Fut>(&self, what: &str, feature: &str, start: F) -> Option<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut state = self.state.lock().await;
        if let Some(part) = state.as_ref() {
            return Some(part.clone());
        }
        if let Ok(failed) = self.failed.lock()
            && let Some((_, at)) = failed.as_ref()
            && at.elapsed() < self.retry_after
        {
            return None;
        }
        match start().await {
            Ok(part) => {
                let part = Arc::new(part);
                *state = Some(part.clone());
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = None;
                }
                Some(part)
            }
            Err(why) => {
                tracing::warn!(
                    feature,
                    "{what} off for now (tried again in {}s): {why}",
                    self.retry_after.as_secs()
                );
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = Some((why, Instant::now()));
                }
                None
            }
        }
    }

    /// The part, if it is started.
    pub(super) fn ready(&self) -> Option<Arc<T>> {
        self.state.try_lock().ok().and_then(|s| s.clone())
    }

    /// Why the part last failed to start, if it did.
    pub(super) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|(why, _)| why.clone()))
    }
}
