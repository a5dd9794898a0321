//! Provider settings, from the environment and the feature's `model:` block.
//!
//! Precedence, highest first: the environment (`EOL_LLM_*`, set per deployment),
//! then the feature's frontmatter `model:` block, then the defaults below.

use eol_core::ModelSettings;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach and drive the model.
#[derive(Clone)]
pub struct LlmSettings {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// API key; never printed (see the `Debug` impl).
    pub api_key: Option<String>,
    /// Model name as the API knows it.
    pub model: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Sampling seed, for repeatable answers where the server supports it.
    pub seed: Option<i64>,
    /// Upper bound on tokens generated per call.
    pub max_tokens: u32,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
    /// Retries on 429, 5xx, connection errors and timeouts.
    pub max_retries: u32,
    /// The model's context window, in tokens: prompts are trimmed to fit.
    pub context_window: usize,
    /// The structured-output form to try first (`json_schema`, `json_object` or
    /// `prompt`); on refusal the client falls back to the next one by itself.
    pub response_format: super::ResponseFormatMode,
}

impl fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("seed", &self.seed)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("context_window", &self.context_window)
            .field("response_format", &self.response_format)
            .finish()
    }
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid model setting {name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub name: &'static str,
    /// What it was set to (never a secret).
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

fn parsed<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    value
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError {
                name,
                value: v.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

impl LlmSettings {
    /// Settings from `env` (a lookup, so tests need not touch the process
    /// environment) and the feature's `model:` block. `Ok(None)` when no base
    /// URL is configured: prototyped operations then report which setting to set.
    pub fn resolve(
        env: &dyn Fn(&str) -> Option<String>,
        feature: Option<&ModelSettings>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = env("EOL_LLM_BASE_URL").filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let api_key = match (env("EOL_LLM_API_KEY"), env("EOL_LLM_API_KEY_FILE")) {
            (Some(k), _) => Some(k),
            (None, Some(path)) => Some(
                std::fs::read_to_string(PathBuf::from(&path))
                    .map(|k| k.trim().to_owned())
                    .map_err(|e| ConfigError {
                        name: "EOL_LLM_API_KEY_FILE",
                        value: path,
                        reason: e.to_string(),
                    })?,
            ),
            (None, None) => None,
        };
        let feature = feature.cloned().unwrap_or_default();
        let settings = Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: env("EOL_LLM_MODEL")
                .or(feature.name)
                .unwrap_or_else(|| "default".to_owned()),
            temperature: parsed("EOL_LLM_TEMPERATURE", env("EOL_LLM_TEMPERATURE"))?
                .or(feature.temperature)
                .unwrap_or(0.0),
            seed: parsed("EOL_LLM_SEED", env("EOL_LLM_SEED"))?
                .or(feature.seed)
                .or(Some(42)),
            max_tokens: parsed("EOL_LLM_MAX_TOKENS", env("EOL_LLM_MAX_TOKENS"))?
                .or(feature.max_tokens)
                .unwrap_or(512),
            timeout: Duration::from_secs_f64(
                parsed("EOL_LLM_TIMEOUT", env("EOL_LLM_TIMEOUT"))?.unwrap_or(60.0),
            ),
            max_retries: parsed("EOL_LLM_MAX_RETRIES", env("EOL_LLM_MAX_RETRIES"))?.unwrap_or(3),
            context_window: parsed("EOL_LLM_CONTEXT_WINDOW", env("EOL_LLM_CONTEXT_WINDOW"))?
                .unwrap_or(2048),
            response_format: parsed("EOL_LLM_RESPONSE_FORMAT", env("EOL_LLM_RESPONSE_FORMAT"))?
                .unwrap_or(super::ResponseFormatMode::JsonSchema),
        };
        if !(0.0..=2.0).contains(&settings.temperature) {
            return Err(ConfigError {
                name: "EOL_LLM_TEMPERATURE",
                value: settings.temperature.to_string(),
                reason: "expected 0 to 2".into(),
            });
        }
        if settings.context_window <= settings.max_tokens as usize {
            return Err(ConfigError {
                name: "EOL_LLM_CONTEXT_WINDOW",
                value: settings.context_window.to_string(),
                reason: format!("must exceed max_tokens ({})", settings.max_tokens),
            });
        }
        Ok(Some(settings))
    }

    /// Settings from the process environment.
    pub fn from_env(feature: Option<&ModelSettings>) -> Result<Option<Self>, ConfigError> {
        Self::resolve(&|k| std::env::var(k).ok(), feature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_base_url_means_no_model() {
        assert!(LlmSettings::resolve(&env(&[]), None).unwrap().is_none());
    }

    #[test]
    fn environment_overrides_the_feature_which_overrides_defaults() {
        let feature = ModelSettings {
            name: Some("feature-model".into()),
            temperature: Some(0.7),
            max_tokens: Some(100),
            seed: None,
        };
        let s = LlmSettings::resolve(
            &env(&[
                ("EOL_LLM_BASE_URL", "http://x/v1/"),
                ("EOL_LLM_TEMPERATURE", "0.2"),
            ]),
            Some(&feature),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.base_url, "http://x/v1");
        assert_eq!(s.model, "feature-model");
        assert_eq!(s.temperature, 0.2);
        assert_eq!(s.max_tokens, 100);
        assert_eq!(s.seed, Some(42));
    }

    #[test]
    fn the_api_key_is_never_printed_and_bad_values_are_named() {
        let s = LlmSettings::resolve(
            &env(&[
                ("EOL_LLM_BASE_URL", "http://x"),
                ("EOL_LLM_API_KEY", "sk-secret"),
            ]),
            None,
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{s:?}").contains("sk-secret"));
        let err = LlmSettings::resolve(
            &env(&[
                ("EOL_LLM_BASE_URL", "http://x"),
                ("EOL_LLM_TIMEOUT", "soon"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid model setting EOL_LLM_TIMEOUT=\"soon\""),
            "{err}"
        );
    }
}
