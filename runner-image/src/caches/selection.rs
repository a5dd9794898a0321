//! The context of a prototyped call, chosen by the vector index from the
//! feature's prose and documents, synced once per runner (and again when the
//! version was collected while the runner was idle).

use super::FeatureCaches;
use super::vector::VectorParts;
use crate::prototype::PromptContext;
use eol_core::Operation;
use eol_vector::context::{ContextIndex, DEFAULT_VERSION_IDLE};
use eol_vector::results::canonical_json;
use serde_json::Value;

impl FeatureCaches {
    /// The context for a prototyped call of `op` on `input` in `budget` tokens,
    /// chosen by the vector index; `None` when it is off or failed (the caller
    /// then ranks by shared words).
    pub async fn context(
        &self,
        op: &Operation,
        input: &Value,
        budget: usize,
    ) -> Option<PromptContext<'static>> {
        let parts = self.vector_parts().await?;
        let index = parts.context.as_ref()?;
        let query = format!("{}\n{}", op.spec, canonical_json(input));
        let mut again = false;
        loop {
            let (scope, chunks) = match self.synced_version(&parts, index, again).await {
                Ok(synced) => synced,
                Err(error) => {
                    tracing::warn!(feature = %self.feature, %error, "context indexing failed; ranking context by shared words");
                    return None;
                }
            };
            match index.select(&scope, &query, budget).await {
                // The version was collected while this runner was idle: sync it again, once.
                Ok(selection) if selection.indexed == 0 && chunks > 0 && !again => again = true,
                Ok(selection) => {
                    return Some(PromptContext::Selected {
                        text: selection.render(),
                        note: selection.note,
                    });
                }
                Err(error) => {
                    tracing::warn!(feature = %self.feature, %error, "context selection failed; ranking context by shared words");
                    return None;
                }
            }
        }
    }

    /// The scope and chunk count of this runner's version of the context,
    /// synced on first use or when `again`.
    async fn synced_version(
        &self,
        parts: &VectorParts,
        index: &ContextIndex,
        again: bool,
    ) -> Result<(String, usize), eol_vector::context::ContextError> {
        let mut synced = parts.synced.lock().await;
        if let Some(done) = synced.as_ref().filter(|_| !again) {
            return Ok(done.clone());
        }
        let done = index
            .sync_version(&self.feature, &self.docs, DEFAULT_VERSION_IDLE)
            .await?;
        let report = done.report;
        tracing::info!(feature = %self.feature, scope = %done.scope, added = report.added, kept = report.kept, removed = report.removed, collected = done.collected, "context indexed");
        let value = (done.scope, report.added + report.kept);
        *synced = Some(value.clone());
        Ok(value)
    }
}
