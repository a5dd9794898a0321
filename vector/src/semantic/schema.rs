//! The Redis index schemas of the semantic cache: the main FLAT index with
//! its tags, and the HNSW index over the same entries for crowded scopes.

use crate::index::{FieldAttrs, FieldSpec, FieldType, IndexInfo, IndexSchema};

/// The tags every entry carries: what its answer depends on.
const TAGS: [&str; 6] = [
    "feature",
    "operation",
    "phase",
    "model",
    "embedder",
    "source_hash",
];

/// The schema of a semantic cache index named `name` for vectors of `dims`.
pub fn semantic_schema(name: &str, dims: usize) -> IndexSchema {
    let tag = |n: &str| FieldSpec {
        name: n.to_owned(),
        kind: FieldType::Tag,
        attrs: FieldAttrs {
            case_sensitive: Some(true),
            ..FieldAttrs::default()
        },
    };
    let mut fields: Vec<FieldSpec> = TAGS.iter().map(|t| tag(t)).collect();
    fields.push(tag("scope"));
    fields.push(FieldSpec {
        name: "prompt".into(),
        kind: FieldType::Text,
        attrs: FieldAttrs::default(),
    });
    fields.push(FieldSpec {
        name: "created_at".into(),
        kind: FieldType::Numeric,
        attrs: FieldAttrs::default(),
    });
    fields.push(FieldSpec {
        name: "embedding".into(),
        kind: FieldType::Vector,
        attrs: FieldAttrs {
            algorithm: Some("flat".into()),
            dims: Some(dims as i64),
            distance_metric: Some("cosine".into()),
            datatype: Some("float32".into()),
            ..FieldAttrs::default()
        },
    });
    IndexSchema {
        index: IndexInfo {
            name: name.to_owned(),
            prefix: format!("eol:{name}"),
            key_separator: ":".into(),
            storage_type: "hash".into(),
        },
        fields,
    }
}

/// The schema of the HNSW index `<name>-graph` over the same entries as the
/// [`semantic_schema`] `name` (the same key prefix: Redis indexes each entry
/// in both): only the scope and the embedding. A look-up in a scope that is
/// a large share of the cache searches it (the `crowding` module).
pub fn semantic_graph_schema(name: &str, dims: usize) -> IndexSchema {
    let main = semantic_schema(name, dims);
    let keep = |f: &FieldSpec| f.name == "scope" || f.kind == FieldType::Vector;
    let mut fields: Vec<FieldSpec> = main.fields.into_iter().filter(keep).collect();
    for f in &mut fields {
        if f.kind == FieldType::Vector {
            f.attrs.algorithm = Some("hnsw".into());
            f.attrs.m = Some(16);
            f.attrs.ef_construction = Some(200);
            f.attrs.ef_runtime = Some(20);
        }
    }
    IndexSchema {
        index: IndexInfo {
            name: format!("{name}-graph"),
            ..main.index
        },
        fields,
    }
}
