//! Run reports for Kubernetes Jobs: the short [`RunReport`] a runner pod leaves
//! as its termination message, and the full result kept in Redis under a key
//! the report names.

use crate::llm::Usage;
use crate::spend::Spend;
use crate::store::{RedisStore, StoreError, key_prefix};
use crate::testing::{CaseResult, Verdict};
use eol_core::crd::{RunReport, RunSummary};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long a stored result is kept: long enough to look at a week's runs,
/// short enough that Redis does not fill with them.
pub const RESULT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The most time storing a result may take; the run's own work is done by then.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest reason quoted per failing case, so that every case's name fits
/// the termination message.
const REASON_CHARS: usize = 200;

/// Why a result was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreResultError {
    /// Redis could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SET command failed.
    #[error("Redis SET {key} failed: {source}")]
    Command {
        /// The key being written.
        key: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error("Redis did not store {key} within {STORE_TIMEOUT:?}")]
    Timeout {
        /// The key being written.
        key: String,
    },
}

/// The key a run's full result is stored under: `eol:<feature>:runs:<id>`.
pub fn result_key(feature: &str, run_id: &str) -> String {
    format!("{}runs:{run_id}", key_prefix(feature))
}

/// Whether `id` may name a run: 1 to 128 ASCII letters, digits, `.`, `_` or `-`
/// (a Kubernetes name or UID fits; a key cannot be bent by spaces or colons).
pub fn valid_run_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Stores `result` as JSON text at [`result_key`] with [`RESULT_TTL`]; returns the key.
pub async fn store_result(
    store: &RedisStore,
    feature: &str,
    run_id: &str,
    result: &Value,
) -> Result<String, StoreResultError> {
    let key = result_key(feature, run_id);
    let write = async {
        let mut conn = store.connection().await?;
        redis::cmd("SET")
            .arg(&key)
            .arg(result.to_string())
            .arg("EX")
            .arg(RESULT_TTL.as_secs())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| StoreResultError::Command {
                key: key.clone(),
                source,
            })
    };
    match tokio::time::timeout(STORE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(key),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreResultError::Timeout { key }),
    }
}

/// Writes the report to `path` as at most 4096 bytes of JSON (see
/// [`RunReport::to_termination_message`]).
pub fn write_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::write(path, report.to_termination_message())
}

/// A duration as the FeatureRun status shows it: `0.4s`, `1.8s`, `2m5s`, `1h3m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m", secs / 3600, secs % 3600 / 60)
    }
}

/// Model tokens of one call: prompt plus completion, as the report counts them.
pub fn tokens(usage: &Usage) -> i64 {
    saturating_i64(usage.total())
}

/// Puts what the process's model calls spent in `summary` (nothing when it made none).
pub fn fill_spend(summary: &mut RunSummary, spend: &Spend) {
    if spend.requests == 0 {
        return;
    }
    summary.tokens = Some(tokens(&spend.usage));
    summary.input_tokens = Some(saturating_i64(spend.usage.prompt_tokens));
    summary.output_tokens = Some(saturating_i64(spend.usage.completion_tokens));
    summary.cost = spend.cost_usd();
}

/// Tokens over every case that used a model, or `None` when none did.
pub fn case_tokens(results: &[CaseResult]) -> Option<i64> {
    let total = results
        .iter()
        .filter_map(|r| r.tokens)
        .reduce(u64::saturating_add)?;
    Some(saturating_i64(total))
}

/// A token count as the report's `i64` fields hold it.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as the report's `i32` fields hold it.
pub fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `2 tests failed: title A (reason); title B (reason)`, or `None` when none failed.
pub fn failed_cases(results: &[CaseResult]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Failed)
        .map(|r| match &r.reason {
            Some(reason) => format!("{} ({})", r.title, shorten(reason, REASON_CHARS)),
            None => r.title.clone(),
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let noun = if failed.len() == 1 { "test" } else { "tests" };
    Some(format!(
        "{} {noun} failed: {}",
        failed.len(),
        failed.join("; ")
    ))
}

/// `text` cut to `max` characters (on a char boundary), with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::OperationPhase;

    fn case(
        title: &str,
        verdict: Verdict,
        reason: Option<&str>,
        tokens: Option<u64>,
    ) -> CaseResult {
        CaseResult {
            title: title.into(),
            operation: "op".into(),
            phase: OperationPhase::Implementation,
            verdict,
            duration: Duration::ZERO,
            reason: reason.map(Into::into),
            output: None,
            tokens,
        }
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(format_duration(Duration::from_millis(1840)), "1.8s");
        assert_eq!(format_duration(Duration::from_millis(30)), "0.0s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m5s");
        assert_eq!(format_duration(Duration::from_secs(3780)), "1h3m");
    }

    #[test]
    fn failing_cases_are_named_with_short_reasons() {
        let results = [
            case("adds", Verdict::Passed, None, None),
            case("a", Verdict::Failed, Some("got 2"), Some(10)),
            case("b", Verdict::Failed, Some(&"x".repeat(500)), Some(5)),
            case(
                "c",
                Verdict::Skipped,
                Some("runs in the prototyping phase only"),
                None,
            ),
        ];
        let text = failed_cases(&results).expect("two failed");
        assert!(
            text.starts_with("2 tests failed: a (got 2); b (xxx"),
            "{text}"
        );
        assert!(text.ends_with("x…)"), "{text}");
        assert!(text.chars().count() < 260, "{text}");
        assert_eq!(failed_cases(&results[..1]), None);
        assert_eq!(
            failed_cases(&results[1..2]).as_deref(),
            Some("1 test failed: a (got 2)")
        );
        assert_eq!(case_tokens(&results), Some(15));
        assert_eq!(case_tokens(&results[..1]), None);
    }

    #[test]
    fn run_ids_and_keys() {
        assert!(valid_run_id("3f1c2a9e-5b7d-4e1a-9c3b-0d2e4f6a8b1c"));
        assert!(valid_run_id("tests-run.1_a"));
        for bad in ["", "a b", "a:b", "a*", &"x".repeat(129)] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
        assert_eq!(result_key("inventory", "r1"), "eol:inventory:runs:r1");
    }
}
