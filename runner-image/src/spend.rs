//! What a feature's model calls spend. Every reply's tokens and cost go, as
//! the reply arrives (failed and retried answers spend too), to the call's
//! trace, to the Prometheus metrics of `eol serve`, and to usage counters in
//! Redis that every replica adds to: the last hour and day the runner answers
//! at [`eol_core::cost::USAGE_PATH`] and the operator copies to the Feature's
//! `status.usage`.

use crate::budget::{BudgetGate, Exceeded, unix_now};
use crate::llm::Usage;
use crate::metrics::LlmMetrics;
use crate::store::{RedisStore, key_prefix};
use eol_core::cost::{FeatureUsage, ModelPrice, UsageTotals, format_usd, usd};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Width of the buckets the last hour is summed from.
const SHORT_BUCKET_SECS: u64 = 300;
/// Width of the buckets the last day is summed from.
const LONG_BUCKET_SECS: u64 = 3600;
/// Buckets in the last hour (the current one included).
const SHORT_BUCKETS: u64 = 12;
/// Buckets in the last day (the current one included).
const LONG_BUCKETS: u64 = 24;
/// The most time counting one reply may add to a call: the call's answer
/// matters more than its count, so a slow Redis costs a warning, not the call.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one model reply (or a whole call) spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Spend {
    /// Prompt and completion tokens.
    pub usage: Usage,
    /// Model requests.
    pub requests: u64,
    /// Cost in nano-dollars; `None` when the model has no price.
    pub cost_nanos: Option<u64>,
}

impl Spend {
    /// Adds `other` (a cost is known only while every part's is).
    pub fn add(&mut self, other: Spend) {
        // The first part sets whether the total has a cost.
        self.cost_nanos = match (self.requests, self.cost_nanos) {
            (0, _) => other.cost_nanos,
            (_, Some(a)) => other.cost_nanos.map(|b| a.saturating_add(b)),
            (_, None) => None,
        };
        self.usage.prompt_tokens += other.usage.prompt_tokens;
        self.usage.completion_tokens += other.usage.completion_tokens;
        self.requests += other.requests;
    }

    /// The cost in USD, when known.
    pub fn cost_usd(&self) -> Option<f64> {
        self.cost_nanos.map(usd)
    }
}

/// Counts the spend of one feature's model.
pub struct Meter {
    feature: String,
    model: String,
    price: Option<ModelPrice>,
    /// Set by `eol serve` once its registry exists.
    metrics: OnceLock<LlmMetrics>,
    /// The feature's Redis, where the usage counters are.
    store: Option<Arc<RedisStore>>,
    /// The feature's budget: every reply adds to it.
    budget: Option<Arc<BudgetGate>>,
    /// Whether calls check the budget before asking (not on the model a spent budget switches to).
    enforces: bool,
    /// Everything this process spent: the cost of a run or a test suite.
    total: Mutex<Spend>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("feature", &self.feature)
            .field("model", &self.model)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter of `model` at `price` that counts in the trace only.
    pub fn new(model: &str, price: Option<ModelPrice>) -> Self {
        Self {
            feature: String::new(),
            model: model.to_owned(),
            price,
            metrics: OnceLock::new(),
            store: None,
            budget: None,
            enforces: false,
            total: Mutex::new(Spend::default()),
        }
    }

    /// Also counts in `feature`'s usage counters in `store`.
    pub fn with_usage(mut self, feature: &str, store: Arc<RedisStore>) -> Self {
        self.feature = feature.to_owned();
        self.store = Some(store);
        self
    }

    /// Also adds to `budget`, and (with `enforces`) has calls check it first.
    pub fn with_budget(mut self, budget: Arc<BudgetGate>, enforces: bool) -> Self {
        if self.feature.is_empty() {
            self.feature = budget.feature().to_owned();
        }
        self.budget = Some(budget);
        self.enforces = enforces;
        self
    }

    /// The budget this meter adds to.
    pub fn budget(&self) -> Option<&Arc<BudgetGate>> {
        self.budget.as_ref()
    }

    /// `Some` when the budget this meter enforces is spent: the call must not ask the model.
    pub async fn over_budget(&self, operation: &str) -> Option<Exceeded> {
        match (&self.budget, self.enforces) {
            (Some(gate), true) => gate.exceeded(operation).await,
            _ => None,
        }
    }

