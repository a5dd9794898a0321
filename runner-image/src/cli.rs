//! The command line: argument parsing, commands, and how results are printed.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use eol_core::crd::RunReport;
use eol_core::{Diagnostics, Phase, TestSuite};
use eol_runner::engine::Runtime;
use eol_runner::llm::{ChatClient, LlmSettings};
use eol_runner::mcp::{FeatureMcpServer, Toolbox};
use eol_runner::prototype::{Prototyper, Tools};
use eol_runner::report;
use eol_runner::sandbox::{Interpreter, SandboxLimits, WorkerPool};
use eol_runner::store::RedisStore;
use eol_runner::testing::{self, CaseResult, Summary, Verdict};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment variable naming the report file; read directly when the
/// command line itself cannot be parsed.
const REPORT_FILE_ENV: &str = "EOL_REPORT_FILE";

/// Run LLM features described in .eol files.
///
/// A feature is a Markdown file with YAML frontmatter whose operations are
/// specified in prose, with input/output JSON Schemas and, optionally, Python
/// implementations. Prototyped operations run on an LLM; implemented ones run
/// their Python in a sandbox. Tests live in NAME.test.eol next to NAME.eol.
#[derive(Parser, Debug)]
#[command(name = "eol", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  eol check features/examples/*.eol\n  eol run features/examples/blog-publisher.eol --operation slugify --input '{\"title\": \"Hello, World\"}'\n  eol test features/examples/inventory.test.eol --coverage\n  eol switch features/examples/blog-publisher.eol --operation suggest_tags --to implementation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Redis to use; without it, a local Redis is started from the cache and stopped afterwards.
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// When `run` or `test` ends, however it ends, write a JSON report of at most 4096 bytes here
    /// (a Kubernetes termination-message file such as /dev/termination-log).
    #[arg(long, global = true, env = REPORT_FILE_ENV, value_name = "PATH")]
    report_file: Option<PathBuf>,
    /// Keep the full result of `run` or `test` in Redis (REDIS_URL) at eol:<feature>:runs:<ID> for
    /// 7 days; the report names the key.
    #[arg(long, global = true, env = "EOL_RUN_ID", value_name = "ID", value_parser = parse_run_id)]
    run_id: Option<String>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// Settings of the Python sandbox.
#[derive(Args, Debug)]
struct SandboxArgs {
    /// Python interpreter for the sandbox workers (default: python3 on PATH).
    #[arg(long, global = true, env = "EOL_PYTHON")]
    python: Option<PathBuf>,
    /// Number of warm sandbox workers (default: number of CPUs).
    #[arg(long, global = true, env = "EOL_WORKERS")]
    workers: Option<usize>,
    /// Wall-clock limit of one call, in seconds; an overrunning worker is killed.
    #[arg(long, global = true, env = "EOL_CALL_TIMEOUT", default_value_t = 10.0)]
    call_timeout: f64,
    /// CPU-time limit of one call, in seconds.
    #[arg(long, global = true, env = "EOL_CPU_SECONDS", default_value_t = 5.0)]
    cpu_seconds: f64,
    /// Memory limit of each worker, in MiB.
    #[arg(long, global = true, env = "EOL_MEMORY_MB", default_value_t = 512)]
    memory_mb: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Serve a feature over MCP on stdin/stdout: its operations as tools, its prose and references as resources.
    Mcp {
        /// The feature file (NAME.eol).
        file: PathBuf,
    },
    /// Print a shell completion script (e.g. `eol completions bash > /etc/bash_completion.d/eol`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON document, for programs.
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PhaseArg {
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

/// A command's failure: what to print and the exit code.
struct Failure {
    message: String,
    kind: &'static str,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "usage",
            code: 2,
        }
    }
    fn invalid(d: &Diagnostics) -> Self {
        Self {
            message: d.to_string(),
            kind: "invalid_spec",
            code: 2,
        }
    }
}

