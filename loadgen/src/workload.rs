//! Workloads: a seed plus a shape (arrival rate, service-time distribution, job kind, entry
//! pattern, length) expands into the same list of [`PlannedJob`]s every time, so that every
//! dispatch mode and every worker policy sees exactly the same jobs at the same instants.
//!
//! Each job's random draws are taken in a fixed order (gap, service, entry, random pick,
//! tie-break) whether or not a mode uses them, so that one mode's choices never shift another
//! job's numbers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The longest job the workers accept, in milliseconds (`hearsay_shared::job::MAX_JOB_MS`).
const MAX_SERVICE_MS: u64 = hearsay_shared::job::MAX_JOB_MS;

/// How long each job asks to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum ServiceDist {
    /// Exponential with this mean (`exp:MEAN_MS`).
    Exp {
        /// Mean, in milliseconds.
        mean_ms: f64,
    },
    /// Always the same (`const:MS`).
    Const {
        /// Milliseconds.
        ms: f64,
    },
    /// `a_ms` with probability `p`, otherwise `b_ms` (`bimodal:P:A_MS:B_MS`).
    Bimodal {
        /// Probability of the first value.
        p: f64,
        /// The first value, in milliseconds.
        a_ms: f64,
        /// The second value, in milliseconds.
        b_ms: f64,
    },
}

/// The accepted forms, for error messages.
pub const SERVICE_FORMS: &str =
    "exp:MEAN_MS, const:MS or bimodal:P:A_MS:B_MS (e.g. exp:100, const:50, bimodal:0.9:50:500)";

impl ServiceDist {
    /// The distribution's mean, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        match *self {
            ServiceDist::Exp { mean_ms } => mean_ms,
            ServiceDist::Const { ms } => ms,
            ServiceDist::Bimodal { p, a_ms, b_ms } => p * a_ms + (1.0 - p) * b_ms,
        }
    }

    /// The distribution's standard deviation, in milliseconds.
    pub fn stddev_ms(&self) -> f64 {
        match *self {
            ServiceDist::Exp { mean_ms } => mean_ms,
            ServiceDist::Const { .. } => 0.0,
            ServiceDist::Bimodal { p, a_ms, b_ms } => (p * (1.0 - p)).sqrt() * (a_ms - b_ms).abs(),
        }
    }

    /// Whether the service is exponential, the assumption of the theory lines.
    pub fn is_exponential(&self) -> bool {
        matches!(self, ServiceDist::Exp { .. })
    }

    /// One draw, in milliseconds (not yet rounded). Always consumes exactly one `f64` from the
    /// rng, so every shape keeps the stream in step.
    fn sample(&self, rng: &mut StdRng) -> f64 {
        let u: f64 = rng.random();
        match *self {
            // Inverse transform; 1 - u is in (0, 1], so the logarithm is finite.
            ServiceDist::Exp { mean_ms } => -mean_ms * (1.0 - u).ln(),
            ServiceDist::Const { ms } => ms,
            ServiceDist::Bimodal { p, a_ms, b_ms } => {
                if u < p {
                    a_ms
                } else {
                    b_ms
                }
            }
        }
    }
}

impl fmt::Display for ServiceDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceDist::Exp { mean_ms } => write!(f, "exp:{mean_ms}"),
            ServiceDist::Const { ms } => write!(f, "const:{ms}"),
            ServiceDist::Bimodal { p, a_ms, b_ms } => write!(f, "bimodal:{p}:{a_ms}:{b_ms}"),
        }
    }
}

/// A `--service` value that does not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadService(String);

impl fmt::Display for BadService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadService {}

