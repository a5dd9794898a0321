//! The agreement between the operator and the runner pods it starts: the
//! environment variables it sets and the runner reads, where the feature's files
//! and keys are mounted, the runner's commands and port, and how a referenced
//! document is named beside the feature file. Both sides use these items, so a
//! name changed here changes on both sides at once (when the same value was
//! written in three places, two of them silently overrode the third).

use crate::{Feature, Phase, Position, Reference};

/// Environment variables the operator sets in runner pods (and users set locally).
pub mod env {
    /// The Redis URL (password included), from a Secret.
    pub const REDIS_URL: &str = "REDIS_URL";
    /// The log filter (`tracing_subscriber::EnvFilter` syntax).
    pub const LOG_FILTER: &str = "RUST_LOG";
    /// The home directory: the root filesystem is read-only, caches live in `/tmp`.
    pub const HOME: &str = "HOME";
    /// Where temporary files go (the sandbox's working directories).
    pub const TMPDIR: &str = "TMPDIR";
    /// Base URL of the OpenAI-compatible API prototyped operations run on.
    pub const LLM_BASE_URL: &str = "EOL_LLM_BASE_URL";
    /// The model name sent to that API.
    pub const LLM_MODEL: &str = "EOL_LLM_MODEL";
    /// The structured-output form tried first (`json_schema`, `json_object`, `prompt`).
    pub const LLM_RESPONSE_FORMAT: &str = "EOL_LLM_RESPONSE_FORMAT";
    /// The API key itself (local use; pods get [`LLM_API_KEY_FILE`]).
    pub const LLM_API_KEY: &str = "EOL_LLM_API_KEY";
    /// A file holding the API key (a mounted Secret in pods).
    pub const LLM_API_KEY_FILE: &str = "EOL_LLM_API_KEY_FILE";
    /// Prices by model, JSON `{"model": {"input": USD, "output": USD}}` per million
    /// tokens: the operator's table with the Feature's `spec.model.prices` over it.
    pub const LLM_PRICES: &str = "EOL_LLM_PRICES";
    /// The models asked when the primary is failing, in order: a JSON list of
    /// [`super::FallbackRoute`] (the Feature's `spec.model.fallbacks`), over the
    /// frontmatter's `model.fallbacks`.
    pub const LLM_FALLBACKS: &str = "EOL_LLM_FALLBACKS";
    /// Seconds a failing model is left alone before it is asked again (`model.cooldown`).
    pub const LLM_COOLDOWN: &str = "EOL_LLM_COOLDOWN";
    /// The feature's budget as JSON (the Feature's `spec.budget`), over the frontmatter's `budget`.
    pub const BUDGET: &str = "EOL_BUDGET";
    /// `off` turns embeddings (semantic cache, vector context) off.
    pub const EMBEDDINGS: &str = "EOL_EMBEDDINGS";
    /// The value of [`EMBEDDINGS`] that turns them off.
    pub const EMBEDDINGS_OFF: &str = "off";
    /// Base URL of an OpenAI-compatible `/v1/embeddings` API.
    pub const EMBEDDING_BASE_URL: &str = "EOL_EMBEDDING_BASE_URL";
    /// The embedding model name sent to that API.
    pub const EMBEDDING_MODEL: &str = "EOL_EMBEDDING_MODEL";
    /// The embeddings API key itself (local use).
    pub const EMBEDDING_API_KEY: &str = "EOL_EMBEDDING_API_KEY";
    /// A file holding the embeddings API key (a mounted Secret in pods).
    pub const EMBEDDING_API_KEY_FILE: &str = "EOL_EMBEDDING_API_KEY_FILE";
    /// Where `eol run` and `eol test` write their run report when they end.
    pub const REPORT_FILE: &str = "EOL_REPORT_FILE";
    /// The run's id: its full result is kept in Redis under it.
    pub const RUN_ID: &str = "EOL_RUN_ID";
    /// The run pod's UID (downward API): the full result records it, so a
    /// container Kubernetes starts again in the same pod after the run
    /// completed reports that result instead of running the operation twice.
    pub const POD_UID: &str = "EOL_POD_UID";
    /// The W3C `traceparent` a one-shot run's spans are children of (the
    /// environment carrier convention); the operator copies it from the
    /// FeatureRun's [`super::TRACEPARENT_ANNOTATION`].
    pub const TRACEPARENT: &str = "TRACEPARENT";
    /// The W3C `tracestate` going with [`TRACEPARENT`].
    pub const TRACESTATE: &str = "TRACESTATE";
    /// How `eol serve` checks callers: `kubernetes` (TokenReview and
    /// SubjectAccessReview) or `anonymous` (no check, the default).
    pub const AUTH: &str = "EOL_AUTH";
    /// The Feature (object name) whose `features/operations` RBAC decides access.
    pub const AUTH_FEATURE: &str = "EOL_AUTH_FEATURE";
    /// The Feature's namespace.
    pub const AUTH_NAMESPACE: &str = "EOL_AUTH_NAMESPACE";
    /// The audiences a caller's token must be issued for, comma-separated.
    pub const AUTH_AUDIENCES: &str = "EOL_AUTH_AUDIENCES";
    /// How long reviews are kept, in seconds.
    pub const AUTH_CACHE_SECONDS: &str = "EOL_AUTH_CACHE_SECONDS";
    /// The most reviews kept.
    pub const AUTH_CACHE_SIZE: &str = "EOL_AUTH_CACHE_SIZE";
    /// How long a review may still answer while the API server cannot be asked, in seconds.
    pub const AUTH_STALE_SECONDS: &str = "EOL_AUTH_STALE_SECONDS";
    /// Where `eol serve` writes each call's audit record: `stdout` or `off` (the default).
    pub const AUDIT: &str = "EOL_AUDIT";
    /// Also append audit records to the feature's Redis stream, trimmed to about this many.
    pub const AUDIT_STREAM_MAX_LENGTH: &str = "EOL_AUDIT_STREAM_MAX_LENGTH";
    /// `true`: audit records hold the call's input itself.
    pub const AUDIT_INPUT: &str = "EOL_AUDIT_INPUT";
    /// The most async calls a feature's queue holds, waiting or running; more get 429.
    pub const QUEUE_MAX_LENGTH: &str = "EOL_QUEUE_MAX_LENGTH";
    /// How many queued calls one serving pod runs at once.
    pub const QUEUE_CONCURRENCY: &str = "EOL_QUEUE_CONCURRENCY";
    /// Seconds after which a queued call whose pod stopped renewing its claim is taken by another.
    pub const QUEUE_CLAIM_AFTER_SECONDS: &str = "EOL_QUEUE_CLAIM_AFTER_SECONDS";
    /// Seconds an async call's result (and its idempotency key) is kept.
    pub const QUEUE_RESULT_TTL_SECONDS: &str = "EOL_QUEUE_RESULT_TTL_SECONDS";
}

