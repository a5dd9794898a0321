//! eol-core: the `.eol` and `.test.eol` formats, the feature model and phase logic.
//!
//! This crate does no I/O: it turns text into a validated model, checks outputs
//! against expectations, and writes models back to text.

pub mod compare;
pub mod cost;
pub mod crd;
mod diagnostic;
pub mod expect;
mod feature;
mod markdown;
mod parse;
mod phase;
#[cfg(feature = "process")]
pub mod process;
#[cfg(feature = "queue")]
pub mod queue;
pub mod runner_contract;
pub mod sandbox_check;
mod schema;
pub mod shadow;
mod switch;
mod testfile;
mod write;

pub use diagnostic::{Diagnostic, Diagnostics, Position};
pub use feature::{
    CacheSettings, Code, DEFAULT_COOLDOWN_SECS, Feature, Frontmatter, ModelFallback, ModelSettings,
    Operation, Reference, ResultCaching, Schema, SemanticBound, SourceLocation, ToolServer,
};
pub use parse::parse_feature;
pub use phase::{OperationPhase, Phase, UnknownPhase};
pub use schema::CompiledSchema;
pub use switch::{switch_feature, switch_operation};
pub use testfile::{Expectation, TestCase, TestSuite, parse_test_suite};
pub use write::{
    source_text, with_feature_phase, with_operation_code, with_operation_phase, write_feature,
};

/// `error` and its sources, joined with `: `. Many errors (reqwest's "error
/// sending request", for one) say why only in their sources: refused, no
/// route, timed out.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
