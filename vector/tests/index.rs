//! Vector index schemas and the RediSearch index, against a real Redis with
//! the search module (`EOL_TEST_REDIS_URL`, set by scripts/test.sh, or `REDIS_URL` from `eval "$(scripts/redis.sh start)"`).

use std::time::Duration;

use eol_vector::index::{
    Document, EnsureOutcome, Filter, IndexError, IndexSchema, KnnQuery, SchemaChangePolicy,
    SchemaError, VectorIndex, escape_tag,
};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;

mod common;
use common::{conn, connect, unique};

fn schema(name: &str, dims: usize, extra: &str) -> IndexSchema {
    IndexSchema::from_yaml(&format!(
        r#"
index: {{name: {name}, prefix: "{name}", storage_type: hash}}
fields:
  - {{name: team, type: tag}}
  - {{name: body, type: text}}
  - name: vec
    type: vector
    attrs: {{algorithm: hnsw, dims: {dims}, distance_metric: cosine, datatype: float32, m: 16, ef_construction: 200, ef_runtime: 10}}
{extra}"#
    ))
    .expect("a valid schema")
}

/// A unit vector in the plane of the first two axes at `degrees` from the first.
fn at_angle(degrees: f32, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    let r = degrees.to_radians();
    v[0] = r.cos();
    v[1] = r.sin();
    v
}

// ---------------------------------------------------------------- schemas

#[test]
fn schema_yaml_in_the_redisvl_format_parses() {
    let s = schema("docs", 384, "  - {name: year, type: numeric}\n");
    assert_eq!(s.index.name, "docs");
    assert_eq!(s.key("a"), "docs:a");
    let (field, p) = s.vector_field().expect("a vector field");
    assert_eq!(field.name, "vec");
    assert_eq!(
        (p.dims, p.m, p.ef_construction, p.ef_runtime),
        (384, 16, 200, 10)
    );
    assert_eq!(s.fields.len(), 4);
}

#[test]
fn shipped_schemas_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("vector/schemas") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            IndexSchema::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n > 0, "no schema in {}", dir.display());
}

fn invalid(yaml: &str) -> (String, String) {
    match IndexSchema::from_yaml(yaml) {
        Err(SchemaError::Invalid {
            location, problem, ..
        }) => (location, problem),
        other => panic!("expected an invalid schema, got {other:?}"),
    }
}

const HEAD: &str = "index: {name: docs, prefix: doc}\nfields:\n";

