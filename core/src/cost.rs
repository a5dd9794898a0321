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
    /// The budget's window, when the feature has a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetState>,
}

/// The window a budget counts over: a UTC calendar hour, day or month. The
/// budget resets at its edge.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BudgetWindow {
    /// A clock hour.
    Hour,
    /// A UTC day.
    #[default]
    Day,
    /// A calendar month (UTC).
    Month,
}

impl BudgetWindow {
    /// The window holding `at` (Unix seconds): its name, e.g. `day:20425` or
    /// `month:2026-12`, and the seconds from `at` to its end.
    pub fn at(self, at: u64) -> (String, u64) {
        match self {
            BudgetWindow::Hour => (format!("hour:{}", at / 3600), 3600 - at % 3600),
            BudgetWindow::Day => (format!("day:{}", at / 86400), 86400 - at % 86400),
            BudgetWindow::Month => {
                let (year, month) = civil_month((at / 86400) as i64);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let end = days_from_civil(next_year, next_month) as u64 * 86400;
                (
                    format!("month:{year:04}-{month:02}"),
                    end.saturating_sub(at),
                )
            }
        }
    }
}

/// The year and month of day `days` since 1970-01-01 (H. Hinnant's civil-from-days).
fn civil_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// Days since 1970-01-01 of the first day of `month` of `year`.
fn days_from_civil(year: i64, month: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What prototyped calls do once a budget is spent.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum OnExceeded {
    /// Refuse them (HTTP 429, kind `budget_exceeded`).
    #[default]
    #[serde(alias = "reject")]
    Reject,
    /// Run the operation's Python instead, when it has some (else refuse).
    #[serde(alias = "implementation")]
    Implementation,
    /// Ask the budget's `model` instead (a cheaper one); its spend is counted, not limited.
    #[serde(alias = "model")]
    Model,
}

/// A limit on what a feature's model calls spend per window, enforced by every
/// replica against one Redis counter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    /// The most tokens (prompt plus completion) per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens: Option<i64>,
    /// The most USD per window (counted only for models with a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cost: Option<f64>,
    /// The window: `hour`, `day` (default) or `month`, in UTC; the budget resets at its edge.
    #[serde(default)]
    pub per: BudgetWindow,
    /// What prototyped calls do once the budget is spent: `Reject` (default), `Implementation` or `Model`.
    #[serde(default, alias = "on_exceeded")]
    pub on_exceeded: OnExceeded,
    /// The model `onExceeded: Model` switches to (same API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Budget {
    /// Why the budget cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.tokens.is_none() && self.cost.is_none() {
            return Some("a budget needs tokens or cost (or both)".to_owned());
        }
        if self.tokens.is_some_and(|t| t < 1) {
            return Some("budget.tokens must be at least 1".to_owned());
        }
        if self.cost.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Some("budget.cost must be a USD amount of at least 0".to_owned());
        }
        if (self.on_exceeded == OnExceeded::Model) != self.model.is_some() {
            return Some(
                "budget.model names the model of onExceeded: Model, and only then".to_owned(),
            );
        }
        None
    }

    /// Whether `spent` reaches the budget.
    pub fn spent_by(&self, spent: &BudgetSpend) -> bool {
        self.tokens.is_some_and(|t| spent.tokens >= t)
            || self
                .cost
                .is_some_and(|c| spent.cost_nanos as f64 >= c * NANOS_PER_USD)
    }

    /// A short line for people: `41% of $0.50/day`, `1200/5000 tokens/hour`.
    pub fn describe(&self, spent: &BudgetSpend) -> String {
        let per = match self.per {
            BudgetWindow::Hour => "hour",
            BudgetWindow::Day => "day",
            BudgetWindow::Month => "month",
        };
        let mut parts = Vec::new();
        if let Some(t) = self.tokens {
            parts.push(format!("{}/{t} tokens", spent.tokens));
        }
        if let Some(c) = self.cost {
            parts.push(format!(
                "{}/{}",
                format_usd(spent.cost_nanos),
                format_usd((c * NANOS_PER_USD) as u64)
            ));
        }
        format!("{} per {per}", parts.join(", "))
    }
}

/// What a budget's window has spent so far.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpend {
    /// Tokens, prompt plus completion.
    pub tokens: i64,
    /// Cost in nano-dollars.
    pub cost_nanos: u64,
}

/// A budget's state, as the runner answers it beside the usage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetState {
    /// The window, e.g. `day:20425`.
    pub window: String,
    /// What it has spent.
    pub spent: BudgetSpend,
    /// Whether the budget is spent: prototyped calls get `onExceeded`.
    pub exceeded: bool,
    /// A short line for people, e.g. `$0.41/$0.50 per day`.
    pub summary: String,
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
    fn budget_windows_end_at_the_utc_hour_day_and_month() {
        // 2026-12-31T23:30:00Z
        let t = 1_798_759_800;
        assert_eq!(BudgetWindow::Hour.at(t), ("hour:499655".to_owned(), 1800));
        assert_eq!(BudgetWindow::Day.at(t), ("day:20818".to_owned(), 1800));
        assert_eq!(
            BudgetWindow::Month.at(t),
            ("month:2026-12".to_owned(), 1800)
        );
        // Half an hour later a new year, month and day begin.
        assert_eq!(BudgetWindow::Month.at(t + 1800).0, "month:2027-01");
        assert_eq!(
            BudgetWindow::Day.at(t + 1800),
            ("day:20819".to_owned(), 86400)
        );
        // 2024-02-29T12:00:00Z: a leap day, 12 h before March.
        assert_eq!(
            BudgetWindow::Month.at(1_709_208_000),
            ("month:2024-02".to_owned(), 43_200)
        );
    }

    #[test]
    fn a_budget_is_spent_at_either_limit_and_checked_for_sense() {
        let budget: Budget = serde_json::from_value(serde_json::json!(
            {"tokens": 100, "cost": 0.5, "per": "hour"}
        ))
        .unwrap();
        assert_eq!(budget.on_exceeded, OnExceeded::Reject);
        assert!(!budget.spent_by(&BudgetSpend {
            tokens: 99,
            cost_nanos: 0
        }));
        assert!(budget.spent_by(&BudgetSpend {
            tokens: 100,
            cost_nanos: 0
        }));
        assert!(budget.spent_by(&BudgetSpend {
            tokens: 0,
            cost_nanos: 500_000_000
        }));
        assert_eq!(
            budget.describe(&BudgetSpend {
                tokens: 40,
                cost_nanos: 250_000_000
            }),
            "40/100 tokens, $0.250000/$0.500000 per hour"
        );
        let frontmatter: Budget =
            serde_yaml::from_str("cost: 1\non_exceeded: model\nmodel: small").unwrap();
        assert_eq!(frontmatter.on_exceeded, OnExceeded::Model);
        assert_eq!(frontmatter.problem(), None);
        let no_limit = Budget::default();
        assert_eq!(
            no_limit.problem().unwrap(),
            "a budget needs tokens or cost (or both)"
        );
        let no_model = Budget {
            tokens: Some(1),
            on_exceeded: OnExceeded::Model,
            ..Budget::default()
        };
        assert!(no_model.problem().unwrap().contains("budget.model"));
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
