//! Removing the managed Redis of a namespace once its last Feature is gone.
//!
//! The Redis carries no Feature owner references (see [`super`]), so the
//! garbage collector does not remove it: this task does. It decides from two
//! watch caches, the managed Redis StatefulSets (`ctx.caches.redis`) and its
//! own metadata-only cache of Features, and deletes only after a live LIST
//! finds no Feature in the namespace, since a cache can lag. It looks after
//! each batch of Feature deletions, after each (re)list of Features, which
//! includes the start (deletions while the operator was down), and every
//! [`RESYNC`] (a Redis its cache had not seen yet when its last Feature went).
//! The volume claim stays (`Retain`), so the data survives.
//!
//! Why not the Feature controller's store: in kube-runtime 5.0 a store's
//! `wait_until_ready` keeps one waker (a futures oneshot), so a second task
//! waiting on it takes the wake-up from the other. Waiting on the
//! controller's store from here left this task waiting forever in 2 of 6
//! cluster-test runs, and could as well hold back the controller's first
//! reconciles. The Feature watch this task needs anyway for deletion events
//! feeds a cache of its own instead: ready at its first list, and never
//! behind the events it yields.

use super::NAME;
use crate::context::Context;
use crate::error::{Error, Result};
use eol_core::crd::Feature;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the caches are looked at without a Feature deletion.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Feature watch events handled as one pass (a mass deletion is one pass, not
/// one per Feature).
const BATCH: usize = 256;

/// What one pass looks at: the namespaces of Features deleted since the last
/// pass, or every namespace with a managed Redis.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Every namespace with a managed Redis (after a list of Features, and on
    /// [`RESYNC`]).
    pub everywhere: bool,
    /// Namespaces where a Feature was deleted.
    pub namespaces: BTreeSet<String>,
}

impl Pass {
    /// A pass over every namespace with a managed Redis.
    pub fn everywhere() -> Self {
        Self {
            everywhere: true,
            ..Self::default()
        }
    }

