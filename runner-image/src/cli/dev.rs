//! `eol dev`: a feature served locally while it is edited. Each save of the
//! feature or its tests is parsed, checked and loaded; the new version then
//! replaces the old on the same address, the tests the save affects run, and
//! with `--cluster` the source goes to the Feature's ConfigMap. A broken save
//! is shown, located, and the last good version goes on serving.

mod print;

use super::Failure;
use super::args::Cli;
use super::files::{read, read_suite};
use eol_core::{Feature, TestSuite};
use eol_runner::bootstrap::{RuntimeSettings, load_runtime};
use eol_runner::dev::affected::{Affected, cases_to_run, operations_of};
use eol_runner::dev::cluster::ClusterFeature;
use eol_runner::dev::server::DevServer;
use eol_runner::dev::watch::{SourceWatcher, WatchError};
use eol_runner::engine::Runtime;
use eol_runner::store::LocalRedis;
use eol_runner::testing::{self, Summary, TestKeyspace};
use print::Printer;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// The Feature `--cluster` names, and its namespace (`None`: the kubeconfig's).
pub(super) struct ClusterTarget<'a> {
    pub(super) feature: &'a str,
    pub(super) namespace: Option<&'a str>,
}

/// Serves `file` on `listen` until SIGTERM or Ctrl-C; with `watch`, reloads it
/// on every save. Without `watch`, a broken feature fails the command.
pub(super) async fn dev(
    cli: &Cli,
    file: &Path,
    tests: Option<&Path>,
    listen: &str,
    watch: bool,
    cluster: Option<ClusterTarget<'_>>,
) -> Result<ExitCode, Failure> {
    let print = Printer::new(cli.output);
    let cluster = match cluster {
        Some(t) => Some(
            ClusterFeature::connect(t.feature, t.namespace)
                .await
                .map_err(|e| Failure::new("cluster", e.to_string()))?,
        ),
        None => None,
    };
    let tests_file = tests.map_or_else(|| eol_runner::tests_file_for(file), Path::to_path_buf);
    let mut watcher = if watch {
        let watched =
            SourceWatcher::new(&[file, &tests_file]).map_err(|e| Failure::usage(e.to_string()))?;
        Some(watched)
    } else {
        None
    };
    // Declared before the session, so dropped after its servers stopped.
    let (_redis, settings) = session_redis(cli, &print).await;
    let mut session = Session {
        settings,
        file: file.to_path_buf(),
        tests: tests_file,
        tests_required: tests.is_some(),
        listen: listen.to_owned(),
        cluster,
        print,
        good: None,
        server: None,
        version: 0,
    };
    let mut stop = std::pin::pin!(eol_core::process::shutdown_signal());
    tokio::select! {
        () = &mut stop => return session.stop().await,
        loaded = session.load() => match loaded? {
            Loaded::Broken(_, failure) if watcher.is_none() => return Err(failure),
            Loaded::Broken(file, failure) => session.show_broken(&file, &failure),
            Loaded::Serving => {}
        }
    }
    loop {
        let saved = tokio::select! {
            () = &mut stop => break,
            saved = next_save(watcher.as_mut()) => saved,
        };
        match saved {
            Ok(_) => {}
            Err(e @ WatchError::Stopped) => {
                session.stop().await?;
                return Err(Failure::new("watch", e.to_string()));
            }
            Err(e) => {
                session.print.watch_error(&e);
                continue;
            }
        }
        tokio::select! {
            () = &mut stop => break,
            loaded = session.load() => if let Loaded::Broken(file, failure) = loaded? {
                session.show_broken(&file, &failure);
            }
        }
    }
    session.stop().await
}

/// The next save, or never without a watch.
async fn next_save(watcher: Option<&mut SourceWatcher>) -> Result<BTreeSet<usize>, WatchError> {
    match watcher {
        Some(w) => w.saved().await,
        None => std::future::pending().await,
    }
}

/// One Redis for every version of the session, so that what a call wrote
/// is still there after the next save: `--redis-url`, else a local one
/// started now (without it, each version would start an empty one of its own).
async fn session_redis(cli: &Cli, print: &Printer) -> (Option<LocalRedis>, RuntimeSettings) {
    let mut settings = cli.runtime_settings();
    if settings.redis_url.is_some() {
        return (None, settings);
    }
    match tokio::task::spawn_blocking(LocalRedis::start).await {
        Ok(Ok(local)) => {
            settings.redis_url = Some(local.url.clone());
            (Some(local), settings)
        }
        Ok(Err(e)) => {
            print.warning(&format!("{e}; calls that use Redis will fail"));
            (None, settings)
        }
        Err(e) => {
            print.warning(&format!("failed to start the local Redis: {e}"));
            (None, settings)
        }
    }
}

/// A good version: what it was loaded from.
struct Version {
    source: String,
    feature: Feature,
    suite: Option<TestSuite>,
}

