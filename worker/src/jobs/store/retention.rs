//! What the store keeps of finished jobs, and for how long: the bounds ([`Retention`]: a time, a
//! count, a budget of memory, the most text an output keeps), what keeping an outcome costs
//! ([`outcome_bytes`]), the eviction of the oldest finished jobs past the bounds, and what is
//! kept now ([`Retained`]).

use std::mem::size_of;
use std::time::Duration;

use hearsay_shared::{JobId, JobOutcome};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Inner, JobStore};

/// How long, how many and how much of the finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a finished job is kept.
    pub time: Duration,
    /// How many finished jobs are kept at most.
    pub jobs: usize,
    /// How many bytes of memory the finished jobs kept take at most, by [`outcome_bytes`].
    pub bytes: usize,
    /// The most bytes of text an outcome's output keeps; beyond, it is cut and flagged.
    pub max_output_bytes: usize,
}

impl Default for Retention {
    /// The flags' defaults.
    fn default() -> Self {
        Retention {
            time: Duration::from_secs(600),
            jobs: 100_000,
            bytes: DEFAULT_RETAIN_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// The default of `--retain-bytes`: 256 MiB. At the default `--max-output-bytes` an outcome
/// takes at most about 134 KiB, so at least 1,900 of the largest are kept; a job with a short
/// output takes about 850 bytes, so the default `--retain-jobs` (100,000) of those fit in about
/// 85 MB and the count, not the bytes, is what bounds them. (The figures are checked by a test
/// in `mod.rs`.)
pub const DEFAULT_RETAIN_BYTES: usize = 256 * 1024 * 1024;

/// The default of `--max-output-bytes`: 128 KiB, the most text a job run by this version can
/// give (an `exec` job's `stdout` and `stderr`, 64 KiB each at most; an `echo` job's data, 64
/// KiB), so by default no result is cut; what bounds memory is `--retain-bytes`. Outputs learned
/// from peers are cut to it too.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 128 * 1024;

/// What a kept record costs beyond the outcome's own text, estimated: the outcome itself, the
/// watch channel around it (its shared state: a lock, a version, nine wake-up lists), the hash
/// table's slot with its slack (a table is at most 7/8 full, and may have just doubled), and
/// the eviction queue's entry.
const RECORD_BYTES: usize = size_of::<JobOutcome>()
    + 512
    + 2 * (size_of::<(JobId, watch::Sender<JobOutcome>)>() + 1)
    + 2 * size_of::<(Instant, JobId, usize)>();

/// An estimate of the heap memory that keeping `outcome` takes: `RECORD_BYTES`, and what its
/// strings and output own (by capacity, not length).
pub fn outcome_bytes(outcome: &JobOutcome) -> usize {
    RECORD_BYTES
        + outcome.kind.capacity()
        + outcome.entry_node.as_str().len()
        + outcome
            .executing_node
            .as_ref()
            .map_or(0, |n| n.as_str().len())
        + outcome.error.as_ref().map_or(0, String::capacity)
        + outcome.output.as_ref().map_or(0, value_bytes)
}

/// The heap memory a JSON value owns (its own `Value` is counted by whoever holds it).
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * size_of::<Value>() + items.iter().map(value_bytes).sum::<usize>()
        }
        // A B-tree: nodes of up to 11 entries with a header each; say half full.
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                2 * (size_of::<String>() + size_of::<Value>()) + k.capacity() + value_bytes(v)
            })
            .sum::<usize>()
            .max(11 * (size_of::<String>() + size_of::<Value>())),
    }
}

/// What the store keeps of finished jobs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Finished outcomes kept.
    pub outcomes: usize,
    /// Their estimated memory, by [`outcome_bytes`].
    pub bytes: usize,
}

impl JobStore {
    /// What is kept of finished jobs now.
    pub fn retained(&self, now: Instant) -> Retained {
        let inner = self.lock(now);
        Retained {
            outcomes: inner.finished.len(),
            bytes: inner.finished_bytes,
        }
    }
}

impl Inner {
    /// Counts job `id`, which finished at `at`, towards retention.
    pub(super) fn finished_at(
        &mut self,
        at: Instant,
        now: Instant,
        id: JobId,
        bytes: usize,
        retention: Retention,
    ) {
        self.finished.push_back((at, id, bytes));
        self.finished_bytes += bytes;
        self.evict(now, retention);
    }

    pub(super) fn evict(&mut self, now: Instant, retention: Retention) {
        while let Some(&(finished_at, id, bytes)) = self.finished.front() {
            let expired = now.saturating_duration_since(finished_at) >= retention.time;
            if !expired
                && self.finished.len() <= retention.jobs
                && self.finished_bytes <= retention.bytes
            {
                break;
            }
            self.finished.pop_front();
            self.finished_bytes -= bytes;
            self.forget(id);
        }
    }
}
