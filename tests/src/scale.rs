//! The scale run: N gossip cores ([`Sim`]) joining through a few seeds, a seeded job workload
//! placed by each node's own [`Placer`] from its own map, and faults — crashes, a graceful
//! leave, a restart, a partition, loss on every link — measured as the figures issue 16 asks
//! for (`gossip-sim scale` prints and writes them).
//!
//! # The job model
//! The hand-off core and its simulator (`job_sim`) are being rewritten, so jobs here use a
//! simpler model of their own: every node is an executor with `slots` slots and a FIFO queue;
//! a job enters at a uniformly random running node, which asks its placer where it goes; a
//! forward reaches its target at once (no network delay, no refusal, no stealing), and a
//! target that has crashed or is across the partition is excluded and the job placed again, as
//! a worker does on a connection error. A node's exact queue and running counts are its load,
//! gossiped from its next round on. The same jobs (arrival instants and service times) are
//! also run through two oracles with no gossip at all: join-the-shortest-queue, which knows
//! every node's outstanding jobs exactly, and uniformly random dispatch.
//!
//! # The schedule
//! After the join, the workload runs for `duration`; at 10%, 20%, … of it `crashes` nodes are
//! killed, at 35% one node leaves, at 45% the first crashed node restarts, and from 75% to 85%
//! a tenth of the nodes is cut off. Deaths and suspicions of running nodes are counted up to
//! the partition (across a partition a death is the detector doing its job).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use hearsay_scheduler::{PlacementRequest, Placer, PlacerConfig, Target};
use hearsay_shared::{LoadVector, NodeState, Verdict, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::sim::{Sim, SimConfig, SimEvent};
use crate::timeline::Timeline;

/// How to run the scale measurement.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Seeds every random choice.
    pub seed: u64,
    /// Nodes every node is given as seeds.
    pub seeds: usize,
    /// Loss on every link.
    pub loss: f64,
    /// Virtual time of the workload, after the join.
    pub duration: Duration,
    /// Load per slot of the workload.
    pub rho: f64,
    /// Slots per node.
    pub slots: u32,
    /// Mean service time (exponential).
    pub service: Duration,
    /// Nodes crashed during the run.
    pub crashes: usize,
    /// Whether a tenth of the cluster is cut off for a tenth of the run.
    pub partition: bool,
    /// Longest the join may take.
    pub join_limit: Duration,
}

impl ScaleConfig {
    /// The defaults the goals are stated at: 1% loss, 120 s, ρ 0.9, one slot,
    /// 1 s jobs, three crashes and a partition.
    pub fn new(nodes: usize, seed: u64) -> Self {
        ScaleConfig {
            nodes,
            seed,
            seeds: 3,
            loss: 0.01,
            duration: Duration::from_secs(120),
            rho: 0.9,
            slots: 1,
            service: Duration::from_secs(1),
            crashes: 3,
            partition: true,
            join_limit: Duration::from_secs(300),
        }
    }
}

/// A membership change being watched until every running node has taken it in.
#[derive(Debug, Clone)]
struct Watch {
    what: &'static str,
    subject: usize,
    /// For a join: the version the restarted node started at.
    since: Option<Version>,
    started: Duration,
    to_99: Option<Duration>,
    to_all: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    arrival: Duration,
    service: Duration,
}

#[derive(Debug)]
enum Due {
    Arrival(usize),
    Done { node: usize, life: u32, job: usize },
    Crash(usize),
    Leave(usize),
    Restart(usize),
    Partition(Vec<usize>),
    Heal,
    Watch,
}

#[derive(Debug, Default, Clone)]
struct Executor {
    queue: VecDeque<usize>,
    running: u32,
    /// Bumped at every crash, so that completions of a past life are ignored.
    life: u32,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The seeded jobs: Poisson arrivals at `rho` per slot, exponential service.
fn jobs(config: &ScaleConfig, rng: &mut StdRng) -> Vec<Job> {
    let service = config.service.as_secs_f64();
    let rate = config.rho * config.nodes as f64 * f64::from(config.slots) / service;
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / rate;
        if t >= config.duration.as_secs_f64() {
            return out;
        }
        out.push(Job {
            arrival: Duration::from_secs_f64(t),
            service: Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() * service),
        });
    }
}

