//! Running the operator: leader election, both controllers, `/metrics` and
//! `/healthz`, graceful shutdown on SIGTERM.

use crate::config::OperatorConfig;
use crate::context::{Caches, Context, SyncTracker};
use crate::feature::controller as feature;
use crate::metrics::Metrics;
use crate::redis;
use crate::run::cached::CachedRunPod;
use crate::run::children as run_children;
use crate::run::controller as run;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use eol_core::crd::{Feature, FeatureRun};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// How the process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "EOL_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Take a Lease before reconciling, so that only one replica acts.
    #[arg(long, env = "EOL_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's, from POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds the Lease holds without renewal: a leader that died without
    /// releasing it (SIGKILL, a lost node) is replaced after about this long.
    #[arg(long, env = "EOL_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
    /// Reconciles run at once per controller.
    #[arg(long, env = "EOL_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// The read-only web dashboard.
    #[command(flatten)]
    pub dashboard: crate::dashboard::DashboardOptions,
}

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No cluster to talk to.
    #[error("failed to connect to the Kubernetes API (KUBECONFIG or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    /// The metrics endpoint could not listen.
    #[error("failed to listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    /// Leader election failed.
    #[error("leader election failed: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    /// Leadership was lost: the process stops so a fresh one can compete again.
    #[error("lost the leader Lease")]
    LostLease,
}

/// How long in-flight reconciles get after SIGTERM (the chart's pods have 30 s).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs the operator until SIGTERM (or Ctrl-C).
pub async fn run(config: OperatorConfig, options: RunOptions) -> Result<(), RunError> {
    let mut registry = Registry::with_prefix("eol_operator");
    let metrics = Metrics::register(&mut registry);
    let config_k8s = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    // Every request is counted by method, so writes per lifecycle can be measured.
    let requests = metrics.api_requests.clone();
    let counting =
        tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
            requests
                .get_or_create(&crate::metrics::RequestLabels::of(
                    req.method().as_str(),
                    req.uri().path(),
                ))
                .inc();
            req
        });
    let client = kube::client::ClientBuilder::try_from(config_k8s)
        .map_err(RunError::Client)?
        .with_layer(&counting)
        .build();
    let registry = Arc::new(registry);

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| RunError::Listen(options.listen, e))?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        );
    let dashboard = options
        .dashboard
        .enabled
        .then(|| crate::dashboard::Dashboard::new(options.dashboard.clone()));
    let app = match &dashboard {
        Some(dashboard) => app.merge(dashboard.router()),
        None => app,
    };
    tracing::info!(listen = %options.listen, dashboard = dashboard.is_some(), "serving /metrics and /healthz");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics server stopped");
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        eol_core::process::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });

    // Hold the Lease while reconciling; the guard keeps it renewed.
    let mut leadership = None;
    if options.leader_election {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("eol-operator-{}", std::process::id()));
        let mut stop = stop_rx.clone();
        // Creating the Lease retries while the API server is unreachable: a
        // SIGTERM must still end the process then.
        let building = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "eol-operator")
            .with_namespace(&options.lease_namespace)
            .with_identity(identity.clone())
            .with_duration(options.lease_seconds)
            // Renewed a third of the way before it runs out, as the default 15/5.
            .with_grace((options.lease_seconds / 3).max(1))
            .build();
        let manager = tokio::select! {
            built = building => built.map_err(RunError::Lease)?,
            _ = stop.changed() => return Ok(()),
        };
        let (mut leader, task) = tokio::select! {
            watching = manager.watch() => watching,
            _ = stop.changed() => return Ok(()),
        };
        tracing::info!(%identity, "waiting for the leader Lease");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Err(RunError::LostLease) },
                _ = stop.changed() => return Ok(()),
            }
        }
        tracing::info!(%identity, "leading");
        leadership = Some((leader, task));
    }

    let ns = config.watch_namespace.as_deref();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=eol-operator");
    let stopping = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(options.concurrency);
    // The caches hold what the reconcilers read and no more: managedFields
    // are dropped everywhere (they are often the larger half of an object),
    // ConfigMaps are watched as metadata, runner pods as metadata and status.
    // Reconciles wait until all six caches below have had their first list.
    let (tracker, synced_rx) = SyncTracker::new(6);
    let (features_cache, features_writer) = reflector::store();
    let features = cached(
        scoped::<Feature>(&client, ns),
        watcher::Config::default(),
        trim_metadata,
        features_writer,
        &tracker,
    )
    .applied_objects();
    let (runs_cache, runs_writer) = reflector::store();
    let runs = cached(
        scoped::<FeatureRun>(&client, ns),
        watcher::Config::default(),
        trim_metadata,
        runs_writer,
        &tracker,
    )
    .applied_objects();
    let (run_pods_cache, run_pods_writer) = reflector::store();
    let run_pods = cached(
        scoped::<CachedRunPod>(&client, ns),
        watcher::Config::default().labels(run_children::POD_SELECTOR),
        slim_pod,
        run_pods_writer,
        &tracker,
    )
    .touched_objects();
    let (config_maps_cache, config_maps_writer) = reflector::store();
    let config_maps = cached(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
        managed.clone(),
        trim_metadata,
        config_maps_writer,
        &tracker,
    )
    .touched_objects();
    let (deployments_cache, deployments_writer) = reflector::store();
    let deployments = cached(
        scoped::<Deployment>(&client, ns),
        managed.clone(),
        slim_deployment,
        deployments_writer,
        &tracker,
    )
    .touched_objects();
    let (services_cache, services_writer) = reflector::store();
    let services = cached(
        scoped::<PartialObjectMeta<Service>>(&client, ns),
        managed.clone(),
        trim_metadata,
        services_writer,
        &tracker,
    )
    .touched_objects();
    let (redis_cache, redis_writer) = reflector::store();
    let managed_redis = config.external_redis_secret.is_none();
    let redis_reflector = reflector(
        redis_writer,
        watcher(
            scoped::<StatefulSet>(&client, ns),
            watcher::Config::default().labels(&redis::selector()),
        ),
    )
    .default_backoff()
    .for_each(|_| async {});
    // With an external Redis there is nothing to watch (nor RBAC to watch it).
    let redis_reflector = async move {
        if managed_redis {
            redis_reflector.await
        } else {
            std::future::pending().await
        }
    };
    let caches = Caches {
        features: features_cache.clone(),
        runs: runs_cache.clone(),
        run_pods: run_pods_cache,
        config_maps: config_maps_cache,
        deployments: deployments_cache,
        services: services_cache,
        redis: redis_cache,
        synced: synced_rx,
    };

    let ctx = Arc::new(Context::new(
        client.clone(),
        config.clone(),
        metrics,
        caches,
    ));
    // A Feature's source ConfigMap (`configMapKeyRef`) is the user's, not
    // labelled as the operator's: an edit of it (`kubectl apply`, `eol dev
    // --cluster`) reconciles the Features naming it at once, not at their
    // next periodic reconcile minutes later. Metadata only, and not cached.
    let sources = watcher(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let naming = features_cache.clone();
    if let Some(dashboard) = dashboard {
        dashboard.attach(features_cache.clone(), runs_cache.clone());
        tokio::spawn(dashboard.sample_forever(
            client.clone(),
            ctx.http.clone(),
            config.watch_namespace.clone(),
        ));
    }
    let feature_controller = Controller::for_stream(features, features_cache);
    // Removes a namespace's managed Redis once its last Feature is gone.
    tokio::spawn(redis::sweep::run(ctx.clone()));
    let feature_controller = feature_controller
        .with_config(controller_config.clone())
        .owns_stream(deployments)
        .owns_stream(services)
        .owns_stream(config_maps)
        .watches_stream(sources, move |source| features_naming(&naming, &source))
        .graceful_shutdown_on(stopping(&stop_rx))
        .run(feature::reconcile, feature::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "feature reconcile");
            }
        });
    let run_controller = Controller::for_stream(runs, runs_cache)
        .with_config(controller_config)
        .owns_stream(run_pods)
        .graceful_shutdown_on(stopping(&stop_rx))
        .run(run::reconcile, run::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "featurerun reconcile");
            }
        });

    // The reflectors never end by themselves: the controllers ending (on
    // shutdown) ends the whole.
    // A controller whose watches cannot reach the API server does not end on
    // its shutdown trigger: after a grace period the process stops anyway.
    let mut stop = stop_rx.clone();
    let overdue = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles did not finish in time; stopping anyway");
    };
    let controllers = async {
        tokio::select! {
            _ = futures::future::join(feature_controller, run_controller) => {}
            _ = redis_reflector => {}
            _ = overdue => {}
        }
    };
    match leadership {
        Some((mut leader, task)) => {
            let lost = async move {
                while leader.changed().await.is_ok() {
                    if !*leader.borrow() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = controllers => {}
                _ = lost => return Err(RunError::LostLease),
            }
            // Dropping the receiver makes the lease task release the Lease.
            task.abort();
        }
        None => controllers.await,
    }
    tracing::info!("stopped");
    Ok(())
}

