//! A restarted node takes back what its store kept: the jobs it held, the jobs it followed at
//! peers, the idempotency keys it had bound. The store is the shell's; these calls put its
//! records back into the core before the first event, so that asks about held jobs are
//! answered `Held` (not fenced off as never held), a job it answers for is followed again at
//! its executing node, and a replayed key names its job as before the restart.
//!
//! What may be restored is the shell's to decide (see the worker's `restart` module): a job
//! that was running when the node stopped is restored as `lost`, never queued, so nothing that
//! may have started runs twice.

use std::net::SocketAddr;
use std::time::Instant;

use hearsay_shared::{JobId, JobStatus, NodeId};

use super::follow::Follow;
use super::held::HeldJob;
use super::keys::Keyed;
use super::{Entered, Handoff, Role, Stage};

/// A job this node answers for as its entry node, held by peer `at` when the node stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The job.
    pub id: JobId,
    /// The peer that held it.
    pub at: NodeId,
    /// That peer's API.
    pub api: SocketAddr,
    /// That peer's incarnation when it took the job.
    pub incarnation: u64,
    /// How it stood there, as last heard.
    pub status: JobStatus,
    /// Every node it went through, entry first, `at` last.
    pub path: Vec<NodeId>,
}

impl Handoff {
    /// Job `id`, held here when the node stopped (`status` queued, to be run again by the
    /// shell; or terminal), entered at `entry` after going through `path` (entry first, empty
    /// if submitted here). A job submitted here is answered for here again. Call before the
    /// first event; a job already known is left alone.
    pub fn restore_held(
        &mut self,
        now: Instant,
        id: JobId,
        entry: NodeId,
        path: Vec<NodeId>,
        status: JobStatus,
    ) {
        if self.held.get(id, now).is_some() || self.jobs.contains_key(&id) {
            return;
        }
        let here = entry == self.config.node;
        self.held.take(
            id,
            HeldJob {
                entry,
                status: JobStatus::Queued,
                path,
                moved_to: None,
            },
        );
        if here && !status.is_terminal() {
            let me = self.config.node.clone();
            self.jobs.insert(id, restored(Stage::Here, vec![me]));
        }
        if status != JobStatus::Queued {
            self.held.set(id, status, now);
        }
    }

    /// A job this node answers for, at a peer when the node stopped: it is followed there
    /// again from now, and its end settled once, as if it had never stopped.
    pub fn restore_follow(&mut self, now: Instant, job: Followed) {
        if self.jobs.contains_key(&job.id) || job.status.is_terminal() {
            return;
        }
        let follow = Follow::new(job.at, job.api, job.incarnation, job.status);
        let mut path = job.path;
        if path.is_empty() {
            path.push(self.config.node.clone());
        }
        self.jobs
            .insert(job.id, restored(Stage::Following(follow), path));
        self.ask(now, job.id);
    }

    /// Idempotency key `keyed` named job `id` when the node stopped: it names it again (for
    /// the keys' time from now).
    pub fn restore_key(&mut self, now: Instant, keyed: &Keyed, id: JobId) {
        self.keys.bind(keyed, id, now);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.key = Some(keyed.key.clone());
        }
    }
}

/// The record of a job restored at `stage`, with nobody waiting for its placement.
fn restored(stage: Stage, path: Vec<NodeId>) -> Entered {
    Entered::placed(Role::Entry, stage, path)
}

#[cfg(test)]
mod tests {
    use hearsay_shared::{LoadMap, LoadVector};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::{Action, Answer, AskAnswer, BodyDigest, HandoffConfig, Reply, Request};
    use super::super::{Submission, View};
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// The core of `n1` at its second incarnation: the one after a restart.
    fn restarted() -> Handoff {
        Handoff::new(HandoffConfig::new(node("n1"), 2))
    }

