//! The static check of sandboxed Python, shared by the runner and the operator:
//! the Python program itself ([`SCRIPT`], which only parses and compiles), the
//! modules user code may import, and the batch protocol the operator uses to
//! run it (`python3 -I -S -c` [`batch_program`], [`CheckRequest`] on stdin,
//! [`CheckReply`] on stdout). The runner's sandbox worker prepends [`SCRIPT`] to
//! itself, so `eol check`, every call and the operator apply the same rules.

use crate::{Diagnostic, Position};
use serde::{Deserialize, Serialize};

/// The check, as Python source (parses and compiles user code, never runs it).
pub const SCRIPT: &str = include_str!("sandbox_check.py");

/// Modules user code may import (the sandbox worker enforces the same list at run time).
pub const ALLOWED_MODULES: &[&str] = &[
    "json",
    "math",
    "re",
    "hashlib",
    "datetime",
    "time",
    "random",
    "string",
    "collections",
    "itertools",
    "functools",
    "statistics",
    "decimal",
    "fractions",
    "base64",
    "textwrap",
    "unicodedata",
    "operator",
    "heapq",
    "bisect",
    "copy",
    "typing",
    "enum",
    "uuid",
    "html",
    "difflib",
    "zlib",
    "binascii",
    "calendar",
    "ipaddress",
    "struct",
    "hmac",
    "secrets",
    "urllib.parse",
];

/// The program `python3 -I -S -c` runs to check a batch: [`SCRIPT`], then its batch entry point.
pub fn batch_program() -> String {
    format!("{SCRIPT}\n_check_main()\n")
}

/// A batch of functions to check, written to the program's stdin as JSON.
#[derive(Debug, Serialize)]
pub struct CheckRequest<'a> {
    /// Modules the code may import.
    pub allowed_modules: &'a [&'a str],
    /// The functions, in order.
    pub items: Vec<CheckItem<'a>>,
}

/// One operation's code.
#[derive(Debug, Serialize)]
pub struct CheckItem<'a> {
    /// The Python source.
    pub code: &'a str,
    /// The function it must define (the operation's name).
    pub function: &'a str,
    /// The parameters the function must take (the Input schema's properties).
    pub params: &'a [String],
}

/// What the program prints: one list of problems per item, in order.
#[derive(Debug, Deserialize)]
pub struct CheckReply {
    /// The problems of each item (empty: the code passes).
    pub results: Vec<Vec<CodeProblem>>,
}

/// A problem in checked code, located in the code itself (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CodeProblem {
    /// Line within the code.
    pub line: usize,
    /// Column (in characters) within that line.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl CodeProblem {
    /// The problem as a diagnostic of the feature file `file`, in which the
    /// operation's code starts on line `first_line`.
    pub fn locate(&self, file: &str, operation: &str, first_line: usize) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            position: Position::new(first_line + self.line.saturating_sub(1), self.column),
            message: format!("operation '{operation}': {}", self.message),
        }
    }
}