/// An API over one namespace, or all of them.
/// The Features whose source is ConfigMap `source` (same namespace and name).
fn features_naming(
    features: &reflector::Store<Feature>,
    source: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<Feature>> {
    let (namespace, name) = (source.namespace(), source.name_any());
    let naming: Vec<ObjectRef<Feature>> = features
        .state()
        .iter()
        .filter(|f| {
            f.namespace() == namespace
                && f.spec
                    .source
                    .config_map_key_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
        })
        .map(|f| ObjectRef::from_obj(f.as_ref()))
        .collect();
    if !naming.is_empty() {
        tracing::debug!(config_map = %name, features = ?naming, "source ConfigMap changed");
    }
    naming
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of `api` that fills `writer`'s store with objects trimmed by
/// `trim`, and whose first full list `tracker` counts.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    writer: reflector::store::Writer<K>,
    tracker: &SyncTracker,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Default + Eq + std::hash::Hash,
{
    watcher(api, config)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .inspect(tracker.hook())
}

/// Drops what the operator never reads before an object is cached:
/// `metadata.managedFields`, and kubectl's last-applied annotation (a second
/// copy of the whole object, the inline source of a Feature included).
fn trim_metadata<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A Feature's Deployment as its reconciler reads it: metadata (its
/// `eol.dev/applied` stamp), replicas and status. The pod template's spec, most
/// of the object, is never read back: the desired one is built from the Feature.
fn slim_deployment(deployment: &mut Deployment) {
    trim_metadata(deployment);
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template.spec = None;
    }
}

/// A runner pod as the FeatureRun reconciler reads it: a [`CachedRunPod`]
/// (metadata and the status fields it observes; the spec, read only to retry
/// a failed attempt, is fetched then), slimmed further before it is cached.
/// The cache holds every finished run's pod until its TTL or history limit.
fn slim_pod(pod: &mut CachedRunPod) {
    trim_metadata(pod);
    pod.slim();
}
