//! What a restarted node does with what its store kept (see [`crate::jobs::disk`]), before it takes
//! its first request:
//!
//! - a job that had ended answers as before, for what is left of its retention;
//! - a job queued here that had not started runs now: it never ran, so at-most-once holds (a
//!   job's start is on disk before it runs, see [`crate::jobs::slots`]);
//! - a job that was running here is `lost`, "node restarted while it ran": it may have done
//!   part of its work, and running it again could do it twice;
//! - a job this node answers for at a peer is followed there again, and settled as before;
//! - an idempotency key names its job again.
//!
//! The hand-off core is told of every job it held or followed (`Handoff::restore_*`), so that
//! an entry node's ask about a job held here is answered with how it stands, not fenced off.

use std::time::Duration;

use hearsay_scheduler::handoff::{BodyDigest, Followed, Keyed};
use hearsay_shared::JobStatus;
use tokio::time::Instant;
use tracing::info;

use crate::jobs::disk::{Disk, Stored};
use crate::jobs::dispatch::{Dispatcher, Restored};
use crate::jobs::slots::{self, Executor};
use crate::jobs::store::{wall_ms, JobStore};

/// The error of a job that was running when its node stopped.
pub const RESTARTED_WHILE_RUNNING: &str = "node restarted while it ran";

/// What a restart did with the jobs it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Jobs that had ended, kept.
    pub ended: usize,
    /// Jobs queued and not started, run now.
    pub rerun: usize,
    /// Jobs that were running, now lost.
    pub lost: usize,
    /// Jobs at peers, followed again.
    pub followed: usize,
    /// Records dropped: past their retention, or of jobs that moved on from here.
    pub dropped: usize,
}

/// Puts the records `jobs` back: into `store`, the core behind `dispatcher`, and `executor`.
pub fn resume(
    jobs: Vec<Stored>,
    disk: &Disk,
    store: &JobStore,
    executor: &Executor,
    dispatcher: &Dispatcher,
    retain: Duration,
) -> Resumed {
    let me = dispatcher.node().clone();
    let now = Instant::now();
    let wall = wall_ms();
    let mut resumed = Resumed::default();
    let mut restored = Restored::default();
    let mut rerun = Vec::new();
    let mut jobs = jobs;
    // Oldest end first, so that retention forgets them in the order they ended.
    jobs.sort_by_key(|s| (s.ended_ms.unwrap_or(u64::MAX), s.outcome.id));
    for mut stored in jobs {
        let outcome = &mut stored.outcome;
        let id = outcome.id;
        let entered_here = outcome.entry_node == me;
        let runs_here = outcome.executing_node.as_ref() == Some(&me);
        if let (Some((key, hex)), true) = (&stored.key, entered_here) {
            if let Some(digest) = digest(hex) {
                let keyed = Keyed {
                    key: key.clone(),
                    digest,
                };
                restored.keys.push((keyed, id));
            }
        }
        // The nodes it was at before this one, entry first.
        let before = |o: &hearsay_shared::JobOutcome| match o.path.split_last() {
            Some((last, before)) if *last == me => before.to_vec(),
            _ => Vec::new(),
        };
        if outcome.status.is_terminal() {
            let age = Duration::from_millis(wall.saturating_sub(stored.ended_ms.unwrap_or(wall)));
            if age >= retain {
                disk.delete(id);
                resumed.dropped += 1;
                continue;
            }
            if runs_here {
                let (entry, path) = (outcome.entry_node.clone(), before(outcome));
                restored.held.push((id, entry, path, outcome.status));
            }
            store.restore(now, stored, Some(age));
            resumed.ended += 1;
        } else if let (true, Some(thief)) = (runs_here, stored.moving_to.clone()) {
            // On its way to a thief when the node stopped: it does not run here again. Its
            // entry node follows it there (this one, if it is the entry node).
            match (entered_here, stored.peer) {
                (true, Some((api, incarnation))) => {
                    let mut path = outcome.path.clone();
                    path.push(thief.clone());
                    restored.followed.push(Followed {
                        id,
                        at: thief.clone(),
                        api,
                        incarnation,
                        status: JobStatus::Queued,
                        path: path.clone(),
                    });
                    outcome.executing_node = Some(thief);
                    outcome.path = path;
                    stored.spec = None;
                    stored.moving_to = None;
                    store.restore(now, stored, None);
                    store.annotate(now, id, |_| {});
                    resumed.followed += 1;
                }
                _ => {
                    disk.delete(id);
                    resumed.dropped += 1;
                }
            }
        } else if runs_here {
            let (entry, path) = (outcome.entry_node.clone(), before(outcome));
            match stored.spec.take() {
                Some(spec) if outcome.status == JobStatus::Queued => {
                    restored
                        .held
                        .push((id, entry.clone(), path.clone(), JobStatus::Queued));
                    rerun.push(slots::Submission {
                        id,
                        spec,
                        entry,
                        path,
                        arrived: now,
                    });
                    store.restore(now, stored, None);
                    resumed.rerun += 1;
                }
                _ => {
                    outcome.status = JobStatus::Lost;
                    outcome.error = Some(RESTARTED_WHILE_RUNNING.to_owned());
                    stored.ended_ms = Some(wall);
                    restored.held.push((id, entry, path, JobStatus::Lost));
                    store.restore(now, stored, Some(Duration::ZERO));
                    // Written again, as it stands now.
                    store.annotate(now, id, |_| {});
                    resumed.lost += 1;
                }
            }
        } else if entered_here {
            let (Some(at), Some((api, incarnation))) =
                (outcome.executing_node.clone(), stored.peer)
            else {
                outcome.status = JobStatus::Lost;
                outcome.error =
                    Some("node restarted and no longer knew where the job ran".to_owned());
                stored.ended_ms = Some(wall);
                store.restore(now, stored, Some(Duration::ZERO));
                store.annotate(now, id, |_| {});
                resumed.lost += 1;
                continue;
            };
            restored.followed.push(Followed {
                id,
                at,
                api,
                incarnation,
                status: outcome.status,
                path: outcome.path.clone(),
            });
            store.restore(now, stored, None);
            resumed.followed += 1;
        } else {
            // It moved on from here before it ran; its entry node follows it there.
            disk.delete(id);
            resumed.dropped += 1;
        }
    }
    dispatcher.restore(restored);
    for job in rerun {
        executor.resume(job);
    }
    if resumed != Resumed::default() {
        info!(
            ended = resumed.ended,
            rerun = resumed.rerun,
            lost = resumed.lost,
            followed = resumed.followed,
            dropped = resumed.dropped,
            "jobs taken back from the store"
        );
    }
    resumed
}

/// A body digest from its hex.
fn digest(hex: &str) -> Option<BodyDigest> {
    let mut digest = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(BodyDigest(digest))
}
