//! How loaded a node is: the one number placement and stealing compare.
//!
//! Two scores, selected by [`PlacerConfig::load_score`](crate::PlacerConfig::load_score):
//!
//! - [`LoadScore::Slots`]: `n / slots`, with `n = queued + running + forwarded` (the jobs sent
//!   to it since its report). Right when slots are the whole story: `sleep` jobs on equal,
//!   otherwise idle machines.
//! - [`LoadScore::Cpu`]: the slot score plus the time CPU contention adds to a new job there,
//!
//!   ```text
//!   score = n / slots + max(1, (n + 1) / slots) × (1 / speed − 1)
//!   ```
//!
//! # Derivation
//! Measure time in nominal service times (a job alone on a free CPU). A node with `slots` slots
//! sends a new job out after about `max(1, (n + 1) / slots)`: one service time if a slot is
//! free, else its share of the queue ahead at the rate `slots`. Slot scoring compares `n /
//! slots` (the same ranking where the queue decides, and finer where slots are free). When the
//! new job's CPU-bound work runs at a fraction `speed` of nominal, every one of those service
//! times stretches by `1 / speed`: the job leaves `max(1, (n + 1) / slots) × (1 / speed − 1)`
//! later, and that is what the CPU score adds. At `speed = 1` the added term is exactly 0, so
//! the CPU score *is* the slot score, whatever the slots: sleep jobs, idle machines and reports
//! without CPU figures are placed exactly as before. Even an empty node (`n = 0`) is penalised
//! when its CPU is taken by others: the case of a machine shared with other software.
//!
//! `speed` comes from the report alone ([`speed`]). Below [`SATURATED_PERMILLE`] of its
//! capacity the CPU has room and a new job runs at full speed. At or above, the CPU of capacity
//! `C` (in CPUs, `cpu_capacity_millicores / 1000`) is shared fairly, thread by thread, among
//! everything that wants it: the node's own jobs once the new one is placed, `k = min(n + 1,
//! slots)`, and `h` consumers outside the worker. A job gets `min(1, C / (k + h))` of a CPU,
//! against `min(1, C)` alone on that node, so
//!
//! ```text
//! speed = min(1, C / (k + h)) / min(1, C)
//! ```
//!
//! (A capacity under one CPU slows every job on the node alike, busy or idle; the score leaves
//! that to the slots an operator gives it, as it leaves a free CPU's speed.) `h` is read from
//! the report's CPU figures. The CPU that others used, `O = cpu_outside_permille × C / 1000`,
//! and the worker's own, `J = cpu_permille × C / 1000 − O`, were shared alike, so with
//! `running` jobs of its own the outside ran `h = running × O / J` consumers' worth; with none
//! running, at least one, and at least `O` (no consumer uses more than one CPU). What the
//! worker itself used is not counted when nothing of it runs: the jobs that used it have left,
//! though the sample still shows the CPU full.
//!
//! Half a CPU, one spin of its own and a busy loop beside it, which took a half each of it: `h =
//! 1`, and a second job would be one of three, `speed = 1 / 3`. The same without the busy loop:
//! `1 / 2`. An idle container of half a CPU beside the busy loop: `1 / 2`. A report with
//! capacity 0 (format version 1, which did not carry it) has speed 1, and one without the
//! outside figure (format version 4 or older) counts no outside consumers.

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
                let s = speed(load, pending);
                if s >= 1.0 {
                    base
                } else {
                    base + ((n + 1.0) / slots).max(1.0) * (1.0 / s - 1.0)
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

/// The fraction of nominal speed a new job would run at on the node, with `pending` jobs sent
/// to it since its report, in (0, 1] (see the module's documentation).
pub fn speed(load: &LoadVector, pending: u32) -> f64 {
    if load.cpu_capacity_millicores == 0 || load.cpu_permille < SATURATED_PERMILLE {
        return 1.0;
    }
    let capacity = f64::from(load.cpu_capacity_millicores) / 1000.0;
    let held = u64::from(load.queued) + u64::from(load.running) + u64::from(pending);
    // The node's own jobs on the CPU once the new one is placed.
    let own = (held + 1).min(u64::from(load.slots.max(1))) as f64;
    let outside = f64::from(load.cpu_outside_permille.min(load.cpu_permille)) / 1000.0 * capacity;
    let worker = f64::from(load.cpu_permille) / 1000.0 * capacity - outside;
    let others = if outside <= 0.0 {
        0.0
    } else if load.running > 0 && worker > 0.0 {
        // No more consumers than a thousand: a figure from a worker that used next to nothing.
        (f64::from(load.running) * outside / worker).min(1000.0)
    } else {
        outside.max(1.0)
    };
    // The share a job gets, against what it gets alone on this node's CPU.
    ((capacity / (own + others)).min(1.0) / capacity.min(1.0)).min(1.0)
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

    /// `load` whose CPU use was `outside` per mille others'.
    fn shared(mut l: LoadVector, outside: u16) -> LoadVector {
        l.cpu_outside_permille = outside;
        l
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
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // Half a CPU, one spin of its own: a second job would be one of two.
        assert!(close(speed(&load(0, 1, 2, 1000, 500), 0), 1.0 / 2.0));
        // The same beside a busy loop that took half of it: one of three.
        assert!(close(
            speed(&shared(load(0, 1, 2, 1000, 500), 500), 0),
            1.0 / 3.0
        ));
        // Two slots full: the new job waits for one, then shares as the running ones do.
        assert!(close(speed(&load(1, 2, 2, 1000, 500), 0), 1.0 / 2.0));
        assert!(close(speed(&load(0, 2, 2, 1000, 500), 3), 1.0 / 2.0));
        // Two spins got 2/3 of the half CPU, a busy loop 1/3: one consumer outside.
        let two_and_hog = shared(load(0, 2, 2, 1000, 500), 333);
        assert!((speed(&two_and_hog, 0) - 1.0 / 3.0).abs() < 1e-3);
        // Idle but for an outside busy loop: at least one consumer outside.
        assert!(close(
            speed(&shared(load(0, 0, 2, 1000, 500), 1000), 0),
            1.0 / 2.0
        ));
        // Idle, the CPU full in the last sample with its own jobs, which have left: full speed.
        assert_eq!(speed(&load(0, 0, 2, 1000, 500), 0), 1.0);
        // Two cores, one job of its own and one CPU's worth of others: a third consumer of two.
        assert!(close(
            speed(&shared(load(0, 1, 2, 1000, 2000), 500), 0),
            2.0 / 3.0
        ));
        // Sixteen cores saturated: never faster than nominal.
        assert!(speed(&load(0, 1, 2, 1000, 16_000), 0) <= 1.0);
        assert_eq!(speed(&load(0, 2, 2, 1000, 0), 0), 1.0);
        // An outside figure above the total (a sample's rounding) counts as the total.
        assert!(speed(&shared(load(0, 1, 2, 1000, 500), 1200), 0) > 0.0);
        // Sleep jobs beside a busy loop: the worker used nothing, the consumers are capped.
        assert!(speed(&shared(load(0, 2, 2, 1000, 500), 1000), 0) > 0.0);
    }

    #[test]
    fn a_saturated_node_scores_higher_than_its_slots_say() {
        let free = load(1, 1, 2, 100, 500);
        let hogged = shared(load(1, 1, 2, 1000, 500), 500);
        assert_eq!(
            LoadScore::Slots.score(&free, 0),
            LoadScore::Slots.score(&hogged, 0)
        );
        assert!(LoadScore::Cpu.score(&hogged, 0) > LoadScore::Cpu.score(&free, 0));
        let s = |l: &LoadVector| LoadScore::Cpu.score(l, 0);
        // Even empty: an idle container sharing its half CPU with a busy loop loses to an idle
        // one that does not, and to a busier one with room.
        let empty_hogged = shared(load(0, 0, 2, 1000, 500), 1000);
        assert!(s(&empty_hogged) > s(&load(0, 0, 2, 0, 500)));
        assert!(s(&empty_hogged) > s(&load(0, 1, 2, 400, 500)));
        // With one spin each, the one beside a busy loop scores higher than the one without.
        let one = load(0, 1, 2, 1000, 500);
        let one_hogged = shared(one, 500);
        assert!(s(&one_hogged) > s(&one));
        // The closed form, queue ahead and free slot alike.
        for l in [load(2, 2, 2, 1000, 500), one_hogged] {
            let n = f64::from(l.queued + l.running);
            let closed = n / 2.0 + ((n + 1.0) / 2.0).max(1.0) * (1.0 / speed(&l, 0) - 1.0);
            assert!((s(&l) - closed).abs() < 1e-12);
        }
    }
}
