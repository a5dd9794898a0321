//! The namespace's managed Redis on the real cluster: shared by the
//! namespace's Features and owned by none of them, so a new Feature writes
//! nothing to it, and removed by the operator once the last Feature is gone.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::fixtures::{INVENTORY, feature};
use eol_kind_tests::{TestEnv, in_namespace, in_namespace_with, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use kube::api::DeleteParams;
use kube::{Api, Resource, ResourceExt};
use std::time::{Duration, Instant};

/// The managed Redis's Secret, Service and StatefulSet.
const REDIS: &str = "eol-redis";
/// The Redis pod pulls no image here, but binds a volume and starts Redis.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the operator may take to remove the Redis after the last
/// Feature's deletion (it reacts to the deletion's watch event).
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// `(kind, resourceVersion, uid, Feature owner references, writers)` of each
/// of the three objects: the writers are the managedFields entries
/// `manager operation time`, shown when a resourceVersion changed.
async fn redis_objects(env: &TestEnv) -> Vec<(&'static str, String, String, usize, String)> {
    fn seen<K: Resource>(
        kind: &'static str,
        o: K,
    ) -> (&'static str, String, String, usize, String) {
        let meta = o.meta();
        let owners = meta
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.kind == "Feature")
            .count();
        let writers = meta
            .managed_fields
            .iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} {} {}",
                    m.manager.as_deref().unwrap_or_default(),
                    m.operation.as_deref().unwrap_or_default(),
                    m.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (
            kind,
            meta.resource_version.clone().unwrap_or_default(),
            meta.uid.clone().unwrap_or_default(),
            owners,
            writers,
        )
    }
    vec![
        seen("Secret", env.api::<Secret>().get(REDIS).await.unwrap()),
        seen("Service", env.api::<Service>().get(REDIS).await.unwrap()),
        seen(
            "StatefulSet",
            env.api::<StatefulSet>().get(REDIS).await.unwrap(),
        ),
    ]
}

/// Which of the three objects still exist.
async fn remaining(env: &TestEnv) -> Vec<&'static str> {
    let mut left = vec![];
    if env.api::<Secret>().get_opt(REDIS).await.unwrap().is_some() {
        left.push("Secret");
    }
    if env.api::<Service>().get_opt(REDIS).await.unwrap().is_some() {
        left.push("Service");
    }
    if env
        .api::<StatefulSet>()
        .get_opt(REDIS)
        .await
        .unwrap()
        .is_some()
    {
        left.push("StatefulSet");
    }
    left
}

/// A Feature that needs no serving pod (the Redis is what is tested).
fn unserved(name: &str) -> Feature {
    let source = INVENTORY.replace("name: inventory", &format!("name: {name}"));
    feature(
        name,
        serde_json::json!({"source": {"inline": source}, "replicas": 0}),
    )
}

#[tokio::test]
async fn the_redis_is_owned_by_no_feature_untouched_by_new_ones_and_removed_with_the_last() {
    // The sweep's passes are logged at debug: a failure's dump shows them.
    let log = [("RUST_LOG", "info,kube=warn,eol_operator::redis=debug")];
    in_namespace_with("redis", &log, |env| async move {
        env.create(&unserved("first")).await;
        // Ready, and settled: the StatefulSet controller has written the
        // status it will keep while the pod stays ready.
        let sets = env.api::<StatefulSet>();
        wait_for(&sets, REDIS, READY_TIMEOUT, |s| {
            let generation = s.metadata.generation;
            s.status.as_ref().is_some_and(|st| {
                st.ready_replicas == Some(1)
                    && st.available_replicas == Some(1)
                    && st.observed_generation == generation
            })
        })
        .await;
        // The first Feature got past the Redis step: its Deployment exists.
        wait_for(&env.api::<Deployment>(), "first", READY_TIMEOUT, |_| true).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = redis_objects(&env).await;
        for (kind, _, _, owners, _) in &before {
            assert_eq!(*owners, 0, "{kind} {REDIS} carries Feature owner references");
        }

        // A second Feature: reconciled (its Deployment is applied after the
        // Redis step), and not one write to the Redis objects.
        env.create(&unserved("second")).await;
        wait_for(&env.api::<Deployment>(), "second", READY_TIMEOUT, |_| true).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = redis_objects(&env).await;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (&b.1, &b.2),
                (&a.1, &a.2),
                "{} {REDIS} was written when the second Feature came: writers before [{}], after [{}]",
                b.0,
                b.4,
                a.4
            );
        }
        eprintln!(
            "resourceVersions before/after the second Feature: {:?}",
            before
                .iter()
                .zip(&after)
                .map(|(b, a)| format!("{} {}/{}", b.0, b.1, a.1))
                .collect::<Vec<_>>()
        );

        // One Feature deleted, one left: the Redis stays, the same objects.
        let features = env.api::<Feature>();
        features
            .delete("first", &DeleteParams::default())
            .await
            .unwrap();
        wait_gone(&features, "first").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let kept = redis_objects(&env).await;
        for (b, k) in before.iter().zip(&kept) {
            assert_eq!(b.2, k.2, "{} {REDIS} was deleted while a Feature is left", b.0);
        }

        // The last Feature deleted: the operator removes all three; the
        // volume claim (and the data) stays.
        features
            .delete("second", &DeleteParams::default())
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            let left = remaining(&env).await;
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < REMOVAL_TIMEOUT,
                "{left:?} {REDIS} still there {REMOVAL_TIMEOUT:?} after the last Feature's deletion"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "the Redis was removed {:?} after the last Feature's deletion",
            start.elapsed()
        );
        let claims = env.api::<PersistentVolumeClaim>();
        assert!(
            claims
                .get_opt(&format!("data-{REDIS}-0"))
                .await
                .unwrap()
                .is_some(),
            "the Redis volume claim stays"
        );
    })
    .await;
}

