//! KNN queries on a [`VectorIndex`]: [`KnnQuery`] and its [`Hit`]s, the
//! `FT.SEARCH` sent (the index created again once when it was dropped
//! underneath) and its reply read.

use std::collections::HashMap;
use std::time::Duration;

use super::{
    DISTANCE_FIELD, Filter, IndexError, VectorIndex, as_string, missing_index, vector_bytes,
};

/// One KNN result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document id (the key without the prefix).
    pub id: String,
    /// The Redis key.
    pub key: String,
    /// The distance to the query vector under the schema's metric.
    pub distance: f32,
    /// The requested fields the document has.
    pub fields: HashMap<String, String>,
}

/// How RediSearch combines a KNN query on an HNSW index with its pre-filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HybridPolicy {
    /// Walk the graph in batches of nearest neighbours and keep those the
    /// filter admits: fast when the filter admits a large share of the index.
    Batches,
    /// Compute the distance to every document the filter admits: fast when
    /// it admits few.
    AdhocBruteForce,
}

impl HybridPolicy {
    fn keyword(self) -> &'static str {
        match self {
            Self::Batches => "BATCHES",
            Self::AdhocBruteForce => "ADHOC_BF",
        }
    }
}

/// A KNN query with all its options.
pub struct KnnQuery<'a> {
    /// The query vector.
    pub vector: &'a [f32],
    /// How many neighbours.
    pub k: usize,
    /// The pre-filter.
    pub filter: &'a Filter,
    /// Fields to return with each hit.
    pub return_fields: &'a [&'a str],
    /// HNSW `EF_RUNTIME` for this query (the schema's when `None`).
    pub ef_runtime: Option<u32>,
    /// How a filtered query searches (RediSearch chooses when `None`; ignored
    /// without a filter, where there is nothing to combine).
    pub hybrid_policy: Option<HybridPolicy>,
}

impl VectorIndex {
    /// The `k` nearest documents to `vector` among those `filter` admits,
    /// nearest first, with `return_fields`.
    pub async fn knn(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
        return_fields: &[&str],
    ) -> Result<Vec<Hit>, IndexError> {
        self.search(&KnnQuery {
            vector,
            k,
            filter,
            return_fields,
            ef_runtime: None,
            hybrid_policy: None,
        })
        .await
    }

    /// How many documents `filter` admits.
    pub async fn count(&self, filter: &Filter) -> Result<u64, IndexError> {
        let query = filter.to_query(&self.schema)?;
        let reply: redis::Value = redis::cmd("FT.SEARCH")
            .arg(self.name())
            .arg(&query)
            .arg("LIMIT")
            .arg(0)
            .arg(0)
            .arg("DIALECT")
            .arg(2)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.redis_err("count documents (FT.SEARCH ... LIMIT 0 0)", e))?;
        match &reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                _ => Err(self.reply_err("read a count", format!("{reply:?}"))),
            },
            _ => Err(self.reply_err("read a count", format!("{reply:?}"))),
        }
    }

    /// Runs a KNN query. When the index was dropped underneath, it is created
    /// again once ([`Self::ensure`]) and the query retried, with a warning.
    pub async fn search(&self, query: &KnnQuery<'_>) -> Result<Vec<Hit>, IndexError> {
        let (field, _) = self
            .schema
            .vector_field()
            .ok_or_else(|| IndexError::NoVectorField {
                index: self.name().to_owned(),
            })?;
        self.check_dims(query.vector.len(), "the query vector")?;
        let filter = query.filter.to_query(&self.schema)?;
        let ef = query
            .ef_runtime
            .map(|ef| format!(" EF_RUNTIME {ef}"))
            .unwrap_or_default();
        let policy = match query.hybrid_policy {
            Some(p) if !query.filter.is_empty() => format!(" HYBRID_POLICY {}", p.keyword()),
            _ => String::new(),
        };
        let text = format!(
            "{filter}=>[KNN {} @{} $v{policy}{ef} AS {DISTANCE_FIELD}]",
            query.k, field.name
        );
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(self.name())
            .arg(&text)
            .arg("PARAMS")
            .arg(2)
            .arg("v")
            .arg(vector_bytes(query.vector))
            .arg("SORTBY")
            .arg(DISTANCE_FIELD)
            .arg("ASC")
            .arg("LIMIT")
            .arg(0)
            .arg(query.k)
            .arg("RETURN")
            .arg(query.return_fields.len() + 1)
            .arg(DISTANCE_FIELD)
            .arg(query.return_fields)
            .arg("DIALECT")
            .arg(2);
        let mut conn = self.conn.clone();
        let reply = match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(r) => r,
            Err(e) if missing_index(&e) => {
                tracing::warn!(index = %self.name(), "the index was dropped underneath; creating it again and retrying the query");
                self.ensure().await?;
                // Small indexes are re-scanned at once; a large one answers with what is indexed so far.
                self.wait_indexed(Duration::from_secs(2)).await?;
                cmd.query_async::<redis::Value>(&mut conn)
                    .await
                    .map_err(|e| {
                        self.redis_err("search (FT.SEARCH) after recreating the index", e)
                    })?
            }
            Err(e) => return Err(self.redis_err("search (FT.SEARCH)", e)),
        };
        self.parse_search(reply)
    }

    fn parse_search(&self, reply: redis::Value) -> Result<Vec<Hit>, IndexError> {
        const ACTION: &str = "parse the FT.SEARCH reply";
        let redis::Value::Array(items) = reply else {
            return Err(self.reply_err(ACTION, format!("{reply:?}")));
        };
        let prefix = format!(
            "{}{}",
            self.schema.index.prefix, self.schema.index.key_separator
        );
        let mut hits = Vec::new();
        let mut rest = items.iter().skip(1);
        while let Some(key) = rest.next() {
            let key =
                as_string(key).ok_or_else(|| self.reply_err(ACTION, "a key is not a string"))?;
            let mut fields = HashMap::new();
            if let Some(redis::Value::Array(kv)) = rest.next() {
                for pair in kv.chunks(2) {
                    if let [k, v] = pair
                        && let (Some(k), Some(v)) = (as_string(k), as_string(v))
                    {
                        fields.insert(k, v);
                    }
                }
            }
            let distance = fields
                .remove(DISTANCE_FIELD)
                .and_then(|d| d.parse::<f32>().ok())
                .ok_or_else(|| self.reply_err(ACTION, format!("no distance for `{key}`")))?;
            hits.push(Hit {
                id: key.strip_prefix(&prefix).unwrap_or(&key).to_owned(),
                key,
                distance,
                fields,
            });
        }
        Ok(hits)
    }
}
