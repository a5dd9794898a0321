//! Provider settings, from the environment and the feature's `model:` block.
//!
//! Precedence, highest first: the environment (`EOL_LLM_*`), then the config
//! file (`$EOL_CONFIG`, else `~/.config/eol/config.yaml`, its `llm:` mapping with
//! the same names in lowercase without the prefix, e.g. `base_url`), then the
//! feature's frontmatter `model:` block, then the defaults below. Deployment
//! settings win over the feature's, so one cluster can point every feature at
//! its own model server.

use eol_core::ModelSettings;
use eol_core::cost::{ModelPrice, PriceTable, parse_price_table};
use eol_core::runner_contract::{FallbackRoute, env as vars};
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
    /// The model's price, when known: from the deployment's table
    /// (`EOL_LLM_PRICES`), else the feature's `model.price` for its own model.
    pub price: Option<ModelPrice>,
    /// The deployment's price table, for other models of the same API (a
    /// budget's cheaper model).
    pub prices: PriceTable,
    /// Models asked, in order, while the ones before are failing.
    pub fallbacks: Vec<FallbackModel>,
    /// How long a failing model is left alone before it is asked again.
    pub cooldown: Duration,
}

/// A model asked when the ones before it are failing.
#[derive(Clone, PartialEq)]
pub struct FallbackModel {
    /// Base URL of its OpenAI-compatible API.
    pub base_url: String,
    /// Model name as that API knows it.
    pub model: String,
    /// API key; never printed (see the `Debug` impl).
    pub api_key: Option<String>,
}

impl fmt::Debug for FallbackModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackModel")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
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
            .field("price", &self.price)
            .field("prices", &self.prices)
            .field("fallbacks", &self.fallbacks)
            .field("cooldown", &self.cooldown)
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
        let Some(base_url) = env(vars::LLM_BASE_URL).filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let api_key = match (env(vars::LLM_API_KEY), env(vars::LLM_API_KEY_FILE)) {
            (Some(k), _) => Some(k),
            (None, Some(path)) => Some(read_key(vars::LLM_API_KEY_FILE, &path)?),
            (None, None) => None,
        };
        let feature = feature.cloned().unwrap_or_default();
        let model = env(vars::LLM_MODEL)
            .or(feature.name.clone())
            .unwrap_or_else(|| "default".to_owned());
        let table = match env(vars::LLM_PRICES).filter(|t| !t.trim().is_empty()) {
            Some(text) => parse_price_table(&text).map_err(|reason| ConfigError {
                name: vars::LLM_PRICES,
                value: text,
                reason,
            })?,
            None => Default::default(),
        };
        // The frontmatter's price is its own model's: not that of a model the
        // environment put in its place.
        let own_price = feature
            .price
            .filter(|_| feature.name.as_ref().is_none_or(|name| *name == model));
        if let Some(problem) = own_price.as_ref().and_then(ModelPrice::problem) {
            return Err(ConfigError {
                name: "model.price",
                value: format!("{own_price:?}"),
                reason: problem,
            });
        }
        let fallbacks = fallbacks(env, &feature)?;
        let cooldown = parsed::<f64>(vars::LLM_COOLDOWN, env(vars::LLM_COOLDOWN))?
            .or(feature.cooldown)
            .unwrap_or(eol_core::DEFAULT_COOLDOWN_SECS);
        let cooldown = Duration::try_from_secs_f64(cooldown).map_err(|_| ConfigError {
            name: vars::LLM_COOLDOWN,
            value: cooldown.to_string(),
            reason: "expected seconds, 0 or more".into(),
        })?;
        let settings = Self {
            fallbacks,
            cooldown,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            price: table.get(&model).copied().or(own_price),
            prices: table,
            model,
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
            response_format: parsed(vars::LLM_RESPONSE_FORMAT, env(vars::LLM_RESPONSE_FORMAT))?
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

    /// The same settings for `model` on the same API, at its price in the table.
    pub fn with_model(&self, model: &str) -> Self {
        Self {
            model: model.to_owned(),
            price: self.prices.get(model).copied(),
            ..self.clone()
        }
    }

    /// The settings of each fallback, in order: these sampling settings and
    /// limits on its own API, with its key and its price in the table.
    pub fn fallback_settings(&self) -> Vec<LlmSettings> {
        self.fallbacks
            .iter()
            .map(|f| Self {
                base_url: f.base_url.clone(),
                api_key: f.api_key.clone(),
                model: f.model.clone(),
                price: self.prices.get(&f.model).copied(),
                fallbacks: Vec::new(),
                ..self.clone()
            })
            .collect()
    }

    /// Settings from the process environment, then the config file.
    pub fn from_env(feature: Option<&ModelSettings>) -> Result<Option<Self>, ConfigError> {
        let file = config_file()?;
        Self::resolve(
            &|k| {
                std::env::var(k).ok().or_else(|| {
                    let key = k.strip_prefix("EOL_LLM_")?.to_ascii_lowercase();
                    file.get(&key).cloned()
                })
            },
            feature,
        )
    }
}