fn number(text: &str, what: &str, whole: &str) -> Result<f64, BadService> {
    let value: f64 = text.trim().parse().map_err(|_| {
        BadService(format!(
            "{what} in {whole:?} is not a number: {text:?}; expected {SERVICE_FORMS}"
        ))
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(BadService(format!(
            "{what} in {whole:?} must be a finite number >= 0, not {text}"
        )));
    }
    Ok(value)
}

fn millis(text: &str, what: &str, whole: &str) -> Result<f64, BadService> {
    let ms = number(text, what, whole)?;
    if ms > MAX_SERVICE_MS as f64 {
        return Err(BadService(format!(
            "{what} in {whole:?} is {ms} ms; jobs may last at most {MAX_SERVICE_MS} ms"
        )));
    }
    Ok(ms)
}

impl FromStr for ServiceDist {
    type Err = BadService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let dist = match parts.as_slice() {
            ["exp", mean] => ServiceDist::Exp {
                mean_ms: millis(mean, "the mean", s)?,
            },
            ["const", ms] => ServiceDist::Const {
                ms: millis(ms, "the time", s)?,
            },
            ["bimodal", p, a, b] => {
                let p = number(p, "the probability", s)?;
                if p > 1.0 {
                    return Err(BadService(format!(
                        "the probability in {s:?} must be between 0 and 1, not {p}"
                    )));
                }
                ServiceDist::Bimodal {
                    p,
                    a_ms: millis(a, "the first time", s)?,
                    b_ms: millis(b, "the second time", s)?,
                }
            }
            _ => {
                return Err(BadService(format!(
                    "unknown service-time distribution {s:?}; expected {SERVICE_FORMS}"
                )))
            }
        };
        if dist.mean_ms() <= 0.0 {
            return Err(BadService(format!(
                "the mean service time of {s:?} is 0; jobs must take some time for a load to mean anything"
            )));
        }
        Ok(dist)
    }
}

/// What the jobs do while they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum JobKindChoice {
    /// Wait without using a CPU: the slot is the resource.
    Sleep,
    /// Keep a CPU busy: the machine's cores are shared by every worker on it.
    Spin,
}

impl JobKindChoice {
    /// The name the job API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKindChoice::Sleep => "sleep",
            JobKindChoice::Spin => "spin",
        }
    }
}

/// Where jobs enter the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EntryPattern {
    /// Each job at a worker drawn uniformly at random.
    Spread,
    /// Every job at the first target.
    Hot,
}

impl EntryPattern {
    /// The pattern's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPattern::Spread => "spread",
            EntryPattern::Hot => "hot",
        }
    }
}

/// When a workload stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// After this many jobs.
    Jobs(usize),
    /// At the first arrival after this many seconds.
    Seconds(f64),
}

/// A workload: everything needed to expand it into jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSpec {
    /// The seed of every random draw.
    pub seed: u64,
    /// Mean arrivals per second (Poisson).
    pub rate_per_s: f64,
    /// How long each job runs.
    pub service: ServiceDist,
    /// What the jobs do.
    pub kind: JobKindChoice,
    /// Where they enter.
    pub entry: EntryPattern,
    /// How many workers jobs can enter at (or be sent to).
    pub targets: usize,
    /// When to stop.
    pub length: Length,
}

/// One job of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedJob {
    /// Its place in the workload, from 0.
    pub index: usize,
    /// When it is submitted, from the start of the run.
    pub at: Duration,
    /// How long it asks to run, in whole milliseconds.
    pub service_ms: u64,
    /// The target it enters at (`--dispatch cluster`).
    pub entry: usize,
    /// A target drawn uniformly at random (`--dispatch random`), whatever the entry pattern.
    pub pick: usize,
    /// Breaks ties among equally short queues (`--dispatch jsq`).
    pub tie_break: u64,
}

/// A workload that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWorkload(pub String);

impl fmt::Display for BadWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadWorkload {}

/// More jobs than this in one workload is refused: a plan is kept in memory and every job is a
/// task with an open connection while it runs.
pub const MAX_JOBS: usize = 10_000_000;

