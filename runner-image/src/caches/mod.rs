//! The caches of a running feature and the vector context of its prototyped
//! calls, on Redis with the search module (crate `eol-vector`):
//!
//! - the **semantic cache** reuses a prototyped answer for an input that means
//!   the same (the frontmatter `cache:` block turns it on);
//! - the **embeddings cache** keeps computed vectors by text hash (`cache.embeddings`,
//!   on unless turned off);
//! - the **result cache** keeps outputs of deterministic implementation calls by
//!   the hash of code and input (`cache.results`, off unless operations are listed);
//! - the **context index** holds the feature's prose and referenced documents,
//!   chunked and embedded, and picks what fits the window for each prototyped call.
//!
//! Caches are an optimisation, never a dependency: when Redis, its search
//! module or the embedding model is missing, or fails during a call, the call
//! goes on uncached (and the context falls back to ranking by shared words).
//! The reason is logged and kept in [`FeatureCaches::status`]; a part that
//! failed to start is tried again after [`RETRY_AFTER`].
//!
//! This module owns [`FeatureCaches`]: what its `cache:` block turns on, and
//! its status and counts. The seams are its submodules: the embedder the
//! environment asks for (`embedder`), parts started once and retried (`lazy`),
//! the parts that need embeddings (`vector`), the semantic and result cache
//! calls (`semantic`, `results`), the context selection (`selection`) and the
//! metrics collector (`metrics`).

mod embedder;
mod lazy;
mod metrics;
mod results;
mod selection;
mod semantic;
mod vector;

pub use embedder::{
    EMBEDDING_KEY_ENV, EMBEDDING_KEY_FILE_ENV, EMBEDDING_MODEL_ENV, EMBEDDING_URL_ENV,
    EMBEDDINGS_ENV, EmbedderFactory, EmbedderSource, embedder_from_env, embedding_api_key,
};
pub use metrics::CacheMetrics;
pub use semantic::{CheckSource, SemanticCheck, SemanticLookup};

use crate::prototype::{ContextDoc, Prototyper};
use crate::store::RedisStore;
use eol_core::Feature;
use eol_vector::Embedder;
use eol_vector::results::{ResultCache, canonical_json, sha256_hex};
use lazy::Lazy;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vector::VectorParts;

/// How long a cache part that failed to start (Redis down, no model) is left
/// off before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a call was served from a cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheHit {
    /// `semantic` or `result`.
    pub kind: &'static str,
    /// The embedding distance of the reused input (semantic hits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
}

/// What the caches of a feature are doing, for logs, `eol run` and tests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CacheStatus {
    /// The semantic cache answers lookups.
    pub semantic: bool,
    /// The embeddings cache is in front of the embedder.
    pub embeddings: bool,
    /// The result cache is on for at least one operation.
    pub results: bool,
    /// Prototyped calls get context chosen by the vector index.
    pub vector_context: bool,
    /// Why the embedding parts are off, if they failed to start.
    pub vector_error: Option<String>,
    /// Why the result cache is off, if it failed to start.
    pub results_error: Option<String>,
}

/// The caches of one feature, configured by its `cache:` block.
pub struct FeatureCaches {
    feature: String,
    settings: Option<eol_core::CacheSettings>,
    store: Arc<RedisStore>,
    embedder: EmbedderSource,
    /// The embedder once made (kept when Redis, not the embedder, failed to start).
    made: tokio::sync::OnceCell<Arc<dyn Embedder>>,
    /// Documents for the context index: the prose, then each reference.
    docs: Vec<ContextDoc>,
    /// The hash of everything a prototyped answer depends on (prose, documents,
    /// specs and schemas), so a changed feature never reuses old answers.
    source_hash: String,
    summarizer: Option<Arc<Prototyper>>,
    vector: Lazy<VectorParts>,
    results: Lazy<ResultCache>,
    /// Verdicts on cached answers recorded (error bound).
    verdicts: semantic::VerdictCounts,
}

impl std::fmt::Debug for FeatureCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureCaches")
            .field("feature", &self.feature)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The hash of what a prototyped answer depends on: the title, prose and