/// The audience a caller's token is checked for when a Feature names none.
pub const DEFAULT_AUDIENCE: &str = "eol.dev";

/// The RBAC attributes of calling an operation: verb `invoke` on
/// `features/operations` (group `eol.dev`), resource name the Feature's or
/// `<feature>/<operation>`.
pub mod access {
    /// The API group.
    pub const GROUP: &str = "eol.dev";
    /// The resource.
    pub const RESOURCE: &str = "features";
    /// The subresource.
    pub const SUBRESOURCE: &str = "operations";
    /// The verb.
    pub const VERB: &str = "invoke";

    /// The resource name granting one operation only.
    pub fn operation_name(feature: &str, operation: &str) -> String {
        format!("{feature}/{operation}")
    }
}

/// Async calls: the Redis names every replica of a feature shares, outside the
/// feature's own keys (`eol:<feature>:`), so its code cannot touch them.
pub mod queue {
    /// The stream of a feature's async calls, the one a KEDA `redis-streams` trigger watches.
    pub fn stream(feature: &str) -> String {
        format!("eol-queue:{feature}")
    }

    /// The consumer group every serving pod of a feature reads the stream through.
    pub const GROUP: &str = "eol-workers";

    /// The key holding async call `id`'s state and, once answered, its result.
    pub fn result_key(feature: &str, id: &str) -> String {
        format!("eol-result:{feature}:{id}")
    }

