//! A seeded job workload run through [`JobSim`], and what it measures: mean and p99 sojourn in
//! mean service times, for comparing placement policies (the `handoff-sim` binary prints them;
//! `tests/tests/handoff_sim.rs` checks them against the design's reference figures, quoted in docs/handoff.md).

use std::time::Duration;

use hearsay_scheduler::Policy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::job_sim::{JobSim, JobSimConfig};

/// A seeded job workload: Poisson arrivals at uniformly random entry nodes, exponential
/// service times, at load `rho` per slot. Every policy given the same seed sees the same jobs
/// at the same instants at the same entry nodes.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Cluster size.
    pub nodes: usize,
    /// Slots per node.
    pub slots: u32,
    /// The placement policy.
    pub policy: Policy,
    /// Whether idle nodes steal queued jobs.
    pub steal: bool,
    /// How they steal, when they do.
    pub stealing: Stealing,
    /// Load per slot.
    pub rho: f64,
    /// Mean service time.
    pub service: Duration,
    /// Jobs submitted.
    pub jobs: usize,
    /// The first jobs left out of the figures (the cluster filling up).
    pub warm_up: usize,
    /// Seeds the gossip, the cores and the workload.
    pub seed: u64,
}

/// How idle nodes steal in a [`Workload`] (see [`JobSimConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stealing {
    /// How often an idle node asks again ([`JobSimConfig::steal_interval`]).
    pub interval: Duration,
    /// Asks of another peer at once after an empty answer
    /// ([`HandoffConfig::steal_retries`](hearsay_scheduler::handoff::HandoffConfig::steal_retries)).
    pub retries: u32,
    /// Whether an empty answer carries the victim's report ([`JobSimConfig::steal_news`]).
    pub news: bool,
}

impl Default for Stealing {
    /// The worker's: every 200 ms, one ask again at once, the news on.
    fn default() -> Self {
        Stealing {
            interval: Duration::from_millis(200),
            retries: 1,
            news: true,
        }
    }
}

/// What a [`Workload`] measured, times in mean service times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadResult {
    /// Mean sojourn (submission to end).
    pub mean: f64,
    /// 99th percentile sojourn.
    pub p99: f64,
    /// Jobs measured.
    pub measured: usize,
    /// Fraction of accepted jobs that a peer took.
    pub forwarded: f64,
    /// Submissions refused.
    pub refused: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Steal requests per job (granted or not).
    pub steals_per_job: f64,
    /// Steal requests answered empty, per job.
    pub empty_per_job: f64,
    /// Fraction of jobs that were stolen.
    pub stolen: f64,
}

/// Converges a fresh cluster's gossip: every node knows every other and believes none dead.
/// Beyond 200 nodes, every node's map holds every node: a joining 1,000-node cluster has false
/// suspicions and deaths for its first minutes (see the README's gossip figures), which
/// placement skips, and waiting them out would cost more than the workload.
pub fn converge(sim: &mut JobSim) {
    let limit = Duration::from_secs(60);
    let n = sim.gossip().node_count();
    let converged = if n <= 200 {
        sim.run_until(limit, |s| s.gossip().all_know_all())
    } else {
        let start = sim.now();
        loop {
            let known = (0..n).all(|i| sim.gossip().core(i).is_some_and(|c| c.map().len() == n));
            if known {
                break Some(sim.now() - start);
            }
            if sim.now() - start >= limit {
                break None;
            }
            sim.run_for(Duration::from_secs(1));
        }
    };
    assert!(converged.is_some(), "the gossip did not converge");
}

/// Runs a workload to its end and measures it.
pub fn run_workload(w: &Workload) -> WorkloadResult {
    run_workloads(w, &[(w.policy, w.steal)])[0]
}

