//! Where a Feature's rollout stands, read from its Deployment (pure). The
//! Deployment controller does the timing: a rollout that does not finish within
//! `progressDeadlineSeconds` gets `ProgressDeadlineExceeded`.

use k8s_openapi::api::apps::v1::Deployment;

/// The state of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the current template and is ready.
    Complete,
    /// New pods are starting or running their tests.
    Progressing {
        /// Replicas on the current template that are ready.
        updated_ready: i32,
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
            updated_ready: 0,
            wanted,
        };
    };
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    if !observed {
        return Rollout::Progressing {
            updated_ready: 0,
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
        Rollout::Progressing {
            // Ready pods on the new template cannot be read from the status
            // directly; all ready beyond the old ones' count is the best bound.
            updated_ready: updated.min(status.ready_replicas.unwrap_or(0)),
            wanted,
        }
    }
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
