//! What model calls cost: prices per model, and the token and cost totals the
//! runner counts and the operator shows.
//!
//! Costs are counted in nano-dollars (10⁻⁹ USD) as integers, so that totals
//! add up exactly in Redis (`HINCRBY`) however many replicas add to them: a
//! token of a $0.15-per-million model costs 150 nano-dollars.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nano-dollars in one US dollar.
pub const NANOS_PER_USD: f64 = 1e9;

/// The price of one model, in US dollars per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per million prompt (input) tokens.
    #[schemars(range(min = 0))]
    pub input: f64,
    /// USD per million completion (output) tokens.
    #[schemars(range(min = 0))]
    pub output: f64,
}

/// Prices by model name, as the API knows the model.
pub type PriceTable = BTreeMap<String, ModelPrice>;

impl ModelPrice {
    /// The cost of `input` prompt and `output` completion tokens, in nano-dollars
    /// (rounded to the nearest; saturating).
    pub fn cost_nanos(&self, input: u64, output: u64) -> u64 {
        // USD per million tokens is nano-dollars per token times 1000.
        let nanos = input as f64 * self.input * 1000.0 + output as f64 * self.output * 1000.0;
        nanos.round().clamp(0.0, u64::MAX as f64) as u64
    }

    /// Why the price cannot be used: a negative or non-finite figure.
    pub fn problem(&self) -> Option<String> {
        [("input", self.input), ("output", self.output)]
            .into_iter()
            .find(|(_, v)| !v.is_finite() || *v < 0.0)
            .map(|(name, v)| {
                format!("{name} must be a price of at least 0 USD per million tokens, not {v}")
            })
    }
}

/// Parses a price table from JSON (`{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}`),
/// checking every price.
pub fn parse_price_table(text: &str) -> Result<PriceTable, String> {
    let table: PriceTable = serde_json::from_str(text).map_err(|e| {
        format!("expected a JSON object of model: {{input, output}} (USD per million tokens): {e}")
    })?;
    for (model, price) in &table {
        if let Some(problem) = price.problem() {
            return Err(format!("model '{model}': {problem}"));
        }
    }
    Ok(table)
}

/// Nano-dollars as US dollars.
pub fn usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

/// A cost as people read it: `$0.000123`, `$1.50`.
pub fn format_usd(nanos: u64) -> String {
    let dollars = usd(nanos);
    if dollars >= 1.0 {
        format!("${dollars:.2}")
    } else {
        // Six decimals show a single call of a cheap model.
        format!("${dollars:.6}")
    }
}

/// Model use over a time window: requests, tokens and cost.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// Model requests (each attempt and tool round is one).
    #[serde(default)]
    pub requests: i64,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Cost in USD, for the requests whose model has a price.
    #[serde(default)]
    pub cost: f64,
    /// Requests to models without a price: their tokens are counted, their cost is not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_requests: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A feature's model use over the last hour and day, from counters every
/// replica adds to (the runner's `GET /v1/usage`, and the Feature's `status.usage`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureUsage {
    /// The last hour (in 5-minute buckets: the current one and the 11 before it).
    pub last_hour: UsageTotals,
    /// The last day (in hourly buckets: the current one and the 23 before it).
    pub last_day: UsageTotals,
}

/// The runner's endpoint answering a feature's [`FeatureUsage`].
pub const USAGE_PATH: &str = "/v1/usage";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cheap_models_single_call_costs_exact_nano_dollars() {
        let price = ModelPrice {
            input: 0.15,
            output: 0.6,
        };
        // 1,000 in at $0.15/M = $0.00015; 200 out at $0.60/M = $0.00012.
        assert_eq!(price.cost_nanos(1000, 200), 270_000);
        assert_eq!(format_usd(270_000), "$0.000270");
        assert_eq!(format_usd(1_500_000_000), "$1.50");
        assert_eq!(price.cost_nanos(0, 0), 0);
    }

    #[test]
    fn a_price_table_names_the_model_with_a_bad_price() {
        let table = parse_price_table(r#"{"m": {"input": 1, "output": 2}}"#).unwrap();
        assert_eq!(table["m"].output, 2.0);
        let err = parse_price_table(
            r#"{"ok": {"input": 1, "output": 2}, "bad": {"input": -1, "output": 2}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "model 'bad': input must be a price of at least 0 USD per million tokens, not -1"
        );
        let err = parse_price_table(r#"{"m": {"input": 1}}"#).unwrap_err();
        assert!(err.contains("missing field `output`"), "{err}");
        let err =
            parse_price_table(r#"{"m": {"input": 1, "output": 2, "cached": 3}}"#).unwrap_err();
        assert!(err.contains("unknown field `cached`"), "{err}");
    }
}
