//! A FeatureRun's `Succeeded` condition and summary, read from its Job and the
//! runner pod's termination message (pure).

use crate::conditions::Status;
use eol_core::crd::{RunReport, RunSummary};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The FeatureRun's one condition type (Tekton's): Unknown while the run runs, then True or False.
pub const SUCCEEDED: &str = "Succeeded";

/// The fixed reasons of the `Succeeded` condition.
pub mod reason {
    /// The Job exists; its pod is not running yet.
    pub const PENDING: &str = "Pending";
    /// The runner pod is running.
    pub const RUNNING: &str = "Running";
    /// The run finished and succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The run failed (after its retries).
    pub const FAILED: &str = "Failed";
    /// The run took longer than `timeoutSeconds`.
    pub const TIMED_OUT: &str = "TimedOut";
    /// `spec.cancel` was set.
    pub const CANCELLED: &str = "Cancelled";
    /// The run cannot start: its operation, input, phase or the Feature's source is invalid.
    pub const SPEC_INVALID: &str = "SpecInvalid";
    /// The Feature does not exist.
    pub const FEATURE_NOT_FOUND: &str = "FeatureNotFound";
}

/// What the Job says about the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The `Succeeded` condition's status.
    pub status: Status,
    /// Its reason (one of [`reason`]).
    pub reason: &'static str,
    /// Its message.
    pub message: String,
    /// When the Job started.
    pub start_time: Option<Time>,
    /// When it ended.
    pub completion_time: Option<Time>,
    /// The latest runner pod.
    pub pod_name: Option<String>,
    /// The runner's summary, when it reported one.
    pub summary: Option<RunSummary>,
}

/// Reads the run's state from `job` and its latest pod.
pub fn observe(job: &Job, pod: Option<&Pod>) -> Observation {
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let finished = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let terminated = pod.and_then(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == "runner")?
            .state
            .as_ref()?
            .terminated
            .clone()
    });
    let report: Option<RunReport> = terminated
        .as_ref()
        .and_then(|t| t.message.as_deref())
        .and_then(|m| serde_json::from_str(m).ok());
    let pod_name = pod.and_then(|p| p.metadata.name.clone());
    let summary = report.as_ref().map(|r| r.summary.clone());
    let runner_error = report.as_ref().and_then(|r| r.error.clone()).or_else(|| {
        terminated.as_ref().map(|t| {
            format!(
                "the runner exited with code {}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
    });
    let base = Observation {
        status: Status::Unknown,
        reason: reason::PENDING,
        message: String::new(),
        start_time: status.start_time.clone(),
        completion_time: None,
        pod_name,
        summary,
    };
    if let Some(c) = finished("Complete") {
        return Observation {
            status: Status::True,
            reason: reason::SUCCEEDED,
            message: "the run succeeded".to_owned(),
            completion_time: status
                .completion_time
                .clone()
                .or_else(|| c.last_transition_time.clone()),
            ..base
        };
    }
    if let Some(c) = finished("Failed") {
        let timed_out = c.reason.as_deref() == Some("DeadlineExceeded");
        let message = if timed_out {
            format!(
                "the run did not finish within timeoutSeconds ({}s)",
                job.spec
                    .as_ref()
                    .and_then(|s| s.active_deadline_seconds)
                    .unwrap_or_default()
            )
        } else {
            runner_error
                .clone()
                .or_else(|| c.message.clone())
                .unwrap_or_else(|| "the run failed".to_owned())
        };
        return Observation {
            status: Status::False,
            reason: if timed_out {
                reason::TIMED_OUT
            } else {
                reason::FAILED
            },
            message,
            completion_time: c.last_transition_time.clone(),
            ..base
        };
    }
    let running = status.ready.unwrap_or(0) > 0
        || pod
            .and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|p| p == "Running");
    if running {
        Observation {
            reason: reason::RUNNING,
            message: "the runner pod is running".to_owned(),
            ..base
        }
    } else {
        Observation {
            message: "waiting for the runner pod to start".to_owned(),
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r"}, "spec": {"activeDeadlineSeconds": 30, "template": {}},
            "status": status
        }))
        .expect("a Job")
    }

    fn pod(message: &str, exit: i32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-abcde"},
            "status": {"phase": if exit == 0 {"Succeeded"} else {"Failed"}, "containerStatuses": [{
                "name": "runner", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit, "message": message}}
            }]}
        }))
        .expect("a Pod")
    }

    #[test]
    fn a_completed_job_gives_the_runners_summary() {
        let j = job(
            serde_json::json!({"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:02Z",
            "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        let p = pod(
            r#"{"output":{"level":5},"duration":"0.2s","resultKey":"eol:inventory:runs:r"}"#,
            0,
        );
        let o = observe(&j, Some(&p));
        assert_eq!((o.status, o.reason), (Status::True, reason::SUCCEEDED));
        let s = o.summary.expect("summary");
        assert_eq!(s.output, Some(serde_json::json!({"level": 5})));
        assert_eq!(s.duration.as_deref(), Some("0.2s"));
        assert_eq!(o.pod_name.as_deref(), Some("r-abcde"));
        assert!(o.completion_time.is_some() && o.start_time.is_some());
    }

    #[test]
    fn failures_say_why() {
        let failed = job(
            serde_json::json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let p = pod(
            r#"{"testsPassed":2,"testsFailed":1,"error":"1 test failed: reserve too much"}"#,
            1,
        );
        let o = observe(&failed, Some(&p));
        assert_eq!((o.status, o.reason), (Status::False, reason::FAILED));
        assert_eq!(o.message, "1 test failed: reserve too much");
        assert_eq!(o.summary.and_then(|s| s.tests_failed), Some(1));
        // No report (killed): the exit code speaks.
        let o = observe(&failed, Some(&pod("", 137)));
        assert_eq!(o.message, "the runner exited with code 137");
        let late = job(
            serde_json::json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
        );
        let o = observe(&late, None);
        assert_eq!(o.reason, reason::TIMED_OUT);
        assert!(o.message.contains("30s"));
    }

    #[test]
    fn an_active_job_is_pending_then_running() {
        assert_eq!(
            observe(&job(serde_json::json!({"active": 1})), None).reason,
            reason::PENDING
        );
        let o = observe(&job(serde_json::json!({"active": 1, "ready": 1})), None);
        assert_eq!((o.status, o.reason), (Status::Unknown, reason::RUNNING));
    }
}
