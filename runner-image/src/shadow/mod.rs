//! The runner's side of a shadow switch ([`eol_core::shadow`] is the contract):
//!
//! - [`candidate`]: a pod started with `EOL_SHADOW_ID` publishes its offer once
//!   ready, answers copied calls by running them in a scratch keyspace and
//!   comparing its output with the serving one, and shows the tally;
//! - [`serving`]: every other `eol serve` with a shared Redis watches for an
//!   offer, copies a sample of its successful calls to the candidate off the
//!   response path, and records each verdict in one Redis transaction;
//! - [`canary`]: when the offer carries a canary share (set on the candidate
//!   by the operator, `PUT /v1/shadow/canary`), a serving pod forwards that
//!   share of its live calls to the candidate and returns its answer; when
//!   the candidate fails one (5xx, timeout) the serving pod answers it
//!   itself, and either way counts it (`canary_routed`, `canary_failed`);
//! - [`tally`]: the counts and disagreements the candidate shows.

pub mod canary;
pub mod candidate;
pub mod serving;
pub mod tally;

use eol_core::shadow::{Offer, ShadowToken, env};
use std::str::FromStr;

pub use candidate::Candidate;
pub use serving::ShadowSender;

/// A candidate pod's shadow settings, from the [`env`] variables the operator sets.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSettings {
    /// The shadow's id ([`env::ID`]).
    pub id: String,
    /// The candidate's base URL as serving pods reach it ([`env::URL`]).
    pub url: String,
    /// Share of serving calls to copy, in percent (0-100).
    pub sample_percent: f64,
    /// Operations to copy; empty: all.
    pub operations: Vec<String>,
    /// Bytes of each input and output shown in the tally; 0: none.
    pub preview_bytes: usize,
    /// Disagreements kept per operation.
    pub max_disagreements: usize,
    /// Seconds the verdicts and samples stay in Redis.
    pub ttl_seconds: u64,
    /// Seconds a serving pod waits for this candidate's answer.
    pub timeout_seconds: f64,
}

/// Why the shadow settings of a candidate pod are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `EOL_SHADOW_ID` is set without `EOL_SHADOW_URL`.
    #[error(
        "{id_var} is set but {url_var} is not: a shadow candidate needs the base URL serving pods reach it at",
        id_var = env::ID,
        url_var = env::URL
    )]
    MissingUrl,
    /// A variable does not hold a value of its kind.
    #[error("failed to read {name}='{value}' as a shadow setting: {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl CandidateSettings {
    /// The settings in the process's environment; `None` when `EOL_SHADOW_ID`
    /// is unset or empty (this pod is not a candidate).
    pub fn from_env() -> Result<Option<Self>, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings `lookup` gives (a variable's value by name).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let Some(id) = lookup(env::ID).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let url = lookup(env::URL)
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .ok_or(SettingsError::MissingUrl)?;
        let sample_percent: f64 = number(&lookup, env::SAMPLE_PERCENT, 100.0, "a percentage")?;
        if !(0.0..=100.0).contains(&sample_percent) {
            return Err(SettingsError::Invalid {
                name: env::SAMPLE_PERCENT,
                value: sample_percent.to_string(),
                expected: "a percentage from 0 to 100",
            });
        }
        let timeout_seconds: f64 = number(&lookup, env::TIMEOUT_SECONDS, 10.0, "seconds")?;
        if !(timeout_seconds.is_finite() && timeout_seconds > 0.0) {
            return Err(SettingsError::Invalid {
                name: env::TIMEOUT_SECONDS,
                value: timeout_seconds.to_string(),
                expected: "a positive number of seconds",
            });
        }
        let operations = lookup(env::OPERATIONS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(Self {
            id: id.trim().to_owned(),
            url,
            sample_percent,
            operations,
            preview_bytes: number(&lookup, env::PREVIEW_BYTES, 256, "a number of bytes")?,
            max_disagreements: number(&lookup, env::MAX_DISAGREEMENTS, 5, "a count")?,
            ttl_seconds: number(&lookup, env::TTL_SECONDS, 86_400, "seconds")?,
            timeout_seconds,
        }))
    }

    /// What this candidate publishes for the serving pods, before any canary
    /// share is set (see [`Candidate::offer`]).
    pub fn offer(&self) -> Offer {
        Offer {
            id: self.id.clone(),
            url: self.url.clone(),
            sample_percent: self.sample_percent,
            operations: self.operations.clone(),
            max_disagreements: self.max_disagreements,
            ttl_seconds: self.ttl_seconds,
            timeout_seconds: self.timeout_seconds,
            canary_percent: 0.0,
            token: ShadowToken::default(),
        }
    }
}

