//! Starting a feature's [`Runtime`] from the process's settings: the sandbox
//! pool, the model the environment configures and its MCP tools, the Redis
//! store, and the embedder of the caches. What every `eol` command that runs
//! operations does first.

use crate::budget::BudgetGate;
use crate::caches::{EMBEDDINGS_ENV, EmbedderSource, embedder_from_env};
use crate::engine::Runtime;
use crate::llm::{ChatClient, ConfigError, LlmError, LlmSettings, Route};
use crate::mcp::{Toolbox, ToolboxError};
use crate::prototype::{Prototyper, Tools};
use crate::sandbox::{Interpreter, SandboxError, SandboxLimits, WorkerPool};
use crate::spend::Meter;
use crate::store::RedisStore;
use eol_core::cost::Budget;
use eol_core::runner_contract::env as vars;
use eol_core::{Diagnostics, Feature};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The shortest wall-clock limit a call may have, in seconds.
const MIN_CALL_TIMEOUT: f64 = 0.1;

/// Why a runtime could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A model setting in the environment (or the frontmatter) cannot be used.
    #[error("failed to read the model settings for feature '{feature}': {source}")]
    ModelSettings {
        /// The feature.
        feature: String,
        /// The setting at fault.
        #[source]
        source: ConfigError,
    },
    /// The model client could not be made from its settings.
    #[error("failed to create the model client for feature '{feature}': {source}")]
    ModelClient {
        /// The feature.
        feature: String,
        /// The client's error.
        #[source]
        source: LlmError,
    },
    /// The budget (`EOL_BUDGET` or the frontmatter's `budget`) cannot be used.
    #[error("failed to read the budget of feature '{feature}' ({origin}): {reason}")]
    Budget {
        /// The feature.
        feature: String,
        /// Where the budget came from.
        origin: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No usable Python interpreter.
    #[error("failed to find the Python interpreter for the sandbox: {source}")]
    Python {
        /// Why none was usable.
        #[source]
        source: SandboxError,
    },
    /// The sandbox workers did not start.
    #[error("failed to start {workers} sandbox workers on {python}: {source}")]
    Sandbox {
        /// How many workers were asked for.
        workers: usize,
        /// The interpreter they run on.
        python: String,
        /// Why they did not start.
        #[source]
        source: SandboxError,
    },
    /// An MCP server of the feature did not start or connect.
    #[error("failed to connect the MCP tools for feature '{feature}': {source}")]
    Tools {
        /// The feature.
        feature: String,
        /// The toolbox's error, naming the server.
        #[source]
        source: ToolboxError,
    },
    /// The feature's schemas do not compile or its code does not pass the checks.
    #[error("failed to load feature '{feature}' from {file}:\n{diagnostics}")]
    Invalid {
        /// The feature.
        feature: String,
        /// The `.eol` file.
        file: String,
        /// Every problem, located in the file.
        diagnostics: Diagnostics,
    },
}

/// Settings of the Python sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Python interpreter for the workers (`None`: python3 on PATH).
    pub python: Option<PathBuf>,
    /// Number of warm workers (`None`: the number of CPUs).
    pub workers: Option<usize>,
    /// Wall-clock limit of one call, in seconds (at least 0.1).
    pub call_timeout: f64,
    /// CPU-time limit of one call, in seconds.
    pub cpu_seconds: f64,
    /// Memory limit of each worker, in MiB.
    pub memory_mb: u64,
}

impl SandboxSettings {
    /// The limits each call runs under.
    pub fn limits(&self) -> SandboxLimits {
        let wall = self.call_timeout.max(MIN_CALL_TIMEOUT);
        SandboxLimits {
            memory_bytes: self.memory_mb.saturating_mul(1024 * 1024),
            cpu_seconds: self.cpu_seconds,
            // A limit too large for a Duration is no limit.
            wall_timeout: Duration::try_from_secs_f64(wall).unwrap_or(Duration::MAX),
            ..SandboxLimits::default()
        }
    }

    /// How many workers to start.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// Where a runtime's parts come from.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Redis to use (`None`: a local one, started on first use and stopped with the process).
    pub redis_url: Option<String>,
    /// The sandbox.
    pub sandbox: SandboxSettings,
}

/// Starts the warm sandbox pool `settings` describe.
pub async fn start_pool(settings: &SandboxSettings) -> Result<WorkerPool, BootstrapError> {
    let interpreter = Interpreter::discover(settings.python.as_deref())
        .map_err(|source| BootstrapError::Python { source })?;
    let python = interpreter.path.display().to_string();
    let workers = settings.worker_count();
    WorkerPool::start(interpreter, settings.limits(), workers)
        .await
        .map_err(|source| BootstrapError::Sandbox {
            workers,
            python,
            source,
        })
}

