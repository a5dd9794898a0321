//! The context manager: a feature's prose and referenced documents, chunked
//! along their Markdown structure, embedded and indexed per feature, and for
//! each prototyped call the chunks most relevant to the call that fit a token
//! budget, with the rest compressed.
//!
//! - [`Chunker`] splits a document into [`Chunk`]s: a heading starts a chunk;
//!   paragraphs (a fenced code block counts as one) are packed whole into
//!   chunks of at most [`DEFAULT_MAX_CHUNK_TOKENS`] tokens; a longer paragraph
//!   is split at sentence ends (a code block at line ends), a longer sentence
//!   between words. Only a single "word" (no whitespace) longer than the
//!   maximum on its own is cut, at a character boundary. Every chunk records
//!   its document, heading path, ordinal, text, token count and a sha256 hash
//!   of (document, heading path, text).
//! - [`TokenCounter`] counts tokens: [`EstimateCounter`] estimates without a
//!   model, [`TokenizerCounter`] uses a model's own `tokenizers` tokenizer.
//! - [`ContextIndex::sync`] keeps a feature's chunks in a RediSearch index
//!   (HASH documents tagged `feature`, `doc`, `hash`; the embedder's
//!   dimension), embedding only chunks whose hash is new and deleting chunks
//!   that disappeared; the feature's chunk hashes are kept in a Redis set.
//!   [`ContextIndex::sync_version`] does it under a version of the feature
//!   named by its chunks, so that runners with different documents (both sides
//!   of a rollout) keep apart, and deletes versions no runner selected from
//!   for an hour.
//! - [`ContextIndex::select`] picks chunks by relevance to a query (KNN within
//!   the feature) while they fit the budget, compresses the remainder
//!   ([`Compression`]: first sentences, or a model summary) into what is
//!   left, and returns them in document order with a note of what was dropped.
//!   The total never exceeds the budget.
//!
//! The `tokens` module counts tokens, `chunk` makes the chunks and `select`
//! chooses and compresses the context of a call; this module owns the index
//! ([`ContextIndex`]: opening, keys, sync, versions), its schema and errors.

mod chunk;
mod select;
mod tokens;

pub use chunk::{Chunk, Chunker, DEFAULT_MAX_CHUNK_TOKENS, DecodedChunks, chunk_hash};
pub use select::{
    Compression, MAX_CANDIDATES, Remainder, SUMMARY_INPUT_TOKENS, SelectedChunk, Selection,
    SummarizeError, Summarizer,
};
pub use tokens::{EstimateCounter, TokenCounter, TokenizerCounter};

use std::collections::HashSet;
use std::sync::Arc;

use redis::aio::ConnectionManager;

use crate::digest::sha256_hex;
use crate::index::{
    Document, FieldAttrs, FieldSpec, FieldType, IndexError, IndexInfo, IndexSchema, SchemaError,
    VectorIndex,
};
use crate::{EmbedError, Embedder};

/// The share of the budget (percent) kept for the compressed remainder when
/// not every relevant chunk fits.
pub const DEFAULT_REMAINDER_PERCENT: usize = 15;
/// A chunk and the position of its document in the synced list.
type Placed = (usize, Chunk);
/// Separates a feature from its version in a scope (feature names have no `@`).
const VERSION_MARK: char = '@';
/// How long a version of a feature's context may go without a selection
/// before another version's [`ContextIndex::sync_version`] deletes it.
pub const DEFAULT_VERSION_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Texts per call to the embedder during [`ContextIndex::sync`].
const EMBED_BATCH: usize = 64;

/// Why indexing or selecting context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The index schema is invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Embedding chunks or the query failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A Redis command failed.
    #[error("context index: cannot {action}: {source}")]
    Redis {
        /// What was being done.
        action: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// The tokenizer could not be loaded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// `<feature>@<hash of the chunks' hashes>`: the scope of one version of its context.
fn scope_of(feature: &str, chunks: &[Placed]) -> String {
    let mut hashes: Vec<&str> = chunks.iter().map(|(_, c)| c.hash.as_str()).collect();
    hashes.sort_unstable();
    let version = &sha256_hex(&hashes.join(","))[..12];
    format!("{feature}{VERSION_MARK}{version}")
}

/// Seconds since the Unix epoch (the score of a version's last use).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn redis_err(action: &str) -> impl FnOnce(redis::RedisError) -> ContextError + '_ {
    move |source| ContextError::Redis {
        action: action.to_owned(),
        source,
    }
}

