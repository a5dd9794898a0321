//! Reply shaping: a [`Prepared`] command's Redis reply as JSON in the shape
//! its table entry gives ([`Reply`]), as redis-py returns it, keys without the
//! feature's prefix.

use super::{Prepared, Reply};
use serde_json::{Map, Value, json};

impl Prepared {
    /// The reply as JSON, in the command's shape.
    pub fn reply(&self, value: redis::Value) -> Value {
        let strip = |v: Value| match v {
            Value::String(s) => Value::String(
                s.strip_prefix(self.prefix.as_str())
                    .map_or_else(|| s.clone(), str::to_owned),
            ),
            other => other,
        };
        match self.reply {
            Reply::Raw => to_json(value),
            Reply::Bool => match value {
                redis::Value::Int(i) => Value::Bool(i != 0),
                redis::Value::Okay => Value::Bool(true),
                redis::Value::SimpleString(s) => Value::Bool(s == "OK" || s == "PONG"),
                redis::Value::Boolean(b) => Value::Bool(b),
                redis::Value::Nil => Value::Bool(false),
                other => to_json(other),
            },
            Reply::SetOk => match value {
                redis::Value::Nil => Value::Null,
                redis::Value::Okay => Value::Bool(true),
                redis::Value::SimpleString(s) if s == "OK" => Value::Bool(true),
                other => to_json(other),
            },
            Reply::Float => float(value),
            Reply::Floats => list(value).into_iter().map(float).collect(),
            Reply::Map => Value::Object(map(value)),
            Reply::Scores | Reply::ScorePairs => Value::Array(score_pairs(value)),
            Reply::Rank => match value {
                redis::Value::Array(items) if items.len() == 2 => {
                    let mut items = items.into_iter();
                    let rank = items.next().map(to_json).unwrap_or_default();
                    json!([rank, items.next().map(float).unwrap_or_default()])
                }
                other => to_json(other),
            },
            Reply::Entries => entries(value),
            Reply::XRead => Value::Array(
                list(value)
                    .into_iter()
                    .map(|stream| {
                        let mut parts = list(stream).into_iter();
                        let name = parts.next().map(to_json).map(strip).unwrap_or_default();
                        json!([name, parts.next().map(entries).unwrap_or_else(|| json!([]))])
                    })
                    .collect(),
            ),
            Reply::Scan | Reply::HScan | Reply::SScan | Reply::ZScan => {
                let mut parts = list(value).into_iter();
                let cursor = parts.next().map(to_json).unwrap_or_default();
                let cursor = match cursor {
                    Value::String(s) => s.parse::<u64>().map_or(Value::String(s), Value::from),
                    other => other,
                };
                let items = parts.next().unwrap_or(redis::Value::Nil);
                let items = match self.reply {
                    Reply::HScan => Value::Object(map(items)),
                    Reply::ZScan => Value::Array(score_pairs(items)),
                    Reply::Scan => {
                        Value::Array(list(items).into_iter().map(to_json).map(strip).collect())
                    }
                    _ => Value::Array(list(items).into_iter().map(to_json).collect()),
                };
                json!([cursor, items])
            }
            Reply::Json => json_text(value),
            Reply::JsonEach => match value {
                redis::Value::Array(items) => {
                    Value::Array(items.into_iter().map(json_text).collect())
                }
                other => json_text(other),
            },
            Reply::Search => search_results(value, &self.prefix),
        }
    }
}

/// The elements of an array reply (nothing for nil).
fn list(value: redis::Value) -> Vec<redis::Value> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// Flat field/value pairs as an object.
fn map(value: redis::Value) -> Map<String, Value> {
    let mut obj = Map::new();
    let mut items = list(value).into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let key = match to_json(k) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        obj.insert(key, to_json(v));
    }
    obj
}

/// A score sent as text, as a JSON number (or "inf", "-inf", "nan").
fn float(value: redis::Value) -> Value {
    let text = match value {
        redis::Value::Nil => return Value::Null,
        redis::Value::Double(d) => return f64_json(d),
        redis::Value::Int(i) => return Value::from(i as f64),
        other => match to_json(other) {
            Value::String(s) => s,
            other => return other,
        },
    };
    match text.parse::<f64>() {
        Ok(d) => f64_json(d),
        Err(_) => Value::String(text),
    }
}

fn f64_json(d: f64) -> Value {
    serde_json::Number::from_f64(d).map_or_else(
        || {
            Value::String(
                if d.is_nan() {
                    "nan"
                } else if d > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
                .into(),
            )
        },
        Value::Number,
    )
}

/// `member, score, member, score` (or RESP3 pairs) as `[[member, score], ...]`.
fn score_pairs(value: redis::Value) -> Vec<Value> {
    let items = list(value);
    if items
        .iter()
        .all(|i| matches!(i, redis::Value::Array(p) if p.len() == 2))
        && !items.is_empty()
    {
        return items
            .into_iter()
            .map(|pair| {
                let mut p = list(pair).into_iter();
                json!([
                    p.next().map(to_json).unwrap_or_default(),
                    p.next().map(float).unwrap_or_default()
                ])
            })
            .collect();
    }
    let mut out = Vec::new();
    let mut items = items.into_iter();
    while let (Some(m), Some(s)) = (items.next(), items.next()) {
        out.push(json!([to_json(m), float(s)]));
    }
    out
}

