//! Per-Feature run history limits (`successfulRunsHistoryLimit`,
//! `failedRunsHistoryLimit`), as CronJob keeps its Jobs: when a run finishes,
//! the oldest finished runs of its Feature with the same outcome beyond the
//! limit are deleted (their pods go with them, by owner reference).
//!
//! The runs are read from the FeatureRun watch cache, never listed: with
//! 10,000 finished runs present a finish costs one pass over the cache in
//! memory and one DELETE per run over the limit.

use super::controller::finished;
use super::status;
use crate::conditions::{self, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use eol_core::crd::FeatureRun;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};

/// One finished run, as the limits see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The run's name.
    pub name: String,
    /// Its uid (the delete is only of that very object).
    pub uid: Option<String>,
    /// When it finished (seconds since the epoch).
    pub completed: i64,
}

/// The runs to delete so that `limit` remain: the oldest first to go; ties
/// broken by name, so every replica of the decision agrees.
pub fn over_limit(mut runs: Vec<Finished>, limit: usize) -> Vec<Finished> {
    runs.sort_by(|a, b| b.completed.cmp(&a.completed).then(b.name.cmp(&a.name)));
    runs.split_off(limit.min(runs.len()))
}

/// After `run` finished: deletes its Feature's finished runs of the same
/// outcome beyond the Feature's limit, if it sets one.
pub async fn keep_limits(ctx: &Context, run: &FeatureRun) -> Result<()> {
    let Some(ns) = run.namespace() else {
        return Ok(());
    };
    let Some(feature) = ctx.caches.feature(&ns, &run.spec.feature_ref) else {
        return Ok(());
    };
    // Each run's status once: the one this operator last wrote, else the cached.
    let outcome = |r: &FeatureRun| {
        let status = ctx.status.current(r);
        let completed = status
            .completion_time
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        (
            finished(&status),
            conditions::is(&status.conditions, status::SUCCEEDED, Status::True),
            completed,
        )
    };
    let (_, ok, run_completed) = outcome(run);
    let limit = if ok {
        feature.spec.successful_runs_history_limit
    } else {
        feature.spec.failed_runs_history_limit
    };
    let Some(limit) = limit else {
        return Ok(());
    };
    let mut runs: Vec<Finished> = ctx
        .caches
        .runs
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| {
            r.spec.feature_ref == run.spec.feature_ref
                && r.metadata.deletion_timestamp.is_none()
                && r.metadata.uid != run.metadata.uid
        })
        .filter_map(|r| {
            let (done, succeeded, completed) = outcome(r);
            (done && succeeded == ok).then(|| Finished {
                name: r.name_any(),
                uid: r.metadata.uid.clone(),
                completed,
            })
        })
        .collect();
    // The run that just finished: its finish is not in the cache yet.
    runs.push(Finished {
        name: run.name_any(),
        uid: run.metadata.uid.clone(),
        completed: run_completed,
    });
    let api: Api<FeatureRun> = Api::namespaced(ctx.client.clone(), &ns);
    for old in over_limit(runs, usize::try_from(limit).unwrap_or(0)) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: old.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&old.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                return Err(Error::kube(
                    "delete a run beyond the Feature's history limit",
                    format!("FeatureRun {ns}/{}", old.name),
                )(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, completed: i64) -> Finished {
        Finished {
            name: name.to_owned(),
            uid: None,
            completed,
        }
    }

    #[test]
    fn the_newest_runs_stay_and_the_oldest_go() {
        let runs = vec![run("a", 10), run("b", 30), run("c", 20), run("d", 40)];
        let gone: Vec<String> = over_limit(runs.clone(), 2)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(gone, ["c", "a"]);
        assert!(over_limit(runs.clone(), 4).is_empty());
        assert!(over_limit(runs.clone(), 10).is_empty());
        assert_eq!(over_limit(runs, 0).len(), 4, "a limit of 0 keeps none");
    }

    #[test]
    fn ties_are_broken_the_same_way_every_time() {
        let a = over_limit(vec![run("x", 5), run("y", 5), run("z", 5)], 1);
        let b = over_limit(vec![run("z", 5), run("x", 5), run("y", 5)], 1);
        assert_eq!(a, b);
    }
}
