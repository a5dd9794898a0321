//! `kubectl eol logs`: the log of a FeatureRun's (latest) pod.

use crate::access::Target;
use crate::error::Error;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use std::io::Write;

/// Prints the log of run `name`'s pod; with `follow`, until the pod ends.
pub async fn logs(target: &Target, name: &str, follow: bool) -> Result<(), Error> {
    let run = target.run(name).await?;
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