    /// Also counts in `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: LlmMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// The model's price, when known.
    pub fn price(&self) -> Option<ModelPrice> {
        self.price
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Everything counted so far by this meter.
    pub fn total(&self) -> Spend {
        self.total.lock().map(|t| *t).unwrap_or_default()
    }

    /// Counts one reply of `operation`'s call and returns what it spent.
    pub async fn record(&self, operation: &str, usage: Usage) -> Spend {
        let spend = Spend {
            usage,
            requests: 1,
            cost_nanos: self
                .price
                .map(|p| p.cost_nanos(usage.prompt_tokens, usage.completion_tokens)),
        };
        if let Ok(mut total) = self.total.lock() {
            total.add(spend);
        }
        if let Some(metrics) = self.metrics.get() {
            metrics.count(operation, &self.model, self.price, usage);
        }
        if let Some(store) = self
            .store
            .as_ref()
            .or(self.budget.as_ref().map(|b| b.store()))
        {
            let counted = tokio::time::timeout(COUNT_TIMEOUT, self.count(store, spend)).await;
            let error = match counted {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {COUNT_TIMEOUT:?}")),
            };
            if let Some(error) = error {
                tracing::warn!(%error, feature = %self.feature, operation, "failed to count a model reply in the usage counters and budget");
            }
        }
        spend
    }
}

/// The sum of what several models spent.
pub fn total_of(spends: &[(&Meter, Spend)]) -> Spend {
    let mut total = Spend::default();
    for (_, spend) in spends {
        total.add(*spend);
    }
    total
}

/// The models of `spends`, in order: `a`, or `a, b`; `None` when there are none.
pub fn models_of(spends: &[(&Meter, Spend)]) -> Option<String> {
    let models: Vec<&str> = spends.iter().map(|(meter, _)| meter.model()).collect();
    (!models.is_empty()).then(|| models.join(", "))
}

/// What `spend` on `meter`'s model came to, as one line for people:
/// `model m: 3 requests, 1200 tokens in, 80 out, $0.000228`.
pub fn spend_line(meter: &Meter, spend: &Spend) -> String {
    let cost = match spend.cost_nanos {
        Some(nanos) => format_usd(nanos),
        None => format!(
            "cost unknown (no price for model '{}': set EOL_LLM_PRICES or the frontmatter's model.price)",
            meter.model
        ),
    };
    format!(
        "model {}: {} requests, {} tokens in, {} out, {cost}",
        meter.model, spend.requests, spend.usage.prompt_tokens, spend.usage.completion_tokens
    )
}

/// The usage bucket of `feature` holding time `at` (seconds), `width` seconds wide.
fn bucket_key(feature: &str, width: u64, at: u64) -> String {
    format!("{}usage:{width}:{}", key_prefix(feature), at / width)
}

impl Meter {
    /// Adds `spend` to the usage buckets (each kept a little longer than the
    /// window it serves) and to the budget's window, in one round trip.
    async fn count(
        &self,
        store: &RedisStore,
        spend: Spend,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let at = unix_now();
        let mut pipe = redis::pipe();
        if self.store.is_some() {
            for (width, count) in [
                (SHORT_BUCKET_SECS, SHORT_BUCKETS),
                (LONG_BUCKET_SECS, LONG_BUCKETS),
            ] {
                let key = bucket_key(&self.feature, width, at);
                pipe.hincr(&key, "requests", spend.requests)
                    .hincr(&key, "input_tokens", spend.usage.prompt_tokens)
                    .hincr(&key, "output_tokens", spend.usage.completion_tokens);
                match spend.cost_nanos {
                    Some(nanos) => pipe.hincr(&key, "cost_nanos", nanos),
                    None => pipe.hincr(&key, "unpriced_requests", spend.requests),
                };
                pipe.expire(&key, ((count + 1) * width) as i64).ignore();
            }
        }
        if let Some(budget) = &self.budget {
            budget.add(&mut pipe, at, &spend);
        }
        let mut conn = store.connection().await?;
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }
}

/// `feature`'s usage over the last hour and day before time `at` (seconds),
/// summed from the buckets every replica adds to.
pub async fn read_usage(
    store: &RedisStore,
    feature: &str,
    at: u64,
) -> Result<FeatureUsage, Box<dyn std::error::Error + Send + Sync>> {
    let mut conn = store.connection().await?;
    let windows = [
        (SHORT_BUCKET_SECS, SHORT_BUCKETS),
        (LONG_BUCKET_SECS, LONG_BUCKETS),
    ];
    let mut pipe = redis::pipe();
    for (width, count) in windows {
        for i in 0..count {
            pipe.hgetall(bucket_key(feature, width, at.saturating_sub(i * width)));
        }
    }
    let buckets: Vec<HashMap<String, i64>> = pipe.query_async(&mut conn).await?;
    let (hour, day) = buckets.split_at(SHORT_BUCKETS as usize);
    Ok(FeatureUsage {
        last_hour: totals(hour),
        last_day: totals(day),
        budget: None,
    })
}

/// Reads the usage before now.
pub async fn read_usage_now(
    store: &RedisStore,
    feature: &str,
) -> Result<FeatureUsage, Box<dyn std::error::Error + Send + Sync>> {
    read_usage(store, feature, unix_now()).await
}

fn totals(buckets: &[HashMap<String, i64>]) -> UsageTotals {
    let sum = |field: &str| -> i64 {
        buckets
            .iter()
            .filter_map(|b| b.get(field))
            .fold(0i64, |a, b| a.saturating_add(*b))
    };
    UsageTotals {
        requests: sum("requests"),
        input_tokens: sum("input_tokens"),
        output_tokens: sum("output_tokens"),
        cost: usd(u64::try_from(sum("cost_nanos")).unwrap_or(0)),
        unpriced_requests: sum("unpriced_requests"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_has_a_cost_only_while_every_part_has_one() {
        let priced = Spend {
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 2,
            },
            requests: 1,
            cost_nanos: Some(5),
        };
        let mut total = Spend::default();
        total.add(priced);
        total.add(priced);
        assert_eq!(total.cost_nanos, Some(10));
        assert_eq!(total.usage.total(), 24);
        assert_eq!(total.requests, 2);
        total.add(Spend {
            cost_nanos: None,
            ..priced
        });
        assert_eq!(total.cost_nanos, None);
        assert_eq!(total.requests, 3);
    }

    #[test]
    fn buckets_are_keyed_by_width_and_index() {
        assert_eq!(bucket_key("orders", 300, 601), "eol:orders:usage:300:2");
        assert_eq!(bucket_key("orders", 3600, 601), "eol:orders:usage:3600:0");
    }
}
