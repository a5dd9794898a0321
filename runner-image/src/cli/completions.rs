//! `eol completions`: a shell completion script on stdout.

use super::Failure;
use super::args::Cli;
use clap::CommandFactory;
use std::process::ExitCode;

pub(super) fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "eol", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
