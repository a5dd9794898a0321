//! Located diagnostics: every problem found in a source file names the file, the
//! line and the column, and says what was expected there.

use std::fmt;

/// A position in a source file, 1-based like editors and compilers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number (in characters), starting at 1.
    pub column: usize,
}

impl Position {
    /// A position at `line`, `column` (both 1-based).
    pub const fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

/// One problem in one file, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, as the user named it.
    pub file: String,
    /// Where in the file.
    pub position: Position,
    /// What is wrong and what was expected instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.position.line, self.position.column, self.message
        )
    }
}

/// Every problem found in one file. A file with any diagnostic is never run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The diagnostics, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file while it is parsed.
#[derive(Debug)]
pub(crate) struct Collector {
    file: String,
    items: Vec<Diagnostic>,
}

impl Collector {
    pub(crate) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            items: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, position: Position, message: impl Into<String>) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            position,
            message: message.into(),
        });
    }

    /// How many problems have been reported so far.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.items.is_empty()
    }

    /// Ok when nothing was reported, otherwise all diagnostics sorted by position.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.items.is_empty() {
            Ok(value)
        } else {
            self.items.sort_by_key(|d| d.position);
            Err(Diagnostics(self.items))
        }
    }
}