/// The key in the file at `path`, named by setting `name`.
fn read_key(name: &'static str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(PathBuf::from(path))
        .map(|k| k.trim().to_owned())
        .map_err(|e| ConfigError {
            name,
            value: path.to_owned(),
            reason: format!("failed to read the API key file: {e}"),
        })
}

/// The fallback models: `EOL_LLM_FALLBACKS` (JSON, what the operator sets),
/// else the frontmatter's `model.fallbacks`, their keys read from the files or
/// environment variables they name.
fn fallbacks(
    env: &dyn Fn(&str) -> Option<String>,
    feature: &ModelSettings,
) -> Result<Vec<FallbackModel>, ConfigError> {
    let trimmed = |url: &str| url.trim().trim_end_matches('/').to_owned();
    if let Some(text) = env(vars::LLM_FALLBACKS).filter(|t| !t.trim().is_empty()) {
        let routes: Vec<FallbackRoute> = serde_json::from_str(&text).map_err(|e| ConfigError {
            name: vars::LLM_FALLBACKS,
            value: text.clone(),
            reason: format!(
                "expected a JSON list of {{\"base_url\", \"model\", \"api_key_file\"?}}: {e}"
            ),
        })?;
        return routes
            .into_iter()
            .map(|r| {
                if r.base_url.trim().is_empty() || r.model.trim().is_empty() {
                    return Err(ConfigError {
                        name: vars::LLM_FALLBACKS,
                        value: text.clone(),
                        reason: "every fallback needs a base_url and a model".into(),
                    });
                }
                Ok(FallbackModel {
                    base_url: trimmed(&r.base_url),
                    api_key: r
                        .api_key_file
                        .as_deref()
                        .map(|path| read_key(vars::LLM_FALLBACKS, path))
                        .transpose()?,
                    model: r.model,
                })
            })
            .collect();
    }
    if let Some(problem) = feature.fallback_problem() {
        return Err(ConfigError {
            name: "model.fallbacks",
            value: format!("{:?}", feature.fallbacks),
            reason: problem,
        });
    }
    feature
        .fallbacks
        .iter()
        .map(|f| {
            let api_key = match &f.api_key_env {
                Some(var) => Some(env(var).ok_or_else(|| ConfigError {
                    name: "model.fallbacks",
                    value: format!("api_key_env: {var}"),
                    reason: format!(
                        "the environment variable {var} (the API key of fallback '{}') is not set; on a cluster, give the Feature spec.model.fallbacks with an apiKeySecretRef",
                        f.name
                    ),
                })?),
                None => None,
            };
            Ok(FallbackModel {
                base_url: trimmed(&f.base_url),
                model: f.name.clone(),
                api_key,
            })
        })
        .collect()
}

