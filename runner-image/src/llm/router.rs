//! Model fallbacks, like LiteLLM's router: an ordered list of models (the
//! primary first). A request goes to the first one not cooling down; one that
//! fails with a kind another model may not share (5xx, 429, timeout,
//! unreachable; after its own retries) cools down and the request goes to the
//! next at once. When every model is cooling down, the one whose cooldown ends
//! first is asked: a request never fails without asking someone. Errors of the
//! request itself (400 and the like) do not fall back.

use super::{ChatClient, ChatReply, LlmError};
use crate::metrics::LlmMetrics;
use crate::spend::{Meter, Spend};
use serde_json::Value;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// One model to ask: its client and the meter counting its spend (so metrics
/// and cost are by the model that answered).
#[derive(Debug)]
pub struct Route {
    /// The model's client.
    pub client: ChatClient,
    /// Counts what its replies spend.
    pub meter: Meter,
}

impl Route {
    /// The model's name.
    pub fn model(&self) -> &str {
        &self.client.settings().model
    }
}

/// A reply and the model that gave it.
#[derive(Debug)]
pub struct RoutedReply {
    /// The reply.
    pub reply: ChatReply,
    /// What it spent, at the answering model's price.
    pub spend: Spend,
    /// The model that answered.
    pub model: String,
    /// Requests this one sent to a fallback (0 when the primary answered).
    pub fallbacks: u32,
}

/// The models of a feature, the primary first, and when each may be asked again.
pub struct ModelRoutes {
    routes: Vec<Route>,
    cooldown: Duration,
    /// When each route's cooldown ends (`None`: it is not cooling down).
    cooling_until: Mutex<Vec<Option<Instant>>>,
    metrics: OnceLock<LlmMetrics>,
}

impl std::fmt::Debug for ModelRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRoutes")
            .field("routes", &self.routes)
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

/// Whether `error` may be the model's (or its server's) and not the request's:
/// another model may answer.
pub fn falls_back(error: &LlmError) -> bool {
    match error {
        LlmError::Api { status, .. } => *status == 429 || *status >= 500,
        LlmError::Timeout { .. } | LlmError::Unreachable { .. } => true,
        LlmError::Malformed { .. } => false,
    }
}

/// The route to ask next: the first not yet `tried` and not cooling down at
/// `now`; when none is, and none was tried, the one whose cooldown ends first.
fn pick(cooling_until: &[Option<Instant>], tried: &[bool], now: Instant) -> Option<usize> {
    let ready = (0..cooling_until.len())
        .find(|&i| !tried[i] && cooling_until[i].is_none_or(|until| until <= now));
    if ready.is_some() || tried.iter().any(|t| *t) {
        return ready;
    }
    (0..cooling_until.len()).min_by_key(|&i| cooling_until[i])
}

impl ModelRoutes {
    /// Only `primary`.
    pub fn new(primary: Route) -> Self {
        Self {
            routes: vec![primary],
            cooldown: Duration::ZERO,
            cooling_until: Mutex::new(vec![None]),
            metrics: OnceLock::new(),
        }
    }

    /// Also asks `fallbacks`, in order, after the models already there; a
    /// failing model cools down for `cooldown`.
    pub fn add_fallbacks(&mut self, fallbacks: Vec<Route>, cooldown: Duration) {
        self.routes.extend(fallbacks);
        self.cooldown = cooldown;
        let until = self
            .cooling_until
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        until.resize(self.routes.len(), None);
    }

    /// The primary model.
    pub fn primary(&self) -> &Route {
        &self.routes[0]
    }

    /// The primary model, to change.
    pub fn primary_mut(&mut self) -> &mut Route {
        &mut self.routes[0]
    }

