//! The FeatureRun controller: one Job per run, Tekton-style status.

pub mod children;
pub mod controller;
pub mod status;
