//! The tally a candidate shows: verdict and canary counts per operation
//! (from the counts hash the serving pods write) and disagreements as
//! previews.

use eol_core::shadow::{CanaryOutcome, Disagreement, OperationTally, Sample, Verdict, preview};
use std::collections::{BTreeMap, HashMap};

/// Bytes of a disagreement's reason shown in the tally.
pub const REASON_BYTES: usize = 256;

/// The counts of each operation in a counts hash (fields `<operation>:<verdict>`
/// and `<operation>:canary_<outcome>`), by operation name; an operation with
/// only canary counts is there too. Fields of another shape are passed over.
pub fn operation_tallies(counts: &HashMap<String, u64>) -> Vec<OperationTally> {
    let mut by_operation: BTreeMap<&str, OperationTally> = BTreeMap::new();
    for (field, &n) in counts {
        let Some((operation, kind)) = field.rsplit_once(':') else {
            continue;
        };
        let slot: fn(&mut OperationTally) -> &mut u64 = match kind {
            k if k == Verdict::Agree.as_str() => |t| &mut t.agree,
            k if k == Verdict::Disagree.as_str() => |t| &mut t.disagree,
            k if k == Verdict::Error.as_str() => |t| &mut t.error,
            k if k == CanaryOutcome::Routed.as_str() => |t| &mut t.canary_routed,
            k if k == CanaryOutcome::Failed.as_str() => |t| &mut t.canary_failed,
            _ => continue,
        };
        let tally = by_operation
            .entry(operation)
            .or_insert_with(|| OperationTally {
                operation: operation.to_owned(),
                ..OperationTally::default()
            });
        *slot(tally) += n;
    }
    by_operation.into_values().collect()
}

/// `sample` as the tally shows it: previews of `preview_bytes` (none at 0)
/// and the reason cut to [`REASON_BYTES`].
pub fn disagreement(sample: &Sample, preview_bytes: usize) -> Disagreement {
    let shown =
        |v: &serde_json::Value| (preview_bytes > 0).then(|| preview(&v.to_string(), preview_bytes));
    let reason = match &sample.error {
        Some(error) => error.clone(),
        None => sample
            .differences
            .iter()
            .map(|d| format!("{}: {}", d.path, d.reason))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Disagreement {
        operation: sample.operation.clone(),
        at: sample.at.clone(),
        verdict: sample.verdict,
        input: shown(&sample.input),
        serving: shown(&sample.serving),
        candidate: sample.candidate.as_ref().and_then(shown),
        reason: preview(&reason, REASON_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::shadow::FieldDifference;
    use serde_json::json;

    fn sample() -> Sample {
        Sample {
            operation: "score".into(),
            at: "2025-01-01T00:00:00.000Z".into(),
            verdict: Verdict::Disagree,
            input: json!({"text": "a rather long input"}),
            serving: json!({"n": 1}),
            candidate: Some(json!({"n": 2})),
            differences: vec![
                FieldDifference {
                    path: "n".into(),
                    reason: "1 != 2".into(),
                },
                FieldDifference {
                    path: "".into(),
                    reason: "whole".into(),
                },
            ],
            error: None,
        }
    }

    #[test]
    fn a_disagreement_shows_previews_and_the_differences() {
        let shown = disagreement(&sample(), 10);
        assert_eq!(shown.input.as_deref(), Some("{\"text\":\"a…"));
        assert_eq!(shown.serving.as_deref(), Some("{\"n\":1}"));
        assert_eq!(shown.candidate.as_deref(), Some("{\"n\":2}"));
        assert_eq!(shown.reason, "n: 1 != 2; : whole");
    }

    #[test]
    fn with_no_preview_bytes_no_input_or_output_is_shown() {
        let shown = disagreement(&sample(), 0);
        assert_eq!(
            (shown.input, shown.serving, shown.candidate),
            (None, None, None)
        );
    }

    #[test]
    fn an_error_is_the_reason_cut_to_its_bound() {
        let mut failed = sample();
        failed.verdict = Verdict::Error;
        failed.candidate = None;
        failed.error = Some("x".repeat(300));
        let shown = disagreement(&failed, 256);
        assert_eq!(shown.candidate, None);
        assert_eq!(shown.reason, format!("{}…", "x".repeat(REASON_BYTES)));
    }

    #[test]
    fn verdict_and_canary_counts_are_grouped_by_operation_in_name_order() {
        let counts: HashMap<String, u64> = [
            ("b:agree", 3),
            ("a:disagree", 1),
            ("a:agree", 2),
            ("a:error", 4),
            ("a:canary_routed", 7),
            ("a:canary_failed", 2),
            ("c:canary_routed", 5),
            ("c:other", 1),
            ("d:other", 1),
            ("junk", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let tallies = operation_tallies(&counts);
        assert_eq!(
            tallies,
            vec![
                OperationTally {
                    operation: "a".into(),
                    agree: 2,
                    disagree: 1,
                    error: 4,
                    canary_routed: 7,
                    canary_failed: 2,
                },
                OperationTally {
                    operation: "b".into(),
                    agree: 3,
                    ..OperationTally::default()
                },
                // Only canary counts: still shown, with no samples.
                OperationTally {
                    operation: "c".into(),
                    canary_routed: 5,
                    ..OperationTally::default()
                },
            ]
        );
    }
}
