//! The hand-off in the simulated cluster (`hearsay_tests::job_sim`): the lost-answer and
//! frozen-peer cases of `failures.rs`, and a storm of crashes, freezes, partitions and loss,
//! each over hundreds of seeds, deterministic per seed; and the balancing of the placement
//! policies at 8 nodes, against the queueing-theory figures, and of stealing (issue 13): a quarter off
//! P2C at rho 0.9 for every gossip period from 0.1 to 2 service times with fewer than one
//! steal request a job, few jobs moved at rho 0.3. Every figure is virtual time.
//!
//! What every failure case asserts: no job is ever put in two executors, and every job an entry
//! node accepted (an entry that never crashed) reaches exactly one terminal state there.

use std::collections::HashMap;
use std::time::Duration;

use hearsay_scheduler::Policy;
use hearsay_shared::JobStatus;
use hearsay_tests::job_sim::{JobSim, JobSimConfig};
use hearsay_tests::workload::{converge, run_jsq, run_workloads, Stealing, Workload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The node offers go to and that is frozen or loses answers (as `VICTIM` in failures.rs).
const VICTIM: usize = 4;

fn five(seed: u64, policy: Policy) -> JobSim {
    let mut sim = JobSim::new(JobSimConfig::new(5, seed, policy));
    converge(&mut sim);
    // Let the failure detectors learn the rhythm of heartbeats (as the real test's 2 s).
    sim.run_for(Duration::from_secs(2));
    sim
}

/// What a run came to, for the counts the tests print and the assertions over all seeds.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    ended: HashMap<&'static str, usize>,
    at_victim: usize,
    unanswered: u64,
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Succeeded => "succeeded",
        JobStatus::Lost => "lost",
        JobStatus::Failed => "failed",
        JobStatus::TimedOut => "timed_out",
        JobStatus::Cancelled => "cancelled",
        JobStatus::Queued | JobStatus::Running => "unfinished",
    }
}

/// Runs until everything accepted has settled, then checks at most once and exactly one end.
fn settle_and_check(sim: &mut JobSim, seed: u64, tally: &mut Tally) {
    let settled = sim.run_until(Duration::from_secs(120), JobSim::all_settled);
    assert!(
        settled.is_some(),
        "seed {seed}: jobs still unsettled after 120 s"
    );
    // Whatever waited in a thawed node's sockets has been read by now.
    sim.run_for(Duration::from_secs(3));
    let twice = sim.double_runs();
    assert!(
        twice.is_empty(),
        "seed {seed}: jobs ran on two nodes: {twice:?}"
    );
    let wrong = sim.unsettled_or_settled_twice();
    assert!(
        wrong.is_empty(),
        "seed {seed}: jobs not settled exactly once: {wrong:?}"
    );
    tally.accepted += sim.accepted().len();
    for ends in sim.settled().values() {
        *tally.ended.entry(status_name(ends[0].0)).or_default() += 1;
    }
    tally.at_victim += sim
        .jobs()
        .values()
        .filter(|j| j.runs.contains(&VICTIM))
        .count();
    tally.unanswered += sim.core(0).map_or(0, |c| c.stats().offers_unanswered);
}

/// Ten short jobs submitted to node 0, placed round-robin, one every `gap`.
fn ten_jobs(sim: &mut JobSim, gap: Duration) {
    let start = sim.now();
    for k in 0..10u32 {
        sim.submit_at(start + gap * k, 0, Duration::from_millis(20));
    }
}

/// failures.rs `a_job_whose_offer_went_unanswered_never_runs_twice`, in the simulator: one
/// peer frozen (`SIGSTOP`) while offers are sent to it; their answers never come, the peer is
/// judged dead, the entry node asks, gets no answer, follows the jobs there and reports them
/// lost. Then the peer thaws and reads what waited — the late offers and the questions, in a
/// random order. No job runs on two nodes, whatever the order; every job accepted ends once.
#[test]
fn a_frozen_peer_never_gets_a_job_run_twice_over_many_seeds() {
    let mut tally = Tally::default();
    for seed in 0..300 {
        let mut sim = five(seed, Policy::RoundRobin);
        sim.freeze(VICTIM);
        ten_jobs(&mut sim, Duration::from_millis(300));
        // Frozen long enough to be judged dead and for every question to go unanswered.
        sim.run_for(Duration::from_secs(20));
        sim.thaw(VICTIM);
        settle_and_check(&mut sim, seed, &mut tally);
    }
    eprintln!("frozen peer, 300 seeds: {tally:?}");
    assert!(tally.unanswered > 0, "no offer went unanswered");
    assert!(
        tally.ended.get("lost").copied().unwrap_or(0) > 0,
        "no job was lost"
    );
    assert!(
        tally.ended.get("succeeded").copied().unwrap_or(0) > 0,
        "no job succeeded"
    );
}

