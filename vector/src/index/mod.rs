//! Vector index schemas declared in YAML (the RedisVL schema format) and the
//! RediSearch index built from one: idempotent creation, schema-change
//! detection and recreation, document loading and KNN queries with tag and
//! numeric filters.
//!
//! ```yaml
//! index: {name: docs, prefix: doc, storage_type: hash}
//! fields:
//!   - {name: feature, type: tag}
//!   - {name: body, type: text}
//!   - {name: year, type: numeric}
//!   - name: embedding
//!     type: vector
//!     attrs: {algorithm: hnsw, dims: 384, distance_metric: cosine, datatype: float32, m: 16, ef_construction: 200, ef_runtime: 10}
//! ```
//!
//! A document with id `x` lives in the Redis HASH `<prefix><key_separator>x`
//! (`doc:x`); vectors are stored as little-endian `f32` bytes.
//!
//! The `schema` module reads and checks schemas, `filter` builds the
//! pre-filters of queries, `document` the documents to load and `search` runs
//! KNN queries; this module owns the index itself ([`VectorIndex`]: creation,
//! schema changes, status, loading) and its errors.

mod document;
mod filter;
mod schema;
mod search;

pub use document::{Document, FieldValue, vector_bytes};
pub use filter::{Filter, escape_tag};
pub use schema::{
    Algorithm, DistanceMetric, FieldAttrs, FieldSpec, FieldType, IndexInfo, IndexSchema,
    SchemaError, VectorParams,
};
pub use search::{Hit, HybridPolicy, KnnQuery};

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::Embedder;

/// The alias of the KNN distance in queries; no schema field may use it.
pub const DISTANCE_FIELD: &str = "__vector_distance";

/// HSET commands sent per pipeline round trip by [`VectorIndex::load`]:
/// HNSW insertion costs about a millisecond per vector, so a round trip stays
/// well under the client's response timeout (500 ms by default).
const LOAD_BATCH: usize = 100;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The server answers `unknown command 'FT.*'`.
    #[error(
        "Redis has no search module (RediSearch): use Redis Stack / scripts/redis.sh (the server said: {message})"
    )]
    NoSearchModule {
        /// The server's reply.
        message: String,
    },
    /// The live index was created from another schema and recreation is not allowed.
    #[error(
        "the schema of index `{index}` changed (live schema hash {live}, declared {declared}); to migrate, allow \
         recreation (SchemaChangePolicy::Recreate: the index is dropped without its documents and created again, \
         RediSearch re-indexes the existing hashes) or drop it by hand with `FT.DROPINDEX {index}`"
    )]
    SchemaChanged {
        /// The index name.
        index: String,
        /// The hash stored when the live index was created (`none` when it was not created by EOL).
        live: String,
        /// The hash of the declared schema.
        declared: String,
    },
    /// Vectors of one length meet an index field of another.
    #[error(
        "dimension mismatch for index `{index}` field `{field}`: the schema declares dims {schema_dims} but {source_name} gives {actual} dimensions; \
         make the schema's dims {actual} (or use an embedder of {schema_dims} dimensions)"
    )]
    DimensionMismatch {
        /// The index name.
        index: String,
        /// The vector field.
        field: String,
        /// The dimension the schema declares.
        schema_dims: usize,
        /// The dimension met.
        actual: usize,
        /// What gave the vector (`embedder `all-MiniLM-L6-v2``, `the query vector`, `document `x``).
        source_name: String,
    },
    /// A filter names a field the schema lacks or uses it with the wrong type.
    #[error("invalid filter for index `{index}`: field `{field}`: {problem}")]
    Filter {
        /// The index name.
        index: String,
        /// The field named by the filter.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The schema has no vector field to search.
    #[error("index `{index}` has no vector field: KNN needs one in its schema")]
    NoVectorField {
        /// The index name.
        index: String,
    },
    /// A Redis command failed.
    #[error("failed to {action} for index `{index}`: {source}")]
    Redis {
        /// What was being done.
        action: String,
        /// The index name.
        index: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A reply did not have the expected shape.
    #[error("failed to {action} for index `{index}`: unexpected reply: {detail}")]
    Reply {
        /// What was being done.
        action: String,
        /// The index name.
        index: String,
        /// What was unexpected.
        detail: String,
    },
}

/// What [`VectorIndex::ensure`] does when the live index has another schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaChangePolicy {
    /// Fail with [`IndexError::SchemaChanged`], which says how to migrate.
    #[default]
    Error,
    /// Drop the index (keeping the documents) and create it again; RediSearch
    /// re-indexes the existing hashes in the background.
    Recreate,
}

/// What [`VectorIndex::ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// The index did not exist and was created.
    Created,
    /// The index exists with this schema.
    Unchanged,
    /// The index existed with another schema and was recreated.
    Recreated,
}