/// A document to index: a feature's prose or a referenced document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDoc {
    /// What it is referenced as (e.g. `prose`, `docs/refund-policy.md`, `feature:analytics`).
    pub name: String,
    /// Its text.
    pub text: String,
}

impl ContextDoc {
    /// A document.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// What [`ContextIndex::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Chunks embedded and stored (new hashes, or stored ones that had vanished).
    pub added: usize,
    /// Chunks already stored, not embedded again.
    pub kept: usize,
    /// Stored chunks no longer in the documents, deleted.
    pub removed: usize,
}

/// What [`ContextIndex::sync_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSync {
    /// The version's scope, to select from.
    pub scope: String,
    /// The sync of the version's chunks.
    pub report: SyncReport,
    /// Chunks of idle versions (and unversioned ones) deleted.
    pub collected: usize,
}

/// The schema of the context index `name` for vectors of `dims` dimensions:
/// tags `feature`, `doc`, `hash`, `embedder` (case-sensitive); numeric `doc_index`,
/// `ordinal`, `tokens`; the HNSW cosine vector `embedding`. The `text` and
/// `heading` (a JSON array) fields are stored but not indexed.
pub fn context_schema(name: &str, dims: usize) -> IndexSchema {
    let field = |n: &str, kind: FieldType, attrs: FieldAttrs| FieldSpec {
        name: n.to_owned(),
        kind,
        attrs,
    };
    let tag = FieldAttrs {
        case_sensitive: Some(true),
        ..FieldAttrs::default()
    };
    IndexSchema {
        index: IndexInfo {
            name: name.to_owned(),
            prefix: format!("eol:{name}"),
            key_separator: ":".into(),
            storage_type: "hash".into(),
        },
        fields: vec![
            field("feature", FieldType::Tag, tag.clone()),
            field("doc", FieldType::Tag, tag.clone()),
            field("hash", FieldType::Tag, tag.clone()),
            field("embedder", FieldType::Tag, tag),
            field("doc_index", FieldType::Numeric, FieldAttrs::default()),
            field("ordinal", FieldType::Numeric, FieldAttrs::default()),
            field("tokens", FieldType::Numeric, FieldAttrs::default()),
            field(
                "embedding",
                FieldType::Vector,
                FieldAttrs {
                    algorithm: Some("hnsw".into()),
                    dims: Some(dims as i64),
                    distance_metric: Some("cosine".into()),
                    datatype: Some("float32".into()),
                    m: Some(16),
                    ef_construction: Some(200),
                    ef_runtime: Some(50),
                    ..FieldAttrs::default()
                },
            ),
        ],
    }
}

/// A feature's chunks in a RediSearch index (`eol-context-<dims>` by default),
/// kept in step with its documents, and the selection of context for a call.
pub struct ContextIndex {
    index: VectorIndex,
    embedder: Arc<dyn Embedder>,
    chunker: Chunker,
    compression: Compression,
    remainder_percent: usize,
    model_tag: String,
}

impl std::fmt::Debug for ContextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextIndex")
            .field("index", &self.index)
            .field("embedder", &self.embedder.model_id())
            .field("chunker", &self.chunker)
            .field("compression", &self.compression)
            .finish()
    }
}

impl ContextIndex {
    /// Opens (creating or recreating) the index `eol-context-<dims>`.
    pub async fn new(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        chunker: Chunker,
    ) -> Result<Self, ContextError> {
        Self::with_index_name(conn, embedder, chunker, "eol-context").await
    }

    /// Opens the index `<base>-<dims>`.
    pub async fn with_index_name(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        chunker: Chunker,
        base: &str,
    ) -> Result<Self, ContextError> {
        // Chunks can always be re-embedded from the documents: a schema change may drop the index.
        let index = VectorIndex::open_recreatable::<ContextError>(
            conn,
            embedder.as_ref(),
            base,
            context_schema,
        )
        .await?;
        let model_tag = sha256_hex(embedder.model_id())[..12].to_owned();
        Ok(Self {
            index,
            embedder,
            chunker,
            model_tag,
            compression: Compression::Truncate,
            remainder_percent: DEFAULT_REMAINDER_PERCENT,
        })
    }

