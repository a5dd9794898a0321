//! A loaded feature ([`Runtime`]) and its operation calls: the input is
//! checked, the phase picked, and the call handed to its phase's call object
//! (`call`); also why a call fails ([`ExecError`]) and the load-time
//! check of the feature's code.

use crate::caches::{CacheHit, EmbedderSource, FeatureCaches, SemanticCheck};
use crate::call::{CallTarget, ImplementedCall, OperationSchemas, PrototypedCall};
use crate::context::References;
use crate::examples::{ExamplesError, RecordedExamples};
use crate::prototype::{PrototypeError, PrototypeTrace, Prototyper, Tools};
use crate::sandbox::{CallFailure, FailureKind, WorkerPool};
use crate::spend::{Meter, Spend};
use crate::store::{RedisStore, Scope};
use eol_core::cost::OnExceeded;
use eol_core::process::otel::{OtelSpan, Parent};
use eol_core::{CompiledSchema, Diagnostic, Diagnostics, Feature, OperationPhase, Phase};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The setting that configures the model prototyped operations run on.
pub const MODEL_SETTING: &str = eol_core::runner_contract::env::LLM_BASE_URL;

/// Why an operation call failed. Every kind has a stable label ([`ExecError::kind`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No such operation.
    #[error("feature '{feature}' has no operation '{operation}' (it has: {known})")]
    UnknownOperation {
        /// The feature.
        feature: String,
        /// What was asked for.
        operation: String,
        /// The operations it has.
        known: String,
    },
    /// The input does not match the Input schema.
    #[error(
        "feature '{feature}', operation '{operation}': the input does not match the Input schema: {violations}"
    )]
    InvalidInput {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// Each violation, "path: message".
        violations: String,
    },
    /// The output does not match the Output schema.
    #[error(
        "feature '{feature}', operation '{operation}': the output does not match the Output schema: {violations} (output was {output})"
    )]
    InvalidOutput {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// Each violation, "path: message".
        violations: String,
        /// The offending output, abbreviated.
        output: String,
    },
    /// A prototyped operation was called with no model configured.
    #[error(
        "feature '{feature}', operation '{operation}' runs in the prototyping phase, but no model is configured: set {MODEL_SETTING} to an OpenAI-compatible API (e.g. http://127.0.0.1:8080/v1), or start the local model with: eval \"$(scripts/llm.sh start)\"{hint}"
    )]
    NoModel {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// Extra advice, e.g. which phase would work.
        hint: String,
    },
    /// An operation was asked to run implemented but has no code.
    #[error(
        "feature '{feature}', operation '{operation}' has no Python implementation, so it cannot run in the implementation phase"
    )]
    NoCode {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
    },
    /// The prototyped call failed.
    #[error("feature '{feature}', operation '{operation}' failed in the prototyping phase ({}): {source}", source.kind())]
    Prototype {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// What went wrong with the model.
        #[source]
        source: PrototypeError,
    },
    /// The feature's budget is spent and its `onExceeded` is `Reject` (or has no way out).
    #[error(
        "feature '{feature}', operation '{operation}': the model budget is spent ({summary}); it resets in {retry_after} s"
    )]
    BudgetExceeded {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// What was spent of what.
        summary: String,
        /// Seconds until the window ends.
        retry_after: u64,
        /// What the budget says to do instead.
        on_exceeded: eol_core::cost::OnExceeded,
    },
    /// The sandboxed call failed.
    #[error("feature '{feature}', operation '{operation}' failed ({}): {}{}", failure.kind.as_str(), failure.message, location(.file_line))]
    Sandbox {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// What happened in the sandbox (boxed: it is the largest part of the error).
        failure: Box<CallFailure>,
        /// The `.eol` line the failure points at, when known.
        file_line: Option<(String, usize)>,
    },
}

fn location(at: &Option<(String, usize)>) -> String {
    at.as_ref()
        .map(|(f, l)| format!(" (at {f}:{l})"))
        .unwrap_or_default()
}

