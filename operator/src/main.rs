//! `eol-operator`: the Kubernetes operator for EOL features.
//!
//! For now it prints the CRDs; the Feature and FeatureRun controllers arrive
//! with the rest of the operator milestone.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The EOL operator: reconciles Feature and FeatureRun resources.
#[derive(Parser, Debug)]
#[command(name = "eol-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (Feature, FeatureRun) as YAML.
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Some(Command::Crd) => match eol_operator::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: failed to render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            println!("eol-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
