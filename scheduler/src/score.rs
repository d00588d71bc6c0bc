//! How loaded a node is: the one number placement and stealing compare.
//!
//! Two scores, selected by [`PlacerConfig::load_score`](crate::PlacerConfig::load_score):
//!
//! - [`LoadScore::Slots`]: `n / slots`, with `n = queued + running + forwarded` (the jobs sent
//!   to it since its report). Right when slots are the whole story: `sleep` jobs on equal,
//!   otherwise idle machines.
//! - [`LoadScore::Cpu`]: the slot score plus what CPU saturation adds to it,
//!
//!   ```text
//!   score = n / slots + (n + 1) / slots × (1 / speed − 1)
//!         = (n + 1) / (slots × speed) − 1 / slots
//!   ```
//!
//! # Derivation
//! Measure time in nominal service times (a job alone on a free CPU). A node with `slots` slots
//! running at full speed clears its `n` jobs and a new one at the rate `slots`; the new job
//! leaves after about `(n + 1) / slots`. Slot scoring compares `n / slots`, which is that time
//! less `1 / slots`. When CPU-bound jobs share a saturated CPU, every one of them runs at a
//! fraction `speed` of nominal, the node's rate is `slots × speed`, and the new job leaves after
//! `(n + 1) / (slots × speed)`; less the same `1 / slots`, that is the formula above. At
//! `speed = 1` the penalty term is exactly 0, so the CPU score *is* the slot score, whatever
//! the slots: sleep jobs, idle machines and reports without CPU figures are placed exactly as
//! before. Even an empty node (`n = 0`) is penalised when its CPU is saturated (`1/speed − 1`
//! over its slots): the case of a machine shared with other software.
//!
//! `speed` comes from the report alone ([`speed`]): below [`SATURATED_PERMILLE`] of its
//! capacity the CPU has room and a new job runs at full speed. At or above, the CPU of capacity
//! `C` (in CPUs, `cpu_capacity_millicores / 1000`) is shared fairly among everything that wants
//! it. That is at least the node's `running` jobs, and at least `C` CPUs' worth of demand in all
//! (the CPU is saturated): so the new job is one of at least `max(running, C) + 1` consumers of
//! `C` CPUs, and
//!
//! ```text
//! speed = min(1, C / (max(running, C) + 1))
//! ```
//!
//! A container limited to half a CPU with two busy slots: `0.5 / 3`. The same container idle but
//! for an outside busy loop: `0.5 / 1.5`; the same idle container with nothing else: 1. A
//! report with capacity 0 (format version 1, which did not carry it) has speed 1.

use std::fmt;
use std::str::FromStr;

use hearsay_shared::LoadVector;
use serde::{Deserialize, Serialize};

/// CPU use (per mille of capacity) from which a node's CPU counts as saturated.
pub const SATURATED_PERMILLE: u16 = 900;

/// Which score a placer compares nodes by (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadScore {
    /// `(queued + running + forwarded) / slots`.
    #[default]
    Slots,
    /// The slot score, raised when the node's CPU is saturated.
    Cpu,
}

impl LoadScore {
    /// Both scores, default first.
    pub const ALL: [LoadScore; 2] = [LoadScore::Slots, LoadScore::Cpu];

    /// The score's name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            LoadScore::Slots => "slots",
            LoadScore::Cpu => "cpu",
        }
    }

    /// The score of a node with load `load` and `pending` jobs forwarded to it since.
    pub fn score(self, load: &LoadVector, pending: u32) -> f64 {
        let slots = f64::from(load.slots);
        let n = f64::from(load.queued) + f64::from(load.running) + f64::from(pending);
        let base = n / slots;
        match self {
            LoadScore::Slots => base,
            LoadScore::Cpu => {
                let s = speed(load);
                if s >= 1.0 {
                    base
                } else {
                    base + (n + 1.0) / slots * (1.0 / s - 1.0)
                }
            }
        }
    }
}