fn parse_run_id(id: &str) -> Result<String, String> {
    if report::valid_run_id(id) {
        Ok(id.to_owned())
    } else {
        Err("a run id is 1 to 128 letters, digits, '.', '_' or '-'".into())
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not failures; a Job's bad arguments are,
            // and the operator still needs a report saying so.
            if e.use_stderr()
                && let Some(path) = std::env::var_os(REPORT_FILE_ENV)
            {
                let first = e.to_string();
                let message = first
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned();
                write_report(
                    Path::new(&path),
                    RunReport {
                        error: Some(message),
                        error_kind: Some("usage".into()),
                        ..RunReport::default()
                    },
                );
            }
            e.exit()
        }
    };
    eol_core::process::init_tracing("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            if reports(&cli.command)
                && let Some(path) = &cli.report_file
            {
                write_report(
                    path,
                    RunReport {
                        error: Some(format!("failed to start the async runtime: {e}")),
                        error_kind: Some("runtime".into()),
                        ..RunReport::default()
                    },
                );
            }
            return ExitCode::from(1);
        }
    };
    let output = cli.output;
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(f) => {
            if output == OutputFormat::Json {
                println!(
                    "{}",
                    json!({ "error": { "kind": f.kind, "message": f.message } })
                );
            } else {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// Whether the command leaves a run report (`--report-file`).
fn reports(command: &Command) -> bool {
    matches!(command, Command::Run { .. } | Command::Test { .. })
}

/// Writes the report, logging rather than failing: the run's exit code stands.
fn write_report(path: &Path, report: RunReport) {
    if let Err(e) = report::write_report(path, &report) {
        tracing::warn!(path = %path.display(), error = %e, "failed to write the run report");
    }
}

/// Completes a run's report with how the command ended and writes it, if asked for.
fn finish_report(
    cli: &Cli,
    mut report: RunReport,
    result: &Result<ExitCode, Failure>,
    started: Instant,
) {
    let Some(path) = &cli.report_file else {
        return;
    };
    report.summary.duration = Some(report::format_duration(started.elapsed()));
    if let Err(f) = result {
        report.error = Some(f.message.clone());
        report.error_kind = Some(f.kind.to_owned());
    }
    write_report(path, report);
}

/// Keeps the full result under `--run-id`, returning its key; a failure is only
/// logged, since the run itself is done.
async fn keep_result(
    cli: &Cli,
    store: &RedisStore,
    feature: &str,
    result: &Value,
) -> Option<String> {
    let run_id = cli.run_id.as_deref()?;
    if cli.redis_url.is_none() {
        // The embedded Redis stops with this process: a key there would name nothing.
        tracing::warn!("--run-id needs REDIS_URL; the full result is not stored");
        return None;
    }
    match report::store_result(store, feature, run_id, result).await {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!(error = %e, "failed to store the full result; the report has no resultKey");
            None
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    match &cli.command {
        Command::Check { files } => check(&cli, files).await,
        Command::Run {
            file,
            operation,
            input,
            phase,
        } => {
            let mut report = RunReport::default();
            let result = run(
                &cli,
                file,
                operation,
                input,
                phase.map(Phase::from),
                &mut report,
            )
            .await;
            finish_report(&cli, report, &result, started);
            result
        }
        Command::Test {
            file,
            phase,
            coverage,
            feature,
        } => {
            let mut report = RunReport::default();
            let result = test(
                &cli,
                file,
                phase.map(Phase::from),
                *coverage,
                feature.as_deref(),
                &mut report,
            )
            .await;
            finish_report(&cli, report, &result, started);
            result
        }
        Command::Switch {
            file,
            to,
            operation,
            dry_run,
        } => switch(&cli, file, (*to).into(), operation.as_deref(), *dry_run),
        Command::Generate {
            file,
            operation,
            in_place,
            output_dir,
            attempts,
        } => {
            generate(
                &cli,
                file,
                operation.as_deref(),
                *in_place,
                output_dir.as_deref(),
                *attempts,
            )
            .await
        }
        Command::Mcp { file } => mcp(&cli, file).await,
        Command::Serve {
            file,
            tests,
            listen,
            no_test_gate,
        } => serve(&cli, file, tests.as_deref(), listen, *no_test_gate).await,
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "eol", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn start_pool(args: &SandboxArgs) -> Result<WorkerPool, Failure> {
    let interpreter = Interpreter::discover(args.python.as_deref()).map_err(|e| Failure {
        message: e.to_string(),
        kind: "python_missing",
        code: 1,
    })?;
    let limits = SandboxLimits {
        memory_bytes: args.memory_mb * 1024 * 1024,
        cpu_seconds: args.cpu_seconds,
        wall_timeout: Duration::from_secs_f64(args.call_timeout.max(0.1)),
        ..SandboxLimits::default()
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    WorkerPool::start(interpreter, limits, workers)
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            kind: "sandbox",
            code: 1,
        })
}

fn read_feature(path: &Path) -> Result<eol_core::Feature, Failure> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read {}: {e}", path.display())))?;
    eol_core::parse_feature(&path.display().to_string(), &src).map_err(|d| Failure::invalid(&d))
}

fn read_suite(path: &Path) -> Result<TestSuite, Failure> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read {}: {e}", path.display())))?;
    eol_core::parse_test_suite(&path.display().to_string(), &src).map_err(|d| Failure::invalid(&d))
}

async fn check(cli: &Cli, files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let mut pool = None;
    let mut reports = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let is_test = name.ends_with(".test.eol");
        let outcome: Result<String, String> = if is_test {
            match read_suite(file) {
                Ok(suite) => {
                    let feature_file = eol_runner::feature_file_for(file, &suite);
                    match read_feature(&feature_file) {
                        Ok(feature) => suite
                            .check_against(&name, &feature)
                            .map(|()| {
                                format!(
                                    "{} cases for feature '{}'",
                                    suite.cases.len(),
                                    suite.feature
                                )
                            })
                            .map_err(|d| d.to_string()),
                        Err(f) => Err(format!(
                            "{name}: the feature under test could not be loaded: {}",
                            f.message
                        )),
                    }
                }
                Err(f) => Err(f.message),
            }
        } else {
            match read_feature(file) {
                Ok(feature) => {
                    if pool.is_none() {
                        pool = Some(start_pool(&cli.sandbox).await?);
                    }
                    let pool = pool
                        .as_ref()
                        .ok_or_else(|| Failure::usage("sandbox unavailable"))?;
                    let code = eol_runner::engine::check_code(&name, &feature, pool).await;
                    let refs = eol_runner::context::resolve_all(&name, &feature).map(|_| ());
                    match code.and(refs) {
                        Ok(()) => Ok(format!(
                            "feature '{}', phase {}, {} operations ({} with code)",
                            feature.name(),
                            feature.frontmatter.phase,
                            feature.operations.len(),
                            feature
                                .operations
                                .iter()
                                .filter(|o| o.code.is_some())
                                .count()
                        )),
                        Err(d) => Err(d.to_string()),
                    }
                }
                Err(f) => Err(f.message),
            }
        };
        reports.push((name, outcome));
    }
    let failed = reports.iter().filter(|(_, r)| r.is_err()).count();
    if cli.output == OutputFormat::Json {
        let items: Vec<Value> = reports
            .iter()
            .map(|(file, r)| match r {
                Ok(s) => json!({ "file": file, "ok": true, "summary": s }),
                Err(e) => {
                    json!({ "file": file, "ok": false, "errors": e.lines().collect::<Vec<_>>() })
                }
            })
            .collect();
        println!("{}", json!({ "files": items, "failed": failed }));
    } else {
        for (file, r) in &reports {
            match r {
                Ok(s) => println!("ok    {file}: {s}"),
                Err(e) => {
                    println!("FAIL  {file}");
                    for line in e.lines() {
                        println!("      {line}");
                    }
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn parse_input(input: &str) -> Result<Value, Failure> {
    let (text, origin) = match input.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("failed to read input file {path}: {e}")))?,
            path.to_owned(),
        ),
        None => (input.to_owned(), "--input".to_owned()),
    };
    serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{origin} is not valid JSON: {e}")))
}

async fn load_runtime(
    cli: &Cli,
    file: &Path,
    feature: eol_core::Feature,
) -> Result<(Runtime, Arc<RedisStore>), Failure> {
    let settings = LlmSettings::from_env(feature.frontmatter.model.as_ref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let prototyper = match settings {
        Some(settings) => Some(Arc::new(Prototyper::new(
            ChatClient::new(settings).map_err(|e| Failure {
                message: e.to_string(),
                kind: e.kind(),
                code: 1,
            })?,
        ))),
        None => None,
    };
    let pool = start_pool(&cli.sandbox).await?;
    let store = Arc::new(RedisStore::new(cli.redis_url.clone()));
    // Tools matter only to the model: without one, no MCP server is started.
    let tools: Option<Arc<dyn Tools>> = match &prototyper {
        Some(_) => Some(Arc::new(
            Toolbox::connect(&feature, store.clone())
                .await
                .map_err(|e| Failure {
                    message: e.to_string(),
                    kind: "mcp",
                    code: 1,
                })?,
        )),
        None => None,
    };
    let runtime = Runtime::load(&file.display().to_string(), feature, pool, store.clone())
        .await
        .map_err(|d| Failure::invalid(&d))?
        .with_model(prototyper)
        .with_tools(tools);
    // Embeddings serve only prototyped calls (semantic cache, vector context).
    let runtime = if runtime.model().is_some() {
        use eol_runner::caches::{EMBEDDINGS_ENV, EmbedderSource, embedder_from_env};
        // Made now, so a broken setting shows at start; when it fails, made
        // again on a later prototyped call (the embeddings API may start later).
        let embedder = match embedder_from_env().await {
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
        };
        runtime.with_caches(embedder)
    } else {
        runtime
    };
    Ok((runtime, store))
}

async fn run(
    cli: &Cli,
    file: &Path,
    operation: &str,
    input: &str,
    phase: Option<Phase>,
    report: &mut RunReport,
) -> Result<ExitCode, Failure> {
    let input = parse_input(input)?;
    let feature = read_feature(file)?;
    let (runtime, store) = load_runtime(cli, file, feature).await?;
    let exec = runtime
        .execute(operation, &input, phase)
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            kind: e.kind(),
            code: 1,
        })?;
    let result = json!({
        "feature": runtime.feature().name(),
        "operation": operation,
        "phase": exec.phase,
        "output": exec.output,
        "duration_ms": exec.duration.as_secs_f64() * 1e3,
        "trace": exec.trace,
        "cache": exec.cache,
    });
    if cli.output == OutputFormat::Json {
        println!("{result}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&exec.output).unwrap_or_default()
        );
    }
    report.summary.tokens = exec.trace.as_ref().map(|t| report::tokens(&t.usage));
    report.summary.result_key = keep_result(cli, &store, runtime.feature().name(), &result).await;
    report.summary.output = Some(exec.output);
    Ok(ExitCode::SUCCESS)
}

async fn test(
    cli: &Cli,
    file: &Path,
    phase: Option<Phase>,
    with_coverage: bool,
    feature_file: Option<&Path>,
    report: &mut RunReport,
) -> Result<ExitCode, Failure> {
    let suite = read_suite(file)?;
    let feature_path = feature_file.map_or_else(
        || eol_runner::feature_file_for(file, &suite),
        Path::to_path_buf,
    );
    let feature = read_feature(&feature_path)?;
    suite
        .check_against(&file.display().to_string(), &feature)
        .map_err(|d| Failure::invalid(&d))?;
    let (runtime, store) = load_runtime(cli, &feature_path, feature).await?;

    let text = cli.output == OutputFormat::Text;
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(suite.cases.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut results: Vec<CaseResult> = Vec::with_capacity(suite.cases.len());
    for case in &suite.cases {
        if let Some(bar) = &bar {
            bar.set_message(case.title.clone());
        }
        let result = testing::run_case(&runtime, case, phase).await;
        if text {
            let line = case_line(&result);
            match &bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        results.push(result);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = Summary::of(&results);
    let coverage = with_coverage.then(|| testing::coverage(&runtime, &suite));
    if text {
        if let Some(rows) = &coverage {
            println!();
            println!("coverage of feature '{}':", runtime.feature().name());
            println!("  {:<28} {:<15} {:>5}  code", "operation", "phase", "tests");
            for r in rows {
                println!(
                    "  {:<28} {:<15} {:>5}  {}",
                    r.operation,
                    r.phase.as_str(),
                    r.tests,
                    if r.has_code { "yes" } else { "no" }
                );
            }
            let untested: Vec<_> = rows
                .iter()
                .filter(|r| r.tests == 0)
                .map(|r| r.operation.as_str())
                .collect();
            let no_code: Vec<_> = rows
                .iter()
                .filter(|r| !r.has_code)
                .map(|r| r.operation.as_str())
                .collect();
            println!(
                "  without tests: {}",
                if untested.is_empty() {
                    "none".into()
                } else {
                    untested.join(", ")
                }
            );
            println!(
                "  without code:  {}",
                if no_code.is_empty() {
                    "none".into()
                } else {
                    no_code.join(", ")
                }
            );
            println!();
        }
        println!("{summary}");
    }
    let result = json!({ "feature": runtime.feature().name(), "cases": results, "summary": summary, "coverage": coverage });
    if !text {
        println!("{result}");
    }
    report.summary.tests_passed = Some(report::count(summary.passed));
    report.summary.tests_failed = Some(report::count(summary.failed));
    report.summary.tokens = report::case_tokens(&results);
    report.summary.result_key = keep_result(cli, &store, runtime.feature().name(), &result).await;
    if let Some(error) = report::failed_cases(&results) {
        report.error = Some(error);
        report.error_kind = Some("tests_failed".into());
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn case_line(r: &CaseResult) -> String {
    let mark = match r.verdict {
        Verdict::Passed => "PASS",
        Verdict::Failed => "FAIL",
        Verdict::Skipped => "SKIP",
    };
    let mut line = format!(
        "{mark}  {} :: {}  ({}, {:.1} ms)",
        r.operation,
        r.title,
        r.phase.as_str(),
        r.duration.as_secs_f64() * 1e3
    );
    if let Some(reason) = &r.reason {
        line.push_str("\n      ");
        line.push_str(reason);
    }
    line
}

fn switch(
    cli: &Cli,
    file: &Path,
    to: Phase,
    operation: Option<&str>,
    dry_run: bool,
) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let name = file.display().to_string();
    let new_text = match operation {
        Some(op) => {
            let target = to.forced().ok_or_else(|| {
                Failure::usage("an operation switches to prototyping or implementation, not hybrid")
            })?;
            eol_core::switch_operation(&feature, op, target)
        }
        None => eol_core::switch_feature(&feature, to),
    }
    .map_err(|message| Failure {
        message,
        kind: "switch_refused",
        code: 1,
    })?;
    let switched = eol_core::parse_feature(&name, &new_text).map_err(|d| Failure::invalid(&d))?;
    if dry_run {
        print!("{new_text}");
        return Ok(ExitCode::SUCCESS);
    }
    write_atomically(file, &new_text)
        .map_err(|e| Failure::usage(format!("failed to write {name}: {e}")))?;
    let phases: Vec<String> = switched
        .operations
        .iter()
        .map(|o| format!("{}={}", o.name, o.phase))
        .collect();
    if cli.output == OutputFormat::Json {
        let ops: serde_json::Map<String, Value> = switched
            .operations
            .iter()
            .map(|o| (o.name.clone(), json!(o.phase)))
            .collect();
        println!(
            "{}",
            json!({ "file": name, "phase": switched.frontmatter.phase, "operations": ops })
        );
    } else {
        println!(
            "{name}: phase {} ({})",
            switched.frontmatter.phase,
            phases.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

async fn generate(
    cli: &Cli,
    file: &Path,
    operation: Option<&str>,
    in_place: bool,
    output_dir: Option<&Path>,
    attempts: u32,
) -> Result<ExitCode, Failure> {
    use eol_runner::generate::{self, Progress};
    let feature = read_feature(file)?;
    let tests_path = eol_runner::tests_file_for(file);
    let suite = if tests_path.exists() {
        Some(read_suite(&tests_path)?)
    } else {
        None
    };
    let (runtime, _store) = load_runtime(cli, file, feature).await?;
    let Some(model) = runtime.model().cloned() else {
        return Err(Failure {
            message: format!(
                "eol generate needs a model: set {} (or start the local one: eval \"$(scripts/llm.sh start)\")",
                eol_runner::engine::MODEL_SETTING
            ),
            kind: "no_model",
            code: 1,
        });
    };
    let text = cli.output == OutputFormat::Text;
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = |p: Progress| match (&bar, p) {
        (Some(bar), Progress::Attempt { operation, attempt }) => {
            bar.set_message(format!("{operation}: attempt {attempt}/{attempts}"))
        }
        (None, Progress::Attempt { operation, attempt }) if text => {
            eprintln!("{operation}: attempt {attempt}/{attempts}")
        }
        _ => {}
    };
    let name = file.display().to_string();
    let (updated, reports) = generate::generate(
        &name,
        &runtime,
        &model,
        suite.as_ref(),
        operation,
        attempts,
        &progress,
    )
    .await
    .map_err(|e| Failure {
        message: e.to_string(),
        kind: "generate",
        code: 1,
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let accepted = reports.iter().filter(|r| r.code.is_some()).count();
    // The user's file as written, with only the accepted code blocks added.
    let merged = eol_core::source_text(&updated);
    let destination = match (in_place, output_dir) {
        _ if accepted == 0 => None,
        (true, _) => Some(file.to_path_buf()),
        (false, Some(dir)) => Some(dir.join(file.file_name().unwrap_or_default())),
        (false, None) => None,
    };
    if let Some(dest) = &destination {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::usage(format!("failed to create {}: {e}", dir.display())))?;
        }
        write_atomically(dest, &merged)
            .map_err(|e| Failure::usage(format!("failed to write {}: {e}", dest.display())))?;
    }
    if text {
        for r in &reports {
            match &r.code {
                Some(code) => {
                    println!(
                        "ok    {}: passed {} tests after {} attempt(s)",
                        r.operation, r.passed, r.attempts
                    );
                    if destination.is_none() {
                        println!("```python\n{code}```");
                    }
                }
                None => {
                    println!(
                        "FAIL  {}: no code passed after {} attempt(s); still failing:",
                        r.operation, r.attempts
                    );
                    for f in &r.failures {
                        println!("      {f}");
                    }
                }
            }
        }
        if let Some(dest) = &destination {
            println!("wrote {}", dest.display());
        }
        println!("{accepted} generated, {} failed", reports.len() - accepted);
    } else {
        println!(
            "{}",
            json!({ "operations": reports, "written": destination.map(|d| d.display().to_string()) })
        );
    }
    Ok(if accepted == reports.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn mcp(cli: &Cli, file: &Path) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let (runtime, _store) = load_runtime(cli, file, feature).await?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // stdout carries the protocol; logs go to stderr (see eol_core::process::init_tracing).
    FeatureMcpServer::new(Arc::new(runtime), dir)
        .serve_stdio()
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            kind: "mcp",
            code: 1,
        })?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    cli: &Cli,
    file: &Path,
    tests: Option<&Path>,
    listen: &str,
    no_test_gate: bool,
) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let default_tests = eol_runner::tests_file_for(file);
    let tests_path = tests
        .map(Path::to_path_buf)
        .or_else(|| default_tests.exists().then_some(default_tests));
    let suite = match (&tests_path, no_test_gate) {
        (Some(path), false) => {
            let suite = read_suite(path)?;
            suite
                .check_against(&path.display().to_string(), &feature)
                .map_err(|d| Failure::invalid(&d))?;
            Some(suite)
        }
        _ => None,
    };
    let (runtime, _store) = load_runtime(cli, file, feature).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::usage(format!("failed to listen on {listen}: {e}")))?;
    eprintln!("serving feature '{}' on {listen}", runtime.feature().name());
    eol_runner::serve::serve(Arc::new(runtime), suite, listener, shutdown_signal())
        .await
        .map_err(|e| Failure {
            message: format!("the server failed: {e}"),
            kind: "serve",
            code: 1,
        })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    eol_core::process::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight calls");
}
