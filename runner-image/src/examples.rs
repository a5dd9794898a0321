//! Recorded examples of prototyped calls: each operation's newest inputs and
//! validated outputs, kept in Redis as the list `eol:<feature>:examples:<op>`
//! (newest first, bounded), for code generation and phase comparison.

use crate::store::{RedisStore, StoreError, key_prefix};
use serde_json::{Value, json};

/// How many recorded examples are kept per operation.
pub const EXAMPLES_KEPT: isize = 100;

/// The Redis key (before the feature prefix) holding an operation's recorded examples.
pub fn examples_key(operation: &str) -> String {
    format!("examples:{operation}")
}

/// Why recorded examples could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    /// Redis could not be reached.
    #[error("failed to reach Redis for the examples of operation '{operation}': {source}")]
    Store {
        /// The operation.
        operation: String,
        /// Why Redis could not be reached.
        #[source]
        source: StoreError,
    },
    /// Redis refused or failed the command.
    #[error("failed to {action} the examples of operation '{operation}' at {key}: {source}")]
    Command {
        /// What was being done: `record` or `read`.
        action: &'static str,
        /// The operation.
        operation: String,
        /// The list's full key.
        key: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
}

/// The recorded examples of one feature's operations, on its store.
#[derive(Debug, Clone, Copy)]
pub struct RecordedExamples<'a> {
    store: &'a RedisStore,
    feature: &'a str,
}

impl<'a> RecordedExamples<'a> {
    /// The examples of `feature`'s operations, kept in `store`.
    pub fn new(store: &'a RedisStore, feature: &'a str) -> Self {
        Self { store, feature }
    }

    /// The full Redis key of `operation`'s recorded examples.
    pub fn key(&self, operation: &str) -> String {
        format!("{}{}", key_prefix(self.feature), examples_key(operation))
    }

    /// Keeps a prototyped call's input and validated output (newest first, at
    /// most [`EXAMPLES_KEPT`]). Recording never fails the call: a Redis problem
    /// is logged.
    pub async fn record(&self, operation: &str, input: &Value, output: &Value) {
        if let Err(error) = self.push(operation, input, output).await {
            tracing::warn!(%error, feature = %self.feature, operation, "failed to record a prototyped call as an example");
        }
    }

    async fn push(
        &self,
        operation: &str,
        input: &Value,
        output: &Value,
    ) -> Result<(), ExamplesError> {
        let key = self.key(operation);
        let entry = json!({ "input": input, "output": output }).to_string();
        let mut conn = self.connection(operation).await?;
        redis::pipe()
            .lpush(&key, entry)
            .ltrim(&key, 0, EXAMPLES_KEPT - 1)
            .query_async::<()>(&mut conn)
            .await
            .map_err(command_failed("record", operation, key))
    }

    /// The recorded examples of `operation`, newest first (at most `limit`);
    /// entries that are not JSON are passed over.
    pub async fn recent(&self, operation: &str, limit: isize) -> Result<Vec<Value>, ExamplesError> {
        let key = self.key(operation);
        let mut conn = self.connection(operation).await?;
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(limit - 1)
            .query_async(&mut conn)
            .await
            .map_err(command_failed("read", operation, key))?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    async fn connection(
        &self,
        operation: &str,
    ) -> Result<redis::aio::ConnectionManager, ExamplesError> {
        self.store
            .connection()
            .await
            .map_err(|source| ExamplesError::Store {
                operation: operation.to_owned(),
                source,
            })
    }
}

/// The error of a failed command on `operation`'s list at `key`.
fn command_failed(
    action: &'static str,
    operation: &str,
    key: String,
) -> impl FnOnce(redis::RedisError) -> ExamplesError {
    let operation = operation.to_owned();
    move |source| ExamplesError::Command {
        action,
        operation,
        key,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_live_under_the_feature_prefix() {
        let store = RedisStore::new(None);
        let examples = RecordedExamples::new(&store, "triage");
        assert_eq!(examples.key("classify"), "eol:triage:examples:classify");
        assert_eq!(examples_key("classify"), "examples:classify");
    }
}
