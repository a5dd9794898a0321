//! Shadow comparison (`eol compare`, `eol generate --min-agreement`): recorded
//! prototype examples are replayed through the operation's implementation and
//! each output is compared with the prototype's under the operation's
//! `Compare:` rule ([`eol_core::compare`]). This module settles what core
//! leaves open: free text by embedding distance (or, with no embedder, by
//! normalised text, and says so) and the `judge` rule by the model.

use crate::engine::{MODEL_SETTING, Runtime};
use crate::examples::ExamplesError;
use crate::testing::TestKeyspace;
use eol_core::compare::{self, CompareRule, Difference};
use eol_core::{Operation, Phase};
use eol_vector::Embedder;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// A recorded prototype call: the input and the output the prototype gave.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Example {
    /// The operation's input.
    pub input: Value,
    /// The prototype's validated output.
    pub output: Value,
    /// Where it was read, when that is worth printing (`examples.jsonl:3`).
    #[serde(skip)]
    pub origin: Option<String>,
}

impl Example {
    /// An example from a recorded entry (`{"input": ..., "output": ...}`), if it is one.
    pub fn from_entry(entry: &Value) -> Option<Self> {
        Some(Self {
            input: entry.get("input")?.clone(),
            output: entry.get("output")?.clone(),
            origin: None,
        })
    }
}

/// How free-text fields are compared by meaning.
#[derive(Clone)]
pub enum TextComparer {
    /// By the cosine distance of their embeddings.
    Embeddings(Arc<dyn Embedder>),
    /// Offline fallback: equal after case, punctuation and spacing are set
    /// aside; `reason` says why there is no embedder (printed with the results).
    Normalized {
        /// Why no embedder is used.
        reason: String,
    },
}

impl std::fmt::Debug for TextComparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TextComparer {
    /// The embedder the environment configures, or the normalised-text
    /// fallback with the reason there is none.
    pub async fn from_env() -> Self {
        match crate::caches::embedder_from_env().await {
            Ok(Some(embedder)) => Self::Embeddings(embedder),
            Ok(None) => Self::Normalized {
                reason: format!("embeddings are off ({}=off)", crate::caches::EMBEDDINGS_ENV),
            },
            Err(e) => Self::Normalized {
                reason: format!("no embedding model could be loaded: {e}"),
            },
        }
    }

    /// One line saying how free text is compared.
    pub fn describe(&self) -> String {
        match self {
            Self::Embeddings(e) => format!(
                "free text compared by embedding distance ({})",
                e.model_id()
            ),
            Self::Normalized { reason } => format!(
                "free text compared as normalized text (case, punctuation and spacing ignored), not by meaning: {reason}"
            ),
        }
    }

    /// Whether the texts of `check` agree, or the reason they do not.
    async fn settle(&self, check: &compare::TextCheck, max_distance: f64) -> Result<(), String> {
        if let Self::Embeddings(embedder) = self {
            let texts = [check.expected.clone(), check.actual.clone()];
            match embedder.embed(&texts).await {
                Ok(v) if v.len() == 2 => {
                    // The vectors are L2-normalised: the cosine is their dot product.
                    let cosine: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
                    let distance = 1.0 - f64::from(cosine);
                    if distance > max_distance {
                        return Err(format!(
                            "texts differ in meaning: embedding distance {distance:.3} > {max_distance}"
                        ));
                    }
                    // Measured with all-MiniLM-L6-v2: "ships on Monday" / "on Friday"
                    // are 0.097 apart, closer than real paraphrases (0.07-0.09 and
                    // more), so the semantic cache's guard on names, numbers and
                    // negation has the last word.
                    let (a, b) = (
                        Value::String(check.expected.clone()),
                        Value::String(check.actual.clone()),
                    );
                    return match eol_vector::semantic::guard(&a, &b, &[]) {
                        Ok(()) => Ok(()),
                        Err(f) => Err(format!(
                            "texts differ in meaning: {} (embedding distance {distance:.3})",
                            f.reason
                        )),
                    };
                }
                Ok(_) => {
                    tracing::warn!(
                        "the embedder returned the wrong number of vectors; comparing as normalized text"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "embedding failed; comparing as normalized text");
                }
            }
            return if check.normalized_equal() {
                Ok(())
            } else {
                Err("texts differ (compared as normalized text: the embedder failed)".into())
            };
        }
        if check.normalized_equal() {
            Ok(())
        } else {
            Err("texts differ (compared as normalized text: no embedding model)".into())
        }
    }
}

