//! Embeddings from an OpenAI-compatible API (`POST {base_url}/embeddings`):
//! OpenAI itself, or a local server such as llama.cpp started with embeddings on.

use crate::embed::l2_normalize;
use crate::{EmbedError, Embedder};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where and how to call the API.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API root, e.g. `https://api.openai.com/v1` (without `/embeddings`).
    pub base_url: String,
    /// The model name sent in each request; also the embedder's model id.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// The expected vector length; learned from the first answer when `None`.
    pub dimension: Option<usize>,
    /// Limit on each request, connection included.
    pub timeout: Duration,
    /// Texts sent in one request; larger batches are split (OpenAI accepts up to 2048).
    pub max_inputs_per_request: usize,
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url`, no key, dimension learned, 60 s timeout.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dimension: None,
            timeout: Duration::from_secs(60),
            max_inputs_per_request: 256,
        }
    }
}

/// An [`Embedder`] over an OpenAI-compatible `/embeddings` endpoint.
///
/// Vectors come back in input order (by the `index` field of each answer),
/// are checked to all have the configured dimension (or the one of the first
/// answer when none was configured) and are L2-normalised.
///
/// Two accommodations for local servers: an empty text is sent as one space
/// (OpenAI and llama.cpp both refuse empty inputs), and an answer of one vector
/// per token — what llama-cpp-python returns for a model without a pooling
/// layer — is mean-pooled into one vector.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    /// 0 until known.
    dimension: AtomicUsize,
    max_inputs_per_request: usize,
}

#[derive(serde::Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(serde::Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    index: usize,
    embedding: Embedding,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Embedding {
    Pooled(Vec<f32>),
    PerToken(Vec<Vec<f32>>),
}

impl Embedding {
    /// One vector: per-token vectors are averaged (empty if they differ in length).
    fn pooled(self) -> Vec<f32> {
        match self {
            Embedding::Pooled(v) => v,
            Embedding::PerToken(tokens) => {
                let width = tokens.first().map_or(0, Vec::len);
                if tokens.iter().any(|t| t.len() != width) {
                    return Vec::new();
                }
                let mut mean = vec![0.0f32; width];
                for t in &tokens {
                    for (m, x) in mean.iter_mut().zip(t) {
                        *m += x;
                    }
                }
                let n = tokens.len() as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                mean
            }
        }
    }
}

impl OpenAiEmbedder {
    /// An embedder for `config` (no request is made until the first embed).
    pub fn new(config: OpenAiConfig) -> Result<Self, EmbedError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| EmbedError::Model {
                model: config.model.clone(),
                message: format!("failed to build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            url: format!("{}/embeddings", config.base_url.trim_end_matches('/')),
            model: config.model,
            api_key: config.api_key,
            dimension: AtomicUsize::new(config.dimension.unwrap_or(0)),
            max_inputs_per_request: config.max_inputs_per_request.max(1),
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn failed(&self, message: String) -> EmbedError {
        EmbedError::Failed {
            model: self.model.clone(),
            message: format!("POST {}: {message}", self.url),
        }
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let input: Vec<String> = texts
            .iter()
            .map(|t| {
                if t.is_empty() {
                    " ".to_string()
                } else {
                    t.clone()
                }
            })
            .collect();
        let mut request = self.client.post(&self.url).json(&Request {
            model: &self.model,
            input: &input,
        });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.failed(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(500).collect();
            return Err(self.failed(format!("status {status}: {body}")));
        }
        let body: Response = response
            .json()
            .await
            .map_err(|e| self.failed(format!("status {status}, unreadable answer: {e}")))?;
        self.order_and_check(texts.len(), body.data)
    }

    fn order_and_check(
        &self,
        expected: usize,
        data: Vec<Item>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if data.len() != expected {
            return Err(self.failed(format!("{} embeddings for {expected} inputs", data.len())));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in data {
            let slot = out
                .get_mut(item.index)
                .ok_or_else(|| self.failed(format!("index {} out of range", item.index)))?;
            if slot.is_some() {
                return Err(self.failed(format!("index {} answered twice", item.index)));
            }
            *slot = Some(item.embedding.pooled());
        }
        let mut vectors: Vec<Vec<f32>> = out.into_iter().flatten().collect();
        for v in &mut vectors {
            let known = match self.dimension.compare_exchange(
                0,
                v.len(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => v.len(),
                Err(known) => known,
            };
            if v.is_empty() || v.len() != known {
                return Err(self.failed(format!(
                    "a vector of {} dimensions where {known} are expected",
                    v.len()
                )));
            }
            l2_normalize(v);
        }
        Ok(vectors)
    }
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    /// The configured dimension, or the one learned from the first answer; 0 before that.
    fn dimension(&self) -> usize {
        self.dimension.load(Ordering::Acquire)
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(self.max_inputs_per_request) {
                out.extend(self.request(chunk).await?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedder(dimension: Option<usize>) -> OpenAiEmbedder {
        let mut config = OpenAiConfig::new("http://127.0.0.1:1/v1/", "m");
        config.dimension = dimension;
        OpenAiEmbedder::new(config).expect("client")
    }

    fn item(index: usize, embedding: Vec<f32>) -> Item {
        Item {
            index,
            embedding: Embedding::Pooled(embedding),
        }
    }

    #[test]
    fn per_token_answers_are_mean_pooled() {
        let body = r#"{"data":[{"index":0,"embedding":[[1.0,0.0],[5.0,8.0]]},{"index":1,"embedding":[0.5,0.5]}]}"#;
        let r: Response = serde_json::from_str(body).expect("parse");
        let v = embedder(None).order_and_check(2, r.data).expect("valid");
        assert_eq!(v[0], vec![0.6, 0.8]);
        assert!((v[1][0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn answers_are_put_back_in_input_order_and_normalised() {
        let e = embedder(None);
        assert_eq!(e.url(), "http://127.0.0.1:1/v1/embeddings");
        let v = e
            .order_and_check(2, vec![item(1, vec![0.0, 2.0]), item(0, vec![3.0, 4.0])])
            .expect("valid");
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(e.dimension(), 2);
    }

    #[test]
    fn a_dimension_that_differs_from_the_configured_or_learned_one_is_an_error() {
        let e = embedder(Some(3));
        let err = e
            .order_and_check(1, vec![item(0, vec![1.0, 0.0])])
            .expect_err("mismatch");
        assert!(err.to_string().contains("2 dimensions where 3"), "{err}");
        let e = embedder(None);
        let err = e
            .order_and_check(2, vec![item(0, vec![1.0, 0.0]), item(1, vec![1.0])])
            .expect_err("mismatch");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }

    #[test]
    fn missing_or_duplicated_indexes_are_errors() {
        let e = embedder(None);
        assert!(e.order_and_check(2, vec![item(0, vec![1.0])]).is_err());
        assert!(
            e.order_and_check(2, vec![item(0, vec![1.0]), item(0, vec![1.0])])
                .is_err()
        );
        assert!(
            e.order_and_check(2, vec![item(0, vec![1.0]), item(5, vec![1.0])])
                .is_err()
        );
    }
}
