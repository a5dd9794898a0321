//! The embedder the environment asks for: the local all-MiniLM-L6-v2, an
//! OpenAI-compatible embeddings API, or none; and where the caches get it
//! ([`EmbedderSource`]), made at once or on the first call that needs it.

use eol_core::runner_contract::env as vars;
use eol_vector::embed::local::MiniLm;
use eol_vector::embed::openai::{OpenAiConfig, OpenAiEmbedder};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;
use std::sync::Arc;

/// `off` turns embeddings (and so the semantic cache and vector context) off.
pub const EMBEDDINGS_ENV: &str = vars::EMBEDDINGS;
/// An OpenAI-compatible API for embeddings instead of the local model.
pub const EMBEDDING_URL_ENV: &str = vars::EMBEDDING_BASE_URL;
/// The model name sent to [`EMBEDDING_URL_ENV`].
pub const EMBEDDING_MODEL_ENV: &str = vars::EMBEDDING_MODEL;
/// The API key for [`EMBEDDING_URL_ENV`].
pub const EMBEDDING_KEY_ENV: &str = vars::EMBEDDING_API_KEY;
/// A file holding the API key for [`EMBEDDING_URL_ENV`] (how runner pods get it:
/// a mounted Secret, never an environment value). [`EMBEDDING_KEY_ENV`] wins when both are set.
pub const EMBEDDING_KEY_FILE_ENV: &str = vars::EMBEDDING_API_KEY_FILE;

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
    if std::env::var(EMBEDDINGS_ENV).is_ok_and(|v| v == vars::EMBEDDINGS_OFF) {
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
    /// (an embeddings API not up yet, say), again after [`RETRY_AFTER`](super::RETRY_AFTER): a pod
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
