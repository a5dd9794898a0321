//! How a look-up searches its scope: on the cache's FLAT index, or on the
//! HNSW index over the same entries.
//!
//! A look-up is a KNN query filtered on its scope. On a FLAT index RediSearch
//! computes the distance to every entry of the scope, which is most of the
//! cost once the scope is large: measured on 10,000 entries (384 dimensions),
//! 1.18 ms for a scope of 7,000. On an HNSW index, left to choose, RediSearch
//! did the same (1.50 ms); told to walk the graph in batches and keep the
//! scope's neighbours (`HYBRID_POLICY BATCHES`), 0.36 ms. Batches are slow
//! for a small share (1.67 ms for a scope of 50, against 0.33 ms brute
//! force), and brute force over a small scope is slower on the HNSW index
//! than on the FLAT one while deleted entries wait for RediSearch's garbage
//! collection (0.36 ms against 0.14 ms after 6,000 deletions). So a large
//! scope goes to the graph in batches and a small one to the FLAT index, by
//! the scope's share of the cache, counted at most every [`RECOUNT`] per
//! scope (a counting query, which Redis answers in about 50 ns a document:
//! 0.5 ms for 10,000; a look-up meanwhile uses the last count). The whole
//! cache is counted at most every [`RECOUNT`] too, once for all scopes, and
//! while it holds fewer than [`MIN_BATCHED`] entries no scope is counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::index::{Filter, HybridPolicy, IndexError, VectorIndex};

/// How often a scope's share is counted again.
pub(super) const RECOUNT: Duration = Duration::from_secs(10);

/// The smallest scope searched in batches: below it, brute force over the
/// scope costs little whatever its share.
const MIN_BATCHED: u64 = 1_000;

/// Scopes tracked before every count is forgotten and counted again (a
/// runner has a few per operation; the bound only keeps a long-lived process
/// from growing).
const MAX_SCOPES: usize = 4_096;

/// The policy for a scope of `scope_entries` in a cache of `index_entries`:
/// batches on the graph for a scope of at least [`MIN_BATCHED`] entries and
/// a tenth of the cache (measured on 10,000: for a fifth, batches 0.42 ms
/// against 0.52 ms brute force on FLAT; for a twentieth, 0.52 ms against
/// 0.36 ms); `None`, brute force on the FLAT index, otherwise.
pub(super) fn policy_for(scope_entries: u64, index_entries: u64) -> Option<HybridPolicy> {
    (scope_entries >= MIN_BATCHED && scope_entries.saturating_mul(10) >= index_entries)
        .then_some(HybridPolicy::Batches)
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    at: Instant,
    policy: Option<HybridPolicy>,
}

/// The last counted policy of each scope.
#[derive(Debug, Default)]
pub(super) struct ScopePolicies {
    counted: Mutex<HashMap<String, Counted>>,
    /// The whole cache's entries and when they were counted, shared by
    /// every scope's count.
    index_entries: Mutex<Option<(Instant, u64)>>,
}

impl ScopePolicies {
    /// The policy for `scope` (`filter` admits its entries), counting it
    /// again when its count is older than [`RECOUNT`]. A failed count keeps
    /// the last policy: the look-up itself reports a Redis that went away.
    pub(super) async fn policy(
        &self,
        index: &VectorIndex,
        scope: &str,
        filter: &Filter,
    ) -> Option<HybridPolicy> {
        let last = {
            let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            match counted.get_mut(scope) {
                Some(c) if c.at.elapsed() < RECOUNT => return c.policy,
                Some(c) => {
                    // Claimed: concurrent look-ups use the last policy meanwhile.
                    c.at = Instant::now();
                    c.policy
                }
                None => {
                    if counted.len() >= MAX_SCOPES {
                        counted.clear();
                    }
                    counted.insert(
                        scope.to_owned(),
                        Counted {
                            at: Instant::now(),
                            policy: None,
                        },
                    );
                    None
                }
            }
        };
        let policy = match self.counted_policy(index, filter).await {
            Ok(policy) => policy,
            Err(e) => {
                tracing::debug!(error = %e, "could not count a semantic cache scope; keeping its search policy");
                return last;
            }
        };
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counted.get_mut(scope) {
            c.policy = policy;
        }
        policy
    }

    /// The policy counted now: the scope is counted only when the whole
    /// cache (counted at most every [`RECOUNT`]) is large enough for it to
    /// be batched.
    async fn counted_policy(
        &self,
        index: &VectorIndex,
        filter: &Filter,
    ) -> Result<Option<HybridPolicy>, IndexError> {
        let in_index = self.index_entries(index).await?;
        if in_index < MIN_BATCHED {
            return Ok(None);
        }
        Ok(policy_for(index.count(filter).await?, in_index))
    }

    /// The whole cache's entries, counted again when older than [`RECOUNT`].
    async fn index_entries(&self, index: &VectorIndex) -> Result<u64, IndexError> {
        let last = *self.index_entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, n)) = last
            && at.elapsed() < RECOUNT
        {
            return Ok(n);
        }
        let n = index.count(&Filter::all()).await?;
        *self.index_entries.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_searched_in_batches_only_when_it_is_large_and_a_tenth_of_the_index() {
        assert_eq!(policy_for(7_000, 10_000), Some(HybridPolicy::Batches));
        assert_eq!(policy_for(1_000, 10_000), Some(HybridPolicy::Batches));
        assert_eq!(policy_for(999, 1_500), None, "small: brute force is cheap");
        assert_eq!(
            policy_for(2_000, 100_000),
            None,
            "a fiftieth: batches would be slow"
        );
        assert_eq!(policy_for(50, 10_000), None);
        assert_eq!(policy_for(0, 0), None);
    }
}
