//! Failure detection from report arrivals: a phi accrual detector (Hayashibara et al., as in
//! Akka and Cassandra).
//!
//! A node's reports carry a rising `seq`; every time a newer one arrives, by any path, that is a
//! heartbeat. The detector keeps a window of the intervals between heartbeats and turns the
//! silence since the last one into `phi`, the negative log10 of the probability that a heartbeat
//! is still on its way. Because the window adapts, a node whose reports arrive irregularly (slow
//! links, loss, many hops) is given more time, and one that was regular is judged quickly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The detector's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Above this phi a node is suspect: not chosen for work, not yet given up on.
    pub suspect_phi: f64,
    /// Above this phi a node is dead.
    pub dead_phi: f64,
    /// How many recent heartbeat intervals the detector remembers.
    pub window: usize,
    /// A floor under the observed standard deviation, so that a very regular node is not judged
    /// dead for one late heartbeat.
    pub min_std_dev: Duration,
    /// A pause that is always tolerated on top of the mean interval (a GC pause, a busy CPU).
    pub acceptable_pause: Duration,
    /// The interval assumed before any heartbeat has been measured: the gossip interval.
    pub first_interval: Duration,
    /// Dead and left entries are kept this long (so that stale gossip cannot bring them back),
    /// then dropped from the map.
    pub grace: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            suspect_phi: 5.0,
            dead_phi: 8.0,
            window: 100,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_millis(500),
            first_interval: Duration::from_millis(200),
            grace: Duration::from_secs(60),
        }
    }
}

/// The heartbeat history of one node.
#[derive(Debug, Clone)]
pub struct ArrivalWindow {
    last: Instant,
    intervals_ms: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl ArrivalWindow {
    /// A window whose first heartbeat arrived at `now`. It starts with two samples of the
    /// configured first interval, one short and one long, so that the first judgement is neither
    /// hasty nor blind.
    pub fn new(now: Instant, config: &DetectorConfig) -> Self {
        let first = config.first_interval.as_secs_f64() * 1000.0;
        let mut window = ArrivalWindow {
            last: now,
            intervals_ms: VecDeque::with_capacity(config.window.min(128)),
            sum: 0.0,
            sum_sq: 0.0,
        };
        window.push(first * 0.5, config.window);
        window.push(first * 1.5, config.window);
        window
    }

    /// Records a heartbeat at `now`.
    pub fn heartbeat(&mut self, now: Instant, config: &DetectorConfig) {
        let interval = now.saturating_duration_since(self.last).as_secs_f64() * 1000.0;
        self.last = now;
        self.push(interval, config.window);
    }

    /// When the last heartbeat arrived.
    pub fn last(&self) -> Instant {
        self.last
    }

    fn push(&mut self, interval_ms: f64, cap: usize) {
        self.intervals_ms.push_back(interval_ms);
        self.sum += interval_ms;
        self.sum_sq += interval_ms * interval_ms;
        while self.intervals_ms.len() > cap.max(1) {
            if let Some(old) = self.intervals_ms.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
    }

    /// The mean heartbeat interval, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        self.sum / self.intervals_ms.len().max(1) as f64
    }

    fn std_dev_ms(&self) -> f64 {
        let n = self.intervals_ms.len().max(1) as f64;
        let mean = self.sum / n;
        (self.sum_sq / n - mean * mean).max(0.0).sqrt()
    }

    /// Suspicion level at `now`: 0 just after a heartbeat, rising with silence. A phi of 8 means
    /// the chance that the node is alive and merely late is about 10^-8 under the fitted normal
    /// distribution.
    pub fn phi(&self, now: Instant, config: &DetectorConfig) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64() * 1000.0;
        let mean = self.mean_ms() + config.acceptable_pause.as_secs_f64() * 1000.0;
        let std = self
            .std_dev_ms()
            .max(config.min_std_dev.as_secs_f64() * 1000.0)
            .max(1.0);
        phi(elapsed, mean, std)
    }
}

/// Phi of a silence of `elapsed` against a normal distribution of heartbeat intervals, using
/// the logistic approximation of the normal CDF that Akka uses (error below 10^-4).
fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p = if elapsed > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    // Far in the tail `p` underflows to 0: that is certainty, not infinity.
    if p <= f64::MIN_POSITIVE {
        f64::MAX
    } else {
        -p.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_rises_with_silence_and_falls_after_a_heartbeat() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let mut w = ArrivalWindow::new(t0, &config);
        for i in 1..=50 {
            w.heartbeat(t0 + Duration::from_millis(200 * i), &config);
        }
        let last = t0 + Duration::from_millis(200 * 50);
        let mut prev = -1.0;
        for ms in [0, 200, 500, 800, 1000, 1200, 1500, 3000] {
            let p = w.phi(last + Duration::from_millis(ms), &config);
            assert!(p >= prev, "phi fell from {prev} to {p} at {ms} ms");
            prev = p;
        }
        assert!(w.phi(last + Duration::from_millis(200), &config) < 1.0);
        assert!(w.phi(last + Duration::from_millis(3000), &config) > config.dead_phi);
    }

    #[test]
    fn irregular_arrivals_earn_more_patience() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let mut regular = ArrivalWindow::new(t0, &config);
        let mut irregular = ArrivalWindow::new(t0, &config);
        let mut t = t0;
        for i in 0..60u64 {
            t += Duration::from_millis(200);
            regular.heartbeat(t, &config);
            irregular.heartbeat(t0 + Duration::from_millis(200 * i + (i % 3) * 300), &config);
        }
        let probe = |w: &ArrivalWindow| w.phi(w.last() + Duration::from_millis(1500), &config);
        assert!(probe(&irregular) < probe(&regular));
    }
}
