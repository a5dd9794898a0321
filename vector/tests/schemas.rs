//! The index schemas shipped in `vector/schemas/` (RedisVL YAML) are the ones
//! the runner creates, so they document the live indexes and can be used with
//! RedisVL's tools as they are.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use eol_vector::context::context_schema;
use eol_vector::index::IndexSchema;
use eol_vector::semantic::{semantic_graph_schema, semantic_schema};
use std::path::Path;

fn shipped(name: &str) -> IndexSchema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    IndexSchema::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_shipped_context_schema_is_the_one_the_runner_creates() {
    assert_eq!(
        shipped("feature-context.yaml"),
        context_schema("eol-context-384", 384)
    );
}

#[test]
fn the_shipped_semantic_schema_is_the_one_the_runner_creates() {
    assert_eq!(
        shipped("semantic-cache.yaml"),
        semantic_schema("eol-semantic-384", 384)
    );
}

#[test]
fn the_shipped_semantic_graph_schema_is_the_one_the_runner_creates() {
    assert_eq!(
        shipped("semantic-cache-graph.yaml"),
        semantic_graph_schema("eol-semantic-384", 384)
    );
}
