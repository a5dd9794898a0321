//! A FeatureRun's `Succeeded` condition and summary, read from its latest
//! runner pod and the runner's termination message (pure).

use super::children;
use crate::conditions::Status;
use eol_core::crd::{RunReport, RunSummary};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The FeatureRun's one condition type (Tekton's): Unknown while the run runs, then True or False.
pub const SUCCEEDED: &str = "Succeeded";

/// The fixed reasons of the `Succeeded` condition.
pub mod reason {
    /// The runner pod is not running yet (or the run waits for its Feature or Redis).
    pub const PENDING: &str = "Pending";
    /// The runner pod is running.
    pub const RUNNING: &str = "Running";
    /// An attempt failed and another one starts.
    pub const RETRYING: &str = "Retrying";
    /// The run finished and succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The run failed (after its retries).
    pub const FAILED: &str = "Failed";
    /// The node evicted the runner pod (memory or disk pressure) and no retry was left.
    pub const EVICTED: &str = "Evicted";
    /// The run took longer than `timeoutSeconds`.
    pub const TIMED_OUT: &str = "TimedOut";
    /// `spec.cancel` was set.
    pub const CANCELLED: &str = "Cancelled";
    /// The run cannot start: its operation, input, phase or the Feature's source is invalid.
    pub const SPEC_INVALID: &str = "SpecInvalid";
    /// The Feature does not exist.
    pub const FEATURE_NOT_FOUND: &str = "FeatureNotFound";
}

/// Container waiting reasons that do not resolve by waiting.
const STUCK_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the latest pod says about the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The `Succeeded` condition's status.
    pub status: Status,
    /// Its reason (one of [`reason`]).
    pub reason: &'static str,
    /// Its message.
    pub message: String,
    /// When the run's last attempt ended, once the run is over.
    pub completion_time: Option<Time>,
    /// The latest runner pod.
    pub pod_name: Option<String>,
    /// The runner's summary, when it reported one.
    pub summary: Option<RunSummary>,
    /// The attempt to start next (a failed attempt with retries left).
    pub retry: Option<u32>,
    /// A pending pod that will not start by itself waiting: the scheduler
    /// cannot place it, or its container cannot be created.
    pub stuck: bool,
}

/// Why a runner that left no report ended, from its container's last state.
fn exit_message(t: &ContainerStateTerminated) -> String {
    match t.reason.as_deref() {
        // What the kubelet records for a container whose state the runtime
        // lost (containerd or the kubelet restarted while it ran): the
        // runner's own exit is unknown, and its work may have been done.
        Some(lost @ ("Unknown" | "ContainerStatusUnknown")) => format!(
            "the runner's end was not recorded: the node lost its container's state \
             (exit code {}, {lost}; the container runtime or kubelet restarted while it ran); \
             its operation may have run",
            t.exit_code
        ),
        Some(reason) => format!("the runner exited with code {} ({reason})", t.exit_code),
        None => format!("the runner exited with code {}", t.exit_code),
    }
}