#[test]
fn bad_dims_is_located() {
    let (at, why) = invalid(&format!(
        "{HEAD}  - {{name: team, type: tag}}\n  - {{name: emb, type: vector, attrs: {{algorithm: flat, dims: 0}}}}\n"
    ));
    assert_eq!(at, "fields[1] (emb).attrs.dims");
    assert!(why.contains("0 is out of range"), "{why}");
    let (at, why) = invalid(&format!(
        "{HEAD}  - {{name: emb, type: vector, attrs: {{algorithm: flat}}}}\n"
    ));
    assert_eq!(at, "fields[0] (emb).attrs.dims");
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn unknown_algorithm_is_located() {
    let (at, why) = invalid(&format!(
        "{HEAD}  - {{name: emb, type: vector, attrs: {{algorithm: ivf, dims: 8}}}}\n"
    ));
    assert_eq!(at, "fields[0] (emb).attrs.algorithm");
    assert!(
        why.contains("unknown algorithm `ivf`") && why.contains("hnsw"),
        "{why}"
    );
}

#[test]
fn other_schema_mistakes_are_located() {
    let (at, _) = invalid(&format!(
        "{HEAD}  - {{name: emb, type: vector, attrs: {{algorithm: flat, dims: 8, m: 16}}}}\n"
    ));
    assert_eq!(at, "fields[0] (emb).attrs.m");
    let (at, why) = invalid(&format!(
        "{HEAD}  - {{name: t, type: tag, attrs: {{dims: 8}}}}\n"
    ));
    assert_eq!(at, "fields[0] (t).attrs.dims");
    assert!(why.contains("vector fields only"), "{why}");
    let (at, _) = invalid(&format!(
        "{HEAD}  - {{name: t, type: tag}}\n  - {{name: t, type: text}}\n"
    ));
    assert_eq!(at, "fields[1] (t).name");
    let (at, why) = invalid(
        "index: {name: docs, prefix: doc, storage_type: json}\nfields:\n  - {name: t, type: tag}\n",
    );
    assert_eq!(at, "index.storage_type");
    assert!(why.contains("hash"), "{why}");
    let (at, _) = invalid(&format!(
        "{HEAD}  - {{name: emb, type: vector, attrs: {{algorithm: flat, dims: 8, distance_metric: manhattan}}}}\n"
    ));
    assert_eq!(at, "fields[0] (emb).attrs.distance_metric");
    // Unknown keys and types are YAML errors with a line and column.
    let yaml = IndexSchema::from_yaml(&format!("{HEAD}  - {{name: t, type: geo}}\n")).unwrap_err();
    assert!(
        matches!(&yaml, SchemaError::Yaml { message, .. } if message.contains("line 3")),
        "{yaml}"
    );
    let yaml = IndexSchema::from_yaml(&format!(
        "{HEAD}  - {{name: t, type: tag, attrs: {{dim: 3}}}}\n"
    ))
    .unwrap_err();
    assert!(yaml.to_string().contains("unknown field `dim`"), "{yaml}");
}

#[test]
fn tag_values_are_escaped() {
    assert_eq!(escape_tag("gpt-4o-mini"), "gpt\\-4o\\-mini");
    assert_eq!(escape_tag("a b,c{d}|e"), "a\\ b\\,c\\{d\\}\\|e");
    assert_eq!(escape_tag("plain_1"), "plain_1");
}

// ---------------------------------------------------------------- index on Redis

#[tokio::test]
async fn ensure_is_idempotent() {
    let name = unique("idem");
    let index = VectorIndex::new(conn().await, schema(&name, 4, "")).expect("valid");
    assert_eq!(
        index.ensure().await.expect("created"),
        EnsureOutcome::Created
    );
    assert_eq!(
        index.ensure().await.expect("unchanged"),
        EnsureOutcome::Unchanged
    );
    assert_eq!(
        index.ensure().await.expect("unchanged"),
        EnsureOutcome::Unchanged
    );
    let mut c = conn().await;
    let stored: String = redis::cmd("GET")
        .arg(format!("eol:index-schema:{name}"))
        .query_async(&mut c)
        .await
        .expect("the schema hash");
    assert_eq!(stored, index.schema().hash());
    index.drop_index(true).await.expect("dropped");
}

#[tokio::test]
async fn changed_schema_is_an_error_then_recreated_with_docs_reindexed() {
    let name = unique("change");
    let v1 = VectorIndex::new(conn().await, schema(&name, 4, "")).expect("valid");
    v1.ensure().await.expect("created");
    let docs: Vec<Document> = (0..20)
        .map(|i| {
            Document::new(format!("d{i}"))
                .text("team", if i % 2 == 0 { "even" } else { "odd" })
                .number("year", 2000.0 + f64::from(i))
                .vector("vec", at_angle(i as f32, 4))
        })
        .collect();
    v1.load(&docs).await.expect("loaded");

    let v2_schema = schema(&name, 4, "  - {name: year, type: numeric}\n");
    let v2 = VectorIndex::new(conn().await, v2_schema.clone()).expect("valid");
    let err = v2.ensure().await.expect_err("the schema changed");
    let msg = err.to_string();
    assert!(matches!(err, IndexError::SchemaChanged { .. }), "{msg}");
    assert!(
        msg.contains("schema of index") && msg.contains("changed"),
        "{msg}"
    );
    assert!(
        msg.contains("SchemaChangePolicy::Recreate") && msg.contains("FT.DROPINDEX"),
        "{msg}"
    );

    let v2 = v2.with_policy(SchemaChangePolicy::Recreate);
    assert_eq!(
        v2.ensure().await.expect("recreated"),
        EnsureOutcome::Recreated
    );
    let status = v2
        .wait_indexed(Duration::from_secs(10))
        .await
        .expect("status");
    assert_eq!(status.num_docs, 20, "the existing hashes are indexed again");
    // The new numeric field is searchable on the old documents.
    let hits = v2
        .knn(
            &at_angle(0.0, 4),
            3,
            &Filter::all().and_range("year", Some(2015.0), None),
            &["year"],
        )
        .await
        .expect("knn");
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d15", "d16", "d17"]);
    assert_eq!(
        v2.ensure().await.expect("unchanged"),
        EnsureOutcome::Unchanged
    );
    v2.drop_index(true).await.expect("dropped");
}

#[tokio::test]
async fn knn_with_tag_and_numeric_filters_returns_the_right_ids_in_order() {
    let name = unique("knn");
    let index = VectorIndex::new(
        conn().await,
        schema(&name, 8, "  - {name: year, type: numeric}\n"),
    )
    .expect("valid");
    index.ensure().await.expect("created");
    // Doc i is at i*10 degrees from the query; teams alternate, one with punctuation.
    let docs: Vec<Document> = (0..9)
        .map(|i| {
            Document::new(format!("d{i}"))
                .text("team", if i % 2 == 0 { "team-a b.1" } else { "other" })
                .text("body", format!("document number {i}"))
                .number("year", 2020.0 + f64::from(i))
                .vector("vec", at_angle(10.0 * i as f32, 8))
        })
        .collect();
    index.load(&docs).await.expect("loaded");
    let q = at_angle(0.0, 8);

    let all = index
        .knn(&q, 3, &Filter::all(), &["body"])
        .await
        .expect("knn");
    let ids: Vec<&str> = all.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1", "d2"]);
    assert!(all[0].distance.abs() < 1e-5);
    assert!(all[0].distance < all[1].distance && all[1].distance < all[2].distance);
    assert_eq!(all[1].fields["body"], "document number 1");
    assert_eq!(all[1].key, format!("{name}:d1"));

    let team = index
        .knn(&q, 3, &Filter::tag("team", "team-a b.1"), &["team"])
        .await
        .expect("knn");
    let ids: Vec<&str> = team.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d2", "d4"]);
    assert_eq!(team[0].fields["team"], "team-a b.1");

    let both = index
        .knn(
            &q,
            5,
            &Filter::tag("team", "team-a b.1").and_range("year", Some(2023.0), Some(2026.0)),
            &[],
        )
        .await
        .expect("knn");
    let ids: Vec<&str> = both.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d4", "d6"]);

    // A per-query EF_RUNTIME gives the same answer on so small an index.
    let wide = index
        .search(&KnnQuery {
            vector: &q,
            k: 3,
            filter: &Filter::all(),
            return_fields: &[],
            ef_runtime: Some(50),
            hybrid_policy: None,
        })
        .await
        .expect("knn with EF_RUNTIME");
    let ids: Vec<&str> = wide.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1", "d2"]);

    let any = index
        .knn(
            &q,
            2,
            &Filter::all().and_tag_any("team", ["other", "nobody"]),
            &[],
        )
        .await
        .expect("knn");
    let ids: Vec<&str> = any.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d1", "d3"]);

    let err = index
        .knn(&q, 2, &Filter::tag("year", "x"), &[])
        .await
        .expect_err("not a tag");
    assert!(
        err.to_string()
            .contains("field `year`: tag equality needs a tag field"),
        "{err}"
    );
    let err = index
        .knn(&q, 2, &Filter::tag("nope", "x"), &[])
        .await
        .expect_err("no field");
    assert!(err.to_string().contains("no such field"), "{err}");
    index.drop_index(true).await.expect("dropped");
}

#[tokio::test]
async fn an_index_dropped_underneath_is_recreated_on_the_next_query() {
    let name = unique("dropped");
    let index = VectorIndex::new(conn().await, schema(&name, 4, "")).expect("valid");
    index.ensure().await.expect("created");
    let docs: Vec<Document> = (0..5)
        .map(|i| {
            Document::new(format!("d{i}"))
                .text("team", "x")
                .vector("vec", at_angle(i as f32 * 5.0, 4))
        })
        .collect();
    index.load(&docs).await.expect("loaded");
    // Someone drops the index (keeping the documents) behind the runner's back.
    let mut c = conn().await;
    let _: () = redis::cmd("FT.DROPINDEX")
        .arg(&name)
        .query_async(&mut c)
        .await
        .expect("dropped by hand");
    let hits = index
        .knn(&at_angle(0.0, 4), 2, &Filter::tag("team", "x"), &[])
        .await
        .expect("the query recreates the index and succeeds");
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1"]);
    assert!(index.exists().await.expect("exists"));
    index.drop_index(true).await.expect("dropped");
}

struct FixedDims(usize);

impl Embedder for FixedDims {
    fn model_id(&self) -> &str {
        "fixed-test"
    }
    fn dimension(&self) -> usize {
        self.0
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(texts.iter().map(|_| at_angle(0.0, self.0)).collect()) })
    }
}

