//! Jobs entering the simulation: at a chosen node, or at the shortest queue (the JSQ oracle).

use super::*;

impl JobSim {
    pub(super) fn submit(&mut self, i: usize, service: Duration) {
        if self.nodes[i].core.is_none() {
            return;
        }
        self.submitting = Some((i, service));
        let submission = Submission {
            runs_here: true,
            ..Submission::default()
        };
        self.call(i, |core, instant, rng, view| {
            core.handle_submit(instant, rng, view, submission);
        });
        self.submitting = None;
    }

    // ---- workload and faults -------------------------------------------------------------

    /// Submits a job of `service` to node `node` at virtual time `at` (not in the past).
    pub fn submit_at(&mut self, at: Duration, node: usize, service: Duration) {
        let shortest = false;
        self.schedule(
            at.max(self.now()),
            Event::Submit {
                node,
                service,
                shortest,
            },
        );
    }

    /// Submits a job of `service` at virtual time `at` to the node with the fewest jobs
    /// (queued and running) then, ties drawn at random: the join-the-shortest-queue oracle,
    /// which knows every executor exactly and at once. With [`Policy::Local`] and no stealing
    /// it is the reference that placement and stealing are measured against.
    pub fn submit_shortest_at(&mut self, at: Duration, service: Duration) {
        let event = Event::Submit {
            node: 0,
            service,
            shortest: true,
        };
        self.schedule(at.max(self.now()), event);
    }

    /// The running, unfrozen node with the fewest jobs, ties drawn at random.
    pub(super) fn shortest(&mut self) -> Option<usize> {
        let jobs = |n: &JobNode| n.queue.len() + n.running.len();
        let up = || {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.core.is_some() && !n.frozen)
        };
        let fewest = up().map(|(_, n)| jobs(n)).min()?;
        let ties: Vec<usize> = up()
            .filter(|(_, n)| jobs(n) == fewest)
            .map(|(i, _)| i)
            .collect();
        ties.choose(&mut self.rng).copied()
    }
}