    fn actions(core: &mut Handoff) -> Vec<Action> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    #[test]
    fn a_held_job_is_answered_as_held_not_fenced_after_the_restart() {
        let now = Instant::now();
        let mut core = restarted();
        let path = vec![node("n0")];
        core.restore_held(now, JobId(7), node("n0"), path, JobStatus::Queued);
        core.restore_held(now, JobId(8), node("n0"), vec![node("n0")], JobStatus::Lost);
        // The entry node asks at the incarnation that took the job.
        assert_eq!(
            core.handle_ask(now, JobId(7), 1),
            AskAnswer::Held(JobStatus::Queued)
        );
        assert_eq!(
            core.handle_ask(now, JobId(8), 1),
            AskAnswer::Held(JobStatus::Lost)
        );
        // A job it never held is still fenced off, as restarted.
        assert_eq!(core.handle_ask(now, JobId(9), 1), AskAnswer::Restarted);
        assert_eq!(core.fenced(), 1);
    }

    #[test]
    fn a_job_submitted_and_held_here_is_settled_once_when_it_ends() {
        let now = Instant::now();
        let mut core = restarted();
        core.restore_held(now, JobId(7), node("n1"), Vec::new(), JobStatus::Queued);
        assert_eq!(core.unsettled(), 1);
        core.handle_started(now, JobId(7));
        core.handle_ended(now, JobId(7), JobStatus::Succeeded);
        let settled: Vec<_> = actions(&mut core)
            .into_iter()
            .filter(|a| matches!(a, Action::Settled { .. }))
            .collect();
        assert_eq!(settled.len(), 1, "{settled:?}");
        assert_eq!(core.unsettled(), 0);
    }

    #[test]
    fn a_followed_job_is_asked_after_at_its_node_and_settled_by_the_answer() {
        let now = Instant::now();
        let mut core = restarted();
        let api: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        core.restore_follow(
            now,
            Followed {
                id: JobId(5),
                at: node("n2"),
                api,
                incarnation: 9,
                status: JobStatus::Running,
                path: vec![node("n1"), node("n2")],
            },
        );
        let sent = actions(&mut core);
        let Some(Action::Send {
            to,
            api: to_api,
            request,
            message: Request::Ask {
                id, incarnation, ..
            },
        }) = sent.first().cloned()
        else {
            panic!("no ask: {sent:?}");
        };
        assert_eq!(
            (to, to_api, id, incarnation),
            (node("n2"), api, JobId(5), 9)
        );
        let map = LoadMap::new();
        let view = View {
            map: &map,
            own: LoadVector::idle(1),
            room: true,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let answer = Answer::Ask(AskAnswer::Held(JobStatus::Succeeded));
        core.handle_answer(now, &mut rng, &view, request, answer);
        let settled: Vec<_> = actions(&mut core)
            .into_iter()
            .filter_map(|a| match a {
                Action::Settled {
                    id, status, path, ..
                } => Some((id, status, path)),
                _ => None,
            })
            .collect();
        assert_eq!(
            settled,
            [(JobId(5), JobStatus::Succeeded, vec![node("n1"), node("n2")])]
        );
    }

    #[test]
    fn a_restored_key_names_its_job_again() {
        let now = Instant::now();
        let mut core = restarted();
        let keyed = Keyed {
            key: "k-1".into(),
            digest: BodyDigest([3; 32]),
        };
        core.restore_key(now, &keyed, JobId(11));
        let map = LoadMap::new();
        let view = View {
            map: &map,
            own: LoadVector::idle(1),
            room: true,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let submit = |core: &mut Handoff, rng: &mut StdRng, keyed: Keyed| {
            let submission = Submission {
                key: Some(keyed),
                runs_here: true,
                ..Submission::default()
            };
            core.handle_submit(now, rng, &view, submission);
            actions(core)
        };
        let again = submit(&mut core, &mut rng, keyed.clone());
        assert!(
            matches!(
                &again[..],
                [Action::Reply {
                    reply: Reply::Replayed { id: JobId(11) },
                    ..
                }]
            ),
            "{again:?}"
        );
        let other = Keyed {
            digest: BodyDigest([4; 32]),
            ..keyed
        };
        let reused = submit(&mut core, &mut rng, other);
        assert!(
            matches!(
                &reused[..],
                [Action::Reply {
                    reply: Reply::Refused(_),
                    ..
                }]
            ),
            "{reused:?}"
        );
    }
}