    /// Every model, the primary first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Counts fallbacks and every model's spend in `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: LlmMetrics) {
        for route in &self.routes {
            route.meter.set_metrics(metrics.clone());
        }
        let _ = self.metrics.set(metrics);
    }

    /// Everything every model spent, by model (those that answered at least once).
    pub fn totals(&self) -> Vec<(&Meter, Spend)> {
        self.routes
            .iter()
            .map(|r| (&r.meter, r.meter.total()))
            .filter(|(_, spend)| spend.requests > 0)
            .collect()
    }

    /// Everything the models spent together.
    pub fn total(&self) -> Spend {
        crate::spend::total_of(&self.totals())
    }

    /// The models that answered so far, in route order: `a`, or `a, b`.
    pub fn answered_by(&self) -> Option<String> {
        crate::spend::models_of(&self.totals())
    }

    /// Asks the first model able to answer (see the module's doc) and counts
    /// the reply's spend as `operation`'s on the model that answered.
    pub async fn chat(
        &self,
        operation: &str,
        messages: &[Value],
        tools: &[Value],
        schema: Option<&Value>,
    ) -> Result<RoutedReply, LlmError> {
        let mut tried = vec![false; self.routes.len()];
        let mut failed: Option<usize> = None;
        let mut fallbacks = 0;
        let mut next = self.next(&tried).unwrap_or(0);
        loop {
            tried[next] = true;
            let route = &self.routes[next];
            if next > 0 {
                fallbacks += 1;
                let from = self.routes[failed.unwrap_or(0)].model();
                if let Some(metrics) = self.metrics.get() {
                    metrics.fell_back(from, route.model());
                }
            }
            match route.client.chat(messages, tools, schema).await {
                Ok(reply) => {
                    self.recovered(next);
                    // Once per failure at info; while the failing model cools down, at debug.
                    if failed.is_some() {
                        tracing::info!(
                            model = route.model(),
                            primary = self.primary().model(),
                            operation,
                            "a fallback model answered"
                        );
                    } else if next > 0 {
                        tracing::debug!(
                            model = route.model(),
                            primary = self.primary().model(),
                            operation,
                            "a fallback model answered while the models before it cool down"
                        );
                    }
                    let spend = route.meter.record(operation, reply.usage).await;
                    return Ok(RoutedReply {
                        reply,
                        spend,
                        model: route.model().to_owned(),
                        fallbacks,
                    });
                }
                Err(error) if self.routes.len() > 1 && falls_back(&error) => {
                    tracing::warn!(model = route.model(), %error, kind = error.kind(), cooldown_s = self.cooldown.as_secs_f64(), "the model failed; it cools down and the next model is asked");
                    self.cool(next);
                    failed = Some(next);
                    match self.next(&tried) {
                        Some(i) => next = i,
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn next(&self, tried: &[bool]) -> Option<usize> {
        let until = self
            .cooling_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pick(&until, tried, Instant::now())
    }

    fn cool(&self, route: usize) {
        let mut until = self
            .cooling_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until[route] = Some(Instant::now() + self.cooldown);
    }

    fn recovered(&self, route: usize) {
        let mut until = self
            .cooling_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until[route] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_model_not_cooling_down_is_asked() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let past = now - Duration::from_secs(1);
        assert_eq!(pick(&[None, None], &[false, false], now), Some(0));
        assert_eq!(pick(&[Some(later), None], &[false, false], now), Some(1));
        // A cooldown that has ended is no cooldown.
        assert_eq!(pick(&[Some(past), None], &[false, false], now), Some(0));
        // Failed in this request: the next one, and none after the last.
        assert_eq!(pick(&[Some(later), None], &[true, false], now), Some(1));
        assert_eq!(pick(&[Some(later), Some(later)], &[true, true], now), None);
    }

    #[test]
    fn when_all_cool_down_the_one_ending_first_is_asked_unless_one_was_tried() {
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(5);
        assert_eq!(
            pick(&[Some(later), Some(soon)], &[false, false], now),
            Some(1)
        );
        assert_eq!(
            pick(&[Some(soon), Some(later)], &[false, false], now),
            Some(0)
        );
        // Someone was asked in this request: its error is the answer.
        assert_eq!(pick(&[Some(later), Some(soon)], &[false, true], now), None);
    }

    #[test]
    fn only_errors_a_model_may_not_share_fall_back() {
        let api = |status| LlmError::Api {
            url: "http://m".into(),
            status,
            message: "x".into(),
        };
        assert!(falls_back(&api(500)));
        assert!(falls_back(&api(503)));
        assert!(falls_back(&api(429)));
        assert!(!falls_back(&api(400)));
        assert!(!falls_back(&api(401)));
        assert!(falls_back(&LlmError::Unreachable {
            url: "http://m".into(),
            message: "refused".into()
        }));
        assert!(!falls_back(&LlmError::Malformed {
            url: "http://m".into(),
            message: "no choices".into()
        }));
    }
}