/// Sojourns (in seconds) of `jobs` when each goes to the node `pick` names, FIFO on `slots`
/// slots per node; `pick` is told every node's outstanding count.
fn oracle(
    jobs: &[Job],
    nodes: usize,
    slots: u32,
    mut pick: impl FnMut(&BTreeSet<(u32, usize)>) -> usize,
) -> Vec<f64> {
    let mut outstanding = vec![0u32; nodes];
    let mut by_count: BTreeSet<(u32, usize)> = (0..nodes).map(|i| (0, i)).collect();
    // Each node's slots, as the instants they are next free.
    let mut free: Vec<Vec<Duration>> = vec![vec![Duration::ZERO; slots as usize]; nodes];
    let mut departures: Timeline<usize> = Timeline::default();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        while departures.next_at().is_some_and(|at| at <= job.arrival) {
            let (_, node) = departures.pop().expect("peeked");
            by_count.remove(&(outstanding[node], node));
            outstanding[node] -= 1;
            by_count.insert((outstanding[node], node));
        }
        let node = pick(&by_count);
        let slot = (0..free[node].len())
            .min_by_key(|&s| free[node][s])
            .expect("a node has slots");
        let start = free[node][slot].max(job.arrival);
        let end = start + job.service;
        free[node][slot] = end;
        departures.push(end, node);
        by_count.remove(&(outstanding[node], node));
        outstanding[node] += 1;
        by_count.insert((outstanding[node], node));
        out.push((end - job.arrival).as_secs_f64());
    }
    out
}

