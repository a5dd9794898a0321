//! The command line's arguments: global options, the sandbox's settings and
//! one subcommand per `eol` command.

use clap::{Args, Parser, Subcommand, ValueEnum};
use eol_core::Phase;
use eol_core::runner_contract::env as vars;
use eol_runner::bootstrap::{RuntimeSettings, SandboxSettings};
use eol_runner::report;
use std::path::PathBuf;

/// The environment variable naming the report file; read directly when the
/// command line itself cannot be parsed.
pub(super) const REPORT_FILE_ENV: &str = vars::REPORT_FILE;

/// Run LLM features described in .eol files.
///
/// A feature is a Markdown file with YAML frontmatter whose operations are
/// specified in prose, with input/output JSON Schemas and, optionally, Python
/// implementations. Prototyped operations run on an LLM; implemented ones run
/// their Python in a sandbox. Tests live in NAME.test.eol next to NAME.eol.
#[derive(Parser, Debug)]
#[command(name = "eol", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  eol check features/examples/*.eol\n  eol run features/examples/blog-publisher.eol --operation slugify --input '{\"title\": \"Hello, World\"}'\n  eol test features/examples/inventory.test.eol --coverage\n  eol dev features/examples/inventory.eol --watch\n  eol switch features/examples/blog-publisher.eol --operation suggest_tags --to implementation"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub(super) output: OutputFormat,
    /// Redis to use; without it, a local Redis is started from the cache and stopped afterwards.
    #[arg(long, global = true, env = vars::REDIS_URL, hide_env_values = true)]
    pub(super) redis_url: Option<String>,
    /// When `run` or `test` ends, however it ends, write a JSON report of at most 4096 bytes here
    /// (a Kubernetes termination-message file such as /dev/termination-log).
    #[arg(long, global = true, env = REPORT_FILE_ENV, value_name = "PATH")]
    pub(super) report_file: Option<PathBuf>,
    /// Keep the full result of `run` or `test` in Redis (REDIS_URL) at eol:<feature>:runs:<ID> for
    /// 7 days; the report names the key.
    #[arg(long, global = true, env = vars::RUN_ID, value_name = "ID", value_parser = parse_run_id)]
    pub(super) run_id: Option<String>,
    #[command(flatten)]
    pub(super) sandbox: SandboxArgs,
}