/// Variable `name` read as a `T`, or `default` when unset or empty.
fn number<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, SettingsError> {
    match lookup(name).map(|v| v.trim().to_owned()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) => v.parse().map_err(|_| SettingsError::Invalid {
            name,
            value: v,
            expected,
        }),
    }
}

/// The current time in RFC 3339 (UTC, milliseconds): fixed width, so the
/// newest sorts last as text.
pub fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `seconds` after the Unix epoch (and `millis`) in RFC 3339, UTC.
fn rfc3339(seconds: u64, millis: u32) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil: no date crate for one timestamp format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<CandidateSettings>, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CandidateSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn without_an_id_the_pod_is_not_a_candidate() {
        assert_eq!(settings(&[]).ok(), Some(None));
        assert_eq!(settings(&[(env::ID, " ")]).ok(), Some(None));
    }

    #[test]
    fn an_id_without_a_url_is_a_clear_error() {
        let error = settings(&[(env::ID, "c-1")]).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "EOL_SHADOW_ID is set but EOL_SHADOW_URL is not: a shadow candidate needs the base URL serving pods reach it at"
            )
        );
    }

    #[test]
    fn unset_settings_take_their_defaults_and_set_ones_are_read() {
        let defaults = settings(&[(env::ID, "c-1"), (env::URL, "http://c:8080/")])
            .ok()
            .flatten();
        assert_eq!(
            defaults,
            Some(CandidateSettings {
                id: "c-1".into(),
                url: "http://c:8080".into(),
                sample_percent: 100.0,
                operations: Vec::new(),
                preview_bytes: 256,
                max_disagreements: 5,
                ttl_seconds: 86_400,
                timeout_seconds: 10.0,
            })
        );
        let set = settings(&[
            (env::ID, "c-1"),
            (env::URL, "http://c"),
            (env::SAMPLE_PERCENT, "12.5"),
            (env::OPERATIONS, "a, b,,"),
            (env::PREVIEW_BYTES, "0"),
            (env::MAX_DISAGREEMENTS, "2"),
            (env::TTL_SECONDS, "60"),
            (env::TIMEOUT_SECONDS, "1.5"),
        ])
        .ok()
        .flatten();
        let offer = set.map(|s| s.offer());
        assert_eq!(
            offer,
            Some(Offer {
                id: "c-1".into(),
                url: "http://c".into(),
                sample_percent: 12.5,
                operations: vec!["a".into(), "b".into()],
                max_disagreements: 2,
                ttl_seconds: 60,
                timeout_seconds: 1.5,
                canary_percent: 0.0,
                token: Default::default(),
            })
        );
    }

    #[test]
    fn out_of_range_or_unreadable_settings_are_refused() {
        for (name, value) in [
            (env::SAMPLE_PERCENT, "101"),
            (env::SAMPLE_PERCENT, "lots"),
            (env::TIMEOUT_SECONDS, "0"),
            (env::PREVIEW_BYTES, "-1"),
        ] {
            let error = settings(&[(env::ID, "c"), (env::URL, "http://c"), (name, value)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with(&format!("failed to read {name}='{value}'")),
                "{error}"
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56Z: a leap day.
        assert_eq!(rfc3339(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