    /// Sets how the chunks that do not fit are compressed.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the share of the budget (percent, at most 100) kept for the
    /// compressed remainder when not every chunk fits.
    pub fn with_remainder_percent(mut self, percent: usize) -> Self {
        self.remainder_percent = percent.min(100);
        self
    }

    /// The underlying vector index.
    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The Redis set of the hashes of `feature`'s chunks stored with this
    /// index's embedder (`<index>:hashes:<model id>:<feature>`).
    pub fn hashes_key(&self, feature: &str) -> String {
        format!(
            "{}:hashes:{}:{feature}",
            self.index.name(),
            self.embedder.model_id()
        )
    }

    /// The Redis key of the chunk of `feature` with `hash`, embedded by this
    /// index's embedder: `<prefix>:<feature>:<model tag>:<hash>`, the model tag
    /// being the first 12 hex digits of the sha256 of the model id.
    pub fn chunk_key(&self, feature: &str, hash: &str) -> String {
        self.index.schema().key(&self.id(feature, hash))
    }

    fn id(&self, feature: &str, hash: &str) -> String {
        format!("{feature}:{}:{hash}", &self.model_tag)
    }

    /// Makes the stored chunks of `feature` those of `docs` (in this order):
    /// chunks with a new hash are embedded and stored, stored ones are kept
    /// (their positions updated), stored ones not in `docs` are deleted.
    pub async fn sync(
        &self,
        feature: &str,
        docs: &[ContextDoc],
    ) -> Result<SyncReport, ContextError> {
        self.sync_placed(feature, self.placed(docs)).await
    }

    /// The distinct chunks of `docs`, each with its document's position.
    fn placed(&self, docs: &[ContextDoc]) -> Vec<Placed> {
        let mut chunks: Vec<Placed> = Vec::new();
        let mut seen = HashSet::new();
        for (d, doc) in docs.iter().enumerate() {
            for chunk in self.chunker.chunk(&doc.name, &doc.text) {
                if seen.insert(chunk.hash.clone()) {
                    chunks.push((d, chunk));
                }
            }
        }
        chunks
    }

