//! Checking an operation's output against a test case's expected values.
//!
//! An expected mapping lists the fields that must match; fields the output has
//! beyond them are not checked. A mapping whose keys are all matcher names
//! (`pattern`, `type`, `contains`, `min`, `max`) is a matcher, not a value.

use regex::Regex;
use serde_json::Value;
use std::fmt;

/// The matcher names a per-field expectation may use.
pub const MATCHERS: [&str; 5] = ["pattern", "type", "contains", "min", "max"];

/// One way the output differs from what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where in the output, as a JSON pointer ("" is the whole output).
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "output"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Every mismatch between `actual` and `expected`; empty when it matches.
pub fn check(expected: &Value, actual: &Value) -> Vec<Mismatch> {
    let mut out = Vec::new();
    check_at("", expected, actual, &mut out);
    out
}

fn is_matcher(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| !m.is_empty() && m.keys().all(|k| MATCHERS.contains(&k.as_str())))
}

fn check_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<Mismatch>) {
    let mut fail = |message: String| {
        out.push(Mismatch {
            path: path.to_owned(),
            message,
        })
    };
    if is_matcher(expected) {
        let Some(m) = expected.as_object() else {
            return;
        };
        for (name, arg) in m {
            if let Err(message) = apply_matcher(name, arg, actual) {
                fail(message);
            }
        }
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match a.get(k) {
                    Some(av) => check_at(&p, ev, av, out),
                    None => out.push(Mismatch {
                        path: p,
                        message: "expected a value, but the field is missing".into(),
                    }),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                check_at(&format!("{path}/{i}"), ev, av, out);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        _ if expected == actual => {}
        _ => fail(format!("expected {expected}, got {actual}")),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn apply_matcher(name: &str, arg: &Value, actual: &Value) -> Result<(), String> {
    match name {
        "pattern" => {
            let pattern = arg
                .as_str()
                .ok_or("'pattern' needs a regular expression string")?;
            let re =
                Regex::new(pattern).map_err(|e| format!("invalid pattern {pattern:?}: {e}"))?;
            match actual.as_str() {
                Some(s) if re.is_match(s) => Ok(()),
                Some(s) => Err(format!("expected a string matching {pattern:?}, got {s:?}")),
                None => Err(format!(
                    "expected a string matching {pattern:?}, got {actual}"
                )),
            }
        }
        "type" => {
            let want = arg.as_str().ok_or("'type' needs a type name")?;
            let got = type_name(actual);
            if got == want || (want == "number" && got == "integer") {
                Ok(())
            } else {
                Err(format!("expected type {want}, got {got} ({actual})"))
            }
        }
        "contains" => {
            let ok = match (actual, arg) {
                (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
                (Value::Array(items), v) => items.iter().any(|i| check(v, i).is_empty()),
                (Value::Object(m), Value::String(k)) => m.contains_key(k),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("expected {actual} to contain {arg}"))
            }
        }
        "min" | "max" => {
            let bound = arg
                .as_f64()
                .ok_or_else(|| format!("'{name}' needs a number"))?;
            // For strings and arrays the bound applies to the length.
            let (n, what) = match actual {
                Value::Number(n) => (n.as_f64().unwrap_or(f64::NAN), "value"),
                Value::String(s) => (s.chars().count() as f64, "length"),
                Value::Array(a) => (a.len() as f64, "length"),
                _ => {
                    return Err(format!(
                        "expected a number, string or array for '{name}', got {actual}"
                    ));
                }
            };
            let ok = if name == "min" {
                n >= bound
            } else {
                n <= bound
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "expected {what} {} {bound}, got {n}",
                    if name == "min" { ">=" } else { "<=" }
                ))
            }
        }
        _ => Err(format!("unknown matcher '{name}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_values_and_matchers() {
        let expected =
            json!({"code": {"pattern": "^[a-z]{3}$"}, "n": 2, "tags": {"contains": "x"}});
        assert!(
            check(
                &expected,
                &json!({"code": "abc", "n": 2.0, "tags": ["x", "y"], "extra": 1})
            )
            .is_empty()
        );
        let bad = check(&expected, &json!({"code": "ABCD", "n": 3, "tags": []}));
        let paths: Vec<_> = bad.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/code", "/n", "/tags"]);
    }

    #[test]
    fn missing_field_and_bounds() {
        let bad = check(
            &json!({"a": 1, "b": {"min": 3, "max": 5}}),
            &json!({"b": 6}),
        );
        assert_eq!(bad.len(), 2);
        assert!(bad[0].message.contains("missing"));
        assert!(bad[1].message.contains("<= 5"));
        assert!(
            check(
                &json!({"s": {"min": 2, "type": "string"}}),
                &json!({"s": "ab"})
            )
            .is_empty()
        );
    }

    #[test]
    fn type_names() {
        assert!(check(&json!({"type": "integer"}), &json!(3)).is_empty());
        assert!(check(&json!({"type": "number"}), &json!(3)).is_empty());
        assert!(!check(&json!({"type": "integer"}), &json!(3.5)).is_empty());
    }
}
