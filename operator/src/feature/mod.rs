//! The Feature controller: a Deployment of `eol serve` pods per Feature, with
//! phase switches rolled out only once the tests pass in the new phase.

pub mod children;
pub mod controller;
pub mod rollout;
pub mod source;