/// Runs the measurement; the JSON summary has the fields issue 16 lists, and a few more.
pub fn run(config: &ScaleConfig) -> Value {
    let wall = Instant::now();
    let n = config.nodes;
    assert!(
        n > config.seeds + config.crashes + 2,
        "too few nodes for the schedule"
    );
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5ca1e);
    let mut sim = Sim::new(SimConfig {
        seeds: config.seeds,
        ..SimConfig::new(n, config.seed).with_loss(config.loss)
    });
    let interval = sim.interval();
    let joined = |s: &Sim| s.running().count() == s.node_count() && sees_99_percent_alive(s);
    let join = sim.run_until_sampled(config.join_limit, interval / 2, joined);
    let join_end = sim.now();
    let join_deaths = sim.false_deaths().len();
    sim.reset_counters();

    // The schedule, in virtual time from the start of the workload.
    let d = config.duration;
    let mut due: Timeline<Due> = Timeline::default();
    let work = jobs(config, &mut rng);
    for (k, job) in work.iter().enumerate() {
        due.push(job.arrival, Due::Arrival(k));
    }
    let mut victims: Vec<usize> = Vec::new();
    while victims.len() < config.crashes + 1 {
        let v = rng.random_range(config.seeds..n);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    let leaver = victims.pop().expect("one more than the crashes");
    for (k, &v) in victims.iter().enumerate() {
        due.push(d.mul_f64(0.1 * (k + 1) as f64), Due::Crash(v));
    }
    due.push(d.mul_f64(0.35), Due::Leave(leaver));
    if let Some(&first) = victims.first() {
        due.push(d.mul_f64(0.45), Due::Restart(first));
    }
    let cut: Vec<usize> = (n - n / 10..n)
        .filter(|i| !victims.contains(i) && *i != leaver)
        .collect();
    let partition_at = d.mul_f64(0.75);
    if config.partition && !cut.is_empty() {
        due.push(partition_at, Due::Partition(cut.clone()));
        due.push(d.mul_f64(0.85), Due::Heal);
    }
    let watch_every = interval / 4;
    due.push(Duration::ZERO, Due::Watch);

    let placer_config = PlacerConfig {
        report_interval: interval,
        ..PlacerConfig::default()
    };
    let mut placers: Vec<Placer> = (0..n).map(|_| Placer::new(placer_config.clone())).collect();
    let mut executors = vec![Executor::default(); n];
    let mut cut_off = vec![false; n];
    let mut finished: Vec<Option<Duration>> = vec![None; work.len()];
    let (mut lost, mut forwarded) = (0u64, 0u64);
    let mut ages: Vec<f64> = Vec::new();
    let mut watches: Vec<Watch> = Vec::new();
    let mut bytes_at_end = None;
    let mut heal_at = None;
    let mut healed: Option<Duration> = None;
    let drain_limit = d + config.service * 30;

    let set_load = |sim: &mut Sim, i: usize, e: &Executor| {
        sim.set_load(
            i,
            LoadVector {
                queued: e.queue.len() as u32,
                running: e.running,
                ..LoadVector::idle(config.slots)
            },
        );
    };
    // Starts what a node's free slots can take.
    let start = |sim: &mut Sim, due: &mut Timeline<Due>, i: usize, e: &mut Executor, at| {
        while e.running < config.slots {
            let Some(job) = e.queue.pop_front() else {
                break;
            };
            e.running += 1;
            let service: Duration = work[job].service;
            due.push(
                at + service,
                Due::Done {
                    node: i,
                    life: e.life,
                    job,
                },
            );
        }
        set_load(sim, i, e);
    };

    while let Some((at, item)) = due.pop() {
        let now = join_end + at;
        if now > sim.now() {
            sim.run_for(now - sim.now());
        }
        if at >= d && bytes_at_end.is_none() {
            let running: Vec<usize> = sim.running().collect();
            let per_s: Vec<f64> = running
                .iter()
                .map(|&i| sim.traffic(i).bytes_sent as f64 / d.as_secs_f64())
                .collect();
            bytes_at_end = Some((mean(&per_s), per_s.iter().copied().fold(0.0, f64::max)));
        }
        match item {
            Due::Arrival(job) => {
                let mut entry = rng.random_range(0..n);
                while !sim.is_up(entry) {
                    entry = rng.random_range(0..n);
                }
                let mut exclude = Vec::new();
                let target = loop {
                    let core = sim.core(entry).expect("the entry runs");
                    let e = &executors[entry];
                    let req = PlacementRequest {
                        map: core.map(),
                        me: core.node(),
                        own: LoadVector {
                            queued: e.queue.len() as u32,
                            running: e.running,
                            state: if core.is_leaving() {
                                NodeState::Leaving
                            } else {
                                NodeState::Alive
                            },
                            ..LoadVector::idle(config.slots)
                        },
                        now: sim.instant(),
                        hops: 0,
                        exclude: &exclude,
                        requires: 0,
                    };
                    match placers[entry].choose(&req, true, &mut rng) {
                        Target::Peer { node, .. } => {
                            let t = sim.index_of(&node).expect("a simulated node");
                            let age = core.map().get(&node).map(|e| e.age(sim.instant()));
                            if sim.is_up(t) && cut_off[t] == cut_off[entry] {
                                ages.extend(age.map(|a| a.as_secs_f64()));
                                forwarded += 1;
                                break t;
                            }
                            exclude.push(node);
                        }
                        Target::Here | Target::Nowhere => break entry,
                    }
                };
                executors[target].queue.push_back(job);
                start(&mut sim, &mut due, target, &mut executors[target], at);
            }
            Due::Done { node, life, job } => {
                if executors[node].life != life || !sim.is_up(node) {
                    continue;
                }
                finished[job] = Some(at);
                executors[node].running -= 1;
                start(&mut sim, &mut due, node, &mut executors[node], at);
            }
            Due::Crash(v) => {
                let e = &mut executors[v];
                lost += e.queue.len() as u64 + u64::from(e.running);
                *e = Executor {
                    life: e.life + 1,
                    ..Executor::default()
                };
                sim.crash(v);
                watches.push(Watch::new("death", v, None, at));
            }
            Due::Leave(v) => {
                sim.leave(v);
                watches.push(Watch::new("leave", v, None, at));
            }
            Due::Restart(v) => {
                sim.restart(v);
                set_load(&mut sim, v, &executors[v]);
                watches.push(Watch::new("join", v, sim.own_version(v), at));
            }
            Due::Partition(group) => {
                for &i in &group {
                    cut_off[i] = true;
                }
                sim.partition(&[&group]);
            }
            Due::Heal => {
                cut_off.iter_mut().for_each(|c| *c = false);
                sim.heal();
                heal_at = Some(at);
            }
            Due::Watch if healed.is_none() && heal_at.is_some_and(|h| at >= h + interval) => {
                // Healed when every running node sees 99% of the others alive again, checked
                // once a round.
                if sees_99_percent_alive(&sim) {
                    healed = heal_at.map(|h| at - h);
                }
                for w in watches.iter_mut().filter(|w| w.to_all.is_none()) {
                    w.check(&sim, at);
                }
                if at < drain_limit {
                    due.push(at + watch_every, Due::Watch);
                }
            }
            Due::Watch => {
                for w in watches.iter_mut().filter(|w| w.to_all.is_none()) {
                    w.check(&sim, at);
                }
                let busy = executors
                    .iter()
                    .any(|e| e.running > 0 || !e.queue.is_empty());
                if at < d || (busy && at < drain_limit) {
                    due.push(at + watch_every, Due::Watch);
                }
            }
        }
    }

    // Figures.
    let service = config.service.as_secs_f64();
    let warm = config.service * 10;
    let measured: Vec<usize> = (0..work.len())
        .filter(|&k| work[k].arrival >= warm)
        .collect();
    let real: Vec<f64> = measured
        .iter()
        .filter_map(|&k| finished[k].map(|end| (end - work[k].arrival).as_secs_f64() / service))
        .collect();
    let measured_jobs: Vec<Job> = measured.iter().map(|&k| work[k]).collect();
    let jsq = oracle(&work, n, config.slots, |by_count| {
        by_count.first().expect("nodes").1
    });
    let mut pick_rng = StdRng::seed_from_u64(config.seed ^ 0xd1ce);
    let random = oracle(&work, n, config.slots, |_| pick_rng.random_range(0..n));
    let skip = work.len() - measured_jobs.len();
    let in_units = |v: &[f64]| v[skip..].iter().map(|s| s / service).collect::<Vec<_>>();
    let (jsq, random) = (in_units(&jsq), in_units(&random));
    let real_sorted = sorted(real.clone());
    let ages = sorted(ages);
    let cutoff = join_end
        + if config.partition {
            partition_at
        } else {
            d + d
        };
    let counted = |test: fn(&SimEvent) -> bool| {
        sim.events()
            .iter()
            .filter(|e| e.at < cutoff && test(e))
            .count()
    };
    let false_deaths = counted(SimEvent::is_false_death);
    let false_suspicions = counted(SimEvent::is_false_suspicion);
    let rounds = |t: Option<Duration>| t.map(|t| sim.rounds(t));
    let to_99: Vec<f64> = sorted(watches.iter().filter_map(|w| rounds(w.to_99)).collect());
    let detect_all = watches
        .iter()
        .filter(|w| w.what == "death")
        .map(|w| w.to_all.map_or(f64::INFINITY, |t| t.as_secs_f64()))
        .fold(0.0, f64::max);
    let (bytes_mean, bytes_max) = bytes_at_end.unwrap_or((f64::NAN, f64::NAN));
    json!({
        "nodes": n,
        "seed": config.seed,
        "loss": config.loss,
        "virtual_s": sim.now().as_secs_f64(),
        "wall_s": wall.elapsed().as_secs_f64(),
        "join_s": join.map(|j| j.as_secs_f64()),
        "join_false_deaths": join_deaths,
        "membership_rounds_p99": percentile(&to_99, 99.0),
        "membership_changes": watches.iter().map(Watch::json).collect::<Vec<_>>(),
        "bytes_per_node_per_s": { "mean": bytes_mean, "max": bytes_max },
        "detect_all_s": detect_all,
        "false_suspicions": false_suspicions,
        "false_deaths": false_deaths,
        "partition_heal_s": healed.map(|h| h.as_secs_f64()),
        "load_age_s": { "p50": percentile(&ages, 50.0), "p99": percentile(&ages, 99.0) },
        "sojourn": {
            "mean": mean(&real),
            "p99": percentile(&real_sorted, 99.0),
            "jsq_mean": mean(&jsq),
            "random_mean": mean(&random),
        },
        "jobs": work.len(),
        "jobs_measured": real.len(),
        "jobs_lost_to_crashes": lost,
        "jobs_unfinished": measured.len() - real.len(),
        "forwarded_fraction": forwarded as f64 / work.len().max(1) as f64,
        "rho": config.rho,
        "slots": config.slots,
        "service_s": service,
        "peak_rss_mb": peak_rss_mb(),
        "job_model": "simple executor model (instant forwards, no stealing), not the hand-off core",
    })
}

