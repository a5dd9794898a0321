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

use crate::llm::ChatClient;
use crate::prototype::{ContextDoc, PromptContext, Prototyper};
use crate::store::RedisStore;
use eol_core::{Feature, Operation};
use eol_vector::context::{
    Chunker, Compression, ContextIndex, DEFAULT_VERSION_IDLE, SummarizeError, Summarizer,
};
use eol_vector::embed::local::MiniLm;
use eol_vector::embed::openai::{OpenAiConfig, OpenAiEmbedder};
use eol_vector::embed_cache::{EmbeddingsCache, EmbeddingsCacheConfig};
use eol_vector::results::{ResultCache, canonical_json, sha256_hex};
use eol_vector::semantic::{CallContext, Lookup, PreparedInput, SemanticCache, SemanticSettings};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a cache part that failed to start (Redis down, no model) is left
/// off before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// `off` turns embeddings (and so the semantic cache and vector context) off.
pub const EMBEDDINGS_ENV: &str = "EOL_EMBEDDINGS";
/// An OpenAI-compatible API for embeddings instead of the local model.
pub const EMBEDDING_URL_ENV: &str = "EOL_EMBEDDING_BASE_URL";
/// The model name sent to [`EMBEDDING_URL_ENV`].
pub const EMBEDDING_MODEL_ENV: &str = "EOL_EMBEDDING_MODEL";
/// The API key for [`EMBEDDING_URL_ENV`].
pub const EMBEDDING_KEY_ENV: &str = "EOL_EMBEDDING_API_KEY";
/// A file holding the API key for [`EMBEDDING_URL_ENV`] (how runner pods get it:
/// a mounted Secret, never an environment value). [`EMBEDDING_KEY_ENV`] wins when both are set.
pub const EMBEDDING_KEY_FILE_ENV: &str = "EOL_EMBEDDING_API_KEY_FILE";

/// The API key for `model` from `env` (a lookup, so tests need not touch the
/// process environment): [`EMBEDDING_KEY_ENV`], else the trimmed contents of
/// the file [`EMBEDDING_KEY_FILE_ENV`] names; an unreadable file is an error
/// naming it.
pub fn embedding_api_key(
    env: &dyn Fn(&str) -> Option<String>,
    model: &str,
) -> Result<Option<String>, EmbedError> {
    if let Some(key) = env(EMBEDDING_KEY_ENV) {
        return Ok(Some(key));
    }
    let Some(path) = env(EMBEDDING_KEY_FILE_ENV) else {
        return Ok(None);
    };
    std::fs::read_to_string(&path)
        .map(|key| Some(key.trim().to_owned()))
        .map_err(|e| EmbedError::Model {
            model: model.to_owned(),
            message: format!(
                "failed to read the API key file {EMBEDDING_KEY_FILE_ENV}={path}: {e}"
            ),
        })
}

/// The embedder the environment asks for: an OpenAI-compatible API when
/// [`EMBEDDING_URL_ENV`] is set, else the local all-MiniLM-L6-v2; `Ok(None)`
/// when [`EMBEDDINGS_ENV`] is `off`.
pub async fn embedder_from_env() -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    if std::env::var(EMBEDDINGS_ENV).is_ok_and(|v| v == "off") {
        return Ok(None);
    }
    if let Ok(url) = std::env::var(EMBEDDING_URL_ENV) {
        let model = std::env::var(EMBEDDING_MODEL_ENV).unwrap_or_else(|_| "default".into());
        let api_key = embedding_api_key(&|name| std::env::var(name).ok(), &model)?;
        let mut config = OpenAiConfig::new(url, model);
        config.api_key = api_key;
        let embedder = OpenAiEmbedder::new(config)?;
        // The index schema needs the dimension before the first real text.
        embedder.embed(&["dimension probe".to_owned()]).await?;
        return Ok(Some(Arc::new(embedder)));
    }
    let model = tokio::task::spawn_blocking(MiniLm::from_env)
        .await
        .map_err(|e| EmbedError::Model {
            model: "all-MiniLM-L6-v2".into(),
            message: e.to_string(),
        })??;
    Ok(Some(Arc::new(model)))
}

