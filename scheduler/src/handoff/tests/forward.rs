//! The entry node: a job placed here, on a peer or nowhere; refused offers, lost answers,
//! asks and fences; a job followed until it ends or its node is lost.

use super::*;

#[test]
fn a_job_runs_here_when_there_is_room() {
    let mut w = World::new(1, Policy::P2c, 1);
    let t = w.submit(0, plain());
    let Some(Reply::Accepted {
        id: job,
        at,
        status,
    }) = w.reply(t).cloned()
    else {
        panic!("{:?}", w.reply(t));
    };
    assert_eq!((at, status), (id(0), JobStatus::Queued));
    assert_eq!(w.runs[&job], vec![0]);
    w.end(0, 0, JobStatus::Succeeded);
    assert_eq!(w.settled[&job], vec![JobStatus::Succeeded]);
    assert_eq!(w.nodes[0].core.unsettled(), 0);
}

#[test]
fn no_node_qualifying_is_nowhere_not_here() {
    // A full node alone: nowhere, saying why.
    let mut w = World::new(1, Policy::P2c, 1);
    w.nodes[0].room = false;
    let t = w.submit(0, plain());
    match w.reply(t) {
        Some(Reply::Refused(SubmitRefusal::Nowhere { refusals })) => {
            assert_eq!(refusals, &["n0 (this node): its queue is full".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // A command no node declares: said so, and nothing runs.
    let t = w.submit(
        0,
        Submission {
            requires: 0b11,
            runs_here: false,
            command: Some("thumbnail".into()),
            ..Submission::default()
        },
    );
    assert_eq!(
        w.reply(t),
        Some(&Reply::Refused(SubmitRefusal::UnknownCommand(
            "thumbnail".into()
        )))
    );
    assert!(w.runs.is_empty() && w.flight.is_empty());
}

#[test]
fn a_refused_offer_is_placed_elsewhere_until_no_node_is_left() {
    let mut w = forwarding(3, 7);
    for i in 1..3 {
        w.nodes[i].room = false;
    }
    let t = w.submit(0, plain());
    // Both peers refuse in turn; then nowhere, with both reasons.
    w.deliver(0);
    w.deliver(0);
    w.deliver(0);
    w.deliver(0);
    match w.reply(t) {
        Some(Reply::Refused(SubmitRefusal::Nowhere { refusals })) => {
            assert_eq!(refusals.len(), 3, "{refusals:?}");
            assert!(
                refusals
                    .iter()
                    .any(|r| r.starts_with("n1: its queue is full")),
                "{refusals:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(w.runs.is_empty());
}

#[test]
fn a_lost_offer_answer_is_asked_after_and_the_job_followed_where_it_is() {
    let mut w = forwarding(2, 3);
    let t = w.submit(0, plain());
    let (to, _) = only_offer(&w);
    assert_eq!(to, 1);
    // The peer takes the job; its answer is lost.
    w.deliver(0);
    w.flight.clear();
    assert!(
        w.reply(t).is_none(),
        "not answered before the peer is heard"
    );
    w.advance(Duration::from_secs(5));
    // The ask: the peer holds it.
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            message: Request::Ask { wait: false, .. },
            ..
        }]
    ));
    w.deliver(0);
    w.deliver(0);
    assert!(matches!(w.reply(t), Some(Reply::Accepted { at, .. }) if *at == id(1)));
    assert_eq!(w.nodes[0].core.stats().offers_unanswered, 1);
    w.quiesce();
    w.check_settled();
    assert_eq!(
        w.settled.values().next().unwrap(),
        &vec![JobStatus::Succeeded]
    );
}

#[test]
fn an_offer_that_arrives_after_the_ask_is_fenced_and_the_job_goes_elsewhere() {
    let mut w = forwarding(3, 11);
    let t = w.submit(0, plain());
    let (first, _) = only_offer(&w);
    // The offer is held up in the network; its time runs out; the ask overtakes it.
    w.advance(Duration::from_secs(5));
    let ask = w.flight.len() - 1;
    w.deliver(ask); // fenced there, answer in flight
    let answer = w.flight.len() - 1;
    w.deliver(answer); // placed on the other peer
    w.deliver(0); // the late offer: refused
    assert!(matches!(
        w.flight.last(),
        Some(Flight::Answer {
            answer: Answer::Offer(OfferAnswer::Refused(Refusal::Fenced)),
            ..
        })
    ));
    w.quiesce();
    w.check_settled();
    let Some(Reply::Accepted { at, .. }) = w.reply(t) else {
        panic!("{:?}", w.reply(t));
    };
    assert_ne!(w.index(at), first);
    assert_eq!(w.runs.values().next().unwrap(), &vec![w.index(at)]);
}

#[test]
fn when_no_ask_is_answered_the_job_is_followed_there_never_placed_again() {
    let mut w = forwarding(3, 5);
    let t = w.submit(0, plain());
    let (to, _) = only_offer(&w);
    w.flight.clear();
    // Three asks, each lost, then polls of 15 s each, lost too.
    for _ in 0..150 {
        w.advance(Duration::from_millis(500));
        w.flight.clear();
    }
    assert!(matches!(w.reply(t), Some(Reply::Accepted { at, .. }) if *at == id(to)));
    assert_eq!(w.nodes[0].core.stats().unconfirmed, 1);
    // Its polls unanswered too: lost, with the reason; it ran nowhere.
    let (job, ends) = w.settled.iter().next().expect("settled");
    assert_eq!(ends, &vec![JobStatus::Lost]);
    assert!(!w.runs.contains_key(job));
}

#[test]
fn a_followed_job_is_lost_when_its_node_dies_or_restarts() {
    for restart in [false, true] {
        let mut w = forwarding(2, 9);
        w.submit(0, plain());
        w.deliver(0);
        w.deliver(0); // accepted: now followed, a poll in flight
        if restart {
            w.restart(1, Policy::Random);
        } else {
            w.verdict(0, 1, Verdict::Dead);
        }
        let ends: Vec<_> = w.settled.values().flatten().copied().collect();
        assert_eq!(ends, vec![JobStatus::Lost], "restart: {restart}");
        w.quiesce();
        w.check_settled();
    }
}