impl WorkloadSpec {
    /// Expands the workload into its jobs, in order of arrival.
    pub fn generate(&self) -> Result<Vec<PlannedJob>, BadWorkload> {
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return Err(BadWorkload(format!(
                "the arrival rate must be a positive number of jobs per second, not {}",
                self.rate_per_s
            )));
        }
        if self.targets == 0 {
            return Err(BadWorkload("there are no targets to send jobs to".into()));
        }
        let expected = match self.length {
            Length::Jobs(n) => n as f64,
            Length::Seconds(s) if s.is_finite() && s > 0.0 => s * self.rate_per_s,
            Length::Seconds(s) => {
                return Err(BadWorkload(format!(
                    "the duration must be a positive number of seconds, not {s}"
                )))
            }
        };
        if expected > MAX_JOBS as f64 {
            return Err(BadWorkload(format!(
                "the workload would have about {expected:.0} jobs; at most {MAX_JOBS} are allowed"
            )));
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut jobs = Vec::with_capacity(expected.ceil() as usize);
        let mut clock = 0.0_f64;
        loop {
            if let Length::Jobs(n) = self.length {
                if jobs.len() >= n {
                    break;
                }
            }
            let u: f64 = rng.random();
            clock += -(1.0 - u).ln() / self.rate_per_s;
            let service = self.service.sample(&mut rng);
            let entry_draw = rng.random_range(0..self.targets);
            let pick = rng.random_range(0..self.targets);
            let tie_break: u64 = rng.random();
            if let Length::Seconds(limit) = self.length {
                if clock > limit {
                    break;
                }
            }
            jobs.push(PlannedJob {
                index: jobs.len(),
                at: Duration::from_secs_f64(clock),
                service_ms: (service.round() as u64).min(MAX_SERVICE_MS),
                entry: match self.entry {
                    EntryPattern::Spread => entry_draw,
                    EntryPattern::Hot => 0,
                },
                pick,
                tie_break,
            });
        }
        Ok(jobs)
    }
}