/// Makes an embedder; `Ok(None)` means embeddings are turned off.
pub type EmbedderFactory = Arc<
    dyn Fn() -> BoxFuture<'static, Result<Option<Arc<dyn Embedder>>, EmbedError>> + Send + Sync,
>;

/// Where the caches get their embedder.
#[derive(Clone, Default)]
pub enum EmbedderSource {
    /// No embeddings: no semantic cache, context ranked by shared words.
    #[default]
    Off,
    /// This embedder.
    Ready(Arc<dyn Embedder>),
    /// Made on the first prototyped call that needs it and, when that fails
    /// (an embeddings API not up yet, say), again after [`RETRY_AFTER`]: a pod
    /// started before its embeddings server gets its caches once the server is up.
    Retry(EmbedderFactory),
}

impl EmbedderSource {
    /// [`embedder_from_env`], retried.
    pub fn from_env() -> Self {
        Self::Retry(Arc::new(|| Box::pin(embedder_from_env())))
    }
}

impl From<Option<Arc<dyn Embedder>>> for EmbedderSource {
    fn from(embedder: Option<Arc<dyn Embedder>>) -> Self {
        embedder.map_or(Self::Off, Self::Ready)
    }
}

/// What [`FeatureCaches::semantic_lookup`] found.
#[derive(Debug)]
pub enum SemanticLookup {
    /// A stored answer to reuse.
    Hit(Value, CacheHit),
    /// Nothing to reuse; the input as embedded for the lookup, to store the
    /// model's answer under (`None` when the cache is off or could not embed it).
    Miss(Option<PreparedInput>),
}

/// How a call was served from a cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheHit {
    /// `semantic` or `result`.
    pub kind: &'static str,
    /// The embedding distance of the reused input (semantic hits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
}

/// The parts that need embeddings: started on the first prototyped call.
struct VectorParts {
    semantic: Option<SemanticCache>,
    context: Option<ContextIndex>,
    embeddings: Option<Arc<EmbeddingsCache>>,
    /// The version of the feature's context this runner synced (its scope and
    /// chunk count), once it has.
    synced: tokio::sync::Mutex<Option<(String, usize)>>,
}

/// A part started once, or the reason it is off and when to try again.
struct Lazy<T> {
    state: tokio::sync::Mutex<Option<Arc<T>>>,
    failed: Mutex<Option<(String, Instant)>>,
    retry_after: Duration,
}

impl<T> Lazy<T> {
    fn new(retry_after: Duration) -> Self {
        Self {
            state: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
            retry_after,
        }
    }