/// documents, and every operation's name, spec and schemas (not phases or code).
pub fn source_hash(feature: &Feature, docs: &[ContextDoc]) -> String {
    let ops: Vec<Value> = feature
        .operations
        .iter()
        .map(|op| json!([op.name, op.spec, op.input.value, op.output.value]))
        .collect();
    let docs: Vec<Value> = docs.iter().map(|d| json!([d.name, d.text])).collect();
    sha256_hex(&canonical_json(&json!([
        feature.title,
        feature.prose,
        docs,
        ops
    ])))[..32]
        .to_owned()
}

impl FeatureCaches {
    /// The caches of `feature` on `store`, embedding with `embedder` (off:
    /// no semantic cache and no vector context). Nothing connects until a call
    /// needs it. With `model`, the context that does not fit is summarised by it.
    pub fn new(
        feature: &Feature,
        docs: &[ContextDoc],
        store: Arc<RedisStore>,
        embedder: EmbedderSource,
        model: Option<Arc<Prototyper>>,
    ) -> Self {
        let mut index_docs = vec![ContextDoc::new(
            "prose",
            format!(
                "{}{}",
                feature
                    .title
                    .as_deref()
                    .map(|t| format!("# {t}\n\n"))
                    .unwrap_or_default(),
                feature.prose
            ),
        )];
        index_docs.extend(docs.iter().cloned());
        Self {
            feature: feature.name().to_owned(),
            settings: feature.frontmatter.cache.clone(),
            store,
            embedder,
            made: tokio::sync::OnceCell::new(),
            docs: index_docs,
            source_hash: source_hash(feature, docs),
            summarizer: model,
            vector: Lazy::new(RETRY_AFTER),
            results: Lazy::new(RETRY_AFTER),
            verdicts: semantic::VerdictCounts::default(),
        }
    }

    /// Parts that failed to start are tried again after `after` instead of [`RETRY_AFTER`].
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.vector.retry_after = after;
        self.results.retry_after = after;
        self
    }

    /// The hash prototyped answers are tagged with.
    pub fn source_hash(&self) -> &str {
        &self.source_hash
    }

    pub(super) fn semantic_on(&self) -> bool {
        self.settings.as_ref().is_some_and(|c| c.enabled)
    }

    pub(super) fn embeddings_on(&self) -> bool {
        self.settings
            .as_ref()
            .and_then(|c| c.embeddings)
            .unwrap_or(true)
    }

    /// Whether the `cache:` block keeps the results of `operation`.
    pub(crate) fn results_for(&self, operation: &str) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|c| c.results.covers(operation))
    }

    /// What is on, and why a part is off.
    pub fn status(&self) -> CacheStatus {
        let vector = self.vector.ready();
        CacheStatus {
            semantic: vector.as_ref().is_some_and(|v| v.semantic.is_some()),
            embeddings: vector.as_ref().is_some_and(|v| v.embeddings.is_some()),
            results: self.results.ready().is_some(),
            vector_context: vector.as_ref().is_some_and(|v| v.context.is_some()),
            vector_error: self.vector.failure(),
            results_error: self.results.failure(),
        }
    }

    /// Lookups so far by cache type: (type, hits, misses).
    pub fn counts(&self) -> Vec<(&'static str, u64, u64)> {
        let mut counts = Vec::new();
        if let Some(parts) = self.vector.ready() {
            if let Some(s) = &parts.semantic {
                let s = s.stats();
                counts.push((
                    "semantic",
                    s.hit,
                    s.miss_distance + s.miss_guard + s.miss_bound,
                ));
            }
            if let Some(e) = &parts.embeddings {
                let e = e.counts();
                counts.push(("embedding", e.hits, e.misses));
            }
        }
        if let Some(r) = self.results.ready() {
            let r = r.stats();
            counts.push(("result", r.hits, r.misses));
        }
        counts
    }

    /// Verdicts on cached answers recorded so far: (source, verdict, count);
    /// none without `cache.semantic`.
    pub fn verdict_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let bounded = self.settings.as_ref().is_some_and(|c| c.semantic.is_some());
        if bounded {
            self.verdicts.counts()
        } else {
            Vec::new()
        }
    }

    /// The embedder of the semantic cache, once started.
    pub(crate) async fn started_embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.semantic_parts().await?;
        self.made.get().cloned()
    }
}
