//! The result cache calls: outputs of deterministic implementation calls, by
//! the hash of code and input, for the operations the `cache:` block lists.

use super::{CacheHit, FeatureCaches};
use eol_vector::results::ResultCache;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

impl FeatureCaches {
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
}