/// Waits until `name` no longer exists.
async fn wait_gone(api: &Api<Feature>, name: &str) {
    let start = Instant::now();
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Feature {name} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_redis_left_while_the_operator_was_down_is_removed_at_start() {
    in_namespace("redis-start", |env| async move {
        env.create(&unserved("only")).await;
        wait_for(&env.api::<StatefulSet>(), REDIS, READY_TIMEOUT, |_| true).await;
        wait_for(&env.api::<Deployment>(), "only", READY_TIMEOUT, |_| true).await;
        // The last Feature goes while no operator runs.
        env.operator.lock().await.kill().await;
        let features = env.api::<Feature>();
        features
            .delete("only", &DeleteParams::default())
            .await
            .unwrap();
        wait_gone(&features, "only").await;
        assert_eq!(
            remaining(&env).await.len(),
            3,
            "nothing removes it without the operator"
        );
        env.operator.lock().await.restart();
        // Startup: the Lease of the killed operator expires first (15 s).
        let timeout = REMOVAL_TIMEOUT + Duration::from_secs(30);
        let start = Instant::now();
        loop {
            let left = remaining(&env).await;
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < timeout,
                "{left:?} {REDIS} still there {timeout:?} after the operator's restart"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "the Redis was removed {:?} after the operator's restart",
            start.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn feature_owner_references_of_an_older_operator_are_removed() {
    use kube::api::{Patch, PatchParams};
    in_namespace("redis-upgrade", |env| async move {
        env.create(&unserved("old")).await;
        wait_for(&env.api::<StatefulSet>(), REDIS, READY_TIMEOUT, |_| true).await;
        wait_for(&env.api::<Deployment>(), "old", READY_TIMEOUT, |_| true).await;
        // What the operator before this change left: the Feature as a
        // (non-controller) owner of all three, added by its second manager.
        let f = env.api::<Feature>().get("old").await.unwrap();
        let owner = serde_json::json!({"metadata": {"ownerReferences": [{
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "name": "old", "uid": f.metadata.uid.clone().unwrap()
        }]}});
        let params = PatchParams {
            field_manager: Some("eol-operator-owners".to_owned()),
            ..PatchParams::default()
        };
        let patch = Patch::Strategic(&owner);
        // Each patch's answer shows the reference in place. Reading the
        // objects back instead would race with the operator: a change to its
        // Redis may already wake a reconcile that removes it.
        let owners = [
            env.api::<Secret>()
                .patch(REDIS, &params, &patch)
                .await
                .unwrap()
                .owner_references()
                .len(),
            env.api::<Service>()
                .patch(REDIS, &params, &patch)
                .await
                .unwrap()
                .owner_references()
                .len(),
            env.api::<StatefulSet>()
                .patch(REDIS, &params, &patch)
                .await
                .unwrap()
                .owner_references()
                .len(),
        ];
        assert_eq!(owners, [1, 1, 1], "the older operator's owner references");
        // The next reconcile of any Feature of the namespace (here: a
        // change to the Feature) removes them.
        let touch = serde_json::json!({"metadata": {"annotations": {"eol.dev/test-touch": "1"}}});
        env.api::<Feature>()
            .patch("old", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            let owners: Vec<(&str, usize)> = redis_objects(&env)
                .await
                .iter()
                .map(|o| (o.0, o.3))
                .collect();
            if owners.iter().all(|o| o.1 == 0) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Feature owner references left: {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
}
