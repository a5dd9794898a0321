//! The Feature controller: a Deployment of `eol serve` pods per Feature, with
//! phase switches rolled out only once the tests pass in the new phase.
//!
//! - [`access`]: who may call a Feature: the reviewer ServiceAccount and binding, the pods' auth and audit settings;
//! - [`controller`]: the reconcile pipeline (glue, and the calls to the API);
//! - [`children`]: the ConfigMap, Deployment and Service, built as pure functions;
//! - [`apply`]: those children applied, rolled back and pruned in the API;
//! - [`rollout`]: where a rollout stands, read from the Deployment;
//! - [`decide`]: the next status, events, rollback and requeue, decided purely;
//! - [`shadow`]: shadow switches, the candidate's objects and its verdict, decided purely;
//! - [`usage`]: the model use of the last hour and day, read from a serving pod into the status.

pub mod access;
pub mod apply;
pub mod children;
pub mod controller;
pub mod decide;
pub mod rollout;
#[cfg(test)]
mod scenarios;
pub mod shadow;
pub mod usage;