/// Stream entries `[[id, [field, value, ...]], ...]` as `[[id, {field: value}], ...]`.
fn entries(value: redis::Value) -> Value {
    Value::Array(
        list(value)
            .into_iter()
            .map(|entry| {
                let mut parts = list(entry).into_iter();
                let id = parts.next().map(to_json).unwrap_or_default();
                json!([id, Value::Object(parts.next().map(map).unwrap_or_default())])
            })
            .collect(),
    )
}

/// A JSON text reply parsed (text that does not parse stays text).
fn json_text(value: redis::Value) -> Value {
    match to_json(value) {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// A Redis reply as JSON: bulk strings as (lossy UTF-8) text, maps as objects.
pub fn to_json(v: redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(i) => Value::from(i),
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s),
        redis::Value::Okay => Value::String("OK".into()),
        redis::Value::Double(d) => f64_json(d),
        redis::Value::Boolean(b) => Value::Bool(b),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(to_json).collect())
        }
        redis::Value::Map(pairs) => {
            let mut obj = Map::new();
            for (k, v) in pairs {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(key, to_json(v));
            }
            Value::Object(obj)
        }
        redis::Value::VerbatimString { text, .. } => Value::String(text),
        other => Value::String(format!("{other:?}")),
    }
}

/// An FT.SEARCH reply as `{"total", "results": [{"key", "fields"}]}`, keys without `prefix`.
pub fn search_results(reply: redis::Value, prefix: &str) -> Value {
    let strip = |k: Value| match k {
        Value::String(s) => Value::String(
            s.strip_prefix(prefix)
                .map_or_else(|| s.clone(), str::to_owned),
        ),
        other => other,
    };
    match reply {
        // RESP2: [total, key, [field, value, ...], key, [...], ...]
        redis::Value::Array(items) if matches!(items.first(), Some(redis::Value::Int(_))) => {
            let mut items = items.into_iter();
            let total = items.next().map(to_json).unwrap_or(Value::Null);
            let mut results = Vec::new();
            while let Some(key) = items.next() {
                let fields = items.next().map(map).unwrap_or_default();
                results.push(json!({"key": strip(to_json(key)), "fields": fields}));
            }
            json!({"total": total, "results": results})
        }
        // RESP3: {"total_results", "results": [{"id", "extra_attributes"}]}
        other => {
            let mut value = to_json(other);
            let total = value.get("total_results").cloned().unwrap_or(Value::Null);
            match value.get_mut("results").map(Value::take) {
                Some(Value::Array(rs)) => {
                    let results: Vec<Value> = rs
                        .into_iter()
                        .map(|mut r| {
                            let key = strip(r.get_mut("id").map(Value::take).unwrap_or_default());
                            let fields = r
                                .get_mut("extra_attributes")
                                .map(Value::take)
                                .unwrap_or_else(|| json!({}));
                            json!({"key": key, "fields": fields})
                        })
                        .collect();
                    json!({"total": total, "results": results})
                }
                _ => value,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::{Refused, Scope};

    fn prepare(parts: &[Value]) -> Result<Prepared, Refused> {
        Scope::new("eol:shop:".into()).prepare(parts.to_vec())
    }

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_take_redis_py_shapes() {
        let p = prepare(&[
            json!("ZREVRANGE"),
            json!("z"),
            json!(0),
            json!(1),
            json!("WITHSCORES"),
        ])
        .unwrap();
        let reply = redis::Value::Array(vec![bulk("a"), bulk("15"), bulk("b"), bulk("inf")]);
        assert_eq!(p.reply(reply), json!([["a", 15.0], ["b", "inf"]]));
        let p = prepare(&[json!("HGETALL"), json!("h")]).unwrap();
        let reply = redis::Value::Array(vec![bulk("f"), bulk("v")]);
        assert_eq!(p.reply(reply), json!({"f": "v"}));
        let p = prepare(&[json!("SCAN"), json!(0)]).unwrap();
        let reply = redis::Value::Array(vec![
            bulk("17"),
            redis::Value::Array(vec![bulk("eol:shop:a"), bulk("eol:shop:b")]),
        ]);
        assert_eq!(p.reply(reply), json!([17, ["a", "b"]]));
        let p = prepare(&[json!("XRANGE"), json!("s"), json!("-"), json!("+")]).unwrap();
        let reply = redis::Value::Array(vec![redis::Value::Array(vec![
            bulk("1-0"),
            redis::Value::Array(vec![bulk("k"), bulk("v")]),
        ])]);
        assert_eq!(p.reply(reply), json!([["1-0", {"k": "v"}]]));
        let p = prepare(&[json!("SET"), json!("a"), json!(1), json!("NX")]).unwrap();
        assert_eq!(p.reply(redis::Value::Nil), Value::Null);
        assert_eq!(p.reply(redis::Value::Okay), json!(true));
        let p = prepare(&[json!("EXPIRE"), json!("a"), json!(1)]).unwrap();
        assert_eq!(p.reply(redis::Value::Int(0)), json!(false));
        let p = prepare(&[json!("JSON.GET"), json!("d")]).unwrap();
        assert_eq!(p.reply(bulk("{\"a\":[1]}")), json!({"a": [1]}));
        assert_eq!(p.reply(redis::Value::Nil), Value::Null);
    }
}