    /// The key mapping a caller's idempotency key (as a digest) to its call.
    pub fn idempotency_key(feature: &str, digest: &str) -> String {
        format!("eol-idempotency:{feature}:{digest}")
    }

    /// The path of async call results: `GET /v1/results/{id}`.
    pub const RESULTS_PATH: &str = "/v1/results";

    /// The `Prefer` preference asking for an async call (RFC 7240).
    pub const RESPOND_ASYNC: &str = "respond-async";

    /// The request header naming a call's idempotency key.
    pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
}

/// The FeatureRun annotation holding the W3C `traceparent` its run joins
/// (passed to the pod as [`env::TRACEPARENT`]).
pub const TRACEPARENT_ANNOTATION: &str = "eol.dev/traceparent";

/// One entry of [`env::LLM_FALLBACKS`]: a model asked while the ones before it fail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackRoute {
    /// Base URL of its OpenAI-compatible API.
    pub base_url: String,
    /// Model name as that API knows it.
    pub model: String,
    /// A file holding its API key (a mounted Secret in pods), if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<String>,
}

/// The directory the API-key Secret of fallback model `index` (0-based) is mounted in.
pub fn fallback_key_dir(index: usize) -> String {
    format!("{MODEL_KEY_DIR}-fallback-{index}")
}

/// Where the feature's files are in a runner pod.
pub const SOURCE_DIR: &str = "/etc/eol";
/// The feature file, inside [`SOURCE_DIR`].
pub const FEATURE_FILE: &str = "feature.eol";
/// The tests file, inside [`SOURCE_DIR`].
pub const TESTS_FILE: &str = "feature.test.eol";
/// The writable scratch directory of a runner pod (an `emptyDir`; the root is read-only).
pub const TMP_DIR: &str = "/tmp";
/// The directory the model API-key Secret is mounted in.
pub const MODEL_KEY_DIR: &str = "/var/run/secrets/eol/model";
/// The directory the embeddings API-key Secret is mounted in.
pub const EMBEDDING_KEY_DIR: &str = "/var/run/secrets/eol/embeddings";
/// The file name of a mounted API key, inside its directory.
pub const KEY_FILE: &str = "api-key";
/// Where a FeatureRun's runner writes its report for the kubelet to hand to the operator.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The port `eol serve` listens on in a pod.
pub const HTTP_PORT: u16 = 8080;
/// Answers 200 once the feature's tests passed in the serving phase.
pub const READY_PATH: &str = "/readyz";
/// Answers 200 while the process serves.
pub const HEALTH_PATH: &str = "/healthz";

/// A file of [`SOURCE_DIR`] as an absolute path.
pub fn source_path(file: &str) -> String {
    format!("{SOURCE_DIR}/{file}")
}

/// The path of a mounted API key in `dir` ([`MODEL_KEY_DIR`] or [`EMBEDDING_KEY_DIR`]).
pub fn key_path(dir: &str) -> String {
    format!("{dir}/{KEY_FILE}")
}

/// The file another feature is read from, beside the referencing one:
/// `@feature:orders` reads `orders.eol`.
pub fn feature_document(name: &str) -> String {
    format!("{name}.eol")
}

/// A document a feature references: a file, or another feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReference {
    /// The reference as the prompt names it: the path, or `feature:NAME`.
    pub name: String,
    /// The path relative to the feature file ([`feature_document`] for a feature).
    pub path: String,
    /// The referenced feature's name, when it is one (read and parsed as a feature).
    pub feature: Option<String>,
    /// Where it was written (frontmatter entries: the frontmatter's first line).
    pub position: Position,
}

