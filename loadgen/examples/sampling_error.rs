//! How much one run's statistics vary from seed to seed, by simulation: the demo's workload
//! shape through ideal FIFO queues under loadgen's `random` and `jsq` placement, for many seeds.
//! This is the sampling error to quote beside a single measured run.
//!
//! `cargo run --release -p hearsay-loadgen --example sampling_error -- [RHO] [JOBS] [SEEDS] [N]`
//! (defaults 0.9 2000 400 8).

use hearsay_loadgen::sim::{sojourns, Placement};
use hearsay_loadgen::stats::Summary;
use hearsay_loadgen::workload::{rate_for_rho, EntryPattern, JobKindChoice, Length, WorkloadSpec};

fn main() {
    let arg = |i: usize, default: f64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (rho, jobs, seeds, n) = (
        arg(1, 0.9),
        arg(2, 2000.0) as usize,
        arg(3, 400.0) as u64,
        arg(4, 8.0) as usize,
    );
    println!("rho {rho}, {jobs} jobs of exp:100 per run, {n} single-slot targets, {seeds} seeds; units of the mean service time");
    println!(
        "{:<8} {:>10} {:>8} {:>10} {:>8}   (spread = standard deviation over seeds)",
        "", "mean", "spread", "p99", "spread"
    );
    for (name, placement) in [("random", Placement::Random), ("jsq", Placement::Jsq)] {
        let (mut means, mut p99s) = (Vec::new(), Vec::new());
        for seed in 0..seeds {
            let spec = WorkloadSpec {
                seed,
                rate_per_s: rate_for_rho(rho, n as u32, 100.0),
                service: "exp:100".parse().expect("a valid distribution"),
                kind: JobKindChoice::Sleep,
                entry: EntryPattern::Spread,
                targets: n,
                length: Length::Jobs(jobs),
            };
            let planned = spec.generate().expect("a valid workload");
            let s = Summary::of(&sojourns(&planned, &vec![1; n], placement))
                .expect("some jobs")
                .scaled(100.0);
            means.push(s.mean);
            p99s.push(s.p99);
        }
        let (m, ms) = mean_sd(&means);
        let (p, ps) = mean_sd(&p99s);
        println!("{name:<8} {m:>10.2} {ms:>8.2} {p:>10.2} {ps:>8.2}");
    }
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0);
    (mean, var.sqrt())
}