/// Whether every running node that is not leaving sees at least 99% of the others alive
/// (and taking work). Constant time per node: the map counts the nodes that take work.
fn sees_99_percent_alive(sim: &Sim) -> bool {
    let working = |i: &usize| sim.core(*i).is_some_and(|c| !c.is_leaving());
    let others = sim.running().filter(working).count().saturating_sub(1);
    let needed = (others as f64 * 0.99).ceil() as usize;
    sim.running()
        .filter(working)
        .all(|i| sim.core(i).is_some_and(|c| c.map().taking_work() > needed))
}

/// The process's peak resident memory so far (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1000.0)
}

impl Watch {
    fn new(what: &'static str, subject: usize, since: Option<Version>, started: Duration) -> Self {
        Watch {
            what,
            subject,
            since,
            started,
            to_99: None,
            to_all: None,
        }
    }

    fn taken_in(&self, sim: &Sim, observer: usize) -> bool {
        match self.what {
            "death" => sim.verdict(observer, self.subject) == Some(Verdict::Dead),
            "leave" => sim.verdict(observer, self.subject) == Some(Verdict::Left),
            _ => {
                sim.verdict(observer, self.subject) == Some(Verdict::Alive)
                    && sim.version_seen(observer, self.subject) >= self.since
            }
        }
    }

