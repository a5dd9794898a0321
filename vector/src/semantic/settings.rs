//! The settings of the semantic cache: the frontmatter `cache:` block
//! (`enabled`, `distance_threshold`, `ttl`) read into [`SemanticSettings`],
//! with the defaults of what it leaves out.

use std::time::Duration;

use serde::Deserialize;

use super::SemanticError;

/// The distance threshold when the `cache:` block gives none (cosine distance).
pub const DEFAULT_DISTANCE_THRESHOLD: f32 = 0.1;
/// How long entries live when the `cache:` block gives no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The semantic cache settings: the frontmatter `cache:` block
/// (`enabled`, `distance_threshold`, `ttl` in seconds) with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    /// Whether answers are cached and reused.
    pub enabled: bool,
    /// Largest cosine distance that still counts as the same input.
    pub distance_threshold: f32,
    /// How long an entry lives.
    pub ttl: Duration,
}

impl Default for SemanticSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            distance_threshold: DEFAULT_DISTANCE_THRESHOLD,
            ttl: DEFAULT_TTL,
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
        })
    }

    /// Settings from the YAML of a `cache:` block.
    pub fn from_yaml(text: &str) -> Result<Self, SemanticError> {
        let block: CacheBlock = serde_yaml::from_str(text)
            .map_err(|e| SemanticError::Settings(format!("cache: {e}")))?;
        Self::from_frontmatter(block.enabled, block.distance_threshold, block.ttl)
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
}
