//! Failure detection from report arrivals: a phi accrual detector (Hayashibara et al., as in
//! Akka and Cassandra).
//!
//! A node's reports carry a rising `seq`; every time a newer one arrives, by any path, that is a
//! heartbeat. The detector keeps a window of the intervals between heartbeats and turns the
//! silence since the last one into `phi`, the negative log10 of the probability that a heartbeat
//! is still on its way. Because the window adapts, a node whose reports arrive irregularly (slow
//! links, loss, many hops, a large cluster) is given more time, and one that was regular is judged
//! quickly.
//!
//! Unlike Akka and Cassandra, phi is computed against a distribution with an exponential tail
//! (see `phi`): heartbeats that travel by gossip arrive with a long tail of silences, and a
//! normal distribution's tail is far too thin for it. The defaults are measured, not guessed: the
//! `gossip-sim` binary of the test crate runs them against a simulated cluster.

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
    /// With the default floor under the standard deviation, about a second of silence beyond the
    /// mean is tolerated anyway, so the default adds nothing.
    pub acceptable_pause: Duration,
    /// The interval assumed until a few heartbeats have been measured (see
    /// [`ArrivalWindow::new`]). Longer than the gossip interval: in a large cluster a node's
    /// reports reach a given peer only every few rounds, and a new entry judged by the gossip
    /// interval would be declared dead at its first long silence.
    pub first_interval: Duration,
    /// Dead and left entries are kept this long (so that stale gossip cannot bring them back),
    /// then dropped from the map.
    pub grace: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        // Measured with the simulation at the default gossip settings. A dead phi of 7 is a
        // silence of the mean interval plus 10.9 standard deviations: at 20 nodes (intervals of
        // 280 ± 160 ms) about 2 s, and all peers see a crash in 2.6 s (3.2 s at most with 5%
        // loss); at 100 nodes with 5% loss (490 ± 300 ms) about 3.7 s, which no live node's
        // silence came near in 10,000 rounds (a phi of 6 would have sufficed). A suspect phi of
        // 4 is 6 deviations.
        DetectorConfig {
            suspect_phi: 4.0,
            dead_phi: 7.0,
            window: 1000,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::ZERO,
            first_interval: Duration::from_secs(1),
            grace: Duration::from_secs(60),
        }
    }
}

/// How many intervals are measured before the two assumed ones leave the window.
const ASSUMED_UNTIL: u8 = 30;

/// The heartbeat history of one node, in a few numbers whatever its length.
///
/// The detector needs only the mean and the variance of the intervals, so the window is kept
/// as sums rather than as the intervals themselves: until it holds `window` intervals the sums
/// are exact (the same mean and variance as a list of every interval), and from then on each
/// new interval takes a `1 / window` share, the older ones fading geometrically (an
/// exponentially weighted mean of the same memory). One entry of a map of 10,000 nodes is thus
/// a few dozen bytes instead of a list of up to `window` intervals (8 kB at the default 1,000),
/// which made every node's map, and a simulation of many, grow with the square of the cluster.
#[derive(Debug, Clone)]
pub struct ArrivalWindow {
    last: Instant,
    /// Measured intervals in the window: exact up to `window`, then it stays there.
    count: u32,
    /// Intervals measured since the window started, up to [`ASSUMED_UNTIL`], to retire the
    /// assumed ones.
    measured: u8,
    sum: f64,
    sum_sq: f64,
    /// Whether the two assumed intervals still count.
    assumed: bool,
    /// The two assumed intervals' sum (their sum of squares follows from it: they are half and
    /// one and a half times their mean), zero once they have left.
    assumed_sum: f64,
}

impl ArrivalWindow {
    /// A window whose first heartbeat arrived at `now`. It starts with two assumed samples of
    /// the configured first interval, one short and one long, so that the first judgements are
    /// neither hasty nor blind; they leave the window once a few intervals have been measured,
    /// so that they do not blunt the detector for long.
    pub fn new(now: Instant, config: &DetectorConfig) -> Self {
        let first = config.first_interval.as_secs_f64() * 1000.0;
        let (short, long) = (first * 0.5, first * 1.5);
        ArrivalWindow {
            last: now,
            count: 0,
            measured: 0,
            sum: 0.0,
            sum_sq: 0.0,
            assumed: true,
            assumed_sum: short + long,
        }
    }

