//! Prometheus metrics of a served feature (prometheus-client).

use crate::llm::Usage;
use eol_core::cost::ModelPrice;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// An operation in a phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation.
    pub operation: String,
    /// The phase it ran in.
    pub phase: String,
}

/// Model tokens or cost of one operation, by direction and model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// The operation.
    pub operation: String,
    /// `in` (prompt) or `out` (completion).
    pub direction: String,
    /// The model, as the API knows it.
    pub model: String,
}

/// A request that went to a fallback model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// The model it would have gone to (failing or cooling down).
    pub from: String,
    /// The model it went to instead.
    pub to: String,
}

/// What the model replies of a served feature used and cost, counted as each
/// reply arrives (see [`crate::spend::Meter`]).
#[derive(Clone)]
pub struct LlmMetrics {
    /// `eol_llm_tokens_total{operation,direction,model}`.
    pub tokens: Family<TokenLabels, Counter>,
    /// `eol_llm_cost_total{operation,direction,model}`, in USD (models with a price only).
    pub cost: Family<TokenLabels, Counter<f64, AtomicU64>>,
    /// `eol_llm_fallbacks_total{from,to}`: requests sent to a fallback model.
    pub fallbacks: Family<FallbackLabels, Counter>,
}

impl LlmMetrics {
    /// Creates the metrics and registers them in `registry` (which should carry the `eol` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            tokens: Family::default(),
            cost: Family::default(),
            fallbacks: Family::default(),
        };
        registry.register(
            "llm_tokens",
            "Model tokens used, by direction (in: prompt, out: completion) and model",
            m.tokens.clone(),
        );
        registry.register(
            "llm_cost",
            "Model cost in USD, by direction and model (models with a price only)",
            m.cost.clone(),
        );
        registry.register(
            "llm_fallbacks",
            "Model requests sent to a fallback model because the one before it failed or was cooling down",
            m.fallbacks.clone(),
        );
        m
    }

    /// Counts a request sent to model `to` instead of `from`.
    pub fn fell_back(&self, from: &str, to: &str) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                from: from.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// Counts one reply of `operation` on `model`.
    pub fn count(&self, operation: &str, model: &str, price: Option<ModelPrice>, usage: Usage) {
        for (direction, tokens, usd_per_million) in [
            ("in", usage.prompt_tokens, price.map(|p| p.input)),
            ("out", usage.completion_tokens, price.map(|p| p.output)),
        ] {
            let labels = TokenLabels {
                operation: operation.to_owned(),
                direction: direction.to_owned(),
                model: model.to_owned(),
            };
            self.tokens.get_or_create(&labels).inc_by(tokens);
            if let Some(per_million) = usd_per_million {
                self.cost
                    .get_or_create(&labels)
                    .inc_by(tokens as f64 * per_million / 1e6);
            }
        }
    }
}

/// A cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `semantic`, `embedding` or `result`.
    pub r#type: String,
    /// `true` or `false`.
    pub hit: String,
}

/// A failed call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The operation.
    pub operation: String,
    /// The error's stable kind (`invalid_input`, `cpu_limit`, `llm_timeout`, ...).
    pub kind: String,
}

/// The metrics `eol serve` exposes under the `eol_` prefix (and
/// `eol_cache_hits_total{type,hit}`, read from the caches at each scrape:
/// [`crate::caches::CacheMetrics`]).
#[derive(Clone)]
pub struct ServeMetrics {
    /// `eol_execution_duration_seconds{operation,phase}`.
    pub execution_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// `eol_llm_tokens_total` and `eol_llm_cost_total`.
    pub llm: LlmMetrics,
    /// `eol_errors_total{operation,kind}`.
    pub errors: Family<ErrorLabels, Counter>,
}

impl ServeMetrics {
    /// Creates the metrics and registers them in `registry` (which should carry the `eol` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            execution_duration: Family::new_with_constructor(duration_histogram),
            llm: LlmMetrics::register(registry),
            errors: Family::default(),
        };
        registry.register(
            "execution_duration_seconds",
            "Time to execute an operation",
            m.execution_duration.clone(),
        );
        registry.register("errors", "Failed operation calls by kind", m.errors.clone());
        m
    }
}

