//! The FeatureRun controller: one runner pod per attempt (no Job), Tekton-style
//! status, per-Feature history limits.

pub mod cached;
pub mod children;
pub mod controller;
pub mod history;
pub mod status;