/// The arrival rate that loads `slots` slots to `rho` with jobs of mean `mean_ms`:
/// `rho * slots / mean`, in jobs per second.
pub fn rate_for_rho(rho: f64, slots: u32, mean_ms: f64) -> f64 {
    rho * f64::from(slots) / (mean_ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, service: &str, jobs: usize) -> WorkloadSpec {
        WorkloadSpec {
            seed,
            rate_per_s: 50.0,
            service: service.parse().unwrap(),
            kind: JobKindChoice::Sleep,
            entry: EntryPattern::Spread,
            targets: 8,
            length: Length::Jobs(jobs),
        }
    }

    #[test]
    fn same_seed_same_jobs_other_seed_other_jobs() {
        let a = spec(7, "exp:100", 500).generate().unwrap();
        let b = spec(7, "exp:100", 500).generate().unwrap();
        let c = spec(8, "exp:100", 500).generate().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 500);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "in arrival order");
    }

    #[test]
    fn the_entry_pattern_changes_only_the_entries() {
        let spread = spec(3, "exp:100", 300).generate().unwrap();
        let hot = WorkloadSpec {
            entry: EntryPattern::Hot,
            ..spec(3, "exp:100", 300)
        }
        .generate()
        .unwrap();
        assert!(hot.iter().all(|j| j.entry == 0));
        assert!(spread.iter().any(|j| j.entry != 0));
        for (s, h) in spread.iter().zip(&hot) {
            assert_eq!((s.at, s.service_ms, s.pick), (h.at, h.service_ms, h.pick));
        }
    }

    #[test]
    fn a_duration_stops_at_the_first_arrival_past_it() {
        let jobs = WorkloadSpec {
            length: Length::Seconds(10.0),
            ..spec(1, "const:10", 0)
        }
        .generate()
        .unwrap();
        assert!(jobs.iter().all(|j| j.at <= Duration::from_secs(10)));
        // About 500 expected; 4 standard deviations of a Poisson count is about 90.
        assert!((410..=590).contains(&jobs.len()), "{}", jobs.len());
    }

    /// Arrivals are Poisson at the asked rate: the mean gap is 1/rate, and the fraction of gaps
    /// longer than the mean is e^-1, each within 4 standard errors of a sample this size.
    #[test]
    fn arrivals_come_at_the_asked_rate() {
        let n = 20_000;
        let jobs = spec(11, "exp:100", n).generate().unwrap();
        let mean_gap = 1.0 / 50.0;
        let gaps: Vec<f64> = std::iter::once(jobs[0].at.as_secs_f64())
            .chain(jobs.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()))
            .collect();
        let measured = gaps.iter().sum::<f64>() / n as f64;
        // An exponential's standard deviation is its mean.
        let tolerance = 4.0 * mean_gap / (n as f64).sqrt();
        assert!(
            (measured - mean_gap).abs() < tolerance,
            "mean gap {measured}, expected {mean_gap} +- {tolerance}"
        );
        let p = (-1.0f64).exp();
        let long = gaps.iter().filter(|&&g| g > mean_gap).count() as f64 / n as f64;
        let tolerance = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
        assert!((long - p).abs() < tolerance, "{long} vs {p} +- {tolerance}");
    }

    /// Service times have the asked mean, within 4 standard errors plus the half millisecond
    /// that rounding to whole milliseconds may shift it by.
    #[test]
    fn service_times_have_the_asked_mean() {
        let n = 20_000;
        for service in ["exp:100", "const:40", "bimodal:0.9:50:500", "exp:3.5"] {
            let dist: ServiceDist = service.parse().unwrap();
            let jobs = spec(5, service, n).generate().unwrap();
            let mean = jobs.iter().map(|j| j.service_ms as f64).sum::<f64>() / n as f64;
            let tolerance = 4.0 * dist.stddev_ms() / (n as f64).sqrt() + 0.5;
            assert!(
                (mean - dist.mean_ms()).abs() <= tolerance,
                "{service}: mean {mean}, expected {} +- {tolerance}",
                dist.mean_ms()
            );
        }
        let bimodal = spec(5, "bimodal:0.9:50:500", n).generate().unwrap();
        assert!(bimodal
            .iter()
            .all(|j| j.service_ms == 50 || j.service_ms == 500));
    }

    #[test]
    fn entries_and_picks_cover_every_target_evenly() {
        let n = 16_000;
        let jobs = spec(9, "exp:100", n).generate().unwrap();
        let expected = n as f64 / 8.0;
        // A binomial count's standard deviation.
        let tolerance = 4.0 * (n as f64 * (1.0 / 8.0) * (7.0 / 8.0)).sqrt();
        for target in 0..8 {
            for count in [
                jobs.iter().filter(|j| j.entry == target).count(),
                jobs.iter().filter(|j| j.pick == target).count(),
            ] {
                assert!(
                    (count as f64 - expected).abs() < tolerance,
                    "target {target}: {count}"
                );
            }
        }
    }

    #[test]
    fn service_forms_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            "exp:100".parse::<ServiceDist>(),
            Ok(ServiceDist::Exp { mean_ms: 100.0 })
        );
        let bimodal_mean = "bimodal:0.9:50:500"
            .parse::<ServiceDist>()
            .unwrap()
            .mean_ms();
        assert!((bimodal_mean - 95.0).abs() < 1e-9, "{bimodal_mean}");
        for bad in [
            "",
            "exp",
            "exp:",
            "exp:abc",
            "exp:-5",
            "exp:0",
            "gauss:5",
            "const:1:2",
            "bimodal:1.5:1:2",
            "bimodal:0.5:1",
            "exp:inf",
            "exp:NaN",
            "const:99999999",
        ] {
            let e = bad.parse::<ServiceDist>().unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
            assert!(
                e.contains(&format!("{bad:?}")) || e.contains(bad),
                "{bad}: {e}"
            );
        }
        assert!("gauss:5"
            .parse::<ServiceDist>()
            .unwrap_err()
            .to_string()
            .contains("bimodal:P:A_MS:B_MS"));
    }

    #[test]
    fn rho_gives_the_rate_that_fills_the_slots() {
        // 8 slots of 100 ms jobs take 80 jobs/s; at rho 0.9, 72.
        assert!((rate_for_rho(0.9, 8, 100.0) - 72.0).abs() < 1e-9);
    }

    #[test]
    fn impossible_workloads_are_refused() {
        let bad_rate = WorkloadSpec {
            rate_per_s: 0.0,
            ..spec(1, "exp:1", 10)
        };
        assert!(bad_rate.generate().is_err());
        let no_targets = WorkloadSpec {
            targets: 0,
            ..spec(1, "exp:1", 10)
        };
        assert!(no_targets.generate().is_err());
    }
}
