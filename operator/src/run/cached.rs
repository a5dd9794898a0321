//! A runner pod as the operator caches it: its metadata and the few status
//! fields a FeatureRun's reconcile reads. Every run keeps its pod until its
//! TTL or history limit removes it, so at thousands of runs this cache is
//! most of the operator's memory; a whole `Pod` is over 2 KiB before its
//! first string, this is a quarter of that (see kind-tests/benches/README.md).
//! Fields the API sends and this type does not name are skipped while
//! decoding, so they never reach the heap.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// A runner pod, cached: metadata, the deadline and what the status says.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CachedRunPod {
    /// The pod's metadata (managedFields dropped before caching).
    pub metadata: ObjectMeta,
    /// The one field of the spec a reconcile reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CachedRunPodSpec>,
    /// The status fields a reconcile reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CachedRunPodStatus>,
}

/// The cached part of a runner pod's spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedRunPodSpec {
    /// The time left of the run's timeout when the pod was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
}

/// The cached part of a runner pod's status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedRunPodStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the pod is in this phase (`DeadlineExceeded` for a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kubelet's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the kubelet took the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Only an unschedulable pod's `PodScheduled=False` is kept (see `slim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PodCondition>>,
    /// Each container's name and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<CachedContainerStatus>>,
}

/// A container's name and state (the runner's exit code and report are in
/// `state.terminated`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CachedContainerStatus {
    /// The container's name.
    pub name: String,
    /// Waiting, running or terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
}

impl k8s_openapi::Resource for CachedRunPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedRunPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CachedRunPod {
    /// Drops what the reconciler never reads, before the pod is cached:
    /// managedFields, the conditions other than an unschedulable pod's, and
    /// the container ids.
    pub fn slim(&mut self) {
        self.metadata.managed_fields = None;
        let Some(status) = self.status.as_mut() else {
            return;
        };
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| c.type_ == "PodScheduled" && c.status == "False");
            if conditions.is_empty() {
                status.conditions = None;
            }
        }
        for container in status.container_statuses.iter_mut().flatten() {
            if let Some(terminated) = container.state.as_mut().and_then(|s| s.terminated.as_mut()) {
                terminated.container_id = None;
            }
        }
    }
}

/// The cached pod as a `Pod` with only these fields set, for the code that
/// reads pods from the API and the cache alike.
impl From<&CachedRunPod> for Pod {
    fn from(cached: &CachedRunPod) -> Self {
        Pod {
            metadata: cached.metadata.clone(),
            spec: cached.spec.as_ref().map(|s| PodSpec {
                active_deadline_seconds: s.active_deadline_seconds,
                ..PodSpec::default()
            }),
            status: cached.status.as_ref().map(|s| PodStatus {
                phase: s.phase.clone(),
                reason: s.reason.clone(),
                message: s.message.clone(),
                start_time: s.start_time.clone(),
                conditions: s.conditions.clone(),
                container_statuses: s.container_statuses.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            state: c.state.clone(),
                            ..ContainerStatus::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status;

    /// A finished runner pod as the API server sends it (trimmed of nothing).
    fn finished_pod() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "r-1", "namespace": "shop", "uid": "p1",
                "annotations": {"eol.dev/attempt": "1"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"activeDeadlineSeconds": 30, "nodeName": "n1",
                "containers": [{"name": "runner", "image": "eol-runner:0.1.0"}]},
            "status": {"phase": "Succeeded", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "runner", "image": "eol-runner:0.1.0",
                    "imageID": "sha256:0", "ready": false, "restartCount": 0,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "state": {"terminated": {"exitCode": 0, "containerID": "containerd://1",
                        "finishedAt": "2026-01-01T00:00:02Z",
                        "message": "{\"output\":{\"level\":3},\"duration\":\"0.1s\"}"}}}]}
        })
    }

    #[test]
    fn the_reconciler_observes_the_same_from_the_cached_pod_as_from_the_whole() {
        let whole: Pod = serde_json::from_value(finished_pod()).expect("a Pod");
        let mut cached: CachedRunPod = serde_json::from_value(finished_pod()).expect("cached");
        cached.slim();
        assert_eq!(
            status::observe(&Pod::from(&cached), 0),
            status::observe(&whole, 0)
        );
        assert_eq!(
            status::observe(&whole, 0).summary.and_then(|s| s.duration),
            Some("0.1s".to_owned())
        );
    }

    #[test]
    fn slimming_keeps_only_what_is_read() {
        let mut cached: CachedRunPod = serde_json::from_value(finished_pod()).expect("cached");
        cached.slim();
        assert_eq!(cached.metadata.managed_fields, None);
        let status = cached.status.expect("status");
        assert_eq!(status.conditions, None, "only PodScheduled=False is kept");
        let state = status.container_statuses.expect("containers")[0]
            .state
            .clone();
        let terminated = state.and_then(|s| s.terminated).expect("terminated");
        assert_eq!(terminated.container_id, None);
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(
            cached.spec.and_then(|s| s.active_deadline_seconds),
            Some(30)
        );
    }

    #[test]
    fn a_cached_pod_takes_under_a_third_of_a_pods_inline_size() {
        assert!(
            std::mem::size_of::<CachedRunPod>() * 3 < std::mem::size_of::<Pod>(),
            "{} vs {}",
            std::mem::size_of::<CachedRunPod>(),
            std::mem::size_of::<Pod>()
        );
    }
}