/// The lost answer: every message to and from the victim is lost with probability 1/2 (the
/// offer, its answer, the asks, the polls), the rest of the cluster's job messages with
/// probability 1/10. Jobs end succeeded (an ask found them), lost (no answer, or fenced), or
/// were placed elsewhere after a fence — never run twice.
#[test]
fn lost_offers_answers_and_asks_never_run_a_job_twice_over_many_seeds() {
    let mut tally = Tally::default();
    for seed in 0..300 {
        let mut sim = five(seed, Policy::RoundRobin);
        sim.set_job_loss(0.1);
        for other in 0..5 {
            if other != VICTIM {
                sim.set_link_job_loss(VICTIM, other, 0.5);
                sim.set_link_job_loss(other, VICTIM, 0.5);
            }
        }
        ten_jobs(&mut sim, Duration::from_millis(100));
        sim.run_for(Duration::from_secs(5));
        sim.set_job_loss(0.0);
        settle_and_check(&mut sim, seed, &mut tally);
    }
    eprintln!("lost answers, 300 seeds: {tally:?}");
    assert!(tally.unanswered > 0, "no offer's answer was lost");
    assert!(tally.at_victim > 0, "no job ran at the victim");
    assert!(tally.ended.get("succeeded").copied().unwrap_or(0) > 0);
}

/// A storm: six nodes under a steady load of short jobs entering everywhere, 5% of job
/// messages lost, and every couple of seconds a node crashes, restarts, freezes, thaws, or
/// the network splits or heals.
#[test]
fn crashes_freezes_partitions_and_loss_never_run_a_job_twice_over_many_seeds() {
    storm(false);
}

/// The same storm with idle nodes stealing queued jobs: thieves and victims crash, freeze and
/// are cut off mid-transfer, and the offers and asks of steals are lost like any other.
#[test]
fn with_stealing_too_crashes_freezes_partitions_and_loss_never_run_a_job_twice() {
    storm(true);
}

