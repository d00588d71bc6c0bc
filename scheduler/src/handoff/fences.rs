//! Fenced job ids: jobs that their entry node asked after here when this node did not hold
//! them. This node must never take them from then on, so that the entry node, told "not
//! here", may place the job elsewhere without its running twice.
//!
//! A fence is remembered for [`FenceLimits::ttl`] (far longer than an offer can be on its way)
//! and at most [`FenceLimits::max`] of them are kept, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hearsay_shared::JobId;

/// How long and how many fences are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceLimits {
    /// How long a fence is kept.
    pub ttl: Duration,
    /// The most fences kept.
    pub max: usize,
}

impl Default for FenceLimits {
    fn default() -> Self {
        FenceLimits {
            ttl: Duration::from_secs(600),
            max: 100_000,
        }
    }
}

/// The fenced ids, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fences {
    limits: FenceLimits,
    ids: HashMap<JobId, Instant>,
    order: VecDeque<(Instant, JobId)>,
}

impl Fences {
    pub(crate) fn new(limits: FenceLimits) -> Self {
        Fences {
            limits,
            ..Fences::default()
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < self.limits.ttl
                && self.order.len() <= self.limits.max
            {
                break;
            }
            self.order.pop_front();
            if self.ids.get(&id) == Some(&at) {
                self.ids.remove(&id);
            }
        }
    }

    /// Fences `id` off from `now` on.
    pub(crate) fn add(&mut self, id: JobId, now: Instant) {
        self.ids.insert(id, now);
        self.order.push_back((now, id));
        self.prune(now);
    }

    /// Whether `id` is fenced off.
    pub(crate) fn holds(&mut self, id: JobId, now: Instant) -> bool {
        self.prune(now);
        self.ids.contains_key(&id)
    }

    /// How many ids are fenced.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_for_its_time_and_the_oldest_go_beyond_the_count() {
        let t0 = Instant::now();
        let mut fences = Fences::new(FenceLimits {
            ttl: Duration::from_secs(10),
            max: 2,
        });
        fences.add(JobId(1), t0);
        assert!(fences.holds(JobId(1), t0 + Duration::from_secs(9)));
        assert!(!fences.holds(JobId(1), t0 + Duration::from_secs(10)));
        assert!(!fences.holds(JobId(2), t0), "never fenced");
        for id in 2..=4 {
            fences.add(JobId(id), t0);
        }
        assert!(
            !fences.holds(JobId(2), t0),
            "oldest forgotten beyond the count"
        );
        assert!(fences.holds(JobId(3), t0) && fences.holds(JobId(4), t0));
        assert_eq!(fences.len(), 2);
    }

    #[test]
    fn fencing_again_renews_the_fence() {
        let t0 = Instant::now();
        let mut fences = Fences::new(FenceLimits {
            ttl: Duration::from_secs(10),
            max: 100,
        });
        fences.add(JobId(1), t0);
        fences.add(JobId(1), t0 + Duration::from_secs(8));
        assert!(fences.holds(JobId(1), t0 + Duration::from_secs(15)));
    }
}
