//! Faults and operations: injected datagrams, crashes, restarts, leaves, loads, partitions,
//! loss, and the counters' reset.

use super::*;

impl Sim {
    /// Hands node `i` a datagram at once, as if `from` had sent it: what a rogue peer (or one
    /// holding the cluster key, since nothing here is sealed) can do. It need not decode.
    pub fn inject(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.instant();
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_mut() else {
            return;
        };
        node.traffic.datagrams_received += 1;
        node.traffic.bytes_received += bytes.len() as u64;
        // A datagram that does not decode is counted by the core; that is all.
        let _ = core.handle_datagram(now, from, bytes);
        self.after_call(i);
    }

    /// Stops node `i` at once, as `kill -9` would.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.core = None;
        node.starting = false;
        node.wake = None;
    }

    /// Starts node `i` again now: a fresh core with the same id and address and a higher
    /// incarnation, which knows nothing but its seeds. A running node is crashed first.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.boot(i);
    }

    /// Node `i` leaves gracefully: it announces that it is leaving and keeps running (and
    /// gossiping that it is leaving) until it is crashed, as a worker draining its jobs would.
    pub fn leave(&mut self, i: usize) {
        let now = self.instant();
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.leave(now);
            self.after_call(i);
        }
    }

    /// Sets the load that node `i`'s next report carries.
    pub fn set_load(&mut self, i: usize, load: LoadVector) {
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.set_load(load);
        }
    }

    /// Sets node `i`'s load and runs until its next round has published it; returns the
    /// version of the first report that carries the new load. Every later version carries it
    /// too (until the load changes again).
    pub fn publish_load(&mut self, i: usize, load: LoadVector) -> Version {
        let before = self.own_version(i).expect("node is running");
        self.set_load(i, load);
        self.run_until(self.interval() * 2, |sim| {
            sim.own_version(i).is_some_and(|v| v > before)
        })
        .expect("a running node publishes every round");
        self.own_version(i).expect("node is running")
    }

    /// Cuts the network into groups: datagrams between nodes of different groups are dropped.
    /// Nodes listed in no group form one more group together.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.group = vec![0; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.group[i] = g + 1;
            }
        }
    }

    /// Joins every group again.
    pub fn heal(&mut self) {
        self.group = vec![0; self.nodes.len()];
    }

    /// Sets the loss probability of every link without its own setting.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// Sets the loss probability of the link from `from` to `to` (one direction only).
    pub fn set_link_loss(&mut self, from: usize, to: usize, loss: f64) {
        self.link_loss.insert((from, to), loss);
    }

    /// Forgets every per-link loss setting.
    pub fn clear_link_loss(&mut self) {
        self.link_loss.clear();
    }

    /// Zeroes the traffic and drop counters (the event log is kept), to measure a window.
    pub fn reset_counters(&mut self) {
        for node in &mut self.nodes {
            node.traffic = Traffic::default();
        }
        self.drops = Drops::default();
    }
}