fn storm(steal: bool) {
    let mut tally = Tally::default();
    let mut stolen = 0;
    for seed in 0..150 {
        let mut sim = JobSim::new({
            let mut c = JobSimConfig::new(6, seed, Policy::P2c);
            c.job_loss = 0.05;
            c.steal = steal;
            c
        });
        converge(&mut sim);
        sim.run_for(Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(seed);
        let start = sim.now();
        let mut at = start;
        while at < start + Duration::from_secs(20) {
            at += Duration::from_millis(rng.random_range(10..80));
            let service = Duration::from_millis(rng.random_range(20..400));
            sim.submit_at(at, rng.random_range(0..6), service);
        }
        for _ in 0..10 {
            sim.run_for(Duration::from_secs(2));
            let node = rng.random_range(0..6);
            match rng.random_range(0..6) {
                0 => sim.crash(node),
                1 => sim.restart(node),
                2 => sim.freeze(node),
                3 => (0..6).for_each(|i| sim.thaw(i)),
                4 => sim.partition(&[&[0, 1, 2], &[3, 4, 5]]),
                _ => sim.heal(),
            }
            assert!(
                sim.double_runs().is_empty(),
                "seed {seed}: {:?}",
                sim.double_runs()
            );
        }
        (0..6).for_each(|i| sim.thaw(i));
        sim.heal();
        sim.set_job_loss(0.0);
        settle_and_check(&mut sim, seed, &mut tally);
        stolen += (0..6)
            .filter_map(|i| sim.core(i))
            .map(|c| c.stats().stolen_out)
            .sum::<u64>();
    }
    eprintln!("storm (steal: {steal}), 150 seeds: {tally:?}, {stolen} jobs given to thieves");
    assert_eq!(stolen > 0, steal);
    assert!(tally.ended.get("lost").copied().unwrap_or(0) > 0);
    assert!(tally.ended.get("succeeded").copied().unwrap_or(0) > tally.accepted / 2);
}

#[test]
fn a_seed_gives_the_same_run() {
    let run = |seed| {
        let mut sim = five(seed, Policy::P2c);
        sim.set_job_loss(0.2);
        ten_jobs(&mut sim, Duration::from_millis(50));
        sim.freeze(2);
        sim.run_for(Duration::from_secs(10));
        sim.thaw(2);
        sim.run_until(Duration::from_secs(120), JobSim::all_settled);
        let mut ends: Vec<_> = sim
            .settled()
            .iter()
            .map(|(id, ends)| (*id, ends.clone()))
            .collect();
        ends.sort_by_key(|(id, _)| *id);
        (ends, sim.drops(), sim.now())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

/// The balancing of the policies at 8 nodes of one slot, rho 0.9, exponential service of 1 s
/// with 200 ms gossip (a map 0.2 service times old): the design's event simulation gave fresh P2C
/// 3.00 and random 9.6 mean service times; random and local are 8 M/M/1 queues (mean 10, and
/// a mean over 20,000 jobs of such queues still varies by ±20% from seed to seed). One seed,
/// 20,000 jobs, the policies in turn on one converged cluster; measured: p2c 3.02, random
/// 11.19, least-loaded 2.29, local 9.36 (run alone on fresh clusters: random 9.50).
#[test]
fn at_8_nodes_and_rho_0_9_p2c_is_near_3_service_times_and_random_near_10() {
    let policies = [
        Policy::P2c,
        Policy::Random,
        Policy::LeastLoaded,
        Policy::Local,
    ]
    .map(|p| (p, false));
    let workload = Workload {
        nodes: 8,
        slots: 1,
        policy: Policy::P2c,
        steal: false,
        stealing: Stealing::default(),
        rho: 0.9,
        service: Duration::from_secs(1),
        jobs: 20_000,
        warm_up: 2_000,
        seed: 1,
    };
    let [p2c, random, least, local] = run_workloads(&workload, &policies)[..] else {
        unreachable!("one result per policy");
    };
    for (name, r) in [
        ("p2c", p2c),
        ("random", random),
        ("least-loaded", least),
        ("local", local),
    ] {
        eprintln!(
            "{name:>13}: mean {:.2} p99 {:.2} forwarded {:.0}%",
            r.mean,
            r.p99,
            r.forwarded * 100.0
        );
    }
    assert!((2.5..3.6).contains(&p2c.mean), "p2c {p2c:?}");
    assert!((7.0..14.0).contains(&random.mean), "random {random:?}");
    assert!((7.0..14.0).contains(&local.mean), "local {local:?}");
    assert!(local.forwarded == 0.0 && p2c.forwarded > 0.2);
    assert!(p2c.p99 < random.p99 / 3.0);
    assert!(
        least.mean < random.mean / 2.0,
        "fresh maps: no herd yet {least:?}"
    );
}

/// The gossip periods issue 13 asks about, in service times, as a service time under the
/// simulator's 200 ms gossip interval, and the jobs to run: the freshest map costs 20 gossip
/// rounds a job's service time at one node, so it runs fewer jobs (its margin is widest).
const PERIODS: [(f64, Duration, usize); 4] = [
    (0.1, Duration::from_secs(2), 8_000),
    (0.5, Duration::from_millis(400), 20_000),
    (1.0, Duration::from_millis(200), 20_000),
    (2.0, Duration::from_millis(100), 20_000),
];

fn eight(rho: f64, service: Duration, jobs: usize) -> Workload {
    Workload {
        nodes: 8,
        slots: 1,
        policy: Policy::P2c,
        steal: false,
        stealing: Stealing::default(),
        rho,
        service,
        jobs,
        warm_up: jobs / 10,
        seed: 1,
    }
}

/// Stealing at 8 nodes of one slot, rho 0.9: P2C, and idle nodes asking a busy peer for its
/// newest queued job when a job ends and every 200 ms while idle; an empty answer brings the
/// victim's report, which the thief's map takes in, and the thief asks another peer at once.
/// Issue 13: at least 25% below P2C alone on the mean for gossip periods from 0.1 to 2
/// service times, with fewer than one steal request a job. The design's event simulation
/// gives 1.98 at a period of 0.1 and 2.28 at 2 (2 ms a transfer), against 3.03 and 3.75 for
/// P2C alone. Measured here (seed 1): 1.93 against 3.23 at 0.1 (8,000 jobs; 40% below),
/// 2.06 / 3.08 at 0.5 (33%), 2.17 / 3.12 at 1 (30%), 2.38 / 3.26 at 2 (27%), with 0.42–0.56
/// requests a job. Before the empty answer carried news and the thief asked again, 2.47 at
/// 2 (24% below).
#[test]
fn at_8_nodes_and_rho_0_9_stealing_takes_a_quarter_off_p2c_at_every_gossip_period() {
    for (period, service, jobs) in PERIODS {
        let workload = eight(0.9, service, jobs);
        let [alone, steal] =
            run_workloads(&workload, &[(Policy::P2c, false), (Policy::P2c, true)])[..]
        else {
            unreachable!("one result per policy");
        };
        eprintln!(
            "period {period}: p2c {:.2}, p2c+steal {:.2} ({:.0}% below; {:.0}% stolen, \
             {:.2} requests a job, {:.2} empty)",
            alone.mean,
            steal.mean,
            (1.0 - steal.mean / alone.mean) * 100.0,
            steal.stolen * 100.0,
            steal.steals_per_job,
            steal.empty_per_job
        );
        assert!(
            steal.mean <= 0.75 * alone.mean,
            "period {period}: {alone:?} {steal:?}"
        );
        assert!(steal.steals_per_job < 1.0, "period {period}: {steal:?}");
        assert!(steal.p99 < alone.p99, "period {period}: {steal:?}");
    }
}

/// What the two halves of issue 13's first point bring at the stalest map (2 service times):
/// asking another peer at once after an empty answer takes the mean down (measured 2.47 →
/// 2.34 without the news), and the victim's load in the empty answer, merged as news, saves
/// requests for the same mean (0.54 → 0.43 a job: the thief no longer asks a peer its map
/// still shows busy).
#[test]
fn asking_again_at_once_lowers_the_mean_and_the_victims_news_saves_requests() {
    let workload = eight(0.9, Duration::from_millis(100), 20_000);
    let run = |retries, news| {
        let w = Workload {
            stealing: Stealing {
                retries,
                news,
                ..Stealing::default()
            },
            ..workload.clone()
        };
        run_workloads(&w, &[(Policy::P2c, true)])[0]
    };
    let plain = run(0, false);
    let again = run(1, false);
    let both = run(1, true);
    for (name, r) in [("plain", plain), ("again", again), ("again+news", both)] {
        eprintln!(
            "{name:>10}: mean {:.2}, {:.2} requests a job, {:.2} empty",
            r.mean, r.steals_per_job, r.empty_per_job
        );
    }
    assert!(again.mean < 0.97 * plain.mean, "{plain:?} {again:?}");
    assert!(both.mean < 0.97 * plain.mean, "{plain:?} {both:?}");
    assert!(
        both.steals_per_job < 0.9 * again.steals_per_job,
        "{again:?} {both:?}"
    );
}

/// At rho 0.3 few jobs ever queue, and stealing moves few: at a map 2 service times old,
/// measured 4% of jobs stolen and 0.20 requests a job (0.16 of them empty); at 0.5, 7% and
/// 0.29 (the fresher map shows more of the short queues there are). It does no harm: the mean
/// is 1.08 against P2C's 1.12 at 2, 1.03 against 1.10 at 0.5.
#[test]
fn at_rho_0_3_stealing_moves_few_jobs() {
    for (period, service, stolen, requests) in [
        (0.5, Duration::from_millis(400), 0.10, 0.35),
        (2.0, Duration::from_millis(100), 0.05, 0.25),
    ] {
        let workload = eight(0.3, service, 10_000);
        let [alone, steal] =
            run_workloads(&workload, &[(Policy::P2c, false), (Policy::P2c, true)])[..]
        else {
            unreachable!("one result per policy");
        };
        eprintln!(
            "rho 0.3, period {period}: p2c {:.2}, p2c+steal {:.2}, {:.1}% stolen, {:.2} \
             requests a job",
            alone.mean,
            steal.mean,
            steal.stolen * 100.0,
            steal.steals_per_job
        );
        assert!(steal.stolen < stolen, "period {period}: {steal:?}");
        assert!(
            steal.steals_per_job < requests,
            "period {period}: {steal:?}"
        );
        assert!(
            steal.mean <= alone.mean,
            "period {period}: {alone:?} {steal:?}"
        );
    }
}

/// The join-the-shortest-queue oracle (every job to the node with the fewest jobs at that
/// instant, which no node can know): the reference of issue 13's goals. At 8 nodes and rho
/// 0.9 it lies above the pooled M/M/8 floor (1.88: one queue, which stealing approaches with a
/// fresh map) and well below P2C; measured 2.07, and P2C + stealing at a map 2 service times
/// old 2.37 (2.38 run after P2C on the same cluster), 1.15 times it.
#[test]
fn the_jsq_oracle_lies_between_the_pooled_floor_and_p2c_and_stealing_comes_near_it() {
    let workload = eight(0.9, Duration::from_millis(100), 20_000);
    let jsq = run_jsq(&workload);
    let [steal] = run_workloads(&workload, &[(Policy::P2c, true)])[..] else {
        unreachable!("one result");
    };
    eprintln!("jsq {:.2}, p2c+steal {:.2}", jsq.mean, steal.mean);
    assert!((1.88..2.4).contains(&jsq.mean), "{jsq:?}");
    assert_eq!((jsq.forwarded, jsq.stolen), (0.0, 0.0));
    assert!(steal.mean < 1.2 * jsq.mean, "{jsq:?} {steal:?}");
}
