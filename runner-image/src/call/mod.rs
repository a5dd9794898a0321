//! One operation call in its phase, from a checked input to a validated
//! output: [`PrototypedCall`] asks the model, [`ImplementedCall`] runs the
//! Python in the sandbox. The engine checks the input and picks the phase;
//! the call object owns the rest, caches included.

mod implemented;
mod prototyped;

pub(crate) use implemented::ImplementedCall;
pub(crate) use prototyped::PrototypedCall;

use crate::caches::{CacheHit, SemanticCheck};
use crate::engine::ExecError;
use crate::prototype::{PrototypeError, PrototypeTrace};
use eol_core::{CompiledSchema, Feature, Operation};
use serde_json::Value;

/// How much of an invalid output an error quotes.
const OUTPUT_SHOWN_CHARS: usize = 200;

/// An operation's Input and Output schemas, compiled once at load.
pub(crate) struct OperationSchemas {
    /// The Input schema.
    pub(crate) input: CompiledSchema,
    /// The Output schema.
    pub(crate) output: CompiledSchema,
}

/// The operation a call runs, with its input: what every phase needs.
#[derive(Clone, Copy)]
pub(crate) struct CallTarget<'a> {
    /// The feature.
    pub(crate) feature: &'a Feature,
    /// The operation.
    pub(crate) op: &'a Operation,
    /// Its compiled schemas.
    pub(crate) schemas: &'a OperationSchemas,
    /// The input.
    pub(crate) input: &'a Value,
}

impl CallTarget<'_> {
    /// Whether the input matches the Input schema.
    pub(crate) fn check_input(&self) -> Result<(), ExecError> {
        let violations = self.schemas.input.violations(self.input);
        if violations.is_empty() {
            return Ok(());
        }
        Err(ExecError::InvalidInput {
            feature: self.feature_name(),
            operation: self.op.name.clone(),
            violations: violations.join("; "),
        })
    }

    /// `output`, once it matches the Output schema.
    fn checked(&self, output: Value) -> Result<Value, ExecError> {
        let violations = self.schemas.output.violations(&output);
        if violations.is_empty() {
            return Ok(output);
        }
        let mut shown = output.to_string();
        if shown.len() > OUTPUT_SHOWN_CHARS {
            shown.truncate(
                shown
                    .char_indices()
                    .nth(OUTPUT_SHOWN_CHARS)
                    .map_or(shown.len(), |(i, _)| i),
            );
            shown.push('…');
        }
        Err(ExecError::InvalidOutput {
            feature: self.feature_name(),
            operation: self.op.name.clone(),
            violations: violations.join("; "),
            output: shown,
        })
    }

    /// The model's failure, as this call's error.
    fn prototype_error(&self, source: PrototypeError) -> ExecError {
        ExecError::Prototype {
            feature: self.feature_name(),
            operation: self.op.name.clone(),
            source,
        }
    }

    fn feature_name(&self) -> String {
        self.feature.name().to_owned()
    }
}

/// What a call produced; the engine adds the phase and the time taken.
pub(crate) struct CallOutput {
    /// The validated output.
    pub(crate) output: Value,
    /// What the code printed (implementation phase).
    pub(crate) stdout: String,
    /// Tokens, attempts and context notes, when the model was called.
    pub(crate) trace: Option<PrototypeTrace>,
    /// The cache that served the output, if one did.
    pub(crate) cache: Option<CacheHit>,
    /// Whether a cache was asked first and had no answer.
    pub(crate) cache_missed: bool,
    /// A cached answer to compare with the model's, off the response path
    /// (`cache.semantic.max_error_rate`).
    pub(crate) semantic_check: Option<SemanticCheck>,
}

impl CallOutput {
    /// An output a cache served.
    fn cached(output: Value, hit: CacheHit) -> Self {
        Self {
            output,
            stdout: String::new(),
            trace: None,
            cache: Some(hit),
            cache_missed: false,
            semantic_check: None,
        }
    }

    /// What the cache did, for the operation span: the kind of hit
    /// (`semantic`, `result`), `miss`, or `none` when no cache was asked.
    pub(crate) fn cache_outcome(&self) -> &'static str {
        match (&self.cache, self.cache_missed) {
            (Some(hit), _) => hit.kind,
            (None, true) => "miss",
            (None, false) => "none",
        }
    }
}
