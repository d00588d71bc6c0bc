//! Faults: crashes, restarts, freezes, partitions, lost job messages, and a fresh hand-off core.

use super::*;

impl JobSim {
    /// Crashes node `i` (`kill -9`): its gossip core, hand-off core and executor are gone.
    pub fn crash(&mut self, i: usize) {
        self.gossip.crash(i);
        let node = &mut self.nodes[i];
        node.core = None;
        node.crashed = true;
        node.running.clear();
        node.queue.clear();
        node.polls.clear();
        node.backlog.clear();
        node.frozen = false;
        node.wake = None;
    }

    /// Starts node `i` again: a later incarnation that knows nothing.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.gossip.restart(i);
        self.boot(i);
    }

    /// Freezes node `i` (`SIGSTOP`): it hears and says nothing, its jobs stand still.
    pub fn freeze(&mut self, i: usize) {
        if self.nodes[i].core.is_none() {
            return;
        }
        self.nodes[i].frozen = true;
        for o in 0..self.nodes.len() {
            if o != i {
                self.gossip.set_link_loss(i, o, 1.0);
                self.gossip.set_link_loss(o, i, 1.0);
            }
        }
    }

    /// Thaws node `i` (`SIGCONT`): what waited for it is handled, in a random order.
    pub fn thaw(&mut self, i: usize) {
        if !self.nodes[i].frozen {
            return;
        }
        self.nodes[i].frozen = false;
        let loss = self.gossip.config().loss;
        for o in 0..self.nodes.len() {
            if o != i {
                self.gossip.set_link_loss(i, o, loss);
                self.gossip.set_link_loss(o, i, loss);
            }
        }
        let mut backlog = std::mem::take(&mut self.nodes[i].backlog);
        backlog.shuffle(&mut self.rng);
        // Job ends first: the jobs ran on in wall time while the node was stopped (a real
        // node's timers fire at once when it thaws).
        backlog.sort_by_key(|e| !matches!(e, Event::JobEnd { .. }));
        for event in backlog {
            self.perform(event);
        }
        self.nodes[i].wake = None;
        self.rewake(i);
    }

    /// Cuts the network into groups, gossip and job messages alike.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.gossip.partition(groups);
        self.group = vec![0; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.group[i] = g + 1;
            }
        }
    }

    /// Joins every group again.
    pub fn heal(&mut self) {
        self.gossip.heal();
        self.group = vec![0; self.nodes.len()];
    }

    /// Sets the loss probability of job messages, and forgets every per-link setting.
    pub fn set_job_loss(&mut self, loss: f64) {
        self.config.job_loss = loss;
        self.link_loss.clear();
    }

    /// Sets the loss probability of job messages from `from` to `to` (one direction only).
    pub fn set_link_job_loss(&mut self, from: usize, to: usize, loss: f64) {
        self.link_loss.insert((from, to), loss);
    }

    /// Starts every running node's hand-off core afresh, placing by `policy`, and forgets
    /// every job: the next workload runs on the same gossip, already converged. Events of the
    /// old cores are dropped.
    pub fn reset_handoff(&mut self, policy: Policy, steal: bool) {
        self.config.policy = policy;
        self.config.steal = steal;
        for i in 0..self.nodes.len() {
            if self.gossip.core(i).is_some() {
                self.boot(i);
            }
        }
        self.jobs.clear();
        self.accepted.clear();
        self.settled.clear();
        self.refused = 0;
        self.drops = JobDrops::default();
    }
}