    /// Takes in one event of the Feature watch.
    pub fn record(&mut self, event: &watcher::Event<PartialObjectMeta<Feature>>) {
        match event {
            watcher::Event::Delete(feature) => {
                if let Some(ns) = feature.namespace() {
                    self.namespaces.insert(ns);
                }
            }
            // A complete list: deletions missed while the watch was down (or
            // the operator was) are found by looking everywhere.
            watcher::Event::InitDone => self.everywhere = true,
            watcher::Event::Apply(_) | watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// True when the pass has nothing to look at.
    pub fn is_empty(&self) -> bool {
        !self.everywhere && self.namespaces.is_empty()
    }
}

/// The namespaces whose managed Redis has no Feature left, by the caches:
/// those with a StatefulSet [`NAME`] (not already being deleted) in `redis`
/// and no Feature in `features`; unless the pass is everywhere, only the
/// namespaces of its deletions.
pub fn to_clean(
    pass: &Pass,
    redis: &[Arc<StatefulSet>],
    features: &[Arc<PartialObjectMeta<Feature>>],
) -> BTreeSet<String> {
    let with_features: BTreeSet<String> = features.iter().filter_map(|f| f.namespace()).collect();
    redis
        .iter()
        .filter(|s| s.name_any() == NAME && s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| s.namespace())
        .filter(|ns| pass.everywhere || pass.namespaces.contains(ns))
        .filter(|ns| !with_features.contains(ns))
        .collect()
}

/// Whether a live LIST finds a Feature in `namespace`.
async fn has_features(client: &Client, namespace: &str) -> Result<bool> {
    let features: Api<PartialObjectMeta<Feature>> = Api::namespaced(client.clone(), namespace);
    let list = features
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(Error::kube("list the Features", namespace))?;
    Ok(!list.items.is_empty())
}

/// Deletes `name`; one already gone is fine.
async fn delete<K>(api: &Api<K>, what: &'static str, object: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(NAME, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(what, object)(e)),
    }
}

/// Deletes the managed Redis of `namespace` when a live LIST finds no Feature
/// there; true when it did. The Secret goes last, after a second look: a
/// Feature created meanwhile finds its password unchanged (its pods may
/// already have read it), and its reconcile applies the StatefulSet and
/// Service again.
pub async fn clean(client: &Client, namespace: &str) -> Result<bool> {
    if has_features(client, namespace).await? {
        return Ok(false);
    }
    let object = format!("{namespace}/{NAME}");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    delete(&sets, "delete the Redis StatefulSet", &object).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    delete(&services, "delete the Redis Service", &object).await?;
    if has_features(client, namespace).await? {
        return Ok(false);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    delete(&secrets, "delete the Redis password Secret", &object).await?;
    Ok(true)
}

/// One pass: decides from the caches, then cleans each namespace found. A
/// failure is logged; the namespace is looked at again on the next pass.
pub async fn sweep(ctx: &Context, features: &Store<PartialObjectMeta<Feature>>, pass: &Pass) {
    let namespaces = to_clean(pass, &ctx.caches.redis.state(), &features.state());
    tracing::debug!(?pass, ?namespaces, "sweep pass");
    for namespace in namespaces {
        match clean(&ctx.client, &namespace).await {
            Ok(true) => tracing::info!(
                %namespace,
                "removed the managed Redis (its volume claim stays): the namespace has no Feature left"
            ),
            Ok(false) => tracing::debug!(%namespace, "the managed Redis stays: a Feature exists"),
            Err(error) => tracing::warn!(%namespace, %error, "failed to remove the managed Redis"),
        }
    }
}

/// Waits until the Redis StatefulSet cache has listed once; false when its
/// writer is gone. The wait is taken up again every second: another task
/// waiting on the same store could take this one's wake-up (see the module
/// documentation).
async fn redis_cache_ready(ctx: &Context) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(1), ctx.caches.redis.wait_until_ready())
            .await
        {
            Ok(ready) => return ready.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Runs the sweep until the process ends. Nothing to do with an external
/// Redis.
pub async fn run(ctx: Arc<Context>) {
    if ctx.config.external_redis_secret.is_some() || !redis_cache_ready(&ctx).await {
        return;
    }
    let api: Api<PartialObjectMeta<Feature>> = match &ctx.config.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // Metadata only (an `Api` of `PartialObjectMeta`), and of that only the
    // name, namespace and uid are kept: a Feature's namespace is all a pass needs.
    let (features, writer) = reflector::store();
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .modify(|f| {
                let m = &mut f.metadata;
                (m.managed_fields, m.annotations, m.labels) = (None, None, None);
            })
            .default_backoff()
            .reflect(writer)
            .ready_chunks(BATCH)
    );
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
    let mut listed = false;
    loop {
        let pass = tokio::select! {
            batch = events.next() => {
                let Some(batch) = batch else { return };
                let mut pass = Pass::default();
                for event in batch {
                    match event {
                        Ok(event) => pass.record(&event),
                        Err(error) => tracing::debug!(%error, "the Feature watch of the Redis sweep"),
                    }
                }
                listed |= pass.everywhere;
                pass
            }
            _ = resync.tick() => Pass::everywhere(),
        };
        // Before the first list, the cache would show no Feature anywhere.
        if listed && !pass.is_empty() {
            sweep(&ctx, &features, &pass).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use crate::context::Caches;
    use crate::fixtures::{Expect, context_with, not_found};
    use serde_json::json;

    fn redis(namespace: &str) -> Arc<StatefulSet> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": NAME, "namespace": namespace}}))
                .expect("a StatefulSet"),
        )
    }

    fn meta(namespace: &str, name: &str) -> PartialObjectMeta<Feature> {
        serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")}
        }))
        .expect("Feature metadata")
    }

    fn feature(namespace: &str, name: &str) -> Arc<PartialObjectMeta<Feature>> {
        Arc::new(meta(namespace, name))
    }

    fn deleted(namespace: &str, name: &str) -> watcher::Event<PartialObjectMeta<Feature>> {
        watcher::Event::Delete(meta(namespace, name))
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_deletion_looks_at_its_namespace_and_a_list_looks_everywhere() {
        let mut pass = Pass::default();
        assert!(pass.is_empty());
        pass.record(&watcher::Event::Init);
        pass.record(&watcher::Event::InitApply(meta("a", "x")));
        pass.record(&watcher::Event::Apply(meta("a", "y")));
        assert!(pass.is_empty(), "a new or changed Feature removes nothing");
        pass.record(&deleted("a", "x"));
        pass.record(&deleted("a", "y"));
        pass.record(&deleted("b", "z"));
        assert_eq!(
            pass,
            Pass {
                everywhere: false,
                namespaces: set(&["a", "b"]),
            }
        );
        pass.record(&watcher::Event::InitDone);
        assert!(pass.everywhere);
    }

    #[test]
    fn only_namespaces_whose_redis_has_no_feature_left_are_cleaned() {
        let redis_in = [redis("a"), redis("b"), redis("c")];
        // a: its last Feature deleted; b: one of two deleted; c: no Feature,
        // but no deletion there either.
        let features = [feature("b", "b2")];
        let mut pass = Pass::default();
        pass.record(&deleted("a", "a1"));
        pass.record(&deleted("b", "b1"));
        assert_eq!(to_clean(&pass, &redis_in, &features), set(&["a"]));
        // Everywhere: c too.
        assert_eq!(
            to_clean(&Pass::everywhere(), &redis_in, &features),
            set(&["a", "c"])
        );
        // A namespace with a deletion but no Redis, and a Redis already being
        // deleted, give nothing to do.
        let mut going = (*redis("e")).clone();
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let mut pass = Pass::everywhere();
        pass.record(&deleted("f", "f1"));
        assert_eq!(to_clean(&pass, &[Arc::new(going)], &[]), set(&[]));
        // Another StatefulSet with the same labels is not the managed Redis.
        let mut other = (*redis("h")).clone();
        other.metadata.name = Some("postgres".into());
        assert_eq!(
            to_clean(&Pass::everywhere(), &[Arc::new(other)], &[]),
            set(&[])
        );
    }

    const FEATURES_A: &str = "/apis/eol.dev/v1alpha1/namespaces/a/features";
    const FEATURES_B: &str = "/apis/eol.dev/v1alpha1/namespaces/b/features";

    fn feature_list(items: Vec<serde_json::Value>) -> (u16, serde_json::Value) {
        (
            200,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {}, "items": items}),
        )
    }

    fn gone() -> (u16, serde_json::Value) {
        (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
    }

    #[tokio::test]
    async fn a_pass_deletes_the_redis_only_where_a_live_list_finds_no_feature() {
        // The caches: Redis in a and b, no Feature anywhere. The Feature
        // cache is stale for b: the API server has a Feature there.
        let (redis_store, mut redis_writer) = reflector::store();
        for ns in ["a", "b"] {
            redis_writer.apply_watcher_event(&watcher::Event::Apply((*redis(ns)).clone()));
        }
        let caches = Caches {
            redis: redis_store,
            ..Caches::empty()
        };
        let (ctx, server) = context_with(OperatorConfig::default(), caches);
        let verify = server.run(vec![
            Expect::new("GET", FEATURES_A, feature_list(vec![])),
            Expect::new(
                "DELETE",
                "/apis/apps/v1/namespaces/a/statefulsets/eol-redis",
                gone(),
            )
            .checking(|body| assert_eq!(body["propagationPolicy"], "Background")),
            // Already gone: fine.
            Expect::new(
                "DELETE",
                "/api/v1/namespaces/a/services/eol-redis",
                not_found("services \"eol-redis\""),
            ),
            Expect::new("GET", FEATURES_A, feature_list(vec![])),
            Expect::new("DELETE", "/api/v1/namespaces/a/secrets/eol-redis", gone()),
            Expect::new(
                "GET",
                FEATURES_B,
                feature_list(vec![json!({"metadata": {"name": "new", "namespace": "b"}})]),
            ),
        ]);
        let (features, _writer) = reflector::store();
        sweep(&ctx, &features, &Pass::everywhere()).await;
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_feature_created_during_the_clean_keeps_the_password_secret() {
        let (ctx, server) = context_with(OperatorConfig::default(), Caches::empty());
        let verify = server.run(vec![
            Expect::new("GET", FEATURES_A, feature_list(vec![])),
            Expect::new(
                "DELETE",
                "/apis/apps/v1/namespaces/a/statefulsets/eol-redis",
                gone(),
            ),
            Expect::new("DELETE", "/api/v1/namespaces/a/services/eol-redis", gone()),
            Expect::new(
                "GET",
                FEATURES_A,
                feature_list(vec![json!({"metadata": {"name": "new", "namespace": "a"}})]),
            ),
        ]);
        assert!(!clean(&ctx.client, "a").await.expect("cleaned"));
        verify.await.expect("the Secret is not deleted");
    }
}
