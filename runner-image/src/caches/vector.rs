//! The parts that need embeddings, started on the first prototyped call: the
//! embeddings cache in front of the embedder, the semantic cache (emptied of the
//! feature's entries when its source changed) and the context index, which
//! summarises what does not fit with the prototyping model.

use super::{EMBEDDINGS_ENV, EmbedderSource, FeatureCaches};
use crate::llm::ChatClient;
use crate::prototype::Prototyper;
use eol_vector::Embedder;
use eol_vector::context::{Chunker, Compression, ContextIndex, SummarizeError, Summarizer};
use eol_vector::embed_cache::{EmbeddingsCache, EmbeddingsCacheConfig};
use eol_vector::semantic::{SemanticCache, SemanticSettings};
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

/// The parts that need embeddings: started on the first prototyped call.
pub(super) struct VectorParts {
    /// The semantic cache, when the `cache:` block turns it on.
    pub(super) semantic: Option<SemanticCache>,
    /// The context index.
    pub(super) context: Option<ContextIndex>,
    /// The embeddings cache, unless the `cache:` block turns it off.
    pub(super) embeddings: Option<Arc<EmbeddingsCache>>,
    /// The version of the feature's context this runner synced (its scope and
    /// chunk count), once it has.
    pub(super) synced: tokio::sync::Mutex<Option<(String, usize)>>,
}

impl FeatureCaches {
    /// The started parts; `None` when embeddings are off or the parts failed
    /// to start (tried again later).
    pub(super) async fn vector_parts(&self) -> Option<Arc<VectorParts>> {
        if matches!(self.embedder, EmbedderSource::Off) {
            return None;
        }
        self.vector
            .get(
                "vector context and semantic cache",
                &self.feature,
                || async {
                    let embedder = self.embedder().await?;
                    self.start_vector(embedder).await
                },
            )
            .await
    }

    /// The embedder, made now if the source is a factory.
    async fn embedder(&self) -> Result<Arc<dyn Embedder>, String> {
        let factory = match &self.embedder {
            EmbedderSource::Off => return Err("embeddings are off".into()),
            EmbedderSource::Ready(embedder) => return Ok(embedder.clone()),
            EmbedderSource::Retry(factory) => factory.clone(),
        };
        self.made
            .get_or_try_init(|| async move {
                match factory().await {
                    Ok(Some(embedder)) => Ok(embedder),
                    Ok(None) => Err(format!("embeddings are off ({EMBEDDINGS_ENV}=off)")),
                    Err(e) => Err(format!("no embedding model: {e}")),
                }
            })
            .await
            .cloned()
    }

    async fn start_vector(&self, embedder: Arc<dyn Embedder>) -> Result<VectorParts, String> {
        let conn = self.store.connection().await.map_err(|e| e.to_string())?;
        let embeddings = self.embeddings_on().then(|| {
            Arc::new(EmbeddingsCache::with_connection(
                embedder.clone(),
                conn.clone(),
                EmbeddingsCacheConfig::default(),
            ))
        });
        let embedder: Arc<dyn Embedder> = match &embeddings {
            Some(cache) => cache.clone(),
            None => embedder,
        };
        let semantic = if self.semantic_on() {
            let c = self.settings.as_ref();
            let bound = c.and_then(|c| c.semantic.as_ref());
            let settings = SemanticSettings::from_frontmatter(
                true,
                c.and_then(|c| c.distance_threshold),
                c.and_then(|c| c.ttl),
            )
            .and_then(|s| {
                s.bounded(
                    bound.and_then(|b| b.max_error_rate),
                    bound.and_then(|b| b.check_rate),
                )
            })
            .map_err(|e| e.to_string())?;
            let cache = SemanticCache::new(conn.clone(), embedder.clone(), settings)
                .await
                .map_err(|e| e.to_string())?;
            self.invalidate_if_changed(&cache, conn.clone()).await?;
            Some(cache)
        } else {
            None
        };
        let compression = match &self.summarizer {
            Some(model) => Compression::Summarize(Box::new(ModelSummarizer(model.clone()))),
            None => Compression::Truncate,
        };
        let context = ContextIndex::new(conn, embedder.clone(), Chunker::default())
            .await
            .map_err(|e| e.to_string())?
            .with_compression(compression);
        Ok(VectorParts {
            semantic,
            context: Some(context),
            embeddings,
            synced: tokio::sync::Mutex::new(None),
        })
    }

    /// Deletes the feature's semantic entries when its source changed since the
    /// last runner (they could never be reused: their source hash differs).
    async fn invalidate_if_changed(
        &self,
        cache: &SemanticCache,
        mut conn: redis::aio::ConnectionManager,
    ) -> Result<(), String> {
        let key = format!(
            "{}cache:semantic-source",
            crate::store::key_prefix(&self.feature)
        );
        let previous: Option<String> = redis::cmd("GETSET")
            .arg(&key)
            .arg(&self.source_hash)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("failed to read {key}: {e}"))?;
        if previous.is_some_and(|p| p != self.source_hash) {
            let n = cache
                .invalidate_feature(&self.feature)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(feature = %self.feature, deleted = n, "feature source changed: semantic cache entries deleted");
        }
        Ok(())
    }
}

/// Summarises context that does not fit with the prototyping model.
struct ModelSummarizer(Arc<Prototyper>);

impl Summarizer for ModelSummarizer {
    fn summarize<'a>(
        &'a self,
        texts: &'a [String],
        max_tokens: usize,
    ) -> BoxFuture<'a, Result<String, SummarizeError>> {
        Box::pin(async move { summarize(self.0.client(), texts, max_tokens).await })
    }
}

async fn summarize(
    client: &ChatClient,
    texts: &[String],
    max_tokens: usize,
) -> Result<String, SummarizeError> {
    let words = max_tokens * 3 / 4;
    let messages = vec![
        json!({"role": "system", "content": format!("Summarise the passages for someone who must follow them exactly: keep rules, names, numbers and limits. At most {words} words. Answer with the summary only.")}),
        json!({"role": "user", "content": texts.join("\n\n")}),
    ];
    let reply = client
        .chat(&messages, &[], None)
        .await
        .map_err(|e| SummarizeError(e.to_string()))?;
    reply
        .content
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| SummarizeError("the model gave an empty summary".into()))
}