/// Runs a workload once per policy on one cluster (its gossip converged once; the hand-off
/// cores started afresh for every policy), each to its end; the results in the order of
/// `policies` (each with stealing on or off). Every policy sees the same jobs at the same
/// offsets.
pub fn run_workloads(w: &Workload, policies: &[(Policy, bool)]) -> Vec<WorkloadResult> {
    let mut config = JobSimConfig::new(w.nodes, w.seed, w.policy);
    config.slots = w.slots;
    config.steal_interval = w.stealing.interval;
    config.steal_news = w.stealing.news;
    config.handoff.steal_retries = w.stealing.retries;
    let mut sim = JobSim::new(config);
    converge(&mut sim);
    sim.run_for(Duration::from_secs(2));
    policies
        .iter()
        .map(|&(policy, steal)| {
            sim.reset_handoff(policy, steal);
            measure(&mut sim, w, false)
        })
        .collect()
}

/// Runs a workload placed by the join-the-shortest-queue oracle
/// ([`JobSim::submit_shortest_at`]: every job to the node with the fewest jobs at that
/// instant, which no node could know) on a cluster of its own, no stealing: the reference of
/// issue 13's goals. Sees the same jobs at the same offsets as [`run_workloads`].
pub fn run_jsq(w: &Workload) -> WorkloadResult {
    let mut config = JobSimConfig::new(w.nodes, w.seed, Policy::Local);
    config.slots = w.slots;
    let mut sim = JobSim::new(config);
    converge(&mut sim);
    sim.run_for(Duration::from_secs(2));
    sim.reset_handoff(Policy::Local, false);
    measure(&mut sim, w, true)
}

fn measure(sim: &mut JobSim, w: &Workload, jsq: bool) -> WorkloadResult {
    let start = sim.now();
    // The workload's own rng: the same jobs whatever the policy.
    let mut rng = StdRng::seed_from_u64(w.seed ^ 0x776f_726b);
    let rate = w.rho * w.nodes as f64 * f64::from(w.slots) / w.service.as_secs_f64();
    let exp = |rng: &mut StdRng, mean: f64| -mean * (1.0 - rng.random::<f64>()).ln();
    let mut at = start;
    let mut since = start;
    for k in 0..w.jobs {
        at += Duration::from_secs_f64(exp(&mut rng, 1.0 / rate));
        let node = rng.random_range(0..w.nodes);
        let service = Duration::from_secs_f64(exp(&mut rng, w.service.as_secs_f64()));
        if k == w.warm_up {
            since = at;
        }
        if jsq {
            sim.submit_shortest_at(at, service);
        } else {
            sim.submit_at(at, node, service);
        }
        // Keep the queue of future submissions short: run up to the previous arrival.
        if k % 256 == 255 {
            let now = sim.now();
            sim.run_for(at.saturating_sub(now));
        }
    }
    let now = sim.now();
    sim.run_for(at.saturating_sub(now));
    // Until every job has ended, looked at once a (virtual) second.
    let end = sim.now() + Duration::from_secs(3600);
    while !sim.all_settled() {
        assert!(sim.now() < end, "the workload did not drain");
        sim.run_for(Duration::from_secs(1));
    }
    assert!(sim.double_runs().is_empty(), "a job ran twice");
    let mut sojourns: Vec<f64> = sim
        .sojourns(since)
        .into_iter()
        .map(|s| s.as_secs_f64() / w.service.as_secs_f64())
        .collect();
    let measured = sojourns.len();
    let mean = sojourns.iter().sum::<f64>() / measured.max(1) as f64;
    sojourns.sort_by(f64::total_cmp);
    let p99 = sojourns
        .get((measured as f64 * 0.99) as usize)
        .copied()
        .unwrap_or(f64::NAN);
    let total = |f: fn(&hearsay_scheduler::handoff::HandoffStats) -> u64| -> f64 {
        (0..w.nodes)
            .filter_map(|i| sim.core(i))
            .map(|c| f(&c.stats()))
            .sum::<u64>() as f64
    };
    let forwarded = total(|s| s.forwarded);
    let jobs = sim.accepted().len().max(1) as f64;
    WorkloadResult {
        mean,
        p99,
        measured,
        forwarded: forwarded / jobs,
        steals_per_job: total(|s| s.steals_asked) / jobs,
        empty_per_job: total(|s| s.steals_empty) / jobs,
        stolen: total(|s| s.stolen_out) / jobs,
        refused: sim.refused(),
        virtual_time: sim.now() - start,
    }
}
