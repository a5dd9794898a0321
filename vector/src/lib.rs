//! Vector search on Redis for EOL, in Rust: embeddings from a local
//! all-MiniLM-L6-v2 (candle, no Python at run time) or an OpenAI-compatible
//! `/v1/embeddings` API; vector index schemas declared in YAML (RediSearch
//! HNSW/FLAT); and the caches of the runner: semantic (prototyped calls),
//! embeddings (text hash -> vector) and results (deterministic calls).

pub mod context;
mod digest;
pub mod embed;
pub mod embed_cache;
pub mod index;
pub mod results;
pub mod semantic;

use futures::future::BoxFuture;

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model's files are missing or unreadable.
    #[error("embedding model {model}: {message}")]
    Model {
        /// The model id.
        model: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The provider failed on this input.
    #[error("embedding with {model} failed: {message}")]
    Failed {
        /// The model id.
        model: String,
        /// The cause.
        message: String,
    },
}

/// Turns texts into vectors of one fixed dimension.
pub trait Embedder: Send + Sync {
    /// A stable name of the model (part of cache keys and index metadata).
    fn model_id(&self) -> &str;
    /// The length of every vector this embedder returns.
    fn dimension(&self) -> usize;
    /// Embeds a batch: one L2-normalised vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}
