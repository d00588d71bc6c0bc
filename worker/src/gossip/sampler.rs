//! The load sampler: every gossip interval it measures the node's CPU use and capacity (its
//! cgroup's when a quota limits it, else the machine's: [`super::cgroup`]) and hands them to the
//! gossip core, whose next report carries them; placement and stealing read them with
//! `--load-score cpu`. The queue and the running jobs are read from the
//! executor (the node's [`WorkGauge`]) by the gossip task itself, at each round, so that a report
//! carries them as they are when it is sent.

use std::fmt;
use std::time::Duration;

use hearsay_shared::LoadVector;
use sysinfo::{CpuRefreshKind, RefreshKind, System};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::SharedGossip;

/// Jobs a node holds at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Jobs waiting for a slot.
    pub queued: u32,
    /// Jobs in a slot.
    pub running: u32,
}

/// Tells how much work the node holds; implemented by the executor. Called once per gossip
/// interval from an async task, so it must answer at once (read a counter, never wait).
pub trait WorkGauge: Send + Sync + fmt::Debug + 'static {
    /// The work held now.
    fn work(&self) -> Work;
}

/// CPU use of the whole machine, from sysinfo.
pub struct CpuSampler {
    system: System,
}

impl fmt::Debug for CpuSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuSampler").finish_non_exhaustive()
    }
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    /// A sampler. Usage is measured between two calls, so the first [`CpuSampler::sample`]
    /// covers the time since this one.
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_cpu_usage()),
        );
        CpuSampler { system }
    }

    /// CPU use of all cores since the previous call, in per mille.
    pub fn sample(&mut self) -> u16 {
        self.system.refresh_cpu_usage();
        permille(self.system.global_cpu_usage())
    }
}

/// A percentage as per mille, clamped to 0..=1000 (a NaN, from no measurement yet, is 0).
fn permille(percent: f32) -> u16 {
    if percent.is_nan() {
        return 0;
    }
    // The clamp keeps the value within 0..=1000, so the cast cannot truncate.
    (percent * 10.0).round().clamp(0.0, 1000.0) as u16
}

/// Samples every `interval` until `stop` (the end of the node's drain), setting the CPU of the
/// core's load.
pub(crate) async fn run(gossip: SharedGossip, interval: Duration, stop: CancellationToken) {
    let mut cpu = super::cgroup::NodeCpu::new();
    let mut ticks = tokio::time::interval(interval);
    // After a stall, sample once and carry on: a burst of samples would say nothing new.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let figures = cpu.sample();
        gossip.with(|g| {
            let load = g.own_report().load;
            g.set_load(LoadVector {
                cpu_permille: figures.permille,
                cpu_capacity_millicores: figures.capacity_millicores,
                cpu_outside_permille: figures.outside_permille,
                ..load
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_becomes_clamped_permille() {
        assert_eq!(permille(0.0), 0);
        assert_eq!(permille(12.34), 123);
        assert_eq!(permille(100.0), 1000);
        assert_eq!(permille(100.4), 1000);
        assert_eq!(permille(-1.0), 0);
        assert_eq!(permille(f32::NAN), 0);
    }
}
