//! Reading feature and test files for a command, and writing files back in one step.

use super::Failure;
use eol_core::{Feature, TestSuite};
use std::path::Path;

/// The feature in `path`; unreadable is a usage error, invalid an invalid spec.
pub(super) fn read_feature(path: &Path) -> Result<Feature, Failure> {
    let src = read(path)?;
    eol_core::parse_feature(&path.display().to_string(), &src).map_err(|d| Failure::invalid(&d))
}

/// The test suite in `path`; unreadable is a usage error, invalid an invalid spec.
pub(super) fn read_suite(path: &Path) -> Result<TestSuite, Failure> {
    let src = read(path)?;
    eol_core::parse_test_suite(&path.display().to_string(), &src).map_err(|d| Failure::invalid(&d))
}

/// The text of `path`; unreadable is a usage error.
pub(super) fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read {}: {e}", path.display())))
}

/// Replaces `path` with `text` in one rename, keeping its permissions, so a
/// reader never sees half a file.
pub(super) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
