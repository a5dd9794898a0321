//! A kwok fleet of fake nodes (`kind-tests/cluster.sh fleet`) for the
//! lifetime of a guard, shared by the fleet test and the fleet bench.

use crate::cli::cluster_sh;

/// `kind-tests/cluster.sh fleet up N` for the guard's lifetime; `fleet down`
/// when it is dropped, a failed test or bench included.
pub struct Fleet;

impl Fleet {
    /// Brings up exactly `nodes` fake nodes; panics saying why when it cannot.
    pub fn up(nodes: usize) -> Self {
        let status = cluster_sh(&["fleet", "up", &nodes.to_string()]);
        assert!(
            status.success(),
            "`kind-tests/cluster.sh fleet up {nodes}` failed ({status}): the local cluster must be up (`kind-tests/cluster.sh up`)"
        );
        Self
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let status = cluster_sh(&["fleet", "down"]);
        if !status.success() {
            eprintln!("`kind-tests/cluster.sh fleet down` failed ({status})");
        }
    }
}