#[tokio::test]
async fn dimension_mismatch_names_both_numbers() {
    let name = unique("dims");
    let index = VectorIndex::new(conn().await, schema(&name, 384, "")).expect("valid");
    index
        .check_embedder(&FixedDims(384))
        .expect("same dimension");
    let err = index.check_embedder(&FixedDims(64)).expect_err("mismatch");
    let msg = err.to_string();
    assert!(matches!(
        err,
        IndexError::DimensionMismatch {
            schema_dims: 384,
            actual: 64,
            ..
        }
    ));
    assert!(
        msg.contains("dims 384") && msg.contains("gives 64") && msg.contains("fixed-test"),
        "{msg}"
    );
    index.ensure().await.expect("created");
    let err = index
        .knn(&[1.0; 64], 1, &Filter::all(), &[])
        .await
        .expect_err("query of 64");
    assert!(
        err.to_string().contains("the query vector gives 64"),
        "{err}"
    );
    let err = index
        .load(&[Document::new("x").vector("vec", vec![1.0; 10])])
        .await
        .expect_err("document of 10");
    assert!(err.to_string().contains("document `x` gives 10"), "{err}");
    index.drop_index(true).await.expect("dropped");
}

/// A redis-server from the same bundle, without `--loadmodule`.
fn plain_redis() -> common::OwnRedis {
    common::own_redis(false, |server| {
        format!(
            "{} is missing: install the local Redis with scripts/redis.sh install",
            server.display()
        )
    })
}

#[tokio::test]
async fn redis_without_the_search_module_is_named() {
    let plain = plain_redis();
    let index = VectorIndex::new(connect(&plain.url).await, schema("plain", 4, "")).expect("valid");
    let err = index.ensure().await.expect_err("no module");
    let msg = err.to_string();
    assert!(matches!(err, IndexError::NoSearchModule { .. }), "{msg}");
    assert!(
        msg.contains("Redis has no search module (RediSearch): use Redis Stack / scripts/redis.sh"),
        "{msg}"
    );
    let err = index
        .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all(), &[])
        .await
        .expect_err("no module");
    assert!(matches!(err, IndexError::NoSearchModule { .. }), "{err}");
}
