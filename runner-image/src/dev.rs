//! `eol dev`: the parts of the edit-and-see loop that are not the command line.
//!
//! - [`watch`]: saves of a feature's files, debounced;
//! - [`affected`]: which operations, and so which test cases, a save changed;
//! - [`server`]: one address served version after version, the new one
//!   replacing the old without a restart of the process;
//! - [`cluster`]: each good save applied to the ConfigMap a Feature reads its
//!   source from.

pub mod affected;
pub mod cluster;
pub mod server;
pub mod watch;