impl ExecError {
    /// A stable label for metrics, JSON errors and exit reporting.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::UnknownOperation { .. } => "unknown_operation",
            ExecError::InvalidInput { .. } => "invalid_input",
            ExecError::InvalidOutput { .. } => "invalid_output",
            ExecError::NoModel { .. } => "no_model",
            ExecError::NoCode { .. } => "no_code",
            ExecError::BudgetExceeded { .. } => "budget_exceeded",
            ExecError::Prototype { source, .. } => source.kind(),
            ExecError::Sandbox { failure, .. } => failure.kind.as_str(),
        }
    }

    /// The sandbox failure kind, if this is one.
    pub fn sandbox_kind(&self) -> Option<FailureKind> {
        match self {
            ExecError::Sandbox { failure, .. } => Some(failure.kind),
            _ => None,
        }
    }
}

/// A successful operation call.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The validated output.
    pub output: Value,
    /// The phase it ran in.
    pub phase: OperationPhase,
    /// Wall-clock time.
    pub duration: Duration,
    /// What the code printed (implementation phase).
    pub stdout: String,
    /// Tokens, attempts and context notes (prototyping phase, when the model was called).
    pub trace: Option<PrototypeTrace>,
    /// The cache that served the output, if one did.
    pub cache: Option<CacheHit>,
    /// A cached answer to compare with the model's off the response path
    /// (`cache.semantic.max_error_rate`): hand it to
    /// [`Runtime::settle_semantic_check`] once the caller has its answer.
    pub semantic_check: Option<SemanticCheck>,
}

/// A loaded feature, ready to run operations.
pub struct Runtime {
    feature: Feature,
    file: String,
    compiled: HashMap<String, OperationSchemas>,
    pool: WorkerPool,
    store: Arc<RedisStore>,
    prototyper: Option<Arc<Prototyper>>,
    /// The model a spent budget switches to (`onExceeded: Model`).
    budget_model: Option<Arc<Prototyper>>,
    tools: Option<Arc<dyn Tools>>,
    /// Referenced documents, read once at load, and why some could not be.
    references: References,
    /// The semantic, embeddings and result caches and the vector context.
    caches: Arc<FeatureCaches>,
    /// The feature's own keys, where calls outside tests run.
    scope: Scope,
    /// Semantic cache checks running in the background (at most
    /// [`MAX_SEMANTIC_CHECKS`]; one more is dropped, never queued).
    semantic_checks: Arc<tokio::sync::Semaphore>,
}

/// Semantic cache checks one runtime runs at once in the background: each
/// may be a model call, which must not pile up under load.
pub const MAX_SEMANTIC_CHECKS: usize = 4;

impl Runtime {
    /// Loads `feature` (read from `file`): compiles its schemas and checks its code
    /// in the sandbox, reporting every problem against the `.eol` file.
    pub async fn load(
        file: &str,
        feature: Feature,
        pool: WorkerPool,
        store: Arc<RedisStore>,
    ) -> Result<Self, Diagnostics> {
        check_code(file, &feature, &pool).await?;
        let references = References::load(file, &feature);
        let mut compiled = HashMap::new();
        let mut diags = Vec::new();
        for op in &feature.operations {
            match (
                CompiledSchema::new(&op.input.value),
                CompiledSchema::new(&op.output.value),
            ) {
                (Ok(input), Ok(output)) => {
                    compiled.insert(op.name.clone(), OperationSchemas { input, output });
                }
                (Err(e), _) | (_, Err(e)) => diags.push(Diagnostic {
                    file: file.to_owned(),
                    position: op.location.0,
                    message: format!("operation '{}': schema does not compile: {e}", op.name),
                }),
            }
        }
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        let caches = Arc::new(FeatureCaches::new(
            &feature,
            &references.docs,
            store.clone(),
            EmbedderSource::Off,
            None,
        ));
        let scope = Scope::of_feature(feature.name());
        Ok(Self {
            caches,
            feature,
            file: file.to_owned(),
            compiled,
            pool,
            store,
            prototyper: None,
            budget_model: None,
            tools: None,
            references,
            scope,
            semantic_checks: Arc::new(tokio::sync::Semaphore::new(MAX_SEMANTIC_CHECKS)),
        })
    }

