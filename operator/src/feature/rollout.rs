//! Where a Feature's rollout stands, read from its Deployment and ReplicaSets
//! (pure). The Deployment controller does the timing: a rollout that does not
//! finish within `progressDeadlineSeconds` gets `ProgressDeadlineExceeded`.

use super::children::CONFIG_HASH;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

/// The state of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the current template and is ready.
    Complete,
    /// New pods are starting or running their tests.
    Progressing {
        /// Ready pods of the current template ([`new_ready`]; 0 until filled in).
        new_ready: i32,
        /// Replicas wanted.
        wanted: i32,
    },
    /// The new pods did not become ready within the deadline.
    Failed {
        /// The Deployment controller's message.
        message: String,
    },
}

/// The rollout state of `deployment` (as returned by an apply, status included).
pub fn state(deployment: &Deployment) -> Rollout {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return Rollout::Progressing {
            new_ready: 0,
            wanted,
        };
    };
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    if !observed {
        return Rollout::Progressing {
            new_ready: 0,
            wanted,
        };
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if let Some(c) = conditions.iter().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Rollout::Failed {
            message: c.message.clone().unwrap_or_default(),
        };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated == wanted && total == wanted && available >= wanted {
        Rollout::Complete
    } else {
        // The Deployment's ready count includes the old pods still serving;
        // the new ones' comes from their ReplicaSet.
        Rollout::Progressing {
            new_ready: 0,
            wanted,
        }
    }
}

/// Ready pods of the ReplicaSet running configuration `hash`.
pub fn new_ready(replica_sets: &[ReplicaSet], hash: &str) -> i32 {
    replica_sets
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref()?.metadata.as_ref()?.annotations.as_ref())
                .and_then(|a| a.get(CONFIG_HASH))
                .is_some_and(|h| h == hash)
        })
        .filter_map(|rs| rs.status.as_ref()?.ready_replicas)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "f", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status
        }))
        .expect("a Deployment")
    }

    #[test]
    fn a_rollout_is_complete_only_when_every_replica_is_new_and_available() {
        assert_eq!(
            state(&deployment(
                serde_json::json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2})
            )),
            Rollout::Complete
        );
        // An old pod still running (surge): not complete yet.
        assert!(matches!(
            state(&deployment(
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3, "readyReplicas": 3})
            )),
            Rollout::Progressing { .. }
        ));
        // The controller has not seen the new template yet.
        assert!(matches!(
            state(&deployment(
                serde_json::json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})
            )),
            Rollout::Progressing { .. }
        ));
    }

    #[test]
    fn new_pods_ready_are_counted_on_the_new_replica_set_only() {
        let set = |hash: &str, ready: i32| -> ReplicaSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("f-{hash}")},
                "spec": {"selector": {}, "template": {"metadata": {"annotations": {CONFIG_HASH: hash}}}},
                "status": {"replicas": 2, "readyReplicas": ready}
            }))
            .expect("a ReplicaSet")
        };
        // Two old pods ready and none of the new: the Deployment says 2 ready.
        let sets = [set("old", 2), set("new", 0)];
        assert_eq!(new_ready(&sets, "new"), 0);
        assert_eq!(new_ready(&[set("old", 1), set("new", 1)], "new"), 1);
        assert_eq!(new_ready(&sets, "other"), 0);
    }

    #[test]
    fn a_missed_deadline_is_a_failure() {
        let d = deployment(serde_json::json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"f-1\" has timed out progressing."}]
        }));
        assert_eq!(
            state(&d),
            Rollout::Failed {
                message: "ReplicaSet \"f-1\" has timed out progressing.".into()
            }
        );
    }
}
