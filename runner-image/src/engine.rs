//! Executing a feature's operations, each in its phase.

use crate::caches::{CacheHit, FeatureCaches, SemanticLookup};
use crate::prototype::{PromptContext, PrototypeError, PrototypeTrace, Prototyper, Tools};
use crate::sandbox::{CallFailure, FailureKind, WorkerPool};
use crate::store::RedisStore;
use eol_core::{CompiledSchema, Diagnostic, Diagnostics, Feature, OperationPhase, Phase, Position};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The setting that configures the model prototyped operations run on.
pub const MODEL_SETTING: &str = "EOL_LLM_BASE_URL";

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
    /// The sandboxed call failed.
    #[error("feature '{feature}', operation '{operation}' failed ({}): {}{}", failure.kind.as_str(), failure.message, location(.file_line))]
    Sandbox {
        /// The feature.
        feature: String,
        /// The operation.
        operation: String,
        /// What happened in the sandbox.
        failure: CallFailure,
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
}

struct CompiledOperation {
    input: CompiledSchema,
    output: CompiledSchema,
}

/// A loaded feature, ready to run operations.
pub struct Runtime {
    feature: Feature,
    file: String,
    compiled: HashMap<String, CompiledOperation>,
    pool: WorkerPool,
    store: Arc<RedisStore>,
    prototyper: Option<Arc<Prototyper>>,
    tools: Option<Arc<dyn Tools>>,
    /// Referenced documents, read once at load.
    docs: Vec<crate::prototype::ContextDoc>,
    /// Why some references could not be read (noted in each prototyped call's trace).
    unreadable: Vec<String>,
    /// The semantic, embeddings and result caches and the vector context.
    caches: Arc<FeatureCaches>,
}

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
        let (docs, unreadable) = crate::context::resolve(file, &feature);
        for d in &unreadable {
            tracing::warn!(feature = %feature.name(), "{d}");
        }
        let unreadable: Vec<String> = unreadable.into_iter().map(|d| d.message).collect();
        let mut compiled = HashMap::new();
        let mut diags = Vec::new();
        for op in &feature.operations {
            match (
                CompiledSchema::new(&op.input.value),
                CompiledSchema::new(&op.output.value),
            ) {
                (Ok(input), Ok(output)) => {
                    compiled.insert(op.name.clone(), CompiledOperation { input, output });
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
            &docs,
            store.clone(),
            crate::caches::EmbedderSource::Off,
            None,
        ));
        Ok(Self {
            caches,
            feature,
            file: file.to_owned(),
            compiled,
            pool,
            store,
            prototyper: None,
            tools: None,
            docs,
            unreadable,
        })
    }

    /// Runs prototyped operations on `prototyper` (without one they report that no model is configured).
    pub fn with_model(mut self, prototyper: Option<Arc<Prototyper>>) -> Self {
        self.prototyper = prototyper;
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
    pub fn with_caches(self, embedder: impl Into<crate::caches::EmbedderSource>) -> Self {
        self.with_caches_retrying(embedder, crate::caches::RETRY_AFTER)
    }

    /// [`Self::with_caches`], trying a part that failed to start again after `after`.
    pub fn with_caches_retrying(
        mut self,
        embedder: impl Into<crate::caches::EmbedderSource>,
        after: std::time::Duration,
    ) -> Self {
        self.caches = Arc::new(
            FeatureCaches::new(
                &self.feature,
                &self.docs,
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

    /// The feature.
    pub fn feature(&self) -> &Feature {
        &self.feature
    }

    /// The phase `operation` runs in when the run asks for `phase` (None: the feature's own).
    pub fn effective_phase(&self, operation: &str, phase: Option<Phase>) -> Option<OperationPhase> {
        let op = self.feature.operation(operation)?;
        Some(phase.and_then(Phase::forced).unwrap_or(op.phase))
    }

    /// Runs `operation` with `input`; `phase` overrides the feature's phases.
    pub async fn execute(
        &self,
        operation: &str,
        input: &Value,
        phase: Option<Phase>,
    ) -> Result<Execution, ExecError> {
        let feature = self.feature.name().to_owned();
        let Some(op) = self.feature.operation(operation) else {
            return Err(ExecError::UnknownOperation {
                feature,
                operation: operation.to_owned(),
                known: self.feature.operation_names().join(", "),
            });
        };
        let schemas = &self.compiled[&op.name];
        let violations = schemas.input.violations(input);
        if !violations.is_empty() {
            return Err(ExecError::InvalidInput {
                feature,
                operation: op.name.clone(),
                violations: violations.join("; "),
            });
        }
        let run_phase = phase.and_then(Phase::forced).unwrap_or(op.phase);
        let started = Instant::now();
        let (output, stdout, trace, cache) = match run_phase {
            OperationPhase::Prototyping => {
                let Some(model) = &self.prototyper else {
                    let hint = if op.code.is_some() {
                        " — or run it with --phase implementation, since it has code".to_owned()
                    } else {
                        String::new()
                    };
                    return Err(ExecError::NoModel {
                        feature,
                        operation: op.name.clone(),
                        hint,
                    });
                };
                let model_name = &model.client().settings().model;
                let looked_up = self
                    .caches
                    .semantic_lookup(&op.name, model_name, input)
                    .await;
                match looked_up {
                    SemanticLookup::Hit(answer, hit) => (answer, String::new(), None, Some(hit)),
                    SemanticLookup::Miss(prepared) => {
                        let prototype_err = |source| ExecError::Prototype {
                            feature: feature.clone(),
                            operation: op.name.clone(),
                            source,
                        };
                        let budget = model
                            .context_budget(&self.feature, op, input)
                            .map_err(prototype_err)?;
                        let context = match self.caches.context(op, input, budget).await {
                            Some(selected) => selected,
                            None => PromptContext::Ranked(&self.docs),
                        };
                        let (output, mut trace) = model
                            .execute_with(
                                &self.feature,
                                op,
                                input,
                                &schemas.output,
                                self.tools.as_deref(),
                                &context,
                            )
                            .await
                            .map_err(prototype_err)?;
                        if !self.unreadable.is_empty() {
                            let missing = format!(
                                "context without unreadable references: {}",
                                self.unreadable.join("; ")
                            );
                            trace.context_note = Some(match trace.context_note.take() {
                                Some(note) => format!("{note}; {missing}"),
                                None => missing,
                            });
                        }
                        self.record_example(&op.name, input, &output).await;
                        self.caches
                            .semantic_store(&op.name, model_name, prepared.as_ref(), &output)
                            .await;
                        (output, String::new(), Some(trace), None)
                    }
                }
            }
            OperationPhase::Implementation => {
                let Some(code) = &op.code else {
                    return Err(ExecError::NoCode {
                        feature,
                        operation: op.name.clone(),
                    });
                };
                if let Some((output, hit)) = self
                    .caches
                    .result_lookup(&op.name, &code.source, input)
                    .await
                {
                    (output, String::new(), None, Some(hit))
                } else {
                    let bridge = self.store.bridge(&feature);
                    match self.pool.call(&code.source, &op.name, input, &bridge).await {
                        Ok(outcome) => (outcome.value, outcome.stdout, None, None),
                        Err(failure) => {
                            let file_line =
                                failure.line.map(|l| (self.file.clone(), code.file_line(l)));
                            return Err(ExecError::Sandbox {
                                feature,
                                operation: op.name.clone(),
                                failure,
                                file_line,
                            });
                        }
                    }
                }
            }
        };
        let violations = schemas.output.violations(&output);
        if !violations.is_empty() {
            let mut shown = output.to_string();
            if shown.len() > 200 {
                shown.truncate(
                    shown
                        .char_indices()
                        .nth(200)
                        .map_or(shown.len(), |(i, _)| i),
                );
                shown.push('…');
            }
            return Err(ExecError::InvalidOutput {
                feature,
                operation: op.name.clone(),
                violations: violations.join("; "),
                output: shown,
            });
        }
        // Only valid outputs computed now are kept (a cached one is already there).
        if cache.is_none()
            && run_phase == OperationPhase::Implementation
            && let Some(code) = &op.code
        {
            self.caches
                .result_store(&op.name, &code.source, input, &output)
                .await;
        }
        Ok(Execution {
            output,
            phase: run_phase,
            duration: started.elapsed(),
            stdout,
            trace,
            cache,
        })
    }
}

/// How many recorded examples are kept per operation.
pub const EXAMPLES_KEPT: isize = 100;

/// The Redis key (before the feature prefix) holding an operation's recorded examples.
pub fn examples_key(operation: &str) -> String {
    format!("examples:{operation}")
}

impl Runtime {
    /// The full Redis key of `operation`'s recorded examples.
    fn examples_redis_key(&self, operation: &str) -> String {
        format!(
            "{}{}",
            crate::store::key_prefix(self.feature.name()),
            examples_key(operation)
        )
    }

    /// Keeps a prototyped call's input and validated output in Redis (newest
    /// first, bounded), as examples for code generation and phase comparison.
    /// Recording never fails the call: a Redis problem is logged.
    async fn record_example(&self, operation: &str, input: &Value, output: &Value) {
        let key = self.examples_redis_key(operation);
        let entry = serde_json::json!({ "input": input, "output": output }).to_string();
        let result = async {
            let mut conn = self.store.connection().await.map_err(|e| e.to_string())?;
            redis::pipe()
                .lpush(&key, entry)
                .ltrim(&key, 0, EXAMPLES_KEPT - 1)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, feature = %self.feature.name(), operation, "failed to record a prototyped call as an example");
        }
    }

    /// The recorded examples of `operation`, newest first (at most `limit`).
    pub async fn examples(&self, operation: &str, limit: isize) -> Result<Vec<Value>, String> {
        let key = self.examples_redis_key(operation);
        let mut conn = self.store.connection().await.map_err(|e| e.to_string())?;
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(limit - 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("failed to read examples of '{operation}': {e}"))?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// The sandbox pool (shared with code generation, which tests candidates in it).
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// The Redis store.
    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
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
            Ok(errors) => diags.extend(errors.into_iter().map(|e| Diagnostic {
                file: file.to_owned(),
                position: Position::new(code.file_line(e.line), e.column),
                message: format!("operation '{}': {}", op.name, e.message),
            })),
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
