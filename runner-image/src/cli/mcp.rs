//! `eol mcp`: a feature served over MCP on stdin/stdout.

use super::Failure;
use super::args::Cli;
use super::files::read_feature;
use eol_runner::bootstrap::load_runtime;
use eol_runner::mcp::FeatureMcpServer;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Serves the feature until the client closes stdin.
pub(super) async fn mcp(cli: &Cli, file: &Path) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let runtime = load_runtime(&cli.runtime_settings(), file, feature).await?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // stdout carries the protocol; logs go to stderr (see eol_core::process::init_tracing).
    FeatureMcpServer::new(Arc::new(runtime), dir)
        .serve_stdio()
        .await
        .map_err(|e| Failure::new("mcp", e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