/// How one replayed example ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Agreement {
    /// The implementation's output agrees with the prototype's.
    Agree,
    /// It does not.
    Disagree,
    /// The implementation failed (raised, timed out, broke its Output schema).
    Error,
}

/// One replayed example.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleResult {
    /// The operation.
    pub operation: String,
    /// 1-based position among the operation's examples (newest first for recorded ones).
    pub index: usize,
    /// Where the example was read (a JSONL file's line), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The input.
    pub input: Value,
    /// The prototype's output.
    pub prototype: Value,
    /// The implementation's output, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Value>,
    /// How it ended.
    pub verdict: Agreement,
    /// The fields that differ (under `judge`: one entry with the model's reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    /// Why the implementation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The counts of one operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// The operation.
    pub operation: String,
    /// Examples that agree.
    pub agree: usize,
    /// Examples that disagree.
    pub disagree: usize,
    /// Examples on which the implementation failed.
    pub error: usize,
}

impl Tally {
    /// The counts of `operation` in `results`.
    pub fn of(operation: &str, results: &[ExampleResult]) -> Self {
        let count = |v| {
            results
                .iter()
                .filter(|r| r.operation == operation && r.verdict == v)
                .count()
        };
        Self {
            operation: operation.to_owned(),
            agree: count(Agreement::Agree),
            disagree: count(Agreement::Disagree),
            error: count(Agreement::Error),
        }
    }

    /// How many examples were replayed.
    pub fn total(&self) -> usize {
        self.agree + self.disagree + self.error
    }

    /// The share that agrees, in percent (`None` without examples).
    pub fn agreement(&self) -> Option<f64> {
        (self.total() > 0).then(|| 100.0 * self.agree as f64 / self.total() as f64)
    }
}

/// The totals over several operations.
pub fn overall(tallies: &[Tally]) -> Tally {
    tallies.iter().fold(
        Tally {
            operation: "all".into(),
            ..Tally::default()
        },
        |mut t, x| {
            t.agree += x.agree;
            t.disagree += x.disagree;
            t.error += x.error;
            t
        },
    )
}

/// Why a comparison cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The named operation does not exist.
    #[error("feature '{feature}' has no operation '{operation}' (it has: {known})")]
    UnknownOperation {
        /// The feature.
        feature: String,
        /// What was asked for.
        operation: String,
        /// The operations it has.
        known: String,
    },
    /// The operation has no implementation to replay examples through.
    #[error(
        "operation '{operation}' of feature '{feature}' has no Python implementation to compare with its prototype: write or generate its code first"
    )]
    NoCode {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
    },
    /// No operation of the feature has code.
    #[error(
        "feature '{0}' has no operation with a Python implementation, so there is nothing to compare"
    )]
    NothingImplemented(String),
    /// A `judge` rule with no model configured.
    #[error(
        "operation '{operation}' is compared by 'judge' (its Compare block), which needs a model: set {MODEL_SETTING}"
    )]
    NoJudge {
        /// The operation.
        operation: String,
    },
    /// The recorded examples could not be read.
    #[error(transparent)]
    Examples(#[from] ExamplesError),
}

