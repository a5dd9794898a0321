//! The settings of the semantic cache: the frontmatter `cache:` block
//! (`enabled`, `distance_threshold`, `ttl`, and `semantic:` with
//! `max_error_rate` and `check_rate`) read into [`SemanticSettings`], with the
//! defaults of what it leaves out.

use std::time::Duration;

use serde::Deserialize;

use super::SemanticError;

/// The distance threshold when the `cache:` block gives none (cosine distance).
pub const DEFAULT_DISTANCE_THRESHOLD: f32 = 0.1;
/// How long entries live when the `cache:` block gives no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The share of reused answers also checked against the model when
/// `max_error_rate` is set and `check_rate` is not.
pub const DEFAULT_CHECK_RATE: f64 = 0.05;

/// The error bound (`cache.semantic`): see the `bound` module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorBound {
    /// The largest share of reused answers that may differ from the model's
    /// (at 95% confidence), in (0, 1).
    pub max_error_rate: f64,
    /// The share of reused answers also answered by the model off the
    /// response path and compared, in [0, 1].
    pub check_rate: f64,
}

/// The semantic cache settings: the frontmatter `cache:` block
/// (`enabled`, `distance_threshold`, `ttl` in seconds) with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    /// Whether answers are cached and reused.
    pub enabled: bool,
    /// Largest cosine distance that still counts as the same input (with
    /// an [`ErrorBound`], the ceiling of the learnt thresholds).
    pub distance_threshold: f32,
    /// How long an entry lives.
    pub ttl: Duration,
    /// The error bound, when `cache.semantic.max_error_rate` is set.
    pub bound: Option<ErrorBound>,
}

impl Default for SemanticSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            distance_threshold: DEFAULT_DISTANCE_THRESHOLD,
            ttl: DEFAULT_TTL,
            bound: None,
        }
    }
}

/// The `cache:` block as written in the frontmatter (same keys as
/// `eol_core::feature::CacheSettings`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheBlock {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    distance_threshold: Option<f64>,
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(default)]
    semantic: Option<BoundBlock>,
}

/// The `cache.semantic:` block (camelCase accepted, as the issue names it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundBlock {
    #[serde(default, alias = "maxErrorRate")]
    max_error_rate: Option<f64>,
    #[serde(default, alias = "checkRate")]
    check_rate: Option<f64>,
}

fn yes() -> bool {
    true
}

impl SemanticSettings {
    /// Settings from the fields of the frontmatter `cache:` block.
    pub fn from_frontmatter(
        enabled: bool,
        distance_threshold: Option<f64>,
        ttl: Option<u64>,
    ) -> Result<Self, SemanticError> {
        let threshold = distance_threshold.unwrap_or(f64::from(DEFAULT_DISTANCE_THRESHOLD));
        if !(0.0..=2.0).contains(&threshold) {
            return Err(SemanticError::Settings(format!(
                "cache.distance_threshold {threshold} is out of range: a cosine distance is between 0 and 2"
            )));
        }
        if ttl == Some(0) {
            return Err(SemanticError::Settings(
                "cache.ttl must be at least 1 second".into(),
            ));
        }
        Ok(Self {
            enabled,
            distance_threshold: threshold as f32,
            ttl: ttl.map_or(DEFAULT_TTL, Duration::from_secs),
            bound: None,
        })
    }

    /// These settings with the error bound of `cache.semantic` (none when
    /// `max_error_rate` is not set).
    pub fn bounded(
        mut self,
        max_error_rate: Option<f64>,
        check_rate: Option<f64>,
    ) -> Result<Self, SemanticError> {
        let Some(max_error_rate) = max_error_rate else {
            if check_rate.is_some() {
                return Err(SemanticError::Settings(
                    "cache.semantic.check_rate is set without max_error_rate: the checks feed the error bound".into(),
                ));
            }
            return Ok(self);
        };
        if !(max_error_rate > 0.0 && max_error_rate < 1.0) {
            return Err(SemanticError::Settings(format!(
                "cache.semantic.max_error_rate {max_error_rate} is out of range: a share of reused answers above 0 and below 1 (0.01 is 1%)"
            )));
        }
        let check_rate = check_rate.unwrap_or(DEFAULT_CHECK_RATE);
        if !(0.0..=1.0).contains(&check_rate) {
            return Err(SemanticError::Settings(format!(
                "cache.semantic.check_rate {check_rate} is out of range: a share of reused answers from 0 to 1"
            )));
        }
        self.bound = Some(ErrorBound {
            max_error_rate,
            check_rate,
        });
        Ok(self)
    }

    /// Settings from the YAML of a `cache:` block.
    pub fn from_yaml(text: &str) -> Result<Self, SemanticError> {
        let block: CacheBlock = serde_yaml::from_str(text)
            .map_err(|e| SemanticError::Settings(format!("cache: {e}")))?;
        let bound = block.semantic.unwrap_or(BoundBlock {
            max_error_rate: None,
            check_rate: None,
        });
        Self::from_frontmatter(block.enabled, block.distance_threshold, block.ttl)?
            .bounded(bound.max_error_rate, bound.check_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_cache_block() {
        let s =
            SemanticSettings::from_yaml("enabled: true\ndistance_threshold: 0.2\nttl: 60").unwrap();
        assert_eq!(s.distance_threshold, 0.2);
        assert_eq!(s.ttl, Duration::from_secs(60));
        let d = SemanticSettings::from_yaml("{}").unwrap();
        assert_eq!(d, SemanticSettings::default());
        assert!(SemanticSettings::from_yaml("ttl: 0").is_err());
        assert!(SemanticSettings::from_yaml("distance_threshold: 3").is_err());
        assert!(SemanticSettings::from_yaml("treshold: 0.1").is_err());
    }

    #[test]
    fn the_error_bound_from_the_semantic_block() {
        let s = SemanticSettings::from_yaml("semantic:\n  maxErrorRate: 0.01").unwrap();
        assert_eq!(
            s.bound,
            Some(ErrorBound {
                max_error_rate: 0.01,
                check_rate: DEFAULT_CHECK_RATE
            })
        );
        let s = SemanticSettings::from_yaml("semantic: {max_error_rate: 0.02, check_rate: 0.5}")
            .unwrap();
        assert_eq!(s.bound.map(|b| b.check_rate), Some(0.5));
        for bad in [
            "semantic: {max_error_rate: 0}",
            "semantic: {max_error_rate: 1.5}",
            "semantic: {max_error_rate: 0.01, check_rate: 2}",
            "semantic: {check_rate: 0.1}",
            "semantic: {max_eror_rate: 0.01}",
        ] {
            let e = SemanticSettings::from_yaml(bad).expect_err(bad).to_string();
            assert!(e.contains("semantic"), "{bad}: {e}");
        }
    }
}
