//! `eol-operator`: the Kubernetes operator for EOL features.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The EOL operator: reconciles Feature and FeatureRun resources.
#[derive(Parser, Debug)]
#[command(name = "eol-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (Feature, FeatureRun) as YAML.
    Crd,
    /// Run the controllers (uses KUBECONFIG, or the in-cluster service account).
    Run {
        #[command(flatten)]
        options: eol_operator::runtime::RunOptions,
        #[command(flatten)]
        config: Box<eol_operator::config::OperatorConfig>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match eol_operator::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: failed to render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { options, config } => {
            // Kept to the end of `main`: dropping it sends the last spans.
            let _telemetry = eol_core::process::init_tracing("info", "eol-operator");
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: failed to start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(eol_operator::runtime::run(*config, options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the operator stopped");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
