//! Phases: how a feature, and each of its operations, is executed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A feature's phase: `prototyping` (the model executes every operation),
/// `implementation` (every operation runs its Python), or `hybrid` (each
/// operation in the phase its `Phase:` line gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Every operation is executed by an LLM following its prose.
    Prototyping,
    /// Every operation runs its Python implementation in the sandbox.
    Implementation,
    /// Each operation runs in its own phase, given by its `Phase:` line.
    Hybrid,
}

/// The phase one operation actually runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum OperationPhase {
    /// Executed by an LLM.
    Prototyping,
    /// Executed by its Python implementation.
    Implementation,
}

/// A phase name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase '{given}' (expected one of: {expected})")]
pub struct UnknownPhase {
    /// What was written.
    pub given: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

impl Phase {
    /// Every feature phase, in documentation order.
    pub const ALL: [Phase; 3] = [Phase::Prototyping, Phase::Implementation, Phase::Hybrid];

    /// The name used in files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Prototyping => "prototyping",
            Phase::Implementation => "implementation",
            Phase::Hybrid => "hybrid",
        }
    }

    /// The operation phase this feature phase forces, if it forces one.
    pub const fn forced(self) -> Option<OperationPhase> {
        match self {
            Phase::Prototyping => Some(OperationPhase::Prototyping),
            Phase::Implementation => Some(OperationPhase::Implementation),
            Phase::Hybrid => None,
        }
    }
}

impl OperationPhase {
    /// The name used in files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            OperationPhase::Prototyping => "prototyping",
            OperationPhase::Implementation => "implementation",
        }
    }
}

impl From<OperationPhase> for Phase {
    fn from(p: OperationPhase) -> Self {
        match p {
            OperationPhase::Prototyping => Phase::Prototyping,
            OperationPhase::Implementation => Phase::Implementation,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OperationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prototyping" => Ok(Phase::Prototyping),
            "implementation" => Ok(Phase::Implementation),
            "hybrid" => Ok(Phase::Hybrid),
            _ => Err(UnknownPhase {
                given: s.to_owned(),
                expected: "prototyping, implementation, hybrid",
            }),
        }
    }
}

impl FromStr for OperationPhase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prototyping" => Ok(OperationPhase::Prototyping),
            "implementation" => Ok(OperationPhase::Implementation),
            _ => Err(UnknownPhase {
                given: s.to_owned(),
                expected: "prototyping, implementation",
            }),
        }
    }
}
