//! `eol-operator`: the Kubernetes operator for EOL features.
//!
//! For now it only reports its version; the Feature and FeatureRun controllers
//! arrive with the operator milestone.

use clap::Parser;

/// The EOL operator: reconciles Feature and FeatureRun resources.
#[derive(Parser, Debug)]
#[command(name = "eol-operator", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("eol-operator {}", env!("CARGO_PKG_VERSION"));
}