    /// The part, started with `start` if it is not yet and did not fail recently.
    async fn get<F, Fut>(&self, what: &str, feature: &str, start: F) -> Option<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut state = self.state.lock().await;
        if let Some(part) = state.as_ref() {
            return Some(part.clone());
        }
        if let Ok(failed) = self.failed.lock()
            && let Some((_, at)) = failed.as_ref()
            && at.elapsed() < self.retry_after
        {
            return None;
        }
        match start().await {
            Ok(part) => {
                let part = Arc::new(part);
                *state = Some(part.clone());
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = None;
                }
                Some(part)
            }
            Err(why) => {
                tracing::warn!(
                    feature,
                    "{what} off for now (tried again in {}s): {why}",
                    self.retry_after.as_secs()
                );
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = Some((why, Instant::now()));
                }
                None
            }
        }
    }

    fn ready(&self) -> Option<Arc<T>> {
        self.state.try_lock().ok().and_then(|s| s.clone())
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|(why, _)| why.clone()))
    }
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

    fn semantic_on(&self) -> bool {
        self.settings.as_ref().is_some_and(|c| c.enabled)
    }

    fn embeddings_on(&self) -> bool {
        self.settings
            .as_ref()
            .and_then(|c| c.embeddings)
            .unwrap_or(true)
    }

    fn results_for(&self, operation: &str) -> bool {
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

    async fn vector_parts(&self) -> Option<Arc<VectorParts>> {
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
            let settings = SemanticSettings::from_frontmatter(
                true,
                c.and_then(|c| c.distance_threshold),
                c.and_then(|c| c.ttl),
            )
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

    async fn result_cache(&self, operation: &str) -> Option<Arc<ResultCache>> {
        if !self.results_for(operation) {
            return None;
        }
        let ttl = self
            .settings
            .as_ref()
            .and_then(|c| c.ttl)
            .map(Duration::from_secs);
        self.results
            .get("result cache", &self.feature, || async {
                let conn = self.store.connection().await.map_err(|e| e.to_string())?;
                Ok(ResultCache::new(conn, ttl))
            })
            .await
    }

    /// The stored output of `code` on `input`, when `operation` is result-cached.
    pub async fn result_lookup(
        &self,
        operation: &str,
        code: &str,
        input: &Value,
    ) -> Option<(Value, CacheHit)> {
        let cache = self.result_cache(operation).await?;
        match cache.get(&self.feature, code, input).await {
            Ok(Some(output)) => Some((
                output,
                CacheHit {
                    kind: "result",
                    distance: None,
                },
            )),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(feature = %self.feature, operation, %error, "result cache lookup failed; running the code");
                None
            }
        }
    }

    /// Keeps `output` of `code` on `input`, when `operation` is result-cached.
    pub async fn result_store(&self, operation: &str, code: &str, input: &Value, output: &Value) {
        let Some(cache) = self.result_cache(operation).await else {
            return;
        };
        if let Err(error) = cache.put(&self.feature, code, input, output).await {
            tracing::warn!(feature = %self.feature, operation, %error, "failed to keep the result");
        }
    }

    /// Lookups so far by cache type: (type, hits, misses).
    pub fn counts(&self) -> Vec<(&'static str, u64, u64)> {
        let mut counts = Vec::new();
        if let Some(parts) = self.vector.ready() {
            if let Some(s) = &parts.semantic {
                let s = s.stats();
                counts.push(("semantic", s.hit, s.miss_distance + s.miss_guard));
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

/// `eol_cache_hits_total{type,hit}`: the caches' own counters, read at each scrape.
#[derive(Debug)]
pub struct CacheMetrics(pub Arc<FeatureCaches>);

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.counts();
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cache_hits",
            "Cache lookups by type (semantic, embedding, result) and outcome",
            None,
            probe.metric_type(),
        )?;
        for (kind, hits, misses) in counts {
            for (hit, n) in [("true", hits), ("false", misses)] {
                let labels = crate::metrics::CacheLabels {
                    r#type: kind.to_owned(),
                    hit: hit.to_owned(),
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_embedding_api_key_is_read_from_its_file_and_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("api-key");
        std::fs::write(&file, "sk-embed\n").expect("write the key");
        let path = file.display().to_string();
        let key = embedding_api_key(&lookup(&[(EMBEDDING_KEY_FILE_ENV, path.clone())]), "m")
            .expect("readable");
        assert_eq!(key.as_deref(), Some("sk-embed"));
        // The variable itself wins, as for the model key.
        let key = embedding_api_key(
            &lookup(&[
                (EMBEDDING_KEY_ENV, "sk-env".to_owned()),
                (EMBEDDING_KEY_FILE_ENV, path),
            ]),
            "m",
        )
        .expect("set");
        assert_eq!(key.as_deref(), Some("sk-env"));
        assert_eq!(embedding_api_key(&lookup(&[]), "m").expect("none"), None);
    }

    #[test]
    fn an_unreadable_embedding_api_key_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("api-key").display().to_string();
        let error = embedding_api_key(
            &lookup(&[(EMBEDDING_KEY_FILE_ENV, missing.clone())]),
            "text-embed",
        )
        .expect_err("missing file");
        let message = error.to_string();
        assert!(message.contains(&missing), "{message}");
        assert!(message.contains(EMBEDDING_KEY_FILE_ENV), "{message}");
        assert!(message.contains("text-embed"), "{message}");
    }
}
