//! `kubectl eol get feature NAME [--watch]`: the tree once, or redrawn on
//! every change until Ctrl-C (or until `until` says the watch is over).

use crate::access::Target;
use crate::error::Error;
use crate::snapshot::Snapshot;
use crate::tree;
use eol_core::crd::Feature;
use k8s_openapi::jiff::Timestamp;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How often a watched tree is read again: often enough to follow a rollout
/// pod by pod, rarely enough to cost the API server little (5 lists a second).
const REFRESH: Duration = Duration::from_secs(1);

/// Prints the tree of Feature `name` once.
pub async fn once(target: &Target, name: &str) -> Result<(), Error> {
    let snapshot = Snapshot::read(target, name).await?;
    print!("{}", tree::render(&snapshot, Timestamp::now()));
    Ok(())
}

/// Redraws the tree whenever it changes, until Ctrl-C or until `until`
/// returns `Some` for the Feature (its value is returned).
pub async fn watch<T>(
    target: &Target,
    name: &str,
    until: impl Fn(&Feature) -> Option<T>,
) -> Result<Option<T>, Error> {
    // On a terminal the tree is redrawn in place; in a pipe or log each change is appended.
    let terminal = std::io::stdout().is_terminal();
    let mut shown = String::new();
    let mut ticker = tokio::time::interval(REFRESH);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(None),
            _ = ticker.tick() => {}
        }
        let snapshot = Snapshot::read(target, name).await?;
        let now = Timestamp::now();
        // Ages tick every second: compare the tree without them, show it with them.
        let key = tree::render(&snapshot, Timestamp::from_second(0).unwrap_or(now));
        if key != shown {
            let text = tree::render(&snapshot, now);
            let mut stdout = std::io::stdout();
            let written = if terminal {
                write!(stdout, "\x1b[2J\x1b[H{text}")
            } else {
                writeln!(stdout, "--- {}\n{text}", now.strftime("%H:%M:%S"))
            };
            if written.and_then(|()| stdout.flush()).is_err() {
                return Ok(None);
            }
            shown = key;
        }
        if let Some(done) = until(&snapshot.feature) {
            return Ok(Some(done));
        }
    }
}
