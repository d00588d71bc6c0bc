//! The network of job messages: sending with delay and loss, and delivery to a node's hand-off
//! core (see the module doc of [`super`]).

use super::*;

impl JobSim {
    /// Puts a message on the network from `from` to `to`.
    pub(super) fn send(&mut self, from: usize, asker: u64, to: usize, msg: Msg) {
        let loss = self
            .link_loss
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.job_loss);
        if loss > 0.0 && self.rng.random_bool(loss.min(1.0)) {
            self.drops.lost += 1;
            return;
        }
        let (min, max) = (
            self.config.gossip.min_delay.as_micros() as u64,
            self.config.gossip.max_delay.as_micros() as u64,
        );
        let delay = Duration::from_micros(self.rng.random_range(min..=max));
        self.schedule(
            self.now() + delay,
            Event::Deliver {
                from,
                asker,
                to,
                msg,
            },
        );
    }

    pub(super) fn deliver(&mut self, from: usize, asker: u64, to: usize, msg: Msg) {
        if self.group[from] != self.group[to] {
            self.drops.partitioned += 1;
            return;
        }
        match msg {
            Msg::Answer { request, answer } => {
                if self.nodes[to].life != asker || self.nodes[to].core.is_none() {
                    return; // its connection died with the node that asked
                }
                self.call(to, |core, now, rng, view| {
                    core.handle_answer(now, rng, view, request, answer)
                });
            }
            Msg::Request { request, message } => {
                if self.nodes[to].core.is_none() {
                    self.drops.refused += 1;
                    self.send(
                        to,
                        asker,
                        from,
                        Msg::Answer {
                            request,
                            answer: Answer::NotSent("connection refused".into()),
                        },
                    );
                    return;
                }
                let instant = self.instant();
                let room = self.nodes[to].queue.len() < self.config.queue_limit;
                if let Request::Steal { incarnation } = message {
                    // The newest queued job, out of the queue, for the thief.
                    let newest = self.nodes[to].queue.pop_back();
                    let thief = node_id(from);
                    let mut answer = None;
                    self.call(to, |core, now, _, view| {
                        answer = Some(core.handle_steal(now, view, &thief, incarnation, newest));
                    });
                    self.publish(to);
                    if let (Some(StealAnswer::Empty { load }), true) =
                        (&mut answer, self.config.steal_news)
                    {
                        // The shell's part: its load as it answers, in a report made now.
                        *load = self
                            .gossip
                            .core_mut(to)
                            .map(|g| Box::new(g.report_now(instant)));
                    }
                    if let Some(answer) = answer {
                        self.send(
                            to,
                            asker,
                            from,
                            Msg::Answer {
                                request,
                                answer: Answer::Steal(answer),
                            },
                        );
                    }
                    return;
                }
                let core = self.nodes[to].core.as_mut().expect("up");
                let answer = match message {
                    Request::Steal { .. } => unreachable!("answered above"),
                    Request::Offer(offer) => {
                        let fit = if room { Ok(()) } else { Err(Refusal::Full) };
                        Answer::Offer(core.handle_offer(instant, &offer, fit))
                    }
                    Request::Ask {
                        id,
                        wait,
                        incarnation,
                    } => {
                        let answer = core.handle_ask(instant, id, incarnation);
                        if wait && matches!(answer, AskAnswer::Held(s) if !s.is_terminal()) {
                            // A long poll: held until the job ends or the hold runs out.
                            let life = self.nodes[to].life;
                            self.nodes[to].polls.push(HeldPoll {
                                from,
                                asker,
                                request,
                                id,
                            });
                            let at = self.now() + self.config.long_poll;
                            self.schedule(
                                at,
                                Event::PollExpire {
                                    node: to,
                                    life,
                                    request,
                                },
                            );
                            self.drain(to);
                            return;
                        }
                        Answer::Ask(answer)
                    }
                };
                self.drain(to);
                self.send(to, asker, from, Msg::Answer { request, answer });
            }
        }
    }
}