/// The operations to compare: `only`, or every operation with code.
pub fn targets<'f>(
    runtime: &'f Runtime,
    only: Option<&str>,
) -> Result<Vec<&'f Operation>, CompareError> {
    let feature = runtime.feature();
    let ops: Vec<&Operation> = match only {
        Some(name) => {
            let op = feature
                .operation(name)
                .ok_or_else(|| CompareError::UnknownOperation {
                    feature: feature.name().to_owned(),
                    operation: name.to_owned(),
                    known: feature.operation_names().join(", "),
                })?;
            if op.code.is_none() {
                return Err(CompareError::NoCode {
                    feature: feature.name().to_owned(),
                    operation: name.to_owned(),
                });
            }
            vec![op]
        }
        None => feature
            .operations
            .iter()
            .filter(|o| o.code.is_some())
            .collect(),
    };
    if ops.is_empty() {
        return Err(CompareError::NothingImplemented(feature.name().to_owned()));
    }
    for op in &ops {
        if op.compare.as_ref().is_some_and(|r| r.judge.is_some()) && runtime.model().is_none() {
            return Err(CompareError::NoJudge {
                operation: op.name.clone(),
            });
        }
    }
    Ok(ops)
}

/// The recorded examples of `operation` in Redis, newest first (at most `limit`).
pub async fn recorded(
    runtime: &Runtime,
    operation: &str,
    limit: usize,
) -> Result<Vec<Example>, CompareError> {
    let limit = isize::try_from(limit).unwrap_or(isize::MAX);
    Ok(runtime
        .examples(operation, limit)
        .await?
        .iter()
        .filter_map(Example::from_entry)
        .collect())
}

/// Replays `examples` of `op` through its implementation and compares each
/// output with the prototype's. The calls run in a keyspace of their own (as
/// tests do), so a replay never writes beside the feature's real data.
pub async fn replay(
    runtime: &Runtime,
    op: &Operation,
    examples: &[Example],
    texts: &TextComparer,
) -> Vec<ExampleResult> {
    let keyspace = TestKeyspace::new(runtime.feature().name());
    let mut results = Vec::with_capacity(examples.len());
    for (i, example) in examples.iter().enumerate() {
        let mut result = ExampleResult {
            operation: op.name.clone(),
            index: i + 1,
            origin: example.origin.clone(),
            input: example.input.clone(),
            prototype: example.output.clone(),
            implementation: None,
            verdict: Agreement::Error,
            differences: Vec::new(),
            error: None,
        };
        match runtime
            .execute_in(
                keyspace.scope(),
                &op.name,
                &example.input,
                Some(Phase::Implementation),
            )
            .await
        {
            Err(e) => result.error = Some(e.to_string()),
            Ok(exec) => {
                match differences(
                    runtime,
                    op,
                    &example.input,
                    &example.output,
                    &exec.output,
                    texts,
                )
                .await
                {
                    Ok(diffs) => {
                        result.verdict = if diffs.is_empty() {
                            Agreement::Agree
                        } else {
                            Agreement::Disagree
                        };
                        result.differences = diffs;
                    }
                    Err(e) => result.error = Some(e),
                }
                result.implementation = Some(exec.output);
            }
        }
        results.push(result);
    }
    keyspace.clear(runtime.store()).await;
    results
}

