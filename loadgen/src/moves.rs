//! The cost of load sharing in messages: the steal requests the workers sent during a run, read
//! from every worker's `GET /v1/cluster` (`moves`) before and after it. The counters only grow
//! while a worker runs, so the difference is the run's.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::client::Http;

/// How long one worker may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Steal requests summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Steals {
    /// Steal requests sent (by idle workers).
    pub asked: u64,
    /// Answered with a job.
    pub granted: u64,
    /// Answered with none.
    pub empty: u64,
}

impl Steals {
    /// The counts of `moves` in one `/v1/cluster` view (zero where the worker has none).
    pub fn of_view(view: &Value) -> Steals {
        let count = |key: &str| view["moves"][key].as_u64().unwrap_or(0);
        Steals {
            asked: count("steals_asked"),
            granted: count("steals_granted"),
            empty: count("steals_empty"),
        }
    }

    /// What happened between `before` and `self` (a worker that restarted in between counts
    /// from zero).
    pub fn since(self, before: Steals) -> Steals {
        let diff = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
        Steals {
            asked: diff(self.asked, before.asked),
            granted: diff(self.granted, before.granted),
            empty: diff(self.empty, before.empty),
        }
    }

    /// Steal requests per job, for `jobs` jobs (0 for none).
    pub fn per_job(self, jobs: usize) -> f64 {
        match jobs {
            0 => 0.0,
            n => self.asked as f64 / n as f64,
        }
    }
}

/// The steal counts of each of `targets` now (`None` for a worker that did not answer).
pub async fn read(http: &Http, targets: &[String]) -> Vec<Option<Steals>> {
    let mut out = Vec::with_capacity(targets.len());
    for base in targets {
        let view = http.get_json(base, "/v1/cluster", ASK_TIMEOUT).await;
        out.push(view.ok().map(|v| Steals::of_view(&v)));
    }
    out
}

/// The requests sent between two readings of the same targets, summed over the workers that
/// answered both times.
pub fn between(before: &[Option<Steals>], after: &[Option<Steals>]) -> Steals {
    let mut sum = Steals::default();
    for (b, a) in before.iter().zip(after) {
        if let (Some(b), Some(a)) = (b, a) {
            let d = a.since(*b);
            sum.asked += d.asked;
            sum.granted += d.granted;
            sum.empty += d.empty;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_view_without_moves_counts_nothing() {
        assert_eq!(Steals::of_view(&json!({"nodes": []})), Steals::default());
    }

    #[test]
    fn the_difference_is_the_run_s_and_a_restart_counts_from_zero() {
        let at = |asked, granted, empty| {
            let moves =
                json!({"steals_asked": asked, "steals_granted": granted, "steals_empty": empty});
            Some(Steals::of_view(&json!({ "moves": moves })))
        };
        let before = [at(10, 4, 6), at(5, 5, 0), None];
        // The second worker restarted (its counts went down); the third never answered.
        let after = [at(30, 14, 16), at(2, 1, 1), at(9, 9, 0)];
        let run = between(&before, &after);
        assert_eq!(
            run,
            Steals {
                asked: 22,
                granted: 11,
                empty: 11
            }
        );
        assert!((run.per_job(44) - 0.5).abs() < 1e-12);
        assert_eq!(Steals::default().per_job(0), 0.0);
    }
}
