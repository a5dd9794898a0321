//! The one status writer of both controllers: a Server-Side Apply of the status
//! subresource, `{apiVersion, kind, status}`, by the operator's field manager.
//!
//! It also remembers what it wrote. A reconcile is handed the object from the
//! watch cache, which may not have seen the operator's own last status write
//! yet: a Deployment event that follows a rollback at once found the Feature
//! without the `failedConfig` just written, rolled the failed configuration
//! out again and restarted its deadline. The operator is the only writer of
//! these statuses, so a cached status that differs from the one it last wrote
//! is older than it; [`StatusWriter::current`] returns the written one then.

use crate::error::{Error, Result};
use crate::pod::FIELD_MANAGER;
use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Mutex;

/// Statuses remembered; the oldest half is forgotten when full (a forgotten
/// status only means the cache is trusted again for that object).
const REMEMBERED: usize = 16_384;

/// Writes statuses and remembers the last one written per object.
#[derive(Debug, Default)]
pub struct StatusWriter {
    written: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    /// By object uid: the order written, and the status as JSON.
    by_uid: HashMap<String, (u64, serde_json::Value)>,
    next: u64,
}

impl StatusWriter {
    /// The object's status as last written by this operator, or as cached.
    pub fn current<K>(&self, obj: &K) -> K::Status
    where
        K: HasStatus + Resource,
        K::Status: Serialize + DeserializeOwned + Default + Clone,
    {
        let cached = obj.status().cloned().unwrap_or_default();
        let Some(uid) = obj.meta().uid.as_deref() else {
            return cached;
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, last)) = written.by_uid.get(uid) else {
            return cached;
        };
        if serde_json::to_value(&cached).is_ok_and(|c| c == *last) {
            // The cache has caught up: nothing left to remember (10,000
            // finished runs would otherwise each keep a copy of their status).
            written.by_uid.remove(uid);
            return cached;
        }
        serde_json::from_value(last.clone()).unwrap_or(cached)
    }

    /// Writes `status` as the object's status subresource.
    pub async fn write<K>(&self, client: &Client, obj: &K, status: &K::Status) -> Result<()>
    where
        K: HasStatus
            + Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::Status: Serialize,
    {
        let ns = obj.namespace().unwrap_or_default();
        let object = format!("{} {ns}/{}", K::kind(&()), obj.name_any());
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let uid = obj.meta().uid.clone();
        let outcome = api
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(uid) = uid else {
            return outcome
                .map(|_| ())
                .map_err(Error::kube("write the status", object));
        };
        match outcome {
            Ok(_) => {
                written.remember(uid, patch["status"].clone());
                Ok(())
            }
            Err(e) => {
                // It may or may not have been written: trust the cache again.
                written.by_uid.remove(&uid);
                Err(Error::kube("write the status", object)(e))
            }
        }
    }
}

impl Written {
    fn remember(&mut self, uid: String, status: serde_json::Value) {
        if self.by_uid.len() >= REMEMBERED && !self.by_uid.contains_key(&uid) {
            let mut orders: Vec<u64> = self.by_uid.values().map(|(n, _)| *n).collect();
            orders.sort_unstable();
            let median = orders[orders.len() / 2];
            self.by_uid.retain(|_, (n, _)| *n >= median);
        }
        self.next += 1;
        self.by_uid.insert(uid, (self.next, status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::crd::{Feature, FeatureStatus};

    fn feature(status: serde_json::Value) -> Feature {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "f", "namespace": "shop", "uid": "u1"},
            "spec": {"source": {"inline": ""}}, "status": status
        }))
        .expect("a Feature")
    }

    #[test]
    fn a_cache_older_than_the_last_write_is_overruled_by_it() {
        let writer = StatusWriter::default();
        let stale = feature(serde_json::json!({"readyReplicas": 1}));
        assert_eq!(
            writer.current(&stale).ready_replicas,
            1,
            "nothing written: the cache"
        );
        let written = FeatureStatus {
            failed_config: Some("abc".into()),
            ..FeatureStatus::default()
        };
        writer
            .written
            .lock()
            .expect("lock")
            .remember("u1".into(), serde_json::to_value(&written).expect("json"));
        assert_eq!(writer.current(&stale), written);
        // Once the cache has it, the cache is used (and it is the same).
        let fresh = feature(serde_json::to_value(&written).expect("json"));
        assert_eq!(writer.current(&fresh), written);
        assert!(
            writer.written.lock().expect("lock").by_uid.is_empty(),
            "what the cache holds is not kept twice"
        );
    }

    #[test]
    fn the_memory_stays_bounded() {
        let mut w = Written::default();
        for i in 0..(REMEMBERED + 10) {
            w.remember(format!("u{i}"), serde_json::json!({}));
        }
        assert!(w.by_uid.len() <= REMEMBERED);
        assert!(w.by_uid.contains_key(&format!("u{}", REMEMBERED + 9)));
    }
}