/// Settings of the Python sandbox.
#[derive(Args, Debug)]
pub(super) struct SandboxArgs {
    /// Python interpreter for the sandbox workers (default: python3 on PATH).
    #[arg(long, global = true, env = "EOL_PYTHON")]
    pub(super) python: Option<PathBuf>,
    /// Number of warm sandbox workers (default: number of CPUs).
    #[arg(long, global = true, env = "EOL_WORKERS")]
    pub(super) workers: Option<usize>,
    /// Wall-clock limit of one call, in seconds; an overrunning worker is killed.
    #[arg(long, global = true, env = "EOL_CALL_TIMEOUT", default_value_t = 10.0)]
    pub(super) call_timeout: f64,
    /// CPU-time limit of one call, in seconds.
    #[arg(long, global = true, env = "EOL_CPU_SECONDS", default_value_t = 5.0)]
    pub(super) cpu_seconds: f64,
    /// Memory limit of each worker, in MiB.
    #[arg(long, global = true, env = "EOL_MEMORY_MB", default_value_t = 512)]
    pub(super) memory_mb: u64,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Validate .eol and .test.eol files (format, schemas, and the Python code's safety).
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run one operation of a feature and print its output.
    Run {
        /// The feature file (NAME.eol).
        file: PathBuf,
        /// The operation to run.
        #[arg(long)]
        operation: String,
        /// The input: JSON text, or @path to a JSON file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Run every operation in this phase instead of its own.
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
    },
    /// Run a feature's tests (NAME.test.eol) and report each case.
    Test {
        /// The test file (NAME.test.eol).
        file: PathBuf,
        /// Run every operation in this phase instead of its own.
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
        /// Also list which operations have tests and which have code.
        #[arg(long)]
        coverage: bool,
        /// The feature file, when it is not NAME.eol next to the tests.
        #[arg(long)]
        feature: Option<PathBuf>,
    },
    /// Switch a feature, or one operation, to another phase (rewrites the file).
    Switch {
        /// The feature file (NAME.eol).
        file: PathBuf,
        /// The phase to switch to.
        #[arg(long, value_enum)]
        to: PhaseArg,
        /// Switch only this operation (the feature becomes hybrid).
        #[arg(long)]
        operation: Option<String>,
        /// Print the new file instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Have the model write Python for prototyped operations; code is kept only if it passes the tests.
    Generate {
        /// The feature file (NAME.eol); its tests are NAME.test.eol next to it.
        file: PathBuf,
        /// Only this operation (default: every prototyped operation).
        #[arg(long)]
        operation: Option<String>,
        /// Write the code into the feature file.
        #[arg(long, conflicts_with = "output_dir")]
        in_place: bool,
        /// Write the updated feature into this directory instead.
        #[arg(long = "output-dir", value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Attempts per operation, with the failures fed back each time.
        #[arg(long, default_value_t = eol_runner::generate::DEFAULT_ATTEMPTS)]
        attempts: u32,
        /// After generating, replay the recorded prototype examples through the new code and
        /// refuse it (nothing written, exit 1) when fewer than this percentage agree.
        #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
        min_agreement: Option<f64>,
    },
    /// Replay recorded prototype examples through the implementation and report where the outputs agree.
    Compare {
        /// The feature file (NAME.eol).
        file: PathBuf,
        /// Only this operation (default: every operation with code).
        #[arg(long)]
        operation: Option<String>,
        /// At most this many examples per operation (the newest recorded, or a file's first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Read the examples from this JSONL file (one {"input": ..., "output": ...} per line,
        /// optionally with "operation") instead of the ones recorded in Redis.
        #[arg(long, value_name = "FILE.jsonl")]
        examples: Option<PathBuf>,
    },
    /// Serve a feature over HTTP: POST /v1/operations/{op}, /healthz, /readyz, /metrics.
    Serve {
        /// The feature file (NAME.eol).
        file: PathBuf,
        /// The tests that gate readiness (default: NAME.test.eol next to the feature, if present).
        #[arg(long)]
        tests: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, env = "EOL_LISTEN", default_value = "0.0.0.0:8080")]
        listen: String,
        /// Become ready without running the tests first.
        #[arg(long)]
        no_test_gate: bool,
    },
    /// Serve a feature locally while you edit it: with --watch, each save is checked and reloaded,
    /// its affected tests run, and a broken save keeps the last good version serving.
    #[command(
        after_help = "Examples:\n  eol dev features/examples/inventory.eol --watch\n  eol dev inventory.eol --watch --listen 127.0.0.1:9000\n  eol dev inventory.eol --watch --cluster inventory --namespace shop"
    )]
    Dev {
        /// The feature file (NAME.eol).
        file: PathBuf,
        /// The tests to run (default: NAME.test.eol next to the feature, if present).
        #[arg(long)]
        tests: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Reload on every save of the feature or its tests, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Also server-side apply each good save to the source ConfigMap of this Feature
        /// (its spec.source.configMapKeyRef) on the cluster of the current kubeconfig context.
        #[arg(long, value_name = "FEATURE_NAME")]
        cluster: Option<String>,
        /// The Feature's namespace (default: the kubeconfig context's).
        #[arg(long, requires = "cluster")]
        namespace: Option<String>,
    },
    /// Serve a feature over MCP on stdin/stdout: its operations as tools, its prose and references as resources.
    Mcp {
        /// The feature file (NAME.eol).
        file: PathBuf,
    },
    /// Run a corpus of hostile code (imports, dunder and frame walks, file and network access, fork, CPU, memory and
    /// sleep bombs) in this machine's sandbox, past the static check, and report what each came to; exit 1 if one
    /// was not refused as expected. E.g. `kubectl exec <serving pod> -- eol sandbox-probe`.
    SandboxProbe,
    /// Print a shell completion script (e.g. `eol completions bash > /etc/bash_completion.d/eol`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages: eol(1) and one per command, eol-run(1) and so on
    /// (e.g. `eol man /usr/local/share/man/man1 && man eol-run`).
    Man {
        /// The directory to write them to (created if missing).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(super) enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON document, for programs.
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum PhaseArg {
    Prototyping,
    Implementation,
    Hybrid,
}

impl From<PhaseArg> for Phase {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Prototyping => Phase::Prototyping,
            PhaseArg::Implementation => Phase::Implementation,
            PhaseArg::Hybrid => Phase::Hybrid,
        }
    }
}