/// A RediSearch index built from an [`IndexSchema`].
#[derive(Clone)]
pub struct VectorIndex {
    schema: IndexSchema,
    hash: String,
    conn: ConnectionManager,
    policy: SchemaChangePolicy,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("name", &self.schema.index.name)
            .field("hash", &self.hash)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The server's message in lower case, whole: the client splits
/// `Unknown index name` into a code (`Unknown`) and a detail.
fn message(e: &redis::RedisError) -> String {
    e.to_string()
        .to_ascii_lowercase()
        .replace('"', "")
        .replace(": ", " ")
}

/// Whether the server lacks RediSearch, judged from an error.
fn no_module(e: &redis::RedisError) -> bool {
    let s = message(e);
    s.contains("unknown command") && s.contains("ft.")
}

/// Whether an error says the index does not exist.
fn missing_index(e: &redis::RedisError) -> bool {
    let s = message(e);
    s.contains("unknown index name") || s.contains("no such index")
}

fn as_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        redis::Value::Okay => Some("OK".into()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Live state of an index from `FT.INFO`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStatus {
    /// Documents indexed.
    pub num_docs: u64,
    /// Whether a background scan (after creation) is still running.
    pub indexing: bool,
    /// Fraction of the existing keys scanned, in `[0, 1]`.
    pub percent_indexed: f64,
}

impl VectorIndex {
    /// An index for `schema` on `conn` (nothing is sent until [`Self::ensure`]).
    pub fn new(conn: ConnectionManager, schema: IndexSchema) -> Result<Self, SchemaError> {
        schema.validate()?;
        Ok(Self {
            hash: schema.hash(),
            schema,
            conn,
            policy: SchemaChangePolicy::Error,
        })
    }

    /// Sets what [`Self::ensure`] does on a schema change.
    pub fn with_policy(mut self, policy: SchemaChangePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Opens the index `<base>-<dims>` (`dims` of `embedder`) with the schema
    /// `schema(name, dims)` for the vectors of `embedder`, creating it, or
    /// recreating it on a schema change: for an index of what can be rebuilt.
    pub(crate) async fn open_recreatable<E>(
        conn: ConnectionManager,
        embedder: &dyn Embedder,
        base: &str,
        schema: impl FnOnce(&str, usize) -> IndexSchema,
    ) -> Result<Self, E>
    where
        E: From<SchemaError> + From<IndexError>,
    {
        let dims = embedder.dimension();
        let index = Self::new(conn, schema(&format!("{base}-{dims}"), dims))?
            .with_policy(SchemaChangePolicy::Recreate);
        index.check_embedder(embedder)?;
        index.ensure().await?;
        Ok(index)
    }

    /// The schema.
    pub fn schema(&self) -> &IndexSchema {
        &self.schema
    }

    /// The connection the index uses.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.schema.index.name
    }

    /// The key holding the hash of the schema the live index was created from.
    pub fn schema_hash_key(&self) -> String {
        format!("eol:index-schema:{}", self.schema.index.name)
    }

    fn redis_err(&self, action: &str, source: redis::RedisError) -> IndexError {
        if no_module(&source) {
            IndexError::NoSearchModule {
                message: source.to_string(),
            }
        } else {
            IndexError::Redis {
                action: action.to_owned(),
                index: self.schema.index.name.clone(),
                source,
            }
        }
    }

    fn reply_err(&self, action: &str, detail: impl Into<String>) -> IndexError {
        IndexError::Reply {
            action: action.to_owned(),
            index: self.schema.index.name.clone(),
            detail: detail.into(),
        }
    }

    /// Fails when `embedder`'s vectors do not have the schema's dimension.
    pub fn check_embedder(&self, embedder: &dyn Embedder) -> Result<(), IndexError> {
        self.check_dims(
            embedder.dimension(),
            &format!("embedder `{}`", embedder.model_id()),
        )
    }

    fn check_dims(&self, actual: usize, source_name: &str) -> Result<(), IndexError> {
        let (field, params) =
            self.schema
                .vector_field()
                .ok_or_else(|| IndexError::NoVectorField {
                    index: self.schema.index.name.clone(),
                })?;
        if params.dims != actual {
            return Err(IndexError::DimensionMismatch {
                index: self.schema.index.name.clone(),
                field: field.name.clone(),
                schema_dims: params.dims,
                actual,
                source_name: source_name.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the index exists on the server.
    pub async fn exists(&self) -> Result<bool, IndexError> {
        match self.info_raw().await {
            Ok(_) => Ok(true),
            Err(e) if missing_index(&e) => Ok(false),
            Err(e) => Err(self.redis_err("read FT.INFO", e)),
        }
    }

    async fn info_raw(&self) -> redis::RedisResult<redis::Value> {
        let mut conn = self.conn.clone();
        redis::cmd("FT.INFO")
            .arg(&self.schema.index.name)
            .query_async(&mut conn)
            .await
    }

    /// The live state of the index (`FT.INFO`).
    pub async fn status(&self) -> Result<IndexStatus, IndexError> {
        let info = self
            .info_raw()
            .await
            .map_err(|e| self.redis_err("read FT.INFO", e))?;
        let pairs: Vec<(String, &redis::Value)> = match &info {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|c| match c {
                    [k, v] => as_string(k).map(|k| (k, v)),
                    _ => None,
                })
                .collect(),
            redis::Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| as_string(k).map(|k| (k, v)))
                .collect(),
            other => return Err(self.reply_err("read FT.INFO", format!("{other:?}"))),
        };
        let get = |name: &str| -> Option<f64> {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| as_string(v))
                .and_then(|s| s.parse().ok())
        };
        Ok(IndexStatus {
            num_docs: get("num_docs").unwrap_or(0.0) as u64,
            indexing: get("indexing").unwrap_or(0.0) != 0.0,
            percent_indexed: get("percent_indexed").unwrap_or(1.0),
        })
    }

    /// Waits until the background scan that follows creation has finished.
    pub async fn wait_indexed(&self, timeout: Duration) -> Result<IndexStatus, IndexError> {
        let start = Instant::now();
        loop {
            let status = self.status().await?;
            if !status.indexing || start.elapsed() >= timeout {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create(&self) -> Result<bool, IndexError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("FT.CREATE")
            .arg(&self.schema.index.name)
            .arg(self.schema.create_args())
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            // Another process created it between our check and our create.
            Err(e)
                if e.to_string()
                    .to_ascii_lowercase()
                    .contains("index already exists") =>
            {
                return Ok(false);
            }
            Err(e) => return Err(self.redis_err("create the index (FT.CREATE)", e)),
        }
        let _: () = redis::cmd("SET")
            .arg(self.schema_hash_key())
            .arg(&self.hash)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("store the schema hash", e))?;
        Ok(true)
    }

    /// Creates the index if it is missing; when it exists with another schema,
    /// recreates it or fails, as the [`SchemaChangePolicy`] says.
    pub async fn ensure(&self) -> Result<EnsureOutcome, IndexError> {
        if !self.exists().await? && self.create().await? {
            tracing::info!(index = %self.name(), "created the vector index");
            return Ok(EnsureOutcome::Created);
        }
        let mut conn = self.conn.clone();
        let live: Option<String> = redis::cmd("GET")
            .arg(self.schema_hash_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("read the schema hash", e))?;
        if live.as_deref() == Some(self.hash.as_str()) {
            return Ok(EnsureOutcome::Unchanged);
        }
        let live = live.unwrap_or_else(|| "none".to_owned());
        if self.policy == SchemaChangePolicy::Error {
            return Err(IndexError::SchemaChanged {
                index: self.name().to_owned(),
                live,
                declared: self.hash.clone(),
            });
        }
        tracing::warn!(index = %self.name(), live = %live, declared = %self.hash,
            "the index schema changed: dropping the index (documents kept) and creating it again");
        self.drop_index(false).await?;
        self.create().await?;
        Ok(EnsureOutcome::Recreated)
    }

    /// Drops the index; its documents too when `delete_documents`. A missing index is not an error.
    pub async fn drop_index(&self, delete_documents: bool) -> Result<(), IndexError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("FT.DROPINDEX");
        cmd.arg(self.name());
        if delete_documents {
            cmd.arg("DD");
        }
        match cmd.query_async::<()>(&mut conn).await {
            Ok(()) => {}
            Err(e) if missing_index(&e) => {}
            Err(e) => return Err(self.redis_err("drop the index (FT.DROPINDEX)", e)),
        }
        let _: () = redis::cmd("DEL")
            .arg(self.schema_hash_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("delete the schema hash", e))?;
        Ok(())
    }

    /// Writes documents (HSET, plus EXPIRE when they have a TTL), pipelined in batches.
    pub async fn load(&self, docs: &[Document]) -> Result<(), IndexError> {
        let vector = self
            .schema
            .vector_field()
            .map(|(f, p)| (f.name.clone(), p.dims));
        for doc in docs {
            for (name, value) in &doc.fields {
                if let (FieldValue::Vector(v), Some((field, dims))) = (value, &vector)
                    && name == field
                    && v.len() != *dims
                {
                    return Err(IndexError::DimensionMismatch {
                        index: self.name().to_owned(),
                        field: field.clone(),
                        schema_dims: *dims,
                        actual: v.len(),
                        source_name: format!("document `{}`", doc.id),
                    });
                }
            }
        }
        let mut conn = self.conn.clone();
        for batch in docs.chunks(LOAD_BATCH) {
            let mut pipe = redis::pipe();
            for doc in batch {
                let key = self.schema.key(&doc.id);
                let mut hset = redis::cmd("HSET");
                hset.arg(&key);
                for (name, value) in &doc.fields {
                    hset.arg(name);
                    match value {
                        FieldValue::Text(s) => hset.arg(s),
                        FieldValue::Number(x) => hset.arg(x.to_string()),
                        FieldValue::Vector(v) => hset.arg(vector_bytes(v)),
                        FieldValue::Bytes(b) => hset.arg(b.as_slice()),
                    };
                }
                pipe.add_command(hset).ignore();
                if let Some(ttl) = doc.ttl {
                    pipe.cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl.as_millis().max(1) as u64)
                        .ignore();
                }
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.redis_err("load documents (HSET)", e))?;
        }
        Ok(())
    }
}