/// The config file's `llm:` settings as strings, keyed by lowercase name.
fn config_file() -> Result<std::collections::HashMap<String, String>, ConfigError> {
    let explicit = std::env::var_os("EOL_CONFIG").map(PathBuf::from);
    let path = explicit.clone().or_else(|| {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("eol").join("config.yaml"))
    });
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // Only a file named by EOL_CONFIG must exist.
        Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Default::default());
        }
        Err(e) => {
            return Err(ConfigError {
                name: "EOL_CONFIG",
                value: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    parse_config(&text).map_err(|reason| ConfigError {
        name: "EOL_CONFIG",
        value: path.display().to_string(),
        reason,
    })
}

/// Known keys of the config file's `llm:` mapping.
const FILE_KEYS: [&str; 13] = [
    "base_url",
    "api_key",
    "api_key_file",
    "model",
    "temperature",
    "seed",
    "max_tokens",
    "timeout",
    "max_retries",
    "context_window",
    "response_format",
    "fallbacks",
    "cooldown",
];

fn parse_config(text: &str) -> Result<std::collections::HashMap<String, String>, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let mut out = std::collections::HashMap::new();
    let Some(llm) = doc.get("llm") else {
        return Ok(out);
    };
    let map = llm.as_mapping().ok_or("'llm' must be a mapping")?;
    for (k, v) in map {
        let key = k.as_str().ok_or("keys under 'llm' must be strings")?;
        if !FILE_KEYS.contains(&key) {
            return Err(format!(
                "unknown key 'llm.{key}' (known: {})",
                FILE_KEYS.join(", ")
            ));
        }
        let value = match v {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("'llm.{key}' must be a string or number")),
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
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
    fn the_config_file_names_its_settings_like_the_environment() {
        let file =
            parse_config("llm:\n  base_url: http://m/v1\n  temperature: 0.5\n  max_retries: 1\n")
                .unwrap();
        assert_eq!(file["base_url"], "http://m/v1");
        assert_eq!(file["temperature"], "0.5");
        let err = parse_config("llm:\n  base-url: x\n").unwrap_err();
        assert!(err.contains("unknown key 'llm.base-url'"), "{err}");
        // The environment wins over the file.
        let lookup = |k: &str| {
            if k == "EOL_LLM_TEMPERATURE" {
                return Some("0.1".to_owned());
            }
            k.strip_prefix("EOL_LLM_")
                .and_then(|k| file.get(&k.to_ascii_lowercase()).cloned())
        };
        let s = LlmSettings::resolve(&lookup, None).unwrap().unwrap();
        assert_eq!(s.base_url, "http://m/v1");
        assert_eq!(s.temperature, 0.1);
        assert_eq!(s.max_retries, 1);
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
            price: None,
            ..ModelSettings::default()
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

    #[test]
    fn the_price_comes_from_the_table_then_the_feature_for_its_own_model() {
        use eol_core::cost::ModelPrice;
        let own = ModelPrice {
            input: 1.0,
            output: 2.0,
        };
        let feature = ModelSettings {
            name: Some("mine".into()),
            price: Some(own),
            ..ModelSettings::default()
        };
        let base = ("EOL_LLM_BASE_URL", "http://x");
        let price = |pairs: &[(&str, &str)]| {
            LlmSettings::resolve(&env(pairs), Some(&feature))
                .unwrap()
                .unwrap()
                .price
        };
        assert_eq!(price(&[base]), Some(own));
        let table = r#"{"mine": {"input": 3, "output": 4}}"#;
        assert_eq!(
            price(&[base, ("EOL_LLM_PRICES", table)]),
            Some(ModelPrice {
                input: 3.0,
                output: 4.0
            })
        );
        // Another model put in place by the environment has no price of the feature's.
        assert_eq!(price(&[base, ("EOL_LLM_MODEL", "other")]), None);
        let err = LlmSettings::resolve(
            &env(&[base, ("EOL_LLM_PRICES", r#"{"mine": {"input": "cheap"}}"#)]),
            Some(&feature),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("invalid model setting EOL_LLM_PRICES="),
            "{err}"
        );
    }

    #[test]
    fn fallbacks_come_from_the_environment_else_the_frontmatter() {
        let dir = std::env::temp_dir().join(format!("eol-fallback-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("api-key");
        std::fs::write(&key_file, "sk-file\n").unwrap();
        let feature = ModelSettings {
            name: Some("primary".into()),
            fallbacks: vec![eol_core::ModelFallback {
                base_url: "http://frontmatter/v1/".into(),
                name: "from-frontmatter".into(),
                api_key_env: Some("BACKUP_KEY".into()),
            }],
            cooldown: Some(2.5),
            ..ModelSettings::default()
        };
        let base = ("EOL_LLM_BASE_URL", "http://x");
        let table = r#"{"from-env": {"input": 1, "output": 2}}"#;
        let routes = format!(
            r#"[{{"base_url": "http://env/v1", "model": "from-env", "api_key_file": "{}"}}]"#,
            key_file.display()
        );
        let s = LlmSettings::resolve(
            &env(&[
                base,
                ("EOL_LLM_FALLBACKS", &routes),
                ("EOL_LLM_PRICES", table),
                ("EOL_LLM_COOLDOWN", "0.5"),
            ]),
            Some(&feature),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.cooldown, Duration::from_millis(500));
        let fallback = &s.fallback_settings()[0];
        assert_eq!(fallback.base_url, "http://env/v1");
        assert_eq!(fallback.model, "from-env");
        assert_eq!(fallback.api_key.as_deref(), Some("sk-file"));
        assert_eq!(fallback.price.map(|p| p.output), Some(2.0));
        assert!(!format!("{s:?}").contains("sk-file"));

        // The frontmatter's, its key from the variable it names.
        let s = LlmSettings::resolve(&env(&[base, ("BACKUP_KEY", "sk-env")]), Some(&feature))
            .unwrap()
            .unwrap();
        assert_eq!(s.cooldown, Duration::from_millis(2500));
        assert_eq!(s.fallbacks.len(), 1);
        assert_eq!(s.fallbacks[0].base_url, "http://frontmatter/v1");
        assert_eq!(s.fallbacks[0].api_key.as_deref(), Some("sk-env"));
        let err = LlmSettings::resolve(&env(&[base]), Some(&feature))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BACKUP_KEY") && err.contains("not set"),
            "{err}"
        );
        // Without fallbacks: none, and the default cooldown.
        let s = LlmSettings::resolve(&env(&[base]), None).unwrap().unwrap();
        assert!(s.fallbacks.is_empty());
        assert_eq!(s.cooldown, Duration::from_secs(30));

        let err =
            LlmSettings::resolve(&env(&[base, ("EOL_LLM_FALLBACKS", "[{\"url\": 1}]")]), None)
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("invalid model setting EOL_LLM_FALLBACKS="),
            "{err}"
        );
        let err = LlmSettings::resolve(&env(&[base, ("EOL_LLM_COOLDOWN", "-1")]), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid model setting EOL_LLM_COOLDOWN="),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