    /// [`Self::sync`] of chunks already made.
    async fn sync_placed(
        &self,
        feature: &str,
        chunks: Vec<Placed>,
    ) -> Result<SyncReport, ContextError> {
        let mut conn = self.index.connection();
        let set = self.hashes_key(feature);
        let stored: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read the feature's chunk hashes"))?;
        // Chunks listed but gone (deleted by hand, evicted) are embedded again.
        let listed: Vec<&Placed> = chunks
            .iter()
            .filter(|(_, c)| stored.contains(&c.hash))
            .collect();
        let mut present = HashSet::new();
        if !listed.is_empty() {
            let mut pipe = redis::pipe();
            for (_, c) in &listed {
                pipe.cmd("EXISTS").arg(self.chunk_key(feature, &c.hash));
            }
            let exists: Vec<bool> = pipe
                .query_async(&mut conn)
                .await
                .map_err(redis_err("check the stored chunks"))?;
            for ((_, c), e) in listed.iter().zip(exists) {
                if e {
                    present.insert(c.hash.clone());
                }
            }
        }
        let (kept, new): (Vec<&Placed>, Vec<&Placed>) =
            chunks.iter().partition(|(_, c)| present.contains(&c.hash));
        for batch in new.chunks(EMBED_BATCH) {
            let texts: Vec<String> = batch.iter().map(|(_, c)| c.embedding_text()).collect();
            let vectors = self.embedder.embed(&texts).await?;
            let documents: Vec<Document> = batch
                .iter()
                .zip(vectors)
                .map(|((d, c), v)| {
                    Document::new(self.id(feature, &c.hash))
                        .text("feature", feature)
                        .text("embedder", self.embedder.model_id())
                        .text("doc", c.doc.clone())
                        .text("hash", c.hash.clone())
                        .text(
                            "heading",
                            serde_json::to_string(&c.heading_path).unwrap_or_default(),
                        )
                        .text("text", c.text.clone())
                        .number("doc_index", *d as f64)
                        .number("ordinal", c.ordinal as f64)
                        .number("tokens", c.tokens as f64)
                        .vector("embedding", v)
                })
                .collect();
            self.index.load(&documents).await?;
            let mut sadd = redis::cmd("SADD");
            sadd.arg(&set);
            for (_, c) in batch {
                sadd.arg(&c.hash);
            }
            let _: () = sadd
                .query_async(&mut conn)
                .await
                .map_err(redis_err("record the chunk hashes"))?;
        }
        if !kept.is_empty() {
            let mut pipe = redis::pipe();
            for (d, c) in &kept {
                pipe.cmd("HSET")
                    .arg(self.chunk_key(feature, &c.hash))
                    .arg("doc_index")
                    .arg(*d)
                    .arg("ordinal")
                    .arg(c.ordinal)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("update the positions of kept chunks"))?;
        }
        let current: HashSet<&str> = chunks.iter().map(|(_, c)| c.hash.as_str()).collect();
        let gone: Vec<&String> = stored
            .iter()
            .filter(|h| !current.contains(h.as_str()))
            .collect();
        if !gone.is_empty() {
            let mut pipe = redis::pipe();
            for batch in gone.chunks(500) {
                let mut del = redis::cmd("DEL");
                let mut srem = redis::cmd("SREM");
                srem.arg(&set);
                for h in batch {
                    del.arg(self.chunk_key(feature, h));
                    srem.arg(h.as_str());
                }
                pipe.add_command(del).ignore();
                pipe.add_command(srem).ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("delete the chunks that disappeared"))?;
        }
        let report = SyncReport {
            added: new.len(),
            kept: kept.len(),
            removed: gone.len(),
        };
        tracing::debug!(feature, ?report, "synced the feature's context");
        Ok(report)
    }

    /// Deletes every stored chunk of `feature`; returns how many.
    pub async fn remove_feature(&self, feature: &str) -> Result<usize, ContextError> {
        self.sync(feature, &[]).await.map(|r| r.removed)
    }

    /// The Redis sorted set of the versions of `feature`'s context, scored by
    /// when a runner last selected from them (`<index>:versions:<model id>:<feature>`).
    pub fn versions_key(&self, feature: &str) -> String {
        format!(
            "{}:versions:{}:{feature}",
            self.index.name(),
            self.embedder.model_id()
        )
    }

    /// The name one version of `feature`'s context is kept under:
    /// `<feature>@<hash of its chunks>`.
    pub fn version_scope(&self, feature: &str, docs: &[ContextDoc]) -> String {
        scope_of(feature, &self.placed(docs))
    }

    /// Syncs `docs` under their own version of `feature` ([`Self::version_scope`];
    /// select from the scope returned), so that runners with other documents (both
    /// sides of a rollout, or of a rollback) never delete or see each other's
    /// chunks. Marks the version in use, and deletes the versions no runner has
    /// selected from for `idle` (and chunks stored unversioned, as before
    /// versions), which a runner still using one restores by syncing again.
    pub async fn sync_version(
        &self,
        feature: &str,
        docs: &[ContextDoc],
        idle: std::time::Duration,
    ) -> Result<VersionSync, ContextError> {
        let chunks = self.placed(docs);
        let scope = scope_of(feature, &chunks);
        let report = self.sync_placed(&scope, chunks).await?;
        let key = self.versions_key(feature);
        let mut conn = self.index.connection();
        let now = unix_now();
        let _: () = redis::cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&scope)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("mark the context version in use"))?;
        let idle_versions: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - idle.as_secs_f64())
            .query_async(&mut conn)
            .await
            .map_err(redis_err("list the idle context versions"))?;
        let mut collected = self.remove_feature(feature).await?;
        for old in idle_versions.iter().filter(|v| **v != scope) {
            collected += self.remove_feature(old).await?;
            let _: () = redis::cmd("ZREM")
                .arg(&key)
                .arg(old)
                .query_async(&mut conn)
                .await
                .map_err(redis_err("forget an idle context version"))?;
        }
        Ok(VersionSync {
            scope,
            report,
            collected,
        })
    }
}