/// Loads `feature` (read from `file`) with everything it runs on: the model the
/// environment configures (none: prototyped operations report so), its MCP
/// tools, the sandbox pool, the Redis store and, with a model, the caches.
pub async fn load_runtime(
    settings: &RuntimeSettings,
    file: &Path,
    feature: Feature,
) -> Result<Runtime, BootstrapError> {
    let name = feature.name().to_owned();
    let store = Arc::new(RedisStore::new(settings.redis_url.clone()));
    let models = models_from_env(&feature, &store)?;
    let (model, budget_model) = match models {
        Some((model, budget_model)) => (Some(model), budget_model),
        None => (None, None),
    };
    let pool = start_pool(&settings.sandbox).await?;
    // Tools matter only to the model: without one, no MCP server is started.
    let tools: Option<Arc<dyn Tools>> = match &model {
        Some(_) => Some(Arc::new(
            Toolbox::connect(&feature, store.clone())
                .await
                .map_err(|source| BootstrapError::Tools {
                    feature: name.clone(),
                    source,
                })?,
        )),
        None => None,
    };
    let file = file.display().to_string();
    let runtime = Runtime::load(&file, feature, pool, store)
        .await
        .map_err(|diagnostics| BootstrapError::Invalid {
            feature: name,
            file,
            diagnostics,
        })?
        .with_model(model)
        .with_budget_model(budget_model)
        .with_tools(tools);
    // Embeddings serve only prototyped calls (semantic cache, vector context).
    Ok(match runtime.model() {
        Some(_) => runtime.with_caches(embedder_at_start().await),
        None => runtime,
    })
}

/// The model the environment (and the feature's frontmatter) configures, if
/// any, and the model its spent budget switches to. Spend is counted in
/// `store`'s usage counters when it is a shared Redis (a local one, started on
/// demand, would only hold one process's); a budget is counted there either way.
#[allow(clippy::type_complexity)]
fn models_from_env(
    feature: &Feature,
    store: &Arc<RedisStore>,
) -> Result<Option<(Arc<Prototyper>, Option<Arc<Prototyper>>)>, BootstrapError> {
    let name = feature.name();
    let settings = LlmSettings::from_env(feature.frontmatter.model.as_ref()).map_err(|source| {
        BootstrapError::ModelSettings {
            feature: name.to_owned(),
            source,
        }
    })?;
    let Some(settings) = settings else {
        return Ok(None);
    };
    let gate = budget_from_env(feature)?.map(|b| Arc::new(BudgetGate::new(b, name, store.clone())));
    // Every model, fallbacks included, has its own meter (spend by the model
    // that answered) on the same usage counters and budget.
    let route = |settings: LlmSettings, enforces: bool| {
        let client = ChatClient::new(settings).map_err(|source| BootstrapError::ModelClient {
            feature: name.to_owned(),
            source,
        })?;
        let mut meter = Meter::new(&client.settings().model, client.settings().price);
        if store.is_configured() {
            meter = meter.with_usage(name, store.clone());
        }
        if let Some(gate) = &gate {
            meter = meter.with_budget(gate.clone(), enforces);
        }
        Ok::<_, BootstrapError>(Route { client, meter })
    };
    let prototyper = |settings: LlmSettings, enforces: bool| {
        let cooldown = settings.cooldown;
        let fallbacks = settings
            .fallback_settings()
            .into_iter()
            .map(|s| route(s, false))
            .collect::<Result<Vec<_>, _>>()?;
        let Route { client, meter } = route(settings, enforces)?;
        Ok::<_, BootstrapError>(Arc::new(
            Prototyper::new(client)
                .with_meter(meter)
                .with_fallbacks(fallbacks, cooldown),
        ))
    };
    let budget_model = match gate.as_ref().and_then(|g| g.budget().model.clone()) {
        Some(cheaper) => Some(prototyper(settings.with_model(&cheaper), false)?),
        None => None,
    };
    Ok(Some((prototyper(settings, true)?, budget_model)))
}

/// The budget: `EOL_BUDGET` (JSON, what the operator sets from `spec.budget`),
/// else the frontmatter's; checked either way.
fn budget_from_env(feature: &Feature) -> Result<Option<Budget>, BootstrapError> {
    let failed = |origin, reason| BootstrapError::Budget {
        feature: feature.name().to_owned(),
        origin,
        reason,
    };
    let (budget, origin) = match std::env::var(vars::BUDGET)
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        Some(json) => (
            Some(
                serde_json::from_str::<Budget>(&json)
                    .map_err(|e| failed(vars::BUDGET, e.to_string()))?,
            ),
            vars::BUDGET,
        ),
        None => (feature.frontmatter.budget.clone(), "frontmatter budget"),
    };
    if let Some(reason) = budget.as_ref().and_then(Budget::problem) {
        return Err(failed(origin, reason));
    }
    Ok(budget)
}

/// The embedder of the caches, made now so that a broken setting shows at
/// start; when that fails, made again on a later prototyped call (the
/// embeddings API may start later).
async fn embedder_at_start() -> EmbedderSource {
    match embedder_from_env().await {
        Ok(None) => {
            tracing::info!(
                "embeddings off ({EMBEDDINGS_ENV}=off): no semantic cache, context ranked by shared words"
            );
            EmbedderSource::Off
        }
        Ok(Some(embedder)) => EmbedderSource::Ready(embedder),
        Err(error) => {
            tracing::warn!(%error, "no embedding model yet: calls go on without semantic cache and vector context; tried again on a later prototyped call");
            EmbedderSource::from_env()
        }
    }
}
