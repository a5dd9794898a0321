//! Running a `.test.eol` suite against a loaded feature, in a keyspace of its
//! own: a test that writes data must not see another run's writes (replicas
//! test at the same time) nor leave keys beside the feature's real ones.

use crate::engine::{MODEL_SETTING, Runtime};
use crate::store::{RedisStore, Scope, key_prefix};
use eol_core::{Expectation, OperationPhase, Phase, TestCase, TestSuite, expect};
use serde::Serialize;
use std::time::Duration;

/// The keyspace of one run of a feature's tests: `eol:<feature>:test:<id>:`,
/// unique to the run, where the operations' code and the model's Redis tools
/// read and write; [`TestKeyspace::clear`] empties it when the run ends.
#[derive(Debug, Clone)]
pub struct TestKeyspace {
    scope: Scope,
}

impl TestKeyspace {
    /// A fresh keyspace for a run of `feature`'s tests.
    pub fn new(feature: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // The process and the instant: unique among replicas and runs.
        let id = format!("{:x}-{:x}", std::process::id(), nanos);
        Self {
            scope: Scope::new(format!("{}test:{id}:", key_prefix(feature))),
        }
    }

    /// A fresh keyspace for a shadow call of `feature`: it reads the
    /// feature's keys until it writes them, and writes only its own
    /// ([`Scope::reading_through`]).
    pub fn reading_through(feature: &str) -> Self {
        let scratch = Self::new(feature);
        Self {
            scope: Scope::reading_through(scratch.scope.prefix().to_owned(), key_prefix(feature)),
        }
    }

    /// Where the run's keys are.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Deletes the run's keys. A failure only costs a warning: the keys stay
    /// under a prefix no feature call ever reads.
    pub async fn clear(&self, store: &RedisStore) {
        match store.clear(&self.scope).await {
            Ok(n) => tracing::debug!(
                prefix = self.scope.prefix(),
                keys = n,
                "test keyspace cleared"
            ),
            Err(error) => {
                tracing::warn!(prefix = self.scope.prefix(), %error, "the test keyspace could not be cleared")
            }
        }
    }
}

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The output met the expectation.
    Passed,
    /// It did not, or the call failed.
    Failed,
    /// The case is limited to a phase this run does not use for its operation.
    Skipped,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case's title.
    pub title: String,
    /// The operation it called.
    pub operation: String,
    /// The phase the operation ran in.
    pub phase: OperationPhase,
    /// How it ended.
    pub verdict: Verdict,
    /// Wall-clock time of the call.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The output, when the call succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Model tokens the call used (prompt plus completion), when it ran on a model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Totals for a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases that did not run in this phase.
    pub skipped: usize,
}

impl Summary {
    /// Totals of `results`.
    pub fn of(results: &[CaseResult]) -> Self {
        let count = |v| results.iter().filter(|r| r.verdict == v).count();
        Self {
            passed: count(Verdict::Passed),
            failed: count(Verdict::Failed),
            skipped: count(Verdict::Skipped),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// Runs one case in `keyspace`.
pub async fn run_case(
    runtime: &Runtime,
    keyspace: &TestKeyspace,
    case: &TestCase,
    phase: Option<Phase>,
) -> CaseResult {
    let op_phase = runtime
        .effective_phase(&case.operation, phase)
        .unwrap_or(OperationPhase::Prototyping);
    let mut result = CaseResult {
        title: case.title.clone(),
        operation: case.operation.clone(),
        phase: op_phase,
        verdict: Verdict::Failed,
        duration: Duration::ZERO,
        reason: None,
        output: None,
        tokens: None,
    };
    if let Some(only) = case.phase
        && only != op_phase
    {
        result.verdict = Verdict::Skipped;
        result.reason = Some(format!("runs in the {only} phase only"));
        return result;
    }
    match runtime
        .execute_in(keyspace.scope(), &case.operation, &case.input, phase)
        .await
    {
        Err(e) => result.reason = Some(e.to_string()),
        Ok(exec) => {
            result.duration = exec.duration;
            result.tokens = exec.trace.as_ref().map(|t| t.spend.usage.total());
            match &case.expect {
                Expectation::Values(expected) => {
                    let mismatches = expect::check(expected, &exec.output);
                    if mismatches.is_empty() {
                        result.verdict = Verdict::Passed;
                    } else {
                        result.reason = Some(
                            mismatches
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; "),
                        );
                    }
                }
                Expectation::Judged(sentence) => match (
                    runtime.model(),
                    runtime.feature().operation(&case.operation),
                ) {
                    (Some(model), Some(op)) => {
                        match model.judge(op, sentence, &case.input, &exec.output).await {
                            Ok((true, _)) => result.verdict = Verdict::Passed,
                            Ok((false, why)) => {
                                result.reason =
                                    Some(format!("the model judged \"{sentence}\" not met: {why}"))
                            }
                            Err(e) => {
                                result.reason = Some(format!(
                                    "the expectation \"{sentence}\" could not be judged: {e}"
                                ))
                            }
                        }
                    }
                    _ => {
                        result.reason = Some(format!(
                            "the expectation \"{sentence}\" is judged by a model, but no model is configured: set {MODEL_SETTING}"
                        ));
                    }
                },
            }
            result.output = Some(exec.output);
        }
    }
    result
}

/// Which operations have tests and which have code.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageRow {
    /// The operation.
    pub operation: String,
    /// The phase it runs in.
    pub phase: OperationPhase,
    /// How many cases call it.
    pub tests: usize,
    /// Whether it has a Python implementation.
    pub has_code: bool,
}

/// Coverage of `suite` over the runtime's feature.
pub fn coverage(runtime: &Runtime, suite: &TestSuite) -> Vec<CoverageRow> {
    runtime
        .feature()
        .operations
        .iter()
        .map(|op| CoverageRow {
            operation: op.name.clone(),
            phase: op.phase,
            tests: suite
                .cases
                .iter()
                .filter(|c| c.operation == op.name)
                .count(),
            has_code: op.code.is_some(),
        })
        .collect()
}