    /// Runs prototyped operations on `prototyper` (without one they report that no model is configured).
    pub fn with_model(mut self, prototyper: Option<Arc<Prototyper>>) -> Self {
        self.prototyper = prototyper;
        self
    }

    /// The model prototyped calls ask once the budget is spent (`onExceeded: Model`).
    pub fn with_budget_model(mut self, model: Option<Arc<Prototyper>>) -> Self {
        self.budget_model = model;
        self
    }

    /// Tools the model may call in prototyped operations (MCP servers).
    pub fn with_tools(mut self, tools: Option<Arc<dyn Tools>>) -> Self {
        self.tools = tools;
        self
    }

    /// Caches and vector context embedding with `embedder` (none: only the
    /// result cache), with summaries of left-over context by the model set by
    /// [`Self::with_model`] (call that first).
    pub fn with_caches(self, embedder: impl Into<EmbedderSource>) -> Self {
        self.with_caches_retrying(embedder, crate::caches::RETRY_AFTER)
    }

    /// [`Self::with_caches`], trying a part that failed to start again after `after`.
    pub fn with_caches_retrying(
        mut self,
        embedder: impl Into<EmbedderSource>,
        after: Duration,
    ) -> Self {
        self.caches = Arc::new(
            FeatureCaches::new(
                &self.feature,
                &self.references.docs,
                self.store.clone(),
                embedder.into(),
                self.prototyper.clone(),
            )
            .with_retry_after(after),
        );
        self
    }

    /// The feature's caches (for their status and metrics).
    pub fn caches(&self) -> &Arc<FeatureCaches> {
        &self.caches
    }

    /// The model prototyped operations run on, if one is configured.
    pub fn model(&self) -> Option<&Arc<Prototyper>> {
        self.prototyper.as_ref()
    }

    /// Each model asked so far with what it spent: the feature's model and
    /// its fallbacks, then the model a spent budget switches to.
    pub fn model_spend(&self) -> Vec<(&Meter, Spend)> {
        self.prototyper
            .iter()
            .chain(self.budget_model.iter())
            .flat_map(|model| model.routes().totals())
            .collect()
    }

    /// The feature.
    pub fn feature(&self) -> &Feature {
        &self.feature
    }