    fn check(&mut self, sim: &Sim, at: Duration) {
        let observers: Vec<usize> = sim.running().filter(|&o| o != self.subject).collect();
        let took = observers.iter().filter(|&&o| self.taken_in(sim, o)).count();
        if self.to_99.is_none() && took as f64 >= observers.len() as f64 * 0.99 {
            self.to_99 = Some(at - self.started);
        }
        if took == observers.len() {
            self.to_all = Some(at - self.started);
        } else if at - self.started > Duration::from_secs(60) {
            // Given up on: reported as never reaching everyone.
            self.to_all = Some(Duration::MAX);
        }
    }

    fn json(&self) -> Value {
        let secs = |t: Option<Duration>| t.filter(|t| *t != Duration::MAX).map(|t| t.as_secs_f64());
        json!({
            "what": self.what,
            "node": self.subject,
            "to_99_percent_s": secs(self.to_99),
            "to_all_s": secs(self.to_all),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jsq_oracle_beats_random_and_both_match_theory_roughly() {
        let config = ScaleConfig {
            duration: Duration::from_secs(2000),
            ..ScaleConfig::new(10, 1)
        };
        let work = jobs(&config, &mut StdRng::seed_from_u64(1));
        let jsq = mean(&oracle(&work, 10, 1, |c| c.first().unwrap().1));
        let mut r = StdRng::seed_from_u64(2);
        let random = mean(&oracle(&work, 10, 1, |_| r.random_range(0..10)));
        // M/M/1 at rho 0.9: 10 service times; JSQ over 10 servers far below.
        assert!((7.0..13.0).contains(&random), "random {random}");
        assert!(jsq < random / 2.0, "jsq {jsq} random {random}");
    }

    #[test]
    fn a_small_scale_run_reports_every_field_and_sees_its_faults() {
        let config = ScaleConfig {
            duration: Duration::from_secs(40),
            ..ScaleConfig::new(30, 3)
        };
        let out = run(&config);
        for field in [
            "join_s",
            "membership_rounds_p99",
            "detect_all_s",
            "load_age_s",
            "sojourn",
        ] {
            assert!(!out[field].is_null(), "{field} missing: {out}");
        }
        assert!(out["detect_all_s"].as_f64().unwrap() < 10.0, "{out}");
        assert_eq!(out["false_deaths"], 0, "{out}");
        let changes = out["membership_changes"].as_array().unwrap();
        assert_eq!(changes.len(), config.crashes + 2, "{out}");
        assert!(changes.iter().all(|c| c["to_all_s"].is_number()), "{out}");
        let sojourn = &out["sojourn"];
        assert!(sojourn["mean"].as_f64().unwrap() < sojourn["random_mean"].as_f64().unwrap());
    }
}
