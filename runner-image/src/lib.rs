//! eol-runner: the engines behind the `eol` command.
//!
//! - [`sandbox`]: the warm pool of confined Python workers (implementation phase);
//! - [`store`]: Redis, local or configured, and the per-feature bridge to it;
//! - [`bootstrap`]: a feature's runtime started from the process's settings
//!   (sandbox pool, model and tools, Redis, the caches' embedder);
//! - [`engine`]: running operations in their phase, with schema checks; each
//!   call is a prototyped or implemented call object (`call`), which owns its
//!   caches;
//! - [`llm`], [`prototype`], [`context`]: the model client, the prototyping engine, references as context;
//! - [`caches`]: the semantic, embeddings and result caches and the vector context;
//! - [`examples`]: prototyped calls recorded as examples in Redis;
//! - [`generate`]: model-written code, kept only when it passes the tests;
//! - [`compare`]: recorded prototype examples replayed through the implementation and compared;
//! - [`dev`]: `eol dev`'s watch, reload and push to the cluster;
//! - [`mcp`]: MCP tools for the LLM (built-in Redis, the feature's servers) and
//!   a feature served as an MCP server;
//! - [`shadow`]: shadow switches: a candidate pod's offer, answers and tally, and
//!   the serving pods' copies of their calls;
//! - [`testing`]: running `.test.eol` suites;
//! - [`report`]: run reports for Kubernetes Jobs (termination message, full result in Redis).

pub mod bootstrap;
pub mod budget;
pub mod caches;
mod call;
pub mod compare;
pub mod context;
pub mod dev;
pub mod engine;
pub mod examples;
pub mod generate;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod prototype;
pub mod queue;
pub mod report;
pub mod sandbox;
pub mod serve;
pub mod shadow;
pub mod spend;
pub mod store;
pub mod testing;
mod tied;

use std::path::Path;

/// The feature file a test file belongs to: `NAME.test.eol` next to `NAME.eol`,
/// else `<feature>.eol` in the same directory.
pub fn feature_file_for(test_file: &Path, suite: &eol_core::TestSuite) -> std::path::PathBuf {
    let name = test_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if let Some(stem) = name.strip_suffix(".test.eol") {
        let sibling = test_file.with_file_name(format!("{stem}.eol"));
        if sibling.exists() {
            return sibling;
        }
    }
    test_file.with_file_name(format!("{}.eol", suite.feature))
}

/// The tests of a feature file: `NAME.test.eol` next to `NAME.eol`.
pub fn tests_file_for(feature_file: &Path) -> std::path::PathBuf {
    let name = feature_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    feature_file.with_file_name(format!(
        "{}.test.eol",
        name.strip_suffix(".eol").unwrap_or(name)
    ))
}
