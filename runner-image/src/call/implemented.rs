//! The implemented path of one call: result-cache lookup, the operation's
//! Python in the sandbox, output validation, then the result-cache entry.

use super::{CallOutput, CallTarget};
use crate::caches::FeatureCaches;
use crate::engine::ExecError;
use crate::sandbox::WorkerPool;
use crate::store::{RedisStore, Scope};

/// One call of an operation in the implementation phase.
pub(crate) struct ImplementedCall<'a> {
    /// What is called, on which input.
    pub(crate) target: CallTarget<'a>,
    /// The `.eol` file, which a failure's line points into.
    pub(crate) file: &'a str,
    /// The sandbox workers.
    pub(crate) pool: &'a WorkerPool,
    /// The Redis the code's commands go to.
    pub(crate) store: &'a RedisStore,
    /// The keys they may touch: the feature's, or a test run's.
    pub(crate) scope: &'a Scope,
    /// The result cache.
    pub(crate) caches: &'a FeatureCaches,
    /// Whether a computed output is kept in the result cache (not for a
    /// shadow call, whose code reads a scratch keyspace).
    pub(crate) records: bool,
}

impl ImplementedCall<'_> {
    /// A cached result of the same code on the same input, else the code's
    /// validated output, cached when the operation's results are.
    pub(crate) async fn run(self) -> Result<CallOutput, ExecError> {
        let CallTarget { op, input, .. } = self.target;
        let Some(code) = &op.code else {
            return Err(ExecError::NoCode {
                feature: self.target.feature_name(),
                operation: op.name.clone(),
            });
        };
        if let Some((output, hit)) = self
            .caches
            .result_lookup(&op.name, &code.source, input)
            .await
        {
            return Ok(CallOutput::cached(self.target.checked(output)?, hit));
        }
        let bridge = self.store.bridge_in(self.scope.clone());
        let outcome = self
            .pool
            .call(&code.source, &op.name, input, &bridge)
            .await
            .map_err(|failure| {
                let file_line = failure
                    .line
                    .map(|l| (self.file.to_owned(), code.file_line(l)));
                ExecError::Sandbox {
                    feature: self.target.feature_name(),
                    operation: op.name.clone(),
                    failure: Box::new(failure),
                    file_line,
                }
            })?;
        let output = self.target.checked(outcome.value)?;
        // Only valid outputs computed now are kept (a cached one is already there).
        if self.records {
            self.caches
                .result_store(&op.name, &code.source, input, &output)
                .await;
        }
        Ok(CallOutput {
            output,
            stdout: outcome.stdout,
            trace: None,
            cache: None,
            cache_missed: self.caches.results_for(&op.name),
            semantic_check: None,
        })
    }
}