    /// Records a heartbeat at `now`.
    pub fn heartbeat(&mut self, now: Instant, config: &DetectorConfig) {
        let interval = now.saturating_duration_since(self.last).as_secs_f64() * 1000.0;
        self.last = now;
        let cap = u32::try_from(config.window.max(1)).unwrap_or(u32::MAX);
        if self.count < cap {
            self.count += 1;
        } else {
            // Full: the window's older intervals give up a share to the new one.
            let keep = (f64::from(cap) - 1.0) / f64::from(cap);
            self.sum *= keep;
            self.sum_sq *= keep;
        }
        self.sum += interval;
        self.sum_sq += interval * interval;
        if self.measured < ASSUMED_UNTIL {
            self.measured += 1;
        }
        if self.measured >= ASSUMED_UNTIL {
            self.assumed = false;
            self.assumed_sum = 0.0;
        }
    }

    /// Records a heartbeat at `now` after a silence that is not to be counted as an interval
    /// (the node was judged dead meanwhile): the clock restarts, the intervals stay.
    pub fn resume(&mut self, now: Instant) {
        self.last = now;
    }

    /// When the last heartbeat arrived.
    pub fn last(&self) -> Instant {
        self.last
    }

    /// The assumed intervals' sum of squares: `(m/2)² + (3m/2)²` for a mean `m` of
    /// `assumed_sum / 2`.
    fn assumed_sq(&self) -> f64 {
        0.625 * self.assumed_sum * self.assumed_sum
    }

    /// Intervals in the window, the assumed ones included.
    fn len(&self) -> f64 {
        let assumed = if self.assumed { 2.0 } else { 0.0 };
        (f64::from(self.count) + assumed).max(1.0)
    }

    /// The mean heartbeat interval, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        (self.sum + self.assumed_sum) / self.len()
    }

    fn std_dev_ms(&self) -> f64 {
        let n = self.len();
        let mean = (self.sum + self.assumed_sum) / n;
        ((self.sum_sq + self.assumed_sq()) / n - mean * mean)
            .max(0.0)
            .sqrt()
    }

    /// Whether the silence at `now` is longer than the mean interval (and the acceptable
    /// pause): the point from which phi rises past log10(2).
    pub(crate) fn is_late(&self, now: Instant, config: &DetectorConfig) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64() * 1000.0;
        elapsed > self.mean_ms() + config.acceptable_pause.as_secs_f64() * 1000.0
    }

    /// Suspicion level at `now`: 0 just after a heartbeat, rising with silence. A phi of 7 means
    /// the chance that the node is alive and merely late is about 10^-7 under the fitted
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

/// Phi of a silence of `elapsed` against a Laplace (double exponential) distribution of
/// heartbeat intervals with the given mean and standard deviation.
///
/// Akka and Cassandra fit a normal distribution, whose tail falls tenfold every fraction of a
/// standard deviation. Heartbeats that arrive by gossip have a much longer tail: a report reaches
/// a given peer only when some relay or digest exchange happens to carry it, so a long silence
/// is a run of missed chances, and its probability falls geometrically — in Hearsay's simulation
/// tenfold per 1.1 to 1.3 standard deviations. An exponential tail of scale `std / sqrt 2`
/// (tenfold per 1.6) is a cautious fit of that, and gives phi in closed form.
fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    let scale = std / std::f64::consts::SQRT_2;
    let beyond = elapsed - mean;
    if beyond <= 0.0 {
        // P(X > elapsed) = 1 - exp(beyond / scale) / 2, between 1/2 and 1.
        -(1.0 - 0.5 * (beyond / scale).exp()).log10()
    } else {
        // P(X > elapsed) = exp(-beyond / scale) / 2; its log never underflows.
        beyond / scale * std::f64::consts::LOG10_E + std::f64::consts::LOG10_2
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

    /// Up to the window's length the sums give exactly the mean and deviation of the list of
    /// intervals; past it the window follows a change of rhythm, in a few dozen bytes.
    #[test]
    fn the_window_is_exact_until_full_then_follows_the_rhythm_in_constant_space() {
        let config = DetectorConfig {
            window: 200,
            ..DetectorConfig::default()
        };
        let t0 = Instant::now();
        let mut w = ArrivalWindow::new(t0, &config);
        let mut t = t0;
        let mut intervals = Vec::new();
        for i in 0..150u64 {
            let ms = 150 + (i * 37) % 200;
            t += Duration::from_millis(ms);
            w.heartbeat(t, &config);
            intervals.push(ms as f64);
        }
        let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
        let var =
            intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / intervals.len() as f64;
        assert!((w.mean_ms() - mean).abs() < 1e-6, "{} {mean}", w.mean_ms());
        assert!((w.std_dev_ms() - var.sqrt()).abs() < 1e-6);
        // A slower rhythm for four windows' worth: the mean follows it.
        for _ in 0..800 {
            t += Duration::from_millis(900);
            w.heartbeat(t, &config);
        }
        assert!(
            (w.mean_ms() - 900.0).abs() < 900.0 * 0.05,
            "{}",
            w.mean_ms()
        );
        assert!(std::mem::size_of::<ArrivalWindow>() <= 48);
    }
}
