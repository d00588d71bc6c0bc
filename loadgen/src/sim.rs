//! The same jobs through ideal queues: what loadgen's own baselines would measure if workers
//! and the network added nothing (every slot a FIFO server, service exactly as planned, no HTTP).
//!
//! Set beside a measured `random` or `jsq` run this separates the two sources of difference from
//! the theory: the workload's own sampling (a seed's arrivals and service times are never exactly
//! the nominal ones, and a run starts empty) and the system's overhead (the measured minus the
//! simulated). Over many seeds it also gives the honest spread of one run's statistics.

use crate::bench::shortest;
use crate::workload::PlannedJob;

/// Which of loadgen's placements to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Each job to its uniformly random `pick`.
    Random,
    /// Each job to the target with the fewest jobs not yet finished, ties by `tie_break`.
    Jsq,
}

/// Each job's sojourn in milliseconds (in the jobs' order) when `jobs` (in arrival order) go to
/// targets with `slots[i]` slots each, every target a FIFO queue in front of its slots.
pub fn sojourns(jobs: &[PlannedJob], slots: &[u32], placement: Placement) -> Vec<f64> {
    // For each target, when each of its slots next falls free (ms from the start), and the
    // finishing times of the jobs it holds (to count the outstanding ones for JSQ).
    let mut free_at: Vec<Vec<f64>> = slots
        .iter()
        .map(|&s| vec![0.0; s.max(1) as usize])
        .collect();
    let mut finishing: Vec<Vec<f64>> = vec![Vec::new(); slots.len()];
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let arrival = job.at.as_secs_f64() * 1000.0;
        let target = match placement {
            Placement::Random => job.pick,
            Placement::Jsq => {
                let counts: Vec<usize> = finishing
                    .iter_mut()
                    .map(|f| {
                        f.retain(|&end| end > arrival);
                        f.len()
                    })
                    .collect();
                shortest(&counts, job.tie_break)
            }
        };
        // FIFO: the job takes the slot that falls free first, once it has arrived.
        let slot = free_at[target]
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let start = free_at[target][slot].max(arrival);
        let end = start + job.service_ms as f64;
        free_at[target][slot] = end;
        finishing[target].push(end);
        out.push(end - arrival);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Summary;
    use crate::theory;
    use crate::workload::{rate_for_rho, EntryPattern, JobKindChoice, Length, WorkloadSpec};

    fn job(at_ms: u64, service_ms: u64, pick: usize) -> PlannedJob {
        PlannedJob {
            index: 0,
            at: Duration::from_millis(at_ms),
            service_ms,
            entry: pick,
            pick,
            tie_break: 0,
        }
    }

    #[test]
    fn jobs_queue_behind_each_other_fifo() {
        let jobs = [
            job(0, 100, 0),
            job(10, 100, 0),
            job(20, 5, 1),
            job(300, 10, 0),
        ];
        let s = sojourns(&jobs, &[1, 1], Placement::Random);
        // The second waits 90 ms for the first; the third has a server to itself; the fourth
        // arrives to an idle server.
        assert_eq!(s, vec![100.0, 190.0, 5.0, 10.0]);
        // Two slots on one target: no waiting for the second.
        let s = sojourns(&jobs[..2], &[2], Placement::Random);
        assert_eq!(s, vec![100.0, 100.0]);
    }

    #[test]
    fn jsq_sends_to_the_target_with_fewest_unfinished_jobs() {
        // All picks say target 0; JSQ spreads them.
        let jobs = [
            job(0, 100, 0),
            job(1, 100, 0),
            job(2, 100, 0),
            job(150, 10, 0),
        ];
        let s = sojourns(&jobs, &[1, 1, 1], Placement::Jsq);
        assert_eq!(s, vec![100.0, 100.0, 100.0, 10.0]);
    }

    /// Mean sojourn over `replications` seeds of `jobs` jobs each, and its standard error.
    fn replicated_mean(
        rho: f64,
        n: usize,
        jobs: usize,
        replications: u64,
        p: Placement,
    ) -> (f64, f64) {
        let means: Vec<f64> = (0..replications)
            .map(|seed| {
                let spec = WorkloadSpec {
                    seed,
                    rate_per_s: rate_for_rho(rho, n as u32, 100.0),
                    service: "exp:100".parse().unwrap(),
                    kind: JobKindChoice::Sleep,
                    entry: EntryPattern::Spread,
                    targets: n,
                    length: Length::Jobs(jobs),
                };
                let planned = spec.generate().unwrap();
                // Drop the first tenth: the queues start empty.
                let s = sojourns(&planned, &vec![1; n], p);
                Summary::of(&s[jobs / 10..]).unwrap().mean / 100.0
            })
            .collect();
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        let var =
            means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (means.len() as f64 - 1.0);
        (mean, (var / means.len() as f64).sqrt())
    }

    /// Random dispatch of Poisson arrivals with exponential service is M/M/1 per server: the
    /// simulated mean is 1/(1 - rho) within 4 standard errors of independent replications (plus
    /// 1% for rounding service times to whole milliseconds).
    #[test]
    fn random_dispatch_is_mm1() {
        let (mean, se) = replicated_mean(0.8, 8, 40_000, 12, Placement::Random);
        let expected = theory::mm1_mean(0.8);
        assert!(
            (mean - expected).abs() < 4.0 * se + 0.01 * expected,
            "{mean} +- {se} vs {expected}"
        );
    }

    /// Join-the-shortest-queue over 8 servers lies between the pooled floor (M/M/8) and two
    /// random choices.
    #[test]
    fn jsq_lies_between_the_floor_and_two_choices() {
        let (mean, se) = replicated_mean(0.9, 8, 40_000, 8, Placement::Jsq);
        assert!(mean - 4.0 * se > theory::mmc_mean(8, 0.9), "{mean} +- {se}");
        assert!(
            mean + 4.0 * se < theory::supermarket_mean(0.9, 2),
            "{mean} +- {se}"
        );
    }
}
