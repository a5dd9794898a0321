//! The semantic cache calls: a stored prototyped answer for an input that
//! means the same, and keeping the model's answer for later lookups.

use super::vector::VectorParts;
use super::{CacheHit, FeatureCaches};
use eol_vector::semantic::{CallContext, Lookup, PreparedInput};
use serde_json::Value;
use std::sync::Arc;

/// What [`FeatureCaches::semantic_lookup`] found.
#[derive(Debug)]
pub enum SemanticLookup {
    /// A stored answer to reuse.
    Hit(Value, CacheHit),
    /// Nothing to reuse; the input as embedded for the lookup, to store the
    /// model's answer under (`None` when the cache is off or could not embed it).
    Miss(Option<PreparedInput>),
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
    async fn semantic_parts(&self) -> Option<Arc<VectorParts>> {
        if !self.semantic_on() {
            return None;
        }
        self.vector_parts().await
    }

    /// A stored answer of `op` for an input that means the same as `input`; on a
    /// miss, the input embedded for [`semantic_store`](Self::semantic_store).
    pub async fn semantic_lookup(&self, op: &str, model: &str, input: &Value) -> SemanticLookup {
        let Some(parts) = self.semantic_parts().await else {
            return SemanticLookup::Miss(None);
        };
        let Some(cache) = parts.semantic.as_ref() else {
            return SemanticLookup::Miss(None);
        };
        let ctx = self.call_context(op, model);
        let prepared = match cache.prepare(input).await {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation = op, %error, "semantic cache lookup failed; calling the model");
                return SemanticLookup::Miss(None);
            }
        };
        match cache.lookup_prepared(&ctx, &prepared).await {
            Ok(Lookup::Hit {
                answer, distance, ..
            }) => SemanticLookup::Hit(
                answer,
                CacheHit {
                    kind: "semantic",
                    // Float rounding can put an identical input a hair below 0.
                    distance: Some(distance.max(0.0)),
                },
            ),
            Ok(Lookup::Miss(why)) => {
                tracing::debug!(feature = %self.feature, operation = op, ?why, "semantic cache miss");
                SemanticLookup::Miss(Some(prepared))
            }
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation = op, %error, "semantic cache lookup failed; calling the model");
                SemanticLookup::Miss(Some(prepared))
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
