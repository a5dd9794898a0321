//! The FeatureRun controller: one runner pod per attempt (no Job), or one
//! async call to the Feature's serving pods (`mode: Queue`); Tekton-style
//! status, per-Feature history limits.

pub mod cached;
pub mod children;
pub mod controller;
pub mod history;
pub mod queued;
pub mod status;
