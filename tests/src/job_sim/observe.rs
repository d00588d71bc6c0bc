//! What a test reads: the cores, every job's truth, double runs, settlements, drops, sojourns.

use super::*;

impl JobSim {
    /// Node `i`'s hand-off core, while it runs.
    pub fn core(&self, i: usize) -> Option<&Handoff> {
        self.nodes[i].core.as_ref()
    }

    /// Every job the simulation saw.
    pub fn jobs(&self) -> &HashMap<JobId, JobTruth> {
        &self.jobs
    }

    /// Jobs that started running more than once (on two nodes, or twice on one): at most
    /// once says none. (A stolen job is put in two executors, one after the other, and starts
    /// in one.)
    pub fn double_runs(&self) -> Vec<(JobId, Vec<usize>)> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.starts.len() > 1)
            .map(|(id, j)| (*id, j.starts.clone()))
            .collect()
    }

    /// Jobs accepted, with their entry node.
    pub fn accepted(&self) -> &HashMap<JobId, usize> {
        &self.accepted
    }

    /// Every settlement of every job, as its entry node made it.
    pub fn settled(&self) -> &HashMap<JobId, Vec<(JobStatus, Option<String>)>> {
        &self.settled
    }

    /// Submissions refused.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// What the network did with job messages.
    pub fn drops(&self) -> JobDrops {
        self.drops
    }

    /// Whether node `i` ever crashed.
    pub fn ever_crashed(&self, i: usize) -> bool {
        self.nodes[i].crashed
    }

    /// Accepted jobs whose entry node never crashed and that did not settle exactly once, with
    /// their settlements.
    pub fn unsettled_or_settled_twice(&self) -> Vec<(JobId, usize)> {
        self.accepted
            .iter()
            .filter(|(_, entry)| !self.nodes[**entry].crashed)
            .map(|(id, _)| (*id, self.settled.get(id).map_or(0, Vec::len)))
            .filter(|(_, n)| *n != 1)
            .collect()
    }

    /// Whether every entry node that never crashed has settled everything it accepted.
    pub fn all_settled(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.crashed || n.core.as_ref().is_none_or(|c| c.unsettled() == 0))
    }

    /// Sojourn (submission to end) of every job that ended and was submitted at or after
    /// `since`, in the order of submission.
    pub fn sojourns(&self, since: Duration) -> Vec<Duration> {
        let mut done: Vec<(Duration, Duration)> = self
            .jobs
            .values()
            .filter(|j| j.submitted >= since)
            .filter_map(|j| j.ended.map(|e| (j.submitted, e - j.submitted)))
            .collect();
        done.sort();
        done.into_iter().map(|(_, s)| s).collect()
    }
}