/// Reads the run's state from its latest pod; `retries` is `spec.retries`.
pub fn observe(pod: &Pod, retries: i32) -> Observation {
    let status = pod.status.clone().unwrap_or_default();
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == crate::pod::runner::CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    let report: Option<RunReport> = terminated
        .as_ref()
        .and_then(|t| t.message.as_deref())
        .and_then(|m| serde_json::from_str(m).ok());
    let attempt = children::attempt(pod).unwrap_or(1);
    let base = Observation {
        status: Status::Unknown,
        reason: reason::PENDING,
        message: String::new(),
        completion_time: None,
        pod_name: pod.metadata.name.clone(),
        summary: report.as_ref().map(|r| r.summary.clone()),
        retry: None,
        stuck: false,
    };
    let ended = terminated
        .as_ref()
        .and_then(|t| t.finished_at.clone())
        .or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now())));
    match status.phase.as_deref() {
        Some("Succeeded") => Observation {
            status: Status::True,
            reason: reason::SUCCEEDED,
            message: "the run succeeded".to_owned(),
            completion_time: ended,
            ..base
        },
        // The kubelet enforces the pod's activeDeadlineSeconds: the run's timeout.
        Some("Failed") if status.reason.as_deref() == Some("DeadlineExceeded") => Observation {
            status: Status::False,
            reason: reason::TIMED_OUT,
            message: format!(
                "the run did not finish within timeoutSeconds ({}s)",
                pod.spec
                    .as_ref()
                    .and_then(|s| s.active_deadline_seconds)
                    .unwrap_or_default()
            ),
            completion_time: ended,
            ..base
        },
        Some("Failed") => {
            // The kubelet evicts pods under memory or disk pressure: the pod's
            // reason says so, whatever its container's exit.
            let evicted = status.reason.as_deref() == Some("Evicted");
            let error = evicted
                .then(|| {
                    format!(
                        "the node evicted the runner pod: {}",
                        status.message.as_deref().unwrap_or("no reason given")
                    )
                })
                .or_else(|| report.as_ref().and_then(|r| r.error.clone()))
                .or_else(|| terminated.as_ref().map(exit_message))
                .or(status.message.clone())
                .unwrap_or_else(|| "the runner pod failed".to_owned());
            if i64::from(attempt) <= i64::from(retries) {
                Observation {
                    reason: reason::RETRYING,
                    message: format!(
                        "attempt {attempt} of {} failed: {error}",
                        i64::from(retries) + 1
                    ),
                    retry: Some(attempt + 1),
                    ..base
                }
            } else {
                Observation {
                    status: Status::False,
                    reason: if evicted {
                        reason::EVICTED
                    } else {
                        reason::FAILED
                    },
                    message: error,
                    completion_time: ended,
                    ..base
                }
            }
        }
        Some("Running") => Observation {
            reason: reason::RUNNING,
            message: "the runner pod is running".to_owned(),
            ..base
        },
        _ => {
            // Why it waits, in the scheduler's or the kubelet's words when it is stuck.
            let unscheduled = status
                .conditions
                .as_ref()
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                })
                .and_then(|c| c.message.clone())
                .map(|m| format!("the runner pod cannot be scheduled: {m}"));
            let not_created = status
                .container_statuses
                .as_ref()
                .and_then(|cs| cs.iter().find(|c| c.name == crate::pod::runner::CONTAINER))
                .and_then(|c| c.state.as_ref()?.waiting.clone())
                .filter(|w| STUCK_WAITING.contains(&w.reason.as_deref().unwrap_or_default()))
                .map(|w| {
                    format!(
                        "the runner container cannot start: {}{}",
                        w.reason.unwrap_or_default(),
                        w.message.map(|m| format!(": {m}")).unwrap_or_default()
                    )
                });
            let problem = unscheduled.or(not_created);
            Observation {
                stuck: problem.is_some(),
                message: problem
                    .unwrap_or_else(|| "waiting for the runner pod to start".to_owned()),
                ..base
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, attempt: u32, message: &str, exit: i32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("r-{attempt}"), "annotations": {"eol.dev/attempt": attempt.to_string()}},
            "spec": {"containers": [], "activeDeadlineSeconds": 30},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "runner", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": if phase == "Running" || phase == "Pending" { serde_json::json!({}) } else {
                    serde_json::json!({"terminated": {"exitCode": exit, "message": message,
                        "finishedAt": "2026-01-01T00:00:02Z"}}) }
            }]}
        }))
        .expect("a Pod")
    }

    #[test]
    fn a_succeeded_pod_gives_the_runners_summary() {
        let p = pod(
            "Succeeded",
            1,
            r#"{"output":{"level":5},"duration":"0.2s","resultKey":"eol:inventory:runs:r"}"#,
            0,
        );
        let o = observe(&p, 0);
        assert_eq!((o.status, o.reason), (Status::True, reason::SUCCEEDED));
        let s = o.summary.expect("summary");
        assert_eq!(s.output, Some(serde_json::json!({"level": 5})));
        assert_eq!(s.duration.as_deref(), Some("0.2s"));
        assert_eq!(o.pod_name.as_deref(), Some("r-1"));
        assert_eq!(
            o.completion_time.map(|t| t.0.to_string()).as_deref(),
            Some("2026-01-01T00:00:02Z")
        );
    }

    #[test]
    fn a_failed_attempt_retries_until_the_retries_are_spent_and_says_why() {
        let report =
            r#"{"testsPassed":2,"testsFailed":1,"error":"1 test failed: reserve too much"}"#;
        let o = observe(&pod("Failed", 1, report, 1), 1);
        assert_eq!(
            (o.status, o.reason, o.retry),
            (Status::Unknown, reason::RETRYING, Some(2))
        );
        assert_eq!(
            o.message,
            "attempt 1 of 2 failed: 1 test failed: reserve too much"
        );
        let o = observe(&pod("Failed", 2, report, 1), 1);
        assert_eq!(
            (o.status, o.reason, o.retry),
            (Status::False, reason::FAILED, None)
        );
        assert_eq!(o.message, "1 test failed: reserve too much");
        assert_eq!(o.summary.and_then(|s| s.tests_failed), Some(1));
        // No report (killed): the exit code speaks.
        let o = observe(&pod("Failed", 1, "", 137), 0);
        assert_eq!(o.message, "the runner exited with code 137");
    }

    #[test]
    fn an_evicted_pod_is_retried_then_reported_as_evicted() {
        let evicted = |attempt| {
            let mut p = pod("Failed", attempt, "", 137);
            let status = p.status.as_mut().unwrap();
            status.reason = Some("Evicted".to_owned());
            status.message = Some("The node was low on resource: memory.".to_owned());
            p
        };
        let o = observe(&evicted(1), 1);
        assert_eq!((o.reason, o.retry), (reason::RETRYING, Some(2)));
        assert_eq!(
            o.message,
            "attempt 1 of 2 failed: the node evicted the runner pod: The node was low on resource: memory."
        );
        let o = observe(&evicted(2), 1);
        assert_eq!(
            (o.status, o.reason, o.retry),
            (Status::False, reason::EVICTED, None)
        );
        assert_eq!(
            o.message,
            "the node evicted the runner pod: The node was low on resource: memory."
        );
    }

    #[test]
    fn a_container_state_the_node_lost_is_said_in_words() {
        // What the kubelet records when containerd restarted under a running runner.
        let mut p = pod("Failed", 1, "", 255);
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .reason = Some("Unknown".to_owned());
        let o = observe(&p, 0);
        assert_eq!((o.status, o.reason), (Status::False, reason::FAILED));
        assert!(
            o.message.starts_with("the runner's end was not recorded: the node lost its container's state (exit code 255, Unknown;"),
            "{}",
            o.message
        );
        assert!(
            o.message.ends_with("its operation may have run"),
            "{}",
            o.message
        );
    }

    #[test]
    fn the_kubelets_deadline_is_a_timeout() {
        let mut p = pod("Failed", 1, "", 137);
        if let Some(s) = p.status.as_mut() {
            s.reason = Some("DeadlineExceeded".into());
        }
        let o = observe(&p, 3);
        assert_eq!(
            (o.status, o.reason, o.retry),
            (Status::False, reason::TIMED_OUT, None)
        );
        assert!(o.message.contains("30s"), "{}", o.message);
    }

    #[test]
    fn a_pod_is_pending_then_running_and_an_unschedulable_one_says_why() {
        assert_eq!(
            observe(&pod("Pending", 1, "", 0), 0).reason,
            reason::PENDING
        );
        let o = observe(&pod("Running", 1, "", 0), 0);
        assert_eq!((o.status, o.reason), (Status::Unknown, reason::RUNNING));
        let mut p = pod("Pending", 1, "", 0);
        if let Some(s) = p.status.as_mut() {
            s.conditions = Some(vec![
                serde_json::from_value(serde_json::json!({
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 Insufficient cpu."
                }))
                .expect("a condition"),
            ]);
        }
        let o = observe(&p, 0);
        assert!(o.stuck && o.message.contains("Insufficient cpu"), "{o:?}");
        assert!(!observe(&pod("Pending", 1, "", 0), 0).stuck, "only waiting");
        let mut p = pod("Pending", 1, "", 0);
        if let Some(cs) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            cs[0].state = Some(
                serde_json::from_value(serde_json::json!({
                    "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
                }))
                .expect("a state"),
            );
        }
        let o = observe(&p, 0);
        assert!(
            o.stuck
                && o.message
                    .contains("ImagePullBackOff: Back-off pulling image"),
            "{o:?}"
        );
    }
}
