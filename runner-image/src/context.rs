//! Resolving a feature's references into context documents for the model:
//! `@path` and `@feature:name` in prose, and the frontmatter's `context:` list;
//! and the [`References`] a running feature keeps of them.

use crate::prototype::ContextDoc;
use eol_core::runner_contract::referenced_documents;
use eol_core::{Diagnostic, Diagnostics, Feature};
use std::path::Path;

/// Reads every referenced document, relative to the feature file's directory.
/// Returns the documents read, and a located diagnostic for each reference that
/// could not be: `eol check` reports those as errors; a running feature goes on
/// without them and says so in each prototyped call's trace.
pub fn resolve(file: &str, feature: &Feature) -> (Vec<ContextDoc>, Vec<Diagnostic>) {
    let base = Path::new(file).parent().unwrap_or(Path::new("."));
    let mut docs: Vec<ContextDoc> = Vec::new();
    let mut errors = Vec::new();
    // The same paths the operator projects the Feature's documents at.
    for reference in referenced_documents(feature) {
        let path = base.join(&reference.path);
        let loaded = match &reference.feature {
            Some(other) => read_feature(&path, other),
            None => std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "reference '{}' cannot be read from {} ({e}): paths are relative to the feature file",
                    reference.name,
                    path.display()
                )
            }),
        };
        match loaded {
            Ok(text) => docs.push(ContextDoc {
                name: reference.name,
                text,
            }),
            Err(message) => errors.push(Diagnostic {
                file: file.to_owned(),
                position: reference.position,
                message,
            }),
        }
    }
    (docs, errors)
}

/// A running feature's references: the documents read at load, and why the
/// others could not be read (a running feature goes on without them).
#[derive(Debug, Clone, Default)]
pub struct References {
    /// The documents read, in the order they are referenced.
    pub docs: Vec<ContextDoc>,
    /// Why each unreadable reference could not be read.
    pub unreadable: Vec<String>,
}

impl References {
    /// Reads `feature`'s references, relative to `file` (see [`resolve`]);
    /// each one that cannot be read is logged.
    pub fn load(file: &str, feature: &Feature) -> Self {
        let (docs, unreadable) = resolve(file, feature);
        for d in &unreadable {
            tracing::warn!(feature = %feature.name(), "{d}");
        }
        Self {
            docs,
            unreadable: unreadable.into_iter().map(|d| d.message).collect(),
        }
    }

    /// What a prototyped call's trace notes when references could not be read.
    pub fn unreadable_note(&self) -> Option<String> {
        (!self.unreadable.is_empty()).then(|| {
            format!(
                "context without unreadable references: {}",
                self.unreadable.join("; ")
            )
        })
    }
}

/// Like [`resolve`], but any unreadable reference is an error.
pub fn resolve_all(file: &str, feature: &Feature) -> Result<Vec<ContextDoc>, Diagnostics> {
    let (docs, errors) = resolve(file, feature);
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(Diagnostics(errors))
    }
}

/// Another feature's prose and operation specs, from `path` (`<name>.eol` beside this one).
fn read_feature(path: &Path, name: &str) -> Result<String, String> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| format!("reference 'feature:{name}' cannot be read from {} ({e}): features are found beside this one as NAME.eol", path.display()))?;
    let other = eol_core::parse_feature(&path.display().to_string(), &src)
        .map_err(|d| format!("referenced feature '{name}' is not valid:\n{d}"))?;
    let mut text = format!(
        "Feature {name}: {}\n\n{}",
        other.title.as_deref().unwrap_or(name),
        other.prose
    );
    for op in &other.operations {
        text.push_str(&format!("\n\nOperation {}: {}", op.name, op.spec));
    }
    Ok(text)
}
