//! Idempotency keys of jobs submitted to this node: each key names one job and the digest of
//! the body it was submitted with. The same key with the same body names the same job (nothing
//! new runs); the same key with another body is refused — the IETF `Idempotency-Key` draft and
//! Stripe answer `422` — rather than silently answered with the first job.
//!
//! A key is kept for [`KeyLimits::ttl`] after its job was submitted (the worker sets it to
//! its retention of finished jobs, so a key lives as long as the job it names can be read) and
//! at most [`KeyLimits::max`] are kept, the oldest forgotten first; a forgotten key is as good
//! as new. A key whose submission was refused is freed at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hearsay_shared::JobId;

/// A digest of a submission's body (the shell computes it, e.g. SHA-256 of the JSON as sent);
/// two bodies with one digest are taken for the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyDigest(pub [u8; 32]);

/// An idempotency key and the digest of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The key, as the client sent it (the shell checks its syntax).
    pub key: String,
    /// The body's digest.
    pub digest: BodyDigest,
}

/// How long and how many keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// How long a key is kept after its job was submitted.
    pub ttl: Duration,
    /// The most keys kept.
    pub max: usize,
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits {
            ttl: Duration::from_secs(600),
            max: 100_000,
        }
    }
}

/// What a key says of a new submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// The key is new (or forgotten): submit the job.
    Fresh,
    /// The key names this job, submitted with the same body: nothing new runs.
    Names(JobId),
    /// The key names a job submitted with another body: refuse.
    Reused,
}

#[derive(Debug, Clone)]
struct KeyEntry {
    digest: BodyDigest,
    job: JobId,
    at: Instant,
}

/// The keys, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    limits: KeyLimits,
    keys: HashMap<String, KeyEntry>,
    order: VecDeque<(Instant, String)>,
}

impl Keys {
    pub(crate) fn new(limits: KeyLimits) -> Self {
        Keys {
            limits,
            ..Keys::default()
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.limits.ttl
                && self.order.len() <= self.limits.max
            {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&key).is_some_and(|e| e.at == at) {
                self.keys.remove(&key);
            }
        }
    }

    /// What `keyed` says of a submission now.
    pub(crate) fn check(&mut self, keyed: &Keyed, now: Instant) -> KeyCheck {
        self.prune(now);
        match self.keys.get(&keyed.key) {
            None => KeyCheck::Fresh,
            Some(e) if e.digest == keyed.digest => KeyCheck::Names(e.job),
            Some(_) => KeyCheck::Reused,
        }
    }

    /// The key names `job` from now on.
    pub(crate) fn bind(&mut self, keyed: &Keyed, job: JobId, now: Instant) {
        self.keys.insert(
            keyed.key.clone(),
            KeyEntry {
                digest: keyed.digest,
                job,
                at: now,
            },
        );
        self.order.push_back((now, keyed.key.clone()));
        self.prune(now);
    }

    /// Frees `key` if it still names `job` (its submission was refused).
    pub(crate) fn free(&mut self, key: &str, job: JobId) {
        if self.keys.get(key).is_some_and(|e| e.job == job) {
            self.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str, digest: u8) -> Keyed {
        Keyed {
            key: key.into(),
            digest: BodyDigest([digest; 32]),
        }
    }

    #[test]
    fn a_key_names_its_job_for_the_same_body_only() {
        let now = Instant::now();
        let mut keys = Keys::new(KeyLimits::default());
        assert_eq!(keys.check(&keyed("k", 1), now), KeyCheck::Fresh);
        keys.bind(&keyed("k", 1), JobId(7), now);
        assert_eq!(keys.check(&keyed("k", 1), now), KeyCheck::Names(JobId(7)));
        assert_eq!(keys.check(&keyed("k", 2), now), KeyCheck::Reused);
        assert_eq!(keys.check(&keyed("other", 2), now), KeyCheck::Fresh);
    }

    #[test]
    fn keys_are_forgotten_after_their_time_beyond_the_count_or_when_freed() {
        let t0 = Instant::now();
        let mut keys = Keys::new(KeyLimits {
            ttl: Duration::from_secs(10),
            max: 2,
        });
        keys.bind(&keyed("a", 1), JobId(1), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(keys.check(&keyed("a", 2), later), KeyCheck::Fresh);
        for (i, k) in ["b", "c", "d"].into_iter().enumerate() {
            keys.bind(&keyed(k, 1), JobId(i as u64), t0);
        }
        assert_eq!(
            keys.check(&keyed("b", 1), t0),
            KeyCheck::Fresh,
            "oldest gone"
        );
        keys.free("c", JobId(99));
        assert_eq!(
            keys.check(&keyed("c", 1), t0),
            KeyCheck::Names(JobId(1)),
            "another job's key stays"
        );
        keys.free("c", JobId(1));
        assert_eq!(keys.check(&keyed("c", 1), t0), KeyCheck::Fresh);
    }
}
