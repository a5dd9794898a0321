//! Saves of a feature's files, reported once the files are quiet.
//!
//! Editors save by writing a temporary file and renaming it over the old one,
//! which ends a watch on the file itself: the files' directories are watched
//! instead, and their events filtered by file name.

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the files must stay unchanged before a save is reported: one
/// save is several events (write, rename, metadata), and one report per save
/// keeps a reload from reading half a file.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why the files cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The directory of a watched file cannot be found.
    #[error("failed to find the directory of {file}: {source}")]
    Directory {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operating system refused or lost the watch.
    #[error("failed to watch {what}: {source}")]
    Notify {
        /// What was being watched.
        what: String,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
    /// The watch ended (its thread is gone): no save will be reported again.
    #[error("the watch on the feature's files stopped")]
    Stopped,
}

/// A watch on some files; [`SourceWatcher::saved`] waits for their next save.
pub struct SourceWatcher {
    /// Each watched file as (its directory, canonical; its name).
    files: Vec<(PathBuf, std::ffi::OsString)>,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    /// Watching stops when this is dropped.
    _watcher: RecommendedWatcher,
}

impl SourceWatcher {
    /// Watches `files` (which need not exist yet: their directories must).
    pub fn new(files: &[&Path]) -> Result<Self, WatchError> {
        let (sender, events) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only when the watcher is being dropped.
            let _ = sender.send(event);
        })
        .map_err(|source| WatchError::Notify {
            what: "files".into(),
            source,
        })?;
        let mut watched = Vec::new();
        let mut dirs = BTreeSet::new();
        for file in files {
            let (dir, name) = split(file)?;
            if dirs.insert(dir.clone()) {
                watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|source| WatchError::Notify {
                        what: dir.display().to_string(),
                        source,
                    })?;
            }
            watched.push((dir, name));
        }
        Ok(Self {
            files: watched,
            events,
            _watcher: watcher,
        })
    }

    /// Waits for the next save of any watched file, then for [`DEBOUNCE`]
    /// without another change to them, and returns the saved files as
    /// indexes into the list given to [`SourceWatcher::new`].
    pub async fn saved(&mut self) -> Result<BTreeSet<usize>, WatchError> {
        let mut saved = BTreeSet::new();
        while saved.is_empty() {
            let event = self.events.recv().await.ok_or(WatchError::Stopped)?;
            saved = self.changed(event)?;
        }
        let mut quiet_at = Instant::now() + DEBOUNCE;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(quiet_at) => return Ok(saved),
                event = self.events.recv() => match self.changed(event.ok_or(WatchError::Stopped)?) {
                    // Changes to other files of the directory do not delay the report.
                    Ok(more) if !more.is_empty() => {
                        saved.extend(more);
                        quiet_at = Instant::now() + DEBOUNCE;
                    }
                    Ok(_) => {}
                    // The save is already seen: report it, not this.
                    Err(error) => tracing::warn!(%error, "file watch"),
                },
            }
        }
    }

    /// The watched files an event changed.
    fn changed(&self, event: notify::Result<Event>) -> Result<BTreeSet<usize>, WatchError> {
        let event = event.map_err(|source| WatchError::Notify {
            what: "files".into(),
            source,
        })?;
        // Opening and reading change nothing (and every reload reads the
        // files); closing after a write ends a save.
        if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
        {
            return Ok(BTreeSet::new());
        }
        Ok(event
            .paths
            .iter()
            .filter_map(|path| {
                let (dir, name) = (path.parent()?, path.file_name()?);
                self.files.iter().position(|(d, n)| d == dir && n == name)
            })
            .collect())
    }
}

/// A file's canonical directory (what the watcher's events are under) and its name.
fn split(file: &Path) -> Result<(PathBuf, std::ffi::OsString), WatchError> {
    let failed = |source| WatchError::Directory {
        file: file.display().to_string(),
        source,
    };
    let name = file
        .file_name()
        .ok_or_else(|| failed(std::io::Error::other("not a file name")))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir.canonicalize().map_err(failed)?, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_save_by_rename_is_reported_once_for_its_file_and_other_files_are_not() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let feature = dir.path().join("f.eol");
        let tests = dir.path().join("f.test.eol");
        std::fs::write(&feature, "one").expect("written");
        let mut watcher = SourceWatcher::new(&[&feature, &tests]).expect("a watcher");

        // Another file of the directory: not reported.
        std::fs::write(dir.path().join("notes.txt"), "x").expect("written");
        // The way editors save: a temporary file renamed over the old one.
        let tmp = dir.path().join(".f.eol.swp");
        std::fs::write(&tmp, "two").expect("written");
        std::fs::rename(&tmp, &feature).expect("renamed");
        let saved = tokio::time::timeout(Duration::from_secs(10), watcher.saved())
            .await
            .expect("a save within 10 s")
            .expect("no watch error");
        assert_eq!(saved, BTreeSet::from([0]));

        // A file that did not exist when the watch began.
        std::fs::write(&tests, "cases").expect("written");
        let saved = tokio::time::timeout(Duration::from_secs(10), watcher.saved())
            .await
            .expect("a save within 10 s")
            .expect("no watch error");
        assert_eq!(saved, BTreeSet::from([1]));
    }
}
