//! Documents to load into an index: [`Document`] (an id, fields and an
//! optional TTL), its [`FieldValue`]s, and vectors as the bytes RediSearch
//! reads.

use std::time::Duration;

/// A vector as the little-endian `f32` bytes RediSearch reads.
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One value of a document field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string (tag or text or unindexed).
    Text(String),
    /// A number.
    Number(f64),
    /// A vector, stored as little-endian `f32` bytes.
    Vector(Vec<f32>),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// A document to load into an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its id (the key is `<prefix><separator><id>`).
    pub id: String,
    /// Its fields; names outside the schema are stored but not indexed.
    pub fields: Vec<(String, FieldValue)>,
    /// Seconds until the document expires, if it should.
    pub ttl: Option<Duration>,
}

impl Document {
    /// An empty document.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            fields: Vec::new(),
            ttl: None,
        }
    }

    /// Adds a string field (tag, text, or unindexed).
    pub fn text(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields
            .push((name.into(), FieldValue::Text(value.into())));
        self
    }

    /// Adds a numeric field.
    pub fn number(mut self, name: impl Into<String>, value: f64) -> Self {
        self.fields.push((name.into(), FieldValue::Number(value)));
        self
    }

    /// Adds a vector field.
    pub fn vector(mut self, name: impl Into<String>, value: Vec<f32>) -> Self {
        self.fields.push((name.into(), FieldValue::Vector(value)));
        self
    }

    /// Makes the document expire after `ttl`.
    pub fn expire(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}
