//! The command line: argument parsing ([`args`]), one module per command, how
//! a command's failure is printed and its exit code, and the run report of
//! `run` and `test` ([`run_report`]).

mod args;
mod check;
mod compare;
mod completions;
mod dev;
mod files;
mod generate;
mod mcp;
mod run;
mod run_report;
mod sandbox_probe;
mod serve;
mod switch;
mod test;

use args::{Cli, Command, OutputFormat, REPORT_FILE_ENV};
use clap::Parser;
use eol_core::crd::RunReport;
use eol_core::{Diagnostics, Phase};
use eol_runner::bootstrap::BootstrapError;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// A command's failure: what to print and the exit code.
struct Failure {
    message: String,
    kind: &'static str,
    code: u8,
}

impl Failure {
    /// A command that failed (exit code 1), with its error's stable kind.
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
            code: 1,
        }
    }

    /// Arguments or files the command cannot use (exit code 2).
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "usage",
            code: 2,
        }
    }

    /// A feature or test file that is not valid (exit code 2).
    fn invalid(d: &Diagnostics) -> Self {
        Self {
            message: d.to_string(),
            kind: "invalid_spec",
            code: 2,
        }
    }
}

impl From<BootstrapError> for Failure {
    /// The cause's own message, as the commands have always printed it, with
    /// the kind and exit code scripts and the operator rely on.
    fn from(error: BootstrapError) -> Self {
        match error {
            BootstrapError::ModelSettings { source, .. } => Failure::usage(source.to_string()),
            budget @ BootstrapError::Budget { .. } => Failure::usage(budget.to_string()),
            BootstrapError::ModelClient { source, .. } => {
                Failure::new(source.kind(), source.to_string())
            }
            BootstrapError::Python { source } => Failure::new("python_missing", source.to_string()),
            BootstrapError::Sandbox { source, .. } => Failure::new("sandbox", source.to_string()),
            BootstrapError::Tools { source, .. } => Failure::new("mcp", source.to_string()),
            BootstrapError::Invalid { diagnostics, .. } => Failure::invalid(&diagnostics),
        }
    }
}

/// Parses the command line, runs the command and prints how it failed, if it did.
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
                run_report::write(
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
    // Declared before the runtime, so dropped after it: the last spans are
    // sent when every task is done (a short `eol run` loses none).
    let _telemetry = eol_core::process::init_tracing("warn", "eol-runner");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            if run_report::reports(&cli.command)
                && let Some(path) = &cli.report_file
            {
                run_report::write(
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

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match &cli.command {
        Command::Check { files } => check::check(&cli, files).await,
        Command::Run {
            file,
            operation,
            input,
            phase,
        } => {
            let phase = phase.map(Phase::from);
            run_report::reported(&cli, async |report| {
                run::run(&cli, file, operation, input, phase, report).await
            })
            .await
        }
        Command::Test {
            file,
            phase,
            coverage,
            feature,
        } => {
            let phase = phase.map(Phase::from);
            run_report::reported(&cli, async |report| {
                test::test(&cli, file, phase, *coverage, feature.as_deref(), report).await
            })
            .await
        }
        Command::Switch {
            file,
            to,
            operation,
            dry_run,
        } => switch::switch(&cli, file, (*to).into(), operation.as_deref(), *dry_run),
        Command::Generate {
            file,
            operation,
            in_place,
            output_dir,
            attempts,
            min_agreement,
        } => {
            generate::generate(
                &cli,
                file,
                operation.as_deref(),
                *in_place,
                output_dir.as_deref(),
                *attempts,
                *min_agreement,
            )
            .await
        }
        Command::Compare {
            file,
            operation,
            limit,
            examples,
        } => {
            compare::compare(
                &cli,
                file,
                operation.as_deref(),
                *limit,
                examples.as_deref(),
            )
            .await
        }
        Command::Mcp { file } => mcp::mcp(&cli, file).await,
        Command::Serve {
            file,
            tests,
            listen,
            no_test_gate,
        } => serve::serve(&cli, file, tests.as_deref(), listen, *no_test_gate).await,
        Command::Dev {
            file,
            tests,
            listen,
            watch,
            cluster,
            namespace,
        } => {
            let target = cluster.as_deref().map(|name| dev::ClusterTarget {
                feature: name,
                namespace: namespace.as_deref(),
            });
            dev::dev(&cli, file, tests.as_deref(), listen, *watch, target).await
        }
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man { dir } => completions::man(dir),
        Command::SandboxProbe => sandbox_probe::sandbox_probe(&cli).await,
    }
}
