//! Canonical JSON and hex digests, shared by the index (schema hashes), the
//! caches (result keys, semantic scopes) and the context index (chunk
//! hashes): `canonical_json`, `sha256_hex` and the lower-case `hex` of bytes.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The JSON text of `value` with object keys sorted at every level and no
/// whitespace: equal values give equal text whatever their key order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "x"}});
        let b: Value = serde_json::from_str(r#"{"a":{"y":"x","z":[true,null]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"y":"x","z":[true,null]},"b":1}"#
        );
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
