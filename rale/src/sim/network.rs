//! The simulated network: links between members and between the client and each
//! member, cut by active fault windows, and the consensus reachability they imply.

use std::collections::BTreeMap;

/// Link state. Endpoint `n` (the member count) is the client.
#[derive(Clone, Debug)]
pub struct Network {
    n: usize,
    windows: BTreeMap<u64, Vec<(usize, usize)>>,
    cut: Vec<bool>,
}

impl Network {
    /// `n` members and a client, every link up.
    pub fn new(n: usize) -> Self {
        Network {
            n,
            windows: BTreeMap::new(),
            cut: vec![false; (n + 1) * (n + 1)],
        }
    }

    /// The client's endpoint index.
    pub fn client(&self) -> usize {
        self.n
    }

    /// Whether `a` and `b` (members or the client) can talk.
    pub fn link_up(&self, a: usize, b: usize) -> bool {
        a == b || !self.cut[a * (self.n + 1) + b]
    }

    /// Cuts `links` until [`Network::end`] is called with `window`.
    pub fn cut(&mut self, window: u64, links: Vec<(usize, usize)>) {
        self.windows.insert(window, links);
        self.rebuild();
    }

    /// Ends one cut window (no effect if it already ended).
    pub fn end(&mut self, window: u64) {
        if self.windows.remove(&window).is_some() {
            self.rebuild();
        }
    }

    /// Ends every cut.
    pub fn heal(&mut self) {
        self.windows.clear();
        self.rebuild();
    }

    /// Whether any link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.windows.is_empty()
    }

    fn rebuild(&mut self) {
        let w = self.n + 1;
        self.cut.iter_mut().for_each(|c| *c = false);
        for links in self.windows.values() {
            for &(a, b) in links {
                if a < w && b < w && a != b {
                    self.cut[a * w + b] = true;
                    self.cut[b * w + a] = true;
                }
            }
        }
    }

    /// For each member: whether it is a consensus participant (`alive[i]`) whose
    /// connected component of participants holds a majority of all `n` members.
    pub fn majority(&self, alive: &[bool]) -> Vec<bool> {
        let mut comp = vec![usize::MAX; self.n];
        let mut out = vec![false; self.n];
        for start in 0..self.n {
            if !alive[start] || comp[start] != usize::MAX {
                continue;
            }
            let mut members = vec![start];
            comp[start] = start;
            let mut k = 0;
            while k < members.len() {
                let a = members[k];
                k += 1;
                for b in 0..self.n {
                    if alive[b] && comp[b] == usize::MAX && self.link_up(a, b) {
                        comp[b] = start;
                        members.push(b);
                    }
                }
            }
            if members.len() * 2 > self.n {
                for m in members {
                    out[m] = true;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_follows_components() {
        let mut net = Network::new(3);
        assert_eq!(net.majority(&[true, true, true]), [true, true, true]);
        assert_eq!(net.majority(&[true, false, false]), [false, false, false]);
        net.cut(1, vec![(0, 1), (0, 2)]);
        assert_eq!(net.majority(&[true, true, true]), [false, true, true]);
        assert!(!net.link_up(0, 1) && net.link_up(1, 2) && net.link_up(0, 3));
        // Not transitive: 0-1 cut, 0-2 and 1-2 up: everyone still reaches a majority.
        net.end(1);
        net.cut(2, vec![(0, 1)]);
        assert_eq!(net.majority(&[true, true, true]), [true, true, true]);
        net.heal();
        assert!(net.link_up(0, 1) && !net.is_partitioned());
    }
}
