//! NetworkPolicy enforcement (`kind-tests/cluster.sh netpol`) for the
//! lifetime of a guard: the policy engine diverts every new pod connection
//! through user space, so only the test that needs it runs with it.

use crate::cli::cluster_sh;

/// `kind-tests/cluster.sh netpol up` for the guard's lifetime; `netpol down`
/// when it is dropped, a failed test included.
pub struct PolicyEngine;

impl PolicyEngine {
    /// Starts kube-network-policies; panics saying why when it cannot.
    pub fn up() -> Self {
        let status = cluster_sh(&["netpol", "up"]);
        assert!(
            status.success(),
            "`kind-tests/cluster.sh netpol up` failed ({status}): the local cluster must be up \
             (`kind-tests/cluster.sh up`); its log is /var/log/eol-kind/kube-network-policies.log"
        );
        Self
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        let status = cluster_sh(&["netpol", "down"]);
        if !status.success() {
            eprintln!("`kind-tests/cluster.sh netpol down` failed ({status})");
        }
    }
}
