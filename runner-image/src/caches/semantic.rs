//! The semantic cache calls: a stored prototyped answer for an input that
//! means the same, keeping the model's answer for later lookups, and (with
//! `cache.semantic.max_error_rate`) the verdicts that bound its errors.

use super::vector::VectorParts;
use super::{CacheHit, FeatureCaches};
use eol_vector::semantic::{CallContext, Candidate, Lookup, MissReason, PreparedInput};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What [`FeatureCaches::semantic_lookup`] found.
#[derive(Debug)]
pub enum SemanticLookup {
    /// A stored answer to reuse, and the check drawn for it (error bound).
    Hit(Value, CacheHit, Option<SemanticCheck>),
    /// Nothing to reuse; the input as embedded for the lookup, to store the
    /// model's answer under (`None` when the cache is off or could not embed
    /// it), and an unproven candidate to compare the model's answer with.
    Miss(Option<PreparedInput>, Option<SemanticCheck>),
}

/// Where a verdict on a cached answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSource {
    /// A candidate beyond the proven distance: the model answered the call.
    Unproven,
    /// A reused answer drawn for a check: the model answers off the response path.
    Sampled,
}

impl CheckSource {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unproven => "unproven",
            Self::Sampled => "sampled",
        }
    }
}

/// A cached answer to compare with the model's answer for a new input; the
/// verdict is recorded by [`FeatureCaches::semantic_verdict`].
#[derive(Debug, Clone)]
pub struct SemanticCheck {
    /// The operation.
    pub operation: String,
    /// The model the entry is of.
    pub model: String,
    /// The new input.
    pub input: Value,
    /// The entry and its distance from the new input.
    pub candidate: Candidate,
    /// The model's answer for the new input, once there is one.
    pub fresh: Option<Value>,
    /// Where it comes from.
    pub source: CheckSource,
}

/// Verdicts recorded: `[source][agree]`.
#[derive(Debug, Default)]
pub(super) struct VerdictCounts([[AtomicU64; 2]; 2]);

impl VerdictCounts {
    fn add(&self, source: CheckSource, agree: bool) {
        self.0[source as usize][usize::from(agree)].fetch_add(1, Ordering::Relaxed);
    }

    /// (source, verdict, count) for the metrics.
    pub(super) fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for source in [CheckSource::Unproven, CheckSource::Sampled] {
            for (agree, verdict) in [(true, "agree"), (false, "disagree")] {
                let n = self.0[source as usize][usize::from(agree)].load(Ordering::Relaxed);
                out.push((source.as_str(), verdict, n));
            }
        }
        out
    }
}

impl FeatureCaches {
    fn call_context(&self, op: &str, model: &str) -> CallContext {
        let exact = self
            .settings
            .as_ref()
            .map(|c| c.exact.clone())
            .unwrap_or_default();
        CallContext::new(&self.feature, op, "prototyping", model, &self.source_hash).exact(exact)
    }

    /// The started vector parts, when the `cache:` block turns the semantic cache on.
    pub(super) async fn semantic_parts(&self) -> Option<Arc<VectorParts>> {
        if !self.semantic_on() {
            return None;
        }
        self.vector_parts().await
    }

    /// A stored answer of `op` for an input that means the same as `input`; on a
    /// miss, the input embedded for [`semantic_store`](Self::semantic_store).
    pub async fn semantic_lookup(&self, op: &str, model: &str, input: &Value) -> SemanticLookup {
        let Some(parts) = self.semantic_parts().await else {
            return SemanticLookup::Miss(None, None);
        };
        let Some(cache) = parts.semantic.as_ref() else {
            return SemanticLookup::Miss(None, None);
        };
        let ctx = self.call_context(op, model);
        let prepared = match cache.prepare(input).await {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation = op, %error, "semantic cache lookup failed; calling the model");
                return SemanticLookup::Miss(None, None);
            }
        };
        let check = |candidate: Candidate, source: CheckSource| SemanticCheck {
            operation: op.to_owned(),
            model: model.to_owned(),
            input: input.clone(),
            candidate,
            fresh: None,
            source,
        };
        match cache.lookup_prepared(&ctx, &prepared).await {
            Ok(Lookup::Hit {
                answer,
                distance,
                key,
                check: drawn,
            }) => {
                let checked = drawn.then(|| {
                    check(
                        Candidate {
                            key,
                            distance,
                            answer: answer.clone(),
                        },
                        CheckSource::Sampled,
                    )
                });
                SemanticLookup::Hit(
                    answer,
                    CacheHit {
                        kind: "semantic",
                        // Float rounding can put an identical input a hair below 0.
                        distance: Some(distance.max(0.0)),
                    },
                    checked,
                )
            }
            Ok(Lookup::Miss(MissReason::Unproven {
                candidate,
                threshold,
            })) => {
                tracing::debug!(feature = %self.feature, operation = op, distance = candidate.distance, threshold, "semantic cache: a candidate beyond the proven distance; the model answers and is compared with it");
                SemanticLookup::Miss(
                    Some(prepared),
                    Some(check(candidate, CheckSource::Unproven)),
                )
            }
            Ok(Lookup::Miss(why)) => {
                tracing::debug!(feature = %self.feature, operation = op, ?why, "semantic cache miss");
                SemanticLookup::Miss(Some(prepared), None)
            }
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation = op, %error, "semantic cache lookup failed; calling the model");
                SemanticLookup::Miss(Some(prepared), None)
            }
        }
    }

    /// Records whether `check`'s cached answer agreed with the model's.
    pub async fn semantic_verdict(&self, check: &SemanticCheck, agree: bool) {
        let Some(parts) = self.semantic_parts().await else {
            return;
        };
        let Some(cache) = parts.semantic.as_ref() else {
            return;
        };
        let ctx = self.call_context(&check.operation, &check.model);
        let c = &check.candidate;
        match cache.record_verdict(&ctx, &c.key, c.distance, agree).await {
            Ok(()) => {
                self.verdicts.add(check.source, agree);
                tracing::info!(feature = %self.feature, operation = %check.operation, distance = c.distance, agree, source = check.source.as_str(), "semantic cache verdict");
            }
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation = %check.operation, %error, "failed to record a semantic cache verdict");
            }
        }
    }

    /// Keeps the model's `answer` of `op` for later lookups; `prepared` is the input
    /// [`semantic_lookup`](Self::semantic_lookup) embedded (nothing is kept without it:
    /// the cache is off, or the input could not be embedded).
    pub async fn semantic_store(
        &self,
        op: &str,
        model: &str,
        prepared: Option<&PreparedInput>,
        answer: &Value,
    ) {
        let Some(prepared) = prepared else {
            return;
        };
        let Some(parts) = self.semantic_parts().await else {
            return;
        };
        let Some(cache) = parts.semantic.as_ref() else {
            return;
        };
        let ctx = self.call_context(op, model);
        if let Err(error) = cache.store_prepared(&ctx, prepared, answer).await {
            tracing::warn!(feature = %self.feature, operation = op, %error, "failed to keep the answer in the semantic cache");
        }
    }
}