fn parse_percent(p: &str) -> Result<f64, String> {
    match p.trim_end_matches('%').parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("a percentage from 0 to 100, such as 90".into()),
    }
}

fn parse_run_id(id: &str) -> Result<String, String> {
    if report::valid_run_id(id) {
        Ok(id.to_owned())
    } else {
        Err("a run id is 1 to 128 letters, digits, '.', '_' or '-'".into())
    }
}

impl Cli {
    /// What the library needs to start a feature's runtime.
    pub(super) fn runtime_settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            redis_url: self.redis_url.clone(),
            sandbox: self.sandbox.settings(),
        }
    }
}

impl SandboxArgs {
    /// The sandbox's settings, as the library takes them.
    pub(super) fn settings(&self) -> SandboxSettings {
        SandboxSettings {
            python: self.python.clone(),
            workers: self.workers,
            call_timeout: self.call_timeout,
            cpu_seconds: self.cpu_seconds,
            memory_mb: self.memory_mb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::runner_contract::{FEATURE_FILE, RunnerCommand, TESTS_FILE, source_path};

    /// The operator starts pods with `RunnerCommand::args`: this is the parser
    /// those arguments meet in the pod.
    fn parsed(command: &RunnerCommand) -> Cli {
        let argv = std::iter::once("eol".to_owned()).chain(command.args());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{command:?}: {e}"))
    }

    #[test]
    fn the_operators_commands_parse_as_the_runner_reads_them() {
        let feature = PathBuf::from(source_path(FEATURE_FILE));
        let tests = PathBuf::from(source_path(TESTS_FILE));
        match parsed(&RunnerCommand::Serve { tests: true }).command {
            Command::Serve {
                file,
                tests: Some(t),
                listen,
                ..
            } => {
                assert_eq!((file, t), (feature.clone(), tests.clone()));
                let port = listen.rsplit(':').next().and_then(|p| p.parse().ok());
                assert_eq!(
                    port,
                    Some(eol_core::runner_contract::HTTP_PORT),
                    "the port the pod's probes and Service use"
                );
            }
            other => panic!("not serve with tests: {other:?}"),
        }
        match parsed(&RunnerCommand::Serve { tests: false }).command {
            Command::Serve {
                no_test_gate: true, ..
            } => {}
            other => panic!("not serve without the gate: {other:?}"),
        }
        let run = RunnerCommand::Run {
            operation: "add_stock".into(),
            input: serde_json::json!({"sku": "A-1", "quantity": 2}),
            phase: Some(Phase::Implementation),
        };
        match parsed(&run).command {
            Command::Run {
                file,
                operation,
                input,
                phase,
            } => {
                assert_eq!(file, feature);
                assert_eq!(operation, "add_stock");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&input).expect("JSON input"),
                    serde_json::json!({"sku": "A-1", "quantity": 2})
                );
                assert_eq!(phase.map(Phase::from), Some(Phase::Implementation));
            }
            other => panic!("not run: {other:?}"),
        }
        match parsed(&RunnerCommand::Test { phase: None }).command {
            Command::Test {
                file,
                feature: f,
                phase: None,
                ..
            } => assert_eq!((file, f), (tests, Some(feature))),
            other => panic!("not test: {other:?}"),
        }
    }
}
