//! `kubectl eol logs`: the log of a FeatureRun's (latest) pod.

use crate::access::Target;
use crate::error::Error;
use eol_core::crd::FeatureRun;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use std::io::Write;
use std::time::Duration;

/// How long `--follow` waits for a new run's pod to be made and its container
/// to start (pulling a runner image can take this long).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How often `--follow` looks again while it waits.
const POLL: Duration = Duration::from_millis(500);

/// Prints the log of run `name`'s pod; with `follow`, until the pod ends.
pub async fn logs(target: &Target, name: &str, follow: bool) -> Result<(), Error> {
    let mut run = target.run(name).await?;
    if follow {
        // `kubectl eol run` then `logs --follow` comes before the pod, or
        // before its container started (when the API has no log to stream):
        // wait for both, as a user expects, instead of failing.
        run = started(target, name, run).await?;
    }
    let status = run.status.unwrap_or_default();
    let Some(pod) = status.pod_name else {
        return Err(Error::Refused(match status.call_id {
            Some(call) => format!(
                "FeatureRun {name} ran on the Feature's queue (call {call}), in a serving pod: it has no pod of its own (the call's record is at GET /v1/results/{call} of the Feature's Service)"
            ),
            None => format!("FeatureRun {name} has no pod yet (it is pending)"),
        }));
    };
    let pods = target.api::<Pod>();
    let params = LogParams {
        follow,
        ..LogParams::default()
    };
    let failed = |e| {
        target
            .request("get", "pods/log", "Pod", Some(&pod))
            .failed(e)
    };
    if !follow {
        print!("{}", pods.logs(&pod, &params).await.map_err(failed)?);
        return Ok(());
    }
    let mut lines = pods
        .log_stream(&pod, &params)
        .await
        .map_err(failed)?
        .lines();
    let mut stdout = std::io::stdout();
    while let Some(line) = lines
        .try_next()
        .await
        .map_err(|e| Error::Failed(format!("the log of pod {pod} broke off: {e}")))?
    {
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(stdout, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

/// `run` once it has a pod whose containers started (running or ended), or
/// ran on the queue; an error after [`START_TIMEOUT`]. Polls with `get`, the
/// verb `logs` already needs: no watch permission is asked for. A pod that
/// cannot be read is not waited for (its log request then says why).
async fn started(target: &Target, name: &str, mut run: FeatureRun) -> Result<FeatureRun, Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let status = run.status.as_ref();
        if status.is_some_and(|s| s.call_id.is_some()) {
            return Ok(run);
        }
        if let Some(pod) = status.and_then(|s| s.pod_name.as_deref()) {
            match target.api::<Pod>().get(pod).await {
                Ok(p) if containers_started(&p) => return Ok(run),
                Ok(_) => {}
                Err(_) => return Ok(run),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "FeatureRun {name}'s pod did not start within {} s (`kubectl get featurerun {name}` shows why)",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
        run = target.run(name).await?;
    }
}

/// Whether every container of `pod` is running or ended: its log can be streamed.
fn containers_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| {
                    c.state
                        .as_ref()
                        .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                })
        })
}