/// Every document `feature` references, in order, each once: `@path` and
/// `@feature:NAME` in its prose, then its frontmatter's `context:` list.
pub fn referenced_documents(feature: &Feature) -> Vec<DocumentReference> {
    let from_prose = feature.references.iter().map(|r| match r {
        Reference::Path { path, location } => (path.clone(), location.0),
        Reference::Feature { name, location } => (format!("feature:{name}"), location.0),
    });
    // Frontmatter entries have no recorded position; the frontmatter starts at line 2.
    let from_frontmatter = feature
        .frontmatter
        .context
        .iter()
        .map(|c| (c.clone(), Position::new(2, 1)));
    let mut out: Vec<DocumentReference> = Vec::new();
    for (name, position) in from_prose.chain(from_frontmatter) {
        if out.iter().any(|d| d.name == name) {
            continue;
        }
        let (path, other) = match name.strip_prefix("feature:") {
            Some(other) => (feature_document(other), Some(other.to_owned())),
            None => (name.clone(), None),
        };
        out.push(DocumentReference {
            name,
            path,
            feature: other,
            position,
        });
    }
    out
}

/// What a runner pod runs: the arguments of the `eol` command.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerCommand {
    /// `eol serve`: the feature's HTTP API on [`HTTP_PORT`], ready once its tests pass.
    Serve {
        /// Gate readiness on the tests in [`TESTS_FILE`] (else `--no-test-gate`).
        tests: bool,
    },
    /// `eol run`: one operation, then exit with a report.
    Run {
        /// The operation.
        operation: String,
        /// Its input (a JSON object).
        input: serde_json::Value,
        /// The phase to run in, else the feature's own.
        phase: Option<Phase>,
    },
    /// `eol test`: the tests in [`TESTS_FILE`], then exit with a report.
    Test {
        /// The phase to run in, else the feature's own.
        phase: Option<Phase>,
    },
}

impl RunnerCommand {
    /// The container's arguments (the image's entrypoint is `eol`), reading the
    /// feature from [`SOURCE_DIR`].
    pub fn args(&self) -> Vec<String> {
        let feature = source_path(FEATURE_FILE);
        let tests = source_path(TESTS_FILE);
        let (mut args, phase) = match self {
            RunnerCommand::Serve { tests: gated } => {
                let mut args = vec![
                    "serve".to_owned(),
                    feature,
                    "--listen".to_owned(),
                    format!("0.0.0.0:{HTTP_PORT}"),
                ];
                if *gated {
                    args.extend(["--tests".to_owned(), tests]);
                } else {
                    args.push("--no-test-gate".to_owned());
                }
                (args, None)
            }
            RunnerCommand::Run {
                operation,
                input,
                phase,
            } => (
                vec![
                    "run".to_owned(),
                    feature,
                    "--operation".to_owned(),
                    operation.clone(),
                    "--input".to_owned(),
                    input.to_string(),
                ],
                *phase,
            ),
            RunnerCommand::Test { phase } => (
                vec!["test".to_owned(), tests, "--feature".to_owned(), feature],
                *phase,
            ),
        };
        if let Some(phase) = phase {
            args.extend(["--phase".to_owned(), phase.to_string()]);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_paths_beside_the_feature_once_each() {
        let text = "---\nname: triage\nphase: prototyping\ncontext:\n  - docs/policy.md\n  - feature:orders\n---\n# T\n\nSee @docs/policy.md and @feature:orders.\n\n## Operations\n\n### classify\nClassify.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\n```\n";
        let feature = crate::parse_feature("t.eol", text).expect("parses");
        let refs = referenced_documents(&feature);
        let paths: Vec<(&str, &str, Option<&str>)> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.path.as_str(), r.feature.as_deref()))
            .collect();
        assert_eq!(
            paths,
            [
                ("docs/policy.md", "docs/policy.md", None),
                ("feature:orders", "orders.eol", Some("orders")),
            ]
        );
        assert_eq!(refs[0].position.line, 10, "the prose reference's line");
    }

    #[test]
    fn commands_read_the_mounted_files() {
        assert_eq!(
            RunnerCommand::Serve { tests: true }.args(),
            [
                "serve",
                "/etc/eol/feature.eol",
                "--listen",
                "0.0.0.0:8080",
                "--tests",
                "/etc/eol/feature.test.eol"
            ]
        );
        assert_eq!(
            RunnerCommand::Test {
                phase: Some(Phase::Implementation)
            }
            .args(),
            [
                "test",
                "/etc/eol/feature.test.eol",
                "--feature",
                "/etc/eol/feature.eol",
                "--phase",
                "implementation"
            ]
        );
    }
}