impl fmt::Display for LoadScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A score name that is not one of [`LoadScore::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown load score {0:?}; expected slots or cpu")]
pub struct UnknownLoadScore(pub String);

impl FromStr for LoadScore {
    type Err = UnknownLoadScore;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LoadScore::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownLoadScore(s.to_owned()))
    }
}

/// The fraction of nominal speed a new job would run at on the node, in (0, 1] (see the module's
/// documentation).
pub fn speed(load: &LoadVector) -> f64 {
    if load.cpu_capacity_millicores == 0 || load.cpu_permille < SATURATED_PERMILLE {
        return 1.0;
    }
    let capacity = f64::from(load.cpu_capacity_millicores) / 1000.0;
    let consumers = f64::from(load.running).max(capacity) + 1.0;
    (capacity / consumers).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queued: u32, running: u32, slots: u32, cpu: u16, capacity: u32) -> LoadVector {
        LoadVector {
            cpu_permille: cpu,
            cpu_capacity_millicores: capacity,
            queued,
            running,
            ..LoadVector::idle(slots)
        }
    }

    #[test]
    fn names_round_trip() {
        for s in LoadScore::ALL {
            assert_eq!(s.as_str().parse::<LoadScore>(), Ok(s));
        }
        assert!("queue".parse::<LoadScore>().is_err());
    }

    #[test]
    fn below_saturation_the_cpu_score_is_the_slot_score_exactly() {
        for (q, r, slots, pending) in [(0, 0, 1, 0), (3, 2, 2, 1), (7, 4, 4, 0), (0, 1, 3, 2)] {
            for (cpu, capacity) in [(0, 2000), (899, 500), (1000, 0), (500, 16_000)] {
                let l = load(q, r, slots, cpu, capacity);
                assert_eq!(
                    LoadScore::Cpu.score(&l, pending).to_bits(),
                    LoadScore::Slots.score(&l, pending).to_bits(),
                    "{l:?}"
                );
            }
        }
    }

    #[test]
    fn speed_follows_the_derivation() {
        // Half a CPU, two busy slots: the new job is one of three on half a CPU.
        assert_eq!(speed(&load(0, 2, 2, 1000, 500)), 0.5 / 3.0);
        // Half a CPU, idle but for an outside hog.
        assert_eq!(speed(&load(0, 0, 2, 1000, 500)), 0.5 / 1.5);
        // Two cores saturated by one job and something else: a third consumer of two.
        assert_eq!(speed(&load(0, 1, 2, 950, 2000)), 2.0 / 3.0);
        // Sixteen cores saturated: never faster than nominal.
        assert!(speed(&load(0, 1, 2, 1000, 16_000)) <= 1.0);
        assert_eq!(speed(&load(0, 2, 2, 1000, 0)), 1.0);
    }

    #[test]
    fn a_saturated_node_scores_higher_than_its_slots_say() {
        let free = load(1, 1, 2, 100, 500);
        let hogged = load(1, 1, 2, 1000, 500);
        assert_eq!(
            LoadScore::Slots.score(&free, 0),
            LoadScore::Slots.score(&hogged, 0)
        );
        assert!(LoadScore::Cpu.score(&hogged, 0) > LoadScore::Cpu.score(&free, 0));
        // Even empty: an idle container sharing its half CPU with a busy loop loses to an idle
        // one that does not, and to a busier one with room.
        let empty_hogged = load(0, 0, 2, 1000, 500);
        let busy_free = load(0, 1, 2, 400, 500);
        let s = |l: &LoadVector| LoadScore::Cpu.score(l, 0);
        assert!(s(&empty_hogged) > s(&load(0, 0, 2, 0, 500)));
        assert!(s(&empty_hogged) > s(&busy_free));
        // (n + 1) / (slots x speed) - 1 / slots, the closed form.
        let l = load(2, 2, 2, 1000, 500);
        let closed = 5.0 / (2.0 * speed(&l)) - 0.5;
        assert!((s(&l) - closed).abs() < 1e-12);
    }
}