/// Every difference between `expected` (the reference output for `input`:
/// the prototype's, or the serving pod's in a shadow) and `actual`, under
/// `op`'s `Compare:` rule (the default rule without one), with free text and
/// the judge settled; Err when the judge could not answer.
pub async fn differences(
    runtime: &Runtime,
    op: &Operation,
    input: &Value,
    expected: &Value,
    actual: &Value,
    texts: &TextComparer,
) -> Result<Vec<Difference>, String> {
    let default_rule = CompareRule::default();
    let rule = op.compare.as_ref().unwrap_or(&default_rule);
    let found = compare::compare(rule, &op.output.value, expected, actual);
    let mut diffs = found.differences;
    for check in &found.text_checks {
        if let Err(reason) = texts.settle(check, rule.max_distance()).await {
            diffs.push(check.difference(reason));
        }
    }
    if let Some(request) = found.judge {
        let Some(model) = runtime.model() else {
            return Err(CompareError::NoJudge {
                operation: op.name.clone(),
            }
            .to_string());
        };
        let criterion = if request.criterion.is_empty() {
            "they give the same answer".to_owned()
        } else {
            request.criterion.clone()
        };
        let sentence = format!(
            "The output agrees with this reference output, which a trusted version gave for the same input: {}. They agree when: {criterion}.",
            request.expected
        );
        match model.judge(op, &sentence, input, &request.actual).await {
            Ok((true, _)) => {}
            Ok((false, why)) => diffs.push(Difference {
                path: String::new(),
                expected: request.expected,
                actual: request.actual,
                reason: format!("the model judged they disagree: {why}"),
            }),
            Err(e) => return Err(format!("the model could not judge the outputs: {e}")),
        }
    }
    Ok(diffs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(op: &str, verdict: Agreement) -> ExampleResult {
        ExampleResult {
            operation: op.into(),
            index: 1,
            origin: None,
            input: json!({}),
            prototype: json!({}),
            implementation: None,
            verdict,
            differences: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn tallies_count_each_verdict_and_errors_do_not_agree() {
        let results = [
            result("a", Agreement::Agree),
            result("a", Agreement::Disagree),
            result("a", Agreement::Error),
            result("a", Agreement::Agree),
            result("b", Agreement::Agree),
        ];
        let a = Tally::of("a", &results);
        assert_eq!((a.agree, a.disagree, a.error), (2, 1, 1));
        assert_eq!(a.agreement(), Some(50.0));
        assert_eq!(Tally::of("c", &results).agreement(), None);
        let all = overall(&[a, Tally::of("b", &results)]);
        assert_eq!(all.agreement(), Some(60.0));
    }

    /// Embeds "a..." texts along one axis and others along another.
    struct TwoAxes;

    impl Embedder for TwoAxes {
        fn model_id(&self) -> &str {
            "two-axes"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> futures::future::BoxFuture<'a, Result<Vec<Vec<f32>>, eol_vector::EmbedError>> {
            let v = texts
                .iter()
                .map(|t| {
                    if t.starts_with('a') {
                        vec![1.0, 0.0]
                    } else {
                        vec![0.6, 0.8]
                    }
                })
                .collect();
            Box::pin(async move { Ok(v) })
        }
    }

    #[tokio::test]
    async fn with_an_embedder_free_text_agrees_within_the_distance() {
        let texts = TextComparer::Embeddings(Arc::new(TwoAxes));
        assert!(texts.describe().contains("embedding distance (two-axes)"));
        let near = compare::TextCheck {
            path: "summary".into(),
            expected: "a crash".into(),
            actual: "an app crash".into(),
        };
        assert_eq!(texts.settle(&near, 0.15).await, Ok(()));
        // cos = 0.6: distance 0.4.
        let far = compare::TextCheck {
            expected: "a crash happens at start".into(),
            actual: "the crash happens at start".into(),
            ..near
        };
        let reason = texts.settle(&far, 0.15).await.err().unwrap_or_default();
        assert_eq!(
            reason,
            "texts differ in meaning: embedding distance 0.400 > 0.15"
        );
        assert_eq!(texts.settle(&far, 0.5).await, Ok(()));
        // Close embeddings, different names: the guard refuses.
        let names = compare::TextCheck {
            path: "summary".into(),
            expected: "a parcel ships on Monday".into(),
            actual: "a parcel ships on Friday".into(),
        };
        let reason = texts.settle(&names, 0.15).await.err().unwrap_or_default();
        assert!(
            reason.starts_with("texts differ in meaning: entities differ")
                && reason.ends_with("(embedding distance 0.000)"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn without_an_embedder_free_text_is_compared_as_normalized_text_and_says_so() {
        let texts = TextComparer::Normalized {
            reason: "embeddings are off".into(),
        };
        assert!(
            texts
                .describe()
                .contains("not by meaning: embeddings are off")
        );
        let check = compare::TextCheck {
            path: "summary".into(),
            expected: "It crashes.".into(),
            actual: "It fails to start.".into(),
        };
        let reason = texts.settle(&check, 0.15).await.err().unwrap_or_default();
        assert!(reason.contains("no embedding model"), "{reason}");
    }
}
