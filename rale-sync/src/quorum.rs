//! Quorum rules for a safe failover under synchronous replication.
//!
//! With `ANY n` over `m` standbys, every acknowledged commit is on at least `n` of them.
//! Any set of `m − n + 1` standbys therefore intersects every possible acknowledging set,
//! so after consulting that many (and stopping them from acknowledging the old primary)
//! the one with the highest WAL position holds every acknowledged commit.

/// How many of `m` synchronous standbys must be consulted before promoting one, when
/// commits wait for `n` of them (`ANY n`). `FIRST n` is the special case where the
/// acknowledging set is known; the same bound is safe for it too.
///
/// Returns `m` when `n` is 0 (nothing is guaranteed, consult everyone) and never more
/// than `m`.
pub fn promotion_quorum(m: usize, n: usize) -> usize {
    if n == 0 || n > m {
        return m;
    }
    m - n + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_sets() {
        assert_eq!(promotion_quorum(2, 1), 2);
        assert_eq!(promotion_quorum(2, 2), 1);
        assert_eq!(promotion_quorum(4, 2), 3);
        assert_eq!(promotion_quorum(3, 0), 3);
        assert_eq!(promotion_quorum(1, 3), 1);
    }
}