/// An async call answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueCallLabels {
    /// The operation.
    pub operation: String,
    /// `ok`, or the error's stable kind.
    pub outcome: String,
}

/// The metrics of a feature's async calls, as one serving pod sees them.
#[derive(Clone, Default)]
pub struct QueueMetrics {
    /// `eol_queue_depth`: calls accepted and not yet answered, over every
    /// replica (the stream's length, read every second), for autoscaling.
    pub depth: Gauge,
    /// `eol_queue_calls_total{operation,outcome}`: queued calls this pod answered
    /// (`ok` or the error kind).
    pub calls: Family<QueueCallLabels, Counter>,
    /// `eol_queue_reclaimed_total`: calls this pod took over from a pod that stopped renewing them.
    pub reclaimed: Counter,
    /// `eol_queue_rejected_total`: calls refused because the queue was full.
    pub rejected: Counter,
}

impl QueueMetrics {
    /// Creates the metrics and registers them in `registry` (which should carry the `eol` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "queue_depth",
            "Async calls accepted and not yet answered, over every replica",
            m.depth.clone(),
        );
        registry.register(
            "queue_calls",
            "Async calls this pod answered, by operation and outcome",
            m.calls.clone(),
        );
        registry.register(
            "queue_reclaimed",
            "Async calls this pod took over from a stopped pod",
            m.reclaimed.clone(),
        );
        registry.register(
            "queue_rejected",
            "Async calls refused because the queue was full",
            m.rejected.clone(),
        );
        m
    }
}

/// Buckets from 100 µs (a warm sandboxed call) to about 7 minutes (a slow model).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 12))
}

/// A shadow comparison of one operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowVerdictLabels {
    /// The operation.
    pub operation: String,
    /// `agree`, `disagree` or `error`.
    pub verdict: String,
}

/// An operation whose calls are copied to a shadow candidate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowOperationLabels {
    /// The operation.
    pub operation: String,
}

/// A live call of one operation forwarded to a canary candidate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// The operation.
    pub operation: String,
    /// `routed` (every forwarded call) or `failed` (of those, the ones the serving pod answered instead).
    pub outcome: String,
}

/// The metrics of the calls a serving pod copies to a shadow candidate, or
/// forwards to a canary candidate.
#[derive(Clone)]
pub struct ShadowMetrics {
    /// `eol_shadow_comparisons_total{operation,verdict}`: verdicts recorded.
    pub comparisons: Family<ShadowVerdictLabels, Counter>,
    /// `eol_shadow_duration_seconds{operation}`: from sending a copy to the candidate's answer or failure.
    pub duration: Family<ShadowOperationLabels, Histogram, fn() -> Histogram>,
    /// `eol_shadow_dropped_total{operation}`: samples dropped because too many copies were in flight.
    pub dropped: Family<ShadowOperationLabels, Counter>,
    /// `eol_canary_requests_total{operation,outcome}`: live calls forwarded to a canary candidate.
    pub canary_requests: Family<CanaryLabels, Counter>,
}

impl ShadowMetrics {
    /// Creates the metrics and registers them in `registry` (which should carry the `eol` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            comparisons: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            dropped: Family::default(),
            canary_requests: Family::default(),
        };
        registry.register(
            "shadow_comparisons",
            "Calls copied to a shadow candidate, by verdict",
            m.comparisons.clone(),
        );
        registry.register(
            "shadow_duration_seconds",
            "Time from copying a call to the shadow candidate's answer or failure",
            m.duration.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Sampled calls not copied because too many copies were in flight",
            m.dropped.clone(),
        );
        registry.register(
            "canary_requests",
            "Live calls forwarded to a canary candidate, by outcome (routed: all; failed: answered by the serving pod instead)",
            m.canary_requests.clone(),
        );
        m
    }
}
