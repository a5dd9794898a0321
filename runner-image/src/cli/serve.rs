//! `eol serve`: a feature over HTTP until SIGTERM or Ctrl-C, ready once its
//! tests pass (unless the gate is turned off).

use super::Failure;
use super::args::Cli;
use super::files::{read_feature, read_suite};
use eol_runner::bootstrap::load_runtime;
use eol_runner::queue::QueueSettings;
use eol_runner::serve::ServeOptions;
use eol_runner::serve::audit::AuditSettings;
use eol_runner::serve::auth::{AuthSettings, Reviewer};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Serves the feature on `listen`; in-flight calls finish before it returns.
pub(super) async fn serve(
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
    let candidate = eol_runner::shadow::CandidateSettings::from_env()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let runtime = load_runtime(&cli.runtime_settings(), file, feature).await?;
    let audit = AuditSettings::from_env().map_err(Failure::usage)?;
    let queue = QueueSettings::from_env().map_err(Failure::usage)?;
    let reviewer = match AuthSettings::from_env(runtime.feature().name()).map_err(Failure::usage)? {
        Some(settings) => Some(
            Reviewer::infer(settings)
                .await
                .map_err(|e| Failure::new("serve", e))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::usage(format!("failed to listen on {listen}: {e}")))?;
    match &reviewer {
        Some(r) => eprintln!(
            "serving feature '{}' on {listen}; callers need a Kubernetes token for {:?} allowed to invoke features/operations '{}' in namespace {}",
            runtime.feature().name(),
            r.settings().audiences,
            r.settings().feature,
            r.settings().namespace
        ),
        None => eprintln!("serving feature '{}' on {listen}", runtime.feature().name()),
    }
    let options = ServeOptions {
        suite,
        candidate,
        reviewer,
        audit,
        queue,
        ..ServeOptions::default()
    };
    eol_runner::serve::serve(Arc::new(runtime), options, listener, shutdown_signal())
        .await
        .map_err(|e| Failure::new("serve", format!("the server failed: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    eol_core::process::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight calls");
}