    /// The sandbox pool (shared with code generation, which tests candidates in it).
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// The Redis store.
    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// Where prototyped calls of this feature record their examples.
    fn recorded_examples(&self) -> RecordedExamples<'_> {
        RecordedExamples::new(&self.store, self.feature.name())
    }

    /// The recorded examples of `operation`, newest first (at most `limit`).
    pub async fn examples(
        &self,
        operation: &str,
        limit: isize,
    ) -> Result<Vec<Value>, ExamplesError> {
        self.recorded_examples().recent(operation, limit).await
    }

    /// The phase `operation` runs in when the run asks for `phase` (None: the feature's own).
    pub fn effective_phase(&self, operation: &str, phase: Option<Phase>) -> Option<OperationPhase> {
        let op = self.feature.operation(operation)?;
        Some(phase.and_then(Phase::forced).unwrap_or(op.phase))
    }

    /// Whether a call of `operation` with `input` can run: the feature has the
    /// operation and the input matches its Input schema (what an async call is
    /// checked for before it is accepted).
    pub fn check_call(&self, operation: &str, input: &Value) -> Result<(), ExecError> {
        self.target(operation, input)?.check_input()
    }

    /// Runs `operation` with `input`; `phase` overrides the feature's phases.
    pub async fn execute(
        &self,
        operation: &str,
        input: &Value,
        phase: Option<Phase>,
    ) -> Result<Execution, ExecError> {
        self.execute_in(&self.scope, operation, input, phase).await
    }

    /// [`Self::execute`] with the operation's code and the model's Redis tools
    /// confined to `scope` (a test run's keyspace) instead of the feature's keys.
    pub async fn execute_in(
        &self,
        scope: &Scope,
        operation: &str,
        input: &Value,
        phase: Option<Phase>,
    ) -> Result<Execution, ExecError> {
        self.run_call(scope, operation, input, phase, true).await
    }

    /// [`Self::execute_in`] leaving nothing behind for the feature: the answer
    /// is neither recorded as an example nor kept in a cache (lookups still
    /// answer). For shadow calls, whose outputs are a candidate's, not the feature's.
    pub async fn execute_unrecorded(
        &self,
        scope: &Scope,
        operation: &str,
        input: &Value,
        phase: Option<Phase>,
    ) -> Result<Execution, ExecError> {
        self.run_call(scope, operation, input, phase, false).await
    }

    /// One call, in an operation span (the parent of its model, tool and
    /// sandbox spans); `records`: whether it records examples and cache entries.
    async fn run_call(
        &self,
        scope: &Scope,
        operation: &str,
        input: &Value,
        phase: Option<Phase>,
        records: bool,
    ) -> Result<Execution, ExecError> {
        // A call nothing in this process asked for (`eol run`, `eol test`)
        // joins the trace of whoever started the process, if they said.
        let span = OtelSpan::start(Parent::Current, || {
            SpanBuilder::from_name(format!("{}.{operation}", self.feature.name())).with_attributes(
                [
                    KeyValue::new("eol.feature", self.feature.name().to_owned()),
                    KeyValue::new("eol.operation", operation.to_owned()),
                ],
            )
        });
        let result = span
            .instrument(self.traced_call(&span, scope, operation, input, phase, records))
            .await;
        if let Err(e) = &result {
            span.record_error(e.kind(), &e.to_string());
        }
        result
    }

    async fn traced_call<'a>(
        &'a self,
        span: &OtelSpan,
        scope: &'a Scope,
        operation: &str,
        input: &'a Value,
        phase: Option<Phase>,
        records: bool,
    ) -> Result<Execution, ExecError> {
        let target = self.target(operation, input)?;
        let run_phase = phase.and_then(Phase::forced).unwrap_or(target.op.phase);
        span.set("eol.phase", run_phase.as_str());
        target.check_input()?;
        let started = Instant::now();
        let prototyped = |model: Option<&'a Prototyper>| PrototypedCall {
            target,
            model,
            tools: self.tools.as_deref(),
            scope,
            caches: &self.caches,
            references: &self.references,
            examples: self.recorded_examples(),
            records,
            cached: true,
        };
        let implemented = || ImplementedCall {
            target,
            file: &self.file,
            pool: &self.pool,
            store: &self.store,
            scope,
            caches: &self.caches,
            records,
        };
        let (outcome, ran_in) = match run_phase {
            OperationPhase::Prototyping => {
                match prototyped(self.prototyper.as_deref()).run().await {
                    // A spent budget: the way out it names, where there is one.
                    Err(ExecError::BudgetExceeded { on_exceeded, .. })
                        if on_exceeded == OnExceeded::Implementation
                            && target.op.code.is_some() =>
                    {
                        (implemented().run().await?, OperationPhase::Implementation)
                    }
                    Err(ExecError::BudgetExceeded { on_exceeded, .. })
                        if on_exceeded == OnExceeded::Model && self.budget_model.is_some() =>
                    {
                        let model = self.budget_model.as_deref();
                        (prototyped(model).run().await?, OperationPhase::Prototyping)
                    }
                    outcome => (outcome?, OperationPhase::Prototyping),
                }
            }
            OperationPhase::Implementation => {
                (implemented().run().await?, OperationPhase::Implementation)
            }
        };
        // The phase that answered: a spent budget may have sent it elsewhere.
        span.set("eol.phase", ran_in.as_str());
        span.set("eol.cache", outcome.cache_outcome());
        Ok(Execution {
            output: outcome.output,
            phase: ran_in,
            duration: started.elapsed(),
            stdout: outcome.stdout,
            trace: outcome.trace,
            cache: outcome.cache,
            semantic_check: outcome.semantic_check,
        })
    }

    /// [`settle_semantic_check`](Self::settle_semantic_check) in a task of its
    /// own, when fewer than [`MAX_SEMANTIC_CHECKS`] run (else the check is
    /// dropped: a verdict fewer, never a slower call).
    pub fn settle_in_background(self: &Arc<Self>, check: Option<SemanticCheck>) {
        let Some(check) = check else { return };
        let Ok(permit) = self.semantic_checks.clone().try_acquire_owned() else {
            tracing::debug!(feature = %self.feature.name(), operation = %check.operation, "semantic cache check dropped: too many running");
            return;
        };
        let runtime = self.clone();
        tokio::spawn(async move {
            runtime.settle_semantic_check(check).await;
            drop(permit);
        });
    }

    /// Compares `check`'s cached answer with the model's answer for its input
    /// (asked now when the check has none: a sampled hit) under the
    /// operation's `Compare:` rules, and records the verdict for the error
    /// bound. Run it after the caller has its answer: it may take a model call.
    ///
    /// The model is asked without tools: a check must not repeat a tool's
    /// writes. An operation whose answer needs its tools' data then tends to
    /// disagree, which only tightens its threshold.
    pub async fn settle_semantic_check(&self, mut check: SemanticCheck) {
        let feature = self.feature.name();
        let Some(op) = self.feature.operation(&check.operation) else {
            return;
        };
        let fresh = match check.fresh.take() {
            Some(fresh) => fresh,
            None => match self.fresh_answer(&check.operation, &check.input).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::warn!(feature, operation = %check.operation, %error, "the model could not answer a semantic cache check; no verdict");
                    return;
                }
            },
        };
        let texts = match self.caches.started_embedder().await {
            Some(embedder) => crate::compare::TextComparer::Embeddings(embedder),
            None => crate::compare::TextComparer::Normalized {
                reason: "the semantic cache's embedder is not started".into(),
            },
        };
        match crate::compare::differences(
            self,
            op,
            &check.input,
            &check.candidate.answer,
            &fresh,
            &texts,
        )
        .await
        {
            Ok(differences) => {
                self.caches
                    .semantic_verdict(&check, differences.is_empty())
                    .await;
            }
            Err(error) => {
                tracing::warn!(feature, operation = %check.operation, %error, "a semantic cache check could not compare the answers; no verdict");
            }
        }
    }

    /// The primary model's answer for `input`, never from the semantic cache,
    /// recording nothing and calling no tool.
    async fn fresh_answer(&self, operation: &str, input: &Value) -> Result<Value, ExecError> {
        let target = self.target(operation, input)?;
        let call = PrototypedCall {
            target,
            model: self.prototyper.as_deref(),
            tools: None,
            scope: &self.scope,
            caches: &self.caches,
            references: &self.references,
            examples: self.recorded_examples(),
            records: false,
            cached: false,
        };
        Ok(call.run().await?.output)
    }

    /// `operation` on `input`, if the feature has it.
    fn target<'a>(
        &'a self,
        operation: &str,
        input: &'a Value,
    ) -> Result<CallTarget<'a>, ExecError> {
        let unknown = || ExecError::UnknownOperation {
            feature: self.feature.name().to_owned(),
            operation: operation.to_owned(),
            known: self.feature.operation_names().join(", "),
        };
        let op = self.feature.operation(operation).ok_or_else(unknown)?;
        let schemas = self.compiled.get(&op.name).ok_or_else(unknown)?;
        Ok(CallTarget {
            feature: &self.feature,
            op,
            schemas,
            input,
        })
    }
}

/// Checks every operation's code in the sandbox; problems are located in the `.eol` file.
pub async fn check_code(
    file: &str,
    feature: &Feature,
    pool: &WorkerPool,
) -> Result<(), Diagnostics> {
    let mut diags = Vec::new();
    for op in &feature.operations {
        let Some(code) = &op.code else { continue };
        let params = op.parameters();
        match pool.check(&code.source, &op.name, &params).await {
            Ok(errors) => diags.extend(
                errors
                    .iter()
                    .map(|e| e.locate(file, &op.name, code.first_line.0.line)),
            ),
            Err(e) => diags.push(Diagnostic {
                file: file.to_owned(),
                position: code.first_line.0,
                message: format!(
                    "operation '{}': the code could not be checked: {e}",
                    op.name
                ),
            }),
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(diags))
    }
}
