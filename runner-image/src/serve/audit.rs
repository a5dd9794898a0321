//! The audit record of each call: one JSON line on stdout (logs go to
//! stderr, so the two never mix) and, when asked, an entry of the feature's
//! Redis stream `eol-audit:<feature>`, trimmed to about a set length. The
//! stream is outside the feature's keys (`eol:<feature>:`), so the feature's
//! own code cannot write to it.
//!
//! A record says who called (user and groups), what (feature, operation),
//! in which phase, the outcome, the duration, the input's SHA-256 and the
//! trace id. It never holds the input itself unless the Feature asks.

use crate::store::RedisStore;
use eol_core::runner_contract::env;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

/// Where audit records go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    /// One line per call on stdout.
    pub stdout: bool,
    /// Also `XADD` to `eol-audit:<feature>`, trimmed to about this many entries.
    pub stream_max_length: Option<u64>,
    /// Keep the input itself in the record.
    pub include_input: bool,
}

impl AuditSettings {
    /// From `EOL_AUDIT`, `EOL_AUDIT_STREAM_MAX_LENGTH` and `EOL_AUDIT_INPUT`.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let stdout = match set(env::AUDIT).as_deref() {
            None | Some("off") => false,
            Some("stdout") => true,
            Some(other) => {
                return Err(format!(
                    "{}={other:?}: expected `stdout` or `off`",
                    env::AUDIT
                ));
            }
        };
        let stream_max_length = match set(env::AUDIT_STREAM_MAX_LENGTH) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "{}={v:?}: expected a number of entries above 0",
                        env::AUDIT_STREAM_MAX_LENGTH
                    ));
                }
            },
        };
        Ok(Self {
            stdout,
            stream_max_length,
            include_input: set(env::AUDIT_INPUT).is_some_and(|v| v == "true"),
        })
    }

    /// Whether any record is written.
    pub fn is_on(&self) -> bool {
        self.stdout || self.stream_max_length.is_some()
    }
}

/// One call, as audited.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// When the call ended (RFC 3339, UTC).
    pub time: String,
    /// Always `"eol.audit"`, to tell records from other lines.
    pub record: &'static str,
    /// Who called.
    pub user: &'a str,
    /// Their groups.
    pub groups: &'a [String],
    /// The feature.
    pub feature: &'a str,
    /// The operation.
    pub operation: &'a str,
    /// The phase that answered, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `ok`, or the error's kind (`forbidden`, `invalid_input`, ...).
    pub outcome: &'a str,
    /// The HTTP status answered.
    pub status: u16,
    /// How long the call took, in milliseconds.
    pub duration_ms: f64,
    /// The SHA-256 of the request body, hex; none when it was not read (a refused call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    /// The call's trace id, when it is traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The async call's id: the record of the request that queued it (outcome
    /// `queued`) and the record of its run share it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<&'a str>,
    /// The input itself, only when the Feature asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// Writes audit records where [`AuditSettings`] say.
#[derive(Debug)]
pub struct Auditor {
    settings: AuditSettings,
    store: Arc<RedisStore>,
    stream: String,
}

impl Auditor {
    /// An auditor for `feature`, whose stream lives in `store`.
    pub fn new(settings: AuditSettings, feature: &str, store: Arc<RedisStore>) -> Self {
        Self {
            settings,
            store,
            stream: audit_stream(feature),
        }
    }

    /// Whether any record is written.
    pub fn is_on(&self) -> bool {
        self.settings.is_on()
    }

    /// Whether records keep the input.
    pub fn includes_input(&self) -> bool {
        self.settings.include_input
    }

    /// Writes `record`: the stdout line at once, the stream entry in the
    /// background (the answer does not wait for Redis). A stream that cannot be
    /// written to is reported on stderr; the call is not failed for it.
    pub fn write(&self, record: &AuditRecord<'_>) {
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        if self.settings.stdout {
            let mut out = std::io::stdout().lock();
            // One write per line: concurrent calls never interleave within a record.
            let _ = out.write_all(format!("{line}\n").as_bytes());
            let _ = out.flush();
        }
        if let Some(max) = self.settings.stream_max_length
            && self.store.is_configured()
        {
            let (store, stream) = (self.store.clone(), self.stream.clone());
            tokio::spawn(async move {
                if let Err(e) = store.append_audit(&stream, max, &line).await {
                    tracing::warn!(%stream, error = %e, "failed to append an audit record");
                }
            });
        }
    }
}

/// The Redis stream holding `feature`'s audit records.
pub fn audit_stream(feature: &str) -> String {
    format!("eol-audit:{feature}")
}

/// The hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, as RFC 3339 in UTC.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AuditSettings, String> {
        let vars: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        AuditSettings::from_vars(|name| vars.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn audit_settings_read_from_the_environment() {
        assert_eq!(settings(&[]), Ok(AuditSettings::default()));
        let s = settings(&[
            (env::AUDIT, "stdout"),
            (env::AUDIT_STREAM_MAX_LENGTH, "1000"),
            (env::AUDIT_INPUT, "true"),
        ])
        .unwrap();
        assert!(s.stdout && s.include_input && s.is_on());
        assert_eq!(s.stream_max_length, Some(1000));
        for bad in [(env::AUDIT, "syslog"), (env::AUDIT_STREAM_MAX_LENGTH, "0")] {
            let err = settings(&[bad]).unwrap_err();
            assert!(err.contains(bad.0), "{err}");
        }
    }

    #[test]
    fn a_record_holds_the_input_only_when_asked() {
        let groups = vec!["system:serviceaccounts".to_owned()];
        let mut record = AuditRecord {
            time: now(),
            record: "eol.audit",
            user: "system:serviceaccount:shop:caller",
            groups: &groups,
            feature: "orders",
            operation: "place",
            phase: Some("implementation".to_owned()),
            outcome: "ok",
            status: 200,
            duration_ms: 1.5,
            input_sha256: Some(sha256_hex(b"{}")),
            trace_id: None,
            call_id: None,
            input: None,
        };
        let line = serde_json::to_value(&record).unwrap();
        assert_eq!(
            line["input_sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(line.get("input").is_none() && line.get("trace_id").is_none());
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        record.input = Some(serde_json::json!({"sku": "A"}));
        let line = serde_json::to_value(&record).unwrap();
        assert_eq!(line["input"]["sku"], "A");
    }
}