/// How a load ended, when it did not end the command.
enum Loaded {
    /// The new version is being served.
    Serving,
    /// The files are not a good version (the file at fault, and why); the
    /// last good one, if any, serves on.
    Broken(PathBuf, Failure),
}

/// The feature being developed, and what serves it.
struct Session {
    settings: RuntimeSettings,
    file: PathBuf,
    tests: PathBuf,
    /// Named with `--tests`: missing is an error, not "no tests".
    tests_required: bool,
    listen: String,
    cluster: Option<ClusterFeature>,
    print: Printer,
    /// The last good version, which is being served.
    good: Option<Version>,
    server: Option<DevServer>,
    /// The good versions loaded so far.
    version: u32,
}

impl Session {
    /// Shows why `file` is not good, and which version serves on.
    fn show_broken(&self, file: &Path, failure: &Failure) {
        let serving = self.good.is_some().then_some(self.version);
        self.print.broken(file, failure, serving);
    }

    /// Reads, checks and loads the files; serves them if they are good, then
    /// pushes them to the cluster and runs the tests they affect. Only a
    /// server that cannot listen any more ends the command.
    async fn load(&mut self) -> Result<Loaded, Failure> {
        let started = Instant::now();
        let version = match self.read() {
            Ok(version) => version,
            Err((file, failure)) => return Ok(Loaded::Broken(file, failure)),
        };
        let runtime = match load_runtime(&self.settings, &self.file, version.feature.clone()).await
        {
            Ok(runtime) => Arc::new(runtime),
            Err(e) => return Ok(Loaded::Broken(self.file.clone(), e.into())),
        };
        let address = match &mut self.server {
            None => {
                let server = DevServer::start(&self.listen, runtime.clone())
                    .await
                    .map_err(|e| {
                        Failure::usage(format!("failed to listen on {}: {e}", self.listen))
                    })?;
                self.server.insert(server).address()
            }
            Some(server) => {
                server.replace(runtime.clone()).await.map_err(|e| {
                    let again = format!("failed to listen on {} again: {e}", server.address());
                    Failure::new("serve", again)
                })?;
                server.address()
            }
        };
        self.version += 1;
        self.print.served(
            &self.file,
            self.version,
            &address.to_string(),
            started.elapsed(),
            self.version == 1,
        );
        if let Some(cluster) = &self.cluster {
            match cluster.push(&version.source).await {
                Ok(key_ref) => self.print.pushed(&key_ref, cluster.namespace()),
                Err(e) => self.print.push_failed(&e),
            }
        }
        self.run_tests(&runtime, &version).await;
        self.good = Some(version);
        Ok(Loaded::Serving)
    }

    /// The files as they are now, parsed and checked against each other;
    /// else the file at fault and why.
    fn read(&self) -> Result<Version, (PathBuf, Failure)> {
        let in_feature = |f| (self.file.clone(), f);
        let in_tests = |f| (self.tests.clone(), f);
        let source = read(&self.file).map_err(in_feature)?;
        let feature = eol_core::parse_feature(&self.file.display().to_string(), &source)
            .map_err(|d| in_feature(Failure::invalid(&d)))?;
        let suite = if self.tests_required || self.tests.exists() {
            let suite = read_suite(&self.tests).map_err(in_tests)?;
            suite
                .check_against(&self.tests.display().to_string(), &feature)
                .map_err(|d| in_tests(Failure::invalid(&d)))?;
            Some(suite)
        } else {
            None
        };
        Ok(Version {
            source,
            feature,
            suite,
        })
    }

    /// Runs the cases `version` affects (compared with the last good
    /// version) on `runtime`, printing each, then the totals.
    async fn run_tests(&self, runtime: &Runtime, version: &Version) {
        let Some(suite) = &version.suite else {
            self.print.no_tests(&self.tests);
            return;
        };
        let before = self.good.as_ref();
        let affected = Affected::between(before.map(|g| &g.feature), &version.feature);
        let cases = cases_to_run(suite, before.and_then(|g| g.suite.as_ref()), &affected);
        let mut results = Vec::with_capacity(cases.len());
        if !cases.is_empty() {
            let keyspace = TestKeyspace::new(runtime.feature().name());
            for case in &cases {
                let result = testing::run_case(runtime, &keyspace, case, None).await;
                self.print.case(&result);
                results.push(result);
            }
            keyspace.clear(runtime.store()).await;
        }
        let mut operations = operations_of(&cases);
        if let Affected::Operations(changed) = &affected {
            let untested: Vec<String> = changed
                .iter()
                .filter(|o| !operations.contains(o))
                .cloned()
                .collect();
            operations.extend(untested);
        }
        let all = affected == Affected::All;
        self.print.tests(&Summary::of(&results), all, &operations);
    }

    /// Stops the server, letting in-flight calls finish.
    async fn stop(self) -> Result<ExitCode, Failure> {
        if let Some(server) = self.server {
            server
                .stop()
                .await
                .map_err(|e| Failure::new("serve", format!("the server failed: {e}")))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
